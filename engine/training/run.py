"""One training run from a labelled dataset to a saved, reloadable model directory.

:func:`train` prepares the data the same way for every family (query, split, target
normaliser, inputs from :func:`engine.models.build_inputs`, input standardisation fitted on the
training split), then dispatches on the family's ``training_kind``:

* ``gradient`` (cgcnn, early-fusion, attention-fusion): the :class:`Trainer`, with history,
  best-epoch restore, early stopping and progress as callbacks;
* ``forest`` (rf-magpie): one scikit-learn fit, reported to the callbacks as a single epoch, so
  ``history.csv`` has one row and a job's progress shows 1/1;
* ``late-fusion``: the CGCNN half through the Trainer, then the forest half, then α on the
  validation split;
* ``multitask`` (multitask, cgcnn-debye): the Trainer on the masked, weighted sum of K task
  losses (:class:`~engine.training.multitask.MultitaskTrainer`); ``target`` is then a list, and
  ``TrainConfig.target_transform`` applies to the first (primary) target only. A family with a
  ``target_transform`` of its own (the Debye head: ``log``) applies it to every target.

A gradient family can start from another model's weights (``TrainConfig.init_from``, with
``TrainConfig.freeze`` to keep some fixed; :mod:`engine.training.transfer`); the card's
``fitted["transfer"]`` records the source and how many entries were copied and frozen.

Every family leaves the same artefacts: ``history.csv``, ``predictions.csv`` (split, id, formula,
target, prediction, error, σ and domain, plus family extras), train/val/test metrics in the card,
and the fitted σ and applicability domain (``domain.npz``, the card's ``uncertainty``; see
:mod:`engine.uq.uncertainty`). A multi-target run adds per-task columns and metrics
(:mod:`engine.training.multitask`).

Size: about 560 lines (formatted): the four training kinds share one data preparation and one
model-directory write, which read best side by side.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import Data

from engine.core.config import CGCNNConfig, GraphConfig, ModelConfig, SplitConfig, TrainConfig
from engine.core.device import resolve_device
from engine.core.units import unit_of
from engine.graphs.batching import GraphLoader
from engine.graphs.builder import GraphBuilder
from engine.inference.prediction import WEIGHT_COLUMNS
from engine.io.datasets import LabelledDataset
from engine.io.splits import split_dataset
from engine.models import MODEL_REGISTRY, build_inputs, build_model
from engine.store.card import DatasetInfo, ModelCard, Normalizer
from engine.store.directory import LoadedModel, save_model
from engine.training import distributed
from engine.training.callbacks import (
    BestCheckpoint,
    Callback,
    EarlyStopping,
    History,
    ProgressBar,
    StopAfter,
)
from engine.training.checkpoint import Checkpointing, run_key
from engine.training.loop import Trainer, seed_everything
from engine.training.multitask import (
    MultitaskTrainer,
    add_task_columns,
    attach_task_labels,
    fitted_weights,
    metrics_by_task,
)
from engine.training.transfer import freeze_parameters, transfer_weights
from engine.training.uq_fit import fit_uncertainty
from engine.uq.metrics import regression_metrics


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
    target: str | Sequence[str],
    *,
    model: ModelConfig | None = None,
    graph: GraphConfig | None = None,
    training: TrainConfig | None = None,
    split: SplitConfig | None = None,
    query: str | None = None,
    out: str | Path | None = None,
    name: str | None = None,
    unit: str | Sequence[str] | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = False,
    checkpoint: str | Path | None = None,
    resume: bool = True,
) -> TrainResult:
    """Train a model on ``dataset[target]`` and (if ``out`` is given) save its model directory.

    Rows with a missing target are dropped; the split is made on the rest. The target is
    standardised with the training split's mean and std. The weights of the epoch with the
    lowest validation loss are kept (with ``training.stop_after``, those of that epoch; a refit,
    ``split.refit``, trains on the validation rows too and fits no σ or domain).

    A multi-target family (``multitask``) takes a list of targets: rows lacking every target are
    dropped, rows lacking some are kept (the missing labels are masked out of the loss), each
    target gets its own normaliser, and the first target is the card's primary ``target``.

    Args:
        dataset: structures with a table holding ``target``.
        target: name of the target column; for ``multitask`` a list of names (a single-target
            family refuses more than one).
        model, graph, training, split: configs; defaults are the CGCNN paper's settings.
        query: keep only rows matching this pandas query (recorded in the model card).
        out: model directory to write (created if needed).
        name: model name recorded in the card (defaults to the folder name of ``out``).
        unit: target unit (defaults to the known unit of ``target``); for several targets a
            list of units.
        callbacks: extra callbacks, e.g. a :class:`ProgressFile` for background jobs.
        progress: show a tqdm progress bar on stderr.
        checkpoint, resume: file the training state is saved in after every epoch (gradient
            families, :mod:`engine.training.checkpoint`); with ``resume`` an existing one is
            continued, refused if written with other settings or data (False: start afresh).

    In a process group of several processes (``torchrun``, see
    :mod:`engine.training.distributed`) the gradient families train data-parallel; every rank
    returns the same result, but only rank 0 runs ``callbacks`` and ``progress`` and writes ``out``.
    """
    main_rank = distributed.rank() == 0
    if not main_rank:
        callbacks, progress = (), False
    model_cfg = model or CGCNNConfig()
    graph_cfg = graph or GraphConfig()
    train_cfg = training or TrainConfig()
    split_cfg = split or SplitConfig()
    targets, units, multi = resolve_targets(model_cfg.name, target, unit)
    if multi:  # one head per target
        model_cfg = type(model_cfg)(**{**model_cfg.model_dump(), "n_tasks": len(targets)})
    forced = MODEL_REGISTRY[model_cfg.name].target_transform  # e.g. the Debye head's logs
    if forced:
        train_cfg = train_cfg.model_copy(update={"target_transform": forced})
    target, unit = targets[0], units[0]

    source_size = len(dataset.items)
    if query:
        dataset = dataset.query(query)
    if multi:
        values = np.column_stack([dataset.targets(t) for t in targets])
        dataset = dataset.subset(np.isfinite(values).any(axis=1))
        values = np.column_stack([dataset.targets(t) for t in targets])
    else:
        dataset = dataset.dropna(target)
        values = dataset.targets(target)[:, None]
    y = values[:, 0]
    parts = split_dataset(dataset, split_cfg)
    if len(parts["val"]) == 0:
        raise ValueError("the validation split is empty; the dataset is too small to train on")
    if split_cfg.refit and not train_cfg.stop_after:
        raise ValueError(
            "a refit trains on the validation rows too, so nothing is left to choose its epoch "
            "on: set training.stop_after to the epoch chosen by the same run without refit"
        )
    # Several targets: the transform is the primary target's (auxiliary ones, e.g. log10 κ,
    # may be negative and are standardised as they are), unless it is the family's own.
    normalizers = [
        _fit_normalizer(
            values[parts["train"], k], t, train_cfg.target_transform if k == 0 or forced else "none"
        )
        for k, t in enumerate(targets)
    ]
    normalizer = normalizers[0]

    ids = [item.id for item in dataset.items]
    structures = [item.structure for item in dataset.items]

    seed_everything(train_cfg.seed)
    module = build_model(model_cfg, graph_cfg)
    transfer = {}  # transfer learning (TrainConfig.init_from / freeze), recorded in the card
    if train_cfg.init_from:
        done = transfer_weights(module, train_cfg.init_from, graph_cfg)
        transfer = {
            "init_from": done["init_from"],
            "transferred": len(done["transferred"]),
            "not_transferred": done["skipped"],
        }
    if train_cfg.freeze:
        transfer["frozen"] = len(freeze_parameters(module, train_cfg.freeze))
    inputs = build_inputs(module, GraphBuilder(graph_cfg), structures, ids=ids)
    if multi:
        attach_task_labels(inputs, values, normalizers)
    else:
        for data, value in zip(inputs, y):
            data.y = normalizer.encode(torch.tensor([value], dtype=torch.float32))
    train_inputs = [inputs[i] for i in parts["train"]]
    val_inputs = [inputs[i] for i in parts["val"]]
    module.fit_statistics(train_inputs)
    module.fit_target_scale(normalizers)

    fit = _FITTERS[module.training_kind]
    saving = (
        None
        if checkpoint is None
        else Checkpointing(
            Path(checkpoint),
            resume,
            run_key(model_cfg, graph_cfg, split_cfg, query, targets, dataset.content_hash()),
        )
    )
    history_frame, stop_reason, fitted = fit(
        module,
        train_inputs,
        val_inputs,
        train_cfg=train_cfg,
        normalizer=normalizer,
        callbacks=callbacks,
        progress=progress,
        **({"normalizers": normalizers, "targets": targets} if multi else {}),
        checkpoint=saving,
    )

    card = ModelCard(
        name=name or (Path(out).name if out else f"{model_cfg.name}-{'+'.join(targets)}"),
        target=target,
        unit=unit,
        targets=targets if multi else [],
        units=units if multi else [],
        normalizers=normalizers if multi else [],
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
        fitted={**fitted, **({"transfer": transfer} if transfer else {})},
    )
    loaded = LoadedModel(card=card, module=module)
    # σ and applicability domain (engine.uq.uncertainty): training vectors, validation
    # residuals; the same pass gives every split's predictions
    unc = fit_uncertainty(
        loaded,
        inputs,
        parts,
        ids=ids,
        values=values,
        device=train_cfg.device,
        formulas=dataset.table["formula"].astype(str).tolist(),
        predict_train=True,
    )
    frames, metrics = [], {}
    for part in ("train", "val", "test"):
        idx = parts[part]
        if len(idx) == 0:
            continue
        pred_all = unc.predictions[part]
        pred = pred_all[:, 0]
        if multi:
            metrics[part] = metrics_by_task(targets, values[idx], pred_all)
        else:
            metrics[part] = regression_metrics(y[idx], pred)
        if part != "train":
            frame = pd.DataFrame(
                {
                    "split": part,
                    "id": [ids[i] for i in idx],
                    "formula": dataset.table["formula"].to_numpy()[idx],
                    "target": y[idx],
                    "prediction": pred,
                    "error": pred - y[idx],
                }
            )
            if multi:
                add_task_columns(frame, targets, values[idx], pred_all)
            part_inputs = [inputs[i] for i in idx]
            frames.append(family_columns(loaded, frame, part_inputs, train_cfg.device))
    predictions = pd.concat(frames, ignore_index=True)
    if split_cfg.refit:  # σ and the domain would be fitted on rows trained on: none
        card = card.model_copy(update={"metrics": metrics})
    else:
        card = card.model_copy(update={"metrics": metrics, "uncertainty": unc.card})
        loaded.uncertainty = unc.uncertainty
        predictions = unc.annotate(predictions)
    loaded.card = card
    path = None
    if out is not None and main_rank:
        path = save_model(
            out,
            card,
            module,
            history=history_frame,
            predictions=predictions,
            domain=None if split_cfg.refit else unc.domain,
        )
        loaded.path = path
    return TrainResult(
        model=loaded,
        history=history_frame,
        predictions=predictions,
        metrics=metrics,
        path=path,
        stop_reason=stop_reason,
    )


# ----------------------------------------------------------------------------------------------
# Per-family fitting. Each returns (history, stop_reason, fitted values for the card).


def resolve_targets(family: str, target, unit) -> tuple[list[str], list[str], bool]:
    """(targets, units, whether the family is multi-target); refuses several targets for a
    single-target family, duplicates, a unit list of the wrong length, and units other than
    those of a family with fixed outputs (``target_units``)."""
    targets = [target] if isinstance(target, str) else [str(t) for t in target]
    if not targets:
        raise ValueError("no target given")
    if len(set(targets)) != len(targets):
        raise ValueError(f"a target is given twice: {targets}")
    cls = MODEL_REGISTRY.get(family)
    multi = bool(getattr(cls, "multi_target", False))
    if len(targets) > 1 and not multi:
        several = [n for n, c in MODEL_REGISTRY.items() if getattr(c, "multi_target", False)]
        raise ValueError(
            f"model family {family!r} predicts a single target but {len(targets)} were given "
            f"({', '.join(targets)}); give one target, or use a multi-target family "
            f"({', '.join(several)})"
        )
    if unit is None:
        units = [unit_of(t) for t in targets]
    else:
        units = [unit] if isinstance(unit, str) else list(unit)
        if len(units) != len(targets):
            raise ValueError(f"{len(units)} units given for {len(targets)} targets")
    wanted = getattr(cls, "target_units", None)
    if wanted and (len(units) > len(wanted) or list(units) != list(wanted[: len(units)])):
        raise ValueError(
            f"model family {family!r} predicts targets in {', '.join(wanted)} (in that order, "
            f"the first required); got {', '.join(f'{t} ({u})' for t, u in zip(targets, units))}"
        )
    return targets, units, multi


def _fit_normalizer(values: np.ndarray, target: str, transform: str = "none") -> Normalizer:
    """The normaliser of one target from its training values (missing ones ignored)."""
    values = values[np.isfinite(values)]
    if len(values) == 0:
        raise ValueError(f"no training row has a value of target {target!r}")
    return Normalizer.fit(values, transform)


def _decoder(normalizer: Normalizer):
    """Standardised numpy values → target unit (float64), through the normaliser."""
    return lambda z: normalizer.decode(torch.as_tensor(np.asarray(z, dtype=np.float64))).numpy()


def _callbacks(train_cfg: TrainConfig, callbacks, progress: bool) -> tuple[History, list]:
    """History, best-epoch restore and early stopping (or, with ``stop_after``, the end at that
    epoch), progress bar, then the caller's callbacks."""
    history = History()
    cbs: list[Callback] = [history]
    if train_cfg.stop_after:
        cbs.append(StopAfter(train_cfg.stop_after))
    else:
        cbs.append(BestCheckpoint())
        if train_cfg.early_stopping_patience:
            cbs.append(EarlyStopping(train_cfg.early_stopping_patience))
    if progress:
        cbs.append(ProgressBar())
    cbs.extend(callbacks)
    return history, cbs


