"""Typed files of a background training job: request, status and progress, and their I/O.

A job talks to the outside world only through files in its directory
``home_dir()/jobs/<job_id>/``:

    request.json    :class:`JobRequest`, what to train (written once by the launcher)
    status.json     :class:`JobStatus`, the explicit :class:`JobState` (queued → running →
                    finished | failed | cancelled), pid, times, error, model path and metrics
    progress.json   :class:`JobProgress`, per-epoch history written by
                    :class:`engine.training.ProgressFile`
    search.csv      a hyperparameter-search job's trials so far
    log.txt         the process's stdout and stderr (tracebacks end up here)
    cancel          a cancel request; training stops between two batches

Status files of older versions (a ``status`` key with ``done`` instead of ``state`` with
``finished``, no ``targets``) are read as the same :class:`JobStatus`.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from engine.core.config import GraphConfig, SplitConfig, TrainConfig
from engine.io.output import atomic_write

__all__ = [
    "CANCEL_FILE",
    "LOG_FILE",
    "PROGRESS_FILE",
    "REQUEST_FILE",
    "SEARCH_FILE",
    "STATUS_FILE",
    "JobProgress",
    "JobRequest",
    "JobState",
    "JobStatus",
    "SearchRequest",
    "now",
    "read_progress",
    "read_request",
    "read_status",
    "update_status",
    "write_json",
]

REQUEST_FILE = "request.json"
STATUS_FILE = "status.json"
PROGRESS_FILE = "progress.json"
LOG_FILE = "log.txt"
CANCEL_FILE = "cancel"
SEARCH_FILE = "search.csv"
_LOCK_FILE = ".status.lock"


class JobState(str, Enum):
    """Where a job stands; ``queued`` and ``running`` are active, the others final."""

    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def active(self) -> bool:
        """True while the job's process should be alive."""
        return self in (JobState.QUEUED, JobState.RUNNING)

    @property
    def final(self) -> bool:
        """True for a state the job never leaves."""
        return not self.active

    def __str__(self) -> str:
        return self.value


#: Values of ``status`` in status files of older versions that mean another state now.
_LEGACY_STATES = {"done": JobState.FINISHED.value}


def now() -> datetime:
    """The current UTC time to the second (timestamps of the status file)."""
    return datetime.now(timezone.utc).replace(microsecond=0)


class SearchRequest(BaseModel):
    """A hyperparameter search instead of one training (see
    :func:`engine.training.search.hyperparameter_search`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    grid: dict[str, list[Any]]
    n_trials: int | None = None


class JobRequest(BaseModel):
    """What a training job does: its dataset, targets, configs and the model it saves."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["train"] = "train"
    dataset_path: str
    targets: list[str] = Field(min_length=1)
    query: str | None = None
    limit: int | None = None
    name: str
    out: str
    model: dict[str, Any]  # a model config of any family, as ``config.model_dump()``
    graph: GraphConfig = GraphConfig()
    training: TrainConfig = TrainConfig()
    split: SplitConfig = SplitConfig()
    search: SearchRequest | None = None


class JobStatus(BaseModel):
    """The state of a training job, as recorded in ``status.json`` and refreshed on reading.

    ``epoch``, ``epochs`` and ``unit`` (``epoch`` or ``trial`` for a search) come from the
    progress file; ``pid_created`` (the process's start time, seconds since the epoch) tells
    the job's process from a later one that got the same pid.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    kind: Literal["train"] = "train"
    state: JobState
    name: str | None = None
    target: str | None = None
    targets: list[str] = []
    dataset: str | None = None
    family: str | None = None
    created: datetime | None = None
    started: datetime | None = None
    ended: datetime | None = None
    pid: int | None = None
    pid_created: float | None = None
    epoch: int = 0
    epochs: int | None = None
    unit: Literal["epoch", "trial"] = "epoch"
    error: str | None = None
    stop_reason: str | None = None
    model_path: str | None = None
    metrics: dict[str, dict[str, Any]] = {}

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        """Older status files: ``status`` (``done`` for finished) and no ``targets``."""
        if isinstance(data, dict) and "state" not in data and "status" in data:
            data = dict(data)
            old = data.pop("status")
            data["state"] = _LEGACY_STATES.get(old, old)
            if not data.get("targets") and data.get("target"):
                data["targets"] = [data["target"]]
        return data


class JobProgress(BaseModel):
    """``progress.json``: completed epochs (or trials), the per-epoch history (dicts with
    ``train_loss``, ``val_loss``, ``train_mae``, ``val_mae``, ``val_r``, ``lr``, ``seconds``)
    and the stop reason; empty before the first epoch."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    epoch: int = 0
    epochs: int | None = None
    history: list[dict[str, Any]] = []
    stop_reason: str | None = None
    unit: Literal["epoch", "trial"] = "epoch"


def write_json(path: Path, data: BaseModel | dict) -> None:
    """Write a model or a plain dict as JSON, atomically."""
    text = (
        data.model_dump_json(indent=2)
        if isinstance(data, BaseModel)
        else json.dumps(data, indent=2, default=str)
    )
    atomic_write(path, lambda tmp: tmp.write_text(text))


def _read(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_request(directory: Path) -> JobRequest:
    """The job's request.

    Raises:
        ValueError: the file is missing, not JSON or not a valid request.
    """
    data = _read(directory / REQUEST_FILE)
    if data is None:
        raise ValueError(f"{directory / REQUEST_FILE} is missing or not valid JSON")
    return JobRequest.model_validate(data)


def read_status(directory: Path) -> JobStatus | None:
    """The recorded status, or None when ``status.json`` is missing or unreadable."""
    data = _read(directory / STATUS_FILE)
    if data is None:
        return None
    try:
        return JobStatus.model_validate(data)
    except ValidationError:
        return None


def read_progress(directory: Path) -> JobProgress:
    """The job's progress (empty when there is none yet or the file is unreadable)."""
    data = _read(directory / PROGRESS_FILE) or {}
    try:
        return JobProgress.model_validate(data)
    except ValidationError:
        return JobProgress()


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive lock of the job's status between processes (launcher, worker, pollers)."""
    with open(directory / _LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def update_status(directory: Path, **fields: Any) -> JobStatus:
    """Merge ``fields`` into ``status.json`` under a lock and return the new status.

    ``fields`` must make a valid status together with what is recorded (for a new file:
    ``id`` and ``state``).
    """
    with _locked(directory):
        old = read_status(directory)
        status = JobStatus.model_validate({**(old.model_dump() if old else {}), **fields})
        write_json(directory / STATUS_FILE, status)
    return status
