"""Labelled structure datasets: loading, filtering, hashing and train/val/test splits.

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

import csv
import hashlib
import io
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from engine.core.config import SplitConfig, data_dir
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

__all__ = [
    "BASE_COLUMNS",
    "LabelledDataset",
    "find_datasets",
    "load_dataset",
    "split_dataset",
]

#: Columns every dataset table starts with.
BASE_COLUMNS = ("id", "formula", "n_sites")
_STRUCTURE_KEYS = frozenset({"lattice", "species", "frac_coords"})
_ID_COLUMN_NAMES = ("id", "material_id", "mp_id", "auid", "name", "cif_id", "structure_id")
_SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}


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


def _make_table(
    items: list[NamedStructure], rows: list[dict], columns: list[str] | None = None
) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "No Pauling electronegativity for He"
        formulas = [it.structure.composition.reduced_formula for it in items]
    base = pd.DataFrame(
        {
            "id": [it.id for it in items],
            "formula": formulas,
            "n_sites": np.array([len(it.structure) for it in items], dtype=np.int64),
        }
    )
    if columns is None:
        columns = []
        seen: set[str] = set()
        for row in rows:
            for key in row:
                if key not in seen:
                    seen.add(key)
                    columns.append(key)
    if not columns:
        return base
    extra = (
        pd.DataFrame.from_records(rows, columns=columns) if rows else pd.DataFrame(columns=columns)
    )
    if "id" in extra.columns and extra["id"].astype(str).tolist() == base["id"].tolist():
        extra = extra.drop(columns="id")  # the record's own id is already the id column
    extra = extra.rename(columns={c: f"source_{c}" for c in extra.columns if c in BASE_COLUMNS})
    return pd.concat([base, extra.reset_index(drop=True)], axis=1)


def _scalar_fields(record: dict, nested: set[str]) -> dict:
    """The record's scalar fields; names of nested (dict/list) fields are added to ``nested``."""
    out = {}
    for k, v in record.items():
        if k in _STRUCTURE_KEYS:
            continue
        if isinstance(v, (dict, list, tuple)):
            nested.add(k)
        else:
            out[k] = v
    return out


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
            rows.append(_scalar_fields(dict(entry.fields), nested))
        elif isinstance(entry, ReadError):
            n += 1
            errors.append(entry)
    if nested:
        rows = [{k: v for k, v in row.items() if k not in nested} for row in rows]
    items, rows, dup_errors = _dedupe(items, rows)
    table, label_errors = _finite_labels(_make_table(items, rows), items)
    return LabelledDataset(
        name=_dataset_name(path),
        items=items,
        table=table,
        errors=errors + dup_errors + label_errors,
        source=str(path),
    )


def _finite_labels(
    table: pd.DataFrame, items: list[NamedStructure]
) -> tuple[pd.DataFrame, list[ReadError]]:
    """Infinite values in numeric label columns become missing, each with an error."""
    errors = []
    for col in table.columns:
        if col in BASE_COLUMNS or not pd.api.types.is_float_dtype(table[col].dtype):
            continue
        bad = np.flatnonzero(np.isinf(table[col].to_numpy(dtype=float)))
        for k in bad:
            errors.append(
                ReadError(
                    items[k].source,
                    f"label {col!r} = {table[col].iloc[k]} is not a finite number; left empty",
                )
            )
        if len(bad):
            table.loc[bad, col] = np.nan
    return table, errors


def _same(a: dict, b: dict) -> bool:
    """Whether two label rows agree (NaN equals NaN)."""
    if a.keys() != b.keys():
        return False
    return all(
        x == y or (pd.isna(x) and pd.isna(y)) if not isinstance(x, (list, dict)) else x == y
        for x, y in ((a[k], b[k]) for k in a)
    )


