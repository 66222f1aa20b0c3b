"""Model cards: ``model.json`` of a model directory, its schema, reading and writing.

A model directory holds everything needed to use the model again, so that no setting can differ
silently between training and inference::

    model.json        ModelCard: versions, model + graph config, target and unit, normaliser,
                      element set, dataset name/size/hash/split, training settings, metrics
    weights.pt        state dict, loaded with ``torch.load(..., weights_only=True)``; holds the
                      input standardisation (Magpie mean/std) and late fusion's α as buffers
    forest.skops      the fitted random forest (``rf-magpie``, ``late-fusion``), written with
                      ``skops.io`` and loaded only with explicitly trusted types
    history.csv       per-epoch losses and metrics (trained models). A forest has one row
                      (epoch 1); models not trained here (original checkpoints) have none, so
                      readers must accept a missing file
    predictions.csv   validation and test predictions (trained models): split, id, formula,
                      target, prediction, error; attention fusion adds the per-material weights
                      (``weight_composition``, ``weight_structure`` and their aliases ``w_comp``,
                      ``w_graph``); late fusion adds ``prediction_rf`` and ``prediction_cgcnn``;
                      a multi-target model adds ``target_<t>``, ``prediction_<t>``, ``error_<t>``
                      per target ``<t>`` (``target``/``prediction``/``error``: the primary one);
                      ``prediction_std``, ``domain_distance`` and ``domain`` when σ and the
                      applicability domain are fitted (:mod:`engine.uq.uncertainty`)
    domain.npz        the training crystals' pooled vectors, ids, formulas and labels for the
                      applicability domain (plain arrays, ``allow_pickle=False``); the card's
                      ``uncertainty`` section holds the thresholds and the σ calibration

An *ensemble* directory has ``model.json`` with an ``ensemble`` section listing its members
(``members/0`` …, each a normal model directory sharing the family, model, graph and targets),
``predictions.csv`` and ``domain.npz``, and no weights of its own;
:func:`engine.store.directory.load_directory` gives an
:class:`~engine.store.directory.EnsembleModel` that predicts the member mean.

Multi-target models (``multitask``) keep ``target``, ``unit`` and ``normalizer`` for their first,
*primary*, target (so single-target readers keep working) and list every target in ``targets``,
``units`` and ``normalizers`` (same order; these are empty for single-target models, whose cards
are unchanged). Their metrics hold the primary target's ``n``/``mae``/... plus ``<t>/<metric>``
for every target; :attr:`ModelCard.task_targets` etc. give the lists for any model.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from engine.core.config import (
    ENGINE_VERSION,
    SCHEMA_VERSION,
    GraphConfig,
    ModelConfig,
    SplitConfig,
    TrainConfig,
)
from engine.io.output import atomic_write
from engine.models import model_config_from_dict
from engine.uq.uncertainty import UncertaintyCard

MODEL_FILE = "model.json"
WEIGHTS_FILE = "weights.pt"
HISTORY_FILE = "history.csv"
PREDICTIONS_FILE = "predictions.csv"


class ModelLoadError(ValueError):
    """A model directory or name cannot be used; the message says why."""


class Normalizer(BaseModel):
    """Target standardisation: the network learns (t(y) - mean) / std.

    ``transform`` t is ``none`` (t(y) = y) or ``log`` (t(y) = ln y, strictly positive targets
    only); ``mean`` and ``std`` are those of t(y) on the training split, and :meth:`decode`
    returns the original unit (exp for ``log``).
    """

    model_config = ConfigDict(extra="forbid")
    mean: float
    std: float
    transform: Literal["none", "log"] = "none"

    @classmethod
    def fit(cls, y: np.ndarray, transform: Literal["none", "log"] = "none") -> Normalizer:
        """Fit on training values y (N,) in the target unit.

        Raises:
            ValueError: ``log`` with zero or negative values (the message gives their count).
        """
        y = np.asarray(y, dtype=np.float64)
        if transform == "log":
            bad = int(np.sum(y <= 0))
            if bad:
                raise ValueError(
                    f"target transform 'log' needs strictly positive targets, but "
                    f"{bad} of {len(y)} training values are zero or negative; "
                    "use --target-transform none or filter them with --query"
                )
            y = np.log(y)
        std = float(np.std(y))
        return cls(mean=float(np.mean(y)), std=std if std > 0 else 1.0, transform=transform)

    def encode(self, y: torch.Tensor) -> torch.Tensor:
        """Target-unit values → the standardised training scale."""
        return ((torch.log(y) if self.transform == "log" else y) - self.mean) / self.std

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Standardised values → the target unit."""
        t = z * self.std + self.mean
        return torch.exp(t) if self.transform == "log" else t


class DatasetInfo(BaseModel):
    """Where a model's training data came from."""

    model_config = ConfigDict(extra="forbid")
    name: str
    source: str = ""
    size: int  # rows read from the source, before the query and missing targets are dropped
    content_hash: str = ""  # of the rows actually used (after the query)
    query: str | None = None
    split: SplitConfig | None = None
    n_train: int | None = None
    n_val: int | None = None
    n_test: int | None = None


class EnsembleInfo(BaseModel):
    """An ensemble's members: model directories relative to the ensemble's own directory."""

    model_config = ConfigDict(extra="forbid")
    members: list[str]
    #: The training seed of each member (informative).
    seeds: list[int] = []

    @field_validator("members")
    @classmethod
    def _inside(cls, members: list[str]) -> list[str]:
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        for member in members:
            path = Path(member)
            if path.is_absolute() or ".." in path.parts:
                raise ValueError(
                    f"ensemble member {member!r} must be a path inside the ensemble's directory"
                )
        return members


