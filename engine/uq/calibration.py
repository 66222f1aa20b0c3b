"""Calibration of predicted CTEs to the user's own measurements.

AGL numbers are computed, not measured: a dilatometer also sees chemical expansion, spin-state
transitions and anharmonicity that the quasi-harmonic Debye model leaves out. With measured
linear CTEs for at least :data:`MIN_POINTS` materials that were also predicted, a robust
straight line measured ≈ a + b · predicted (scikit-learn's ``HuberRegressor``, which down-weights
outliers, on values in 10⁻⁶ K⁻¹) maps every prediction onto the user's scale:

* σ of a calibrated value: the standard deviation of the line's value over ``n_boot`` bootstrap
  resamples of the measured pairs (seeded), combined in quadrature with the prediction's own σ
  scaled by |b|;
* leave-one-out error: each measured material predicted by the line fitted without it; the mean
  absolute LOO error (1/K) says how far to trust the calibration.

All inputs and outputs are linear CTEs in 1/K.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["MIN_POINTS", "Calibration", "apply_calibration", "fit_calibration", "pairs_from_table"]

#: Fewest measured-and-predicted materials a calibration is offered for.
MIN_POINTS = 3
_SCALE = 1e6  # fits run in 10⁻⁶ K⁻¹ so that the Huber threshold and penalty are well scaled


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(intercept, slope) of the robust line through (x, y), both in 10⁻⁶ K⁻¹."""
    from sklearn.linear_model import HuberRegressor

    if np.ptp(x) == 0:
        raise ValueError("every calibration point has the same predicted CTE: no slope")
    model = HuberRegressor(alpha=0.0, epsilon=1.35, max_iter=1000).fit(x.reshape(-1, 1), y)
    return float(model.intercept_), float(model.coef_[0])


@dataclass
class Calibration:
    """A fitted predicted → measured line (linear CTEs; intercept in 1/K, slope unitless).

    Attributes:
        intercept, slope: measured ≈ intercept + slope · predicted.
        points: the pairs used: ``material``, ``predicted_per_K``, ``measured_per_K``,
            ``loo_per_K`` (the leave-one-out calibrated value), ``loo_error_per_K``.
        loo_mae: mean |leave-one-out error|, 1/K.
        boot: bootstrap (intercept in 1/K, slope) pairs, (n_boot, 2).
    """

    intercept: float
    slope: float
    points: pd.DataFrame
    loo_mae: float
    boot: np.ndarray

    def __call__(self, predicted, predicted_std=None) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated values and their σ (1/K) for predicted linear CTEs (1/K), shape (n,)."""
        x = np.asarray(predicted, dtype=float)
        value = self.intercept + self.slope * x
        lines = self.boot[:, :1] + self.boot[:, 1:] * x.reshape(1, -1)
        sigma_fit = lines.std(axis=0, ddof=1) if len(self.boot) > 1 else np.zeros_like(x)
        own = (
            np.zeros_like(x)
            if predicted_std is None
            else np.nan_to_num(np.asarray(predicted_std, dtype=float)) * abs(self.slope)
        )
        return value, np.sqrt(sigma_fit**2 + own**2)


def fit_calibration(
    predicted, measured, materials=None, *, n_boot: int = 200, seed: int = 0
) -> Calibration:
    """Fit the robust line measured ≈ a + b · predicted (linear CTEs, 1/K).

    Args:
        predicted, measured: paired values, (n,), n ≥ :data:`MIN_POINTS`.
        materials: names of the pairs (default their positions).
        n_boot: bootstrap resamples for σ (resamples with one distinct x are skipped).
        seed: seed of the resampling.

    Raises:
        ValueError: fewer than :data:`MIN_POINTS` finite pairs, or all predictions equal.
    """
    x = np.asarray(predicted, dtype=float)
    y = np.asarray(measured, dtype=float)
    names = np.array(list(materials) if materials is not None else range(len(x)), dtype=object)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y, names = x[keep] * _SCALE, y[keep] * _SCALE, names[keep]
    if len(x) < MIN_POINTS:
        raise ValueError(
            f"calibration needs at least {MIN_POINTS} materials with both a "
            f"measured and a predicted CTE; got {len(x)}"
        )
    a, b = _fit(x, y)
    loo = np.full(len(x), np.nan)
    for i in range(len(x)):
        rest = np.arange(len(x)) != i
        if np.ptp(x[rest]) > 0:
            ai, bi = _fit(x[rest], y[rest])
            loo[i] = ai + bi * x[i]
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(x), len(x))
        if np.ptp(x[idx]) > 0:
            ai, bi = _fit(x[idx], y[idx])
            boot.append((ai / _SCALE, bi))
    points = pd.DataFrame(
        {
            "material": names,
            "predicted_per_K": x / _SCALE,
            "measured_per_K": y / _SCALE,
            "loo_per_K": loo / _SCALE,
            "loo_error_per_K": (loo - y) / _SCALE,
        }
    )
    return Calibration(
        intercept=a / _SCALE,
        slope=b,
        points=points,
        loo_mae=float(np.nanmean(np.abs(loo - y))) / _SCALE,
        boot=np.array(boot).reshape(-1, 2),
    )


def pairs_from_table(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of a ranked screening table with both a measured and a predicted linear CTE:
    ``material`` (id), ``predicted_per_K``, ``measured_per_K``."""
    both = table[
        np.isfinite(table["cte_lin_measured_per_K"].to_numpy(float))
        & np.isfinite(table["cte_lin_pred_per_K"].to_numpy(float))
    ]
    return pd.DataFrame(
        {
            "material": both["id"].astype(str),
            "predicted_per_K": both["cte_lin_pred_per_K"].astype(float),
            "measured_per_K": both["cte_lin_measured_per_K"].astype(float),
        }
    )


