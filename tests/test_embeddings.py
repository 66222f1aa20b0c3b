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


@pytest.mark.parametrize("method", ["tsne", "pca"])
def test_identical_rows(method):
    y = reduce(np.ones((12, 4)), method)
    assert y.shape == (12, 2)
    np.testing.assert_allclose(y, 0.0, atol=1e-12)  # all rows identical: all at the origin


#: Rows copied onto others in :func:`_with_duplicates`: (original, copy).
DUPLICATES = ((3, 5), (3, 20), (11, 30))


def _with_duplicates() -> np.ndarray:
    x, _ = _blobs(40)
    for original, copy in DUPLICATES:
        x[copy] = x[original]
    return x


@pytest.mark.parametrize("method", ["tsne", "pca", pytest.param("umap", marks=pytest.mark.slow)])
def test_duplicated_rows_map_together(method):
    if method == "umap":
        pytest.importorskip("umap")
    x = _with_duplicates()
    y = reduce(x, method, seed=2)
    assert y.shape == (40, 2) and np.all(np.isfinite(y))
    spread = float(np.ptp(y, axis=0).max())
    assert spread > 0
    for original, copy in DUPLICATES:
        assert np.linalg.norm(y[original] - y[copy]) <= 1e-6 * spread, (original, copy)
    np.testing.assert_array_equal(y, reduce(x, method, seed=2))  # same seed, same map


def test_pca_few_features_and_points():
    assert reduce(np.arange(6.0).reshape(6, 1), "pca").shape == (6, 2)
    y = reduce(np.array([[0.0, 0.0], [1.0, 1.0]]), "pca")
    np.testing.assert_allclose(y[:, 1], 0.0, atol=1e-12)  # two points: one direction
    np.testing.assert_allclose(abs(y[0, 0] - y[1, 0]), np.sqrt(2.0))  # distance kept


@pytest.mark.parametrize("method", ["tsne", "pca"])
def test_few_distinct_rows(method):
    x = np.repeat(np.random.default_rng(0).normal(size=(3, 8)), 4, axis=0)  # 12 rows, 3 distinct
    y = reduce(x, method)
    assert y.shape == (12, 2) and np.all(np.isfinite(y))
    np.testing.assert_allclose(y[0], y[3], atol=1e-12)


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
