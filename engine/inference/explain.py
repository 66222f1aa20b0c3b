"""Structure-aware explanations of predictions: symmetry labels and polymorph pairs.

A composition-only model must give every polymorph of a formula the same prediction; a model that
tells polymorphs apart can only have done so from the structure. :func:`polymorph_pairs` lists
those pairs from any prediction table, so the Fusion page can show when structure matters.
"""

from __future__ import annotations

import warnings

import pandas as pd

#: spglib tolerance for symmetry labels, in Å.
SYMPREC = 0.1


def symmetry(structure) -> tuple[str, int | None, str]:
    """Space-group symbol, number and crystal system of a pymatgen ``Structure`` (spglib through
    ``SpacegroupAnalyzer``, ``symprec`` :data:`SYMPREC` Å); ``("?", None, "?")`` when spglib gives
    up on an odd cell."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sga = SpacegroupAnalyzer(structure, symprec=SYMPREC)
            return (
                sga.get_space_group_symbol(),
                sga.get_space_group_number(),
                sga.get_crystal_system(),
            )
    except Exception:  # noqa: BLE001 - spglib fails on some odd cells; callers show "?"
        return "?", None, "?"


def polymorph_pairs(frame: pd.DataFrame, *, max_pairs_per_formula: int = 10) -> pd.DataFrame:
    """Every pair of rows with the same ``formula`` and different ``id``.

    Args:
        frame: a prediction table with ``id``, ``formula`` and ``prediction``; ``target``,
            ``weight_structure`` (or ``w_graph``) and ``crystal_system`` are carried along when
            present.
        max_pairs_per_formula: a formula with many polymorphs contributes at most this many
            pairs (those with the largest prediction difference).

    Returns:
        One row per pair: ``formula``, ``id_a``, ``id_b``, the carried columns with ``_a``/``_b``
        suffixes, ``delta_prediction`` = |prediction_a − prediction_b| and, with ``target``,
        ``delta_target`` (same unit as the prediction), sorted by ``delta_target`` (else
        ``delta_prediction``), largest first. Empty (with those columns) when no formula has two
        structures.
    """
    carried = [
        c
        for c in ("crystal_system", "weight_structure", "w_graph", "target", "prediction")
        if c in frame
    ]
    columns = ["formula", "id_a", "id_b"] + [f"{c}_{s}" for c in carried for s in "ab"]
    rows = frame[["formula", "id", *carried]].dropna(subset=["formula"])
    rows = rows.drop_duplicates(["formula", "id"])
    rows = rows.assign(row=range(len(rows)))
    pairs = rows.merge(rows, on="formula", suffixes=("_a", "_b")).query("row_a < row_b")
    pairs = pairs.assign(delta_prediction=(pairs["prediction_a"] - pairs["prediction_b"]).abs())
    # each formula keeps its largest predicted differences (ties: the earlier rows first)
    pairs = pairs.sort_values(
        ["formula", "delta_prediction", "row_a", "row_b"], ascending=[True, False, True, True]
    )
    pairs = pairs.groupby("formula", sort=False).head(max_pairs_per_formula)
    pairs = pairs[columns + ["delta_prediction"]].reset_index(drop=True)
    sort_by = "delta_prediction"
    if "target" in carried:
        pairs["delta_target"] = (pairs["target_a"] - pairs["target_b"]).abs()
        sort_by = "delta_target"
    return pairs.sort_values(sort_by, ascending=False, ignore_index=True)
