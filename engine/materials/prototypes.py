"""Prototype cells of SOFC-type oxides from Shannon radii: radii, geometry and builders.

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

Lattice parameters come from Shannon ionic radii (R. D. Shannon, Acta Cryst. A32, 751 (1976)) as
pymatgen tabulates them, at the coordination number of each site and with the spin states of
:data:`SPIN_STATES`; each family's formula is documented in its ``*_lattice`` or ``*_geometry``
function. The builders return ideal, ordered, oxidation-state-decorated conventional cells; the
candidate library built from them is :mod:`engine.materials.library`.
"""

from __future__ import annotations

import math
import warnings
from functools import cache

from pymatgen.core import Lattice, Structure
from pymatgen.core.periodic_table import Species
from pymatgen.symmetry.groups import SpaceGroup

__all__ = [
    "SPACE_GROUPS",
    "SPIN_STATES",
    "build_fluorite",
    "build_perovskite",
    "build_pyrochlore",
    "build_ruddlesden_popper",
    "build_spinel",
    "fluorite_lattice",
    "perovskite_lattice",
    "pyrochlore_geometry",
    "ruddlesden_popper_geometry",
    "shannon_radius",
    "spinel_geometry",
    "tolerance_factor",
]

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


#: Space group of each family's cell (pymatgen symbol; Fd-3m in origin choice 2).
SPACE_GROUPS = {
    "perovskite": "Pm-3m",
    "fluorite": "Fm-3m",
    "pyrochlore": "Fd-3m:2",
    "spinel": "Fd-3m:2",
    "ruddlesden-popper": "I4/mmm",
}


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

    from scipy.optimize import brentq  # here: scipy.optimize costs 0.5 s at import

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

    from scipy.optimize import brentq

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
        SPACE_GROUPS["perovskite"],
        Lattice.cubic(a),
        [("A", a_ion), ("B", b_ion), ("O", "O2-")],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]],
    )


def build_fluorite(a_ion: str, a: float) -> Structure:
    """Fluorite AO2 (Fm-3m, conventional 12-atom cell) with lattice parameter ``a`` in Å."""
    return _decorated(
        SPACE_GROUPS["fluorite"],
        Lattice.cubic(a),
        [("A", a_ion), ("O", "O2-")],
        [[0, 0, 0], [0.25, 0.25, 0.25]],
    )


def build_pyrochlore(a_ion: str, b_ion: str, a: float, x: float) -> Structure:
    """Cubic pyrochlore A2B2O7 (Fd-3m, 88 atoms), ``a`` in Å, O 48f at (x, ⅛, ⅛), B at 16c."""
    return _decorated(
        SPACE_GROUPS["pyrochlore"],
        Lattice.cubic(a),
        [("A", a_ion), ("B", b_ion), ("O", "O2-"), ("O", "O2-")],
        [[0.5, 0.5, 0.5], [0, 0, 0], [x, 0.125, 0.125], [0.375, 0.375, 0.375]],
    )


def build_spinel(a_ion: str, b_ion: str, a: float, u: float) -> Structure:
    """Normal spinel AB2O4 (Fd-3m, 56 atoms), ``a`` in Å, O 32e at (u, u, u), origin choice 2."""
    return _decorated(
        SPACE_GROUPS["spinel"],
        Lattice.cubic(a),
        [("A", a_ion), ("B", b_ion), ("O", "O2-")],
        [[0.125, 0.125, 0.125], [0.5, 0.5, 0.5], [u, u, u]],
    )


def build_ruddlesden_popper(
    a_ion: str, b_ion: str, a: float, c: float, z_a: float, z_o: float
) -> Structure:
    """n = 1 Ruddlesden–Popper A2BO4 (I4/mmm, K2NiF4 type, 14 atoms); ``a``, ``c`` in Å."""
    return _decorated(
        SPACE_GROUPS["ruddlesden-popper"],
        Lattice.tetragonal(a, c),
        [("A", a_ion), ("B", b_ion), ("O", "O2-"), ("O", "O2-")],
        [[0, 0, z_a], [0, 0, 0], [0, 0.5, 0], [0, 0, z_o]],
    )
