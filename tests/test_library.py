"""The idealised candidate library: chemistry, symmetry, geometry, sources and the file round trip."""

from __future__ import annotations

import math
import warnings
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Composition, Element, Lattice, Structure
from pymatgen.core.periodic_table import Species
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from engine.io import read_structures
from engine.materials.examples import EXAMPLES
from engine.materials.library import (
    ESTIMATE,
    FAMILIES,
    KNOWN_LATTICES,
    PEROVSKITE_T_WINDOW,
    RUDDLESDEN_POPPER_T_WINDOW,
    build_library,
    library_batch,
    library_table,
    write_library,
)
from engine.materials.prototypes import (
    build_pyrochlore,
    build_spinel,
    fluorite_lattice,
    perovskite_lattice,
    pyrochlore_geometry,
    shannon_radius,
    spinel_geometry,
    tolerance_factor,
)

#: Formula-unit site counts (A, B, O) and space group (symbol, number) of each family.
STOICHIOMETRY = {
    "perovskite": (1, 1, 3),
    "fluorite": (1, 0, 2),
    "pyrochlore": (2, 2, 7),
    "spinel": (1, 2, 4),
    "ruddlesden-popper": (2, 1, 4),
}
SPACE_GROUP = {
    "perovskite": ("Pm-3m", 221),
    "fluorite": ("Fm-3m", 225),
    "pyrochlore": ("Fd-3m", 227),
    "spinel": ("Fd-3m", 227),
    "ruddlesden-popper": ("I4/mmm", 139),
}


@pytest.fixture(scope="module")
def library():
    return build_library()


@pytest.fixture(scope="module")
def by_id(library):
    return {e.id: e for e in library}


def test_size_families_and_order(library):
    assert 100 <= len(library) <= 300
    families = [e.family for e in library]
    assert set(families) == set(FAMILIES)
    # grouped in FAMILIES order
    assert sorted(families, key=FAMILIES.index) == families
    assert all(e.idealised for e in library)


def test_ids_unique_stable_and_deterministic(library):
    ids = [e.id for e in library]
    assert len(set(ids)) == len(ids)
    for e in library:
        assert e.id == f"{e.family}-{e.formula}"
        assert Composition(e.formula).reduced_formula == e.structure.composition.reduced_formula
    again = build_library()
    assert [e.id for e in again] == ids
    for first, second in zip(library, again):
        assert np.allclose(first.structure.lattice.matrix, second.structure.lattice.matrix)
        assert np.allclose(first.structure.frac_coords, second.structure.frac_coords)


def test_family_subset_and_unknown_family():
    spinels = build_library(["spinel"])
    assert spinels and {e.family for e in spinels} == {"spinel"}
    with pytest.raises(ValueError, match="unknown families"):
        build_library(["garnet"])


def test_sites_carry_stated_ions_and_are_charge_neutral(library):
    for e in library:
        roles = e.structure.site_properties["site"]
        for site, role in zip(e.structure, roles):
            assert site.specie == Species.from_str(e.ions[role]), (e.id, role)
        charge = sum(Species.from_str(e.ions[role]).oxi_state for role in roles)
        assert charge == 0, e.id
        assert e.structure.charge == pytest.approx(0.0), e.id


def test_stoichiometry_per_site(library):
    for e in library:
        counts = Counter(e.structure.site_properties["site"])
        n_a, n_b, n_o = STOICHIOMETRY[e.family]
        z = counts["O"] / n_o
        assert z == int(z) and z >= 1, e.id
        assert (counts["A"], counts.get("B", 0)) == (n_a * z, n_b * z), e.id


def test_space_groups(library):
    for e in library:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sga = SpacegroupAnalyzer(e.named().structure, symprec=0.1)
            found = (sga.get_space_group_symbol(), sga.get_space_group_number())
        assert found == SPACE_GROUP[e.family], e.id


def test_radii_are_shannon_values(by_id):
    # Shannon (1976), as tabulated: independent of the library's own look-up
    expected = {
        "perovskite-LaCoO3": {"A": 1.36, "B": 0.545, "O": 1.40},  # Co3+ low spin
        "perovskite-LaMnO3": {"A": 1.36, "B": 0.645, "O": 1.40},  # Mn3+ high spin
        "perovskite-SrTiO3": {"A": 1.44, "B": 0.605, "O": 1.40},
        "perovskite-YAlO3": {"A": 1.075, "B": 0.535, "O": 1.40},  # Y3+ at CN IX (no XII)
        "fluorite-CeO2": {"A": 0.97, "O": 1.38},
        "pyrochlore-Gd2Zr2O7": {"A": 1.053, "B": 0.72, "O": 1.38},
        "spinel-MgAl2O4": {"A": 0.57, "B": 0.535, "O": 1.38},
        "ruddlesden-popper-La2NiO4": {"A": 1.216, "B": 0.69, "O": 1.40},
    }
    for ident, radii in expected.items():
        assert by_id[ident].radii == pytest.approx(radii), ident
    assert by_id["perovskite-YAlO3"].coordination["A"] == "IX"
    assert "CN IX" in by_id["perovskite-YAlO3"].notes


