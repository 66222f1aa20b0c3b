"""Label tables of datasets: the base columns, label CSV parsing and checks of label rows.

Used by :mod:`engine.io.datasets`. A label CSV has a header whose id column is ``id`` (or
``material_id``/``name``/… or else the first column), or no header (CGCNN ``id_prop.csv``: id,
then targets). Repeated ids are dropped or refused (:func:`dedupe_ids`), infinite labels are
emptied (:func:`finite_labels`), non-numeric cells of numeric columns are errors naming their line.
"""

from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from engine.io import NamedStructure, ReadError, ReadLimits

__all__ = [
    "BASE_COLUMNS",
    "dedupe_ids",
    "finite_labels",
    "make_table",
    "read_label_csv",
    "scalar_fields",
]

#: Columns every dataset table starts with.
BASE_COLUMNS = ("id", "formula", "n_sites")
_STRUCTURE_KEYS = frozenset({"lattice", "species", "frac_coords"})
_ID_COLUMN_NAMES = ("id", "material_id", "mp_id", "auid", "name", "cif_id", "structure_id")


def make_table(
    items: list[NamedStructure], rows: list[dict], columns: list[str] | None = None
) -> pd.DataFrame:
    """The dataset table: ``id``, ``formula`` (reduced), ``n_sites``, then the label ``rows``.

    Args:
        items: the structures, one table row each.
        rows: one dict of scalar labels per item (or ``[]`` for none).
        columns: label columns in order; default every key of ``rows`` in first-seen order.
            A label named like a base column becomes ``source_<name>``; a record ``id`` equal to
            the item ids is dropped.
    """
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


def scalar_fields(record: dict, nested: set[str]) -> dict:
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


def finite_labels(
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


def dedupe_ids(
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


def read_label_csv(
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
