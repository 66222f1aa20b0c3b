"""Workflows that train or load models for their uncertainty: σ and the applicability domain of
a model saved before them (:func:`calibrate_model`), and seed ensembles (:func:`train_ensemble`).
The numerics are in :mod:`engine.uq`; fitting them is :func:`engine.training.uq_fit.fit_uncertainty`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from engine.catalog.names import load_model
from engine.core.config import TrainConfig
from engine.io.datasets import load_dataset, resolve_source
from engine.io.splits import split_dataset
from engine.store.card import PREDICTIONS_FILE, EnsembleInfo, write_card
from engine.store.directory import LoadedModel
from engine.training import distributed
from engine.training.multitask import add_task_columns, metrics_by_task
from engine.training.run import TrainResult, family_columns, train
from engine.training.uq_fit import fit_uncertainty
from engine.uq.domain import DOMAIN_FILE
from engine.uq.metrics import regression_metrics
from engine.uq.uncertainty import Fitted

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
    info = card.dataset
    if info is None or info.split is None:
        raise ValueError(
            f"model {card.name!r} records no training dataset and split, so σ and "
            "the domain cannot be fitted for it"
        )
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
        raise ValueError(
            f"the dataset {dataset.source or dataset.name!r} is not the one model "
            f"{card.name!r} was trained on (its content hash differs)"
        )
    parts = split_dataset(dataset, info.split)
    recorded = {"train": info.n_train, "val": info.n_val, "test": info.n_test}
    for part, n in recorded.items():
        if n is not None and n != len(parts[part]):
            raise ValueError(
                f"the recorded split has {n} {part} rows, the rebuilt one {len(parts[part])}"
            )
    return dataset, values, parts


def _recorded_predictions(model, dataset, inputs, values, parts, fitted: Fitted, device: str):
    """A model's metrics (an ensemble's from the member mean) and its ``predictions.csv``
    frame."""
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
        metrics[part] = (
            metrics_by_task(targets, y, pred) if multi else regression_metrics(y[:, 0], pred[:, 0])
        )
        if part == "train":
            continue
        frame = pd.DataFrame(
            {
                "split": part,
                "id": [dataset.items[i].id for i in idx],
                "formula": formulas[idx],
                "target": y[:, 0],
                "prediction": pred[:, 0],
                "error": pred[:, 0] - y[:, 0],
            }
        )
        if multi:
            add_task_columns(frame, targets, y, pred)
        frames.append(family_columns(model, frame, [inputs[i] for i in idx], device))
    return metrics, pd.concat(frames, ignore_index=True)


def calibrate_model(model, dataset=None, *, device: str = "auto", write: bool = True):
    """Fit σ and the applicability domain of an existing model from its recorded training
    data and split, and (``write``) save them into its directory: ``domain.npz`` and the card's
    ``uncertainty``. The card's metrics and ``predictions.csv`` (with its σ/domain columns) are
    rebuilt by the current engine, an ensemble's from the member mean: after a change in how
    graphs are built, this re-records a model without retraining it.

    Args:
        model: a loaded model or ensemble, a model directory or a model name.
        dataset: the training dataset as loaded (before the query); default: the card's
            ``dataset.source``, found with :func:`engine.io.datasets.resolve_source`.

    Returns:
        The model, with its card and :attr:`uncertainty` updated.

    Raises:
        ValueError: no recorded dataset or split, the data is not found or not the recorded one.
    """
    if not isinstance(model, LoadedModel):
        model = load_model(model)
    card = model.card
    if dataset is None:
        source = card.dataset.source if card.dataset else ""
        path = resolve_source(source)
        if path is None:
            raise ValueError(
                f"the training data of model {card.name!r} ({source or 'unknown'}) "
                "is not on this machine; pass it with --data"
            )
        dataset = load_dataset(path)
    if card.dataset and card.dataset.split and card.dataset.split.refit:
        raise ValueError(
            f"model {card.name!r} is a refit: its validation rows were trained on, so σ and "
            "the domain have nothing held out to be fitted on"
        )
    dataset, values, parts = training_rows(dataset, card)
    inputs = model.prepare(
        [it.structure for it in dataset.items], ids=[it.id for it in dataset.items]
    )
    fitted = fit_uncertainty(
        model,
        inputs,
        parts,
        ids=[it.id for it in dataset.items],
        formulas=dataset.table["formula"].astype(str).tolist(),
        values=values,
        device=device,
    )
    metrics, predictions = _recorded_predictions(
        model, dataset, inputs, values, parts, fitted, device
    )
    model.card = card.model_copy(update={"uncertainty": fitted.card, "metrics": metrics})
    model.uncertainty = fitted.uncertainty
    if write:
        if model.path is None:
            raise ValueError(f"model {card.name!r} has no directory to write to")
        fitted.domain.save(model.path / DOMAIN_FILE)
        write_card(model.path, model.card)
        fitted.annotate(predictions).to_csv(model.path / PREDICTIONS_FILE, index=False)
    return model


# ----------------------------------------------------------------------------------------------
# Ensembles


def train_ensemble(
    dataset,
    target,
    *,
    k: int,
    out: str | Path,
    name: str | None = None,
    training=None,
    progress: bool = False,
    **train_kwargs,
):
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
    if k < 2:
        raise ValueError(f"an ensemble needs at least 2 members, got {k}")
    if distributed.active():
        raise ValueError("an ensemble is trained in one process; start it without torchrun")
    out = Path(out)
    name = name or out.name
    train_cfg = training or TrainConfig()
    seeds = [train_cfg.seed + i for i in range(k)]
    results = [
        train(
            dataset,
            target,
            training=train_cfg.model_copy(update={"seed": seed}),
            out=out / "members" / str(i),
            name=f"{name}/member-{i}",
            progress=progress,
            **train_kwargs,
        )
        for i, seed in enumerate(seeds)
    ]
    first = results[0].model.card
    card = first.model_copy(
        update={
            "name": name,
            "source": "user",
            "created": "",
            "metrics": {},
            "uncertainty": None,
            "description": f"Ensemble of {k} {first.model.get('name', 'cgcnn')} models "
            f"(training seeds {seeds[0]}–{seeds[-1]}): the member mean, with σ from "
            "the calibrated member spread.",
            "ensemble": EnsembleInfo(members=[f"members/{i}" for i in range(k)], seeds=seeds),
        }
    )
    write_card(out, card)
    model = calibrate_model(load_model(out), dataset, device=train_cfg.device)
    return TrainResult(
        model=model,
        history=pd.concat(
            [r.history.assign(member=i) for i, r in enumerate(results)], ignore_index=True
        ),
        predictions=pd.read_csv(out / PREDICTIONS_FILE),
        metrics=model.card.metrics,
        path=out,
        stop_reason="; ".join(
            f"member {i}: {r.stop_reason}" for i, r in enumerate(results) if r.stop_reason
        )
        or None,
    )
