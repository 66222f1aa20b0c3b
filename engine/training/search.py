"""Hyperparameter search: the CGCNN teaching grid around the defaults of Xie & Grossman (PRL 120,
145301, 2018), tried in full or as a seeded random sample.

Every trial is one :func:`engine.training.train` run on the same split; trials are ranked by the
best validation MAE only (the test split is never looked at, so it stays a fair estimate for
the chosen model). Grid expansion and sampling are scikit-learn's ``ParameterGrid`` and
``ParameterSampler`` (without replacement, seeded).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sklearn.model_selection import ParameterGrid, ParameterSampler

from engine.core.config import CGCNNConfig, GraphConfig, ModelConfig, SplitConfig, TrainConfig
from engine.io.datasets import LabelledDataset
from engine.store.directory import save_model
from engine.training.callbacks import Callback
from engine.training.run import TrainResult, train

#: The CGCNN grid of the teaching material, around the paper's defaults (atom_fea_len 64,
#: 3 convolutions, h_fea_len 128, lr 1e-3): 3·3·2·3 = 54 settings.
CGCNN_GRID: dict[str, list] = {
    "atom_fea_len": [32, 64, 128],
    "n_conv": [2, 3, 4],
    "h_fea_len": [64, 128],
    "lr": [5e-4, 1e-3, 2e-3],
}

#: Grid keys that belong to :class:`~engine.core.config.TrainConfig` rather than the model config.
TRAINING_KEYS = ("lr", "batch_size", "weight_decay", "scheduler")


@dataclass
class SearchResult:
    """A finished search.

    Attributes:
        table: one row per trial, best first: ``trial``, the grid keys, ``val_mae`` (target
            unit), ``val_r``, ``best_epoch``, ``seconds``, ``status`` ("ok" or the error).
        best: the grid values of the best trial.
        best_result: that trial's full :class:`TrainResult` (model, history, predictions).
        n_settings: size of the whole grid (``len(table)`` trials were run).
    """

    table: pd.DataFrame
    best: dict
    best_result: TrainResult
    n_settings: int


def search_settings(grid: Mapping[str, Sequence], n_trials: int | None, seed: int) -> list[dict]:
    """The settings to try: the whole grid (``n_trials`` None or ≥ its size) or ``n_trials``
    settings sampled from it without replacement with ``seed``; sorted keys, stable order."""
    full = list(ParameterGrid(dict(grid)))
    if n_trials is None or n_trials >= len(full):
        return full
    if n_trials < 1:
        raise ValueError(f"n_trials must be at least 1, got {n_trials}")
    return list(ParameterSampler(dict(grid), n_iter=n_trials, random_state=seed))


def hyperparameter_search(
    dataset: LabelledDataset,
    target: str,
    *,
    model: ModelConfig | None = None,
    grid: Mapping[str, Sequence] | None = None,
    n_trials: int | None = 10,
    epochs: int = 30,
    seed: int = 0,
    graph: GraphConfig | None = None,
    split: SplitConfig | None = None,
    training: TrainConfig | None = None,
    query: str | None = None,
    out: str | Path | None = None,
    name: str | None = None,
    on_trial: Callable[[int, int, dict], bool | None] | None = None,
    callbacks: Sequence[Callback] = (),
) -> SearchResult:
    """Train one model per setting and rank the settings by validation MAE.

    Args:
        dataset, target, graph, split, query: as in :func:`engine.training.train`; every trial
            uses the same split (the split seed is ``split.seed``).
        model: the base model config (default CGCNN); the grid overrides its fields.
        grid: parameter → values; keys are fields of the model's config or of
            :data:`TRAINING_KEYS`. Default :data:`CGCNN_GRID`.
        n_trials: settings to sample from the grid (None: all of them).
        epochs: epochs per trial (``training.epochs`` is overridden).
        seed: seed of the sampling and of every trial's training.
        training: base training settings (early stopping, batch size, device…).
        out: if given, the best trial's model is saved there (name ``name``).
        on_trial: called as ``on_trial(done, total, row)`` after each trial (progress); a true
            return value ends the search early (the best trial so far is kept).
        callbacks: passed to every trial's training (e.g. a
            :class:`~engine.training.callbacks.CancelFile`, which ends a trial within a batch).

    Raises:
        ValueError: a grid key that is no setting of the model nor of training, or every trial
            failed.
    """
    model = model or CGCNNConfig()
    config_class = type(model)
    grid = dict(CGCNN_GRID if grid is None else grid)
    unknown = [k for k in grid if k not in TRAINING_KEYS and k not in config_class.model_fields]
    if unknown:
        raise ValueError(
            f"{', '.join(unknown)}: not a setting of {model.name} nor of training "
            f"({', '.join(TRAINING_KEYS)})"
        )
    settings = search_settings(grid, n_trials, seed)
    base = (training or TrainConfig()).model_copy(update={"epochs": epochs, "seed": seed})
    rows, best_result, best_mae = [], None, float("inf")
    for trial, params in enumerate(settings):
        model_params = {k: v for k, v in params.items() if k not in TRAINING_KEYS}
        train_params = {k: v for k, v in params.items() if k in TRAINING_KEYS}
        row = {"trial": trial, **params}
        start = time.perf_counter()
        try:
            result = train(
                dataset,
                target,
                model=config_class(**{**model.model_dump(), **model_params}),
                graph=graph,
                training=TrainConfig(**{**base.model_dump(), **train_params}),
                split=split,
                query=query,
                callbacks=callbacks,
            )
        except (ValueError, RuntimeError) as exc:  # one bad setting must not end the search
            row.update(
                val_mae=float("nan"),
                val_r=float("nan"),
                best_epoch=None,
                status=f"{type(exc).__name__}: {exc}",
            )
        else:
            val = result.metrics.get("val", {})
            history = result.history
            best_epoch = (
                int(history.loc[history["val_loss"].idxmin(), "epoch"])
                if "val_loss" in history and history["val_loss"].notna().any()
                else None
            )
            row.update(
                val_mae=val.get("mae", float("nan")),
                val_r=val.get("r", float("nan")),
                best_epoch=best_epoch,
                status="ok",
            )
            if val.get("mae", float("inf")) < best_mae:
                best_mae, best_result = val["mae"], result
        row["seconds"] = round(time.perf_counter() - start, 1)
        rows.append(row)
        if on_trial is not None and on_trial(trial + 1, len(settings), row):
            break
    if best_result is None:
        raise ValueError("every trial failed: " + "; ".join(r["status"] for r in rows))
    table = pd.DataFrame(rows).sort_values("val_mae", ignore_index=True, na_position="last")
    best = {k: table.iloc[0][k] for k in grid}
    if out is not None:
        chosen = best_result.model
        chosen.card = chosen.card.model_copy(update={"name": name or Path(out).name})
        best_result.path = chosen.path = save_model(
            out,
            chosen.card,
            chosen.module,
            history=best_result.history,
            predictions=best_result.predictions,
            domain=chosen.uncertainty.domain if chosen.uncertainty else None,
        )
    return SearchResult(
        table=table, best=best, best_result=best_result, n_settings=len(ParameterGrid(grid))
    )