def _dedupe(
    items: list[NamedStructure], rows: list[dict]
) -> tuple[list[NamedStructure], list[dict], list[ReadError]]:
    """Drop repeated ids: same labels → the first is kept; different labels → all are errors."""
    by_id: dict[str, list[int]] = {}
    for k, item in enumerate(items):
        by_id.setdefault(item.id, []).append(k)
    drop: set[int] = set()
    errors: list[ReadError] = []
    for ident, where in by_id.items():
        if len(where) < 2:
            continue
        rows_of = [rows[k] if rows else {} for k in where]
        sources = ", ".join(items[k].source for k in where[:4])
        if all(_same(rows_of[0], r) for r in rows_of[1:]):
            drop.update(where[1:])
            errors.extend(
                ReadError(
                    items[k].source,
                    f"id '{ident}' repeats {items[where[0]].source}"
                    " with the same labels; the repeat is dropped",
                )
                for k in where[1:]
            )
        else:
            drop.update(where)
            errors.append(
                ReadError(
                    sources,
                    f"id '{ident}' appears {len(where)} times with "
                    "different labels; all copies are dropped",
                )
            )
    if not drop:
        return items, rows, []
    keep = [k for k in range(len(items)) if k not in drop]
    return [items[k] for k in keep], [rows[k] for k in keep] if rows else rows, errors


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_label_csv(
    path: Path, *, limit: int | None, limits: ReadLimits
) -> tuple[list[str], pd.DataFrame, list[int], list[ReadError]]:
    """Read a label CSV: ids, a frame of label columns, each row's line number, and errors for
    non-numeric cells of numeric columns (left empty).

    A CSV whose first row has a number in its second column has no header (CGCNN ``id_prop.csv``);
    its label columns are named ``target``, ``target_1``, ….

    Raises:
        ValueError: when the CSV is empty, holds only a header, is too large or not UTF-8.
    """
    size = path.stat().st_size
    if size > limits.file_cap():
        raise ValueError(
            f"{path.name}: the CSV is {size / 1024**2:.0f} MB, more than the "
            f"{limits.file_cap() / 1024**2:.0f} MB per-file limit"
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ValueError(
            f"{path.name} line {line}: not valid UTF-8 (byte 0x{exc.object[exc.start]:02x})"
        ) from None
    reader = csv.reader(io.StringIO(text))
    raw = [(i + 1, row) for i, row in enumerate(reader) if row and any(c.strip() for c in row)]
    if not raw:
        raise ValueError(f"{path.name}: the CSV file is empty")
    first = [c.strip() for c in raw[0][1]]
    has_header = not (len(first) >= 2 and _looks_numeric(first[1]))
    if has_header:
        header = first
        lowered = [h.lower() for h in header]
        id_col = next((lowered.index(c) for c in _ID_COLUMN_NAMES if c in lowered), 0)
        body = raw[1:]
    else:
        width = max(len(r) for _, r in raw)
        header = ["id"] + ["target" if k == 0 else f"target_{k}" for k in range(width - 1)]
        id_col = 0
        body = raw
    if not body:
        raise ValueError(f"{path.name}: the CSV has a header but no rows")
    if limit is not None:
        body = body[:limit]
    label_names = [h for k, h in enumerate(header) if k != id_col]
    ids: list[str] = []
    records: list[dict] = []
    linenos: list[int] = []
    for lineno, row in body:
        cells = [c.strip() for c in row] + [""] * (len(header) - len(row))
        ids.append(cells[id_col])
        records.append({h: cells[k] for k, h in enumerate(header) if k != id_col})
        linenos.append(lineno)
    labels = pd.DataFrame.from_records(records, columns=label_names)
    errors: list[ReadError] = []
    for col in labels.columns:
        values = labels[col].replace("", np.nan)
        converted = pd.to_numeric(values, errors="coerce")
        bad = np.flatnonzero((converted.isna() & values.notna()).to_numpy())
        # numeric when every non-empty cell is a number, or all but a few (those are errors)
        if len(bad) == 0 or len(bad) <= 0.1 * values.notna().sum():
            labels[col] = converted
            errors.extend(
                ReadError(
                    f"{path.name} line {linenos[k]}",
                    f"label {col!r} = {str(values.iloc[k])[:40]!r} is not a number; left empty",
                )
                for k in bad
            )
        else:
            labels[col] = values
    return ids, labels, linenos, errors


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
    ids, labels, linenos, errors = _read_label_csv(csv_path, limit=limit, limits=limits)
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
    items, rows, dup_errors = _dedupe(items, label_rows.to_dict("records"))
    label_rows = pd.DataFrame.from_records(rows, columns=list(labels.columns))
    table = _make_table(items, [], columns=[])
    renames = {c: f"source_{c}" for c in label_rows.columns if c in BASE_COLUMNS}
    table = pd.concat([table, label_rows.rename(columns=renames)], axis=1)
    table, label_errors = _finite_labels(table, items)
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
        table=_make_table(list(items), [], columns=[]),
        errors=list(batch.errors),
        source=str(path),
    )


def resolve_source(source: str | None) -> Path | None:
    """A dataset path recorded in a model card, found on this machine (None if absent).

    Tried in turn: as written (relative to the working folder), relative to the project root,
    and its last two parts (e.g. ``aflow_agl/structures.jsonl.gz``) inside the data directory.
    """
    from engine.core.config import PROJECT_ROOT, data_dir

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


# ----------------------------------------------------------------------------------------------
# Splits


