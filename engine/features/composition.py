"""Composition descriptors: Magpie element-property statistics, cached per formula.

Magpie: Ward, Agrawal, Choudhary & Wolverton, npj Comput. Mater. 2, 16028 (2016).

The descriptor is matminer's ``ElementProperty.from_preset("magpie")``: 22 element properties
(atomic number, Mendeleev number, weight, melting point, column, row, covalent radius,
electronegativity, valence-electron counts, ground-state volume, band gap, moment, space group)
times six statistics over the elements of a composition, weighted by amount (minimum, maximum,
range, mean, mean absolute deviation, mode) = 132 features, in matminer's order and with
matminer's labels (:data:`MAGPIE_LABELS`).

matminer computes one composition at a time in pure Python (about 1.3–1.8 ms each). Here the
element table and the list of properties and statistics are taken from matminer's featuriser
object, and the six statistics are computed with NumPy over that table (a few tens of µs per
composition); ``tests/test_composition.py`` checks that the numbers equal matminer's
``ElementProperty.featurize`` exactly. Vectors are cached by reduced formula (the statistics
depend only on the element fractions), so every polymorph of a formula is computed once.

Missing values:
    matminer's Magpie data source (``impute_nan=True``, the preset's default) already replaces an
    element's missing property by that property's mean over all elements, so every element with
    Z = 1..118 has a full row and the descriptor is finite. Models still treat a non-finite entry
    as "unknown" and fill it with the training mean of that feature (0 after standardisation),
    see :class:`engine.models.base.CompositionScaler`.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterable
from functools import lru_cache

import numpy as np

#: Number of Magpie features.
N_MAGPIE = 132
_STATS = ("minimum", "maximum", "range", "mean", "avg_dev", "mode")
_MAX_Z = 118


class CompositionError(ValueError):
    """A composition that has no Magpie descriptor (e.g. a dummy species); says why."""


@lru_cache(maxsize=1)
def _magpie_featurizer():
    """matminer's Magpie featuriser (built once per process: ~0.3 s plus the matminer import)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from matminer.featurizers.composition import ElementProperty

        featurizer = ElementProperty.from_preset("magpie")
    if tuple(featurizer.stats) != _STATS:  # pragma: no cover - a matminer change
        raise RuntimeError(f"unexpected Magpie statistics {featurizer.stats}; expected {_STATS}")
    return featurizer


@lru_cache(maxsize=1)
def _element_table() -> np.ndarray:
    """Magpie property table, float64 (119, 22): row Z holds element Z's properties (row 0 NaN)."""
    from pymatgen.core import Element

    featurizer = _magpie_featurizer()
    props = featurizer.data_source.all_elemental_props
    table = np.full((_MAX_Z + 1, len(featurizer.features)), np.nan)
    for z in range(1, _MAX_Z + 1):
        symbol = Element.from_Z(z).symbol
        for j, name in enumerate(featurizer.features):
            table[z, j] = props[name].get(symbol, np.nan)
    table.setflags(write=False)
    return table


def magpie_labels() -> list[str]:
    """matminer's 132 feature labels, e.g. ``MagpieData mean Electronegativity``."""
    return list(_magpie_featurizer().feature_labels())


def _compute(composition) -> np.ndarray:
    """Magpie vector (132,) of one composition, the statistics of matminer's ``PropertyStats``."""
    from pymatgen.core import Element

    elements = composition.element_composition
    if len(elements) == 0:
        raise CompositionError("an empty composition has no Magpie descriptor")
    bad = [str(el) for el in elements if not isinstance(el, Element)]
    if bad:
        raise CompositionError(
            f"composition {composition.formula!r} holds {bad}, which are not elements: no "
            "Magpie descriptor"
        )
    z = np.array([el.Z for el in elements], dtype=np.int64)
    if (z < 1).any() or (z > _MAX_Z).any():
        raise CompositionError(f"atomic numbers {sorted(set(z.tolist()))} outside 1..{_MAX_Z}")
    amounts = np.array(list(elements.values()), dtype=np.float64)
    x = _element_table()[z]  # (k, 22)
    weights = amounts / amounts.sum()
    lo, hi = x.min(axis=0), x.max(axis=0)
    mean = weights @ x
    avg_dev = weights @ np.abs(x - mean)
    # matminer: the entries with the largest amount (np.isclose), the smallest of their values
    top = np.isclose(amounts, amounts.max())
    mode = x[top].min(axis=0)
    stats = np.stack([lo, hi, hi - lo, mean, avg_dev, mode], axis=1)  # (22, 6), feature-major
    return stats.reshape(-1)


class MagpieFeaturizer:
    """Magpie vectors with a per-formula cache.

    Thread-safe; the cache grows with the number of distinct reduced formulas seen (132 floats,
    ~1 kB each). ``hits``/``misses`` count cache use.

    Example:
        >>> vec = magpie_featurizer()(Structure.composition)   # (132,) float64, read-only
    """

    def __init__(self) -> None:
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._cache)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
            self.hits = self.misses = 0

    def __call__(self, composition) -> np.ndarray:
        """Magpie vector of a pymatgen ``Composition`` (or formula string), shape (132,).

        The returned array is shared with the cache and read-only.

        Raises:
            CompositionError: the composition holds a species without element data.
        """
        if isinstance(composition, str):
            from pymatgen.core import Composition

            composition = Composition(composition)
        key = composition.reduced_formula
        vec = self._cache.get(key)
        if vec is not None:
            self.hits += 1
            return vec
        vec = _compute(composition)
        vec.setflags(write=False)
        with self._lock:
            self.misses += 1
            self._cache[key] = vec
        return vec

    def many(self, compositions: Iterable) -> np.ndarray:
        """Magpie vectors of many compositions, float64 (n, 132)."""
        rows = [self(c) for c in compositions]
        return np.stack(rows) if rows else np.zeros((0, N_MAGPIE))


_DEFAULT = MagpieFeaturizer()


def magpie_featurizer() -> MagpieFeaturizer:
    """The process-wide cached featuriser."""
    return _DEFAULT


def magpie(composition) -> np.ndarray:
    """Magpie vector (132,) of a composition or formula, from the process-wide cache."""
    return _DEFAULT(composition)


def magpie_many(compositions: Iterable) -> np.ndarray:
    """Magpie vectors (n, 132) of many compositions, from the process-wide cache."""
    return _DEFAULT.many(compositions)
