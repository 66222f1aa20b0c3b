"""Screening and prediction on a Dask cluster: ``--dask local:N`` or ``--dask tcp://HOST:PORT``.

Candidates are cut into partitions of ``partition_size`` entries. A JSON-lines file is cut by
line ranges that each worker reads itself (so the driver never parses it); other sources
(folders, zips, the SOFC examples, the generated library) are read in chunks by the driver with
:func:`engine.apps.screening.screen.iter_candidates` and shipped to the workers. Each worker loads a model
once and keeps it (one torch thread per Dask thread); each partition goes through
:func:`engine.apps.screening.screen.predict_candidates` (``screen``) or :func:`engine.inference.prediction.predict`
(``predict``), exactly as in one process, so the rows are the same.

At most ``2 × workers`` partitions are in flight, so memory stays bounded on the driver as well
as on the workers (``LocalCluster`` workers get ``memory_limit``; Dask pauses and restarts a
worker that exceeds it). A partition that raises, or whose worker dies, is retried ``retries``
times; one that still fails is reported with the entries it held, and every finished partition
is written exactly once (rows stream into ``<output>.parts/``, one Parquet file per partition,
then are put in reading order in ``<output>``). Nothing here is specific to one
machine: any ``distributed`` scheduler address works (e.g. one started by ``dask-jobqueue``).
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from engine.apps.screening.screen import (
    DEFAULT_CHUNK_SIZE,
    Filters,
    Reference,
    ScreenResult,
    count_candidates,
    iter_candidates,
    predict_candidates,
)
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
    "DaskRun",
    "Partition",
    "PartitionFailure",
    "dask_client",
    "partitions",
    "predict_dask",
    "run_partitions",
    "screen_dask",
    "screen_predictions_dask",
    "write_ranked",
]

DEFAULT_PARTITION_SIZE = 1000
DEFAULT_RETRIES = 2
DEFAULT_WORKER_MEMORY = "3GiB"


def _missing_dask() -> ImportError:
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
# Partitions


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
    return (
        isinstance(source, (str, os.PathLike))
        and Path(source).is_file()
        and detect_format(str(source)) == "jsonl"
    )


def _as_list(sources) -> list:
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

_WORKER_MODELS: dict[str, object] = {}


def _worker_model(ref: str | None):
    """``ref`` loaded once per worker process (torch limited to the worker's threads)."""
    if ref is None:
        return None
    if ref not in _WORKER_MODELS:
        import torch

        from engine.catalog.names import load_model

        try:
            from distributed import get_worker

            torch.set_num_threads(max(1, get_worker().state.nthreads))
        except (ImportError, ValueError, AttributeError):
            pass
        _WORKER_MODELS[ref] = load_model(ref)
    return _WORKER_MODELS[ref]


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
        _worker_model(model),
        eform_model=_worker_model(eform_model),
        gap_model=_worker_model(gap_model),
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
    pred = predict(_worker_model(model), batch.items, batch_size=batch_size, device="cpu")
    return PartitionResult(
        pred.table,
        [*batch.errors, *pred.errors],
        list(pred.notes),
        len(batch.items) + len(batch.errors),
        os.getpid(),
    )


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


class _ParquetStream:
    """One Parquet file per finished partition in ``<output>.parts/`` (readable while the run
    goes on, and after a crash, e.g. with ``pyarrow.dataset``); :meth:`finish` joins them in
    reading order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.parts = path.with_name(path.name + ".parts")
        self.written: set[int] = set()
        self.schema = None
        shutil.rmtree(self.parts, ignore_errors=True)  # left by an earlier run
        self.parts.mkdir(parents=True)

    def _file(self, index: int) -> Path:
        return self.parts / f"part-{index:07d}.parquet"

    def add(self, index: int, table: pd.DataFrame) -> None:
        """Write a partition's rows (once; an empty table writes nothing)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if table.empty or index in self.written:
            return
        arrow = pa.Table.from_pandas(
            table.reset_index(drop=True), schema=self.schema, preserve_index=False
        )
        self.schema = self.schema or arrow.schema
        tmp = self._file(index).with_suffix(".tmp")
        pq.write_table(arrow, tmp)
        tmp.replace(self._file(index))  # a part file is complete or absent
        self.written.add(index)

    def read(self) -> pd.DataFrame | None:
        """Every row in reading order (None when nothing was written)."""
        import pyarrow.parquet as pq

        if not self.written:
            return None
        return pd.concat(
            [pq.read_table(self._file(i)).to_pandas() for i in sorted(self.written)],
            ignore_index=True,
        )

    def finish(self) -> int:
        """Write ``path`` in reading order, one row group per partition; returns the row count."""
        import pyarrow.parquet as pq

        rows, writer = 0, None
        for index in sorted(self.written):
            part = pq.read_table(self._file(index))
            writer = writer or pq.ParquetWriter(self.path, part.schema)
            writer.write_table(part)
            rows += part.num_rows
        if writer is not None:
            writer.close()
        return rows

    def discard(self) -> None:
        shutil.rmtree(self.parts, ignore_errors=True)


@dataclass
class DaskRun:
    """The outcome of a Dask run.

    Attributes:
        table: every row in reading order (``screen``: :data:`PREDICTION_COLUMNS`).
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
    stream: _ParquetStream,
    progress: bool,
    limits: ReadLimits | None,
) -> DaskRun:
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
    """:func:`predict_candidates` over ``sources`` on the cluster of ``client``.

    Rows stream to ``<output>.parts/`` (one Parquet file per partition) as partitions finish
    (the folder is removed at the end, kept if the run is interrupted); the returned
    :attr:`DaskRun.table` holds them in reading order (rank them with
    :func:`engine.apps.screening.screen.rank_candidates`). Models are loaded LoadedModels, names or
    directories.
    """
    from engine.apps.screening.screen import _load

    refs = [None if m is None else _portable(_load(m)) for m in (model, eform_model, gap_model)]
    stream = _ParquetStream(Path(output))
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
        from engine.apps.screening.screen import _empty_predictions

        table = _empty_predictions()
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
    from engine.apps.screening.screen import _load

    output = _parquet_path(output)
    ref = _portable(_load(model))
    stream = _ParquetStream(output)
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


def write_ranked(table: pd.DataFrame, output: str | Path, summary: str | Path, top: int) -> None:
    """A ranked screening table as Parquet (``output``) and its ``top`` rows as CSV."""
    table.to_parquet(output, index=False)
    table[table["passes"]].head(top).to_csv(summary, index=False)


def _parquet_path(output) -> Path:
    if output is None or not str(output).endswith(".parquet"):
        raise ValueError(
            f"--dask streams results to Parquet: give --output NAME.parquet "
            f"(got {output or 'none'})"
        )
    return Path(output)


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
    """:func:`engine.apps.screening.screen.screen` with the predictions run on ``cluster`` (a ``Client``,
    or ``local:N`` / ``tcp://HOST:PORT``); the ranking is the same, on the driver."""
    from engine.apps.screening.screen import (
        _add_note,
        _load,
        measured_table,
        property_models,
        rank_candidates,
        resolve_electrolyte,
    )

    output = _parquet_path(output)
    model = _load(model)
    measured = measured_table(measured)
    picked, notes = property_models(filters, eform_model, gap_model)
    if not isinstance(electrolyte, Reference):
        electrolyte = resolve_electrolyte(
            electrolyte, model, measured=measured, batch_size=batch_size, device="cpu",
            limits=limits, disorder=disorder,
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
        _add_note(notes, note)
    result = ScreenResult(
        table=table,
        electrolyte=electrolyte,
        errors=run.errors,
        notes=notes,
        model_name=model.name,
        n_read=run.n_read,
    )
    return result, run
