"""Batched prediction, pooled-vector extraction and evaluation against known targets."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from engine.datasets import LabelledDataset
from engine.graphs import GraphBuildError
from engine.store import LoadedModel, load_model
from engine.structures import NamedStructure, ReadError, read_structures
from engine.training.metrics import regression_metrics


@dataclass
class Predictions:
    """One row per predicted structure (``id``, ``formula``, ``n_sites``, ``prediction``),
    plus the entries that could not be read or graphed, with their reasons."""

    table: pd.DataFrame
    errors: list[ReadError] = field(default_factory=list)
    target: str = ""
    unit: str = ""
    model_name: str = ""


def _as_model(model: LoadedModel | str | Path) -> LoadedModel:
    return model if isinstance(model, LoadedModel) else load_model(model)


def _graphs(model: LoadedModel, items: list[NamedStructure]):
    """Graphs of the items that can be graphed, their positions in ``items``, and ReadErrors
    for the rest."""
    graphs, kept, errors = [], [], []
    for position, item in enumerate(items):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                graphs.append(model.builder(item.structure, structure_id=item.id))
            kept.append(position)
        except GraphBuildError as exc:
            errors.append(ReadError(source=item.source, reason=str(exc)))
    return graphs, kept, errors


def predict(
    model: LoadedModel | str | Path,
    source,
    *,
    batch_size: int = 64,
    device: str = "auto",
) -> Predictions:
    """Predict the model's target for every readable structure in ``source``.

    Args:
        model: a loaded model, a model directory, or a model name.
        source: anything :func:`engine.structures.read_structures` reads, or a list of
            :class:`NamedStructure`.
    """
    model = _as_model(model)
    if isinstance(source, list) and source and isinstance(source[0], NamedStructure):
        items, errors = source, []
    else:
        batch = read_structures(source)
        items, errors = batch.items, list(batch.errors)
    graphs, positions, graph_errors = _graphs(model, items)
    values = model.predict_graphs(graphs, batch_size=batch_size, device=device)
    kept = [items[i] for i in positions]
    table = pd.DataFrame({
        "id": [it.id for it in kept],
        "formula": [it.structure.composition.reduced_formula for it in kept],
        "n_sites": [len(it.structure) for it in kept],
        "prediction": values,
    })
    return Predictions(
        table=table,
        errors=errors + graph_errors,
        target=model.card.target,
        unit=model.card.unit,
        model_name=model.name,
    )


def embed(
    model: LoadedModel | str | Path,
    items: list[NamedStructure],
    *,
    batch_size: int = 64,
    device: str = "auto",
) -> tuple[np.ndarray, list[NamedStructure]]:
    """Pooled crystal vectors (B, width) of the items that could be graphed, and those items."""
    model = _as_model(model)
    graphs, positions, _ = _graphs(model, items)
    vectors = model.embed_graphs(graphs, batch_size=batch_size, device=device)
    return vectors, [items[i] for i in positions]


def evaluate(
    model: LoadedModel | str | Path,
    dataset: LabelledDataset,
    target: str,
    *,
    batch_size: int = 64,
    device: str = "auto",
) -> tuple[dict[str, float], pd.DataFrame]:
    """Metrics (n, mae, rmse, r, r2 in the target's unit) and per-structure predictions."""
    model = _as_model(model)
    dataset = dataset.dropna(target)
    y = dataset.targets(target)
    graphs, positions, _ = _graphs(model, dataset.items)
    pred = model.predict_graphs(graphs, batch_size=batch_size, device=device)
    frame = pd.DataFrame({
        "id": [dataset.items[i].id for i in positions],
        "formula": [dataset.items[i].structure.composition.reduced_formula for i in positions],
        "target": y[positions],
        "prediction": pred,
    })
    frame["error"] = frame["prediction"] - frame["target"]
    return regression_metrics(frame["target"], frame["prediction"]), frame
