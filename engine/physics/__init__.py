"""Physics route to thermal expansion: a universal interatomic potential (CHGNet) gives E(V),
the quasi-harmonic Debye model (AGL/GIBBS: Toher et al., PRB 90, 174107 (2014); Blanco,
Francisco & Luaña, Comput. Phys. Commun. 158, 57 (2004)) gives α_V(T), θ_D, B0, B′ and γ.

An app-level package: it may import the lower engine layers; only the CLI, jobs and the
dashboard import it. Importing it does not import chgnet or torch (that happens on the first
calculation).
"""

from engine.physics.schema import ThermalResult, ThermalSettings
from engine.physics.thermal import thermal_properties

__all__ = ["ThermalResult", "ThermalSettings", "thermal_properties"]