def test_shortest_cation_oxygen_near_shannon_sum(library):
    for e in library:
        s = e.structure
        roles = s.site_properties["site"]
        for role in ("A", "B"):
            if role not in e.ions:
                continue
            site = s[roles.index(role)]
            d = min(
                n.nn_distance for n in s.get_neighbors(site, 4.0) if n.properties["site"] == "O"
            )
            target = e.radii[role] + e.radii["O"]
            assert abs(d / target - 1) <= 0.10, (e.id, role, d, target)


def test_no_atoms_closer_than_1_5_angstrom(library):
    for e in library:
        centres, _, _, distances = e.structure.get_neighbor_list(1.5)
        assert len(centres) == 0, (e.id, distances.min())


#: Cation–O bonds that each family's radius formula sets equal to the Shannon sum.
FIXED_BONDS = {
    "fluorite": ("A",),
    "pyrochlore": ("B",),
    "spinel": ("A", "B"),
    "ruddlesden-popper": ("A",),
}


def test_estimated_geometry_reproduces_radius_sums(library):
    """Where the lattice is estimated, the bonds its formula fixes have the Shannon-sum length."""
    for e in library:
        if e.lattice_source != ESTIMATE or e.family not in FIXED_BONDS:
            continue
        s, roles = e.structure, e.structure.site_properties["site"]
        for role in FIXED_BONDS[e.family]:
            site = s[roles.index(role)]
            target = e.radii[role] + e.radii["O"]
            bonds = [
                n.nn_distance for n in s.get_neighbors(site, 4.0) if n.properties["site"] == "O"
            ]
            assert min(abs(d - target) for d in bonds) < 1e-6, (e.id, role)
        if e.family == "pyrochlore":
            assert 0.3125 < e.params["x_O48f"] < 0.375


def test_estimates_close_to_experiment():
    """The radius formulas land within 3 % of well-known room-temperature lattice parameters."""
    r = shannon_radius
    srtio3 = perovskite_lattice(r("Sr2+", "XII"), r("Ti4+", "VI"), r("O2-", "VI"))
    ceo2 = fluorite_lattice(r("Ce4+", "VIII"), r("O2-", "IV"))
    mgal2o4, u = spinel_geometry(r("Mg2+", "IV"), r("Al3+", "VI"), r("O2-", "IV"))
    assert srtio3 == pytest.approx(3.905, rel=0.03)
    assert ceo2 == pytest.approx(5.411, rel=0.03)
    assert mgal2o4 == pytest.approx(8.083, rel=0.03)
    assert u == pytest.approx(0.2624, abs=0.003)  # experimental u of MgAl2O4 (origin choice 2)
    a, x = pyrochlore_geometry(r("La3+", "VIII"), r("Zr4+", "VI"), r("O2-", "IV"))
    assert a == pytest.approx(10.80, rel=0.03)
    assert x == pytest.approx(0.333, abs=0.005)


def test_known_lattice_table_is_used(library, by_id):
    reduced = {(e.family, e.structure.composition.reduced_formula): e for e in library}
    for key, (a, source) in KNOWN_LATTICES.items():
        entry = reduced[key]  # every tabulated material is in the library
        assert entry.a == a and entry.structure.lattice.a == pytest.approx(a)
        assert entry.lattice_source == source and source != ESTIMATE
    srtio3 = next(ex for ex in EXAMPLES if ex.formula == "SrTiO3")
    assert by_id["perovskite-SrTiO3"].a == 3.905
    assert by_id["perovskite-SrTiO3"].lattice_source == srtio3.source
    assert by_id["fluorite-CeO2"].a == 5.411
    laalo3 = by_id["perovskite-LaAlO3"]
    assert laalo3.lattice_source == ESTIMATE
    assert laalo3.a == pytest.approx(perovskite_lattice(1.36, 0.535, 1.40))
    n_known = sum(e.lattice_source != ESTIMATE for e in library)
    assert n_known == len(KNOWN_LATTICES)


