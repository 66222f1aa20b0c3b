"""Magpie composition descriptors: equal to matminer's, cached per formula, fast, invariant."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
import torch
from pymatgen.core import Composition, DummySpecies, Lattice, Structure

from engine.features.composition import (
    N_MAGPIE,
    CompositionError,
    MagpieFeaturizer,
    magpie,
    magpie_labels,
)
from engine.models.base import CompositionScaler

SPECIAL = [
    "Fe",
    "NaCl",
    "SrTiO3",
    "Li7La3Zr2O12",
    "Li0.5CoO2",
    "La0.6Sr0.4Co0.2Fe0.8O3",
    "H2O",
    "UO2",
    "Og",
    "He",
    "CsPbI3",
    "Ba2YCu3O7",
]


@pytest.fixture(scope="module")
def matminer_magpie():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from matminer.featurizers.composition import ElementProperty

        return ElementProperty.from_preset("magpie")


@pytest.fixture(scope="module")
def demo_compositions(shared_data):
    from engine.io.datasets import load_dataset

    dataset = load_dataset(shared_data / "aflow_agl" / "demo.jsonl.gz", limit=60)
    return [item.structure.composition for item in dataset.items]


def test_labels_are_matminers(matminer_magpie):
    assert magpie_labels() == list(matminer_magpie.feature_labels())
    assert len(magpie_labels()) == N_MAGPIE == 132


@pytest.mark.parametrize("formula", SPECIAL)
def test_equals_matminer_on_special_compositions(formula, matminer_magpie):
    comp = Composition(formula)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = np.array(matminer_magpie.featurize(comp), dtype=float)
    ours = MagpieFeaturizer()(comp)
    assert ours.shape == (132,)
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-9)


def test_equals_matminer_on_demo_compositions(demo_compositions, matminer_magpie):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = np.array([matminer_magpie.featurize(c) for c in demo_compositions])
    ours = MagpieFeaturizer().many(demo_compositions)
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-9)
    assert np.isfinite(ours).all()  # matminer imputes missing element data (impute_nan=True)


def test_oxidation_states_do_not_matter():
    assert np.array_equal(
        MagpieFeaturizer()(Composition({"Fe3+": 2, "O2-": 3})),
        MagpieFeaturizer()(Composition("Fe2O3")),
    )


def test_cache_returns_the_same_vector_and_is_hit_the_second_time():
    featurizer = MagpieFeaturizer()
    first = featurizer(Composition("SrTiO3"))
    assert (featurizer.hits, featurizer.misses) == (0, 1)
    again = featurizer(Composition("Sr2Ti2O6"))  # same reduced formula
    assert (featurizer.hits, featurizer.misses) == (1, 1)
    assert again is first and np.array_equal(again, first)
    assert not first.flags.writeable  # callers cannot corrupt the cache
    featurizer(Composition("BaTiO3"))
    assert (featurizer.hits, featurizer.misses, len(featurizer)) == (1, 2, 2)


def test_polymorphs_and_supercells_share_one_vector(crystals):
    nacl = crystals["NaCl"]
    conventional = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    supercell = nacl.copy()
    supercell.make_supercell([2, 2, 1])
    shuffled = Structure.from_sites(
        [supercell[i] for i in np.random.default_rng(0).permutation(len(supercell))]
    )
    featurizer = MagpieFeaturizer()
    vectors = featurizer.many([s.composition for s in (nacl, conventional, supercell, shuffled)])
    assert (vectors == vectors[0]).all()
    assert featurizer.misses == 1 and featurizer.hits == 3


def test_a_thousand_compositions_take_well_under_two_seconds():
    magpie("NaCl")  # matminer's import and table are built once per process, not timed
    rng = np.random.default_rng(0)
    symbols = [
        "Li",
        "Na",
        "K",
        "Mg",
        "Ca",
        "Sr",
        "Ba",
        "Ti",
        "Zr",
        "V",
        "Cr",
        "Mn",
        "Fe",
        "Co",
        "Ni",
        "Cu",
        "Zn",
        "Al",
        "Ga",
        "Si",
        "Ge",
        "Sn",
        "La",
        "Ce",
        "Y",
        "O",
        "S",
        "F",
    ]
    comps = []
    while len({c.reduced_formula for c in comps}) < 1000:
        k = int(rng.integers(1, 5))
        els = rng.choice(symbols, size=k, replace=False)
        comps.append(Composition({str(e): int(rng.integers(1, 7)) for e in els}))
    featurizer = MagpieFeaturizer()
    start = time.perf_counter()
    out = featurizer.many(comps)
    seconds = time.perf_counter() - start
    assert out.shape == (len(comps), 132)
    assert seconds < 2.0, f"{len(comps)} compositions took {seconds:.2f} s"


def test_a_dummy_species_is_a_clear_error():
    with pytest.raises(CompositionError, match="not elements"):
        MagpieFeaturizer()(Composition({DummySpecies("X"): 1, "O": 1}))


def test_scaler_uses_training_statistics_and_fills_unknowns_with_the_mean():
    x = torch.tensor([[1.0, 5.0, 2.0], [3.0, 5.0, float("nan")], [5.0, 5.0, 4.0]])
    scaler = CompositionScaler(3)
    scaler.fit(x)
    assert scaler.mean.tolist() == pytest.approx([3.0, 5.0, 3.0])
    assert scaler.std.tolist() == pytest.approx([np.sqrt(8 / 3), 1.0, 1.0])  # constant → std 1
    z = scaler(torch.tensor([[3.0, 5.0, float("nan")], [5.0, 7.0, 4.0]]))
    assert z[0].tolist() == pytest.approx([0.0, 0.0, 0.0])  # NaN → training mean → 0
    assert z[1].tolist() == pytest.approx([2 / np.sqrt(8 / 3), 2.0, 1.0])
