"""Candidates cut into partitions for a Dask run, and the work a worker does on one partition.

A JSON-lines file is cut by line ranges that each worker reads itself (so the driver never
parses it); other sources (folders, zips, the SOFC examples, the generated library) are read in
chunks by the driver with :func:`engine.apps.screening.candidates.iter_candidates` and shipped
with the partition. A worker loads each model once and keeps it (:data:`WORKER_MODELS`), and
runs :func:`engine.apps.screening.predict.predict_candidates` (``screen``) or
:func:`engine.inference.prediction.predict` (``predict``) exactly as one process would, so the
rows are the same. The driver (:mod:`engine.apps.screening.dask`) submits these functions; only
:func:`worker_model` asks Dask anything (the worker's thread count).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from engine.apps.screening.candidates import count_candidates, iter_candidates
from engine.apps.screening.filters import Filters
from engine.apps.screening.predict import predict_candidates
from engine.io import (
    NamedStructure,
    ReadError,
    ReadLimits,
    StructureBatch,
    count_entries,
    detect_format,
    jsonl_records,
)

__all__ = [
    "DEFAULT_PARTITION_SIZE",
    "WORKER_MODELS",
    "Partition",
    "PartitionResult",
    "expected_entries",
    "partitions",
    "predict_partition",
    "read_partition",
    "screen_partition",
    "worker_model",
]

#: Entries per partition (structures and read errors).
DEFAULT_PARTITION_SIZE = 1000


@dataclass(frozen=True)
class Partition:
    """A slice of the candidates.

    Attributes:
        index: position in reading order (0, 1, …).
        label: what it holds, for reports (``"big.jsonl.gz records 1001-2000"``).
        path: a JSON-lines file the worker reads; ``first`` and ``n_entries`` select its
            non-empty lines (0-based), ``single`` is true when the file has one record (ids as
            :func:`engine.io.read_structures` gives them).
        batch: structures (and read errors) already read by the driver, when ``path`` is None.
        n_entries: entries it holds (structures and errors).
        limits: the input limits the worker reads ``path`` under (None: the defaults).
    """

    index: int
    label: str
    n_entries: int
    path: str | None = None
    first: int = 0
    single: bool = False
    batch: StructureBatch | None = None
    limits: ReadLimits | None = None


def _is_jsonl_file(source) -> bool:
    """Whether ``source`` is a JSON-lines file a worker can read by line ranges."""
    return (
        isinstance(source, (str, os.PathLike))
        and Path(source).is_file()
        and detect_format(str(source)) == "jsonl"
    )


def _as_list(sources) -> list:
    """``sources`` as a list of sources (a list of structures is one source)."""
    if isinstance(sources, list) and not all(isinstance(s, NamedStructure) for s in sources):
        return sources
    return [sources]


def partitions(
    sources, size: int = DEFAULT_PARTITION_SIZE, *, limits: ReadLimits | None = None
) -> Iterator[Partition]:
    """Cut ``sources`` (one or a list of what :func:`iter_candidates` reads) into partitions,
    lazily: JSON-lines files by line ranges, anything else by chunks the driver reads."""
    if size < 1:
        raise ValueError(f"partition size must be at least 1, got {size}")
    parts = _as_list(sources)
    index = itertools.count()
    for source in parts:
        if _is_jsonl_file(source):
            label = str(source)
            n = count_entries(label, limits=limits)
            for first in range(0, n, size):
                count = min(size, n - first)
                yield Partition(
                    index=next(index),
                    path=label,
                    first=first,
                    n_entries=count,
                    single=n == 1,
                    label=f"{label} records {first + 1}-{first + count}",
                    limits=limits,
                )
            continue
        for chunk in iter_candidates(source, chunk_size=size, limits=limits):
            k = next(index)
            yield Partition(
                index=k,
                batch=chunk,
                n_entries=len(chunk.items) + len(chunk.errors),
                label=f"{source if isinstance(source, str) else 'candidates'} chunk {k + 1}",
            )


def expected_entries(sources, *, limits: ReadLimits | None = None) -> int:
    """Entries the sources hold (for the progress bar), without parsing JSON lines."""
    parts = _as_list(sources)
    total = 0
    for s in parts:
        total += count_candidates(s, limits=limits)
    return total


def read_partition(part: Partition) -> StructureBatch:
    """The structures of a partition (on the worker), named as one process would name them."""
    if part.batch is not None:
        return part.batch
    batch = StructureBatch()
    for entry in jsonl_records(
        part.path, first=part.first, count=part.n_entries, single=part.single, limits=part.limits
    ):
        batch.add(entry)
    return batch


# ----------------------------------------------------------------------------------------------
# Workers

#: Models loaded in this worker process, by the reference they were loaded from (name or path).
WORKER_MODELS: dict[str, object] = {}


def worker_model(ref: str | None):
    """``ref`` loaded once per worker process (torch limited to the worker's threads)."""
    if ref is None:
        return None
    if ref not in WORKER_MODELS:
        import torch

        from engine.catalog.names import load_model

        try:
            from distributed import get_worker

            torch.set_num_threads(max(1, get_worker().state.nthreads))
        except (ImportError, ValueError, AttributeError):
            pass
        WORKER_MODELS[ref] = load_model(ref)
    return WORKER_MODELS[ref]


@dataclass
class PartitionResult:
    """What a worker sends back: rows in reading order, errors, notes, and its process id."""

    table: pd.DataFrame
    errors: list[ReadError]
    notes: list[str]
    n_read: int
    pid: int


def screen_partition(
    part: Partition,
    model: str,
    eform_model: str | None,
    gap_model: str | None,
    filters: Filters | None,
    chunk_size: int,
    batch_size: int,
    disorder=None,
) -> PartitionResult:
    """:func:`predict_candidates` of one partition (run on a worker)."""
    batch = read_partition(part)
    pred = predict_candidates(
        batch,
        worker_model(model),
        eform_model=worker_model(eform_model),
        gap_model=worker_model(gap_model),
        filters=filters,
        chunk_size=chunk_size,
        batch_size=batch_size,
        device="cpu",
        disorder=disorder,
    )
    return PartitionResult(pred.table, pred.errors, pred.notes, pred.n_read, os.getpid())


def predict_partition(part: Partition, model: str, batch_size: int) -> PartitionResult:
    """:func:`engine.inference.prediction.predict` of one partition (run on a worker)."""
    from engine.inference.prediction import predict

    batch = read_partition(part)
    pred = predict(worker_model(model), batch.items, batch_size=batch_size, device="cpu")
    return PartitionResult(
        pred.table,
        [*batch.errors, *pred.errors],
        list(pred.notes),
        len(batch.items) + len(batch.errors),
        os.getpid(),
    )
