"""A candidate library of idealised SOFC-type oxides, built in code from five prototypes.

Families: ``perovskite`` ABO3, ``fluorite`` AO2, ``pyrochlore`` A2B2O7, ``spinel`` AB2O4 and
``ruddlesden-popper`` A2BO4; their space groups, Wyckoff positions, radius geometry and builders
are in :mod:`engine.materials.prototypes`.

Every entry is an *idealised*, ordered, stoichiometric cell: no octahedral tilts, Jahn–Teller or
tetragonal distortions, spinel inversion, pyrochlore/fluorite disorder or oxygen vacancies. Cation
combinations are charge balanced with fixed oxidation states (O is always O2-) and screened with
a stated geometric criterion per family (:data:`PEROVSKITE_T_WINDOW`,
:data:`PYROCHLORE_RATIO_WINDOW`, :data:`RUDDLESDEN_POPPER_T_WINDOW`).

Lattice parameters come from Shannon ionic radii (R. D. Shannon, Acta Cryst. A32, 751 (1976)),
see :mod:`engine.materials.prototypes`. The estimates are hard-sphere values: for perovskites
they run 0–4 % above the experimental (pseudo-)cubic parameters, because Shannon's
r(O2-) = 1.40 Å makes the B–O sums long.
Where an experimental value is on file (:data:`KNOWN_LATTICES`: the room-temperature values of
:mod:`engine.materials.examples`, plus MgAl2O4) it replaces the estimated lattice parameter (internal
coordinates still come from the radii) and the entry's ``lattice_source`` quotes it; otherwise
``lattice_source`` is ``"shannon-radius estimate"``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pymatgen.core import Composition, Structure
from pymatgen.core.periodic_table import Species

from engine.io import NamedStructure, StructureBatch
from engine.materials.examples import EXAMPLES
from engine.materials.prototypes import (
    SPACE_GROUPS,
    build_fluorite,
    build_perovskite,
    build_pyrochlore,
    build_ruddlesden_popper,
    build_spinel,
    fluorite_lattice,
    perovskite_lattice,
    pyrochlore_geometry,
    ruddlesden_popper_geometry,
    shannon_radius,
    spinel_geometry,
    tolerance_factor,
)

__all__ = [
    "ESTIMATE",
    "FAMILIES",
    "KNOWN_LATTICES",
    "PEROVSKITE_T_WINDOW",
    "PYROCHLORE_RATIO_WINDOW",
    "RUDDLESDEN_POPPER_T_WINDOW",
    "LibraryEntry",
    "build_library",
    "library_batch",
    "library_table",
    "write_library",
]

FAMILIES = ("perovskite", "fluorite", "pyrochlore", "spinel", "ruddlesden-popper")
#: ``lattice_source`` of entries whose lattice comes from Shannon radii.
ESTIMATE = "shannon-radius estimate"
#: Goldschmidt tolerance factors kept for cubic perovskites. 1.07 keeps BaTiO3 (t = 1.06) and
#: drops the hexagonal BaMnO3 and BaCoO3 (t = 1.10); 0.85 keeps the cubic cell's A–O and B–O
#: distances within 10 % of their Shannon sums.
PEROVSKITE_T_WINDOW = (0.85, 1.07)
#: Tolerance factors kept for n = 1 Ruddlesden–Popper phases (A radius at CN IX).
RUDDLESDEN_POPPER_T_WINDOW = (0.85, 1.07)
#: r_A(VIII) / r_B(VI) range where A2B2O7 forms the ordered pyrochlore rather than a defect
#: fluorite or a layered monoclinic phase (Subramanian et al. 1983).
PYROCHLORE_RATIO_WINDOW = (1.46, 1.78)

# Cation choices per family (oxidation states fixed; O is O2-).
_LN3 = ("La3+", "Pr3+", "Nd3+", "Sm3+", "Gd3+", "Y3+")
_AE2 = ("Ca2+", "Sr2+", "Ba2+")
_PEROVSKITE_B3 = ("Al3+", "Ga3+", "Sc3+", "In3+", "Cr3+", "Mn3+", "Fe3+", "Co3+", "Ni3+")
_B4 = ("Ti4+", "Zr4+", "Hf4+", "Sn4+", "Ce4+", "Mn4+", "Fe4+", "Co4+")
_FLUORITE_A4 = ("Ce4+", "Zr4+", "Hf4+", "Pr4+", "Tb4+", "Th4+", "U4+")
_PYROCHLORE_B4 = ("Ti4+", "Zr4+", "Hf4+", "Sn4+", "Ce4+")
_SPINEL_A2 = ("Mg2+", "Zn2+", "Mn2+", "Fe2+", "Co2+", "Ni2+", "Cu2+")
_SPINEL_B3 = ("Al3+", "Ga3+", "Cr3+", "Mn3+", "Fe3+", "Co3+")
_RP_B2 = ("Ni2+", "Cu2+", "Co2+")


def _known_lattices() -> dict[tuple[str, str], tuple[float, str]]:
    table = {
        (ex.kind, Composition(ex.formula).reduced_formula): (ex.a, ex.source)
        for ex in EXAMPLES
        if ex.kind in ("perovskite", "fluorite")
    }
    table[("spinel", "MgAl2O4")] = (
        8.083,
        "a = 8.083 Å: experimental room-temperature value of spinel MgAl2O4 (ICDD PDF 21-1152)",
    )
    return table


#: (family, reduced formula) → (a in Å, citation). Perovskite values are pseudo-cubic.
KNOWN_LATTICES: dict[tuple[str, str], tuple[float, str]] = _known_lattices()


@dataclass(frozen=True)
class LibraryEntry:
    """One idealised library structure.

    Attributes:
        id: stable name, ``"<family>-<formula>"``, e.g. ``"perovskite-LaCoO3"``.
        family: one of :data:`FAMILIES`.
        formula: formula in prototype order (A, B, O), e.g. ``"MgAl2O4"``.
        structure: the conventional cell, oxidation-state decorated; the site property ``"site"``
            names each site's role (``"A"``, ``"B"``, ``"O"``).
        ions: role → ion with its oxidation state, e.g. ``{"A": "La3+", "B": "Co3+", "O": "O2-"}``.
        coordination: role → coordination number (Roman) the Shannon radius was taken at.
        radii: role → Shannon ionic radius in Å.
        a: lattice parameter a in Å.
        c: lattice parameter c in Å (Ruddlesden–Popper only).
        params: internal coordinates: ``x_O48f`` (pyrochlore), ``u_O32e`` (spinel), ``z_A`` and
            ``z_O2`` (Ruddlesden–Popper).
        tolerance_factor: Goldschmidt t (perovskite, Ruddlesden–Popper).
        radius_ratio: r_A / r_B (pyrochlore).
        lattice_source: :data:`ESTIMATE` or the citation of the experimental value used.
        notes: radius fall-backs, if any.
        idealised: always ``True``: no tilts, distortions, disorder or vacancies.
    """

    id: str
    family: str
    formula: str
    structure: Structure
    ions: dict[str, str]
    coordination: dict[str, str]
    radii: dict[str, float]
    a: float
    c: float | None = None
    params: dict[str, float] = field(default_factory=dict)
    tolerance_factor: float | None = None
    radius_ratio: float | None = None
    lattice_source: str = ESTIMATE
    notes: str = ""
    idealised: bool = True

    def named(self) -> NamedStructure:
        """The entry as the engine readers return it: plain elements, no site properties."""
        structure = self.structure.copy()
        structure.remove_oxidation_states()
        structure.remove_site_property("site")
        return NamedStructure(id=self.id, structure=structure, source=f"library:{self.family}")


# ----------------------------------------------------------------------------------------------
# Library


def _element(ion: str) -> str:
    return Species.from_str(ion).symbol


def _formula(parts: list[tuple[str, int]]) -> str:
    """Formula in the given element order, merging repeats: [(Co,1),(Co,2),(O,4)] → Co3O4."""
    counts: dict[str, int] = {}
    for el, n in parts:
        counts[el] = counts.get(el, 0) + n
    return "".join(f"{el}{n if n > 1 else ''}" for el, n in counts.items())


def _known(family: str, formula: str) -> tuple[float, str] | None:
    return KNOWN_LATTICES.get((family, Composition(formula).reduced_formula))


def _radii(ions: dict[str, str], cns: dict[str, str], notes: list[str]) -> dict[str, float]:
    """Shannon radii per role; an A ion without a CN XII radius falls back to CN IX (noted)."""
    radii = {}
    for role, ion in ions.items():
        try:
            radii[role] = shannon_radius(ion, cns[role])
        except ValueError:
            if cns[role] != "XII":
                raise
            cns[role] = "IX"
            radii[role] = shannon_radius(ion, "IX")
            notes.append(f"{ion}: no CN XII Shannon radius, CN IX used (t is underestimated)")
    return radii


def _perovskites() -> list[LibraryEntry]:
    pairs = [(a, b) for a in _LN3 for b in _PEROVSKITE_B3] + [(a, b) for a in _AE2 for b in _B4]
    out = []
    for a_ion, b_ion in pairs:
        ions = {"A": a_ion, "B": b_ion, "O": "O2-"}
        cns = {"A": "XII", "B": "VI", "O": "VI"}
        notes: list[str] = []
        r = _radii(ions, cns, notes)
        t = tolerance_factor(r["A"], r["B"], r["O"])
        if not PEROVSKITE_T_WINDOW[0] <= t <= PEROVSKITE_T_WINDOW[1]:
            continue
        formula = _formula([(_element(a_ion), 1), (_element(b_ion), 1), ("O", 3)])
        a, source = _known("perovskite", formula) or (
            perovskite_lattice(r["A"], r["B"], r["O"]),
            ESTIMATE,
        )
        out.append(
            LibraryEntry(
                id=f"perovskite-{formula}",
                family="perovskite",
                formula=formula,
                structure=build_perovskite(a_ion, b_ion, a),
                ions=ions,
                coordination=cns,
                radii=r,
                a=a,
                tolerance_factor=t,
                lattice_source=source,
                notes="; ".join(notes),
            )
        )
    return out


def _fluorites() -> list[LibraryEntry]:
    out = []
    for a_ion in _FLUORITE_A4:
        ions = {"A": a_ion, "O": "O2-"}
        cns = {"A": "VIII", "O": "IV"}
        r = _radii(ions, cns, [])
        formula = _formula([(_element(a_ion), 1), ("O", 2)])
        a, source = _known("fluorite", formula) or (fluorite_lattice(r["A"], r["O"]), ESTIMATE)
        out.append(
            LibraryEntry(
                id=f"fluorite-{formula}",
                family="fluorite",
                formula=formula,
                structure=build_fluorite(a_ion, a),
                ions=ions,
                coordination=cns,
                radii=r,
                a=a,
                lattice_source=source,
            )
        )
    return out


def _pyrochlores() -> list[LibraryEntry]:
    out = []
    for a_ion in _LN3:
        for b_ion in _PYROCHLORE_B4:
            ions = {"A": a_ion, "B": b_ion, "O": "O2-"}
            cns = {"A": "VIII", "B": "VI", "O": "IV"}
            r = _radii(ions, cns, [])
            ratio = r["A"] / r["B"]
            if not PYROCHLORE_RATIO_WINDOW[0] <= ratio <= PYROCHLORE_RATIO_WINDOW[1]:
                continue
            a, x = pyrochlore_geometry(r["A"], r["B"], r["O"])
            formula = _formula([(_element(a_ion), 2), (_element(b_ion), 2), ("O", 7)])
            out.append(
                LibraryEntry(
                    id=f"pyrochlore-{formula}",
                    family="pyrochlore",
                    formula=formula,
                    structure=build_pyrochlore(a_ion, b_ion, a, x),
                    ions=ions,
                    coordination=cns,
                    radii=r,
                    a=a,
                    params={"x_O48f": x},
                    radius_ratio=ratio,
                )
            )
    return out


def _spinels() -> list[LibraryEntry]:
    out = []
    for a_ion in _SPINEL_A2:
        for b_ion in _SPINEL_B3:
            ions = {"A": a_ion, "B": b_ion, "O": "O2-"}
            cns = {"A": "IV", "B": "VI", "O": "IV"}
            r = _radii(ions, cns, [])
            a, u = spinel_geometry(r["A"], r["B"], r["O"])
            formula = _formula([(_element(a_ion), 1), (_element(b_ion), 2), ("O", 4)])
            a, source = _known("spinel", formula) or (a, ESTIMATE)
            out.append(
                LibraryEntry(
                    id=f"spinel-{formula}",
                    family="spinel",
                    formula=formula,
                    structure=build_spinel(a_ion, b_ion, a, u),
                    ions=ions,
                    coordination=cns,
                    radii=r,
                    a=a,
                    params={"u_O32e": u},
                    lattice_source=source,
                )
            )
    return out


def _ruddlesden_poppers() -> list[LibraryEntry]:
    pairs = [(a, b) for a in _LN3 for b in _RP_B2] + [(a, b) for a in _AE2 for b in _B4]
    out = []
    for a_ion, b_ion in pairs:
        ions = {"A": a_ion, "B": b_ion, "O": "O2-"}
        cns = {"A": "IX", "B": "VI", "O": "VI"}
        r = _radii(ions, cns, [])
        t = tolerance_factor(r["A"], r["B"], r["O"])
        if not RUDDLESDEN_POPPER_T_WINDOW[0] <= t <= RUDDLESDEN_POPPER_T_WINDOW[1]:
            continue
        a, c, z_a, z_o = ruddlesden_popper_geometry(r["A"], r["B"], r["O"])
        formula = _formula([(_element(a_ion), 2), (_element(b_ion), 1), ("O", 4)])
        out.append(
            LibraryEntry(
                id=f"ruddlesden-popper-{formula}",
                family="ruddlesden-popper",
                formula=formula,
                structure=build_ruddlesden_popper(a_ion, b_ion, a, c, z_a, z_o),
                ions=ions,
                coordination=cns,
                radii=r,
                a=a,
                c=c,
                params={"z_A": z_a, "z_O2": z_o},
                tolerance_factor=t,
            )
        )
    return out


_BUILDERS = {
    "perovskite": _perovskites,
    "fluorite": _fluorites,
    "pyrochlore": _pyrochlores,
    "spinel": _spinels,
    "ruddlesden-popper": _ruddlesden_poppers,
}


def build_library(families: list[str] | tuple[str, ...] | None = None) -> list[LibraryEntry]:
    """Build the candidate library, in :data:`FAMILIES` order then a fixed cation order.

    Args:
        families: subset of :data:`FAMILIES` (default: all).

    Raises:
        ValueError: for an unknown family name.
    """
    wanted = FAMILIES if families is None else tuple(families)
    unknown = [f for f in wanted if f not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown families {unknown}; valid: {', '.join(FAMILIES)}")
    return [entry for family in FAMILIES if family in wanted for entry in _BUILDERS[family]()]


def library_table(entries: list[LibraryEntry] | None = None) -> pd.DataFrame:
    """Metadata of ``entries`` (default: the whole library), one row per entry; lengths in Å."""
    entries = build_library() if entries is None else entries
    rows = [
        {
            "id": e.id,
            "family": e.family,
            "formula": e.formula,
            "space_group": SPACE_GROUPS[e.family].split(":")[0],
            "ions": " ".join(f"{role}:{ion}" for role, ion in e.ions.items()),
            "coordination": " ".join(f"{role}:{cn}" for role, cn in e.coordination.items()),
            "a": round(e.a, 4),
            "c": None if e.c is None else round(e.c, 4),
            "params": " ".join(f"{k}={v:.4f}" for k, v in e.params.items()),
            "tolerance_factor": None
            if e.tolerance_factor is None
            else round(e.tolerance_factor, 4),
            "radius_ratio": None if e.radius_ratio is None else round(e.radius_ratio, 4),
            "n_atoms": len(e.structure),
            "lattice_source": e.lattice_source,
            "idealised": e.idealised,
            "notes": e.notes,
        }
        for e in entries
    ]
    return pd.DataFrame(rows)


def library_batch(entries: list[LibraryEntry] | None = None) -> StructureBatch:
    """``entries`` (default: the whole library) as a :class:`StructureBatch`, like a reader's."""
    entries = build_library() if entries is None else entries
    return StructureBatch(items=[e.named() for e in entries])


def write_library(directory: str | Path, entries: list[LibraryEntry] | None = None) -> list[Path]:
    """Write ``<id>.cif`` per entry plus ``library.csv`` (:func:`library_table`) to ``directory``.

    The CIF data blocks are named by id, so :func:`engine.io.read_structures` on the
    folder returns the ids; it skips ``library.csv``.

    Returns:
        The CIF paths, in entry order.
    """
    from pymatgen.io.cif import CifWriter

    entries = build_library() if entries is None else entries
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for e in entries:
        structure = e.structure.copy()
        structure.remove_site_property("site")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            text = str(CifWriter(structure, symprec=0.01))
        lines = [f"data_{e.id}" if ln.startswith("data_") else ln for ln in text.splitlines()]
        header = [
            f"# {e.formula}: idealised {e.family} ({SPACE_GROUPS[e.family].split(':')[0]})",
            f"# Lattice source: {e.lattice_source}",
            "# Generated by engine.materials.library (crystal-screen).",
        ]
        path = folder / f"{e.id}.cif"
        path.write_text("\n".join(header + lines) + "\n")
        written.append(path)
    library_table(entries).to_csv(folder / "library.csv", index=False)
    return written
