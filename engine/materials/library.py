"""A candidate library of idealised SOFC-type oxides, built in code from five prototypes.

Families, space groups and positions (lengths in Å, positions fractional):

* ``perovskite`` ABO3, Pm-3m: A 1a (0, 0, 0), B 1b (½, ½, ½), O 3c (½, ½, 0); 5 atoms.
* ``fluorite`` AO2, Fm-3m: A 4a (0, 0, 0), O 8c (¼, ¼, ¼); 12 atoms.
* ``pyrochlore`` A2B2O7, Fd-3m origin choice 2 (B at the origin): A 16d (½, ½, ½), B 16c
  (0, 0, 0), O 48f (x, ⅛, ⅛), O' 8b (⅜, ⅜, ⅜); 88 atoms. x = 0.3125 gives regular BO6 octahedra,
  x = 0.375 the fluorite positions (Subramanian, Aravamudan & Subba Rao, Prog. Solid State Chem.
  15, 55 (1983)).
* ``spinel`` AB2O4 (normal), Fd-3m origin choice 2: A 8a (⅛, ⅛, ⅛), B 16d (½, ½, ½), O 32e
  (u, u, u); 56 atoms. u = ¼ is the ideal cubic-close-packed value (Sickafus, Wills & Grimes,
  J. Am. Ceram. Soc. 82, 3279 (1999)).
* ``ruddlesden-popper`` A2BO4 (n = 1, K2NiF4 type), I4/mmm: B 2a (0, 0, 0), O1 4c (0, ½, 0),
  O2 4e (0, 0, z_O), A 4e (0, 0, z_A); 14 atoms.

Every entry is an *idealised*, ordered, stoichiometric cell: no octahedral tilts, Jahn–Teller or
tetragonal distortions, spinel inversion, pyrochlore/fluorite disorder or oxygen vacancies. Cation
combinations are charge balanced with fixed oxidation states (O is always O2-) and screened with
a stated geometric criterion per family (:data:`PEROVSKITE_T_WINDOW`,
:data:`PYROCHLORE_RATIO_WINDOW`, :data:`RUDDLESDEN_POPPER_T_WINDOW`).

Lattice parameters come from Shannon ionic radii (R. D. Shannon, Acta Cryst. A32, 751 (1976)) as
pymatgen tabulates them, at the coordination number of each site and with the spin states of
:data:`SPIN_STATES`; each family's formula is documented in its ``*_lattice`` or ``*_geometry``
function. The estimates are hard-sphere values: for perovskites they run 0–4 % above the
experimental (pseudo-)cubic parameters, because Shannon's r(O2-) = 1.40 Å makes the B–O sums long.
Where an experimental value is on file (:data:`KNOWN_LATTICES`: the room-temperature values of
:mod:`engine.materials.examples`, plus MgAl2O4) it replaces the estimated lattice parameter (internal
coordinates still come from the radii) and the entry's ``lattice_source`` quotes it; otherwise
``lattice_source`` is ``"shannon-radius estimate"``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pandas as pd
from pymatgen.core import Composition, Lattice, Structure
from pymatgen.core.periodic_table import Species
from pymatgen.symmetry.groups import SpaceGroup
from scipy.optimize import brentq

from engine.io import NamedStructure, StructureBatch
from engine.materials.examples import EXAMPLES

__all__ = [
    "ESTIMATE",
    "FAMILIES",
    "KNOWN_LATTICES",
    "PEROVSKITE_T_WINDOW",
    "PYROCHLORE_RATIO_WINDOW",
    "RUDDLESDEN_POPPER_T_WINDOW",
    "SPIN_STATES",
    "LibraryEntry",
    "build_fluorite",
    "build_library",
    "build_perovskite",
    "build_pyrochlore",
    "build_ruddlesden_popper",
    "build_spinel",
    "fluorite_lattice",
    "library_batch",
    "library_table",
    "perovskite_lattice",
    "pyrochlore_geometry",
    "ruddlesden_popper_geometry",
    "shannon_radius",
    "spinel_geometry",
    "tolerance_factor",
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

#: Spin state used for Shannon radii of ions that have more than one: high spin except the
#: low-spin octahedral Co3+ (LaCoO3, Co3O4) and Ni3+ (LaNiO3).
SPIN_STATES: dict[str, str] = {
    "Mn2+": "High Spin",
    "Mn3+": "High Spin",
    "Fe2+": "High Spin",
    "Fe3+": "High Spin",
    "Co2+": "High Spin",
    "Co3+": "Low Spin",
    "Co4+": "High Spin",
    "Ni3+": "Low Spin",
}

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

#: Space group of each family's cell (pymatgen symbol; Fd-3m in origin choice 2).
_SPACE_GROUP = {
    "perovskite": "Pm-3m",
    "fluorite": "Fm-3m",
    "pyrochlore": "Fd-3m:2",
    "spinel": "Fd-3m:2",
    "ruddlesden-popper": "I4/mmm",
}


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
# Radii and geometry


def shannon_radius(ion: str, cn: str) -> float:
    """Shannon ionic radius in Å of ``ion`` (e.g. ``"Co3+"``) at coordination ``cn`` (``"VI"``).

    The spin state is taken from :data:`SPIN_STATES`; ions with one tabulated spin state ignore it.

    Raises:
        ValueError: when pymatgen has no radius for that ion and coordination.
    """
    species = Species.from_str(ion)
    with warnings.catch_warnings():
        # "only one spin data available, and that value is returned": the wanted behaviour
        warnings.simplefilter("ignore", UserWarning)
        try:
            return float(species.get_shannon_radius(cn, spin=SPIN_STATES.get(ion, "")))
        except KeyError as exc:
            raise ValueError(f"no Shannon radius for {ion} at CN {cn}") from exc


def tolerance_factor(r_a: float, r_b: float, r_o: float) -> float:
    """Goldschmidt tolerance factor t = (r_A + r_O) / (√2 (r_B + r_O)); radii in Å."""
    return (r_a + r_o) / (math.sqrt(2) * (r_b + r_o))


def perovskite_lattice(r_a: float, r_b: float, r_o: float) -> float:
    """Cubic perovskite a in Å: the mean of 2(r_B + r_O) and √2(r_A + r_O).

    The two hard-sphere conditions (B–O = a/2, A–O = a/√2) agree only at t = 1; their mean splits
    the misfit between the A–O and B–O bonds. Radii in Å (Shannon, CN XII for A, VI for B and O).
    """
    return (2 * (r_b + r_o) + math.sqrt(2) * (r_a + r_o)) / 2


def fluorite_lattice(r_a: float, r_o: float) -> float:
    """Fluorite a in Å from A–O = a√3/4 = r_A + r_O: a = 4(r_A + r_O)/√3 (Shannon CN VIII/IV)."""
    return 4 * (r_a + r_o) / math.sqrt(3)


def pyrochlore_geometry(r_a: float, r_b: float, r_o: float) -> tuple[float, float]:
    """Pyrochlore (a in Å, x of O 48f) from Shannon radii (A CN VIII, B CN VI, O CN IV).

    With B at the origin (Subramanian et al. 1983): B–O48f = a√((x − ¼)² + 1/32),
    A–O48f = a√((x − ½)² + 1/32) (×6) and A–O8b = a√3/8 (×2). x is solved so that
    B–O48f / mean(A–O) = (r_B + r_O) / (r_A + r_O) on 0.3125 ≤ x ≤ 0.375, then a so that
    B–O48f = r_B + r_O.

    Raises:
        ValueError: when no x in that range fits (the radii are far from a pyrochlore).
    """

    def b_o(x: float) -> float:
        return math.sqrt((x - 0.25) ** 2 + 1 / 32)

    def mean_a_o(x: float) -> float:
        return (6 * math.sqrt((x - 0.5) ** 2 + 1 / 32) + 2 * math.sqrt(3) / 8) / 8

    target = (r_b + r_o) / (r_a + r_o)
    x = brentq(lambda x: b_o(x) / mean_a_o(x) - target, 0.3125, 0.375, xtol=1e-12)
    return (r_b + r_o) / b_o(x), x


def spinel_geometry(r_a: float, r_b: float, r_o: float) -> tuple[float, float]:
    """Normal spinel (a in Å, u of O 32e) from Shannon radii (A CN IV, B CN VI, O CN IV).

    In origin choice 2 (Sickafus et al. 1999): A–O = a√3(u − ⅛) and
    B–O = a√(3u² − 2u + ⅜). u is solved so that their ratio is (r_B + r_O)/(r_A + r_O), then a so
    that A–O = r_A + r_O.

    Raises:
        ValueError: when no u in [0.22, 0.30] fits.
    """

    def ratio(u: float) -> float:
        return math.sqrt(3 * u * u - 2 * u + 3 / 8) / (math.sqrt(3) * (u - 0.125))

    u = brentq(lambda u: ratio(u) - (r_b + r_o) / (r_a + r_o), 0.22, 0.30, xtol=1e-12)
    return (r_a + r_o) / (math.sqrt(3) * (u - 0.125)), u


def ruddlesden_popper_geometry(
    r_a: float, r_b: float, r_o: float
) -> tuple[float, float, float, float]:
    """n = 1 Ruddlesden–Popper (a, c in Å; z_A, z_O2) from Shannon radii (A CN IX, B and O CN VI).

    * a = the perovskite estimate, mean of 2(r_B + r_O) and √2(r_A + r_O) (B–O1 = a/2);
    * apical B–O2 = z_O2·c = r_B + r_O;
    * A sits h above the BO2 plane with its four A–O1 bonds at r_A + r_O: h² = (r_A + r_O)² − a²/4;
    * the A–O2 bond across the rock-salt layer is r_A + r_O: c = 2(h + (r_B + r_O) + (r_A + r_O));
    * z_A = ½ − h/c.
    """
    a = perovskite_lattice(r_a, r_b, r_o)
    h = math.sqrt((r_a + r_o) ** 2 - a * a / 4)
    c = 2 * (h + (r_b + r_o) + (r_a + r_o))
    return a, c, 0.5 - h / c, (r_b + r_o) / c


# ----------------------------------------------------------------------------------------------
# Prototype builders


@cache
def _space_group(symbol: str) -> SpaceGroup:
    return SpaceGroup(symbol)


def _decorated(
    spacegroup: str, lattice: Lattice, roles: list[tuple[str, str]], coords
) -> Structure:
    """What ``Structure.from_spacegroup`` does, with the ``SpaceGroup`` built once per symbol.

    pymatgen re-initialises ``SpaceGroup`` on every ``from_spacegroup`` call (about 0.6 s for
    Fd-3m). Species are the ions; the site property ``"site"`` holds each site's role.
    """
    group = _space_group(spacegroup)
    species, frac, role_of_site = [], [], []
    for (role, ion), xyz in zip(roles, coords):
        orbit = group.get_orbit(xyz)
        species += [ion] * len(orbit)
        frac += orbit
        role_of_site += [role] * len(orbit)
    return Structure(lattice, species, frac, site_properties={"site": role_of_site})


def build_perovskite(a_ion: str, b_ion: str, a: float) -> Structure:
    """Cubic perovskite ABO3 (Pm-3m, 5 atoms) with lattice parameter ``a`` in Å."""
    return _decorated(
        _SPACE_GROUP["perovskite"],
        Lattice.cubic(a),
        [("A", a_ion), ("B", b_ion), ("O", "O2-")],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]],
    )


def build_fluorite(a_ion: str, a: float) -> Structure:
    """Fluorite AO2 (Fm-3m, conventional 12-atom cell) with lattice parameter ``a`` in Å."""
    return _decorated(
        _SPACE_GROUP["fluorite"],
        Lattice.cubic(a),
        [("A", a_ion), ("O", "O2-")],
        [[0, 0, 0], [0.25, 0.25, 0.25]],
    )


def build_pyrochlore(a_ion: str, b_ion: str, a: float, x: float) -> Structure:
    """Cubic pyrochlore A2B2O7 (Fd-3m, 88 atoms), ``a`` in Å, O 48f at (x, ⅛, ⅛), B at 16c."""
    return _decorated(
        _SPACE_GROUP["pyrochlore"],
        Lattice.cubic(a),
        [("A", a_ion), ("B", b_ion), ("O", "O2-"), ("O", "O2-")],
        [[0.5, 0.5, 0.5], [0, 0, 0], [x, 0.125, 0.125], [0.375, 0.375, 0.375]],
    )


def build_spinel(a_ion: str, b_ion: str, a: float, u: float) -> Structure:
    """Normal spinel AB2O4 (Fd-3m, 56 atoms), ``a`` in Å, O 32e at (u, u, u), origin choice 2."""
    return _decorated(
        _SPACE_GROUP["spinel"],
        Lattice.cubic(a),
        [("A", a_ion), ("B", b_ion), ("O", "O2-")],
        [[0.125, 0.125, 0.125], [0.5, 0.5, 0.5], [u, u, u]],
    )


def build_ruddlesden_popper(
    a_ion: str, b_ion: str, a: float, c: float, z_a: float, z_o: float
) -> Structure:
    """n = 1 Ruddlesden–Popper A2BO4 (I4/mmm, K2NiF4 type, 14 atoms); ``a``, ``c`` in Å."""
    return _decorated(
        _SPACE_GROUP["ruddlesden-popper"],
        Lattice.tetragonal(a, c),
        [("A", a_ion), ("B", b_ion), ("O", "O2-"), ("O", "O2-")],
        [[0, 0, z_a], [0, 0, 0], [0, 0.5, 0], [0, 0, z_o]],
    )


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
            "space_group": _SPACE_GROUP[e.family].split(":")[0],
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
            f"# {e.formula}: idealised {e.family} ({_SPACE_GROUP[e.family].split(':')[0]})",
            f"# Lattice source: {e.lattice_source}",
            "# Generated by engine.materials.library (crystal-screen).",
        ]
        path = folder / f"{e.id}.cif"
        path.write_text("\n".join(header + lines) + "\n")
        written.append(path)
    library_table(entries).to_csv(folder / "library.csv", index=False)
    return written
