"""Background training jobs: start, poll, cancel, list.

A job is a separate operating-system process (``python -m engine.apps.jobs.training <job_dir>``) started in its
own session, so it survives a page reload, a closed browser tab or a restart of the dashboard.
It talks to the outside world only through files in its job directory
``home_dir()/jobs/<job_id>/``:

    request.json    what to train: dataset path, target, configs, model name (written once)
    status.json     state (queued → running → done | failed | cancelled), pid, times, error,
                    model path and metrics; written by the job itself
    progress.json   per-epoch history, written after every epoch by
                    :class:`engine.training.ProgressFile`
    search.csv      a hyperparameter-search job's trials so far (best first at the end); its
                    progress.json counts trials instead of epochs
    log.txt         the process's stdout and stderr (tracebacks end up here)
    cancel          created by :func:`cancel_job`; training stops within the current batch

:func:`job_status` also notices a job whose process died without saying so (killed, out of
memory) and reports it as failed with the end of its log. No function here raises because of
what a job did; a broken job directory reads as a failed job.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import traceback
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from engine.core.config import (
    PROJECT_ROOT,
    GraphConfig,
    SplitConfig,
    TrainConfig,
    home_dir,
    user_model_dir,
)
from engine.io.output import atomic_write

__all__ = [
    "ACTIVE_STATES",
    "FINAL_STATES",
    "JobStatus",
    "cancel_job",
    "delete_job",
    "job_dir",
    "job_progress",
    "job_status",
    "jobs_dir",
    "list_jobs",
    "read_log",
    "run_job",
    "start_training_job",
]

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
#: States of a job whose process should still be alive.
ACTIVE_STATES = ("queued", "running")
#: States a job never leaves.
FINAL_STATES = ("done", "failed", "cancelled")

REQUEST_FILE = "request.json"
STATUS_FILE = "status.json"
PROGRESS_FILE = "progress.json"
LOG_FILE = "log.txt"
CANCEL_FILE = "cancel"
SEARCH_FILE = "search.csv"

#: Lines of the log quoted in the error of a job whose process died.
_LOG_TAIL_LINES = 25
#: A job without a recorded pid counts as being launched for this many seconds.
_LAUNCH_GRACE_S = 30.0

# Popen objects of jobs started by this process, so that finished children are reaped (a
# zombie would otherwise look alive to os.kill(pid, 0)).
_CHILDREN: dict[str, subprocess.Popen] = {}

JobStatus = dict  # a plain dict; see job_status for its keys


def jobs_dir() -> Path:
    """Folder holding one sub-folder per job: ``home_dir()/jobs``."""
    return home_dir() / "jobs"


def job_dir(job_id: str) -> Path:
    """The directory of one job.

    Raises:
        ValueError: for an id that is not a plain folder name.
    """
    if not job_id or "/" in job_id or "\\" in job_id or job_id.startswith("."):
        raise ValueError(f"Invalid job_id={job_id!r}")
    return jobs_dir() / job_id


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def _update_status(directory: Path, **fields: Any) -> dict:
    status = _read_json(directory / STATUS_FILE) or {}
    status.update(fields)
    _write_json(directory / STATUS_FILE, status)
    return status


def _age_seconds(iso: str | None) -> float:
    if not iso:
        return float("inf")
    try:
        then = datetime.fromisoformat(iso)
    except ValueError:
        return float("inf")
    return (datetime.now(timezone.utc) - then).total_seconds()


def _new_job_id() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def _safe_name(name: str) -> str:
    from engine.store.card import safe_dir_name

    return safe_dir_name(name)


def _names_in_use() -> set[str]:
    used = set()
    root = jobs_dir()
    if root.is_dir():
        for d in root.iterdir():
            status = _read_json(d / STATUS_FILE) or {}
            if status.get("status") in ACTIVE_STATES and status.get("name"):
                used.add(status["name"])
    return used


def start_training_job(
    dataset_path: str | os.PathLike,
    target: str | Sequence[str],
    *,
    model=None,
    graph: GraphConfig | None = None,
    training: TrainConfig | None = None,
    split: SplitConfig | None = None,
    name: str | None = None,
    query: str | None = None,
    limit: int | None = None,
    search: dict | None = None,
    python: str | None = None,
) -> str:
    """Start training in a background process and return the job id at once.

    Args:
        dataset_path: anything :func:`engine.io.datasets.load_dataset` reads (a path; uploads
            must be saved to disk first).
        target: the numeric column to learn, or several columns for a multi-target family
            (``multitask``); the first is the primary target.
        model: a model config (any family of :data:`engine.models.MODEL_REGISTRY`); default
            CGCNN.
        graph, training, split: configs; defaults as in :func:`engine.training.train`.
        name: model name; the model is saved to ``user_model_dir()/<name>``. Default
            ``<family>-<target>-<job id>``.
        query: optional :meth:`pandas.DataFrame.query` filter applied after loading.
        limit: read at most this many entries of the dataset.
        search: run a hyperparameter search instead of one training:
            ``{"grid": {setting: [values]}, "n_trials": int | None}`` (see
            :func:`engine.training.search.hyperparameter_search`; ``training.epochs`` is the
            epochs per trial). The best trial's model is saved under ``name``.
        python: interpreter for the job (default: the running one).

    Returns:
        The job id (also the name of its folder under :func:`jobs_dir`).

    Raises:
        FileNotFoundError: the dataset path does not exist.
        ValueError: a model of that name exists already or is being trained by another job.
    """
    from engine.core.config import CGCNNConfig

    dataset_path = Path(dataset_path).expanduser().resolve()
    if not dataset_path.exists():
        raise FileNotFoundError(f"dataset not found: {dataset_path}")
    model = model or CGCNNConfig()
    targets = [target] if isinstance(target, str) else list(target)
    if not targets:
        raise ValueError("no target given")
    target = targets[0]
    job_id = _new_job_id()
    name = _safe_name(name) if name else _safe_name(f"{model.name}-{target}-{job_id}")
    out = user_model_dir() / name
    if (out / "model.json").exists():
        raise ValueError(f"a model named {name!r} exists already ({out}); choose another name")
    if name in _names_in_use():
        raise ValueError(f"a running job is already training a model named {name!r}")

    directory = job_dir(job_id)
    directory.mkdir(parents=True, exist_ok=False)
    request = {
        "kind": "train",
        "dataset_path": str(dataset_path),
        "targets": targets,
        "query": query or None,
        "limit": limit,
        "name": name,
        "out": str(out),
        "model": model.model_dump(),
        "graph": (graph or GraphConfig()).model_dump(),
        "training": (training or TrainConfig()).model_dump(),
        "split": (split or SplitConfig()).model_dump(),
        "search": search,
    }
    _write_json(directory / REQUEST_FILE, request)
    _write_json(
        directory / STATUS_FILE,
        {
            "id": job_id,
            "kind": "train",
            "status": "queued",
            "name": name,
            "target": target,
            "targets": targets,
            "dataset": str(dataset_path),
            "family": model.name,
            "created": _now(),
            "pid": None,
        },
    )
    env = dict(os.environ)
    env["CRYSTAL_SCREEN_HOME"] = str(home_dir())
    env.setdefault("PYTHONUNBUFFERED", "1")
    existing = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(PROJECT_ROOT) + (os.pathsep + existing if existing else "")
    with open(directory / LOG_FILE, "ab") as log:
        proc = subprocess.Popen(
            [python or sys.executable, "-m", "engine.apps.jobs.training", str(directory)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(PROJECT_ROOT),
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    _CHILDREN[job_id] = proc
    # the child writes its own pid when it starts; this file lets a dead launch be detected
    (directory / "pid").write_text(str(proc.pid))
    return job_id


# ------------------------------------------------------------------------------------------
# Polling


def _pid_alive(pid: int | None, job_id: str) -> bool:
    if not pid:
        return False
    child = _CHILDREN.get(job_id)
    if child is not None and child.pid == pid:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():  # Linux: rule out zombies and a recycled pid
        try:
            stat = (proc / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                return False
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore")
            return "engine.apps.jobs.training" in cmdline and job_id in cmdline
        except OSError:
            return False
    return True


def read_log(job_id: str, lines: int = _LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a job's log ("" when there is none)."""
    try:
        text = (job_dir(job_id) / LOG_FILE).read_text(errors="replace")
    except (OSError, ValueError):
        return ""
    # tqdm-style carriage returns: keep the last state of each line
    out = [ln.rsplit("\r", 1)[-1] for ln in text.splitlines()]
    return "\n".join(out[-lines:])


