"""Labelled structure datasets: loading, filtering and hashing (splits: :mod:`engine.io.splits`).

Three layouts load with :func:`load_dataset`:

* JSON lines (``.jsonl``/``.jsonl.gz``): one record per line with ``lattice`` (3×3, Å),
  ``species`` and ``frac_coords``; every other scalar key becomes a table column.
* The original CGCNN folder: ``id_prop.csv`` without a header (id, then one or more targets,
  named ``target``, ``target_1``, …) and ``<id>.cif`` beside it.
* A CSV file with a header whose id column is ``id`` (or ``material_id``/``name``/… or else the
  first column), joined by file stem or structure id to structure files in the CSV's folder.

Anything else :func:`engine.io.read_structures` can read (a folder, a zip, a CIF) loads as an
unlabelled dataset with only the ``id``, ``formula`` and ``n_sites`` columns. Every structure is
read through :func:`engine.io.iter_entries` under one :class:`~engine.io.ReadLimits` budget.

Labels are checked: an id that appears twice with different labels is refused (every copy is an
error), a repeated id with the same labels is kept once, a non-numeric cell in a numeric label
column is an error naming its line, and a label CSV with a header but no rows is an error.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from engine.core.config import PROJECT_ROOT, data_dir
from engine.io import (
    NamedStructure,
    ReadError,
    ReadLimits,
    detect_format,
    display_name,
    iter_entries,
    make_limits,
    read_structures,
)
from engine.io.labels import (
    BASE_COLUMNS,
    dedupe_ids,
    finite_labels,
    make_table,
    read_label_csv,
    scalar_fields,
)

__all__ = [
    "LabelledDataset",
    "find_datasets",
    "load_dataset",
    "resolve_source",
]


@dataclass
class LabelledDataset:
    """Structures with a table of labels and metadata, one row per structure.

    Attributes:
        name: short name, e.g. ``"aflow_agl/structures"`` or the folder name.
        items: the structures, in table order.
        table: one row per item: ``id``, ``formula`` (pymatgen reduced formula), ``n_sites``,
            then every scalar column of the source (a source column clashing with these three is
            renamed ``source_<name>``).
        errors: entries that could not be loaded.
        source: the path as given.
    """

    name: str
    items: list[NamedStructure]
    table: pd.DataFrame
    errors: list[ReadError] = field(default_factory=list)
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.table) != len(self.items):
            raise ValueError(
                f"table has {len(self.table)} rows but there are {len(self.items)} structures"
            )
        self.table = self.table.reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return (
            f"LabelledDataset(name={self.name!r}, rows={len(self)}, errors={len(self.errors)}, "
            f"columns={list(self.table.columns)})"
        )

    @property
    def ids(self) -> list[str]:
        """Row ids."""
        return [str(x) for x in self.table["id"]]

    @property
    def structures(self) -> list[Structure]:
        """The pymatgen structures, in table order."""
        return [item.structure for item in self.items]

    def numeric_columns(self) -> list[str]:
        """Columns that can serve as regression targets: int/float columns except ``n_sites``."""
        out = []
        for col in self.table.columns:
            if col in BASE_COLUMNS:
                continue
            dtype = self.table[col].dtype
            if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
                continue
            out.append(str(col))
        return out

    def targets(self, column: str) -> np.ndarray:
        """One numeric column as float64 (NaN where missing).

        Raises:
            KeyError: when ``column`` is not a numeric column; the message lists those there are.
        """
        numeric = self.numeric_columns()
        if column not in numeric:
            what = "is not numeric" if column in self.table.columns else "does not exist"
            raise KeyError(
                f"column {column!r} {what} in dataset {self.name!r}; numeric columns: "
                + (", ".join(numeric) if numeric else "(none)")
            )
        return self.table[column].to_numpy(dtype=np.float64, na_value=np.nan)

    def subset(self, indices: Sequence[int] | np.ndarray) -> LabelledDataset:
        """The rows at ``indices`` (integer positions or a boolean mask), errors kept."""
        idx = np.asarray(indices)
        if idx.dtype == bool:
            if len(idx) != len(self):
                raise ValueError(f"boolean mask has {len(idx)} entries for {len(self)} rows")
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64, copy=False).reshape(-1)
        return LabelledDataset(
            name=self.name,
            items=[self.items[int(i)] for i in idx],
            table=self.table.iloc[idx].reset_index(drop=True),
            errors=list(self.errors),
            source=self.source,
        )

    def query(self, expr: str) -> LabelledDataset:
        """Rows matching a :meth:`pandas.DataFrame.query` expression, e.g. ``"n_sites <= 24"``.

        Raises:
            ValueError: for an expression pandas cannot evaluate (the message lists the columns;
                quote names with spaces in backticks).
        """
        try:
            selected = self.table.query(expr)
        except Exception as exc:
            msg = " ".join(str(exc).split()) or type(exc).__name__
            raise ValueError(
                f"invalid query {expr!r}: {msg}. Columns: {', '.join(map(str, self.table.columns))}"
            ) from exc
        return self.subset(selected.index.to_numpy())

    def dropna(self, column: str) -> LabelledDataset:
        """Rows where ``column`` has a value.

        Raises:
            KeyError: when the column does not exist.
        """
        if column not in self.table.columns:
            raise KeyError(
                f"no column {column!r} in dataset {self.name!r}; columns: "
                + ", ".join(map(str, self.table.columns))
            )
        return self.subset(self.table[column].notna().to_numpy())

    def content_hash(self) -> str:
        """SHA-256 (hex) of ids, lattices, species, fractional coordinates (rounded to 1e-6) and
        the numeric columns. Stable across runs and machines; changes when any of these does."""
        h = hashlib.sha256()
        h.update(b"crystal-screen dataset v1\0")
        for item in self.items:
            s = item.structure
            h.update(item.id.encode())
            h.update(b"\0")
            h.update(",".join(site.species_string for site in s).encode())
            h.update(b"\0")
            h.update(_canonical_floats(s.lattice.matrix))
            h.update(_canonical_floats(s.frac_coords))
        for col in ["n_sites", *self.numeric_columns()]:
            h.update(f"\0col:{col}\0".encode())
            values = self.table[col].to_numpy(dtype=np.float64, na_value=np.nan)
            values = np.where(np.isnan(values), np.nan, values + 0.0)
            h.update(np.ascontiguousarray(values, dtype="<f8").tobytes())
        return h.hexdigest()


def _canonical_floats(a: np.ndarray) -> bytes:
    rounded = np.round(np.asarray(a, dtype=np.float64), 6) + 0.0  # + 0.0 turns -0.0 into 0.0
    return np.ascontiguousarray(rounded, dtype="<f8").tobytes()


# ----------------------------------------------------------------------------------------------
# Loading


def _dataset_name(path: Path) -> str:
    if path.is_dir():
        return path.name or str(path)
    stem = path.name
    for ext in (".gz", ".jsonl", ".json", ".csv", ".zip", ".cif"):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
    return f"{path.parent.name}/{stem}" if path.parent.name else stem


def _load_jsonl(path: Path, *, limits: ReadLimits, limit: int | None) -> LabelledDataset:
    items: list[NamedStructure] = []
    rows: list[dict] = []
    errors: list[ReadError] = []
    nested: set[str] = set()  # keys holding a dict/list in some record: never table columns
    n = 0
    for entry in iter_entries(path, limits=limits):
        if limit is not None and n >= limit:
            break
        if isinstance(entry, NamedStructure):
            n += 1
            items.append(entry)
            rows.append(scalar_fields(dict(entry.fields), nested))
        elif isinstance(entry, ReadError):
            n += 1
            errors.append(entry)
    if nested:
        rows = [{k: v for k, v in row.items() if k not in nested} for row in rows]
    items, rows, dup_errors = dedupe_ids(items, rows)
    table, label_errors = finite_labels(make_table(items, rows), items)
    return LabelledDataset(
        name=_dataset_name(path),
        items=items,
        table=table,
        errors=errors + dup_errors + label_errors,
        source=str(path),
    )


def _structure_files_by_stem(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.name.startswith("."):
            continue
        fmt = detect_format(p.name)
        if fmt in (None, "zip", "jsonl"):
            continue
        stem = p.name
        if stem.lower().endswith(".gz"):
            stem = stem[:-3]
        stem = os.path.splitext(stem)[0] if "." in stem else stem
        # prefer .cif when several formats share a stem (CGCNN layout)
        if stem not in out or p.suffix.lower() == ".cif":
            out[stem] = p
    return out


def _load_labelled_csv(
    csv_path: Path, folder: Path, *, limits: ReadLimits, limit: int | None, source: str, name: str
) -> LabelledDataset:
    ids, labels, linenos, errors = read_label_csv(csv_path, limit=limit, limits=limits)
    by_stem = _structure_files_by_stem(folder)
    found: dict[str, NamedStructure] = {}
    failed: dict[str, ReadError] = {}

    for ident in dict.fromkeys(ids):  # unique, in order
        p = by_stem.get(ident)
        if p is None:
            continue
        batch = read_structures(p, limits=limits, name=f"{display_name(folder.resolve())}/{p.name}")
        match = [it for it in batch.items if it.id == ident] or (
            batch.items if len(batch.items) == 1 and not batch.errors else []
        )
        if len(match) == 1:
            found[ident] = NamedStructure(ident, match[0].structure, match[0].source)
        elif batch.errors:
            failed[ident] = batch.errors[0]
        else:
            failed[ident] = ReadError(
                p.name, f"holds {len(batch.items)} structures; expected the one with id '{ident}'"
            )

    missing = [i for i in dict.fromkeys(ids) if i not in found and i not in failed]
    if missing:
        # ids may name entries inside multi-structure files (CIF blocks, JSON lines, archives)
        used = {by_stem[i] for i in list(found) + list(failed) if i in by_stem}
        wanted = set(missing)
        # the whole folder as one read; files already joined by stem are not read again
        for entry in iter_entries(folder, limits=limits, name=display_name(folder.resolve())):
            if isinstance(entry, NamedStructure):
                if entry.id in wanted and entry.id not in found:
                    found[entry.id] = entry
            elif isinstance(entry, ReadError) and not _is_used(entry.source, folder, used):
                errors.append(entry)

    items: list[NamedStructure] = []
    keep: list[int] = []
    for k, (ident, lineno) in enumerate(zip(ids, linenos, strict=True)):
        if ident in found:
            items.append(found[ident])
            keep.append(k)
        elif ident in failed:
            err = failed[ident]
            errors.append(
                ReadError(err.source, f"{err.reason} (id '{ident}', {csv_path.name} line {lineno})")
            )
        elif not ident:
            errors.append(ReadError(f"{csv_path.name} line {lineno}", "the row has no id"))
        else:
            errors.append(
                ReadError(
                    f"{csv_path.name} line {lineno}",
                    f"no structure found for id '{ident}' (looked for {ident}.cif and other "
                    f"structure files in {folder.name or folder})",
                )
            )
    label_rows = labels.iloc[keep].reset_index(drop=True)
    items, rows, dup_errors = dedupe_ids(items, label_rows.to_dict("records"))
    label_rows = pd.DataFrame.from_records(rows, columns=list(labels.columns))
    table = make_table(items, [], columns=[])
    renames = {c: f"source_{c}" for c in label_rows.columns if c in BASE_COLUMNS}
    table = pd.concat([table, label_rows.rename(columns=renames)], axis=1)
    table, label_errors = finite_labels(table, items)
    return LabelledDataset(
        name=name,
        items=items,
        table=table,
        errors=errors + dup_errors + label_errors,
        source=source,
    )


def _is_used(label: str, folder: Path, used: set[Path]) -> bool:
    """Whether an error of the folder-wide read belongs to a file already joined by stem (or is
    the folder-level "no structure" note, meaningless when the CSV found structures)."""
    rel = label.split(" ", 1)[0].split("/", 1)
    return len(rel) < 2 or (folder / rel[1]) in used


def load_dataset(
    path: str | os.PathLike,
    *,
    max_atoms: int | None = None,
    limit: int | None = None,
    limits: ReadLimits | None = None,
) -> LabelledDataset:
    """Load a labelled structure dataset.

    Args:
        path: a ``.jsonl``/``.jsonl.gz`` file; a folder with ``id_prop.csv`` (or with one CSV
            that has a header); a CSV file with a header beside its structure files; or anything
            else :func:`engine.io.read_structures` reads (loaded without labels).
        max_atoms: structures with more sites become errors (overrides ``limits``).
        limit: read at most this many entries (lines or CSV rows, good or bad) from the source.
        limits: bounds of the read (:class:`engine.io.ReadLimits`; default its defaults).

    Returns:
        The dataset; entries that failed are listed in ``errors`` and left out of the table.

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ValueError: when a label CSV is empty, holds only a header or cannot be decoded.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"dataset not found: {p}")
    limits = make_limits(limits, max_atoms=max_atoms)
    name = _dataset_name(p)
    if p.is_file() and detect_format(p.name) == "jsonl":
        return _load_jsonl(p, limits=limits, limit=limit)
    csv_path: Path | None = None
    folder = p
    if p.is_file() and p.suffix.lower() == ".csv":
        csv_path, folder = p, p.parent
    elif p.is_dir():
        if (p / "id_prop.csv").is_file():
            csv_path = p / "id_prop.csv"
        else:
            csvs = sorted(q for q in p.glob("*.csv") if not q.name.startswith("."))
            if len(csvs) == 1:
                csv_path = csvs[0]
    if csv_path is not None:
        return _load_labelled_csv(
            csv_path, folder, limits=limits, limit=limit, source=str(path), name=name
        )
    batch = read_structures(p, limits=limits)
    items = batch.items[:limit] if limit is not None else batch.items
    return LabelledDataset(
        name=name,
        items=list(items),
        table=make_table(list(items), [], columns=[]),
        errors=list(batch.errors),
        source=str(path),
    )


