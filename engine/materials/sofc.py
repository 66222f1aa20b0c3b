"""The SOFC library: named fuel-cell materials with their nominal compositions and prototypes.

:data:`SOFC_MATERIALS` holds electrolytes, electrodes and an interconnect, found by name or
abbreviation (:func:`find_material`: "YSZ", "8YSZ", "GDC", "GDC10", "CGO" …). Their cells come
from :func:`engine.materials.compositions.on_prototype`; lattices are the ionic-radius estimate
unless a room-temperature experimental value is on file with its source (Ni and NiO, from
:mod:`engine.materials.examples`). No measured CTE is shipped: none could be checked against its
source when the library was written, so nothing is claimed; users enter their own in the measured
table. :func:`resolve_structure` also accepts ``"FORMULA as PROTOTYPE"`` specs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, lru_cache

import pandas as pd

from engine.io import NamedStructure, StructureBatch
from engine.materials.compositions import PrototypeStructure, on_prototype, parse_spec

__all__ = [
    "SOFC_MATERIALS",
    "SofcMaterial",
    "find_material",
    "material_structure",
    "resolve_structure",
    "sofc_batch",
    "sofc_table",
]


@dataclass(frozen=True)
class SofcMaterial:
    """One named fuel-cell material.

    Attributes:
        name: the library name, e.g. ``"8YSZ"``.
        aliases: other names it is known by (matched without case, spaces, hyphens or
            underscores).
        formula: nominal composition per formula unit of the prototype.
        prototype: :data:`~engine.materials.compositions.PROTOTYPES`, or ``"rocksalt"``/``"fcc"``
            for the ordered NiO and Ni examples of :mod:`engine.materials.examples`.
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
