"""The optimisation loop: Adam on the MSE (or L1, Huber) of the standardised target, with an LR
schedule.

Bookkeeping (history, best-epoch restore, early stopping, progress) lives in callbacks. With a
:class:`~engine.training.checkpoint.Checkpointing`, the state after every completed epoch is saved
and an interrupted run resumes where it stopped (:mod:`engine.training.checkpoint`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import Data

from engine.core.config import TrainConfig
from engine.core.device import resolve_device
from engine.graphs.batching import GraphLoader
from engine.training import checkpoint as ckpt
from engine.training import distributed
from engine.training.callbacks import CANCELLED, Callback
from engine.uq.metrics import regression_metrics


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that a run repeats exactly on the same device."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    """Fits a model whose ``forward(batch)`` returns standardised predictions (B,).

    Each graph must carry ``y`` (1,) on the standardised scale; ``normalizer`` (mean, std)
    converts back to the target's unit for MAE and R.

    Subclasses change what is minimised and recorded through :meth:`batch_loss`,
    :meth:`batch_targets`, :meth:`evaluate` and :meth:`epoch_metrics` (see
    :class:`engine.training.multitask.MultitaskTrainer`).

    With ``checkpoint`` (one process only), the state after each completed epoch is written to
    ``checkpoint.path`` and :meth:`fit` continues from it when ``checkpoint.resume`` is set.
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        *,
        target_std: float,
        callbacks: Sequence[Callback] = (),
        decode=None,
        checkpoint: ckpt.Checkpointing | None = None,
    ):
        self.model = model
        self.config = config
        self.target_std = target_std
        #: standardised → target unit for the epoch metrics (default: × target_std, which is
        #: right for MAE without a target transform; a log target needs the normaliser's decode)
        self.decode = decode or (lambda z: z * self.target_std)
        self.callbacks = list(callbacks)
        self.distributed = distributed.active()  # data-parallel over the initialised group
        self.device = (
            distributed.rank_device(config.device)
            if self.distributed
            else resolve_device(config.device)
        )
        self.stop_reason: str | None = None
        if checkpoint is not None and self.distributed:
            raise ValueError("checkpointing is for one-process training, not a process group")
        self.checkpoint = checkpoint
        #: epochs completed before this ``fit`` (restored from a checkpoint; 0 on a fresh start)
        self.epochs_done = 0
        self._fingerprint: dict[str, str] = {}  # of this run, set by _resume, saved by _save
        self._loaders: dict[tuple[int, bool], tuple[list[Data], GraphLoader]] = {}

    def _loader(self, graphs: list[Data], *, shuffle: bool) -> GraphLoader:
        """Batches of ``graphs``; collated once per list and reused every epoch."""
        key = (id(graphs), shuffle)
        if key not in self._loaders:
            generator = torch.Generator().manual_seed(self.config.seed)
            loader = GraphLoader(
                graphs, self.config.batch_size, shuffle=shuffle, generator=generator
            )
            self._loaders[key] = (graphs, loader)  # the list is kept so its id stays unique
        return self._loaders[key][1]

    def _resume(self, optimizer, scheduler, generator, train_graphs, val_graphs) -> bool:
        """Restore the checkpoint's state if there is one to resume; True when it says the run
        is already done. Sets :attr:`epochs_done` and records the fingerprint to save."""
        c = self.checkpoint
        self._fingerprint = ckpt.fingerprint(
            self.config, self.model, train_graphs, val_graphs, c.key
        )
        if not (c.resume and Path(c.path).is_file()):
            return False
        state = ckpt.load_checkpoint(Path(c.path), self._fingerprint)
        self.model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        for key, cb in zip(ckpt.callback_keys(self.callbacks), self.callbacks):
            if key in state["callbacks"]:
                cb.load_state_dict(state["callbacks"][key])
        ckpt.restore_rng(state["rng"], generator)
        self.epochs_done = state["epoch"]
        if state["done"]:  # a cancelled run continues; a finished one keeps its reason
            self.stop_reason = state["stop_reason"]
        return state["done"]

    def _save(self, epoch: int, optimizer, scheduler, generator, done: bool) -> None:
        """Write the checkpoint of a completed epoch (see :mod:`engine.training.checkpoint`)."""
        ckpt.save_checkpoint(
            Path(self.checkpoint.path),
            {
                "model": self.model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "epoch": epoch,
                "done": done,
                "stop_reason": self.stop_reason,
                "callbacks": {
                    key: cb.state_dict()
                    for key, cb in zip(ckpt.callback_keys(self.callbacks), self.callbacks)
                },
                "rng": ckpt.rng_state(generator),
                "fingerprint": self._fingerprint,
            },
        )

    def _to_device(self, batch):
        return batch if self.device.type == "cpu" else batch.to(self.device)

    def _scheduler(self, optimizer):
        c = self.config
        if c.scheduler == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, factor=c.plateau_factor, patience=c.plateau_patience
            )
        if c.scheduler == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=c.epochs)
        return None

    def batch_loss(self, pred: torch.Tensor, batch) -> tuple[torch.Tensor, torch.Tensor | float]:
        """The objective minimised on one training batch, and the value recorded for it as
        ``train_loss`` (here both are ``config.loss`` on the standardised target). The recorded
        value stays a 0-d tensor on the device: the epoch reads it once, at its end, so a GPU
        never waits for the host between batches."""
        c = self.config
        if c.loss == "l1":
            loss = F.l1_loss(pred, batch.y)
        elif c.loss == "huber":
            loss = F.huber_loss(pred, batch.y, delta=c.huber_delta)
        else:
            loss = F.mse_loss(pred, batch.y)
        return loss, loss.detach()

    def batch_targets(self, batch) -> torch.Tensor:
        """The standardised targets of a training batch, as the epoch metrics compare them."""
        return batch.y

    def epoch_metrics(
        self, y_fit: np.ndarray, p_fit: np.ndarray, y_val: np.ndarray, p_val: np.ndarray
    ) -> dict[str, float]:
        """``train_mae``, ``val_mae``, ``train_r``, ``val_r`` (target unit) of an epoch, from the
        standardised values seen in training and those of :meth:`evaluate`."""
        fit = regression_metrics(self.decode(y_fit), self.decode(p_fit))
        val = regression_metrics(self.decode(y_val), self.decode(p_val))
        return {
            "train_mae": fit["mae"],
            "val_mae": val["mae"],
            "train_r": fit["r"],
            "val_r": val["r"],
        }

    def evaluate(self, graphs: list[Data]) -> tuple[float, np.ndarray, np.ndarray]:
        """Mean standardised MSE, and true/predicted values on the standardised scale."""
        self.model.eval()
        ys, preds = [], []
        with torch.no_grad():
            for batch in self._loader(graphs, shuffle=False):
                batch = self._to_device(batch)
                preds.append(self.model(batch).cpu())
                ys.append(batch.y.cpu())
        y, p = torch.cat(ys), torch.cat(preds)
        return float(F.mse_loss(p, y)), y.numpy(), p.numpy()

    def fit(self, train_graphs: list[Data], val_graphs: list[Data]) -> None:
        c = self.config
        if c.num_threads:
            torch.set_num_threads(c.num_threads)
        seed_everything(c.seed)
        self.model.to(self.device)
        if self.distributed:
            torch.manual_seed(c.seed + distributed.rank())  # each rank its own dropout masks
            net = distributed.data_parallel(self.model, self.device)
            loader = distributed.ShardLoader(train_graphs, c.batch_size, seed=c.seed)
        else:
            net, loader = self.model, self._loader(train_graphs, shuffle=True)
        optimizer = torch.optim.Adam(self.model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        scheduler = self._scheduler(optimizer)
        last = c.epochs
        if self.checkpoint is not None and self._resume(
            optimizer, scheduler, loader.generator, train_graphs, val_graphs
        ):
            last = self.epochs_done  # the checkpointed run had finished: nothing left to train
        for cb in self.callbacks:
            cb.on_train_start(self)
        try:
            for epoch in range(self.epochs_done + 1, last + 1):
                start = time.perf_counter()
                self.model.train()
                total, count = 0.0, 0
                seen_y, seen_pred = [], []
                partial = False  # stopped inside the epoch: not checkpointed, redone on resume
                for batch in loader:
                    if batch.num_nodes < 2:  # batch norm needs two values per channel
                        continue
                    batch = self._to_device(batch)
                    optimizer.zero_grad()
                    pred = net(batch)
                    loss, recorded = self.batch_loss(pred, batch)
                    if self.distributed:  # DDP averages over ranks: weigh by the shard's share
                        loss = loss * batch.loss_weight
                    loss.backward()
                    optimizer.step()
                    total = total + recorded * batch.num_graphs  # on the device: no sync
                    count += batch.num_graphs
                    seen_y.append(self.batch_targets(batch).detach())
                    seen_pred.append(pred.detach())
                    for cb in self.callbacks:
                        cb.on_batch_end(self)
                    if self.stop_reason and not self.distributed:
                        partial = True
                        break  # the epoch ends here: validated and recorded as usual
                # the epoch's one device → host copy of its bookkeeping
                total = float(total)
                seen_y = [t.cpu() for t in seen_y]
                seen_pred = [t.cpu() for t in seen_pred]
                if self.distributed:
                    total, count, seen_y, seen_pred = distributed.gather_epoch(
                        total, count, seen_y, seen_pred
                    )
                    distributed.sync_buffers(self.model)
                val_loss, y_val, p_val = self.evaluate(val_graphs)
                lr = optimizer.param_groups[0]["lr"]
                if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    scheduler.step(val_loss)
                elif scheduler is not None:
                    scheduler.step()
                # training metrics are taken on the fly, with the weights changing during the epoch
                if not seen_y:
                    raise ValueError("no training batch had two or more atoms to train on")
                record = {
                    "epoch": epoch,
                    "train_loss": total / max(count, 1),
                    "val_loss": val_loss,
                    **self.epoch_metrics(
                        torch.cat(seen_y).numpy(), torch.cat(seen_pred).numpy(), y_val, p_val
                    ),
                    "lr": lr,
                    "seconds": time.perf_counter() - start,
                }
                for cb in self.callbacks:
                    cb.on_epoch_end(self, record)
                if self.distributed:  # rank 0 alone runs the caller's callbacks
                    self.stop_reason = distributed.from_rank0(self.stop_reason)
                if self.checkpoint is not None and not partial:
                    finished = epoch == c.epochs or self.stop_reason not in (None, CANCELLED)
                    self._save(epoch, optimizer, scheduler, loader.generator, finished)
                if self.stop_reason:
                    break
        finally:
            for cb in self.callbacks:
                cb.on_train_end(self)
            self.model.to("cpu")