def job_progress(job_id: str) -> dict:
    """The job's ``progress.json``: ``epoch``, ``epochs``, ``history`` (one dict per epoch with
    ``train_loss``, ``val_loss``, ``train_mae``, ``val_mae``, ``val_r``, ``lr``, ``seconds``)
    and ``stop_reason``; an empty history before the first epoch."""
    try:
        data = _read_json(job_dir(job_id) / PROGRESS_FILE)
    except ValueError:
        data = None
    if not data:
        return {"epoch": 0, "epochs": None, "history": [], "stop_reason": None}
    data.setdefault("history", [])
    return data


def job_status(job_id: str) -> dict:
    """The current state of a job.

    Returns:
        A dict with at least ``id``, ``status`` (queued, running, done, failed, cancelled),
        ``name``, ``target``, ``dataset``, ``created``, ``pid``, ``epoch``, ``epochs`` and
        ``error`` (None unless failed); finished jobs add ``model_path``, ``metrics``,
        ``stop_reason`` and ``ended``. A job whose process is gone while it claims to be
        queued or running is reported (and recorded) as failed, with the end of its log.
        An unknown id gives ``status="failed"`` with an error saying so.
    """
    try:
        directory = job_dir(job_id)
    except ValueError as exc:
        return {"id": job_id, "status": "failed", "error": str(exc)}
    status = _read_json(directory / STATUS_FILE)
    if status is None:
        if not directory.exists():
            return {"id": job_id, "status": "failed", "error": f"no job with id {job_id!r}"}
        status = {
            "id": job_id,
            "status": "failed",
            "error": f"the job's {STATUS_FILE} is missing or unreadable",
        }
    status.setdefault("id", job_id)
    status.setdefault("error", None)
    progress = job_progress(job_id)
    status["epoch"] = int(progress.get("epoch") or 0)
    status["epochs"] = progress.get("epochs") or (_read_json(directory / REQUEST_FILE) or {}).get(
        "training", {}
    ).get("epochs")

    if not status.get("pid"):
        try:
            status["pid"] = int((directory / "pid").read_text().strip())
        except (OSError, ValueError):
            status["pid"] = None
    if status.get("status") in ACTIVE_STATES:
        pid = status.get("pid")
        if not pid and _age_seconds(status.get("created")) < _LAUNCH_GRACE_S:
            return status  # being launched right now
        if not _pid_alive(pid, job_id):
            # the process may have just finished: re-read before declaring it dead
            fresh = _read_json(directory / STATUS_FILE) or {}
            if fresh.get("status") in FINAL_STATES:
                return job_status(job_id)
            if (directory / CANCEL_FILE).exists():
                fields = {
                    "status": "cancelled",
                    "ended": _now(),
                    "stop_reason": "cancelled by user (the process had stopped)",
                }
            else:
                tail = read_log(job_id)
                fields = {
                    "status": "failed",
                    "ended": _now(),
                    "error": "the job's process ended without reporting a result"
                    + (f"; end of its log:\n{tail}" if tail else " (its log is empty)"),
                }
            try:
                _update_status(directory, **fields)
            except OSError:
                pass
            status.update(fields)
    return status


