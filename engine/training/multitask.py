"""Training pieces of multi-target models (the ``multitask`` family).

Shapes written by a multi-target run (K targets, the first is the *primary* one; ``<t>`` is a
target column name):

* **labels**: every input carries ``y`` (1, K), each target standardised with its own training
  mean and std (0 where missing), and ``y_mask`` (1, K), True where the label exists. Rows
  lacking every target are dropped; rows lacking some are kept and masked.
* **history.csv**: the usual columns, where ``train_loss``/``val_loss`` are the mean over tasks
  of the masked MSE on each task's standardised scale (the same quantity whatever the weighting,
  so epochs compare; the best epoch is chosen on ``val_loss``), ``train_mae``/``val_mae``/
  ``train_r``/``val_r`` are those of the primary target, plus ``train_mae_<t>`` and
  ``val_mae_<t>`` per task (target unit) and, for the ``learned`` weighting, ``log_var_<t>`` (the
  log-variance s_k at the end of the epoch).
* **metrics** (``card.metrics[split]``): ``n``, ``mae``, ``rmse``, ``r``, ``r2`` of the primary
  target (so single-target readers keep working), plus ``<t>/n``, ``<t>/mae``, ``<t>/rmse``,
  ``<t>/r``, ``<t>/r2`` for every target, each over the rows of the split that have that label
  (see :func:`task_metrics`, :func:`metrics_by_task`).
* **predictions.csv**: one row per structure per split (wide): ``split``, ``id``, ``formula``,
  ``target``, ``prediction``, ``error`` of the primary target, then ``target_<t>``,
  ``prediction_<t>``, ``error_<t>`` for every target (``target_<t>``/``error_<t>`` NaN where the
  label is missing).
* **fitted** (card): ``weighting``, ``log_vars`` and ``task_weights`` (target → value; the
  weight of each standardised task MSE in the objective at the restored epoch).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import Data

from engine.core.config import TrainConfig
from engine.training.loop import Trainer
from engine.uq.metrics import regression_metrics

METRIC_KEYS = ("n", "mae", "rmse", "r", "r2")


def attach_task_labels(inputs: list[Data], values: np.ndarray, normalizers) -> None:
    """Set ``y`` (1, K) standardised (0 where missing) and ``y_mask`` (1, K) on every input.

    Args:
        values: raw labels (N, K), NaN where missing.
        normalizers: one :class:`~engine.store.card.Normalizer` per column (its transform
            applied, e.g. ln for the Debye head's targets).
    """
    present = np.isfinite(values)
    z = np.zeros(values.shape, dtype=np.float64)
    for k, norm in enumerate(normalizers):
        rows = present[:, k]
        z[rows, k] = norm.encode(torch.as_tensor(values[rows, k], dtype=torch.float64)).numpy()
    for data, row, mask in zip(inputs, z, present):
        data.y = torch.tensor(row, dtype=torch.float32).unsqueeze(0)
        data.y_mask = torch.tensor(mask, dtype=torch.bool).unsqueeze(0)


def task_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """:func:`regression_metrics` over the pairs whose true value is finite."""
    y_true = np.asarray(y_true, dtype=np.float64)
    keep = np.isfinite(y_true)
    return regression_metrics(y_true[keep], np.asarray(y_pred, dtype=np.float64)[keep])


def metrics_by_task(
    targets: Sequence[str], y_true: np.ndarray, y_pred: np.ndarray
) -> dict[str, float]:
    """The card's metrics of one split: the primary target's ``n``/``mae``/``rmse``/``r``/``r2``
    and ``<target>/<metric>`` for every target. ``y_true`` (N, K) has NaN where missing."""
    out: dict[str, float] = {}
    for k, target in enumerate(targets):
        m = task_metrics(y_true[:, k], y_pred[:, k])
        if k == 0:
            out.update(m)
        out.update({f"{target}/{key}": value for key, value in m.items()})
    return out


def per_task_metrics(metrics: dict, target: str) -> dict[str, float]:
    """The ``n``/``mae``/``rmse``/``r``/``r2`` of one target out of a split's metrics (written by
    :func:`metrics_by_task`); a single-target card's top-level metrics when the keys are absent."""
    prefixed = {
        key: metrics[f"{target}/{key}"] for key in METRIC_KEYS if f"{target}/{key}" in metrics
    }
    return prefixed or {key: metrics[key] for key in METRIC_KEYS if key in metrics}


