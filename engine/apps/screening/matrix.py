"""Mismatch matrix: the linear-CTE mismatch (1/K) of every candidate with every electrolyte."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from engine.apps.screening.electrolyte import Reference

__all__ = ["MismatchMatrix", "mismatch_matrix"]


@dataclass
class MismatchMatrix:
    """Δα = α_L(row) − α_L(column) and its σ = √(σ_r² + σ_c²), both in 1/K; rows are
    candidates (electrodes, interconnects, seals), columns electrolytes."""

    delta: pd.DataFrame
    sigma: pd.DataFrame

    def long(self) -> pd.DataFrame:
        """One row per pair: ``candidate``, ``electrolyte``, ``mismatch_per_K``,
        ``mismatch_std_per_K``."""
        rows, cols = list(self.delta.index), list(self.delta.columns)
        return pd.DataFrame(
            {
                "candidate": np.repeat(np.array(rows, dtype=object), len(cols)),
                "electrolyte": np.tile(np.array(cols, dtype=object), len(rows)),
                "mismatch_per_K": self.delta.to_numpy(dtype=float).ravel(),
                "mismatch_std_per_K": self.sigma.to_numpy(dtype=float).ravel(),
            }
        )


def mismatch_matrix(
    candidates: Sequence[Reference], electrolytes: Sequence[Reference]
) -> MismatchMatrix:
    """The mismatch of every candidate with every electrolyte (:class:`MismatchMatrix`)."""
    rows = pd.Index([c.name for c in candidates], name="candidate")
    cols = pd.Index([e.name for e in electrolytes], name="electrolyte")
    a = np.array([c.cte_lin for c in candidates], dtype=float).reshape(-1, 1)
    sa = np.array([c.cte_lin_std for c in candidates], dtype=float).reshape(-1, 1)
    b = np.array([e.cte_lin for e in electrolytes], dtype=float).reshape(1, -1)
    sb = np.array([e.cte_lin_std for e in electrolytes], dtype=float).reshape(1, -1)
    return MismatchMatrix(
        delta=pd.DataFrame(a - b, index=rows, columns=cols),
        sigma=pd.DataFrame(np.sqrt(sa**2 + sb**2), index=rows, columns=cols),
    )