def _fit_gradient(
    module, train_inputs, val_inputs, *, train_cfg, normalizer, callbacks, progress, checkpoint=None
):
    """Gradient training with the Trainer; the best epoch's weights are restored."""
    history, cbs = _callbacks(train_cfg, callbacks, progress)
    trainer = Trainer(
        module,
        train_cfg,
        target_std=normalizer.std,
        callbacks=cbs,
        decode=_decoder(normalizer),
        checkpoint=checkpoint,
    )
    trainer.fit(train_inputs, val_inputs)
    return history.frame(), trainer.stop_reason, {}


def _fit_multitask(
    module,
    train_inputs,
    val_inputs,
    *,
    train_cfg,
    normalizer,
    callbacks,
    progress,
    normalizers,
    targets,
    checkpoint=None,
):
    """The Trainer on the masked, weighted task losses; the best epoch (lowest mean validation
    task MSE) is restored. The card records the final weighting (log-variances, weights)."""
    history, cbs = _callbacks(train_cfg, callbacks, progress)
    trainer = MultitaskTrainer(
        module,
        train_cfg,
        targets=targets,
        normalizers=normalizers,
        callbacks=cbs,
        checkpoint=checkpoint,
    )
    trainer.fit(train_inputs, val_inputs)
    return history.frame(), trainer.stop_reason, fitted_weights(module, targets)


