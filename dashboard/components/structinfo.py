"""Descriptions of structures for tables: space group, crystal system, volume, density, elements.

Uses the pymatgen ``Structure`` objects that ``engine`` returns (symmetry via spglib through
pymatgen's ``SpacegroupAnalyzer`` with a tolerance of 0.1 Å).
"""

from __future__ import annotations

import warnings
from collections import Counter

import pandas as pd

SYMPREC = 0.1


def symmetry(structure) -> tuple[str, int | None, str]:
    """Space-group symbol, number and crystal system ("?" when spglib gives up)."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sga = SpacegroupAnalyzer(structure, symprec=SYMPREC)
            return (
                sga.get_space_group_symbol(),
                sga.get_space_group_number(),
                (sga.get_crystal_system()),
            )
    except Exception:  # noqa: BLE001 - spglib fails on some odd cells; the table says "?"
        return "?", None, "?"


def describe(item) -> dict:
    s = item.structure
    symbol, number, system = symmetry(s)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        formula = s.composition.reduced_formula
        density = float(s.density)
    return {
        "id": item.id,
        "formula": formula,
        "atoms": len(s),
        "space group": symbol,
        "sg number": number,
        "crystal system": system,
        "volume (Å³)": round(float(s.volume), 3),
        "density (g/cm³)": round(density, 3),
        "elements": " ".join(sorted({el.symbol for el in s.composition})),
    }


def describe_many(items) -> pd.DataFrame:
    rows = [describe(item) for item in items]
    columns = [
        "id",
        "formula",
        "atoms",
        "space group",
        "sg number",
        "crystal system",
        "volume (Å³)",
        "density (g/cm³)",
        "elements",
    ]
    return pd.DataFrame(rows, columns=columns)


def element_counts(elements: pd.Series) -> pd.DataFrame:
    """How many structures contain each element (from the space-separated ``elements`` column)."""
    counts = Counter(el for text in elements.dropna() for el in str(text).split())
    frame = pd.DataFrame(
        sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])), columns=["element", "structures"]
    )
    return frame
