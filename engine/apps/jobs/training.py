"""Background training jobs: start, poll, cancel, list, delete.

A job is a detached process (:mod:`engine.apps.jobs.worker`, started by
:mod:`engine.apps.jobs.launcher`) that talks only through files in ``home_dir()/jobs/<id>/``
(see :mod:`engine.apps.jobs.schema`). :func:`job_status` also notices a job whose process died
without saying so (killed, out of memory) and records it as failed with the end of its log.
No function here raises because of what a job did; a broken job directory reads as failed.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from engine.apps.jobs import launcher
from engine.apps.jobs.schema import (
    CANCEL_FILE,
    LOG_FILE,
    REQUEST_FILE,
    SEARCH_FILE,
    STATUS_FILE,
    JobProgress,
    JobRequest,
    JobState,
    JobStatus,
    SearchRequest,
    now,
    read_progress,
    read_request,
    read_status,
    update_status,
    write_json,
)
from engine.core.config import (
    CGCNNConfig,
    GraphConfig,
    SplitConfig,
    TrainConfig,
    home_dir,
    user_model_dir,
)

__all__ = [
    "CANCEL_GRACE_S",
    "cancel_job",
    "delete_job",
    "job_dir",
    "job_progress",
    "job_request",
    "job_status",
    "job_trials",
    "jobs_dir",
    "list_jobs",
    "read_log",
    "start_training_job",
]

#: Seconds a cancelled job gets to stop by itself (and save its best epoch) before it is killed.
CANCEL_GRACE_S = 20.0
#: Lines of the log quoted in the error of a job whose process died.
_LOG_TAIL_LINES = 25
#: A queued job without a recorded pid counts as being launched for this many seconds.
_LAUNCH_GRACE_S = 30.0
_WORKER = "engine.apps.jobs.worker"


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


def _names_in_use() -> set[str]:
    root = jobs_dir()
    statuses = (read_status(d) for d in root.iterdir()) if root.is_dir() else ()
    return {s.name for s in statuses if s is not None and s.state.active and s.name}


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
    search: dict | SearchRequest | None = None,
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
            ``{"grid": {setting: [values]}, "n_trials": int | None}`` (``training.epochs`` is
            the epochs per trial). The best trial's model is saved under ``name``.
        python: interpreter for the job (default: the running one).

    Returns:
        The job id (also the name of its folder under :func:`jobs_dir`).

    Raises:
        FileNotFoundError: the dataset path does not exist.
        ValueError: no target, or a model of that name exists already or is being trained.
    """
    from engine.store.card import safe_dir_name

    dataset_path = Path(dataset_path).expanduser().resolve()
    if not dataset_path.exists():
        raise FileNotFoundError(f"dataset not found: {dataset_path}")
    model = model or CGCNNConfig()
    targets = [target] if isinstance(target, str) else list(target)
    if not targets:
        raise ValueError("no target given")
    job_id = datetime.now().strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
    name = safe_dir_name(name or f"{model.name}-{targets[0]}-{job_id}")
    out = user_model_dir() / name
    if (out / "model.json").exists():
        raise ValueError(f"a model named {name!r} exists already ({out}); choose another name")
    if name in _names_in_use():
        raise ValueError(f"a running job is already training a model named {name!r}")

    request = JobRequest(
        dataset_path=str(dataset_path),
        targets=targets,
        query=query or None,
        limit=limit,
        name=name,
        out=str(out),
        model=model.model_dump(),
        graph=graph or GraphConfig(),
        training=training or TrainConfig(),
        split=split or SplitConfig(),
        search=SearchRequest.model_validate(search) if search is not None else None,
    )
    directory = job_dir(job_id)
    directory.mkdir(parents=True, exist_ok=False)
    write_json(directory / REQUEST_FILE, request)
    update_status(
        directory,
        id=job_id,
        state=JobState.QUEUED,
        name=name,
        target=targets[0],
        targets=targets,
        dataset=str(dataset_path),
        family=model.name,
        created=now(),
    )
    worker = launcher.launch(_WORKER, directory, directory / LOG_FILE, python=python)
    update_status(directory, pid=worker.pid, pid_created=worker.created)
    return job_id


