"""Descriptions of structures for tables: space group, crystal system, volume, density, elements.

Uses the pymatgen ``Structure`` objects that ``engine`` returns; symmetry comes from
:func:`engine.inference.explain.symmetry`.
"""

from __future__ import annotations

import warnings
from collections import Counter

import pandas as pd

from engine import symmetry


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
