"""Units of the target columns found in the shipped datasets (used for labels and model cards)."""

from __future__ import annotations

KNOWN_UNITS: dict[str, str] = {
    "agl_thermal_expansion_300K": "1/K",
    "agl_thermal_conductivity_300K": "W/(m·K)",
    "agl_debye": "K",
    "agl_heat_capacity_Cp_300K": "k_B/cell",
    "agl_heat_capacity_Cv_300K": "k_B/cell",
    "volume_atom": "Å³/atom",
    "density": "g/cm³",
    "e_form": "eV/atom",
    "formation_energy_per_atom": "eV/atom",
    "energy_per_atom": "eV/atom",
    "band_gap": "eV",
    "efermi": "eV",
    "K_VRH": "GPa",
    "G_VRH": "GPa",
    "log10_K_VRH": "log10(GPa)",
    "log10_G_VRH": "log10(GPa)",
    "homogeneous_poisson": "",
}


def unit_of(column: str) -> str:
    """The unit of a known target column, or an empty string when unknown."""
    return KNOWN_UNITS.get(column, "")