def test_tolerance_factor_filter(library, by_id):
    t_bamno3 = tolerance_factor(1.61, 0.53, 1.40)  # Ba2+ XII, Mn4+ VI: hexagonal in reality
    t_yino3 = tolerance_factor(1.075, 0.80, 1.40)  # Y3+ IX, In3+ VI: far too small an A ion
    assert t_bamno3 > PEROVSKITE_T_WINDOW[1] and t_yino3 < PEROVSKITE_T_WINDOW[0]
    assert "perovskite-BaMnO3" not in by_id and "perovskite-YInO3" not in by_id
    assert "perovskite-BaTiO3" in by_id and "perovskite-LaInO3" in by_id
    for e in library:
        if e.family in ("perovskite", "ruddlesden-popper"):
            window = PEROVSKITE_T_WINDOW if e.family == "perovskite" else RUDDLESDEN_POPPER_T_WINDOW
            assert window[0] <= e.tolerance_factor <= window[1], e.id
            assert e.tolerance_factor == pytest.approx(
                tolerance_factor(e.radii["A"], e.radii["B"], e.radii["O"])
            )


def test_pyrochlore_radius_ratio_filter(by_id):
    assert "pyrochlore-Gd2Ti2O7" in by_id and "pyrochlore-La2Zr2O7" in by_id
    assert "pyrochlore-La2Ti2O7" not in by_id  # r_A/r_B = 1.92: layered monoclinic in reality
    assert "pyrochlore-Y2Zr2O7" not in by_id  # 1.42: defect fluorite in reality


def test_builders_match_from_spacegroup():
    a, x, u = 10.5, 0.33, 0.262
    ours = build_pyrochlore("Gd3+", "Zr4+", a, x)
    ref = Structure.from_spacegroup(
        "Fd-3m:2",
        Lattice.cubic(a),
        ["Gd3+", "Zr4+", "O2-", "O2-"],
        [[0.5, 0.5, 0.5], [0, 0, 0], [x, 0.125, 0.125], [0.375, 0.375, 0.375]],
    )
    assert len(ours) == len(ref) == 88
    assert StructureMatcher(primitive_cell=False, scale=False).fit(ours, ref)
    spinel = build_spinel("Mg2+", "Al3+", 8.08, u)
    ref = Structure.from_spacegroup(
        "Fd-3m:2",
        Lattice.cubic(8.08),
        ["Mg2+", "Al3+", "O2-"],
        [[0.125, 0.125, 0.125], [0.5, 0.5, 0.5], [u, u, u]],
    )
    assert StructureMatcher(primitive_cell=False, scale=False).fit(spinel, ref)


def test_batch_is_plain_like_a_reader(library):
    batch = library_batch(library[:5])
    assert [item.id for item in batch] == [e.id for e in library[:5]]
    for item in batch:
        assert all(isinstance(sp, Element) for sp in item.structure.species)
        assert "site" not in item.structure.site_properties


def test_table_columns(library):
    table = library_table(library)
    assert list(table["id"]) == [e.id for e in library]
    assert table["idealised"].all()
    assert (table["lattice_source"].str.len() > 0).all()
    pyro = table[table["family"] == "pyrochlore"]
    assert pyro["params"].str.startswith("x_O48f=").all()
    assert pyro["radius_ratio"].notna().all()
    assert table.loc[table["family"] == "ruddlesden-popper", "c"].notna().all()


def test_write_read_round_trip(tmp_path, library):
    subset = [e for e in library if e.lattice_source != ESTIMATE] + library[::12]
    subset += [e for e in library if e.id == "spinel-Co3O4"]  # one element on two sites
    subset = list({e.id: e for e in subset}.values())
    paths = write_library(tmp_path, subset)
    assert [p.stem for p in paths] == [e.id for e in subset]
    batch = read_structures(tmp_path)
    assert not batch.errors, batch.errors
    assert [p.endswith("library.csv") for p in batch.skipped] == [True]
    read = {item.id: item.structure for item in batch}
    assert set(read) == {e.id for e in subset}
    for e in subset:
        structure = read[e.id]
        assert structure.composition == e.named().structure.composition, e.id
        assert structure.lattice.abc == pytest.approx(e.structure.lattice.abc, abs=1e-4)
    csv = pd.read_csv(tmp_path / "library.csv")
    assert list(csv["id"]) == [e.id for e in subset]
    assert list(csv["lattice_source"]) == [e.lattice_source for e in subset]
    assert csv["idealised"].all()


def test_ids_follow_prototype_order(by_id):
    # A first, then B, whatever pymatgen's electronegativity order says (it writes Al2ZnO4)
    assert "spinel-ZnAl2O4" in by_id and "spinel-Co3O4" in by_id
    assert by_id["spinel-ZnAl2O4"].structure.composition.reduced_formula == "Al2ZnO4"
    assert math.isclose(by_id["spinel-Co3O4"].structure.charge, 0.0, abs_tol=1e-9)
