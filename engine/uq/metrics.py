"""Regression metrics in the target's own unit."""

from __future__ import annotations

import numpy as np


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    """MAE, RMSE, Pearson R and R² of predictions; ``n`` is the number of pairs.

    R and R² are NaN when fewer than two points or a constant series make them undefined.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"shape mismatch: y_true {y_true.shape} vs y_pred {y_pred.shape}")
    n = len(y_true)
    if n == 0:
        return {
            "n": 0,
            "mae": float("nan"),
            "rmse": float("nan"),
            "r": float("nan"),
            "r2": float("nan"),
        }
    err = y_pred - y_true
    ss_tot = float(np.sum((y_true - y_true.mean()) ** 2))
    defined = n > 1 and ss_tot > 0 and float(np.std(y_pred)) > 0
    return {
        "n": n,
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "r": float(np.corrcoef(y_true, y_pred)[0, 1]) if defined else float("nan"),
        "r2": float(1 - np.sum(err**2) / ss_tot) if ss_tot > 0 else float("nan"),
    }
