"""Training bookkeeping as callbacks: history, best-epoch checkpoint, early stopping, progress.

A callback sees the :class:`~engine.training.loop.Trainer` and each epoch's record; it may set
``trainer.stop_reason`` to end training after the current epoch. What it must carry over an
interruption it returns from :meth:`Callback.state_dict` (saved in the trainer's checkpoint,
:mod:`engine.training.checkpoint`, and given back to :meth:`Callback.load_state_dict` on resume,
before ``on_train_start``).
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

#: The ``stop_reason`` of a run stopped through the ``cancel`` file; a checkpointed run stopped so
#: is not finished, and resumes.
CANCELLED = "cancelled by user"


class Callback:
    def on_train_start(self, trainer) -> None: ...

    def state_dict(self) -> dict:
        """What a resumed run needs of this callback (tensors, numbers, text, lists, dicts)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Take back the state of :meth:`state_dict` when a run resumes."""

    def on_epoch_end(self, trainer, record: dict) -> None: ...

    def on_batch_end(self, trainer) -> None:
        """After every training batch; setting ``trainer.stop_reason`` ends the epoch there."""

    def on_train_end(self, trainer) -> None: ...


class AdaptiveThreads(Callback):
    """Sets torch's thread count to ``threads()`` at the start and between batches (asked at
    most every ``check_s`` seconds), e.g. to share the cores with a process next to the run."""

    def __init__(self, threads: Callable[[], int], check_s: float = 0.5):
        self.threads = threads
        self.check_s = check_s
        self._next_check = 0.0

    def on_train_start(self, trainer) -> None:
        self._next_check = 0.0
        self.on_batch_end(trainer)

    def on_batch_end(self, trainer) -> None:
        import torch

        if time.monotonic() < self._next_check:
            return
        self._next_check = time.monotonic() + self.check_s
        wanted = max(1, self.threads())
        if wanted != torch.get_num_threads():
            torch.set_num_threads(wanted)


class History(Callback):
    """Collects one record per epoch: losses, MAE and R on train/val, learning rate, time."""

    def __init__(self):
        self.records: list[dict] = []

    def on_epoch_end(self, trainer, record):
        self.records.append(dict(record))

    def state_dict(self) -> dict:
        return {"records": [dict(r) for r in self.records]}

    def load_state_dict(self, state):
        self.records = [dict(r) for r in state["records"]]

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.records)


class BestCheckpoint(Callback):
    """Keeps the weights of the epoch with the lowest validation loss and restores them."""

    def __init__(self, monitor: str = "val_loss"):
        self.monitor = monitor
        self.best_value = math.inf
        self.best_epoch = 0
        self.state = None

    def on_epoch_end(self, trainer, record):
        value = record[self.monitor]
        if value < self.best_value:
            self.best_value, self.best_epoch = value, record["epoch"]
            self.state = copy.deepcopy(trainer.model.state_dict())

    def state_dict(self) -> dict:
        return {"best_value": self.best_value, "best_epoch": self.best_epoch, "state": self.state}

    def load_state_dict(self, state):
        self.best_value, self.best_epoch, self.state = (
            state["best_value"],
            state["best_epoch"],
            state["state"],
        )

    def on_train_end(self, trainer):
        if self.state is not None:
            trainer.model.load_state_dict(self.state)


class StopAfter(Callback):
    """Ends training after epoch ``epoch`` (``TrainConfig.stop_after``), keeping its weights."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, trainer, record):
        if record["epoch"] >= self.epoch:
            trainer.stop_reason = f"stopped after epoch {self.epoch} (stop_after)"


class EarlyStopping(Callback):
    """Stops when the validation loss has not improved for ``patience`` epochs."""

    def __init__(self, patience: int, monitor: str = "val_loss"):
        self.patience, self.monitor = patience, monitor
        self.best, self.wait = math.inf, 0

    def on_epoch_end(self, trainer, record):
        if record[self.monitor] < self.best:
            self.best, self.wait = record[self.monitor], 0
        else:
            self.wait += 1
            if self.wait >= self.patience:
                trainer.stop_reason = (
                    f"early stopping: no val_loss improvement for {self.patience} epochs"
                )

    def state_dict(self) -> dict:
        return {"best": self.best, "wait": self.wait}

    def load_state_dict(self, state):
        self.best, self.wait = state["best"], state["wait"]


class ProgressBar(Callback):
    """A tqdm bar over epochs (on stderr) showing the latest losses and validation MAE."""

    def on_train_start(self, trainer):
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=trainer.config.epochs, initial=trainer.epochs_done, desc="training", unit="epoch"
        )

    def on_epoch_end(self, trainer, record):
        self.bar.update(1)
        self.bar.set_postfix(
            train_loss=f"{record['train_loss']:.4f}",
            val_loss=f"{record['val_loss']:.4f}",
            val_mae=f"{record['val_mae']:.3g}",
        )

    def on_train_end(self, trainer):
        self.bar.close()


class CancelFile(Callback):
    """Stops training cleanly when a file named ``cancel`` appears in ``directory``: within the
    current batch (checked at most every 0.5 s), keeping the best completed epoch."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self._checked = 0.0

    def on_batch_end(self, trainer):
        now = time.monotonic()
        if now - self._checked >= 0.5:
            self._checked = now
            if (self.directory / "cancel").exists():
                trainer.stop_reason = CANCELLED


class ProgressFile(CancelFile):
    """Writes ``progress.json`` (atomically) after every epoch, for pages that poll a job; a
    ``cancel`` file stops training as in :class:`CancelFile`."""

    def __init__(self, directory: str | Path):
        super().__init__(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.records: list[dict] = []

    def _write(self, trainer, status: str) -> None:
        payload = {
            "status": status,
            "epoch": len(self.records),
            "epochs": trainer.config.epochs,
            "history": self.records,
            "stop_reason": trainer.stop_reason,
            "updated": time.time(),
        }
        tmp = self.directory / "progress.json.tmp"
        tmp.write_text(json.dumps(payload))
        os.replace(tmp, self.directory / "progress.json")

    def state_dict(self) -> dict:
        return {"records": [dict(r) for r in self.records]}

    def load_state_dict(self, state):
        self.records = [dict(r) for r in state["records"]]

    def on_train_start(self, trainer):
        self._write(trainer, "running")

    def on_epoch_end(self, trainer, record):
        self.records.append(dict(record))
        if (self.directory / "cancel").exists():
            trainer.stop_reason = CANCELLED
        self._write(trainer, "running")

    def on_train_end(self, trainer):
        self._write(trainer, "finishing")  # evaluation and saving follow
