"""Trustworthy predictions: an uncertainty σ and an applicability-domain flag for every one.

**Applicability domain.** A crystal is described by the model's pooled vector (``pooled``
output, (D,); for an ensemble, member 0's). The pooled vectors of the training crystals are kept
in ``domain.npz`` together with their ids, formulas and labels. Each dimension is standardised
with the training mean and std, and the *domain distance* of a crystal is its mean Euclidean
distance to the ``k`` (5) nearest training crystals in that space (unitless). Thresholds come
from the validation crystals, which the formula-grouped or published split keeps away from the
training formulas:

* ``in-domain``: distance ≤ the 90th percentile of the validation distances (as close to the
  training data as 9 in 10 of the crystals the model was validated on);
* ``borderline``: up to the 99th percentile (farther than 9 in 10 validation crystals: the
  sparsely validated tail);
* ``out-of-domain``: beyond it (farther than 99 % of them: σ there is an extrapolation).

**σ, single model.** Validation residuals binned by domain distance (equal-count bins, at least
:data:`MIN_PER_BIN` crystals each, at most :data:`MAX_BINS` bins). Each bin's σ is the robust,
Gaussian-consistent scale of its residuals, 1.4826 · median |error| (materials errors are
heavy-tailed: a few gross errors would dominate a bin's RMS and hide the trend with distance).
σ² is made non-decreasing in distance (weighted pool-adjacent-violators), then σ is interpolated
between the bins' median distances, constant below the first, and grows in proportion to the
distance beyond the last (an assumption, not a fit: such crystals are flagged anyway).

**σ, ensemble.** The standard deviation of the members' predictions (ddof 1).

**Calibration.** Either raw σ is multiplied by one scale factor per target, fitted on the
validation split so that the coverage of the Gaussian central intervals ±z_p·σ matches p as
closely as possible at its worst level p in :data:`LEVELS` (0.05 … 0.95); minimising the largest
deviation rather than the mean one keeps the wide intervals from being overconfident. The card
records the share of validation (and test) errors within 1σ and 2σ (ideal 68.3 % and 95.4 %)
before and after the scaling, the coverage curve, the miscalibration area (mean |observed −
expected| over the levels) and the MAE of each domain class.

Files and card fields:

* ``domain.npz`` (``np.load(..., allow_pickle=False)``): ``vectors`` float32 (N, D) raw pooled
  vectors of the training crystals, ``mean``/``std`` float32 (D,), ``ids``/``formulas`` str (N,),
  ``labels`` float64 (N, K) in the targets' units (NaN where missing), ``targets`` str (K,).
* ``model.json`` → ``uncertainty`` (:class:`UncertaintyCard`).
* ``predictions.csv`` gains ``prediction_std`` (target unit), ``domain_distance`` and ``domain``
  (plus ``prediction_std_<t>`` per target of a multi-target model).

Fitting happens at the end of every :func:`engine.training.train` run, in :func:`calibrate_model`
(``python -m engine calibrate MODEL``) for models saved before, and in :func:`train_ensemble`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

DOMAIN_FILE = "domain.npz"
IN_DOMAIN, BORDERLINE, OUT_OF_DOMAIN, UNKNOWN = (
    "in-domain", "borderline", "out-of-domain", "unknown")
#: The flags in order of distance; ``unknown`` when a model has no fitted domain.
DOMAIN_FLAGS = (IN_DOMAIN, BORDERLINE, OUT_OF_DOMAIN)
#: Nearest training crystals averaged in the domain distance.
DEFAULT_K = 5
BORDERLINE_QUANTILE = 0.90
OUT_OF_DOMAIN_QUANTILE = 0.99
#: Confidence levels of the coverage curve (and of the scale fit).
LEVELS = tuple(round(0.05 * i, 2) for i in range(1, 20))
#: Coverage of ±1σ and ±2σ for Gaussian errors.
EXPECTED_1SIGMA = 2 * NormalDist().cdf(1.0) - 1
EXPECTED_2SIGMA = 2 * NormalDist().cdf(2.0) - 1
MIN_PER_BIN = 50
MAX_BINS = 10
#: σ of a normal distribution per median absolute deviation, 1 / Φ⁻¹(3/4).
MAD_TO_SIGMA = 1.0 / NormalDist().inv_cdf(0.75)
#: Columns :func:`engine.inference.prediction.predict` adds (plus ``prediction_std_<t>`` per target of a
#: multi-target model).
STD_COLUMN, DISTANCE_COLUMN, DOMAIN_COLUMN = "prediction_std", "domain_distance", "domain"


def std_column(target: str) -> str:
    """The σ column of one target of a multi-target model."""
    return f"{STD_COLUMN}_{target}"


# ----------------------------------------------------------------------------------------------
# What the card records


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


class UncertaintyCard(BaseModel):
    """``model.json`` → ``uncertainty``: how σ and the domain flag were fitted."""

    model_config = ConfigDict(extra="forbid")
    sigma_source: Literal["validation residuals by domain distance", "ensemble spread"]
    #: What the domain vectors are (the model's pooled vector; member 0's for an ensemble).
    vectors: str = ""
    k: int
    n_train: int
    dim: int
    #: Domain-distance thresholds (unitless) and the validation quantiles they were set at.
    borderline: float
    out_of_domain: float
    borderline_quantile: float = BORDERLINE_QUANTILE
    out_of_domain_quantile: float = OUT_OF_DOMAIN_QUANTILE
    #: Factor on raw σ per target (task order), fitted on validation.
    scale: list[float]
    #: Single models, per target: the bins' median domain distance, raw σ (target unit; after
    #: the non-decreasing fit) and crystal count.
    bin_distance: list[list[float]] = []
    bin_sigma: list[list[float]] = []
    bin_count: list[list[int]] = []
    #: ``val``, ``test`` (primary target) and, for multi-target models, ``val/<t>``, ``test/<t>``.
    calibration: dict[str, SplitCalibration] = {}
    file: str = DOMAIN_FILE


# ----------------------------------------------------------------------------------------------
# The applicability domain


@dataclass
class Domain:
    """The training crystals' pooled vectors, and distances to them.

    Attributes:
        vectors: raw pooled vectors (N, D), float32.
        mean, std: per-dimension standardisation (D,), float32 (std > 0).
        ids, formulas: (N,) strings.
        labels: (N, K) training labels in the targets' units (NaN where missing).
        targets: the K target names.
        k: neighbours averaged in :meth:`distance`.
    """

    vectors: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    ids: np.ndarray
    formulas: np.ndarray
    labels: np.ndarray
    targets: list[str]
    k: int = DEFAULT_K
    _index: Any = field(default=None, init=False, repr=False)

    @classmethod
    def build(cls, vectors: np.ndarray, ids: Sequence[str], formulas: Sequence[str],
              labels: np.ndarray, targets: Sequence[str], *, k: int = DEFAULT_K) -> Domain:
        """A domain from training vectors (N, D) and labels (N, K); ``k`` is capped at N."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) == 0:
            raise ValueError(f"need training vectors of shape (N, D), got {vectors.shape}")
        std = vectors.astype(np.float64).std(0)
        std = np.where(std > 1e-8, std, 1.0)
        return cls(vectors=vectors, mean=vectors.astype(np.float64).mean(0).astype(np.float32),
                   std=std.astype(np.float32), ids=np.asarray(ids, dtype=str),
                   formulas=np.asarray(formulas, dtype=str),
                   labels=np.asarray(labels, dtype=np.float64).reshape(len(vectors), -1),
                   targets=list(targets), k=min(k, len(vectors)))

    def save(self, path: str | Path) -> None:
        """Write ``domain.npz`` (compressed; plain arrays only)."""
        np.savez_compressed(path, vectors=self.vectors, mean=self.mean, std=self.std,
                            ids=self.ids, formulas=self.formulas, labels=self.labels,
                            targets=np.asarray(self.targets, dtype=str))

    @classmethod
    def load(cls, path: str | Path, *, k: int) -> Domain:
        """Read ``domain.npz`` without unpickling; ValueError when arrays are missing or their
        shapes disagree."""
        with np.load(path, allow_pickle=False) as raw:
            missing = {"vectors", "mean", "std", "ids", "formulas", "labels",
                       "targets"} - set(raw.files)
            if missing:
                raise ValueError(f"{path} lacks {', '.join(sorted(missing))}")
            arrays = {name: raw[name] for name in raw.files}
        n, d = arrays["vectors"].shape
        if (arrays["mean"].shape != (d,) or arrays["std"].shape != (d,)
                or len(arrays["ids"]) != n or len(arrays["formulas"]) != n
                or arrays["labels"].shape != (n, len(arrays["targets"]))):
            raise ValueError(f"{path}: array shapes disagree")
        return cls(vectors=arrays["vectors"], mean=arrays["mean"], std=arrays["std"],
                   ids=arrays["ids"], formulas=arrays["formulas"], labels=arrays["labels"],
                   targets=[str(t) for t in arrays["targets"]], k=min(k, n))

    def _standardise(self, vectors: np.ndarray) -> np.ndarray:
        return (np.asarray(vectors, dtype=np.float64) - self.mean) / self.std

    def neighbours(self, vectors: np.ndarray, k: int | None = None):
        """Distances (B, k) to the k nearest training crystals, ascending, and their row
        indices (B, k)."""
        if self._index is None:  # the standardised training vectors
            self._index = self._standardise(self.vectors)
        reference = self._index
        k = min(k or self.k, len(reference))
        vectors = np.asarray(vectors).reshape(-1, reference.shape[1])
        if len(vectors) == 0:
            return np.zeros((0, k)), np.zeros((0, k), dtype=np.int64)
        # brute force in numpy (no scikit-learn import): rank by squared distance in chunks,
        # then measure the k chosen exactly and sort them
        query = self._standardise(vectors)
        norms = np.einsum("ij,ij->i", reference, reference)
        index = np.concatenate([
            np.argpartition(norms - 2 * chunk @ reference.T, k - 1, axis=1)[:, :k]
            for chunk in np.array_split(query, max(1, len(query) // 1024))
        ])
        distance = np.linalg.norm(query[:, None, :] - reference[index], axis=2)
        order = np.argsort(distance, axis=1, kind="stable")
        return (np.take_along_axis(distance, order, axis=1),
                np.take_along_axis(index, order, axis=1))

    def distance(self, vectors: np.ndarray) -> np.ndarray:
        """Domain distance (B,): mean distance to the :attr:`k` nearest training crystals."""
        return self.neighbours(vectors)[0].mean(axis=1)


def domain_flags(distance: np.ndarray, borderline: float, out_of_domain: float) -> np.ndarray:
    """``in-domain`` / ``borderline`` / ``out-of-domain`` per distance (B,), ``unknown`` where
    the distance is NaN; a distance equal to a threshold falls on the nearer side."""
    distance = np.asarray(distance, dtype=np.float64)
    flags = np.full(distance.shape, UNKNOWN, dtype=object)
    known = np.isfinite(distance)
    flags[known] = IN_DOMAIN
    flags[known & (distance > borderline)] = BORDERLINE
    flags[known & (distance > out_of_domain)] = OUT_OF_DOMAIN
    return flags


# ----------------------------------------------------------------------------------------------
# σ and calibration (pure numpy; errors and σ in the target's unit)


def _isotonic(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted least-squares non-decreasing fit (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, weight, count]
    for v, w in zip(values, weights):
        blocks.append([float(v), float(w), 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, n2 = blocks.pop()
            v1, w1, n1 = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return np.repeat([b[0] for b in blocks], [int(b[2]) for b in blocks])


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
    return centres, np.sqrt(_isotonic(variance, counts)), counts


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


def coverage(errors: np.ndarray, sigma: np.ndarray,
             levels: Sequence[float] = LEVELS) -> np.ndarray:
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


def split_calibration(errors: np.ndarray, sigma: np.ndarray, raw_sigma: np.ndarray,
                      flags: np.ndarray,
                      levels: Sequence[float] = LEVELS) -> SplitCalibration | None:
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
        within_1sigma=within(errors, sigma, 1), within_2sigma=within(errors, sigma, 2),
        within_1sigma_unscaled=within(errors, raw_sigma, 1),
        within_2sigma_unscaled=within(errors, raw_sigma, 2),
        miscalibration_area=float(np.mean(np.abs(observed - levels))),
        miscalibration_area_unscaled=float(np.mean(np.abs(raw - levels))),
        rms_z=float(np.sqrt(np.mean((errors / sigma) ** 2))),
        mean_sigma=float(np.mean(sigma)),
        levels=list(levels), observed=observed.tolist(), observed_unscaled=raw.tolist(),
        mae_by_domain={f: float(np.mean(np.abs(errors[flags == f])))
                       for f in DOMAIN_FLAGS if (flags == f).any()},
        n_by_domain={f: int((flags == f).sum()) for f in DOMAIN_FLAGS if (flags == f).any()},
    )


def calibration_curve(errors, sigma, levels: Sequence[float] = LEVELS) -> pd.DataFrame:
    """Expected vs observed coverage, one row per level: ``expected`` (the level), ``observed``
    (share of |error| ≤ z·σ). For a calibration plot of any table with errors and σ, e.g. the
    ``error`` and ``prediction_std`` columns of ``predictions.csv``."""
    return pd.DataFrame({"expected": list(levels), "observed": coverage(errors, sigma, levels)})


# ----------------------------------------------------------------------------------------------
# Applying a fitted model's uncertainty


@dataclass
class Estimate:
    """σ and domain of B predictions: ``std`` (B, K) per target in its unit (scaled), ``raw``
    (B, K) before the scale, ``distance`` (B,), ``domain`` (B,) flags; ``note`` says why they
    are missing (NaN / ``unknown``) when the model has no fitted uncertainty."""

    std: np.ndarray
    raw: np.ndarray
    distance: np.ndarray
    domain: np.ndarray
    note: str | None = None


@dataclass
class Uncertainty:
    """A model's fitted uncertainty: the card section and the domain."""

    card: UncertaintyCard
    domain: Domain

    def estimate(self, pooled: np.ndarray, members: np.ndarray | None = None) -> Estimate:
        """σ and domain from pooled vectors (B, D) and, for an ensemble, the members'
        predictions (M, B, K)."""
        distance = self.domain.distance(pooled)
        card = self.card
        if card.sigma_source == "ensemble spread":
            if members is None:
                raise ValueError("an ensemble's σ needs the members' predictions")
            raw = np.asarray(members, dtype=np.float64).std(axis=0, ddof=1)
        else:
            raw = np.column_stack([sigma_at(distance, c, s) for c, s in
                                   zip(card.bin_distance, card.bin_sigma)])
        return Estimate(std=raw * np.asarray(card.scale), raw=raw, distance=distance,
                        domain=domain_flags(distance, card.borderline, card.out_of_domain))


def load_uncertainty(directory: Path, card: UncertaintyCard | None) -> Uncertainty | None:
    """The fitted uncertainty of a model directory (None when its card has none).

    Raises:
        FileNotFoundError: the card records a domain but the file is missing.
        ValueError: the file is malformed or disagrees with the card.
    """
    if card is None:
        return None
    path = Path(directory) / card.file
    if not path.is_file():
        raise FileNotFoundError(f"model.json records an applicability domain but {card.file} "
                                "is missing; run `python -m engine calibrate` on the model")
    domain = Domain.load(path, k=card.k)
    if len(domain.vectors) != card.n_train or domain.vectors.shape[1] != card.dim:
        raise ValueError(f"{path} holds {domain.vectors.shape} vectors but model.json records "
                         f"({card.n_train}, {card.dim})")
    return Uncertainty(card=card, domain=domain)


def no_uncertainty_note(name: str) -> str:
    return (f"model {name!r} has no fitted σ or applicability domain (saved before they "
            f"existed, or not trained here): prediction_std and domain_distance are empty and "
            f"domain is 'unknown'. Fit them with `python -m engine calibrate {name}`.")


def uncertainty_outputs(model) -> tuple[str, ...]:
    """The extra ``run`` outputs :func:`estimate` needs for ``model``."""
    if getattr(model, "uncertainty", None) is None:
        return ()
    return ("pooled", "members") if model.n_members > 1 else ("pooled",)


def estimate(model, out: dict[str, np.ndarray], n: int) -> Estimate:
    """σ and domain of n predictions from ``model.run`` outputs (which must include
    :func:`uncertainty_outputs`); NaN and ``unknown`` with a note when the model has none."""
    unc = getattr(model, "uncertainty", None)
    if unc is None:
        k = len(model.targets)
        return Estimate(std=np.full((n, k), np.nan), raw=np.full((n, k), np.nan),
                        distance=np.full(n, np.nan), domain=np.full(n, UNKNOWN, dtype=object),
                        note=no_uncertainty_note(model.name))
    return unc.estimate(out["pooled"], out.get("members"))


def uncertainty_columns(est: Estimate, targets: Sequence[str], task: int = 0) -> dict:
    """Table columns of an estimate: ``prediction_std`` (of target ``task``),
    ``prediction_std_<t>`` per target when there are several, ``domain_distance``, ``domain``."""
    columns = {STD_COLUMN: est.std[:, task]}
    if len(targets) > 1:
        columns.update({std_column(t): est.std[:, i] for i, t in enumerate(targets)})
    columns[DISTANCE_COLUMN] = est.distance
    columns[DOMAIN_COLUMN] = est.domain
    return columns


# ----------------------------------------------------------------------------------------------
# Fitting


@dataclass
class Fitted:
    """What :func:`fit_uncertainty` gives: the card section, the domain, and per split (``val``,
    ``test``) the predictions (n, K), the member predictions (M, n, K; ensembles) and the table
    columns (``id`` plus :func:`uncertainty_columns`)."""

    card: UncertaintyCard
    domain: Domain
    predictions: dict[str, np.ndarray]
    columns: dict[str, pd.DataFrame]

    @property
    def uncertainty(self) -> Uncertainty:
        return Uncertainty(card=self.card, domain=self.domain)

    def annotate(self, predictions: pd.DataFrame) -> pd.DataFrame:
        """``predictions.csv`` rows (``split``, ``id``) with the σ and domain columns added:
        in order when a split's ids are the fitted ones in the same order, else matched by id
        (NaN / ``unknown`` for rows not fitted)."""
        frame = predictions.copy()
        for part, cols in self.columns.items():
            rows = (frame["split"] == part).to_numpy()
            ids = frame.loc[rows, "id"].astype(str).to_numpy()
            if not np.array_equal(ids, cols["id"].to_numpy()):
                cols = cols.drop_duplicates("id").set_index("id").reindex(ids)
            for col in (c for c in cols.columns if c != "id"):
                if col not in frame:
                    frame[col] = UNKNOWN if col == DOMAIN_COLUMN else np.nan
                frame.loc[rows, col] = cols[col].to_numpy()
        return frame


def fit_uncertainty(model, inputs: Sequence, parts: dict[str, np.ndarray], *,
                    ids: Sequence[str], formulas: Sequence[str], values: np.ndarray,
                    k: int = DEFAULT_K,
                    quantiles: tuple[float, float] = (BORDERLINE_QUANTILE, OUT_OF_DOMAIN_QUANTILE),
                    device: str = "auto") -> Fitted:
    """Fit the domain (training vectors), the thresholds and σ (validation), and report the
    calibration on validation and test.

    Args:
        model: a loaded model or ensemble (``model.run`` with ``pooled``, ``tasks``, and
            ``members`` for an ensemble).
        inputs: prepared inputs of every row; parts: ``train``/``val``/``test`` row positions.
        ids, formulas: per row; values: labels (N, K) in the targets' units, NaN where missing.

    Raises:
        ValueError: the training or validation split is empty.
    """
    values = np.asarray(values, dtype=np.float64).reshape(len(inputs), -1)
    ids, formulas = np.asarray(ids, dtype=str), np.asarray(formulas, dtype=str)
    ensemble = model.n_members > 1
    if len(parts["train"]) == 0 or len(parts["val"]) == 0:
        raise ValueError("fitting σ and the domain needs training and validation crystals")
    wanted = ("tasks", "pooled", "members") if ensemble else ("tasks", "pooled")
    outs = {part: model.run([inputs[i] for i in idx], ("pooled",) if part == "train" else wanted,
                            device=device)
            for part, idx in parts.items() if len(idx)}
    train = parts["train"]
    domain = Domain.build(outs["train"]["pooled"], ids[train], formulas[train], values[train],
                          model.targets, k=k)
    distance = {part: domain.distance(out["pooled"]) for part, out in outs.items()
                if part != "train"}
    borderline, out_of_domain = (float(q) for q in np.quantile(distance["val"], quantiles))
    errors = {part: outs[part]["tasks"] - values[parts[part]] for part in distance}
    n_tasks = values.shape[1]
    bins: dict[str, list] = {"bin_distance": [], "bin_sigma": [], "bin_count": []}
    if not ensemble:
        for t in range(n_tasks):
            centres, sigma, counts = binned_sigma(distance["val"], errors["val"][:, t])
            bins["bin_distance"].append(centres.tolist())
            bins["bin_sigma"].append(sigma.tolist())
            bins["bin_count"].append(counts.tolist())
    card = UncertaintyCard(
        sigma_source="ensemble spread" if ensemble else "validation residuals by domain distance",
        vectors=model.pooled_description, k=domain.k, n_train=len(train),
        dim=int(domain.vectors.shape[1]), borderline=borderline, out_of_domain=out_of_domain,
        borderline_quantile=quantiles[0], out_of_domain_quantile=quantiles[1],
        scale=[1.0] * n_tasks, **bins,
    )
    unc = Uncertainty(card=card, domain=domain)
    raw_val = unc.estimate(outs["val"]["pooled"], outs["val"].get("members")).raw
    card.scale = [fit_scale(errors["val"][:, t], raw_val[:, t]) for t in range(n_tasks)]
    columns, report = {}, {}
    for part in distance:
        est = unc.estimate(outs[part]["pooled"], outs[part].get("members"))
        for t, target in enumerate(model.targets):
            result = split_calibration(errors[part][:, t], est.std[:, t], est.raw[:, t],
                                       est.domain)
            if result is None:
                continue
            if t == 0:
                report[part] = result
            if n_tasks > 1:
                report[f"{part}/{target}"] = result
        columns[part] = pd.DataFrame({"id": ids[parts[part]],
                                      **uncertainty_columns(est, model.targets)})
    card.calibration = report
    return Fitted(card=card, domain=domain,
                  predictions={p: outs[p]["tasks"] for p in distance},
                  columns=columns)


# ----------------------------------------------------------------------------------------------
# Models saved before: their training rows, and calibration after the fact


def training_rows(dataset, card):
    """The rows, labels and split a model was trained on, rebuilt from its card.

    Applies the recorded query, drops rows without a label (any label, for multi-target
    models), checks the content hash and splits with the recorded split config.

    Returns:
        ``(dataset, values (N, K), parts)`` as in :func:`engine.training.train`.

    Raises:
        ValueError: the card records no dataset or split, or the data is not the recorded one.
    """
    from engine.io.splits import split_dataset

    info = card.dataset
    if info is None or info.split is None:
        raise ValueError(f"model {card.name!r} records no training dataset and split, so σ and "
                         "the domain cannot be fitted for it")
    if info.query:
        dataset = dataset.query(info.query)
    targets = card.task_targets
    if len(targets) > 1:
        values = np.column_stack([dataset.targets(t) for t in targets])
        dataset = dataset.subset(np.isfinite(values).any(axis=1))
        values = np.column_stack([dataset.targets(t) for t in targets])
    else:
        dataset = dataset.dropna(targets[0])
        values = dataset.targets(targets[0])[:, None]
    if info.content_hash and dataset.content_hash() != info.content_hash:
        raise ValueError(f"the dataset {dataset.source or dataset.name!r} is not the one model "
                         f"{card.name!r} was trained on (its content hash differs)")
    parts = split_dataset(dataset, info.split)
    recorded = {"train": info.n_train, "val": info.n_val, "test": info.n_test}
    for part, n in recorded.items():
        if n is not None and n != len(parts[part]):
            raise ValueError(f"the recorded split has {n} {part} rows, the rebuilt one "
                             f"{len(parts[part])}")
    return dataset, values, parts


def _ensemble_predictions(model, dataset, inputs, values, parts, fitted: Fitted, device: str):
    """An ensemble's metrics (from the member mean) and its ``predictions.csv`` frame."""
    from engine.training.multitask import add_task_columns, metrics_by_task
    from engine.training.run import _family_columns  # fusion weights, late-fusion halves
    from engine.uq.metrics import regression_metrics

    targets, multi = model.targets, len(model.targets) > 1
    formulas = dataset.table["formula"].astype(str).to_numpy()
    metrics, frames = {}, []
    for part, idx in parts.items():
        if len(idx) == 0:
            continue
        pred = fitted.predictions.get(part)
        if pred is None:  # train: not needed for the fit
            pred = model.run([inputs[i] for i in idx], ("tasks",), device=device)["tasks"]
        y = values[idx]
        metrics[part] = metrics_by_task(targets, y, pred) if multi else \
            regression_metrics(y[:, 0], pred[:, 0])
        if part == "train":
            continue
        frame = pd.DataFrame({"split": part, "id": [dataset.items[i].id for i in idx],
                              "formula": formulas[idx], "target": y[:, 0],
                              "prediction": pred[:, 0], "error": pred[:, 0] - y[:, 0]})
        if multi:
            add_task_columns(frame, targets, y, pred)
        frames.append(_family_columns(model, frame, [inputs[i] for i in idx], device))
    return metrics, pd.concat(frames, ignore_index=True)


def calibrate_model(model, dataset=None, *, device: str = "auto", write: bool = True):
    """Fit σ and the applicability domain of an existing model from its recorded training
    data and split, and (``write``) save them into its directory: ``domain.npz``, the card's
    ``uncertainty`` and the σ/domain columns of ``predictions.csv``. For an ensemble the card's
    metrics and ``predictions.csv`` are rebuilt from the member mean.

    Args:
        model: a loaded model or ensemble, a model directory or a model name.
        dataset: the training dataset as loaded (before the query); default: the card's
            ``dataset.source``, found with :func:`engine.io.datasets.resolve_source`.

    Returns:
        The model, with its card and :attr:`uncertainty` updated.

    Raises:
        ValueError: no recorded dataset or split, the data is not found or not the recorded one.
    """
    from engine.io.datasets import load_dataset, resolve_source
    from engine.store.directory import PREDICTIONS_FILE, LoadedModel, load_model, write_card

    if not isinstance(model, LoadedModel):
        model = load_model(model)
    card = model.card
    if dataset is None:
        source = card.dataset.source if card.dataset else ""
        path = resolve_source(source)
        if path is None:
            raise ValueError(f"the training data of model {card.name!r} ({source or 'unknown'}) "
                             "is not on this machine; pass it with --data")
        dataset = load_dataset(path)
    dataset, values, parts = training_rows(dataset, card)
    inputs = model.prepare([it.structure for it in dataset.items],
                           ids=[it.id for it in dataset.items])
    fitted = fit_uncertainty(model, inputs, parts, ids=[it.id for it in dataset.items],
                             formulas=dataset.table["formula"].astype(str).tolist(),
                             values=values, device=device)
    update: dict[str, Any] = {"uncertainty": fitted.card}
    predictions = None
    if model.n_members > 1:
        update["metrics"], predictions = _ensemble_predictions(
            model, dataset, inputs, values, parts, fitted, device)
    elif model.path is not None and (model.path / PREDICTIONS_FILE).is_file():
        predictions = pd.read_csv(model.path / PREDICTIONS_FILE, float_precision="round_trip")
    model.card = card.model_copy(update=update)
    model.uncertainty = fitted.uncertainty
    if write:
        if model.path is None:
            raise ValueError(f"model {card.name!r} has no directory to write to")
        fitted.domain.save(model.path / DOMAIN_FILE)
        write_card(model.path, model.card)
        if predictions is not None:
            fitted.annotate(predictions).to_csv(model.path / PREDICTIONS_FILE, index=False)
    return model


# ----------------------------------------------------------------------------------------------
# Ensembles


def train_ensemble(dataset, target, *, k: int, out: str | Path, name: str | None = None,
                   training=None, progress: bool = False, **train_kwargs):
    """Train ``k`` models that differ only in their training seed (seed, seed + 1, …) and save
    them as one ensemble directory: ``out/model.json`` (with ``ensemble``) and the members in
    ``out/members/<i>`` (each a normal model directory). The ensemble predicts the member mean,
    with σ = the calibrated member spread.

    Args:
        dataset, target, train_kwargs: as for :func:`engine.training.train` (the same split,
            model and graph configs for every member).
        k: number of members (at least 2).
        training: the training config; member i uses ``seed + i``.

    Returns:
        A :class:`~engine.training.TrainResult` of the ensemble; its ``history`` is the members'
        histories stacked, with a ``member`` column.
    """
    from engine.core.config import TrainConfig
    from engine.store.directory import PREDICTIONS_FILE, EnsembleInfo, load_model, write_card
    from engine.training import distributed
    from engine.training.run import TrainResult, train

    if k < 2:
        raise ValueError(f"an ensemble needs at least 2 members, got {k}")
    if distributed.active():
        raise ValueError("an ensemble is trained in one process; start it without torchrun")
    out = Path(out)
    name = name or out.name
    train_cfg = training or TrainConfig()
    seeds = [train_cfg.seed + i for i in range(k)]
    results = [train(dataset, target, training=train_cfg.model_copy(update={"seed": seed}),
                     out=out / "members" / str(i), name=f"{name}/member-{i}",
                     progress=progress, **train_kwargs)
               for i, seed in enumerate(seeds)]
    first = results[0].model.card
    card = first.model_copy(update={
        "name": name, "source": "user", "created": "", "metrics": {}, "uncertainty": None,
        "description": f"Ensemble of {k} {first.model.get('name', 'cgcnn')} models "
                       f"(training seeds {seeds[0]}–{seeds[-1]}): the member mean, with σ from "
                       "the calibrated member spread.",
        "ensemble": EnsembleInfo(members=[f"members/{i}" for i in range(k)], seeds=seeds),
    })
    write_card(out, card)
    model = calibrate_model(load_model(out), dataset, device=train_cfg.device)
    return TrainResult(
        model=model,
        history=pd.concat([r.history.assign(member=i) for i, r in enumerate(results)],
                          ignore_index=True),
        predictions=pd.read_csv(out / PREDICTIONS_FILE),
        metrics=model.card.metrics,
        path=out,
        stop_reason="; ".join(f"member {i}: {r.stop_reason}" for i, r in enumerate(results)
                              if r.stop_reason) or None,
    )
