"""Training: the loop, its callbacks, metrics, and a one-call ``train`` for whole runs."""

from engine.training.callbacks import (
    BestCheckpoint,
    Callback,
    EarlyStopping,
    History,
    ProgressBar,
    ProgressFile,
)
from engine.training.run import TrainResult, train
from engine.uq.metrics import regression_metrics

__all__ = [
    "BestCheckpoint",
    "Callback",
    "EarlyStopping",
    "History",
    "ProgressBar",
    "ProgressFile",
    "TrainResult",
    "regression_metrics",
    "train",
]
