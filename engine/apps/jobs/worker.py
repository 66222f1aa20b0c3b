"""What runs inside a training job's process: ``python -m engine.apps.jobs.worker <job_dir>``.

The worker reads ``request.json``, trains (or runs a hyperparameter search) and records the
outcome in ``status.json``: ``finished``, ``failed`` with the error, or ``cancelled`` when the
``cancel`` file exists at the end. SIGTERM is a cancel request: the handler creates that file,
and :class:`engine.training.ProgressFile` ends the epoch at the next batch (checked every
0.5 s); the best completed epoch is saved.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import psutil

from engine.apps.jobs.activity import job_threads, threads_now
from engine.apps.jobs.schema import (
    CANCEL_FILE,
    PROGRESS_FILE,
    REQUEST_FILE,
    SEARCH_FILE,
    JobRequest,
    JobState,
    now,
    read_request,
    update_status,
    write_json,
)
from engine.io.output import atomic_write

__all__ = ["cancel_handler", "main", "run_job"]


def _json_safe(metrics: dict) -> dict:
    """Metrics per split with NaN replaced by None (JSON has no NaN)."""
    return {
        part: {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in m.items()}
        for part, m in metrics.items()
    }


def _run_search(directory: Path, dataset, request: JobRequest, configs: dict):
    """A search job: trials counted in ``progress.json``, the table in ``search.csv``; returns
    the best trial's TrainResult with a ``stop_reason`` that names the winning settings.

    A cancel request ends the current trial within a batch (its best epoch counts) and then the
    search."""
    import pandas as pd

    from engine.training.callbacks import CancelFile
    from engine.training.search import hyperparameter_search

    rows: list[dict] = []

    def on_trial(done: int, total: int, row: dict) -> bool:
        rows.append(row)
        frame = pd.DataFrame(rows)
        atomic_write(directory / SEARCH_FILE, lambda tmp: frame.to_csv(tmp, index=False))
        write_json(
            directory / PROGRESS_FILE,
            {"epoch": done, "epochs": total, "history": [], "stop_reason": None, "unit": "trial"},
        )
        print(f"[{now()}] trial {done}/{total}: val MAE {row['val_mae']:.4g}", flush=True)
        return (directory / CANCEL_FILE).exists()

    training = configs["training"]
    result = hyperparameter_search(
        dataset,
        request.targets[0],
        grid=request.search.grid,
        n_trials=request.search.n_trials,
        epochs=training.epochs,
        seed=training.seed,
        on_trial=on_trial,
        callbacks=[CancelFile(directory)],
        **configs,
    )
    atomic_write(directory / SEARCH_FILE, lambda tmp: result.table.to_csv(tmp, index=False))
    best = ", ".join(f"{k}={v}" for k, v in result.best.items())
    stopped = "cancelled by user; " if (directory / CANCEL_FILE).exists() else ""
    result.best_result.stop_reason = f"{stopped}best of {len(result.table)} trials: {best}"
    return result.best_result


def _train(directory: Path, request: JobRequest):
    """Load the dataset and train as requested; None when cancelled before training.

    The heavy imports happen here, after the worker has recorded that it runs."""
    from engine.core.config import TrainConfig
    from engine.io.datasets import load_dataset
    from engine.models import model_config_from_dict
    from engine.training import ProgressFile, train
    from engine.training.callbacks import AdaptiveThreads

    print(f"[{now()}] loading {request.dataset_path}", flush=True)
    dataset = load_dataset(request.dataset_path, limit=request.limit)
    if dataset.errors:
        print(
            f"{len(dataset.errors)} entries could not be used, e.g. {dataset.errors[0]}", flush=True
        )
    if request.query:
        dataset = dataset.query(request.query)
    targets = request.targets
    for target in targets:
        if target not in dataset.numeric_columns():
            raise ValueError(
                f"target {target!r} is not a numeric column of {dataset.name}; numeric "
                f"columns: {', '.join(dataset.numeric_columns()) or 'none'}"
            )
    if (directory / CANCEL_FILE).exists():
        return None
    print(
        f"[{now()}] training on {len(dataset)} structures, "
        f"target{'s' if len(targets) > 1 else ''} {', '.join(targets)}",
        flush=True,
    )
    training: TrainConfig = request.training
    callbacks = [ProgressFile(directory)]
    if not training.num_threads:  # share the cores with the dashboard next to the job
        training = training.model_copy(update={"num_threads": job_threads()})
        callbacks.append(AdaptiveThreads(threads_now))
    configs = {
        "model": model_config_from_dict(request.model),
        "graph": request.graph,
        "training": training,
        "split": request.split,
        "out": request.out,
        "name": request.name,
    }
    if request.search is not None:
        return _run_search(directory, dataset, request, configs)
    return train(
        dataset,
        targets if len(targets) > 1 else targets[0],
        callbacks=callbacks,
        **configs,
    )


def run_job(directory: str | os.PathLike) -> int:
    """Run the job described by ``directory/request.json`` in this process.

    Returns:
        0 when the job finished or was cancelled, 1 when it failed. The outcome is always
        recorded in ``status.json``.
    """
    directory = Path(directory)
    me = psutil.Process()
    update_status(
        directory, state=JobState.RUNNING, pid=me.pid, pid_created=me.create_time(), started=now()
    )
    try:
        result = _train(directory, read_request(directory))
        if result is None:
            update_status(
                directory,
                state=JobState.CANCELLED,
                ended=now(),
                stop_reason="cancelled by user before training started",
            )
            print(f"[{now()}] cancelled before training", flush=True)
            return 0
        cancelled = (directory / CANCEL_FILE).exists()
        update_status(
            directory,
            state=JobState.CANCELLED if cancelled else JobState.FINISHED,
            ended=now(),
            stop_reason=result.stop_reason,
            model_path=str(result.path) if result.path else None,
            metrics=_json_safe(result.metrics),
        )
        print(
            f"[{now()}] {'cancelled' if cancelled else 'finished'}: saved {result.path}", flush=True
        )
        return 0
    except BaseException as exc:  # noqa: BLE001 - every failure must end up in status.json
        traceback.print_exc()
        message = " ".join(str(exc).split()) or type(exc).__name__
        update_status(
            directory, state=JobState.FAILED, ended=now(), error=f"{type(exc).__name__}: {message}"
        )
        return 1


def cancel_handler(directory: Path) -> Callable[[int, FrameType | None], None]:
    """A signal handler that turns the signal into a cancel request of the job in
    ``directory`` (creates its ``cancel`` file, which training checks between batches)."""

    def handler(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001
        (directory / CANCEL_FILE).touch()

    return handler


def main(argv: list[str] | None = None) -> int:
    """Entry point of the worker process; SIGTERM becomes a cancel request."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m engine.apps.jobs.worker <job_dir>", file=sys.stderr)
        return 2
    directory = Path(args[0])
    if not (directory / REQUEST_FILE).is_file():
        print(f"error: {directory} has no {REQUEST_FILE}", file=sys.stderr)
        return 2

    signal.signal(signal.SIGTERM, cancel_handler(directory))
    return run_job(directory)


if __name__ == "__main__":
    sys.exit(main())
