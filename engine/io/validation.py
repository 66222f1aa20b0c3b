"""Structure validation: refuse what the models cannot use instead of predicting on it.

Disordered sites (partial occupancies, vacancies) are accepted as long as each site's occupancies
sum to at most 1; a sum above 1 (two atoms at one position) is refused naming the site.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import numpy as np
from pymatgen.core import Element, Structure
from pymatgen.core.periodic_table import DummySpecies

from engine.io.entries import StructureReadError

__all__ = [
    "OCCUPANCY_TOLERANCE",
    "normalise",
    "clean_message",
    "element_symbols",
    "site_name",
    "validate_structure",
]

#: Largest accepted sum of occupancies on one site (1 plus rounding in published CIFs).
OCCUPANCY_TOLERANCE = 1.0 + 1e-3
_REASON_MAX = 240


@lru_cache(maxsize=1)
def element_symbols() -> frozenset[str]:
    """Symbols of all real elements."""
    return frozenset(el.symbol for el in Element)


def clean_message(exc: BaseException) -> str:
    """A one-line, shortened message for an exception (its type added when it helps)."""
    msg = str(exc)
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        msg = f"missing key {exc.args[0]!r}"
    msg = re.sub(r"\s+", " ", msg).strip()
    if not msg:
        msg = type(exc).__name__
    elif type(exc).__name__ not in ("ValueError", "StructureReadError") and len(msg) < 60:
        msg = f"{msg} ({type(exc).__name__})"
    if len(msg) > _REASON_MAX:
        msg = msg[: _REASON_MAX - 1].rstrip() + "…"
    return msg


def _fmt_species(site: Any) -> str:
    parts = [f"{occ:g} {sp}" for sp, occ in site.species.items()]
    return " + ".join(parts) if parts else "nothing"


def site_name(structure: Structure, i: int, *, with_species: bool = True) -> str:
    """E.g. ``"Fe (site 3, 'Fe1')"``: species, 0-based site index, CIF label when it has one."""
    label = getattr(structure[i], "label", None)
    species = structure[i].species_string
    has_label = bool(label) and label != species
    if not with_species:
        return f"site {i} (label '{label}')" if has_label else f"site {i}"
    return f"{species} (site {i}, '{label}')" if has_label else f"{species} (site {i})"


def validate_structure(
    structure: Structure, *, max_atoms: int = 500, min_distance: float = 0.5
) -> None:
    """Check that a structure can be used by the models.

    Args:
        structure: the structure to check; disordered sites are allowed.
        max_atoms: largest allowed number of sites in the cell.
        min_distance: smallest allowed distance between two atoms, periodic images included, in Å
            (0 or less turns the check off).

    Raises:
        StructureReadError: with a specific reason (no atoms, too many atoms, degenerate or
            left-handed-by-negative-length cell, non-finite coordinates, unknown element, site
            occupancies summing to more than 1 or to nothing, atoms too close).
    """
    n = len(structure)
    if n == 0:
        raise StructureReadError("the structure has no atoms")
    if n > max_atoms:
        raise StructureReadError(
            f"{n} sites is more than the limit of {max_atoms} atoms per cell (--max-atoms)"
        )
    matrix = np.asarray(structure.lattice.matrix, dtype=float)
    if not np.all(np.isfinite(matrix)):
        raise StructureReadError("the lattice contains non-finite numbers")
    lengths = np.linalg.norm(matrix, axis=1)
    det = float(np.linalg.det(matrix))
    if not (np.all(lengths > 0) and abs(det) > 1e-6 * float(np.prod(lengths))):
        raise StructureReadError(
            f"cell volume {abs(det):.3g} Å³ is not positive: the lattice vectors are degenerate"
        )
    if not np.all(np.isfinite(structure.frac_coords)):
        raise StructureReadError("some atomic coordinates are not finite numbers")
    unknown: list[str] = []
    for i, site in enumerate(structure):
        total = float(sum(site.species.values()))
        if total > OCCUPANCY_TOLERANCE:
            raise StructureReadError(
                f"the occupancies of {site_name(structure, i, with_species=False)} "
                f"({_fmt_species(site)}) sum to {total:g}, more than 1: two atoms at one position?"
            )
        if total <= 0:
            raise StructureReadError(
                f"{site_name(structure, i, with_species=False)} holds no atom (occupancy 0)"
            )
        for sp in site.species:
            if isinstance(sp, DummySpecies) or getattr(sp, "Z", 0) < 1:
                name = getattr(sp, "symbol", str(sp))
                if name not in unknown:
                    unknown.append(name)
    if unknown:
        names = ", ".join(f"'{u}'" for u in unknown)
        raise StructureReadError(
            f"unknown element {names}" if len(unknown) == 1 else f"unknown elements {names}"
        )
    if min_distance > 0:
        _check_distances(structure, min_distance)


def _check_distances(structure: Structure, min_distance: float) -> None:
    centers, points, images, dists = structure.get_neighbor_list(r=min_distance)
    if len(dists) == 0:
        return
    k = int(np.argmin(dists))
    i, j, d = int(centers[k]), int(points[k]), float(dists[k])
    if i == j:
        raise StructureReadError(
            f"{site_name(structure, i)} is only {d:.3f} Å from its own periodic image "
            f"(limit {min_distance:g} Å): the cell is too small"
        )
    i, j = min(i, j), max(i, j)
    across = " across the cell boundary" if np.any(images[k] != 0) else ""
    raise StructureReadError(
        f"atoms {site_name(structure, i)} and {site_name(structure, j)} are only {d:.3f} Å "
        f"apart{across} (limit {min_distance:g} Å)"
    )


def normalise(structure: Structure) -> Structure:
    """Drop oxidation states so that every site holds plain elements (disorder kept)."""
    if all(isinstance(sp, Element) for site in structure for sp in site.species):
        return structure
    if any(isinstance(sp, DummySpecies) for site in structure for sp in site.species):
        return structure  # validation reports the unknown element
    structure = structure.copy()
    structure.remove_oxidation_states()
    return structure
