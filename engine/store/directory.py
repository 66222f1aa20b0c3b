"""Model directories: the loaded model (:class:`LoadedModel`, :class:`EnsembleModel`), writing a
directory (:func:`save_model`) and loading one (:func:`load_directory`).

The files of a directory and the card schema are described in :mod:`engine.store.card`; model
*names* (shipped, user and ``cgcnn-original/…`` models) are resolved one layer up, by
:func:`engine.catalog.names.load_model`.

Size: about 500 lines: :class:`EnsembleModel` overrides half of :class:`LoadedModel` (running,
device placement, inputs), and the two read best next to each other.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch_geometric.data import Batch, Data

from engine.core.device import resolve_device
from engine.graphs.batching import GraphLoader
from engine.graphs.builder import GraphBuilder
from engine.io.output import atomic_write
from engine.models import build_inputs, build_model, prepare_input
from engine.models.base import FamilyModule
from engine.store.card import (
    HISTORY_FILE,
    MODEL_FILE,
    PREDICTIONS_FILE,
    WEIGHTS_FILE,
    ModelCard,
    ModelLoadError,
    read_card,
    write_card,
)
from engine.uq.domain import DOMAIN_FILE, Domain
from engine.uq.uncertainty import Uncertainty, load_uncertainty


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
                raise ValueError(
                    f"model {self.name!r} is pinned to {self.pinned}; "
                    f"device={device!r} would move a shared module"
                )
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

    def run(
        self, inputs, outputs=("prediction",), *, batch_size: int = 64, device: str = "auto"
    ) -> dict[str, np.ndarray]:
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
        empty = {
            "prediction": (0,),
            "tasks": (0, len(self.targets)),
            "pooled": (0, 0),
            "weights": (0, 2),
        }
        unknown = [k for k in outputs if k not in empty]
        if unknown:
            raise ValueError(f"Invalid outputs={unknown}, valid options are {list(empty)}")
        if "weights" in outputs and not self.has_fusion_weights:
            raise ValueError(
                f"model {self.name!r} ({self.family}) has no fusion weights; "
                "only attention-fusion models do"
            )
        module = self.module
        collected: dict[str, list[torch.Tensor]] = {k: [] for k in outputs}
        with self.placed(device) as dev, torch.no_grad():
            for batch in GraphLoader(list(inputs), batch_size):
                batch = batch if dev.type == "cpu" else batch.to(dev)
                pooled = None
                if "prediction" in collected or "tasks" in collected:
                    if "pooled" in collected:
                        z, pooled = module.forward_and_pooled(batch)
                    else:
                        z = module(batch)
                    z = z.cpu().double()
                    values = self._decode(z)
                    if "prediction" in collected:
                        collected["prediction"].append(values[:, 0] if z.ndim == 2 else values)
                    if "tasks" in collected:
                        collected["tasks"].append(values if z.ndim == 2 else values.unsqueeze(1))
                if "pooled" in collected:
                    pooled = module.pooled(batch) if pooled is None else pooled
                    collected["pooled"].append(pooled.cpu())
                if "weights" in collected:
                    collected["weights"].append(module.fusion_weights(batch).cpu())
        return {
            key: torch.cat(parts).numpy() if parts else np.zeros(empty[key])
            for key, parts in collected.items()
        }

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        """Standardised outputs → target units: (B,) with the normaliser, (B, K) per task."""
        if z.ndim == 1:
            return self.card.normalizer.decode(z)
        norms = self.card.task_normalizers
        if z.shape[1] != len(norms):
            raise ValueError(
                f"model {self.name!r} gives {z.shape[1]} outputs but its card "
                f"lists {len(norms)} targets"
            )
        return torch.stack([norm.decode(z[:, k]) for k, norm in enumerate(norms)], dim=1)

    def predict_tasks_graphs(
        self, graphs, *, batch_size: int = 64, device: str = "auto"
    ) -> np.ndarray:
        """Predictions of every target (:attr:`targets`) in its unit, shape (B, K)."""
        return self.run(graphs, ("tasks",), batch_size=batch_size, device=device)["tasks"]

    def predict_graphs(self, graphs, *, batch_size: int = 64, device: str = "auto") -> np.ndarray:
        """Predictions in the target's unit for inputs from :meth:`prepare`, shape (B,)
        (a multi-target model's primary target; :meth:`predict_tasks_graphs` gives them all).

        (For ``cgcnn`` a bare :class:`GraphBuilder` graph is a complete input; other families
        need :meth:`prepare` and raise :class:`engine.models.MissingInputError` without it.)
        """
        return self.run(graphs, ("prediction",), batch_size=batch_size, device=device)["prediction"]

    def embed_graphs(self, graphs, *, batch_size: int = 64, device: str = "auto") -> np.ndarray:
        """Pooled vectors (B, D) for inputs from :meth:`prepare`; see :attr:`pooled_description`."""
        return self.run(graphs, ("pooled",), batch_size=batch_size, device=device)["pooled"]

    def fusion_weights_graphs(
        self, graphs, *, batch_size: int = 64, device: str = "auto"
    ) -> np.ndarray:
        """Per-material (w_comp, w_graph) of an attention-fusion model, shape (B, 2)."""
        return self.run(graphs, ("weights",), batch_size=batch_size, device=device)["weights"]

    def predict_structures(self, structures, *, batch_size: int = 64, device: str = "auto"):
        """Predictions in the target's unit for pymatgen structures, shape (B,)."""
        return self.predict_graphs(self.prepare(structures), batch_size=batch_size, device=device)

    def embed_structures(self, structures, *, batch_size: int = 64, device: str = "auto"):
        """Pooled vectors (B, D) for pymatgen structures."""
        return self.embed_graphs(self.prepare(structures), batch_size=batch_size, device=device)

    def forward_batch(self, batch: Batch) -> torch.Tensor:
        """Predictions in the target's unit for one batch (no grad handling), shape (B,);
        (B, K) for a multi-target model."""
        return self._decode(self.module(batch))


@dataclass
class EnsembleModel(LoadedModel):
    """An ensemble of loaded models with the same graph config and targets, used like a
    :class:`LoadedModel`: members of one family and model config (training seeds), or of
    several families where every member after member 0 that differs reads nothing but the
    graph (a *mixed* ensemble, e.g. ALIGNN members first, then CGCNN ones).

    Inputs are prepared once (by member 0, whose inputs are the graph plus its extras) and given
    to every member. ``prediction`` and ``tasks`` are the member mean; ``members`` gives every
    member's predictions (M, B, K); ``pooled`` is member 0's vector (the domain's space);
    ``weights`` the member mean. ``module`` is member 0's network (for per-network analyses).
    """

    members: list[LoadedModel] = field(default_factory=list)

    @property
    def n_members(self) -> int:
        return len(self.members)

    @property
    def pooled_description(self) -> str:
        return f"{self.members[0].pooled_description} (member 0 of the ensemble)"

    @property
    def families(self) -> list[str]:
        """The members' families, in member order (one name repeated for a plain ensemble)."""
        return [member.family for member in self.members]

    @property
    def has_fusion_weights(self) -> bool:
        return all(member.has_fusion_weights for member in self.members)

    def pin(self, device: str = "auto") -> EnsembleModel:
        """Pin every member (and so :attr:`module`, member 0's) to ``device``; returns self."""
        for member in self.members:
            member.pin(device)
        self.pinned = self.members[0].pinned
        return self

    def run(
        self, inputs, outputs=("prediction",), *, batch_size: int = 64, device: str = "auto"
    ) -> dict[str, np.ndarray]:
        """Like :meth:`LoadedModel.run`, plus ``members`` (M, B, K): each member's predictions
        of every target in its unit. ``prediction``/``tasks`` are their mean over members."""
        unknown = [
            k for k in outputs if k not in ("prediction", "tasks", "pooled", "weights", "members")
        ]
        if unknown:
            raise ValueError(
                f"Invalid outputs={unknown}, valid options are prediction, tasks, "
                "pooled, weights, members"
            )
        inputs = list(inputs)
        kw = {"batch_size": batch_size, "device": device}
        out: dict[str, np.ndarray] = {}
        predicted = bool({"prediction", "tasks", "members"} & set(outputs))
        # member 0 gives the pooled vectors (the domain's space) in its prediction pass
        first_outputs = ("tasks",) * predicted + ("pooled",) * ("pooled" in outputs)
        first = self.members[0].run(inputs, first_outputs, **kw) if first_outputs else {}
        if "pooled" in outputs:
            out["pooled"] = first["pooled"]
        if predicted:
            rest = [m.run(inputs, ("tasks",), **kw)["tasks"] for m in self.members[1:]]
            members = np.stack([first["tasks"], *rest])
            mean = members.mean(axis=0)
            out.update({"prediction": mean[:, 0], "tasks": mean, "members": members})
        if "weights" in outputs:
            out["weights"] = np.mean(
                [m.run(inputs, ("weights",), **kw)["weights"] for m in self.members], axis=0
            )
        return {key: out[key] for key in outputs}

    def forward_batch(self, batch: Batch) -> torch.Tensor:
        """The member mean for one batch, (B,) or (B, K)."""
        return torch.stack([m.forward_batch(batch) for m in self.members]).mean(0)


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
        atomic_write(directory / PREDICTIONS_FILE, lambda tmp: predictions.to_csv(tmp, index=False))
    write_card(directory, card)
    return directory


def _load_weights(path: Path, module: nn.Module) -> None:
    """Load a state dict into ``module`` (never unpickling code) and check it is finite.

    Raises:
        ModelLoadError: naming the file: missing, not a plain state dict (e.g. a pickle with
            code), the wrong shape for model.json, or holding NaN/inf.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelLoadError(f"{path.parent} has no {path.name}") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError) as exc:
        raise ModelLoadError(
            f"{path} is not a plain weights file (it holds other Python objects "
            f"or is damaged: {type(exc).__name__}); it was not loaded. Do not "
            "load files from an untrusted source"
        ) from None
    except (RuntimeError, ValueError) as exc:
        raise ModelLoadError(
            f"{path} could not be read as a weights file: {' '.join(str(exc).split())[:300]}"
        ) from None
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path} holds a {type(state).__name__}, not a state dict")
    try:
        module.load_state_dict(state)
    except (RuntimeError, ValueError) as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = "; ".join(lines[1:4] if len(lines) > 1 else lines)[:400]
        raise ModelLoadError(f"{path} does not match model.json: {detail}") from None
    bad = [
        name
        for name, t in state.items()
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not torch.isfinite(t).all()
    ]
    if bad:
        raise ModelLoadError(
            f"{path}: the weights hold NaN or infinite values (in "
            f"{', '.join(bad[:3])}); the model is not loaded"
        )


def load_directory(path: str | Path) -> LoadedModel:
    """Load the model (or ensemble) in directory ``path``.

    Raises:
        ModelLoadError: not a model directory, or one whose config, version or weights do not
            fit; the message says which.
    """
    directory = Path(path).expanduser()
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
    return LoadedModel(
        card=card, module=module, path=directory, uncertainty=_load_uncertainty(card, directory)
    )


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
        member = load_directory(member_dir)
        if member.n_members > 1:
            raise ModelLoadError(f"{directory}: member {rel!r} is itself an ensemble")
        checks = [
            ("graph config", card.graph, member.card.graph),
            ("targets", card.task_targets, member.card.task_targets),
            ("units", card.task_units, member.card.task_units),
        ]
        # member 0 prepares the inputs: a later member may be of another family (or config)
        # when the graph alone is its input and member 0's inputs carry a graph
        if not (members and members[0].module.needs_graph and _reads_only_the_graph(member.module)):
            checks.insert(0, ("model config", card.model, member.card.model))
        mismatch = [what for what, ours, theirs in checks if ours != theirs]
        if mismatch:
            raise ModelLoadError(
                f"{directory}: member {rel!r} differs from the ensemble in its "
                f"{', '.join(mismatch)}"
            )
        members.append(member)
    return EnsembleModel(
        card=card,
        module=members[0].module,
        path=directory,
        uncertainty=_load_uncertainty(card, directory),
        members=members,
    )


def _reads_only_the_graph(module: nn.Module) -> bool:
    """Whether a family's input is the bare graph (its ``prepare`` attaches nothing), so that it
    can read inputs prepared by another graph family with the same graph config."""
    return module.needs_graph and type(module).prepare is FamilyModule.prepare


def _check_fitted(card: ModelCard, module: nn.Module, directory: Path) -> None:
    """The card's record of fitted values must agree with the weights (late fusion's α, the
    multi-task log-variances)."""
    recorded_log_vars = card.fitted.get("log_vars")
    log_vars = getattr(module, "log_vars", None)
    if isinstance(recorded_log_vars, dict) and log_vars is not None:
        held = dict(zip(card.task_targets, log_vars.detach().tolist()))
        if any(
            abs(float(v) - held.get(t, float("nan"))) > 1e-5
            or not np.isfinite(held.get(t, float("nan")))
            for t, v in recorded_log_vars.items()
        ):
            raise ModelLoadError(
                f"{directory}: model.json records log_vars={recorded_log_vars} "
                f"but {WEIGHTS_FILE} holds {held}"
            )
    alpha = getattr(module, "alpha", None)
    if alpha is None:
        return
    value = float(alpha)
    if not np.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ModelLoadError(
            f"{directory / WEIGHTS_FILE}: late-fusion alpha={value} is not a "
            "fitted weight in [0, 1]"
        )
    recorded = card.fitted.get("alpha")
    if recorded is not None and abs(float(recorded) - value) > 1e-6:  # float32 buffer
        raise ModelLoadError(
            f"{directory}: model.json records alpha={recorded} but "
            f"{WEIGHTS_FILE} holds alpha={value}"
        )