class _OneStep:
    """Stands in for the Trainer when callbacks watch a one-step fit (a forest)."""

    def __init__(self, module, train_cfg: TrainConfig):
        self.model = module
        self.config = train_cfg.model_copy(update={"epochs": 1})
        self.stop_reason: str | None = None
        self.epochs_done = 0


def _targets(inputs: list[Data]) -> np.ndarray:
    return torch.cat([d.y for d in inputs]).numpy().astype(np.float64) if inputs else np.zeros(0)


def _standardised(module, inputs: list[Data], *, device: str, batch_size: int = 256) -> np.ndarray:
    """Standardised predictions ``module(batch)`` over inputs, in eval mode and without
    gradients, as float64 numpy (N,). The module is moved to ``device`` and back to the CPU."""
    dev = resolve_device(device)
    module.to(dev).eval()
    out = []
    try:
        with torch.no_grad():
            for batch in GraphLoader(inputs, batch_size):
                out.append(module(batch.to(dev)).cpu().double())
    finally:
        module.to("cpu")
    return torch.cat(out).numpy() if out else np.zeros(0)


def _record(epoch: int, y_train, p_train, y_val, p_val, decode, seconds: float) -> dict:
    fit, val = (
        regression_metrics(decode(y_train), decode(p_train)),
        regression_metrics(decode(y_val), decode(p_val)),
    )
    return {
        "epoch": epoch,
        "train_loss": float(np.mean((p_train - y_train) ** 2)),
        "val_loss": float(np.mean((p_val - y_val) ** 2)),
        "train_mae": fit["mae"],
        "val_mae": val["mae"],
        "train_r": fit["r"],
        "val_r": val["r"],
        "lr": float("nan"),
        "seconds": seconds,
    }


