"""Screening and prediction on a Dask cluster: ``--dask local:N`` or ``--dask tcp://HOST:PORT``.

Candidates are cut into partitions of ``partition_size`` entries and each goes through the same
code as in one process, on a worker (:mod:`engine.apps.screening.partitions`), so the rows are
the same; the ranking runs on the driver (:func:`engine.apps.screening.ranking.rank_candidates`).

At most ``2 × workers`` partitions are in flight, so memory stays bounded on the driver as well
as on the workers (``LocalCluster`` workers get ``memory_limit``; Dask pauses and restarts a
worker that exceeds it). A partition that raises, or whose worker dies, is retried ``retries``
times; one that still fails is reported with the entries it held, and every finished partition
is written exactly once (rows stream into ``<output>.parts/``, one Parquet file per partition,
then are put in reading order in ``<output>``: :mod:`engine.apps.screening.parquet`). Nothing
here is specific to one machine: any ``distributed`` scheduler address works (e.g. one started
by ``dask-jobqueue``).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from engine.apps.screening.candidates import DEFAULT_CHUNK_SIZE
from engine.apps.screening.electrolyte import Reference, resolve_electrolyte
from engine.apps.screening.filters import Filters, property_models
from engine.apps.screening.measured import measured_table
from engine.apps.screening.parquet import ParquetStream, parquet_path
from engine.apps.screening.partitions import (
    DEFAULT_PARTITION_SIZE,
    Partition,
    PartitionResult,
    expected_entries,
    partitions,
    predict_partition,
    screen_partition,
)
from engine.apps.screening.predict import add_note, empty_predictions, loaded_model
from engine.apps.screening.ranking import ScreenResult, rank_candidates
from engine.io import ReadError, ReadLimits

__all__ = [
    "DaskRun",
    "PartitionFailure",
    "dask_client",
    "predict_dask",
    "run_partitions",
    "screen_dask",
    "screen_predictions_dask",
]

DEFAULT_RETRIES = 2
DEFAULT_WORKER_MEMORY = "3GiB"


def _missing_dask() -> ImportError:
    """The error raised when the optional Dask packages are not installed."""
    return ImportError(
        "--dask needs the optional packages dask, distributed and pyarrow: "
        "pip install 'crystal-screen[dask]'"
    )


@contextmanager
def dask_client(spec: str, *, memory_limit: str = DEFAULT_WORKER_MEMORY):
    """A ``distributed.Client`` for ``local:N`` (a new ``LocalCluster`` of N single-threaded
    worker processes with ``memory_limit`` each) or a scheduler address ``tcp://HOST:PORT``."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise _missing_dask() from None
    kind, _, rest = spec.partition(":")
    if kind == "local":
        try:
            n = int(rest)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"--dask {spec!r}: local:N needs a positive number of workers")
        with (
            LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                memory_limit=memory_limit,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
    elif kind in ("tcp", "tls", "ucx", "inproc"):
        try:
            client = Client(spec, timeout="30s")
        except OSError as exc:
            raise ValueError(f"--dask {spec!r}: cannot reach the scheduler ({exc})") from None
        with client:
            yield client
    else:
        raise ValueError(f"--dask {spec!r}: give local:N or a scheduler address tcp://HOST:PORT")


# ----------------------------------------------------------------------------------------------
# Driver


@dataclass(frozen=True)
class PartitionFailure:
    """A partition that still failed after its retries: its entries are not in the output."""

    index: int
    label: str
    n_entries: int
    reason: str


def run_partitions(
    client,
    parts: Iterator[Partition],
    fn: Callable,
    *args,
    retries: int = DEFAULT_RETRIES,
    max_in_flight: int | None = None,
) -> Iterator[tuple[Partition, PartitionResult | None, str | None]]:
    """Run ``fn(partition, *args)`` on the cluster, at most ``max_in_flight`` at a time
    (default 2 × workers), each retried ``retries`` times; yields ``(partition, result, None)``
    or ``(partition, None, reason)`` as they finish, each partition exactly once."""
    from distributed import as_completed

    if max_in_flight is None:
        max_in_flight = 2 * max(1, len(client.scheduler_info().get("workers", {})))
    pending: dict = {}
    done = as_completed()

    def submit(part: Partition) -> None:
        future = client.submit(
            fn,
            part,
            *args,
            retries=retries,
            pure=False,
            key=f"{fn.__name__}-{part.index}-{os.urandom(4).hex()}",
        )
        pending[future.key] = part
        done.add(future)

    for part in itertools.islice(parts, max_in_flight):
        submit(part)
    for future in done:
        part = pending.pop(future.key)
        if future.status == "finished":
            yield part, future.result(), None
        else:
            exc = future.exception()
            yield part, None, f"{type(exc).__name__}: {str(exc).strip() or 'no message'}"
        future.release()
        nxt = next(parts, None)
        if nxt is not None:
            submit(nxt)


@dataclass
class DaskRun:
    """The outcome of a Dask run.

    Attributes:
        table: every row in reading order (``screen``:
            :data:`engine.apps.screening.predict.PREDICTION_COLUMNS`).
        errors: entries that could not be used, plus one per failed partition.
        notes: notes from the workers (deduplicated).
        failures: partitions that failed after their retries.
        n_read: entries met; n_partitions: partitions run; worker_pids: processes that worked.
    """

    table: pd.DataFrame
    errors: list[ReadError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failures: list[PartitionFailure] = field(default_factory=list)
    n_read: int = 0
    n_partitions: int = 0
    worker_pids: set[int] = field(default_factory=set)


def _drive(
    client,
    sources,
    fn,
    args,
    *,
    partition_size: int,
    retries: int,
    stream: ParquetStream,
    progress: bool,
    limits: ReadLimits | None,
) -> DaskRun:
    """Run ``fn(partition, *args)`` over the partitions of ``sources``, streaming each result's
    rows to ``stream``; failed partitions become errors (their entries are not in the output)."""
    from tqdm.auto import tqdm

    run = DaskRun(table=pd.DataFrame())
    total = expected_entries(sources, limits=limits) if progress else None
    with tqdm(total=total, unit="entries", disable=not progress, smoothing=0.1) as bar:
        for part, result, failure in run_partitions(
            client, partitions(sources, partition_size, limits=limits), fn, *args, retries=retries
        ):
            run.n_partitions += 1
            if failure is not None:
                run.failures.append(
                    PartitionFailure(part.index, part.label, part.n_entries, failure)
                )
                run.errors.append(
                    ReadError(
                        source=part.label,
                        reason=(
                            f"partition failed after {retries} retries, its {part.n_entries} entries "
                            f"are not in the output: {failure}"
                        ),
                    )
                )
            else:
                stream.add(part.index, result.table)
                run.errors.extend(result.errors)
                run.notes.extend(n for n in result.notes if n not in run.notes)
                run.n_read += result.n_read
                run.worker_pids.add(result.pid)
            bar.update(part.n_entries)
    run.failures.sort(key=lambda f: f.index)
    return run


def _portable(model) -> str:
    """How workers should load ``model``: shipped models by name (installed everywhere), others
    by directory (which the workers must see, e.g. on a shared file system)."""
    from engine.core.config import shipped_model_dir

    if model.path is None or Path(model.path).parent == shipped_model_dir():
        return model.name
    return str(Path(model.path).resolve())


def screen_predictions_dask(
    client,
    sources,
    model,
    *,
    eform_model=None,
    gap_model=None,
    filters: Filters | None = None,
    output: str | Path,
    partition_size: int = DEFAULT_PARTITION_SIZE,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    batch_size: int = 64,
    retries: int = DEFAULT_RETRIES,
    progress: bool = True,
    limits: ReadLimits | None = None,
    disorder=None,
) -> DaskRun:
    """:func:`engine.apps.screening.predict.predict_candidates` over ``sources`` on the cluster
    of ``client``.

    Rows stream to ``<output>.parts/`` (one Parquet file per partition) as partitions finish
    (the folder is removed at the end, kept if the run is interrupted); the returned
    :attr:`DaskRun.table` holds them in reading order (rank them with
    :func:`engine.apps.screening.ranking.rank_candidates`). Models are loaded LoadedModels, names or
    directories.
    """
    refs = [
        None if m is None else _portable(loaded_model(m)) for m in (model, eform_model, gap_model)
    ]
    stream = ParquetStream(Path(output))
    run = _drive(
        client,
        sources,
        screen_partition,
        (*refs, filters, chunk_size, batch_size, disorder),
        partition_size=partition_size,
        retries=retries,
        stream=stream,
        progress=progress,
        limits=limits,
    )
    table = stream.read()
    stream.discard()
    if table is None:
        table = empty_predictions()
    run.table = table
    return run


def predict_dask(
    cluster,
    sources,
    model,
    *,
    output: str | Path,
    partition_size: int = DEFAULT_PARTITION_SIZE,
    batch_size: int = 64,
    retries: int = DEFAULT_RETRIES,
    memory_limit: str = DEFAULT_WORKER_MEMORY,
    progress: bool = True,
    limits: ReadLimits | None = None,
) -> DaskRun:
    """:func:`engine.inference.prediction.predict` over ``sources`` on ``cluster`` (a ``Client``, or
    ``local:N`` / ``tcp://HOST:PORT``); the rows stream to ``output`` (Parquet, reading order
    at the end). :attr:`DaskRun.table` is left empty (read ``output``)."""
    output = parquet_path(output)
    ref = _portable(loaded_model(model))
    stream = ParquetStream(output)
    with _connected(cluster, memory_limit) as client:
        run = _drive(
            client,
            sources,
            predict_partition,
            (ref, batch_size),
            partition_size=partition_size,
            retries=retries,
            stream=stream,
            progress=progress,
            limits=limits,
        )
    run.table = pd.DataFrame()
    stream.finish()
    stream.discard()
    return run


@contextmanager
def _connected(cluster, memory_limit: str):
    """``cluster`` as a client: a spec string is connected (and closed after), a client is used."""
    if isinstance(cluster, str):
        with dask_client(cluster, memory_limit=memory_limit) as client:
            yield client
    else:
        yield cluster


def screen_dask(
    cluster,
    sources,
    electrolyte,
    model,
    *,
    output,
    measured=None,
    filters: Filters | None = None,
    eform_model=None,
    gap_model=None,
    partition_size: int = DEFAULT_PARTITION_SIZE,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    batch_size: int = 64,
    retries: int = DEFAULT_RETRIES,
    memory_limit: str = DEFAULT_WORKER_MEMORY,
    progress: bool = True,
    limits: ReadLimits | None = None,
    disorder=None,
) -> tuple[ScreenResult, DaskRun]:
    """:func:`engine.apps.screening.ranking.screen` with the predictions run on ``cluster`` (a
    ``Client``, or ``local:N`` / ``tcp://HOST:PORT``); the ranking is the same, on the driver."""
    output = parquet_path(output)
    model = loaded_model(model)
    measured = measured_table(measured)
    picked, notes = property_models(filters, eform_model, gap_model)
    if not isinstance(electrolyte, Reference):
        electrolyte = resolve_electrolyte(
            electrolyte,
            model,
            measured=measured,
            batch_size=batch_size,
            device="cpu",
            limits=limits,
            disorder=disorder,
        )
    with _connected(cluster, memory_limit) as client:
        run = screen_predictions_dask(
            client,
            sources,
            model,
            eform_model=picked["e_form"],
            gap_model=picked["band_gap"],
            filters=filters,
            output=output,
            partition_size=partition_size,
            chunk_size=chunk_size,
            batch_size=batch_size,
            retries=retries,
            progress=progress,
            limits=limits,
            disorder=disorder,
        )
    table, filter_notes = rank_candidates(
        run.table, electrolyte, measured=measured, filters=filters
    )
    for note in [*run.notes, *filter_notes]:
        add_note(notes, note)
    result = ScreenResult(
        table=table,
        electrolyte=electrolyte,
        errors=run.errors,
        notes=notes,
        model_name=model.name,
        n_read=run.n_read,
    )
    return result, run
