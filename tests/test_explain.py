"""Symmetry labels and polymorph pairs (engine.inference.explain)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
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


def loop_polymorph_pairs(frame: pd.DataFrame, *, max_pairs_per_formula: int = 10) -> pd.DataFrame:
    """The former implementation (a loop over formulas and ``itertools.combinations`` of rows),
    kept as the reference the vectorised :func:`polymorph_pairs` must reproduce."""
    carried = [
        c
        for c in ("crystal_system", "weight_structure", "w_graph", "target", "prediction")
        if c in frame
    ]
    columns = ["formula", "id_a", "id_b"] + [f"{c}_{s}" for c in carried for s in "ab"]
    rows = []
    for formula, group in frame.groupby("formula", sort=True):
        group = group.drop_duplicates("id")
        pairs = []
        for (_, a), (_, b) in itertools.combinations(group.iterrows(), 2):
            row = {"formula": formula, "id_a": a["id"], "id_b": b["id"]}
            row.update({f"{c}_a": a[c] for c in carried})
            row.update({f"{c}_b": b[c] for c in carried})
            pairs.append(row)
        pairs.sort(key=lambda r: -abs(r["prediction_a"] - r["prediction_b"]))
        rows.extend(pairs[:max_pairs_per_formula])
    pairs = pd.DataFrame(rows, columns=columns)
    pairs["delta_prediction"] = (pairs["prediction_a"] - pairs["prediction_b"]).abs()
    sort_by = "delta_prediction"
    if "target" in carried:
        pairs["delta_target"] = (pairs["target_a"] - pairs["target_b"]).abs()
        sort_by = "delta_target"
    return pairs.sort_values(sort_by, ascending=False, ignore_index=True)


def crafted() -> pd.DataFrame:
    """Formulas out of alphabetical order, up to six polymorphs, repeated ids, rows without
    formula, and whole-number values so that many differences tie, within and across formulas."""
    rng = np.random.default_rng(7)
    formulas = ["ZrO2"] * 6 + ["TiO2"] * 5 + ["Ba"] * 2 + ["SrTiO3"] + ["CeO2"] * 4 + [None] * 2
    n = len(formulas)
    ids = [f"m{k}" for k in range(n)]
    ids[3] = ids[1]  # the same ZrO2 entry twice: counted once
    ids[12] = ids[0]  # an id under two formulas: kept under both
    return pd.DataFrame(
        {
            "id": ids,
            "formula": formulas,
            "crystal_system": rng.choice(["cubic", "tetragonal", "monoclinic"], n),
            "w_graph": rng.integers(0, 5, n) / 4,
            "target": rng.integers(0, 4, n).astype(float),
            "prediction": rng.integers(0, 3, n).astype(float),
        }
    )


@pytest.mark.parametrize("limit", [1, 2, 10])
@pytest.mark.parametrize("drop", [[], ["target"], ["target", "crystal_system", "w_graph"]])
def test_polymorph_pairs_equal_the_loop_over_formulas(limit, drop):
    frame = crafted().drop(columns=drop)
    expected = loop_polymorph_pairs(frame, max_pairs_per_formula=limit)
    pd.testing.assert_frame_equal(polymorph_pairs(frame, max_pairs_per_formula=limit), expected)


def test_polymorph_pairs_equal_the_loop_on_a_larger_frame():
    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame(
        {
            "id": rng.integers(0, 300, n).astype(str),
            "formula": rng.choice([f"F{k}" for k in range(40)], n),
            "target": rng.integers(0, 5, n).astype(float),
            "prediction": rng.integers(0, 5, n).astype(float),
        }
    )
    pd.testing.assert_frame_equal(polymorph_pairs(frame), loop_polymorph_pairs(frame))