def add_task_columns(
    frame: pd.DataFrame, targets: Sequence[str], y_true: np.ndarray, y_pred: np.ndarray
) -> pd.DataFrame:
    """Add ``target_<t>``, ``prediction_<t>``, ``error_<t>`` for every target (in place)."""
    for k, target in enumerate(targets):
        frame[f"target_{target}"] = y_true[:, k]
        frame[f"prediction_{target}"] = y_pred[:, k]
        frame[f"error_{target}"] = y_pred[:, k] - y_true[:, k]
    return frame


class MultitaskTrainer(Trainer):
    """The :class:`Trainer` on a multi-task module: the weighted, masked objective of the module
    (``objective(pred, y, y_mask, loss=, delta=)``, ``TrainConfig.loss`` on each task), per-task
    metrics in each target's unit, and a weighting-free validation loss (mean task MSE).

    Each input carries ``y`` and ``y_mask`` (1, K) (see :func:`attach_task_labels`).
    """

    def __init__(
        self,
        model,
        config: TrainConfig,
        *,
        targets: Sequence[str],
        normalizers: Sequence,
        callbacks=(),
        checkpoint=None,
    ):
        super().__init__(
            model,
            config,
            target_std=float(normalizers[0].std),
            callbacks=callbacks,
            checkpoint=checkpoint,
        )
        self.targets = list(targets)
        self.normalizers = list(normalizers)

    def _decode(self, k: int, z: np.ndarray) -> np.ndarray:
        """Standardised values of task k → its unit (NaN stays NaN)."""
        return self.normalizers[k].decode(torch.as_tensor(z, dtype=torch.float64)).numpy()

    def _mean_task_mse(self, pred, y, mask) -> float:
        losses, present = self.model.task_losses(pred, y, mask)
        return float(losses[present].mean()) if bool(present.any()) else 0.0

    def batch_loss(self, pred, batch):
        c = self.config
        objective = self.model.objective(
            pred, batch.y, batch.y_mask, loss=c.loss, delta=c.huber_delta
        )
        return objective, self._mean_task_mse(pred.detach(), batch.y, batch.y_mask)

    def batch_targets(self, batch) -> torch.Tensor:
        return torch.where(batch.y_mask, batch.y, torch.full_like(batch.y, float("nan")))

    def evaluate(self, graphs: list[Data]) -> tuple[float, np.ndarray, np.ndarray]:
        """Mean over tasks of the masked standardised MSE, and true (NaN where missing) and
        predicted values (N, K) on the standardised scale."""
        self.model.eval()
        ys, masks, preds = [], [], []
        with torch.no_grad():
            for batch in self._loader(graphs, shuffle=False):
                batch = self._to_device(batch)
                preds.append(self.model(batch).cpu())
                ys.append(batch.y.cpu())
                masks.append(batch.y_mask.cpu())
        y, mask, p = torch.cat(ys), torch.cat(masks), torch.cat(preds)
        loss = self._mean_task_mse(p, y, mask)
        y = torch.where(mask, y, torch.full_like(y, float("nan")))
        return loss, y.numpy(), p.numpy()

    def epoch_metrics(self, y_fit, p_fit, y_val, p_val) -> dict[str, float]:
        record: dict[str, float] = {}
        per_task: dict[str, float] = {}
        for k, target in enumerate(self.targets):
            fit = task_metrics(self._decode(k, y_fit[:, k]), self._decode(k, p_fit[:, k]))
            val = task_metrics(self._decode(k, y_val[:, k]), self._decode(k, p_val[:, k]))
            if k == 0:
                record = {
                    "train_mae": fit["mae"],
                    "val_mae": val["mae"],
                    "train_r": fit["r"],
                    "val_r": val["r"],
                }
            per_task[f"train_mae_{target}"] = fit["mae"]
            per_task[f"val_mae_{target}"] = val["mae"]
        if self.model.config.weighting == "learned":
            log_vars = self.model.log_vars.detach().cpu().tolist()
            per_task.update({f"log_var_{t}": float(s) for t, s in zip(self.targets, log_vars)})
        return {**record, **per_task}


def fitted_weights(module, targets: Sequence[str]) -> dict:
    """What the card records of a trained multi-task module's loss weighting."""
    log_vars = module.log_vars.detach().cpu().tolist()
    weights = module.task_weights().cpu().tolist()
    return {
        "weighting": module.config.weighting,
        "log_vars": dict(zip(targets, map(float, log_vars))),
        "task_weights": dict(zip(targets, map(float, weights))),
    }