def _group_split(
    groups: np.ndarray,
    val_fraction: float,
    test_fraction: float,
    rng: np.random.Generator,
    what: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split rows so that each group lands whole in one part. Returns row positions."""
    n = len(groups)
    uniq, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    n_groups = len(uniq)
    need_val, need_test = val_fraction > 0, test_fraction > 0
    required = 1 + int(need_val) + int(need_test)
    if n_groups < required:
        parts = "train/val/test" if required == 3 else ("train/val" if need_val else "train/test")
        raise ValueError(
            f"too small to split: {_count(n, n_groups, what)}; a {parts} split "
            f"needs at least {required}"
            + ("" if what == "rows" else " (kind='random' splits rows instead of formulas)")
        )
    order = rng.permutation(n_groups)
    target = {"test": test_fraction * n, "val": val_fraction * n}
    assign = np.empty(n_groups, dtype=object)
    count = {"train": 0, "val": 0, "test": 0}
    for g in order:
        size = int(counts[g])
        part = "train"
        for cand in ("test", "val"):
            # add the group when that brings the part's row count closer to its target
            if target[cand] > 0 and count[cand] + size / 2 < target[cand]:
                part = cand
                break
        assign[g] = part
        count[part] += size

    rank = np.empty(n_groups, dtype=np.int64)
    rank[order] = np.arange(n_groups)

    def members(part: str) -> list[int]:
        return [int(g) for g in order if assign[g] == part]

    def fill(part: str, donors: tuple[str, ...]) -> None:
        if members(part):
            return
        for donor in sorted(donors, key=lambda d: -count[d]):
            pool = members(donor)
            if len(pool) >= 2:
                g = min(pool, key=lambda x: (counts[x], rank[x]))
                assign[g] = part
                count[part] += int(counts[g])
                count[donor] -= int(counts[g])
                return

    if need_test:
        fill("test", ("train", "val"))
    if need_val:
        fill("val", ("train", "test"))
    fill("train", ("val", "test"))

    row_part = assign[inverse]
    out = tuple(
        np.flatnonzero(row_part == part).astype(np.int64) for part in ("train", "val", "test")
    )
    if len(out[0]) == 0 or (need_val and len(out[1]) == 0) or (need_test and len(out[2]) == 0):
        raise ValueError(f"too small to split: {_count(n, n_groups, what)}")
    return out  # type: ignore[return-value]


def _count(n: int, n_groups: int, what: str) -> str:
    return f"{n} rows" if what == "rows" else f"{n_groups} distinct {what} in {n} rows"


def split_dataset(dataset: LabelledDataset, config: SplitConfig) -> dict[str, np.ndarray]:
    """Split a dataset into train/validation/test row positions.

    * ``group``: seeded split by reduced formula; all polymorphs of a formula share one part and
      the val/test parts hold about ``val_fraction``/``test_fraction`` of the rows.
    * ``random``: seeded split of rows.
    * ``column``: the part named in ``config.column`` (``train``/``val``/``test``, any case;
      ``validation``/``valid``/``dev`` count as ``val``). Rows with another or no value are left
      out of all parts, so the union need not cover every row. If no row says ``test`` (and
      ``test_fraction > 0``) a test set of about ``test_fraction`` of the train rows is carved out
      of train by formula; likewise for ``val`` with ``val_fraction``.

    Returns:
        ``{"train", "val", "test"}`` → sorted, disjoint int64 row positions. The same config gives
        the same split every time. ``test`` is empty when ``test_fraction`` is 0.

    Raises:
        ValueError: when the dataset is too small to give every requested part a row.
        KeyError: when the split column does not exist.
    """
    rng = np.random.default_rng(config.seed)
    n = len(dataset)
    if n == 0:
        raise ValueError("cannot split an empty dataset")
    if config.kind == "group":
        groups = dataset.table["formula"].astype(str).to_numpy()
        train, val, test = _group_split(
            groups, config.val_fraction, config.test_fraction, rng, "reduced formulas"
        )
    elif config.kind == "random":
        train, val, test = _group_split(
            np.arange(n), config.val_fraction, config.test_fraction, rng, "rows"
        )
    else:
        train, val, test = _column_split(dataset, config, rng)
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def _column_split(
    dataset: LabelledDataset, config: SplitConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    col = config.column
    if col not in dataset.table.columns:
        raise KeyError(
            f"split column {col!r} not in dataset {dataset.name!r}; columns: "
            + ", ".join(map(str, dataset.table.columns))
        )
    labels = dataset.table[col].map(
        lambda v: _SPLIT_NAMES.get(str(v).strip().lower()) if pd.notna(v) else None
    )
    parts = {
        p: np.flatnonzero((labels == p).to_numpy()).astype(np.int64) for p in _SPLIT_NAMES.values()
    }
    train, val, test = parts["train"], parts["val"], parts["test"]
    if len(train) == 0:
        raise ValueError(f"no row of column {col!r} says 'train'")
    formulas = dataset.table["formula"].astype(str).to_numpy()
    if len(test) == 0 and config.test_fraction > 0:
        try:
            keep, _, carved = _group_split(
                formulas[train], 0.0, config.test_fraction, rng, "reduced formulas"
            )
        except ValueError as exc:
            raise ValueError(f"no row says 'test'; carving one from train: {exc}") from exc
        train, test = train[keep], train[carved]
    if len(val) == 0:
        try:
            keep, carved, _ = _group_split(
                formulas[train], config.val_fraction, 0.0, rng, "reduced formulas"
            )
        except ValueError as exc:
            raise ValueError(f"no row says 'val'; carving one from train: {exc}") from exc
        train, val = train[keep], train[carved]
    return train, val, test
