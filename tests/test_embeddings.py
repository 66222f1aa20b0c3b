"""2-D reduction of pooled vectors: shapes, determinism, tiny inputs, errors."""

from __future__ import annotations

import numpy as np
import pytest

from engine.inference.embeddings import reduce


def _blobs(n: int = 60, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    centres = rng.normal(scale=8.0, size=(3, d))
    return centres[labels] + rng.normal(size=(n, d)), labels


@pytest.mark.parametrize("method", ["tsne", "pca"])
def test_shape_and_determinism(method):
    x, _ = _blobs()
    a = reduce(x, method, seed=1)
    b = reduce(x, method, seed=1)
    assert a.shape == (60, 2)
    np.testing.assert_allclose(a, b)
    assert np.all(np.isfinite(a))


def test_tsne_keeps_clusters_apart():
    x, labels = _blobs()
    y = reduce(x, "tsne", seed=0, perplexity=10)
    centres = np.array([y[labels == k].mean(axis=0) for k in range(3)])
    spread = max(np.linalg.norm(y[labels == k] - centres[k], axis=1).mean() for k in range(3))
    gaps = [np.linalg.norm(centres[i] - centres[j]) for i in range(3) for j in range(i + 1, 3)]
    assert min(gaps) > 2 * spread


@pytest.mark.parametrize("n", [0, 1, 2, 4, 6, 9])
@pytest.mark.parametrize("method", ["tsne", "pca"])
def test_tiny_inputs(n, method):
    x = np.random.default_rng(n).normal(size=(n, 8))
    y = reduce(x, method, perplexity=30)
    assert y.shape == (n, 2)
    assert np.all(np.isfinite(y))


def test_identical_rows():
    y = reduce(np.ones((12, 4)), "tsne")
    assert y.shape == (12, 2) and np.all(np.isfinite(y))


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="method"):
        reduce(np.zeros((5, 2)), "mds")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2-D"):
        reduce(np.zeros(5), "pca")
    bad = np.zeros((6, 3))
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        reduce(bad, "tsne")


@pytest.mark.slow
def test_umap_deterministic_and_small_n():
    pytest.importorskip("umap")
    x, _ = _blobs(40)
    a = reduce(x, "umap", seed=3, n_neighbors=10)
    b = reduce(x, "umap", seed=3, n_neighbors=10)
    assert a.shape == (40, 2)
    np.testing.assert_allclose(a, b)
    assert reduce(x[:7], "umap", n_neighbors=15).shape == (7, 2)
