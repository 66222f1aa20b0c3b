"""σ from validation residuals, and its calibration (pure numpy; errors and σ in the target's
unit).

**σ, single model.** Validation residuals binned by domain distance (equal-count bins, at least
:data:`MIN_PER_BIN` crystals each, at most :data:`MAX_BINS` bins). Each bin's σ is the robust,
Gaussian-consistent scale of its residuals, 1.4826 · median |error| (materials errors are
heavy-tailed: a few gross errors would dominate a bin's RMS and hide the trend with distance).
σ² is made non-decreasing in distance (weighted isotonic regression, SciPy's
``isotonic_regression``), then σ is interpolated between the bins' median distances, constant
below the first, and grows in proportion to the distance beyond the last (an assumption, not a
fit: such crystals are flagged anyway).

**σ, ensemble.** The standard deviation of the members' predictions (ddof 1).

**Calibration.** Either raw σ is multiplied by one scale factor per target, fitted on the
validation split so that the coverage of the Gaussian central intervals ±z_p·σ matches p as
closely as possible at its worst level p in :data:`LEVELS` (0.05 … 0.95); minimising the largest
deviation rather than the mean one keeps the wide intervals from being overconfident. The card
records the share of validation (and test) errors within 1σ and 2σ (ideal 68.3 % and 95.4 %)
before and after the scaling, the coverage curve, the miscalibration area (mean |observed −
expected| over the levels) and the MAE of each domain class.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import NormalDist

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from engine.uq.domain import DOMAIN_FLAGS

#: Confidence levels of the coverage curve (and of the scale fit).
LEVELS = tuple(round(0.05 * i, 2) for i in range(1, 20))
#: Coverage of ±1σ and ±2σ for Gaussian errors.
EXPECTED_1SIGMA = 2 * NormalDist().cdf(1.0) - 1
EXPECTED_2SIGMA = 2 * NormalDist().cdf(2.0) - 1
MIN_PER_BIN = 50
MAX_BINS = 10
#: σ of a normal distribution per median absolute deviation, 1 / Φ⁻¹(3/4).
MAD_TO_SIGMA = 1.0 / NormalDist().inv_cdf(0.75)


class SplitCalibration(BaseModel):
    """Calibration of σ on one split (one target): shares are fractions in [0, 1]."""

    model_config = ConfigDict(extra="forbid")
    n: int
    within_1sigma: float
    within_2sigma: float
    within_1sigma_unscaled: float
    within_2sigma_unscaled: float
    #: Mean |observed − expected| coverage over ``levels`` (0 = perfectly calibrated).
    miscalibration_area: float
    miscalibration_area_unscaled: float
    #: sqrt(mean((error / σ)²)); 1 for Gaussian errors with the right σ.
    rms_z: float
    mean_sigma: float
    levels: list[float]
    #: Share of errors within the central Gaussian interval of each level, with σ (observed)
    #: and with raw σ (observed_unscaled).
    observed: list[float]
    observed_unscaled: list[float]
    #: MAE (target unit) and count per domain flag (flags without crystals left out).
    mae_by_domain: dict[str, float]
    n_by_domain: dict[str, int]


def isotonic(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted least-squares non-decreasing fit of values (n,) in their order, weights (n,) > 0:
    a run of pooled entries takes their weighted mean (pool adjacent violators, SciPy's
    ``isotonic_regression``; its import costs a third of scikit-learn's, which a cancelled
    training run waits for)."""
    from scipy.optimize import isotonic_regression

    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return values
    fit = isotonic_regression(values, weights=np.asarray(weights, dtype=np.float64))
    return np.asarray(fit.x, dtype=np.float64)


