"""Trustworthy predictions: an uncertainty σ and an applicability-domain flag for every one.

The card schema (:class:`UncertaintyCard`) and applying a fitted model's uncertainty to new
predictions (:func:`estimate`, :func:`uncertainty_columns`). The domain distance and its flags are
in :mod:`engine.uq.domain`, σ from residuals and its calibration in :mod:`engine.uq.sigma`.

Files and card fields:

* ``domain.npz``: the training crystals' pooled vectors (:class:`~engine.uq.domain.Domain`).
* ``model.json`` → ``uncertainty`` (:class:`UncertaintyCard`).
* ``predictions.csv`` gains ``prediction_std`` (target unit), ``domain_distance`` and ``domain``
  (plus ``prediction_std_<t>`` per target of a multi-target model).

Fitting happens at the end of every :func:`engine.training.train` run
(:func:`engine.training.uq_fit.fit_uncertainty`), in
:func:`engine.training.ensembles.calibrate_model` (``python -m engine calibrate MODEL``) for
models saved before, and in :func:`engine.training.ensembles.train_ensemble`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from engine.uq.domain import (
    BORDERLINE_QUANTILE,
    DOMAIN_FILE,
    OUT_OF_DOMAIN_QUANTILE,
    UNKNOWN,
    Domain,
    domain_flags,
)
from engine.uq.sigma import SplitCalibration, sigma_at

#: Columns :func:`engine.inference.prediction.predict` adds (plus ``prediction_std_<t>`` per target of a
#: multi-target model).
STD_COLUMN, DISTANCE_COLUMN, DOMAIN_COLUMN = "prediction_std", "domain_distance", "domain"


def std_column(target: str) -> str:
    """The σ column of one target of a multi-target model."""
    return f"{STD_COLUMN}_{target}"


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
            raw = np.column_stack(
                [sigma_at(distance, c, s) for c, s in zip(card.bin_distance, card.bin_sigma)]
            )
        return Estimate(
            std=raw * np.asarray(card.scale),
            raw=raw,
            distance=distance,
            domain=domain_flags(distance, card.borderline, card.out_of_domain),
        )


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
        raise FileNotFoundError(
            f"model.json records an applicability domain but {card.file} "
            "is missing; run `python -m engine calibrate` on the model"
        )
    domain = Domain.load(path, k=card.k)
    if len(domain.vectors) != card.n_train or domain.vectors.shape[1] != card.dim:
        raise ValueError(
            f"{path} holds {domain.vectors.shape} vectors but model.json records "
            f"({card.n_train}, {card.dim})"
        )
    return Uncertainty(card=card, domain=domain)


def no_uncertainty_note(name: str) -> str:
    return (
        f"model {name!r} has no fitted σ or applicability domain (saved before they "
        f"existed, or not trained here): prediction_std and domain_distance are empty and "
        f"domain is 'unknown'. Fit them with `python -m engine calibrate {name}`."
    )


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
        return Estimate(
            std=np.full((n, k), np.nan),
            raw=np.full((n, k), np.nan),
            distance=np.full(n, np.nan),
            domain=np.full(n, UNKNOWN, dtype=object),
            note=no_uncertainty_note(model.name),
        )
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
    """What :func:`engine.training.uq_fit.fit_uncertainty` gives: the card section, the domain,
    per split (``val``, ``test``, and ``train`` when asked for) the predictions (n, K), and per
    ``val``/``test`` the table columns (``id`` plus :func:`uncertainty_columns`)."""

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