def apply_calibration(
    table: pd.DataFrame, calibration: Calibration, electrolyte
) -> tuple[pd.DataFrame, object]:
    """Apply ``calibration`` to a ranked screening table and its electrolyte.

    Predicted linear CTEs become calibrated ones (``cte_source`` ``"calibrated"``, new columns
    ``cte_lin_calibrated_per_K`` and ``cte_lin_calibrated_std_per_K``, 1/K); measured values
    stay. A predicted electrolyte is calibrated the same way. Mismatches, their σ and the ranks
    are recomputed (rank 1 = smallest |Δα| among the rows that pass).

    Args:
        table: :data:`engine.apps.screening.ranking.OUTPUT_COLUMNS`.
        electrolyte: the :class:`engine.apps.screening.electrolyte.Reference` the table was ranked against.

    Returns:
        The re-ranked table (ranked rows first) and the electrolyte as used.
    """
    from dataclasses import replace

    out = table.copy()
    value, sigma = calibration(out["cte_lin_pred_per_K"], out["cte_lin_std_per_K"])
    out["cte_lin_calibrated_per_K"], out["cte_lin_calibrated_std_per_K"] = value, sigma
    predicted = (out["cte_source"] == "predicted").to_numpy()
    out.loc[predicted, "cte_lin_used_per_K"] = value[predicted]
    out.loc[predicted, "cte_lin_used_std_per_K"] = sigma[predicted]
    out.loc[predicted, "cte_source"] = "calibrated"
    if electrolyte.source == "predicted":
        e_value, e_sigma = calibration([electrolyte.cte_lin], [electrolyte.cte_lin_std])
        electrolyte = replace(
            electrolyte,
            cte_lin=float(e_value[0]),
            cte_lin_std=float(e_sigma[0]),
            source="calibrated",
        )
    delta = out["cte_lin_used_per_K"].to_numpy(float) - electrolyte.cte_lin
    out["electrolyte_cte_lin_per_K"] = electrolyte.cte_lin
    out["electrolyte_cte_lin_std_per_K"] = electrolyte.cte_lin_std
    out["mismatch_per_K"], out["abs_mismatch_per_K"] = delta, np.abs(delta)
    out["mismatch_std_per_K"] = np.sqrt(
        out["cte_lin_used_std_per_K"].to_numpy(float) ** 2 + electrolyte.cte_lin_std**2
    )
    order = out[out["passes"]].sort_values(["abs_mismatch_per_K", "id"], kind="stable").index
    out["rank"] = pd.Series(pd.NA, index=out.index, dtype="Int64")
    out.loc[order, "rank"] = np.arange(1, len(order) + 1)
    out = out.loc[[*order, *out.index[~out["passes"]]]].reset_index(drop=True)
    return out, electrolyte
