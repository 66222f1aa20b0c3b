"""Parquet output of a Dask run: rows stream into ``<output>.parts/`` (one file per finished
partition) and are joined in reading order at the end; a ranked table is written as Parquet
with its top rows as CSV."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

__all__ = ["ParquetStream", "parquet_path", "write_ranked"]


class ParquetStream:
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
        """The part file of partition ``index``."""
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
        """Remove ``<output>.parts/`` (the part files)."""
        shutil.rmtree(self.parts, ignore_errors=True)


def parquet_path(output) -> Path:
    """``output`` as a path; ValueError unless it names a ``.parquet`` file."""
    if output is None or not str(output).endswith(".parquet"):
        raise ValueError(
            f"--dask streams results to Parquet: give --output NAME.parquet "
            f"(got {output or 'none'})"
        )
    return Path(output)


def write_ranked(table: pd.DataFrame, output: str | Path, summary: str | Path, top: int) -> None:
    """A ranked screening table as Parquet (``output``) and its ``top`` rows as CSV."""
    table.to_parquet(output, index=False)
    table[table["passes"]].head(top).to_csv(summary, index=False)
