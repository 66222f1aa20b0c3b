"""The quasi-harmonic Debye model of AGL/GIBBS, from a static E(V) curve.

AGL: Toher et al., PRB 90, 174107 (2014); GIBBS: Blanco, Francisco & Luaña, Comput. Phys.
Commun. 158, 57 (2004).

Pure numpy/scipy plus pymatgen's EOS fits: no potential is needed here. Volumes are per cell in
Å³, energies per cell in eV, temperatures in K.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: ħ/k_B in K·s.
HBAR_OVER_KB = 7.638232577e-12
#: k_B in eV/K.
KB_EV = 8.617333262e-5
#: 1 amu in kg.
AMU_KG = 1.66053906660e-27
#: 1 eV/Å³ in GPa.
EV_PER_A3_TO_GPA = 160.21766208

#: EOS forms accepted (pymatgen ``EOS`` names).
EOS_NAMES = ("vinet", "birch_murnaghan")


class QHAFailure(ValueError):
    """The model cannot give a thermal expansion for this E(V) curve; the message says why."""


def poisson_factor(sigma: float) -> float:
    """f(σ) of the Debye temperature (Blanco et al. 2004); ≈ 0.8616 for σ = 0.25 (dimensionless)."""
    if not -1.0 < sigma < 0.5:
        raise ValueError(f"Poisson ratio {sigma} must lie in (-1, 0.5)")
    a = (2.0 / 3.0 * (1 + sigma) / (1 - 2 * sigma)) ** 1.5
    b = (1.0 / 3.0 * (1 + sigma) / (1 - sigma)) ** 1.5
    return (3.0 / (2 * a + b)) ** (1.0 / 3.0)


def debye_temperature(
    volume_A3: np.ndarray | float,
    bulk_modulus_GPa: np.ndarray | float,
    n_atoms: int,
    mass_amu: float,
    poisson_ratio: float = 0.25,
) -> np.ndarray:
    """θ_D = (ħ/k_B)(6π² V^½ n)^⅓ f(σ) √(B_S/M) in K, for a cell of volume V (Å³), n atoms and
    mass M (amu); B_S in GPa. Broadcasts over volume and bulk modulus."""
    v = np.asarray(volume_A3, dtype=float) * 1e-30
    b = np.asarray(bulk_modulus_GPa, dtype=float) * 1e9
    m = mass_amu * AMU_KG
    return (
        HBAR_OVER_KB
        * (6 * np.pi**2 * np.sqrt(v) * n_atoms) ** (1.0 / 3.0)
        * poisson_factor(poisson_ratio)
        * np.sqrt(b / m)
    )


@lru_cache(maxsize=1)
def _debye_table() -> tuple[np.ndarray, np.ndarray]:
    """D(x) tabulated on a log grid of x (dimensionless) by Gauss–Legendre quadrature."""
    x = np.geomspace(1e-4, 200.0, 4000)
    nodes, weights = np.polynomial.legendre.leggauss(96)
    upper = np.minimum(x, 60.0)  # the integrand is below 1e-20 past t = 60
    t = 0.5 * upper[:, None] * (nodes[None, :] + 1.0)
    integrand = t**3 / np.expm1(t)
    integral = 0.5 * upper * (integrand * weights[None, :]).sum(axis=1)
    return x, 3.0 / x**3 * integral


def debye_function(x: np.ndarray | float) -> np.ndarray:
    """The Debye function D(x) = (3/x³) ∫₀ˣ t³/(eᵗ − 1) dt (dimensionless; D(0) = 1)."""
    x = np.asarray(x, dtype=float)
    grid, table = _debye_table()
    inside = np.interp(np.log(np.clip(x, grid[0], grid[-1])), np.log(grid), table)
    small = 1.0 - 3.0 * x / 8.0 + x**2 / 20.0  # series for x → 0
    large = np.pi**4 / (5.0 * np.maximum(x, grid[-1]) ** 3)
    return np.where(x < grid[0], small, np.where(x > grid[-1], large, inside))


def debye_free_energy(theta_K: np.ndarray, temperature_K: np.ndarray, n_atoms: int) -> np.ndarray:
    """Vibrational free energy of the Debye model in eV per cell (broadcasts θ_D and T, in K):
    n k_B T [9θ/(8T) + 3 ln(1 − e^(−θ/T)) − D(θ/T)]."""
    theta = np.asarray(theta_K, dtype=float)
    t = np.asarray(temperature_K, dtype=float)
    x = theta / t
    return n_atoms * KB_EV * t * (9.0 * x / 8.0 + 3.0 * np.log(-np.expm1(-x)) - debye_function(x))


@dataclass(frozen=True)
class EOSFit:
    """A fitted equation of state.

    Attributes:
        name: pymatgen EOS name (``vinet`` or ``birch_murnaghan``).
        eos: the fitted pymatgen EOS object (``eos.func(V)`` gives E in eV).
        v0_A3, e0_eV: equilibrium cell volume (Å³) and energy (eV).
        b0_GPa, b1: bulk modulus (GPa) and its pressure derivative B′ (dimensionless).
        rms_meV_per_atom: root-mean-square fit residual.
    """

    name: str
    eos: object
    v0_A3: float
    e0_eV: float
    b0_GPa: float
    b1: float
    rms_meV_per_atom: float

    def energy(self, volume_A3: np.ndarray) -> np.ndarray:
        """E(V) in eV per cell."""
        return np.asarray(self.eos.func(np.asarray(volume_A3, dtype=float)), dtype=float)

    def bulk_modulus(self, volume_A3: np.ndarray) -> np.ndarray:
        """Static B_S(V) = V d²E/dV² in GPa (central differences on the fitted curve)."""
        v = np.asarray(volume_A3, dtype=float)
        h = 1e-4 * self.v0_A3
        d2 = (self.energy(v + h) - 2 * self.energy(v) + self.energy(v - h)) / h**2
        return v * d2 * EV_PER_A3_TO_GPA


def fit_eos(volumes_A3: np.ndarray, energies_eV: np.ndarray, n_atoms: int, name: str) -> EOSFit:
    """Fit E(V) (cell volumes in Å³, cell energies in eV) with pymatgen's EOS ``name``.

    Raises:
        QHAFailure: when the data are not convex, the fit fails, or B0, B′ or V0 are unphysical.
    """
    from pymatgen.analysis.eos import EOS

    if name not in EOS_NAMES:
        raise ValueError(f"unknown EOS {name!r}; choose from {EOS_NAMES}")
    v = np.asarray(volumes_A3, dtype=float)
    e = np.asarray(energies_eV, dtype=float)
    if not np.all(np.isfinite(e)):
        raise QHAFailure("the potential returned non-finite energies")
    i_min = int(np.argmin(e))
    if i_min in (0, len(e) - 1):
        side = "smallest" if i_min == 0 else "largest"
        raise QHAFailure(
            f"E(V) has its lowest energy at the {side} sampled volume "
            f"({v[i_min]:.4g} Å³): no minimum inside the sampled range"
        )
    try:
        eos = EOS(name).fit(v, e)
    except Exception as exc:  # pymatgen raises EOSError or scipy's RuntimeError
        raise QHAFailure(f"{name} EOS fit failed: {exc}") from exc
    b0 = float(eos.b0_GPa)
    b1 = float(eos.b1)
    v0 = float(eos.v0)
    rms = float(np.sqrt(np.mean((eos.func(v) - e) ** 2)) / n_atoms * 1e3)
    if not (np.isfinite(b0) and b0 > 0):
        raise QHAFailure(f"{name} fit gives a non-positive bulk modulus B0 = {b0:.3g} GPa")
    if not (np.isfinite(b1) and 1.0 < b1 < 20.0):
        raise QHAFailure(f"{name} fit gives an unphysical B′ = {b1:.3g} (allowed 1–20)")
    if not v.min() < v0 < v.max():
        raise QHAFailure(
            f"fitted V0 = {v0:.4g} Å³ lies outside the sampled volumes "
            f"{v.min():.4g}–{v.max():.4g} Å³"
        )
    return EOSFit(name, eos, v0, float(eos.e0), b0, b1, rms)


@dataclass(frozen=True)
class QHAResult:
    """Quasi-harmonic Debye results for one structure.

    Attributes:
        fit: the static EOS fit.
        temperatures_K: shape (nT,), the temperatures where G(V; T) has an interior minimum.
        volumes_A3: shape (nT,), equilibrium cell volume V(T).
        alpha_V_per_K: shape (nT,), α_V(T) = (1/V) dV/dT.
        debye_temperature_K: θ_D at the static V0.
        gruneisen: γ = −d ln θ_D / d ln V at V(300 K) (or V0 when 300 K is outside the range).
        truncated_at_K: the first requested temperature without a minimum, or None.
        minimum_in_sampled_range: whether V(T) stays inside the sampled volumes at every T.
    """

    fit: EOSFit
    temperatures_K: np.ndarray
    volumes_A3: np.ndarray
    alpha_V_per_K: np.ndarray
    debye_temperature_K: float
    gruneisen: float
    truncated_at_K: float | None
    minimum_in_sampled_range: bool


def quasi_harmonic(
    fit: EOSFit,
    n_atoms: int,
    mass_amu: float,
    temperatures_K: np.ndarray,
    *,
    poisson_ratio: float = 0.25,
    sampled_range_A3: tuple[float, float] | None = None,
    grid_range: tuple[float, float] = (0.7, 1.8),
    n_grid: int = 2201,
) -> QHAResult:
    """Minimise G(V; T) = E(V) + F_vib(θ_D(V), T) at p = 0 for each temperature.

    The volume grid (``grid_range`` × V0, ``n_grid`` points) is cut to the stable region around
    V0 where B_S(V) > 0; the first local minimum from small volumes is refined by a parabola through its three grid points.
    α_V(T) comes from central differences of V(T) on ``temperatures_K`` (shape (nT,), ascending,
    evenly spaced). Temperatures from the first one whose minimum reaches the edge of the stable
    region are dropped (``truncated_at_K``). Near the spinodal F_vib → −∞, so the
    physical (first local) minimum is taken, not the global one.

    Raises:
        QHAFailure: when no temperature up to and including 300 K has an interior minimum.
    """
    t = np.asarray(temperatures_K, dtype=float)
    step = t[1] - t[0] if len(t) > 1 else 10.0
    t_ext = np.concatenate([[max(t[0] - step, 1.0)], t, [t[-1] + step]])
    v = np.linspace(grid_range[0] * fit.v0_A3, grid_range[1] * fit.v0_A3, n_grid)
    b = fit.bulk_modulus(v)
    i0 = int(np.argmin(np.abs(v - fit.v0_A3)))
    unstable = np.flatnonzero(~(b > 0))
    lo = unstable[unstable < i0].max() + 1 if np.any(unstable < i0) else 0
    hi = unstable[unstable > i0].min() if np.any(unstable > i0) else len(v)
    v, b = v[lo:hi], b[lo:hi]
    theta = debye_temperature(v, b, n_atoms, mass_amu, poisson_ratio)
    g = fit.energy(v)[None, :] + debye_free_energy(theta[None, :], t_ext[:, None], n_atoms)
    # the first local minimum from small volumes: near the spinodal θ_D → 0 and F_vib → −∞,
    # a spurious global minimum that the physical branch must not jump to
    dg = np.diff(g, axis=1)
    is_min = (dg[:, :-1] < 0) & (dg[:, 1:] >= 0)
    interior = is_min.any(axis=1)
    k = np.argmax(is_min, axis=1) + 1
    if not interior.all():
        first_bad = int(np.argmin(interior))
        interior[first_bad:] = False
    kk = np.clip(k, 1, len(v) - 2)
    rows = np.arange(len(t_ext))
    g0, g1, g2 = g[rows, kk - 1], g[rows, kk], g[rows, kk + 1]
    denom = g0 - 2 * g1 + g2
    shift = np.where(denom > 0, 0.5 * (g0 - g2) / np.where(denom > 0, denom, 1.0), 0.0)
    v_eq = v[kk] + shift * (v[1] - v[0])
    n_ok = int(interior.sum())  # rows of t_ext with a minimum, a prefix
    usable = max(n_ok - 2, 0)  # central differences need both neighbours
    alpha = (v_eq[2 : usable + 2] - v_eq[:usable]) / (
        (t_ext[2 : usable + 2] - t_ext[:usable]) * v_eq[1 : usable + 1]
    )
    temps = t[:usable]
    if not np.any(temps >= min(300.0, t[-1])):
        where = f"{t_ext[n_ok]:.0f} K" if n_ok < len(t_ext) else "the end of the range"
        raise QHAFailure(
            f"G(V; T) has no minimum inside the stable volume range from {where} "
            f"(stable up to {v[-1] / fit.v0_A3:.2f} V0; soft or strongly anharmonic E(V), "
            f"B0 = {fit.b0_GPa:.3g} GPa, B′ = {fit.b1:.3g})"
        )
    if not np.all(np.isfinite(alpha)):
        raise QHAFailure("α_V(T) is not finite on the volume grid")
    truncated = float(t[usable]) if usable < len(t) else None
    v_temps = v_eq[1 : usable + 1]
    v_ref = float(np.interp(300.0, temps, v_temps)) if temps[0] <= 300.0 else fit.v0_A3
    h = 1e-3 * v_ref
    th = debye_temperature(
        np.array([v_ref - h, v_ref + h]),
        fit.bulk_modulus(np.array([v_ref - h, v_ref + h])),
        n_atoms,
        mass_amu,
        poisson_ratio,
    )
    gamma = float(-(np.log(th[1]) - np.log(th[0])) / (np.log(v_ref + h) - np.log(v_ref - h)))
    theta0 = float(debye_temperature(fit.v0_A3, fit.b0_GPa, n_atoms, mass_amu, poisson_ratio))
    in_range = True
    if sampled_range_A3 is not None:
        in_range = bool(np.all((v_temps >= sampled_range_A3[0]) & (v_temps <= sampled_range_A3[1])))
    return QHAResult(fit, temps, v_temps, alpha, theta0, gamma, truncated, in_range)