def _fit_forest(
    module, train_inputs, val_inputs, *, train_cfg, normalizer, callbacks, progress, checkpoint=None
):
    """One scikit-learn fit of the forest, reported to the callbacks as epoch 1 of 1.

    The ``train_*`` metrics are those of the forest on its own training rows (optimistic, as
    always for a forest)."""
    if checkpoint:
        raise ValueError("a forest fits in one step: it has no epochs to checkpoint")
    history = History()
    cbs = [history, *callbacks]
    if progress:
        cbs.append(ProgressBar())
    step = _OneStep(module, train_cfg)
    for cb in cbs:
        cb.on_train_start(step)
    try:
        start = time.perf_counter()
        y_train = _targets(train_inputs)
        module.fit_forest(
            train_inputs, y_train, seed=train_cfg.seed, n_jobs=train_cfg.num_threads or -1
        )
        seconds = time.perf_counter() - start
        module.eval()
        p_train = _standardised(module, train_inputs, device="cpu")
        y_val = _targets(val_inputs)
        p_val = _standardised(module, val_inputs, device="cpu")
        record = _record(1, y_train, p_train, y_val, p_val, _decoder(normalizer), seconds)
        for cb in cbs:
            cb.on_epoch_end(step, record)
    finally:
        for cb in cbs:
            cb.on_train_end(step)
    return history.frame(), step.stop_reason, {}


