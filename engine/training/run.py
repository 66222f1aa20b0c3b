"""One training run from a labelled dataset to a saved, reloadable model directory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from engine.config import CGCNNConfig, GraphConfig, ModelConfig, SplitConfig, TrainConfig
from engine.datasets import LabelledDataset, split_dataset
from engine.graphs import GraphBuilder
from engine.models import build_model
from engine.store import DatasetInfo, LoadedModel, ModelCard, Normalizer, save_model
from engine.training.callbacks import BestCheckpoint, Callback, EarlyStopping, History, ProgressBar
from engine.training.loop import Trainer, seed_everything
from engine.training.metrics import regression_metrics
from engine.units import unit_of


@dataclass
class TrainResult:
    """A finished run: the model (best epoch restored), its history and split predictions."""

    model: LoadedModel
    history: pd.DataFrame
    predictions: pd.DataFrame
    metrics: dict[str, dict[str, float]]
    path: Path | None
    stop_reason: str | None


def train(
    dataset: LabelledDataset,
    target: str,
    *,
    model: ModelConfig | None = None,
    graph: GraphConfig | None = None,
    training: TrainConfig | None = None,
    split: SplitConfig | None = None,
    query: str | None = None,
    out: str | Path | None = None,
    name: str | None = None,
    unit: str | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = False,
) -> TrainResult:
    """Train a model on ``dataset[target]`` and (if ``out`` is given) save its model directory.

    Rows with a missing target are dropped; the split is made on the rest. The target is
    standardised with the training split's mean and std. The weights of the epoch with the
    lowest validation loss are kept.

    Args:
        dataset: structures with a table holding ``target``.
        target: name of the target column.
        model, graph, training, split: configs; defaults are the CGCNN paper's settings.
        query: keep only rows matching this pandas query (recorded in the model card).
        out: model directory to write (created if needed).
        name: model name recorded in the card (defaults to the folder name of ``out``).
        unit: target unit (defaults to the known unit of ``target``).
        callbacks: extra callbacks, e.g. a :class:`ProgressFile` for background jobs.
        progress: show a tqdm progress bar on stderr.
    """
    model_cfg = model or CGCNNConfig()
    graph_cfg = graph or GraphConfig()
    train_cfg = training or TrainConfig()
    split_cfg = split or SplitConfig()
    unit = unit_of(target) if unit is None else unit

    source_size = len(dataset.items)
    if query:
        dataset = dataset.query(query)
    dataset = dataset.dropna(target)
    y = dataset.targets(target)
    parts = split_dataset(dataset, split_cfg)
    if len(parts["val"]) == 0:
        raise ValueError("the validation split is empty; the dataset is too small to train on")
    normalizer = Normalizer.fit(y[parts["train"]])

    ids = [item.id for item in dataset.items]
    structures = [item.structure for item in dataset.items]
    graphs = GraphBuilder(graph_cfg).build_many(structures, ids=ids)
    for g, value in zip(graphs, y):
        g.y = normalizer.encode(torch.tensor([value], dtype=torch.float32))

    seed_everything(train_cfg.seed)
    module = build_model(model_cfg, graph_cfg)
    history = History()
    best = BestCheckpoint()
    cbs: list[Callback] = [history, best]
    if train_cfg.early_stopping_patience:
        cbs.append(EarlyStopping(train_cfg.early_stopping_patience))
    if progress:
        cbs.append(ProgressBar())
    cbs.extend(callbacks)
    trainer = Trainer(module, train_cfg, target_std=normalizer.std, callbacks=cbs)
    trainer.fit([graphs[i] for i in parts["train"]], [graphs[i] for i in parts["val"]])

    card = ModelCard(
        name=name or (Path(out).name if out else f"{model_cfg.name}-{target}"),
        target=target,
        unit=unit,
        model=model_cfg.model_dump(),
        graph=graph_cfg,
        normalizer=normalizer,
        elements=sorted({el.symbol for s in structures for el in s.composition}),
        dataset=DatasetInfo(
            name=dataset.name,
            source=dataset.source,
            size=source_size,
            content_hash=dataset.content_hash(),
            query=query,
            split=split_cfg,
            n_train=len(parts["train"]),
            n_val=len(parts["val"]),
            n_test=len(parts["test"]),
        ),
        training=train_cfg,
    )
    loaded = LoadedModel(card=card, module=module)
    frames, metrics = [], {}
    for part in ("train", "val", "test"):
        idx = parts[part]
        if len(idx) == 0:
            continue
        pred = loaded.predict_graphs([graphs[i] for i in idx], device=train_cfg.device)
        metrics[part] = regression_metrics(y[idx], pred)
        if part != "train":
            frames.append(pd.DataFrame({
                "split": part,
                "id": [ids[i] for i in idx],
                "formula": dataset.table["formula"].to_numpy()[idx],
                "target": y[idx],
                "prediction": pred,
                "error": pred - y[idx],
            }))
    card = card.model_copy(update={"metrics": metrics})
    loaded.card = card
    predictions = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    path = None
    if out is not None:
        path = save_model(out, card, module, history=history.frame(), predictions=predictions)
        loaded.path = path
    return TrainResult(
        model=loaded,
        history=history.frame(),
        predictions=predictions,
        metrics=metrics,
        path=path,
        stop_reason=trainer.stop_reason,
    )

