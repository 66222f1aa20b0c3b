"""Model directories ("model cards"): save, load, and list every available model.

A model directory holds everything needed to use the model again, so that no setting can differ
silently between training and inference::

    model.json        ModelCard: versions, model + graph config, target and unit, normaliser,
                      element set, dataset name/size/hash/split, training settings, metrics
    weights.pt        state dict, loaded with ``torch.load(..., weights_only=True)``
    history.csv       per-epoch losses and metrics (trained models)
    predictions.csv   validation and test predictions (trained models)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

from engine.config import (
    ENGINE_VERSION,
    SCHEMA_VERSION,
    GraphConfig,
    ModelConfig,
    SplitConfig,
    TrainConfig,
    shipped_model_dir,
    user_model_dir,
)
from engine.device import resolve_device
from engine.graphs import GraphBuilder
from engine.models import build_model, model_config_from_dict

MODEL_FILE = "model.json"
WEIGHTS_FILE = "weights.pt"
HISTORY_FILE = "history.csv"
PREDICTIONS_FILE = "predictions.csv"
ORIGINAL_PREFIX = "cgcnn-original/"


class ModelLoadError(ValueError):
    """A model directory or name cannot be used; the message says why."""


class Normalizer(BaseModel):
    """Target standardisation: the network learns (y - mean) / std."""

    model_config = ConfigDict(extra="forbid")
    mean: float
    std: float

    @classmethod
    def fit(cls, y: np.ndarray) -> Normalizer:
        std = float(np.std(y))
        return cls(mean=float(np.mean(y)), std=std if std > 0 else 1.0)

    def encode(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.mean) / self.std

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.std + self.mean


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
    model: dict[str, Any]
    graph: GraphConfig
    normalizer: Normalizer
    elements: list[str] = []
    dataset: DatasetInfo | None = None
    training: TrainConfig | None = None
    metrics: dict[str, dict[str, float | int]] = {}
    created: str = ""
    references: list[str] = []

    def model_config_obj(self) -> ModelConfig:
        return model_config_from_dict(self.model)


@dataclass
class LoadedModel:
    """A ready-to-use model: its card, the torch module (in eval mode) and its graph builder."""

    card: ModelCard
    module: nn.Module
    path: Path | None = None
    builder: GraphBuilder = field(init=False)

    def __post_init__(self) -> None:
        self.module.eval()
        self.builder = GraphBuilder(self.card.graph)

    @property
    def name(self) -> str:
        return self.card.name

    def _run(self, graphs, *, batch_size: int, device: str, what: str) -> np.ndarray:
        dev = resolve_device(device)
        module = self.module.to(dev)
        out = []
        with torch.no_grad():
            for batch in DataLoader(list(graphs), batch_size=batch_size, shuffle=False):
                batch = batch.to(dev)
                if what == "pooled":
                    out.append(module.pooled(batch).cpu())
                else:
                    z = module(batch)
                    out.append(self.card.normalizer.decode(z.double()).cpu())
        module.to("cpu")
        if not out:
            return np.zeros((0,)) if what == "predict" else np.zeros((0, 0))
        return torch.cat(out).numpy()

    def predict_graphs(self, graphs, *, batch_size: int = 64, device: str = "auto") -> np.ndarray:
        """Predictions in the target's unit for prebuilt graphs, shape (B,)."""
        return self._run(graphs, batch_size=batch_size, device=device, what="predict")

    def embed_graphs(self, graphs, *, batch_size: int = 64, device: str = "auto") -> np.ndarray:
        """Pooled crystal vectors for prebuilt graphs, shape (B, atom_fea_len)."""
        return self._run(graphs, batch_size=batch_size, device=device, what="pooled")

    def predict_structures(self, structures, *, batch_size: int = 64, device: str = "auto"):
        """Predictions in the target's unit for pymatgen structures, shape (B,)."""
        return self.predict_graphs(self.builder.build_many(structures), batch_size=batch_size,
                                   device=device)

    def forward_batch(self, batch: Batch) -> torch.Tensor:
        """Predictions in the target's unit for one batch (no grad handling), shape (B,)."""
        return self.card.normalizer.decode(self.module(batch))


def save_model(
    directory: str | Path,
    card: ModelCard,
    module: nn.Module,
    *,
    history=None,
    predictions=None,
) -> Path:
    """Write a model directory; ``history`` and ``predictions`` are pandas DataFrames."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if not card.created:
        card = card.model_copy(update={"created": datetime.now(timezone.utc).isoformat()})
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    torch.save(state, directory / WEIGHTS_FILE)
    (directory / MODEL_FILE).write_text(card.model_dump_json(indent=2) + "\n")
    if history is not None:
        history.to_csv(directory / HISTORY_FILE, index=False)
    if predictions is not None:
        predictions.to_csv(directory / PREDICTIONS_FILE, index=False)
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
    except (ValidationError, ValueError) as exc:
        raise ModelLoadError(f"{path} does not fit this engine ({ENGINE_VERSION}): {exc}") from None
    return card


def load_model(path_or_name: str | Path) -> LoadedModel:
    """Load a model from a directory, or by name (shipped, user, or ``cgcnn-original/...``).

    Raises:
        ModelLoadError: unknown name, or a directory whose config, version or weights do not
            fit; the message says which.
    """
    text = str(path_or_name)
    if text.startswith(ORIGINAL_PREFIX):
        from engine.pretrained import load_original

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
    module = build_model(card.model_config_obj(), card.graph)
    try:
        state = torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        module.load_state_dict(state)
    except FileNotFoundError:
        raise ModelLoadError(f"{directory} has no {WEIGHTS_FILE}") from None
    except (RuntimeError, ValueError) as exc:
        first = str(exc).splitlines()[0]
        raise ModelLoadError(f"{directory / WEIGHTS_FILE} does not match model.json: {first}") from None
    return LoadedModel(card=card, module=module, path=directory)


def _card_summary(card: ModelCard, path: Path | None) -> dict[str, Any]:
    return {
        "name": card.name,
        "target": card.target,
        "unit": card.unit,
        "source": card.source,
        "family": card.model.get("name", "cgcnn"),
        "description": card.description,
        "metrics": card.metrics,
        "path": str(path) if path else None,
    }


def list_models() -> list[dict[str, Any]]:
    """Every available model: shipped, the user's, and the original CGCNN checkpoints.

    Each entry has at least ``name``, ``target``, ``unit`` and ``source``.
    """
    from engine.pretrained import original_cards

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