def read_log(job_id: str, lines: int = _LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a job's log ("" when there is none)."""
    try:
        text = (job_dir(job_id) / LOG_FILE).read_text(errors="replace")
    except (OSError, ValueError):
        return ""
    # tqdm-style carriage returns: keep the last state of each line
    out = [ln.rsplit("\r", 1)[-1] for ln in text.splitlines()]
    return "\n".join(out[-lines:])


def job_progress(job_id: str) -> JobProgress:
    """The job's progress: epochs (or trials) done and the per-epoch history."""
    try:
        return read_progress(job_dir(job_id))
    except ValueError:
        return JobProgress()


def job_request(job_id: str) -> JobRequest | None:
    """What the job was asked to do (None for an unknown id or an unreadable request)."""
    try:
        return read_request(job_dir(job_id))
    except ValueError:  # also pydantic's ValidationError
        return None


def job_trials(job_id: str):  # noqa: ANN201 - pandas DataFrame or None
    """A search job's trials so far as a DataFrame (``trial``, the settings, ``val_mae``,
    ``val_r``, ``best_epoch``, ``status``, ``seconds``); None for other jobs."""
    import pandas as pd

    try:
        path = job_dir(job_id) / SEARCH_FILE
        return pd.read_csv(path) if path.is_file() else None
    except (ValueError, OSError):
        return None


def _failed(job_id: str, error: str) -> JobStatus:
    return JobStatus(id=job_id, state=JobState.FAILED, error=error)


def _with_progress(directory: Path, status: JobStatus) -> JobStatus:
    """``status`` with epoch, epochs and unit from the progress file (epochs from the request
    before the first epoch)."""
    progress = read_progress(directory)
    epochs = progress.epochs
    if epochs is None:
        try:
            epochs = read_request(directory).training.epochs
        except ValueError:
            epochs = None
    return status.model_copy(
        update={"epoch": progress.epoch, "epochs": epochs, "unit": progress.unit}
    )


def job_status(job_id: str) -> JobStatus:
    """The current state of a job.

    A job whose process is gone while it claims to be queued or running is reported (and
    recorded) as failed with the end of its log, or as cancelled when a cancel was requested.
    An unknown or invalid id gives a failed status with an error saying so.
    """
    try:
        directory = job_dir(job_id)
    except ValueError as exc:
        return _failed(job_id, str(exc))
    status = read_status(directory)
    if status is None:
        if not directory.exists():
            return _failed(job_id, f"no job with id {job_id!r}")
        return _failed(job_id, f"the job's {STATUS_FILE} is missing or unreadable")
    if status.state.active and not launcher.alive(status.pid, status.pid_created):
        launching = (
            status.pid is None
            and status.created is not None
            and (now() - status.created).total_seconds() < _LAUNCH_GRACE_S
        )
        fresh = read_status(directory)  # the process may have just finished
        if not launching and fresh is not None and fresh.state.active:
            if (directory / CANCEL_FILE).exists():
                fields = {
                    "state": JobState.CANCELLED,
                    "stop_reason": "cancelled by user (the process had stopped)",
                }
            else:
                tail = read_log(job_id)
                fields = {
                    "state": JobState.FAILED,
                    "error": "the job's process ended without reporting a result"
                    + (f"; end of its log:\n{tail}" if tail else " (its log is empty)"),
                }
            try:
                fresh = update_status(directory, ended=now(), **fields)
            except OSError:
                fresh = fresh.model_copy(update=fields)
        status = fresh or status
    return _with_progress(directory, status)


def list_jobs() -> list[JobStatus]:
    """Every job, newest first, each as :func:`job_status` reports it."""
    root = jobs_dir()
    if not root.is_dir():
        return []
    ids = sorted(
        (d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")), reverse=True
    )
    return [job_status(i) for i in ids]


def cancel_job(job_id: str, *, force: bool = False, grace_s: float = CANCEL_GRACE_S) -> JobStatus:
    """Stop a job and wait until its process is gone.

    Writes the ``cancel`` file and sends SIGTERM: training ends at the next batch, the best
    completed epoch is saved and the state becomes ``cancelled``. A process still alive after
    ``grace_s`` seconds (or at once with ``force=True``) is killed with its children, and
    nothing is saved. Cancelling a finished job changes nothing.

    Returns:
        The job's status afterwards (``cancelled``, or the final state it reached meanwhile).
    """
    status = job_status(job_id)
    if not status.state.active:
        return status
    directory = job_dir(job_id)
    (directory / CANCEL_FILE).write_text(now().isoformat())
    killed = launcher.terminate(status.pid, status.pid_created, 0.0 if force else grace_s)
    fresh = read_status(directory)
    if killed and fresh is not None and fresh.state.active:
        reason = (
            "stopped at once by user (nothing saved)"
            if force
            else f"cancelled by user; killed after {grace_s:g} s (nothing saved)"
        )
        update_status(directory, state=JobState.CANCELLED, ended=now(), stop_reason=reason)
    return job_status(job_id)


def delete_job(job_id: str, *, remove_model: bool = False) -> None:
    """Remove a finished job's folder (and, if asked, the model it saved).

    Raises:
        ValueError: when the job is still queued or running (cancel it first).
    """
    status = job_status(job_id)
    if status.state.active:
        raise ValueError(f"job {job_id} is still {status.state}; cancel it first")
    if remove_model and status.model_path:
        path = Path(status.model_path)
        if path.is_dir() and path.parent == user_model_dir():
            shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(job_dir(job_id), ignore_errors=True)