class ModelCard(BaseModel):
    """Everything in ``model.json``."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    schema_version: int = SCHEMA_VERSION
    engine_version: str = ENGINE_VERSION
    name: str
    description: str = ""
    source: Literal["shipped", "user", "cgcnn-original"] = "user"
    target: str
    unit: str = ""
    #: Multi-target models: every target, its unit and its normaliser, in the order of the
    #: model's outputs (``targets[0] == target``). Empty for single-target models.
    targets: list[str] = []
    units: list[str] = []
    normalizers: list[Normalizer] = []
    model: dict[str, Any]
    graph: GraphConfig
    normalizer: Normalizer
    elements: list[str] = []
    dataset: DatasetInfo | None = None
    training: TrainConfig | None = None
    metrics: dict[str, dict[str, float | int]] = {}
    #: Values fitted in training besides the weights, e.g. late fusion's ``alpha`` with
    #: ``alpha_grid`` and ``val_mae_by_alpha`` (the validation MAE of each α tried).
    fitted: dict[str, Any] = {}
    #: σ and applicability domain (:mod:`engine.uq.uncertainty`); None for models saved before.
    uncertainty: UncertaintyCard | None = None
    #: Set for an ensemble of member model directories.
    ensemble: EnsembleInfo | None = None
    created: str = ""
    references: list[str] = []

    def model_config_obj(self) -> ModelConfig:
        return model_config_from_dict(self.model)

    @property
    def task_targets(self) -> list[str]:
        """Every target the model predicts, in output order (``[target]`` for one target)."""
        return list(self.targets) or [self.target]

    @property
    def task_units(self) -> list[str]:
        """The unit of each of :attr:`task_targets`."""
        return list(self.units) or [self.unit]

    @property
    def task_normalizers(self) -> list[Normalizer]:
        """The normaliser of each of :attr:`task_targets`."""
        return list(self.normalizers) or [self.normalizer]

    def check_targets(self) -> None:
        """Raise ValueError when the multi-target fields disagree with each other, with the
        primary target or with the model's number of outputs."""
        if not self.targets and not self.units and not self.normalizers:
            return
        if not len(self.targets) == len(self.units) == len(self.normalizers):
            raise ValueError(
                f"{len(self.targets)} targets, {len(self.units)} units and "
                f"{len(self.normalizers)} normalizers"
            )
        if self.targets[0] != self.target or self.units[0] != self.unit:
            raise ValueError(
                f"targets[0]={self.targets[0]!r} ({self.units[0]!r}) is not the "
                f"primary target {self.target!r} ({self.unit!r})"
            )
        n_tasks = self.model.get("n_tasks")
        if n_tasks is not None and n_tasks != len(self.targets):
            raise ValueError(f"the model has {n_tasks} outputs but {len(self.targets)} targets")


def write_card(directory: str | Path, card: ModelCard) -> Path:
    """Write ``model.json`` (stamping ``created`` if it is empty); the directory is created."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if not card.created:
        card = card.model_copy(update={"created": datetime.now(timezone.utc).isoformat()})
    text = card.model_dump_json(indent=2) + "\n"
    atomic_write(directory / MODEL_FILE, lambda tmp: tmp.write_text(text))
    return directory


def read_card(directory: str | Path) -> ModelCard:
    """Read and check ``model.json`` of a model directory."""
    directory = Path(directory)
    path = directory / MODEL_FILE
    if not path.is_file():
        raise ModelLoadError(f"{directory} is not a model directory: it has no {MODEL_FILE}")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{path} is not valid JSON: {exc}") from None
    version = raw.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ModelLoadError(
            f"{path} has schema_version={version!r}; this engine ({ENGINE_VERSION}) reads "
            f"schema_version={SCHEMA_VERSION}. Retrain the model or use a matching engine."
        )
    try:
        card = ModelCard(**raw)
        card.model_config_obj()
        card.check_targets()
    except (ValidationError, ValueError) as exc:
        raise ModelLoadError(f"{path} does not fit this engine ({ENGINE_VERSION}): {exc}") from None
    for target, norm in zip(card.task_targets, card.task_normalizers):
        if not (np.isfinite(norm.mean) and np.isfinite(norm.std) and norm.std > 0):
            raise ModelLoadError(
                f"{path}: the normaliser of {target!r} (mean={norm.mean}, "
                f"std={norm.std}) is not finite with a positive std; the model "
                "would predict nonsense, so it is not loaded"
            )
    return card


def card_summary(card: ModelCard, path: Path | None) -> dict[str, Any]:
    """The :func:`engine.catalog.names.list_models` entry of a card (``path``: its directory,
    None for a model without one)."""
    return {
        "name": card.name,
        "target": card.target,
        "unit": card.unit,
        "targets": card.task_targets,
        "units": card.task_units,
        "source": card.source,
        "family": card.model.get("name", "cgcnn"),
        "description": card.description,
        "metrics": card.metrics,
        "path": str(path) if path else None,
        "ensemble_size": len(card.ensemble.members) if card.ensemble else 1,
        "has_uncertainty": card.uncertainty is not None,
    }


def safe_dir_name(name: str) -> str:
    """A file-system-safe folder name for a model name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "model"
