"""The applicability domain: how far a crystal lies from the training crystals.

A crystal is described by the model's pooled vector (``pooled`` output, (D,); for an ensemble,
member 0's). The pooled vectors of the training crystals are kept in ``domain.npz`` together with
their ids, formulas and labels. Each dimension is standardised with the training mean and std,
and the *domain distance* of a crystal is its mean Euclidean distance to the ``k`` (5) nearest
training crystals in that space (unitless). Thresholds come from the validation crystals, which
the formula-grouped or published split keeps away from the training formulas:

* ``in-domain``: distance ≤ the 90th percentile of the validation distances (as close to the
  training data as 9 in 10 of the crystals the model was validated on);
* ``borderline``: up to the 99th percentile (farther than 9 in 10 validation crystals: the
  sparsely validated tail);
* ``out-of-domain``: beyond it (farther than 99 % of them: σ there is an extrapolation).

``domain.npz`` (``np.load(..., allow_pickle=False)``): ``vectors`` float32 (N, D) raw pooled
vectors of the training crystals, ``mean``/``std`` float32 (D,), ``ids``/``formulas`` str (N,),
``labels`` float64 (N, K) in the targets' units (NaN where missing), ``targets`` str (K,).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DOMAIN_FILE = "domain.npz"
IN_DOMAIN, BORDERLINE, OUT_OF_DOMAIN, UNKNOWN = (
    "in-domain",
    "borderline",
    "out-of-domain",
    "unknown",
)
#: The flags in order of distance; ``unknown`` when a model has no fitted domain.
DOMAIN_FLAGS = (IN_DOMAIN, BORDERLINE, OUT_OF_DOMAIN)
#: Nearest training crystals averaged in the domain distance.
DEFAULT_K = 5
BORDERLINE_QUANTILE = 0.90
OUT_OF_DOMAIN_QUANTILE = 0.99


@dataclass
class Domain:
    """The training crystals' pooled vectors, and distances to them.

    Attributes:
        vectors: raw pooled vectors (N, D), float32.
        mean, std: per-dimension standardisation (D,), float32 (std > 0).
        ids, formulas: (N,) strings.
        labels: (N, K) training labels in the targets' units (NaN where missing).
        targets: the K target names.
        k: neighbours averaged in :meth:`distance`.
    """

    vectors: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    ids: np.ndarray
    formulas: np.ndarray
    labels: np.ndarray
    targets: list[str]
    k: int = DEFAULT_K
    _index: Any = field(default=None, init=False, repr=False)

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        ids: Sequence[str],
        formulas: Sequence[str],
        labels: np.ndarray,
        targets: Sequence[str],
        *,
        k: int = DEFAULT_K,
    ) -> Domain:
        """A domain from training vectors (N, D) and labels (N, K); ``k`` is capped at N."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) == 0:
            raise ValueError(f"need training vectors of shape (N, D), got {vectors.shape}")
        std = vectors.astype(np.float64).std(0)
        std = np.where(std > 1e-8, std, 1.0)
        return cls(
            vectors=vectors,
            mean=vectors.astype(np.float64).mean(0).astype(np.float32),
            std=std.astype(np.float32),
            ids=np.asarray(ids, dtype=str),
            formulas=np.asarray(formulas, dtype=str),
            labels=np.asarray(labels, dtype=np.float64).reshape(len(vectors), -1),
            targets=list(targets),
            k=min(k, len(vectors)),
        )

    def save(self, path: str | Path) -> None:
        """Write ``domain.npz`` (compressed; plain arrays only)."""
        np.savez_compressed(
            path,
            vectors=self.vectors,
            mean=self.mean,
            std=self.std,
            ids=self.ids,
            formulas=self.formulas,
            labels=self.labels,
            targets=np.asarray(self.targets, dtype=str),
        )

    @classmethod
    def load(cls, path: str | Path, *, k: int) -> Domain:
        """Read ``domain.npz`` without unpickling; ValueError when arrays are missing or their
        shapes disagree."""
        with np.load(path, allow_pickle=False) as raw:
            missing = {"vectors", "mean", "std", "ids", "formulas", "labels", "targets"} - set(
                raw.files
            )
            if missing:
                raise ValueError(f"{path} lacks {', '.join(sorted(missing))}")
            arrays = {name: raw[name] for name in raw.files}
        n, d = arrays["vectors"].shape
        if (
            arrays["mean"].shape != (d,)
            or arrays["std"].shape != (d,)
            or len(arrays["ids"]) != n
            or len(arrays["formulas"]) != n
            or arrays["labels"].shape != (n, len(arrays["targets"]))
        ):
            raise ValueError(f"{path}: array shapes disagree")
        return cls(
            vectors=arrays["vectors"],
            mean=arrays["mean"],
            std=arrays["std"],
            ids=arrays["ids"],
            formulas=arrays["formulas"],
            labels=arrays["labels"],
            targets=[str(t) for t in arrays["targets"]],
            k=min(k, n),
        )

    def _standardise(self, vectors: np.ndarray) -> np.ndarray:
        return (np.asarray(vectors, dtype=np.float64) - self.mean) / self.std

    def neighbours(self, vectors: np.ndarray, k: int | None = None):
        """Distances (B, k) to the k nearest training crystals, ascending, and their row
        indices (B, k)."""
        if self._index is None:  # the standardised training vectors
            self._index = self._standardise(self.vectors)
        reference = self._index
        k = min(k or self.k, len(reference))
        vectors = np.asarray(vectors).reshape(-1, reference.shape[1])
        if len(vectors) == 0:
            return np.zeros((0, k)), np.zeros((0, k), dtype=np.int64)
        # brute force in numpy (no scikit-learn import): rank by squared distance in chunks,
        # then measure the k chosen exactly and sort them
        query = self._standardise(vectors)
        norms = np.einsum("ij,ij->i", reference, reference)
        index = np.concatenate(
            [
                np.argpartition(norms - 2 * chunk @ reference.T, k - 1, axis=1)[:, :k]
                for chunk in np.array_split(query, max(1, len(query) // 1024))
            ]
        )
        distance = np.linalg.norm(query[:, None, :] - reference[index], axis=2)
        order = np.argsort(distance, axis=1, kind="stable")
        return (
            np.take_along_axis(distance, order, axis=1),
            np.take_along_axis(index, order, axis=1),
        )

    def distance(self, vectors: np.ndarray) -> np.ndarray:
        """Domain distance (B,): mean distance to the :attr:`k` nearest training crystals."""
        return self.neighbours(vectors)[0].mean(axis=1)


def domain_flags(distance: np.ndarray, borderline: float, out_of_domain: float) -> np.ndarray:
    """``in-domain`` / ``borderline`` / ``out-of-domain`` per distance (B,), ``unknown`` where
    the distance is NaN; a distance equal to a threshold falls on the nearer side."""
    distance = np.asarray(distance, dtype=np.float64)
    flags = np.full(distance.shape, UNKNOWN, dtype=object)
    known = np.isfinite(distance)
    flags[known] = IN_DOMAIN
    flags[known & (distance > borderline)] = BORDERLINE
    flags[known & (distance > out_of_domain)] = OUT_OF_DOMAIN
    return flags
