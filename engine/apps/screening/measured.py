"""Measured **linear** CTEs (1/K, dilatometry and data sheets): the checked table, and the
lookup of a candidate's or electrolyte's value by id or reduced formula. A measured value
replaces the prediction where present."""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
import pandas as pd
from pymatgen.core import Composition

__all__ = [
    "MAX_PLAUSIBLE_CTE",
    "MEASURED_COLUMNS",
    "check_cte",
    "material_key",
    "measured_lookup",
    "measured_table",
]

#: Largest plausible |linear CTE| in 1/K; larger typed values are taken as a unit mistake.
MAX_PLAUSIBLE_CTE = 1e-3
#: Columns of :func:`measured_table`: material (formula or id), linear CTE and its σ in 1/K.
MEASURED_COLUMNS = ("material", "cte_lin_per_K", "cte_lin_std_per_K")


def material_key(text: str) -> str:
    """A reduced formula when ``text`` parses as one, else the stripped text."""
    text = str(text).strip()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Composition(text).reduced_formula
    except Exception:  # noqa: BLE001 - ids and names are not formulas
        return text


def check_cte(value: float, what: str) -> float:
    """``value`` (a linear CTE in 1/K) as a float.

    Raises:
        ValueError: naming ``what``, when it is not finite or above :data:`MAX_PLAUSIBLE_CTE`
            (a value given in 10⁻⁶ K⁻¹ instead of 1/K).
    """
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{what}: {value} is not a number")
    if abs(value) > MAX_PLAUSIBLE_CTE:
        raise ValueError(
            f"{what}: {value:g} 1/K is not a plausible linear CTE; values are in "
            f"1/K (e.g. 10.5e-6, not 10.5)"
        )
    return value


def measured_table(data) -> pd.DataFrame:
    """Measured **linear** CTEs, checked: columns ``material`` (formula or candidate id),
    ``cte_lin_per_K`` and ``cte_lin_std_per_K`` (σ, default 0), both in 1/K.

    Args:
        data: a CSV path, a DataFrame with those columns, or ``{material: value}`` /
            ``{material: (value, σ)}``. Rows with neither material nor value are dropped.

    Raises:
        ValueError: a missing column, a material without a value (or the reverse), an
            implausible value (|α| above 1e-3 1/K: a unit mistake), σ < 0, or a material twice.
    """
    if data is None:
        return pd.DataFrame(
            {c: pd.Series(dtype=object if c == "material" else float) for c in MEASURED_COLUMNS}
        )
    if isinstance(data, (str, os.PathLike)):
        frame = pd.read_csv(data)
    elif isinstance(data, dict):
        frame = pd.DataFrame(
            [
                {"material": k, "cte_lin_per_K": v[0], "cte_lin_std_per_K": v[1]}
                if isinstance(v, (tuple, list))
                else {"material": k, "cte_lin_per_K": v}
                for k, v in data.items()
            ]
        )
    else:
        frame = pd.DataFrame(data)
    missing = [c for c in MEASURED_COLUMNS[:2] if c not in frame.columns]
    if missing:
        raise ValueError(
            f"the measured-CTE table needs the columns {', '.join(MEASURED_COLUMNS)}"
            f" (linear CTE and σ in 1/K); missing: {', '.join(missing)}"
        )
    if "cte_lin_std_per_K" not in frame.columns:
        frame["cte_lin_std_per_K"] = 0.0
    material = frame["material"].astype(object).where(frame["material"].notna(), "")
    material = material.astype(str).str.strip()
    value = pd.to_numeric(frame["cte_lin_per_K"], errors="coerce")
    std = pd.to_numeric(frame["cte_lin_std_per_K"], errors="coerce").fillna(0.0)
    keep = (material != "") | value.notna()
    rows = []
    for m, v, s in zip(material[keep], value[keep], std[keep]):
        if not m:
            raise ValueError(f"measured CTE {v:g} 1/K has no material")
        if not np.isfinite(v):
            raise ValueError(f"measured CTE of {m!r} is missing or not a number")
        if s < 0:
            raise ValueError(f"measured σ of {m!r} is negative ({s:g} 1/K)")
        rows.append(
            {
                "material": m,
                "cte_lin_per_K": check_cte(v, f"measured CTE of {m!r}"),
                "cte_lin_std_per_K": float(s),
            }
        )
    out = pd.DataFrame(rows, columns=list(MEASURED_COLUMNS))
    keys = out["material"].map(material_key)
    twice = sorted(set(keys[keys.duplicated()]))
    if twice:
        raise ValueError(f"measured CTE given twice for {', '.join(twice)}")
    return out.astype({"material": object, "cte_lin_per_K": float, "cte_lin_std_per_K": float})


def measured_lookup(measured: pd.DataFrame | None, ids, formulas) -> tuple[np.ndarray, ...]:
    """Measured value and σ (1/K, each shape ``(len(ids),)``, NaN where none) per row, matched
    by id first, then by reduced formula."""
    n = len(ids)
    value, std = np.full(n, np.nan), np.full(n, np.nan)
    if measured is None or measured.empty:
        return value, std
    by_name = {m: (v, s) for m, v, s in measured.itertuples(index=False)}
    by_formula = {material_key(m): (v, s) for m, v, s in measured.itertuples(index=False)}
    for k, (ident, formula) in enumerate(zip(ids, formulas)):
        hit = by_name.get(str(ident)) or by_formula.get(material_key(formula))
        if hit is not None:
            value[k], std[k] = hit
    return value, std
