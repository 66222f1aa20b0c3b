"""How targets and their units are shown: readable names and convenient scales.

Thermal expansion coefficients are stored in 1/K (about 1e-5) and shown as 10⁻⁶ K⁻¹, so that axis
ticks read 12.3 rather than 1.23e-05.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Readable names of known target columns.
PRETTY_NAMES: dict[str, str] = {
    "agl_thermal_expansion_300K": "Volumetric CTE at 300 K",
    "agl_thermal_conductivity_300K": "Thermal conductivity at 300 K",
    "agl_debye": "Debye temperature",
    "agl_heat_capacity_Cp_300K": "Heat capacity Cp at 300 K",
    "agl_heat_capacity_Cv_300K": "Heat capacity Cv at 300 K",
    "e_form": "Formation energy",
    "formation_energy_per_atom": "Formation energy",
    "final_energy_per_atom": "Energy per atom",
    "band_gap": "Band gap",
    "efermi": "Fermi energy",
    "K_VRH": "Bulk modulus",
    "G_VRH": "Shear modulus",
    "log10_K_VRH": "log10 bulk modulus",
    "log10_G_VRH": "log10 shear modulus",
    "log10_bulk_modulus": "log10 bulk modulus",
    "log10_shear_modulus": "log10 shear modulus",
    "poisson_ratio": "Poisson ratio",
    "homogeneous_poisson": "Poisson ratio",
    "volume_atom": "Volume per atom",
    "density": "Density",
}

#: Units shown ×10⁶ (value in 1/K → 10⁻⁶ K⁻¹).
_PER_KELVIN = {"1/K", "K^-1", "K-1", "K⁻¹", "/K"}


@dataclass(frozen=True)
class Display:
    """How to show one target: multiply values by ``factor`` and label them with ``unit``."""

    target: str
    name: str
    unit: str
    factor: float = 1.0

    @property
    def label(self) -> str:
        """Axis title, e.g. ``"Volumetric CTE at 300 K (10⁻⁶ K⁻¹)"``."""
        return f"{self.name} ({self.unit})" if self.unit else self.name

    def short(self, what: str) -> str:
        """E.g. ``short("MAE")`` → ``"MAE (10⁻⁶ K⁻¹)"``."""
        return f"{what} ({self.unit})" if self.unit else what

    def scale(self, values):
        """Values in display units (works on numbers, numpy arrays and pandas objects)."""
        return values * self.factor

    def fmt(self, value, digits: int = 3) -> str:
        """A value in display units with its unit, e.g. ``"3.91 10⁻⁶ K⁻¹"``; "–" when missing."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "–"
        v = float(value) * self.factor
        text = f"{v:.{digits}g}"
        return f"{text} {self.unit}" if self.unit else text


def display_for(target: str, unit: str | None = None) -> Display:
    """The display of a target column; ``unit`` defaults to the engine's known unit."""
    if unit is None:
        from engine import unit_of

        unit = unit_of(target)
    name = PRETTY_NAMES.get(target, target)
    if unit in _PER_KELVIN:
        return Display(target, name, "10⁻⁶ K⁻¹", 1e6)
    return Display(target, name, unit or "", 1.0)
