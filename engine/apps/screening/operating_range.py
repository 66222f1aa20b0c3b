"""Mean linear CTE over an operating range (data-sheet style, e.g. 25–800 °C).

The learned models give the volumetric α_V at 300 K only. The temperature dependence comes from
the quasi-harmonic Debye α_V(T) curve of :mod:`engine.physics` (``thermal_properties``). Two
methods:

* ``"scaled"`` (default): the curve's *shape* scaled to the learned 300 K value,
  α_L,mean = (α_V,learned(300 K) / 3) · mean_{T∈[T1,T2]} α_V(T) / α_V(300 K);
  its σ is the learned σ_L scaled by the same ratio.
* ``"physics"``: the physics curve's own mean, α_L,mean = mean_{T∈[T1,T2]} α_V(T) / 3 (no σ).

Why scaled is the default: at 300 K the learned models are much closer to AFLOW's AGL labels
than the quick physics route. The shipped-model validation MAE is about 3.9e-6 1/K
(R ≈ 0.98, against a label mean of 5.7e-5), while the same quasi-harmonic recipe reproduced
``agl_thermal_expansion_300K`` with Pearson 0.74 and a median relative error of 20 % on 691 AFLOW
rows, failing on 22 % (``FIELD_NOTES.md``). The shape of α(T) (its rise and saturation above the
Debye temperature) is what the physics adds; ratios cancel much of its 300 K error. This was not
re-measured on this branch: ``engine.physics`` is not part of it (see :func:`physics_note`).

Means are taken on a 1 K grid over [T1, T2] (linear interpolation of the curve). Temperatures
are given in °C and converted with T/K = T/°C + 273.15.

What neither method includes: chemical expansion of oxygen-deficient perovskites, spin-state
transitions in cobaltites, anharmonicity beyond the quasi-harmonic model, phase transitions.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from engine.io import NamedStructure

__all__ = [
    "DEFAULT_RANGE_C",
    "METHODS",
    "electrolyte_range_cte",
    "mean_alpha_V",
    "physics_note",
    "range_column",
    "range_ctes",
    "rank_over_range",
    "screen_over_range",
]

#: Default operating range in °C: room temperature to 800 °C.
DEFAULT_RANGE_C = (25.0, 800.0)
METHODS = ("scaled", "physics")
KELVIN = 273.15


def _physics():
    """The ``engine.physics`` module, or the ImportError saying why it is unavailable."""
    try:
        return importlib.import_module("engine.physics")
    except ImportError as exc:
        return exc


def physics_note() -> str | None:
    """None when the range mode can run; otherwise why it is disabled (never faked)."""
    module = _physics()
    if isinstance(module, ImportError):
        return (
            "operating-range CTE disabled: it needs the quasi-harmonic Debye α(T) curve of "
            f"engine.physics, which is not available here ({module}); only α at 300 K is "
            "given"
        )
    return None


def range_column(t1_c: float, t2_c: float) -> str:
    """Column of the mean linear CTE over [t1, t2] °C in 1/K, e.g.
    ``cte_lin_mean_25_800C_per_K``."""
    return f"cte_lin_mean_{t1_c:g}_{t2_c:g}C_per_K".replace("-", "m").replace(".", "p")


def mean_alpha_V(
    temperatures_K: np.ndarray, alpha_V: np.ndarray, t1_c: float, t2_c: float
) -> tuple[float, float]:
    """(mean α_V over [t1, t2] °C, α_V at 300 K), both in 1/K, from a curve on ``temperatures_K``.

    Raises:
        ValueError: the range is empty or reversed, or the curve does not cover it or 300 K.
    """
    t = np.asarray(temperatures_K, dtype=float)
    a = np.asarray(alpha_V, dtype=float)
    lo, hi = t1_c + KELVIN, t2_c + KELVIN
    if not hi > lo:
        raise ValueError(f"temperature range {t1_c:g}–{t2_c:g} °C is empty or reversed")
    if len(t) < 2 or t.min() > min(lo, 300.0) or t.max() < max(hi, 300.0):
        raise ValueError(
            f"the α(T) curve covers {t.min():.0f}–{t.max():.0f} K, not "
            f"{lo:.0f}–{hi:.0f} K and 300 K"
        )
    grid = np.arange(lo, hi + 0.5, 1.0)
    return float(np.interp(grid, t, a).mean()), float(np.interp(300.0, t, a))


def range_ctes(
    items: Sequence[NamedStructure],
    learned: pd.DataFrame,
    t1_c: float,
    t2_c: float,
    *,
    method: str = "scaled",
    settings=None,
    progress=None,
) -> pd.DataFrame:
    """Mean linear CTE over [t1, t2] °C of ``items``.

    Args:
        items: the structures (ids as in ``learned``).
        learned: ``id``, ``cte_vol_pred_per_K`` and ``cte_vol_std_per_K`` (learned α_V at
            300 K and σ, 1/K).
        method: ``"scaled"`` or ``"physics"`` (module docstring).
        settings: ``engine.physics.ThermalSettings`` (default: one covering the range).

    Returns:
        One row per item: ``id``, ``status`` (``ok``/``failed``), ``reason``,
        ``shape_ratio`` (mean α_V / α_V(300 K)), ``physics_alpha_V_300K_per_K``,
        ``cte_lin_mean_per_K`` and ``cte_lin_mean_std_per_K`` (1/K; NaN when failed).

    Raises:
        RuntimeError: ``engine.physics`` is not available (:func:`physics_note`).
        ValueError: an unknown method.
    """
    if method not in METHODS:
        raise ValueError(f"range method {method!r} is not one of {', '.join(METHODS)}")
    physics = _physics()
    if isinstance(physics, ImportError):
        raise RuntimeError(physics_note())
    if settings is None:
        settings = physics.ThermalSettings(
            tmin=min(100.0, t1_c + KELVIN), tmax=max(1300.0, t2_c + KELVIN + 10)
        )
    by_id = learned.set_index(learned["id"].astype(str))
    rows = []
    for item, result in zip(items, physics.thermal_properties(items, settings, progress=progress)):
        row = {
            "id": item.id,
            "status": result.status,
            "reason": result.reason or "",
            "shape_ratio": np.nan,
            "physics_alpha_V_300K_per_K": np.nan,
            "cte_lin_mean_per_K": np.nan,
            "cte_lin_mean_std_per_K": np.nan,
        }
        if result.status == "ok":
            try:
                mean, at300 = mean_alpha_V(result.temperatures_K, result.alpha_V_per_K, t1_c, t2_c)
            except ValueError as exc:
                row.update(status="failed", reason=str(exc))
            else:
                row["physics_alpha_V_300K_per_K"] = at300
                row["shape_ratio"] = mean / at300 if at300 > 0 else np.nan
                if method == "physics":
                    row["cte_lin_mean_per_K"] = mean / 3
                elif item.id in by_id.index and at300 > 0:
                    vol = float(by_id.loc[item.id, "cte_vol_pred_per_K"])
                    std = float(by_id.loc[item.id, "cte_vol_std_per_K"])
                    row["cte_lin_mean_per_K"] = vol / 3 * row["shape_ratio"]
                    row["cte_lin_mean_std_per_K"] = std / 3 * row["shape_ratio"]
                else:
                    row.update(
                        status="failed",
                        reason="no learned 300 K value to scale, or "
                        "α_V(300 K) of the curve is not positive",
                    )
        rows.append(row)
    return pd.DataFrame(rows)


def rank_over_range(
    table: pd.DataFrame,
    ctes: pd.DataFrame,
    electrolyte: tuple[float, float],
    t1_c: float,
    t2_c: float,
) -> pd.DataFrame:
    """Add the range columns to a ranked screening table and rank by their mismatch.

    Adds ``cte_lin_mean_<t1>_<t2>C_per_K`` (:func:`range_column`) and its ``..._std_per_K``,
    and ``mismatch_mean_<t1>_<t2>C_per_K`` = candidate − electrolyte (1/K). Measured rows keep
    their measured value (taken to be a mean over the same range). Rows without a range value
    stop passing (``filter_reason`` says why); ranks are recomputed on |mismatch|.

    Args:
        table: :data:`engine.apps.screening.ranking.OUTPUT_COLUMNS`.
        ctes: :func:`range_ctes` of the candidates.
        electrolyte: the electrolyte's (mean linear CTE, σ) over the range, 1/K.
    """
    column = range_column(t1_c, t2_c)
    std_column = column.replace("_per_K", "_std_per_K")
    mismatch = column.replace("cte_lin_mean", "mismatch_mean")
    out = table.copy()
    found = ctes.set_index(ctes["id"].astype(str))
    ids = out["id"].astype(str)
    value = ids.map(found["cte_lin_mean_per_K"]).to_numpy(float)
    std = ids.map(found["cte_lin_mean_std_per_K"]).to_numpy(float)
    measured = (out["cte_source"] == "measured").to_numpy()
    value[measured] = out.loc[measured, "cte_lin_used_per_K"]
    std[measured] = out.loc[measured, "cte_lin_used_std_per_K"]
    out[column], out[std_column] = value, std
    out[mismatch] = value - electrolyte[0]
    missing = ~np.isfinite(value) & out["passes"].to_numpy()
    reasons = ids.map(found["reason"]).fillna("not computed").astype(str).to_numpy()
    out.loc[missing, "filter_reason"] = [
        f"no mean CTE over {t1_c:g}–{t2_c:g} °C: {r}" for r in reasons[missing]
    ]
    out.loc[missing, "passes"] = False
    order = (
        out[out["passes"]]
        .assign(_abs=lambda f: f[mismatch].abs())
        .sort_values(["_abs", "id"], kind="stable")
        .index
    )
    out["rank"] = pd.Series(pd.NA, index=out.index, dtype="Int64")
    out.loc[order, "rank"] = np.arange(1, len(order) + 1)
    return out.loc[[*order, *out.index[~out["passes"]]]].reset_index(drop=True)


def electrolyte_range_cte(
    electrolyte,
    item: NamedStructure | None,
    t1_c: float,
    t2_c: float,
    *,
    method: str = "scaled",
    settings=None,
) -> tuple[float, float]:
    """(mean linear CTE, σ) in 1/K of the electrolyte over [t1, t2] °C.

    A measured electrolyte (or one without a structure) keeps its value, taken to be a mean over
    the same range; a predicted one gets its curve from ``item`` (NaN when the physics fails).

    Args:
        electrolyte: the :class:`engine.apps.screening.electrolyte.Reference` ranked against.
        item: its structure, or None.
    """
    if electrolyte.source == "measured" or item is None:
        return electrolyte.cte_lin, electrolyte.cte_lin_std
    learned = pd.DataFrame(
        {
            "id": [item.id],
            "cte_vol_pred_per_K": [electrolyte.cte_vol_pred],
            "cte_vol_std_per_K": [electrolyte.cte_lin_std * 3],
        }
    )
    row = range_ctes([item], learned, t1_c, t2_c, method=method, settings=settings).iloc[0]
    return float(row["cte_lin_mean_per_K"]), float(row["cte_lin_mean_std_per_K"])


def screen_over_range(
    table: pd.DataFrame,
    candidates,
    electrolyte,
    electrolyte_item,
    t1_c: float,
    t2_c: float,
    *,
    method: str = "scaled",
    settings=None,
    progress=None,
) -> tuple[pd.DataFrame, tuple[float, float]]:
    """A ranked screening table re-ranked by the mean linear CTE over [t1, t2] °C, and the
    electrolyte's (mean linear CTE, σ) over the range in 1/K.

    The candidates are read again from ``candidates`` (anything
    :func:`engine.apps.screening.candidates.iter_candidates` reads) and their α(T) curves
    computed; see :func:`range_ctes`, :func:`electrolyte_range_cte` and :func:`rank_over_range`.

    Raises:
        RuntimeError: ``engine.physics`` is not available (:func:`physics_note`).
    """
    from engine.apps.screening.candidates import iter_candidates

    wanted = set(table["id"].astype(str))
    items = [it for chunk in iter_candidates(candidates) for it in chunk.items if it.id in wanted]
    ctes = range_ctes(items, table, t1_c, t2_c, method=method, settings=settings, progress=progress)
    reference = electrolyte_range_cte(
        electrolyte, electrolyte_item, t1_c, t2_c, method=method, settings=settings
    )
    return rank_over_range(table, ctes, reference, t1_c, t2_c), reference