def alpha_search(
    rf: np.ndarray, cgcnn: np.ndarray, y: np.ndarray, grid: Sequence[float]
) -> tuple[float, list[float]]:
    """The α of ``grid`` with the lowest MAE of α·rf + (1 − α)·cgcnn against ``y`` (the first
    such α on ties), and the MAE of every α."""
    maes = [float(np.mean(np.abs(a * rf + (1 - a) * cgcnn - y))) for a in grid]
    return float(grid[int(np.argmin(maes))]), maes


def _fit_late(
    module, train_inputs, val_inputs, *, train_cfg, normalizer, callbacks, progress, checkpoint=None
):
    """CGCNN (Trainer), then the forest on the same training rows, then α on validation.

    A cancelled run still fits the forest and α (seconds), so what is saved is complete."""
    history, stop_reason, _ = _fit_gradient(
        module.cgcnn,
        train_inputs,
        val_inputs,
        train_cfg=train_cfg,
        normalizer=normalizer,
        callbacks=callbacks,
        progress=progress,
        checkpoint=checkpoint,
    )
    module.rf.fit_forest(
        train_inputs,
        _targets(train_inputs),
        seed=train_cfg.seed,
        n_jobs=train_cfg.num_threads or -1,
    )
    module.eval()
    y_val = _targets(val_inputs)
    rf_val = _standardised(module.rf, val_inputs, device=train_cfg.device)
    cgcnn_val = _standardised(module.cgcnn, val_inputs, device=train_cfg.device)
    grid = module.config.alpha_grid()
    alpha, maes = alpha_search(rf_val, cgcnn_val, y_val, grid)
    module.alpha.fill_(alpha)
    decode = _decoder(normalizer)
    # the blend is on the standardised scale; its MAEs are reported in the target's unit
    maes = [
        float(np.mean(np.abs(decode(a * rf_val + (1 - a) * cgcnn_val) - decode(y_val))))
        for a in grid
    ]
    return (
        history,
        stop_reason,
        {
            "alpha": alpha,
            "alpha_grid": list(grid),
            "val_mae_by_alpha": maes,
            "val_mae_cgcnn": maes[0],
            "val_mae_rf": maes[-1],
            "selected_on": "val",
        },
    )


_FITTERS = {
    "gradient": _fit_gradient,
    "forest": _fit_forest,
    "late-fusion": _fit_late,
    "multitask": _fit_multitask,
}


def family_columns(
    model: LoadedModel, frame: pd.DataFrame, inputs: list[Data], device: str
) -> pd.DataFrame:
    """Per-family extra columns of ``predictions.csv``, added to ``frame`` (one row per input)
    and returned: attention fusion's weights (:data:`~engine.inference.prediction.WEIGHT_COLUMNS`
    and their aliases ``w_comp``/``w_graph``), late fusion's ``prediction_rf`` and
    ``prediction_cgcnn`` (target unit)."""
    module = model.module
    if model.has_fusion_weights:
        w = model.fusion_weights_graphs(inputs, device=device)
        frame[WEIGHT_COLUMNS[0]] = w[:, 0]
        frame[WEIGHT_COLUMNS[1]] = w[:, 1]
        # the names the dashboard's Fusion page reads
        frame["w_comp"] = w[:, 0]
        frame["w_graph"] = w[:, 1]
    if hasattr(module, "branch_predictions"):
        decode = _decoder(model.card.normalizer)
        frame["prediction_rf"] = decode(_standardised(module.rf, inputs, device=device))
        frame["prediction_cgcnn"] = decode(_standardised(module.cgcnn, inputs, device=device))
    return frame