def resolve_source(source: str | None) -> Path | None:
    """A dataset path recorded in a model card, found on this machine (None if absent).

    Tried in turn: as written (relative to the working folder), relative to the project root,
    and its last two parts (e.g. ``aflow_agl/structures.jsonl.gz``) inside the data directory.
    """
    if not source:
        return None
    path = Path(source).expanduser()
    candidates = [path]
    if not path.is_absolute():
        candidates.append(PROJECT_ROOT / path)
    root = data_dir()
    if root is not None and len(path.parts) >= 2:
        candidates.append(root.joinpath(*path.parts[-2:]))
    return next((c for c in candidates if c.exists()), None)


def find_datasets(root: Path | None = None) -> list[Path]:
    """Datasets under ``root`` (default: :func:`engine.core.config.data_dir`).

    Returns:
        Sorted paths of ``*.jsonl``/``*.jsonl.gz`` files and of folders holding ``id_prop.csv``,
        searched recursively (hidden folders skipped); ``[]`` when there is no data folder.
    """
    root = data_dir() if root is None else Path(root)
    if root is None or not root.is_dir():
        return []
    found: set[Path] = set()
    for pattern in ("*.jsonl", "*.jsonl.gz"):
        for p in root.rglob(pattern):
            if p.is_file() and not _hidden_under(p, root):
                found.add(p)
    for p in root.rglob("id_prop.csv"):
        if p.is_file() and not _hidden_under(p.parent, root):
            found.add(p.parent)
    return sorted(found)


def _hidden_under(p: Path, root: Path) -> bool:
    try:
        parts = p.relative_to(root).parts
    except ValueError:
        return False
    return any(part.startswith(".") for part in parts)