def list_jobs() -> list[dict]:
    """Every job, newest first, each as :func:`job_status` reports it."""
    root = jobs_dir()
    if not root.is_dir():
        return []
    ids = sorted(
        (d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")), reverse=True
    )
    return [job_status(i) for i in ids]


def cancel_job(job_id: str, *, force: bool = False) -> dict:
    """Ask a job to stop.

    Writes the ``cancel`` file: training stops after the current epoch, the best weights so
    far are saved, and the status becomes ``cancelled``. With ``force=True`` the process group
    is also sent SIGTERM at once (nothing is saved). Cancelling a finished job changes nothing.

    Returns:
        The job's status after the request.
    """
    status = job_status(job_id)
    if status.get("status") not in ACTIVE_STATES:
        return status
    directory = job_dir(job_id)
    (directory / CANCEL_FILE).write_text(_now())
    if force:
        pid = status.get("pid")
        if pid and _pid_alive(pid, job_id):
            try:
                if hasattr(os, "killpg"):
                    os.killpg(pid, signal.SIGTERM)
                else:  # pragma: no cover - Windows
                    os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
            _update_status(
                directory,
                status="cancelled",
                ended=_now(),
                stop_reason="stopped at once by user (nothing saved)",
            )
    return job_status(job_id)


def delete_job(job_id: str, *, remove_model: bool = False) -> None:
    """Remove a finished job's folder (and, if asked, the model it saved).

    Raises:
        ValueError: when the job is still queued or running (cancel it first).
    """
    status = job_status(job_id)
    if status.get("status") in ACTIVE_STATES:
        raise ValueError(f"job {job_id} is still {status['status']}; cancel it first")
    if remove_model and status.get("model_path"):
        path = Path(status["model_path"])
        if path.is_dir() and path.parent == user_model_dir():
            shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(job_dir(job_id), ignore_errors=True)


# ------------------------------------------------------------------------------------------
# The job process


def _json_safe(metrics: dict) -> dict:
    def clean(v):
        if isinstance(v, float) and math.isnan(v):
            return None
        return v

    return {part: {k: clean(v) for k, v in m.items()} for part, m in metrics.items()}


def _run_search(directory: Path, dataset, target: str, search: dict, configs: dict):
    """A search job: trials counted in ``progress.json``, the table in ``search.csv``; returns
    the best trial's TrainResult with a ``stop_reason`` that names the winning settings."""
    import pandas as pd

    from engine.training.search import hyperparameter_search

    rows: list[dict] = []

    def on_trial(done: int, total: int, row: dict) -> bool:
        rows.append(row)
        frame = pd.DataFrame(rows)
        atomic_write(directory / SEARCH_FILE, lambda tmp: frame.to_csv(tmp, index=False))
        _write_json(directory / PROGRESS_FILE, {"epoch": done, "epochs": total, "history": [],
                                                "stop_reason": None, "unit": "trial"})
        print(f"[{_now()}] trial {done}/{total}: val MAE {row['val_mae']:.4g}", flush=True)
        return (directory / CANCEL_FILE).exists()

    training = configs["training"]
    result = hyperparameter_search(
        dataset, target, grid=search["grid"], n_trials=search.get("n_trials"),
        epochs=training.epochs, seed=training.seed, on_trial=on_trial, **{
            k: configs[k] for k in ("model", "graph", "split", "training", "out", "name")},
    )
    atomic_write(directory / SEARCH_FILE, lambda tmp: result.table.to_csv(tmp, index=False))
    best = ", ".join(f"{k}={v}" for k, v in result.best.items())
    stopped = "cancelled by user; " if (directory / CANCEL_FILE).exists() else ""
    result.best_result.stop_reason = f"{stopped}best of {len(result.table)} trials: {best}"
    return result.best_result


def run_job(directory: str | os.PathLike) -> int:
    """Run the job described by ``directory/request.json`` in this process.

    Returns:
        0 when the job finished (done or cancelled), 1 when it failed. The outcome is always
        recorded in ``status.json``.
    """
    directory = Path(directory)
    _update_status(directory, status="running", pid=os.getpid(), started=_now())
    try:
        request = _read_json(directory / REQUEST_FILE)
        if request is None:
            raise ValueError(f"{directory / REQUEST_FILE} is missing or not valid JSON")
        from engine.io.datasets import load_dataset
        from engine.models import model_config_from_dict
        from engine.training import ProgressFile, train

        print(f"[{_now()}] loading {request['dataset_path']}", flush=True)
        dataset = load_dataset(request["dataset_path"], limit=request.get("limit"))
        if dataset.errors:
            print(
                f"{len(dataset.errors)} entries could not be used, e.g. {dataset.errors[0]}",
                flush=True,
            )
        if request.get("query"):
            dataset = dataset.query(request["query"])
        targets = request["targets"]
        for target in targets:
            if target not in dataset.numeric_columns():
                raise ValueError(
                    f"target {target!r} is not a numeric column of {dataset.name}; numeric "
                    f"columns: {', '.join(dataset.numeric_columns()) or 'none'}"
                )
        if (directory / CANCEL_FILE).exists():
            _update_status(
                directory,
                status="cancelled",
                ended=_now(),
                stop_reason="cancelled by user before training started",
            )
            return 0
        print(f"[{_now()}] training on {len(dataset)} structures, "
              f"target{'s' if len(targets) > 1 else ''} {', '.join(targets)}", flush=True)
        training = TrainConfig(**request["training"])
        if not training.num_threads:  # leave a core to the dashboard next to the job
            training = training.model_copy(
                update={"num_threads": max(1, (os.cpu_count() or 2) - 1)})
        configs = {
            "model": model_config_from_dict(request["model"]),
            "graph": GraphConfig(**request["graph"]),
            "training": training,
            "split": SplitConfig(**request["split"]),
            "out": request["out"],
            "name": request["name"],
        }
        if request.get("search"):
            result = _run_search(directory, dataset, targets[0], request["search"], configs)
        else:
            result = train(dataset, targets if len(targets) > 1 else targets[0],
                           callbacks=[ProgressFile(directory)], **configs)
        cancelled = bool(result.stop_reason and "cancel" in result.stop_reason)
        _update_status(
            directory,
            status="cancelled" if cancelled else "done",
            ended=_now(),
            stop_reason=result.stop_reason,
            model_path=str(result.path) if result.path else None,
            metrics=_json_safe(result.metrics),
        )
        print(f"[{_now()}] {'cancelled' if cancelled else 'done'}: saved {result.path}", flush=True)
        return 0
    except BaseException as exc:  # noqa: BLE001 - every failure must end up in status.json
        if isinstance(exc, KeyboardInterrupt) and (directory / CANCEL_FILE).exists():
            _update_status(
                directory,
                status="cancelled",
                ended=_now(),
                stop_reason="stopped at once by user (nothing saved)",
            )
            return 0
        traceback.print_exc()
        message = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, KeyboardInterrupt):
            message = "interrupted (the process was stopped)"
        _update_status(
            directory, status="failed", ended=_now(), error=f"{type(exc).__name__}: {message}"
        )
        return 1


def _on_sigterm(signum, frame):  # pragma: no cover - exercised through a subprocess
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m engine.apps.jobs.training <job_dir>", file=sys.stderr)
        return 2
    directory = Path(args[0])
    if not (directory / REQUEST_FILE).is_file():
        print(f"error: {directory} has no {REQUEST_FILE}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)
    return run_job(directory)


if __name__ == "__main__":
    sys.exit(main())