def binned_sigma(distance: np.ndarray, errors: np.ndarray, n_bins: int | None = None):
    """Raw σ as a non-decreasing function of domain distance, from residuals.

    Args:
        distance: domain distances (n,).
        errors: prediction − truth (n,); non-finite entries are ignored.
        n_bins: equal-count bins; default n // :data:`MIN_PER_BIN`, between 1 and
            :data:`MAX_BINS`.

    Returns:
        ``(centres, sigma, counts)``, each (n_bins,): the median distance of each bin, its
        robust σ (1.4826 · median |error|) after the non-decreasing fit of σ², and its size.
        Empty arrays when no residual is finite.
    """
    distance, errors = np.asarray(distance, float), np.asarray(errors, float)
    ok = np.isfinite(distance) & np.isfinite(errors)
    distance, errors = distance[ok], errors[ok]
    if len(distance) == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64)
    if n_bins is None:
        n_bins = int(np.clip(len(distance) // MIN_PER_BIN, 1, MAX_BINS))
    groups = np.array_split(np.argsort(distance, kind="stable"), min(n_bins, len(distance)))
    centres = np.array([np.median(distance[g]) for g in groups])
    variance = np.array([(MAD_TO_SIGMA * np.median(np.abs(errors[g]))) ** 2 for g in groups])
    counts = np.array([len(g) for g in groups], dtype=np.int64)
    return centres, np.sqrt(isotonic(variance, counts)), counts


def sigma_at(distance: np.ndarray, centres: Sequence[float], sigma: Sequence[float]) -> np.ndarray:
    """Raw σ (B,) at domain distances (B,) from :func:`binned_sigma`'s bins: interpolated
    between bin centres, constant below the first, proportional to distance beyond the last;
    NaN without bins."""
    distance = np.asarray(distance, dtype=np.float64)
    centres, sigma = np.asarray(centres, float), np.asarray(sigma, float)
    if len(centres) == 0:
        return np.full(distance.shape, np.nan)
    out = np.interp(distance, centres, sigma)
    beyond = distance > centres[-1]
    if centres[-1] > 0:
        out[beyond] = sigma[-1] * distance[beyond] / centres[-1]
    return out


def _quantiles(levels: Sequence[float]) -> np.ndarray:
    """z such that a standard normal lies within ±z with probability ``level``."""
    return np.array([NormalDist().inv_cdf((1 + p) / 2) for p in levels])


def _z(errors, sigma) -> np.ndarray:
    errors, sigma = np.asarray(errors, float), np.asarray(sigma, float)
    ok = np.isfinite(errors) & np.isfinite(sigma) & (sigma > 0)
    return np.abs(errors[ok]) / sigma[ok]


def coverage(errors: np.ndarray, sigma: np.ndarray, levels: Sequence[float] = LEVELS) -> np.ndarray:
    """Observed coverage (L,): the share of |error| within the central Gaussian interval
    ±z_p·σ of each level p (pairs with a non-finite error or σ ≤ 0 are ignored; NaN if none)."""
    z = np.sort(_z(errors, sigma))
    if len(z) == 0:
        return np.full(len(levels), np.nan)
    return np.searchsorted(z, _quantiles(levels), side="right") / len(z)


def within(errors: np.ndarray, sigma: np.ndarray, n_sigma: float) -> float:
    """Share of |error| ≤ n_sigma·σ (NaN when no pair is usable)."""
    z = _z(errors, sigma)
    return float(np.mean(z <= n_sigma)) if len(z) else float("nan")


def fit_scale(errors: np.ndarray, sigma: np.ndarray, levels: Sequence[float] = LEVELS) -> float:
    """The factor s on σ that minimises the largest |coverage − level| over ``levels``,
    searched on a log grid 0.05 … 20; the middle of tied optima; 1 without data."""
    z = np.sort(_z(errors, sigma))
    if len(z) == 0:
        return 1.0
    grid = np.geomspace(0.05, 20.0, 1201)
    observed = np.searchsorted(z, np.outer(grid, _quantiles(levels)), side="right") / len(z)
    worst = np.abs(observed - np.asarray(levels)).max(axis=1)
    best = np.flatnonzero(worst <= worst.min() + 1e-12)
    return float(grid[best[len(best) // 2]])


def split_calibration(
    errors: np.ndarray,
    sigma: np.ndarray,
    raw_sigma: np.ndarray,
    flags: np.ndarray,
    levels: Sequence[float] = LEVELS,
) -> SplitCalibration | None:
    """Calibration numbers of one split (one target) for σ and raw σ (each (n,)), over the
    pairs with a finite error and σ > 0; None when there is none."""
    errors, sigma = np.asarray(errors, float), np.asarray(sigma, float)
    ok = np.isfinite(errors) & np.isfinite(sigma) & (sigma > 0)
    if not ok.any():
        return None
    errors, sigma, raw_sigma = errors[ok], sigma[ok], np.asarray(raw_sigma, float)[ok]
    flags = np.asarray(flags)[ok]
    observed, raw = coverage(errors, sigma, levels), coverage(errors, raw_sigma, levels)
    return SplitCalibration(
        n=int(len(errors)),
        within_1sigma=within(errors, sigma, 1),
        within_2sigma=within(errors, sigma, 2),
        within_1sigma_unscaled=within(errors, raw_sigma, 1),
        within_2sigma_unscaled=within(errors, raw_sigma, 2),
        miscalibration_area=float(np.mean(np.abs(observed - levels))),
        miscalibration_area_unscaled=float(np.mean(np.abs(raw - levels))),
        rms_z=float(np.sqrt(np.mean((errors / sigma) ** 2))),
        mean_sigma=float(np.mean(sigma)),
        levels=list(levels),
        observed=observed.tolist(),
        observed_unscaled=raw.tolist(),
        mae_by_domain={
            f: float(np.mean(np.abs(errors[flags == f])))
            for f in DOMAIN_FLAGS
            if (flags == f).any()
        },
        n_by_domain={f: int((flags == f).sum()) for f in DOMAIN_FLAGS if (flags == f).any()},
    )


def calibration_curve(errors, sigma, levels: Sequence[float] = LEVELS) -> pd.DataFrame:
    """Expected vs observed coverage, one row per level: ``expected`` (the level), ``observed``
    (share of |error| ≤ z·σ). For a calibration plot of any table with errors and σ, e.g. the
    ``error`` and ``prediction_std`` columns of ``predictions.csv``."""
    return pd.DataFrame({"expected": list(levels), "observed": coverage(errors, sigma, levels)})
