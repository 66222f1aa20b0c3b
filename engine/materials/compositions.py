"""Compositions on a prototype: ``"FORMULA as PROTOTYPE"`` → a disordered ideal cell.

``"La0.6Sr0.4Co0.2Fe0.8O3 as perovskite"`` or ``"Ce0.9Gd0.1O1.95 as fluorite"`` becomes a
*disordered* pymatgen ``Structure`` on the ideal cell of that prototype
(:mod:`engine.materials.prototypes`):

* perovskite ABO3 (Pm-3m, 5 sites): the cations are split between the A and B sites by ionic
  radius (compared at CN VI), largest first into A until A holds at most one cation per formula
  unit, the rest into B (at most one). A site with less than one cation per formula unit keeps
  the remainder as vacancy (A-site deficiency);
* fluorite AO2 (Fm-3m, 12 sites): every cation on the A site (at most one per formula unit).

Oxygen below the ideal count (O2.95 of O3, O1.95 of O2) is a partial occupancy of every O site
(O2.85 → 0.95 on each). The lattice parameter (Å) is the ionic-radius estimate of the prototype
(:func:`~engine.materials.prototypes.perovskite_lattice`,
:func:`~engine.materials.prototypes.fluorite_lattice`) with **occupancy-weighted** Shannon radii
per site: r_site = Σ x_k r_k / Σ x_k. Each cation's radius is taken at a fixed oxidation state
(:data:`OXIDATION_STATES`, spin states as in :data:`~engine.materials.prototypes.SPIN_STATES`):
Sr or Gd doping is not compensated by B-site valence changes, and oxygen vacancies do not change
the lattice estimate. Those are hard-sphere estimates (0–4 % long for perovskites, see
:mod:`engine.materials.library`), not relaxed cells.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

from pymatgen.core import Composition, Element, Lattice, Structure

from engine.io import NamedStructure
from engine.materials.library import ESTIMATE
from engine.materials.prototypes import fluorite_lattice, perovskite_lattice, shannon_radius

__all__ = [
    "OXIDATION_STATES",
    "PROTOTYPES",
    "PrototypeStructure",
    "on_prototype",
    "parse_spec",
]

#: Prototypes a composition can be placed on.
PROTOTYPES = ("perovskite", "fluorite")
#: Oxidation state at which each cation's Shannon radius is taken (O is always O2-).
OXIDATION_STATES: dict[str, int] = {
    "Li": 1,
    "Na": 1,
    "K": 1,
    "Mg": 2,
    "Ca": 2,
    "Sr": 2,
    "Ba": 2,
    "Zn": 2,
    "Cu": 2,
    "Y": 3,
    "Sc": 3,
    "La": 3,
    "Pr": 3,
    "Nd": 3,
    "Sm": 3,
    "Gd": 3,
    "Yb": 3,
    "Bi": 3,
    "Al": 3,
    "Ga": 3,
    "In": 3,
    "Cr": 3,
    "Mn": 3,
    "Fe": 3,
    "Co": 3,
    "Ni": 3,
    "Ti": 4,
    "Zr": 4,
    "Hf": 4,
    "Ce": 4,
    "Sn": 4,
    "Nb": 5,
    "Ta": 5,
}
#: Coordination numbers tried per site, in order (the first one Shannon tabulates is used).
_CN = {
    "A-perovskite": ("XII", "IX", "VIII"),
    "B-perovskite": ("VI",),
    "A-fluorite": ("VIII",),
    "O-perovskite": ("VI",),
    "O-fluorite": ("IV",),
}
#: Ideal oxygen count per formula unit.
_IDEAL_O = {"perovskite": 3.0, "fluorite": 2.0}
_TOL = 1e-6
_SPEC = re.compile(r"^\s*(?P<formula>\S.*?)\s+as\s+(?:an?\s+)?(?P<proto>[A-Za-z-]+)\s*$", re.I)


@dataclass(frozen=True)
class PrototypeStructure:
    """A composition placed on a prototype.

    Attributes:
        name: what the user typed or the library name.
        formula: the composition, e.g. ``"La0.6Sr0.4Co0.2Fe0.8O3"``.
        prototype: one of :data:`PROTOTYPES`.
        structure: the disordered conventional cell (plain elements, partial occupancies).
        sites: role → {element: occupancy}, e.g. ``{"A": {"La": 0.6, "Sr": 0.4}, ...}``.
        radii: role → occupancy-weighted Shannon radius in Å.
        a: lattice parameter in Å.
        lattice_source: :data:`engine.materials.library.ESTIMATE` or the citation of the value used.
        notes: the ions and coordination numbers the radii were taken at.
    """

    name: str
    formula: str
    prototype: str
    structure: Structure
    sites: dict[str, dict[str, float]]
    radii: dict[str, float]
    a: float
    lattice_source: str = ESTIMATE
    notes: str = ""

    def named(self, ident: str | None = None) -> NamedStructure:
        """As the engine readers return a structure (source ``prototype:<name>``)."""
        return NamedStructure(
            id=ident or self.name, structure=self.structure, source=f"prototype:{self.prototype}"
        )


def parse_spec(text: str) -> tuple[str, str] | None:
    """``(formula, prototype)`` of ``"FORMULA as PROTOTYPE"``; None when ``text`` is not one.

    Raises:
        ValueError: the prototype is not one of :data:`PROTOTYPES`.
    """
    match = _SPEC.match(str(text))
    if match is None:
        return None
    proto = match["proto"].lower()
    if proto not in PROTOTYPES:
        raise ValueError(
            f"{text!r}: unknown prototype {match['proto']!r}; a composition can be "
            f"placed on: {', '.join(PROTOTYPES)}"
        )
    return match["formula"].strip(), proto


def _radius(element: str, cns: tuple[str, ...], notes: list[str]) -> float:
    """Shannon radius in Å of ``element`` at its :data:`OXIDATION_STATES` charge and the first
    of ``cns`` that is tabulated."""
    charge = OXIDATION_STATES.get(element)
    if charge is None:
        positive = [s for s in Element(element).common_oxidation_states if s > 0]
        if not positive:
            raise ValueError(
                f"{element} has no positive oxidation state to take a cation radius at"
            )
        charge = positive[0]
    ion = f"{element}{charge}+"
    for cn in cns:
        try:
            r = shannon_radius(ion, cn)
        except ValueError:
            continue
        notes.append(f"{ion} CN {cn}")
        return r
    raise ValueError(f"no Shannon radius for {ion} at CN {' or '.join(cns)}")


def _weighted(site: dict[str, float], role: str, notes: list[str]) -> float:
    """Occupancy-weighted radius in Å of one site; vacancies do not count (Σ x_k r_k / Σ x_k)."""
    if role.startswith("O-"):
        cn = _CN[role][0]
        notes.append(f"O2- CN {cn}")
        return shannon_radius("O2-", cn)
    radii = {el: _radius(el, _CN[role], notes) for el in site}
    return sum(x * radii[el] for el, x in site.items()) / sum(site.values())


def _split(composition: Composition, prototype: str, text: str) -> dict[str, dict[str, float]]:
    """Occupancies per role (``A``, ``B``, ``O``) for one formula unit of the prototype."""
    amounts = {el.symbol: float(x) for el, x in composition.element_composition.items()}
    oxygen = amounts.pop("O", 0.0)
    if oxygen <= 0:
        raise ValueError(f"{text!r} has no oxygen; {prototype} placement needs an oxide")
    if oxygen > _IDEAL_O[prototype] + _TOL:
        raise ValueError(
            f"{text!r}: O{oxygen:g} is more oxygen than the {prototype} cell holds "
            f"(O{_IDEAL_O[prototype]:g}); the site occupancy would exceed 1"
        )
    sites: dict[str, dict[str, float]] = {"A": {}}
    if prototype == "fluorite":
        sites["A"] = dict(amounts)
    else:
        sites["B"] = {}
        size = {el: _radius(el, ("VI", "VIII"), []) for el in amounts}  # one CN for all
        for el in sorted(amounts, key=lambda e: (-size[e], e)):
            a_total = sum(sites["A"].values())
            sites["A" if a_total + amounts[el] <= 1 + _TOL else "B"][el] = amounts[el]
    for role, site in sites.items():
        total = sum(site.values())
        if total > 1 + _TOL:
            what = ", ".join(f"{el}{x:g}" for el, x in site.items())
            raise ValueError(
                f"{text!r}: the {role} site of the {prototype} would hold {total:g} "
                f"cations per formula unit ({what}); at most 1 fits"
            )
        if total <= _TOL:
            raise ValueError(f"{text!r}: no cation for the {role} site of the {prototype}")
    sites["O"] = {"O": oxygen / _IDEAL_O[prototype]}
    return sites


def on_prototype(
    formula: str,
    prototype: str,
    *,
    name: str | None = None,
) -> PrototypeStructure:
    """Place ``formula`` on ``prototype`` (see the module docstring for the rules).

    Args:
        formula: e.g. ``"La0.9Sr0.1Ga0.8Mg0.2O2.85"`` (per formula unit of the prototype).
        prototype: one of :data:`PROTOTYPES`.
        name: id of the result (default ``"<formula> as <prototype>"``).

    Raises:
        ValueError: an unparsable formula, an unknown prototype, more oxygen than the prototype
            holds, cations that do not fit its sites, or an ion without a Shannon radius.
    """
    if prototype not in PROTOTYPES:
        raise ValueError(f"unknown prototype {prototype!r}; valid: {', '.join(PROTOTYPES)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            composition = Composition(formula)
    except Exception as exc:  # noqa: BLE001 - pymatgen raises several types
        raise ValueError(f"{formula!r} is not a chemical formula: {exc}") from exc
    sites = _split(composition, prototype, formula)
    notes: list[str] = []
    radii = {role: _weighted(site, f"{role}-{prototype}", notes) for role, site in sites.items()}
    if prototype == "perovskite":
        a = perovskite_lattice(radii["A"], radii["B"], radii["O"])
        lattice = Lattice.cubic(a)
        species = [sites["A"], sites["B"], *[sites["O"]] * 3]
        coords = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
        structure = Structure(lattice, species, coords)
    else:
        a = fluorite_lattice(radii["A"], radii["O"])
        structure = Structure.from_spacegroup(
            "Fm-3m",
            Lattice.cubic(a),
            [sites["A"], sites["O"]],
            [[0, 0, 0], [0.25, 0.25, 0.25]],
        )
    return PrototypeStructure(
        name=name or f"{formula} as {prototype}",
        formula=formula,
        prototype=prototype,
        structure=structure,
        sites=sites,
        radii=radii,
        a=a,
        notes="radii at " + ", ".join(dict.fromkeys(notes)),
    )
