"""Model directories ("model cards"): save, load, and list every available model.

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
``predictions.csv`` and ``domain.npz``, and no weights of its own; :func:`load_model` gives an
:class:`EnsembleModel` that predicts the member mean.

Multi-target models (``multitask``) keep ``target``, ``unit`` and ``normalizer`` for their first,
*primary*, target (so single-target readers keep working) and list every target in ``targets``,
``units`` and ``normalizers`` (same order; these are empty for single-target models, whose cards
are unchanged). Their metrics hold the primary target's ``n``/``mae``/... plus ``<t>/<metric>``
for every target; :attr:`ModelCard.task_targets` etc. give the lists for any model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from torch import nn
from torch_geometric.data import Batch, Data

from engine.core.config import (
    ENGINE_VERSION,
    SCHEMA_VERSION,
    GraphConfig,
    ModelConfig,
    SplitConfig,
    TrainConfig,
    shipped_model_dir,
    user_model_dir,
)
from engine.core.device import resolve_device
from engine.graphs.batching import GraphLoader
from engine.graphs.builder import GraphBuilder
from engine.io.output import atomic_write
from engine.models import build_inputs, build_model, model_config_from_dict, prepare_input
from engine.uq.uncertainty import (
    DOMAIN_FILE,
    Domain,
    Uncertainty,
    UncertaintyCard,
    load_uncertainty,
)

MODEL_FILE = "model.json"
WEIGHTS_FILE = "weights.pt"
HISTORY_FILE = "history.csv"
PREDICTIONS_FILE = "predictions.csv"
ORIGINAL_PREFIX = "cgcnn-original/"


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
                raise ValueError(f"target transform 'log' needs strictly positive targets, but "
                                 f"{bad} of {len(y)} training values are zero or negative; "
                                 "use --target-transform none or filter them with --query")
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
                raise ValueError(f"ensemble member {member!r} must be a path inside the "
                                 "ensemble's directory")
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
            raise ValueError(f"{len(self.targets)} targets, {len(self.units)} units and "
                             f"{len(self.normalizers)} normalizers")
        if self.targets[0] != self.target or self.units[0] != self.unit:
            raise ValueError(f"targets[0]={self.targets[0]!r} ({self.units[0]!r}) is not the "
                             f"primary target {self.target!r} ({self.unit!r})")
        n_tasks = self.model.get("n_tasks")
        if n_tasks is not None and n_tasks != len(self.targets):
            raise ValueError(f"the model has {n_tasks} outputs but {len(self.targets)} targets")


@dataclass
class LoadedModel:
    """A ready-to-use model of any family: its card, its module (in eval mode), its graph builder.

    Inputs are built by :meth:`prepare` (the graph, if the family uses one, plus the family's
    extra inputs such as the Magpie row ``comp``); the ``*_graphs`` methods take those inputs.
    The ``*_structures`` methods do both steps. ``uncertainty`` is the fitted σ and
    applicability domain (None for models saved before them). ``pinned`` is the device set by
    :meth:`pin` (None: each call moves the module to its device and back to the CPU).
    """

    card: ModelCard
    module: nn.Module
    path: Path | None = None
    builder: GraphBuilder = field(init=False)
    uncertainty: Uncertainty | None = None
    pinned: torch.device | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.module.eval()
        self.builder = GraphBuilder(self.card.graph)

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def family(self) -> str:
        """The model family (registry name), e.g. ``cgcnn`` or ``attention-fusion``."""
        return self.card.model.get("name", "cgcnn")

    @property
    def pooled_description(self) -> str:
        """What :meth:`embed_graphs` returns for this family, in words."""
        return getattr(self.module, "pooled_description", "")

    @property
    def n_members(self) -> int:
        """Networks averaged in a prediction (1; the ensemble size for an ensemble)."""
        return 1

    @property
    def targets(self) -> list[str]:
        """Every target the model predicts (one for single-target models)."""
        return self.card.task_targets

    @property
    def has_fusion_weights(self) -> bool:
        """Whether the model gives per-material (w_comp, w_graph) (attention fusion)."""
        return hasattr(self.module, "fusion_weights")

    # -- device -----------------------------------------------------------------------------

    def pin(self, device: str = "auto") -> LoadedModel:
        """Put the module on ``device`` once and keep it there (returns self).

        For a model shared by threads (a server's cache): calls never move a pinned module, so
        one call cannot pull it from under another running on a GPU.
        """
        self.pinned = resolve_device(device)
        self.module.to(self.pinned)
        return self

    @contextmanager
    def placed(self, device: str = "auto") -> Iterator[torch.device]:
        """The device to evaluate on, with the module there inside the ``with`` block.

        A pinned model stays where :meth:`pin` put it (``device`` must be ``auto`` or that
        device); otherwise the module moves to ``device`` and back to the CPU afterwards.

        Raises:
            ValueError: a pinned model is asked for another device.
        """
        if self.pinned is not None:
            if device != "auto" and resolve_device(device) != self.pinned:
                raise ValueError(f"model {self.name!r} is pinned to {self.pinned}; "
                                 f"device={device!r} would move a shared module")
            yield self.pinned
            return
        dev = resolve_device(device)
        self.module.to(dev)
        try:
            yield dev
        finally:
            self.module.to("cpu")

    # -- inputs -----------------------------------------------------------------------------

    def prepare_one(self, structure, *, structure_id: str | None = None) -> Data:
        """The model input of one pymatgen structure (see :func:`engine.models.prepare_input`)."""
        return prepare_input(self.module, self.builder, structure, structure_id=structure_id)

    def prepare(self, structures, *, ids=None) -> list[Data]:
        """Model inputs of many structures (see :func:`engine.models.build_inputs`)."""
        return build_inputs(self.module, self.builder, structures, ids=ids)

    # -- batched evaluation -----------------------------------------------------------------

    def run(self, inputs, outputs=("prediction",), *, batch_size: int = 64,
            device: str = "auto") -> dict[str, np.ndarray]:
        """Evaluate prepared inputs in batches, without gradients.

        Args:
            inputs: ``Data`` from :meth:`prepare`.
            outputs: any of ``prediction`` (target unit, (B,); the primary target of a
                multi-target model), ``tasks`` (every target in its unit, (B, K); K = 1 for a
                single-target model), ``pooled`` ((B, D)) and ``weights`` ((B, 2): w_comp,
                w_graph; attention fusion only).

        Returns:
            One array per requested output.
        """
        empty = {"prediction": (0,), "tasks": (0, len(self.targets)), "pooled": (0, 0),
                 "weights": (0, 2)}
        unknown = [k for k in outputs if k not in empty]
        if unknown:
            raise ValueError(f"Invalid outputs={unknown}, valid options are {list(empty)}")
        if "weights" in outputs and not self.has_fusion_weights:
            raise ValueError(f"model {self.name!r} ({self.family}) has no fusion weights; "
                             "only attention-fusion models do")
        module = self.module
        collected: dict[str, list[torch.Tensor]] = {k: [] for k in outputs}
        with self.placed(device) as dev, torch.no_grad():
            for batch in GraphLoader(list(inputs), batch_size):
                batch = batch if dev.type == "cpu" else batch.to(dev)
                if "prediction" in collected or "tasks" in collected:
                    z = module(batch).cpu().double()
                    values = self._decode(z)
                    if "prediction" in collected:
                        collected["prediction"].append(values[:, 0] if z.ndim == 2
                                                       else values)
                    if "tasks" in collected:
                        collected["tasks"].append(values if z.ndim == 2
                                                  else values.unsqueeze(1))
                if "pooled" in collected:
                    collected["pooled"].append(module.pooled(batch).cpu())
                if "weights" in collected:
                    collected["weights"].append(module.fusion_weights(batch).cpu())
        return {key: torch.cat(parts).numpy() if parts else np.zeros(empty[key])
                for key, parts in collected.items()}

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        """Standardised outputs → target units: (B,) with the normaliser, (B, K) per task."""
        if z.ndim == 1:
            return self.card.normalizer.decode(z)
        norms = self.card.task_normalizers
        if z.shape[1] != len(norms):
            raise ValueError(f"model {self.name!r} gives {z.shape[1]} outputs but its card "
                             f"lists {len(norms)} targets")
        mean = torch.tensor([n.mean for n in norms], dtype=z.dtype, device=z.device)
        std = torch.tensor([n.std for n in norms], dtype=z.dtype, device=z.device)
        return z * std + mean

    def predict_tasks_graphs(self, graphs, *, batch_size: int = 64,
                             device: str = "auto") -> np.ndarray:
        """Predictions of every target (:attr:`targets`) in its unit, shape (B, K)."""
        return self.run(graphs, ("tasks",), batch_size=batch_size, device=device)["tasks"]

    def predict_graphs(self, graphs, *, batch_size: int = 64, device: str = "auto") -> np.ndarray:
        """Predictions in the target's unit for inputs from :meth:`prepare`, shape (B,)
        (a multi-target model's primary target; :meth:`predict_tasks_graphs` gives them all).

        (For ``cgcnn`` a bare :class:`GraphBuilder` graph is a complete input; other families
        need :meth:`prepare` and raise :class:`engine.models.MissingInputError` without it.)
        """
        return self.run(graphs, ("prediction",), batch_size=batch_size,
                        device=device)["prediction"]

    def embed_graphs(self, graphs, *, batch_size: int = 64, device: str = "auto") -> np.ndarray:
        """Pooled vectors (B, D) for inputs from :meth:`prepare`; see :attr:`pooled_description`."""
        return self.run(graphs, ("pooled",), batch_size=batch_size, device=device)["pooled"]

    def fusion_weights_graphs(self, graphs, *, batch_size: int = 64,
                              device: str = "auto") -> np.ndarray:
        """Per-material (w_comp, w_graph) of an attention-fusion model, shape (B, 2)."""
        return self.run(graphs, ("weights",), batch_size=batch_size, device=device)["weights"]

    def predict_structures(self, structures, *, batch_size: int = 64, device: str = "auto"):
        """Predictions in the target's unit for pymatgen structures, shape (B,)."""
        return self.predict_graphs(self.prepare(structures), batch_size=batch_size,
                                   device=device)

    def embed_structures(self, structures, *, batch_size: int = 64, device: str = "auto"):
        """Pooled vectors (B, D) for pymatgen structures."""
        return self.embed_graphs(self.prepare(structures), batch_size=batch_size, device=device)

    def forward_batch(self, batch: Batch) -> torch.Tensor:
        """Predictions in the target's unit for one batch (no grad handling), shape (B,);
        (B, K) for a multi-target model."""
        return self._decode(self.module(batch))


@dataclass
class EnsembleModel(LoadedModel):
    """An ensemble of loaded models with the same family, model and graph configs and targets
    (e.g. different training seeds), used like a :class:`LoadedModel`.

    Inputs are prepared once (by member 0) and given to every member. ``prediction`` and
    ``tasks`` are the member mean; ``members`` gives every member's predictions (M, B, K);
    ``pooled`` is member 0's vector (the domain's space); ``weights`` the member mean. ``module``
    is member 0's network (for per-network analyses).
    """

    members: list[LoadedModel] = field(default_factory=list)

    @property
    def n_members(self) -> int:
        return len(self.members)

    @property
    def pooled_description(self) -> str:
        return f"{self.members[0].pooled_description} (member 0 of the ensemble)"

    def pin(self, device: str = "auto") -> EnsembleModel:
        """Pin every member (and so :attr:`module`, member 0's) to ``device``; returns self."""
        for member in self.members:
            member.pin(device)
        self.pinned = self.members[0].pinned
        return self

    def run(self, inputs, outputs=("prediction",), *, batch_size: int = 64,
            device: str = "auto") -> dict[str, np.ndarray]:
        """Like :meth:`LoadedModel.run`, plus ``members`` (M, B, K): each member's predictions
        of every target in its unit. ``prediction``/``tasks`` are their mean over members."""
        unknown = [k for k in outputs if k not in
                   ("prediction", "tasks", "pooled", "weights", "members")]
        if unknown:
            raise ValueError(f"Invalid outputs={unknown}, valid options are prediction, tasks, "
                             "pooled, weights, members")
        inputs = list(inputs)
        kw = {"batch_size": batch_size, "device": device}
        out: dict[str, np.ndarray] = {}
        if {"prediction", "tasks", "members"} & set(outputs):
            members = np.stack([m.run(inputs, ("tasks",), **kw)["tasks"] for m in self.members])
            mean = members.mean(axis=0)
            out.update({"prediction": mean[:, 0], "tasks": mean, "members": members})
        if "pooled" in outputs:
            out["pooled"] = self.members[0].run(inputs, ("pooled",), **kw)["pooled"]
        if "weights" in outputs:
            out["weights"] = np.mean([m.run(inputs, ("weights",), **kw)["weights"]
                                      for m in self.members], axis=0)
        return {key: out[key] for key in outputs}

    def forward_batch(self, batch: Batch) -> torch.Tensor:
        """The member mean for one batch, (B,) or (B, K)."""
        return torch.stack([m.forward_batch(batch) for m in self.members]).mean(0)


def write_card(directory: str | Path, card: ModelCard) -> Path:
    """Write ``model.json`` (stamping ``created`` if it is empty); the directory is created."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if not card.created:
        card = card.model_copy(update={"created": datetime.now(timezone.utc).isoformat()})
    text = card.model_dump_json(indent=2) + "\n"
    atomic_write(directory / MODEL_FILE, lambda tmp: tmp.write_text(text))
    return directory


def save_model(
    directory: str | Path,
    card: ModelCard,
    module: nn.Module,
    *,
    history=None,
    predictions=None,
    domain: Domain | None = None,
) -> Path:
    """Write a model directory; ``history`` and ``predictions`` are pandas DataFrames,
    ``domain`` the applicability domain (``domain.npz``).

    Files are replaced atomically (temporary file + rename) and ``model.json`` is removed first
    and written last, so a concurrent reader sees either no model or a complete one.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MODEL_FILE).unlink(missing_ok=True)
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    atomic_write(directory / WEIGHTS_FILE, lambda tmp: torch.save(state, tmp))
    if hasattr(module, "save_extras"):
        module.save_extras(directory)  # non-torch parts, e.g. forest.skops
    if domain is not None:
        domain.save(directory / DOMAIN_FILE)
    if history is not None:
        atomic_write(directory / HISTORY_FILE, lambda tmp: history.to_csv(tmp, index=False))
    if predictions is not None:
        atomic_write(directory / PREDICTIONS_FILE,
                     lambda tmp: predictions.to_csv(tmp, index=False))
    write_card(directory, card)
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
            raise ModelLoadError(f"{path}: the normaliser of {target!r} (mean={norm.mean}, "
                                 f"std={norm.std}) is not finite with a positive std; the model "
                                 "would predict nonsense, so it is not loaded")
    return card


def _load_weights(path: Path, module: nn.Module) -> None:
    """Load a state dict into ``module`` (never unpickling code) and check it is finite.

    Raises:
        ModelLoadError: naming the file: missing, not a plain state dict (e.g. a pickle with
            code), the wrong shape for model.json, or holding NaN/inf.
    """
    import pickle

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelLoadError(f"{path.parent} has no {path.name}") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError) as exc:
        raise ModelLoadError(f"{path} is not a plain weights file (it holds other Python objects "
                             f"or is damaged: {type(exc).__name__}); it was not loaded. Do not "
                             "load files from an untrusted source") from None
    except (RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"{path} could not be read as a weights file: "
                             f"{' '.join(str(exc).split())[:300]}") from None
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path} holds a {type(state).__name__}, not a state dict")
    try:
        module.load_state_dict(state)
    except (RuntimeError, ValueError) as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = "; ".join(lines[1:4] if len(lines) > 1 else lines)[:400]
        raise ModelLoadError(f"{path} does not match model.json: {detail}") from None
    bad = [name for name, t in state.items()
           if isinstance(t, torch.Tensor) and t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise ModelLoadError(f"{path}: the weights hold NaN or infinite values (in "
                             f"{', '.join(bad[:3])}); the model is not loaded")


def load_model(path_or_name: str | Path) -> LoadedModel:
    """Load a model from a directory, or by name (shipped, user, or ``cgcnn-original/...``).

    Raises:
        ModelLoadError: unknown name, or a directory whose config, version or weights do not
            fit; the message says which.
    """
    text = str(path_or_name)
    if text.startswith(ORIGINAL_PREFIX):
        from engine.catalog.original import load_original

        return load_original(text[len(ORIGINAL_PREFIX):])
    directory = Path(path_or_name).expanduser()
    if not directory.is_dir():
        for root in (shipped_model_dir(), user_model_dir()):
            if (root / text / MODEL_FILE).is_file():
                directory = root / text
                break
        else:
            names = ", ".join(m["name"] for m in list_models()) or "none"
            raise ModelLoadError(f"No model directory or model named {text!r}. Available: {names}")
    card = read_card(directory)
    if card.ensemble is not None:
        return _load_ensemble(card, directory)
    module = build_model(card.model_config_obj(), card.graph)
    _load_weights(directory / WEIGHTS_FILE, module)
    try:
        module.load_extras(directory)
    except FileNotFoundError as exc:
        raise ModelLoadError(f"{directory} is incomplete: {exc}") from None
    except ValueError as exc:  # UntrustedFileError and malformed files
        raise ModelLoadError(str(exc)) from None
    _check_fitted(card, module, directory)
    return LoadedModel(card=card, module=module, path=directory,
                       uncertainty=_load_uncertainty(card, directory))


def _load_uncertainty(card: ModelCard, directory: Path) -> Uncertainty | None:
    try:
        return load_uncertainty(directory, card.uncertainty)
    except (FileNotFoundError, ValueError) as exc:
        raise ModelLoadError(f"{directory}: {exc}") from None


def _load_ensemble(card: ModelCard, directory: Path) -> EnsembleModel:
    """Load every member and check that they fit the ensemble's card and each other."""
    members = []
    for rel in card.ensemble.members:
        member_dir = directory / rel
        if not (member_dir / MODEL_FILE).is_file():
            raise ModelLoadError(f"{directory}: ensemble member {rel!r} is missing")
        member = load_model(member_dir)
        if member.n_members > 1:
            raise ModelLoadError(f"{directory}: member {rel!r} is itself an ensemble")
        mismatch = [what for what, ours, theirs in (
            ("model config", card.model, member.card.model),
            ("graph config", card.graph, member.card.graph),
            ("targets", card.task_targets, member.card.task_targets),
            ("units", card.task_units, member.card.task_units),
        ) if ours != theirs]
        if mismatch:
            raise ModelLoadError(f"{directory}: member {rel!r} differs from the ensemble in its "
                                 f"{', '.join(mismatch)}")
        members.append(member)
    return EnsembleModel(card=card, module=members[0].module, path=directory,
                         uncertainty=_load_uncertainty(card, directory), members=members)


def _check_fitted(card: ModelCard, module: nn.Module, directory: Path) -> None:
    """The card's record of fitted values must agree with the weights (late fusion's α, the
    multi-task log-variances)."""
    recorded_log_vars = card.fitted.get("log_vars")
    log_vars = getattr(module, "log_vars", None)
    if isinstance(recorded_log_vars, dict) and log_vars is not None:
        held = dict(zip(card.task_targets, log_vars.detach().tolist()))
        if any(abs(float(v) - held.get(t, float("nan"))) > 1e-5
               or not np.isfinite(held.get(t, float("nan")))
               for t, v in recorded_log_vars.items()):
            raise ModelLoadError(f"{directory}: model.json records log_vars={recorded_log_vars} "
                                 f"but {WEIGHTS_FILE} holds {held}")
    alpha = getattr(module, "alpha", None)
    if alpha is None:
        return
    value = float(alpha)
    if not np.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ModelLoadError(f"{directory / WEIGHTS_FILE}: late-fusion alpha={value} is not a "
                             "fitted weight in [0, 1]")
    recorded = card.fitted.get("alpha")
    if recorded is not None and abs(float(recorded) - value) > 1e-6:  # float32 buffer
        raise ModelLoadError(f"{directory}: model.json records alpha={recorded} but "
                             f"{WEIGHTS_FILE} holds alpha={value}")


def _card_summary(card: ModelCard, path: Path | None) -> dict[str, Any]:
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


def list_models() -> list[dict[str, Any]]:
    """Every available model: shipped, the user's, and the original CGCNN checkpoints.

    Each entry has at least ``name``, ``target``, ``unit`` and ``source``, and ``targets`` /
    ``units``: every target the model predicts (``[target]`` for a single-target model).
    """
    from engine.catalog.original import original_cards

    found = []
    for root, source in ((shipped_model_dir(), "shipped"), (user_model_dir(), "user")):
        if not root.is_dir():
            continue
        for directory in sorted(p for p in root.iterdir() if (p / MODEL_FILE).is_file()):
            try:
                card = read_card(directory)
            except ModelLoadError:
                continue  # an unreadable directory is reported when loaded by name
            found.append({**_card_summary(card, directory), "source": source})
    found.extend(_card_summary(card, None) for card in original_cards())
    return found


def safe_dir_name(name: str) -> str:
    """A file-system-safe folder name for a model name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "model"
