"""Fuel-cell materials as engineers name them: compositions on a prototype, and a named library.

**Composition on a prototype.** ``"La0.6Sr0.4Co0.2Fe0.8O3 as perovskite"`` or
``"Ce0.9Gd0.1O1.95 as fluorite"`` becomes a *disordered* pymatgen ``Structure`` on the ideal
cell of that prototype (:mod:`engine.materials.library`):

* perovskite ABO3 (Pm-3m, 5 sites): the cations are split between the A and B sites by ionic
  radius (compared at CN VI), largest first into A until A holds at most one cation per formula unit, the rest into
  B (at most one). A site with less than one cation per formula unit keeps the remainder as
  vacancy (A-site deficiency);
* fluorite AO2 (Fm-3m, 12 sites): every cation on the A site (at most one per formula unit).

Oxygen below the ideal count (O2.95 of O3, O1.95 of O2) is a partial occupancy of every O site
(O2.85 → 0.95 on each). The lattice parameter is the ionic-radius estimate of the prototype
(:func:`engine.materials.library.perovskite_lattice`, :func:`engine.materials.library.fluorite_lattice`) with
**occupancy-weighted** Shannon radii per site: r_site = Σ x_k r_k / Σ x_k. Each cation's radius is
taken at a fixed oxidation state (:data:`OXIDATION_STATES`, spin states as in
:data:`engine.materials.library.SPIN_STATES`): Sr or Gd doping is not compensated by B-site valence changes,
and oxygen vacancies do not change the lattice estimate. Those are hard-sphere estimates (0–4 %
long for perovskites, see :mod:`engine.materials.library`), not relaxed cells.

**The SOFC library** (:data:`SOFC_MATERIALS`): electrolytes, electrodes and an interconnect with
their nominal compositions and prototypes, found by name or abbreviation (:func:`find_material`:
"YSZ", "8YSZ", "GDC", "GDC10", "CGO" …). Lattices are the ionic-radius estimate unless a
room-temperature experimental value is on file with its source (Ni and NiO, from
:mod:`engine.materials.examples`). No measured CTE is shipped: none could be checked against its source
when the library was written, so nothing is claimed; users enter their own in the measured table.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from functools import cache, lru_cache

import pandas as pd
from pymatgen.core import Composition, Element, Lattice, Structure

from engine.io import NamedStructure, StructureBatch
from engine.materials.library import (
    ESTIMATE,
    fluorite_lattice,
    perovskite_lattice,
    shannon_radius,
)

__all__ = [
    "OXIDATION_STATES",
    "PROTOTYPES",
    "SOFC_MATERIALS",
    "PrototypeStructure",
    "SofcMaterial",
    "find_material",
    "on_prototype",
    "parse_spec",
    "resolve_structure",
    "sofc_batch",
    "sofc_table",
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


# ----------------------------------------------------------------------------------------------
# The named library


@dataclass(frozen=True)
class SofcMaterial:
    """One named fuel-cell material.

    Attributes:
        name: the library name, e.g. ``"8YSZ"``.
        aliases: other names it is known by (matched without case, spaces, hyphens or
            underscores).
        formula: nominal composition per formula unit of the prototype.
        prototype: :data:`PROTOTYPES`, or ``"rocksalt"``/``"fcc"`` for the ordered NiO and Ni
            examples of :mod:`engine.materials.examples`.
        role: what it does in a cell.
        composition_source: where the nominal composition comes from.
        note: what the idealised cell leaves out.
        example_key: the :mod:`engine.materials.examples` entry whose experimental cell is used.
    """

    name: str
    aliases: tuple[str, ...]
    formula: str
    prototype: str
    role: str
    composition_source: str
    note: str = ""
    example_key: str = ""


_NOMINAL = "nominal composition of the material's common name"
#: The named materials. 8YSZ is 8 mol% Y2O3 in ZrO2: (ZrO2)0.92(Y2O3)0.08 per 1.08 cations.
SOFC_MATERIALS: tuple[SofcMaterial, ...] = (
    SofcMaterial(
        "8YSZ",
        ("YSZ", "8YSZ", "YSZ8", "8Y-SZ", "8 mol% YSZ"),
        "Zr0.852Y0.148O1.926",
        "fluorite",
        "electrolyte",
        "8 mol% Y2O3 in ZrO2, (ZrO2)0.92(Y2O3)0.08 normalised to one cation",
    ),
    SofcMaterial(
        "10GDC",
        ("GDC", "GDC10", "10GDC", "CGO", "CGO10", "10CGO"),
        "Ce0.9Gd0.1O1.95",
        "fluorite",
        "electrolyte / barrier layer",
        _NOMINAL,
    ),
    SofcMaterial(
        "20SDC", ("SDC", "SDC20", "20SDC"), "Ce0.8Sm0.2O1.9", "fluorite", "electrolyte", _NOMINAL
    ),
    SofcMaterial(
        "LSGM",
        ("LSGM", "LSGM9182"),
        "La0.9Sr0.1Ga0.8Mg0.2O2.85",
        "perovskite",
        "electrolyte",
        _NOMINAL,
        "orthorhombic/pseudo-cubic at room temperature; here the ideal cubic cell",
    ),
    SofcMaterial(
        "BZY20",
        ("BZY", "BZY20"),
        "BaZr0.8Y0.2O2.9",
        "perovskite",
        "proton-conducting electrolyte",
        _NOMINAL,
        "dry (no protons); hydration expansion left out",
    ),
    SofcMaterial(
        "LSM20",
        ("LSM", "LSM20", "LSM82"),
        "La0.8Sr0.2MnO3",
        "perovskite",
        "cathode",
        _NOMINAL,
        "rhombohedral at room temperature; ideal cubic cell",
    ),
    SofcMaterial(
        "LSCF6428",
        ("LSCF", "LSCF6428"),
        "La0.6Sr0.4Co0.2Fe0.8O3",
        "perovskite",
        "cathode",
        _NOMINAL,
        "oxygen non-stoichiometry δ not represented (O3)",
    ),
    SofcMaterial(
        "BSCF5582",
        ("BSCF", "BSCF5582"),
        "Ba0.5Sr0.5Co0.8Fe0.2O3",
        "perovskite",
        "cathode",
        _NOMINAL,
        "oxygen non-stoichiometry δ (large in BSCF) not represented (O3)",
    ),
    SofcMaterial(
        "LSC",
        ("LSC", "LSC64"),
        "La0.6Sr0.4CoO3",
        "perovskite",
        "cathode",
        _NOMINAL,
        "oxygen non-stoichiometry δ and Co spin-state changes not represented",
    ),
    SofcMaterial(
        "SSC",
        ("SSC", "SSC55"),
        "Sm0.5Sr0.5CoO3",
        "perovskite",
        "cathode",
        _NOMINAL,
        "oxygen non-stoichiometry δ and Co spin-state changes not represented",
    ),
    SofcMaterial(
        "LSCr",
        ("LSCr", "LSC-r", "LSCR82"),
        "La0.8Sr0.2CrO3",
        "perovskite",
        "interconnect",
        _NOMINAL,
        "orthorhombic at room temperature; ideal cubic cell",
    ),
    SofcMaterial(
        "NiO",
        ("NiO",),
        "NiO",
        "rocksalt",
        "anode precursor",
        "stoichiometric oxide",
        example_key="NiO_rocksalt",
    ),
    SofcMaterial(
        "Ni", ("Ni", "nickel"), "Ni", "fcc", "anode metal", "element", example_key="Ni_fcc"
    ),
)


def _key(text: str) -> str:
    return re.sub(r"[\s\-_%]|mol", "", str(text)).lower()


@lru_cache(maxsize=1)
def _aliases() -> dict[str, SofcMaterial]:
    table: dict[str, SofcMaterial] = {}
    for material in SOFC_MATERIALS:
        for alias in (material.name, *material.aliases):
            table.setdefault(_key(alias), material)
    return table


def find_material(name: str) -> SofcMaterial | None:
    """The library material called ``name`` or one of its abbreviations (case, spaces,
    hyphens, underscores and "mol%" ignored: "YSZ", "8-YSZ", "gdc10"); None when unknown."""
    return _aliases().get(_key(name))


@cache
def material_structure(name: str) -> PrototypeStructure:
    """The cell of a library material (by its library name)."""
    material = next(m for m in SOFC_MATERIALS if m.name == name)
    if material.example_key:
        from engine.materials.examples import EXAMPLES, build

        example = next(ex for ex in EXAMPLES if ex.key == material.example_key)
        structure = build(example)
        counts = {el.symbol: 1.0 for el in structure.composition}
        return PrototypeStructure(
            name=material.name,
            formula=material.formula,
            prototype=material.prototype,
            structure=structure,
            sites={"all": counts},
            radii={},
            a=example.a,
            lattice_source=example.source,
        )
    return on_prototype(material.formula, material.prototype, name=material.name)


def resolve_structure(spec: str) -> NamedStructure | None:
    """The structure a name or spec stands for: a library material (:func:`find_material`) or
    ``"FORMULA as PROTOTYPE"``; None when ``spec`` is neither.

    Raises:
        ValueError: a composition spec that cannot be placed (see :func:`on_prototype`).
    """
    material = find_material(spec)
    if material is not None:
        return material_structure(material.name).named()
    parsed = parse_spec(spec)
    if parsed is None:
        return None
    return on_prototype(*parsed, name=str(spec).strip()).named()


def sofc_batch(names=None) -> StructureBatch:
    """Library materials (default: all, in :data:`SOFC_MATERIALS` order) as a batch.

    Raises:
        ValueError: a name that is not in the library.
    """
    wanted = [m.name for m in SOFC_MATERIALS] if names is None else list(names)
    items = []
    for name in wanted:
        material = find_material(name)
        if material is None:
            raise ValueError(
                f"{name!r} is not in the SOFC library; known: "
                + ", ".join(m.name for m in SOFC_MATERIALS)
            )
        items.append(material_structure(material.name).named())
    return StructureBatch(items=items)


def sofc_table() -> pd.DataFrame:
    """One row per library material: name, aliases, formula, prototype, role, a (Å), sources."""
    rows = []
    for m in SOFC_MATERIALS:
        cell = material_structure(m.name)
        rows.append(
            {
                "name": m.name,
                "aliases": ", ".join(m.aliases),
                "formula": m.formula,
                "prototype": m.prototype,
                "role": m.role,
                "a_A": round(cell.a, 4),
                "lattice_source": cell.lattice_source,
                "composition_source": m.composition_source,
                "radii": cell.notes,
                "note": m.note,
            }
        )
    return pd.DataFrame(rows)
