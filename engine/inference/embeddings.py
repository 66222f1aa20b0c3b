"""Two-dimensional maps of pooled crystal vectors: t-SNE, UMAP or PCA, seeded.

The pooled crystal vector v_c (the mean of the atom vectors after the last convolution; Xie &
Grossman, PRL 120, 145301 (2018)) is what the model "sees" of a material. Reducing the vectors of
a test set to 2-D and colouring the points by predicted property shows whether similar materials
sit together; for thermal expansion the reference picture runs smoothly from low to high CTE.

``umap-learn`` is imported only when ``method="umap"`` is asked for: its import alone takes
tens of seconds on a small machine (numba compilation).
"""

from __future__ import annotations

import os
import warnings
from typing import Literal

import numpy as np

__all__ = ["METHODS", "reduce"]

Method = Literal["tsne", "umap", "pca"]
#: Methods accepted by :func:`reduce`.
METHODS: tuple[str, ...] = ("tsne", "umap", "pca")

#: Below this many points t-SNE and UMAP are not meaningful; PCA is used instead.
MIN_POINTS_NONLINEAR = 5


def _pca(x: np.ndarray, *, seed: int) -> np.ndarray:
    """First two principal components (n, 2) of ``x`` (n, d) by scikit-learn's PCA, seeded.

    Signs follow scikit-learn's deterministic sign convention; a column stays zero when there
    are fewer than two samples or features.
    """
    from sklearn.decomposition import PCA

    n, d = x.shape
    out = np.zeros((n, 2))
    k = min(2, n, d)
    if n < 2 or k == 0:
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zero variance: explained-variance ratio divides by 0
        out[:, :k] = PCA(n_components=k, random_state=seed).fit_transform(x)
    return out


def _tsne(x: np.ndarray, *, seed: int, perplexity: float) -> np.ndarray:
    """t-SNE by openTSNE (Poličar et al., J. Stat. Softw. 109 (2024)): FFT-accelerated
    gradients; 1.5-2× faster than scikit-learn's Barnes-Hut on 841 points on a quiet machine
    here, about 5× on a loaded one (benchmarks/dashboard_levers.py).
    Distinct rows are embedded once and duplicates placed with them, as UMAP's ``unique``."""
    from openTSNE import TSNE

    distinct, inverse = np.unique(x, axis=0, return_inverse=True)
    n = len(distinct)
    # keep the perplexity well inside the number of points for tiny sets
    perp = float(min(perplexity, max(1.0, (n - 1) / 3)))
    tsne = TSNE(
        n_components=2,
        perplexity=perp,
        initialization="pca",
        random_state=seed,
        n_jobs=1,
        neighbors="exact" if n < 1000 else "auto",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(tsne.fit(distinct), dtype=np.float64)[inverse.ravel()]


def _umap(x: np.ndarray, *, seed: int, n_neighbors: int, min_dist: float) -> np.ndarray:
    if "NUMBA_CACHE_DIR" not in os.environ:
        from engine.core.config import home_dir

        cache = home_dir() / "cache" / "numba"
        try:
            cache.mkdir(parents=True, exist_ok=True)
            os.environ["NUMBA_CACHE_DIR"] = str(cache)
        except OSError:
            pass
    try:
        import umap  # slow: imported only when asked for
    except ImportError:
        raise ImportError(
            "UMAP maps need umap-learn: pip install 'crystal-screen[dashboard]'"
        ) from None

    n = len(np.unique(x, axis=0))  # UMAP embeds distinct rows (unique=True)
    k = int(max(2, min(n_neighbors, n - 1)))
    # spectral initialisation needs a reasonably connected graph; tiny sets start at random
    init = "spectral" if n > k + 2 and n >= 20 else "random"
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=k,
        min_dist=float(min_dist),
        random_state=seed,
        init=init,
        n_jobs=1,
        unique=True,  # duplicated rows get the same coordinates
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(reducer.fit_transform(x), dtype=np.float64)


def reduce(
    vectors,
    method: Method = "tsne",
    *,
    seed: int = 0,
    perplexity: float = 30.0,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
) -> np.ndarray:
    """Reduce vectors to two dimensions.

    Args:
        vectors: array-like of shape (n, d), e.g. pooled crystal vectors from
            :func:`engine.inference.prediction.embed`.
        method: ``"tsne"`` (openTSNE, PCA initialisation), ``"umap"`` (umap-learn, imported
            lazily) or ``"pca"`` (scikit-learn).
        seed: random seed; the same inputs and seed give the same map.
        perplexity: t-SNE's effective number of neighbours; lowered automatically to
            ``(n - 1) / 3`` for small n (it must stay below n).
        n_neighbors: UMAP's neighbourhood size; lowered to ``n - 1`` for small n.
        min_dist: UMAP's minimum distance between embedded points.

    Returns:
        Coordinates of shape (n, 2), float64. Fewer than 5 distinct points are placed by PCA
        whatever the method (t-SNE and UMAP need a neighbourhood); 0 points give shape (0, 2);
        duplicated rows get the same coordinates; when all rows are identical they all map to
        the origin.

    Raises:
        ValueError: for an unknown method, a non-2-D array, or non-finite values.
    """
    if method not in METHODS:
        raise ValueError(f"Invalid method={method!r}, valid options are {', '.join(METHODS)}")
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim == 1 and x.size == 0:
        x = x.reshape(0, 0)
    if x.ndim != 2:
        raise ValueError(f"vectors must be a 2-D array (n, d), got shape {x.shape}")
    n = x.shape[0]
    if n == 0:
        return np.zeros((0, 2))
    if not np.all(np.isfinite(x)):
        bad = int(np.sum(~np.all(np.isfinite(x), axis=1)))
        raise ValueError(f"vectors contain non-finite values (in {bad} of {n} rows)")
    if perplexity <= 0:
        raise ValueError(f"perplexity must be positive, got {perplexity}")
    if n_neighbors < 2:
        raise ValueError(f"n_neighbors must be at least 2, got {n_neighbors}")
    if method == "pca" or len(np.unique(x, axis=0)) < MIN_POINTS_NONLINEAR:
        return _pca(x, seed=seed)
    if np.ptp(x, axis=0).max() <= 1e-12 * max(1.0, float(np.abs(x).max())):
        return np.zeros((n, 2))  # all rows identical: nothing to map (t-SNE would crash)
    if method == "tsne":
        return _tsne(x, seed=seed, perplexity=perplexity)
    return _umap(x, seed=seed, n_neighbors=n_neighbors, min_dist=min_dist)
