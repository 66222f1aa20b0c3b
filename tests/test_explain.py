"""Symmetry labels and polymorph pairs (engine.inference.explain)."""

from __future__ import annotations

import pandas as pd
from pymatgen.core import Lattice, Structure

from engine.inference.explain import polymorph_pairs, symmetry


def test_symmetry_of_cubic_perovskite_and_rutile():
    srtio3 = Structure(
        Lattice.cubic(3.905),
        ["Sr", "Ti", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )
    assert symmetry(srtio3) == ("Pm-3m", 221, "cubic")
    rutile = Structure.from_spacegroup(
        "P4_2/mnm", Lattice.tetragonal(4.594, 2.959), ["Ti", "O"], [[0, 0, 0], [0.305, 0.305, 0]]
    )
    assert symmetry(rutile)[1:] == (136, "tetragonal")


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["a1", "a2", "a3", "b1", "c1", "c2"],
            "formula": ["TiO2", "TiO2", "TiO2", "SrTiO3", "ZrO2", "ZrO2"],
            "target": [1.0, 4.0, 2.0, 9.0, 5.0, 5.5],
            "prediction": [1.5, 3.0, 2.0, 8.0, 5.0, 7.0],
            "w_graph": [0.2, 0.4, 0.6, 0.5, 0.3, 0.3],
        }
    )


def test_polymorph_pairs_lists_every_pair_of_a_formula_sorted_by_true_difference():
    pairs = polymorph_pairs(frame())
    assert len(pairs) == 3 + 1  # three TiO2 pairs, one ZrO2 pair, none for SrTiO3
    assert set(pairs["formula"]) == {"TiO2", "ZrO2"}
    assert list(pairs["delta_target"]) == sorted(pairs["delta_target"], reverse=True)
    top = pairs.iloc[0]
    assert {top["id_a"], top["id_b"]} == {"a1", "a2"}
    assert top["delta_target"] == 3.0 and top["delta_prediction"] == 1.5
    assert {top["w_graph_a"], top["w_graph_b"]} == {0.2, 0.4}


def test_polymorph_pairs_limit_keeps_largest_predicted_differences():
    pairs = polymorph_pairs(frame(), max_pairs_per_formula=1)
    tio2 = pairs[pairs["formula"] == "TiO2"]
    assert len(tio2) == 1 and tio2["delta_prediction"].iloc[0] == 1.5


def test_polymorph_pairs_without_targets_or_repeats():
    no_target = polymorph_pairs(frame().drop(columns="target"))
    assert "delta_target" not in no_target and len(no_target) == 4
    single = polymorph_pairs(frame().drop_duplicates("formula"))
    assert single.empty and {"id_a", "id_b", "delta_prediction"} <= set(single.columns)
