"""Predictions on disordered crystals by the mode of :class:`~engine.materials.disorder.DisorderSettings`:
the virtual crystal (the cell as it is) or the mean over ordered supercells, whose spread is added
to σ in quadrature (the modes and their trade-offs: :mod:`engine.materials.disorder`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from engine.inference.prediction import Predictions, predict
from engine.io import NamedStructure, ReadError, read_structures
from engine.materials.disorder import DisorderSettings, OrderingError, orderings
from engine.uq.domain import DOMAIN_FLAGS

__all__ = ["predict_structures"]


def _aggregate(
    table: pd.DataFrame, groups: list[tuple[int, list[int]]], items: list[NamedStructure]
) -> pd.DataFrame:
    """One row per original structure from the rows of its orderings (see module docstring)."""
    rows = []
    by_id = {str(i): k for k, i in enumerate(table["id"])}
    pred_cols = [
        c
        for c in table.columns
        if c.startswith("prediction") and not c.startswith("prediction_std")
    ]
    for position, ids in groups:
        sub = table.iloc[[by_id[i] for i in ids if i in by_id]]
        if sub.empty:
            continue
        item = items[position]
        row = {
            "id": item.id,
            "formula": item.structure.composition.reduced_formula,
            "n_sites": len(item.structure),
        }
        for column in table.columns:
            if column in row or column in ("domain",):
                continue
            values = sub[column]
            if pd.api.types.is_numeric_dtype(values):
                row[column] = float(values.mean())
        spreads = {}
        for column in pred_cols:
            spread = float(sub[column].std(ddof=1)) if len(sub) > 1 else 0.0
            spreads[column] = spread
            std_col = column.replace("prediction", "prediction_std", 1)
            if std_col in sub:
                row[std_col] = float(np.sqrt(np.mean(sub[std_col] ** 2) + spread**2))
        row["ordering_std"] = spreads.get("prediction", 0.0)
        row["n_orderings"] = len(sub)
        if "domain" in sub:
            flags = [f for f in sub["domain"].astype(str)]
            known = [f for f in flags if f in DOMAIN_FLAGS]
            row["domain"] = (
                max(known, key=DOMAIN_FLAGS.index) if len(known) == len(flags) else flags[0]
            )
        rows.append(row)
    columns = list(table.columns) + ["ordering_std", "n_orderings"]
    return pd.DataFrame(rows, columns=columns)


def predict_structures(
    model,
    items,
    settings: DisorderSettings | None = None,
    *,
    batch_size: int = 64,
    device: str = "auto",
    limits=None,
) -> Predictions:
    """:func:`engine.inference.prediction.predict` on ``items``, disordered ones by ``settings.mode``.

    ``items`` is a list of :class:`NamedStructure` or anything :func:`engine.io.read_structures`
    reads (under ``limits``, an :class:`engine.io.ReadLimits`).

    In orderings mode every disordered item is predicted through
    :func:`~engine.materials.disorder.orderings` and its row aggregated (mean; σ with the
    ordering spread in quadrature; ``ordering_std`` and ``n_orderings`` columns, target unit and
    count); ordered items give one ordering with spread 0. Items whose orderings fail
    (:class:`~engine.materials.disorder.OrderingError`) become errors.

    Returns:
        :class:`engine.inference.prediction.Predictions`, one row per usable item.
    """
    settings = settings or DisorderSettings()
    if settings.mode == "virtual":
        return predict(model, items, batch_size=batch_size, device=device, limits=limits)
    errors: list[ReadError] = []
    if not isinstance(items, list):
        batch = read_structures(items, limits=limits)
        items, errors = batch.items, list(batch.errors)
    if all(it.structure.is_ordered for it in items):
        result = predict(model, items, batch_size=batch_size, device=device)
        result.errors = errors + result.errors
        return result
    expanded, groups = [], []
    for position, item in enumerate(items):
        try:
            cells = orderings(item.structure, settings)
        except OrderingError as exc:
            errors.append(ReadError(source=item.source, reason=str(exc)))
            continue
        ids = [f"{position}#{j}" for j in range(len(cells))]
        expanded += [
            NamedStructure(id=i, structure=s, source=item.source) for i, s in zip(ids, cells)
        ]
        groups.append((position, ids))
    result = predict(model, expanded, batch_size=batch_size, device=device)
    result.table = _aggregate(result.table, groups, items)
    result.errors = errors + result.errors
    result.notes.append(
        f"disordered structures: mean of {settings.k} seeded orderings (seed "
        f"{settings.seed}, occupancies within {settings.tolerance:g}); their "
        "spread is added to σ in quadrature"
    )
    return result
