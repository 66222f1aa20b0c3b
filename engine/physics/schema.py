"""Settings and result of the physics route to thermal expansion (:mod:`engine.physics.thermal`).

:class:`ThermalSettings` is the frozen recipe (temperatures in K, strains as volume fractions);
:class:`ThermalResult` is one structure's estimate (K, 1/K, GPa, Å³) and its JSON cache format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pymatgen.core import Structure

__all__ = ["ThermalResult", "ThermalSettings"]


class ThermalSettings(BaseModel):
    """How the physics route computes thermal expansion.

    Attributes:
        relax: relax positions and cell with the potential first (FIRE + FrechetCellFilter).
        tmin, tmax, tstep: the α_V(T) temperature grid in K (300 K is always computed).
        poisson_ratio: σ of the Debye temperature (AGL's default 0.25).
        eos: EOS form fitted to E(V) with pymatgen.
        volume_min, volume_max: sampled volumes as fractions of the (relaxed) input volume.
        n_volumes: number of isotropically scaled cells.
        relax_ions: relax the atomic positions at fixed cell at each volume (FIRE, ``relax_fmax``,
            at most ``relax_ions_steps`` steps) and use the relaxed energies; off by default
            (one batched energy call instead of a relaxation per volume; docs/physics.md).
        relax_fmax: force limit of the relaxation in eV/Å; relax_steps: its step limit.
        relax_ions_steps: step limit of each fixed-cell relaxation with ``relax_ions``.
        batch_structures: structures whose scaled cells go to the potential in one batch.
        use_cache: read and write the disk cache (not part of the cache key).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    relax: bool = False
    tmin: float = Field(100.0, gt=0)
    tmax: float = Field(1300.0, gt=0)
    tstep: float = Field(10.0, gt=0)
    poisson_ratio: float = Field(0.25, gt=-1, lt=0.5)
    eos: Literal["vinet", "birch_murnaghan"] = "birch_murnaghan"
    volume_min: float = Field(0.75, gt=0.5, lt=1)
    volume_max: float = Field(1.35, gt=1, lt=2)
    n_volumes: int = Field(13, ge=5, le=41)
    relax_ions: bool = False
    relax_fmax: float = Field(0.05, gt=0)
    relax_steps: int = Field(300, ge=1)
    relax_ions_steps: int = Field(100, ge=1)
    batch_structures: int = Field(8, ge=1)
    use_cache: bool = True

    @model_validator(mode="after")
    def _check(self) -> ThermalSettings:
        if self.tmax <= self.tmin:
            raise ValueError(f"tmax={self.tmax} K must exceed tmin={self.tmin} K")
        return self

    def cache_fields(self) -> dict:
        """The settings that change results (everything but caching and batching).

        ``relax_ions`` and its step limit enter only when on, so that the keys of results
        computed before the option existed (ions not relaxed) stay valid.
        """
        exclude = {"use_cache", "batch_structures"}
        if not self.relax_ions:
            exclude |= {"relax_ions", "relax_ions_steps"}
        return self.model_dump(exclude=exclude)


@dataclass(frozen=True)
class ThermalResult:
    """The physics estimate for one structure. Units: K, 1/K, GPa, Å³.

    ``status`` is ``"ok"`` (then ``alpha_V_per_K`` is NaN-free, ``reason`` may note a truncated
    curve) or ``"failed"`` (then ``reason`` says why and the curve is empty; fitted quantities
    known before the failure are kept, others are NaN).

    Attributes:
        temperatures_K, alpha_V_per_K: shape (nT,), α_V(T) = (1/V) dV/dT; the curve stops below
            ``tmax`` when G(V; T) loses its minimum (soft materials; ``reason`` says where).
        volume_A3: static equilibrium volume V0 per cell from the EOS fit.
        relaxed_volume_change: (V_relaxed − V_input)/V_input, None when not relaxed.
        potential: e.g. ``"CHGNet 0.3.0 (chgnet 0.4.2)"``.
        eos, fit_rms_meV_per_atom: EOS form and fit residual.
        minimum_in_sampled_range: V(T) stayed inside the sampled volumes over the curve.
        relaxed_structure: the relaxed cell (None when not relaxed).
        relax_ions: whether the ions were relaxed at each volume.
        ion_relax_unconverged: with ``relax_ions``, how many sampled volumes (re-centred samples
            included) did not reach ``relax_fmax`` within the step limit (their last energy is
            used and ``reason`` says so); None without ``relax_ions``.
        seconds: this structure's share of its batch's wall time (0 when from the cache).
    """

    id: str
    status: Literal["ok", "failed"]
    reason: str
    temperatures_K: np.ndarray
    alpha_V_per_K: np.ndarray
    cte_vol_300K_per_K: float
    debye_temperature_K: float
    bulk_modulus_GPa: float
    bulk_modulus_derivative: float
    gruneisen: float
    volume_A3: float
    relaxed_volume_change: float | None
    potential: str
    formula: str = ""
    n_atoms: int = 0
    eos: str = ""
    fit_rms_meV_per_atom: float = float("nan")
    minimum_in_sampled_range: bool = False
    relax_converged: bool | None = None
    relax_ions: bool = False
    ion_relax_unconverged: int | None = None
    relaxed_structure: Structure | None = field(default=None, compare=False)
    seconds: float = 0.0
    from_cache: bool = False

    def summary(self) -> dict:
        """One flat row (no curve), for tables and CSVs."""
        return {
            "id": self.id,
            "formula": self.formula,
            "n_atoms": self.n_atoms,
            "status": self.status,
            "reason": self.reason,
            "cte_vol_300K_per_K": self.cte_vol_300K_per_K,
            "debye_temperature_K": self.debye_temperature_K,
            "bulk_modulus_GPa": self.bulk_modulus_GPa,
            "bulk_modulus_derivative": self.bulk_modulus_derivative,
            "gruneisen": self.gruneisen,
            "volume_A3": self.volume_A3,
            "relaxed_volume_change": self.relaxed_volume_change,
            "relax_converged": self.relax_converged,
            "relax_ions": self.relax_ions,
            "ion_relax_unconverged": self.ion_relax_unconverged,
            "eos": self.eos,
            "fit_rms_meV_per_atom": self.fit_rms_meV_per_atom,
            "minimum_in_sampled_range": self.minimum_in_sampled_range,
            "t_max_reached_K": float(self.temperatures_K[-1])
            if len(self.temperatures_K)
            else float("nan"),
            "potential": self.potential,
            "seconds": self.seconds,
        }

    def to_json(self) -> dict:
        """A JSON-ready dict (the cache format)."""
        data = {k: v for k, v in self.__dict__.items() if k != "relaxed_structure"}
        data["temperatures_K"] = self.temperatures_K.tolist()
        data["alpha_V_per_K"] = self.alpha_V_per_K.tolist()
        data["relaxed_structure"] = (
            self.relaxed_structure.as_dict() if self.relaxed_structure is not None else None
        )
        return data

    @classmethod
    def from_json(cls, data: dict) -> ThermalResult:
        data = dict(data)
        data["temperatures_K"] = np.asarray(data["temperatures_K"], dtype=float)
        data["alpha_V_per_K"] = np.asarray(data["alpha_V_per_K"], dtype=float)
        if data.get("relaxed_structure") is not None:
            data["relaxed_structure"] = Structure.from_dict(data["relaxed_structure"])
        return cls(**data)
