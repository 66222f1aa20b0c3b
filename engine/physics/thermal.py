"""Thermal expansion from a universal potential: E(V) with CHGNet, then the quasi-harmonic Debye
model (:mod:`engine.physics.qha`), with a disk cache keyed by structure + settings + potential.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pymatgen.core import Structure

from engine.core.config import home_dir
from engine.io import NamedStructure
from engine.physics.qha import QHAFailure, fit_eos, quasi_harmonic

#: Bump when a change to the recipe changes results, so old cache entries are not reused.
RECIPE_VERSION = 1


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


def cache_dir() -> Path:
    """Folder of cached physics results: ``home_dir()/cache/physics``."""
    return home_dir() / "cache" / "physics"


def structure_hash(structure: Structure) -> str:
    """SHA-256 of the lattice (Å), species and fractional coordinates, rounded to 1e-6."""
    payload = {
        "lattice": np.round(structure.lattice.matrix, 6).tolist(),
        "species": [site.species_string for site in structure],
        "frac": np.round(np.mod(structure.frac_coords, 1.0), 6).tolist(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def cache_key(structure: Structure, settings: ThermalSettings, potential: str) -> str:
    """Key of one result: structure hash + result-changing settings + potential + recipe."""
    payload = json.dumps(
        {
            "structure": structure_hash(structure),
            "settings": settings.cache_fields(),
            "potential": potential,
            "recipe": RECIPE_VERSION,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _cache_path(key: str) -> Path:
    return cache_dir() / key[:2] / f"{key}.json"


def _read_cache(key: str) -> ThermalResult | None:
    path = _cache_path(key)
    try:
        return ThermalResult.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _write_cache(key: str, result: ThermalResult) -> None:
    path = _cache_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{time.time_ns()}")
    tmp.write_text(json.dumps(result.to_json()))
    tmp.replace(path)


def cached_result(
    structure: Structure, settings: ThermalSettings | None = None
) -> ThermalResult | None:
    """The cached result for ``structure`` under ``settings``, or None (computes nothing)."""
    from engine.physics.potential import potential_name

    return _read_cache(cache_key(structure, settings or ThermalSettings(), potential_name()))


@dataclass
class _Job:
    """One structure on its way through the route."""

    id: str
    structure: Structure
    key: str
    relaxed: Structure | None = None
    centre: Structure | None = None
    relax_converged: bool | None = None
    volume_change: float | None = None
    volumes: np.ndarray | None = None
    energies: np.ndarray | None = None
    ion_unconverged: int = 0
    ion_sampled: int = 0
    ion_max_force: float = 0.0
    error: str | None = None
    note: str = ""
    done: ThermalResult | None = None


def _temperature_grid(settings: ThermalSettings) -> np.ndarray:
    """The computed grid: tmin … tmax in tstep, extended to include 300 K (K)."""
    lo, hi, step = settings.tmin, settings.tmax, settings.tstep
    if lo > 300.0:
        lo -= np.ceil((lo - 300.0) / step) * step
    if hi < 300.0:
        hi += np.ceil((300.0 - hi) / step) * step
    return np.arange(lo, hi + step / 2, step)


def _named(item: Structure | NamedStructure, index: int) -> tuple[str, Structure]:
    if isinstance(item, NamedStructure):
        return item.id, item.structure
    if isinstance(item, Structure):
        return f"{item.composition.reduced_formula}#{index}", item
    raise TypeError(f"entry {index} is a {type(item).__name__}, not a Structure")


def _scaled(structure: Structure, fractions: np.ndarray) -> list[Structure]:
    cells = []
    for f in fractions:
        s = structure.copy()
        s.scale_lattice(structure.volume * float(f))
        cells.append(s)
    return cells


def _relaxed_energies(jobs: list[_Job], fractions: np.ndarray, settings: ThermalSettings) -> None:
    """``relax_ions``: fill ``volumes``/``energies`` of every job with the energies of its scaled
    cells after relaxing the positions at fixed cell (one relaxation per volume); counts the
    volumes that did not converge. An exception fails that job only."""
    from engine.physics.potential import relax

    for job in jobs:
        cells = _scaled(job.centre or job.relaxed or job.structure, fractions)
        energies = []
        try:
            for cell in cells:
                out = relax(
                    cell,
                    fmax=settings.relax_fmax,
                    steps=settings.relax_ions_steps,
                    relax_cell=False,
                )
                energies.append(out.energy_eV)
                job.ion_sampled += 1
                if not out.converged:
                    job.ion_unconverged += 1
                    job.ion_max_force = max(job.ion_max_force, out.max_force_eV_per_A)
        except Exception as exc:  # noqa: BLE001 - recorded as the job's reason
            job.error = f"relaxing the ions at fixed volume failed: {exc}"
            continue
        job.volumes = np.array([c.volume for c in cells])
        job.energies = np.array(energies)


def _energies(
    jobs: list[_Job],
    fractions: np.ndarray,
    potential_batch: int,
    settings: ThermalSettings | None = None,
) -> None:
    """Fill ``volumes``/``energies`` of every job, one batch for all; a failing batch is retried
    one structure at a time so that one bad structure does not fail the others. With
    ``settings.relax_ions`` the ions are relaxed at each volume instead (no batching)."""
    from engine.physics.potential import static_energies

    if settings is not None and settings.relax_ions:
        _relaxed_energies(jobs, fractions, settings)
        return

    cells = [_scaled(job.centre or job.relaxed or job.structure, fractions) for job in jobs]
    try:
        flat = static_energies([c for group in cells for c in group], batch_size=potential_batch)
        per_job = np.split(flat, len(jobs))
    except Exception:  # noqa: BLE001 - isolate the culprit below
        per_job = []
        for job, group in zip(jobs, cells):
            try:
                per_job.append(static_energies(group, batch_size=potential_batch))
            except Exception as exc:  # noqa: BLE001 - recorded as the job's reason
                per_job.append(None)
                job.error = f"the potential failed on this structure: {exc}"
    for job, group, energies in zip(jobs, cells, per_job):
        if energies is not None:
            job.volumes = np.array([c.volume for c in group])
            job.energies = energies


def energy_volume(
    structure: Structure, settings: ThermalSettings | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """The recipe's E(V) sample of ``structure`` (no relaxation of the cell, no re-centring).

    Returns:
        Volumes in Å³ and energies in eV per cell of the ``n_volumes`` scaled cells (ions relaxed
        at each volume with ``settings.relax_ions``), and how many of those relaxations did not
        converge (0 without ``relax_ions``).

    Raises:
        RuntimeError: when the potential fails on the structure.
    """
    settings = settings or ThermalSettings()
    job = _Job("energy_volume", structure, "")
    fractions = np.linspace(settings.volume_min, settings.volume_max, settings.n_volumes)
    _energies([job], fractions, max(16, settings.n_volumes * 2), settings)
    if job.error:
        raise RuntimeError(job.error)
    return job.volumes, job.energies, job.ion_unconverged


def _needs_recentre(job: _Job) -> bool:
    """True when the lowest sampled energy sits at an end of the sampled volumes."""
    if job.energies is None:
        return False
    i = int(np.argmin(job.energies))
    return i in (0, len(job.energies) - 1)


def _ion_note(job: _Job, settings: ThermalSettings) -> str:
    """With ``relax_ions``: how many volumes did not converge, or ""."""
    if not settings.relax_ions or job.ion_unconverged == 0:
        return ""
    return (
        f"ions not converged at {job.ion_unconverged} of {job.ion_sampled} volumes within "
        f"{settings.relax_ions_steps} steps (largest residual force {job.ion_max_force:.3g} eV/Å "
        f"> {settings.relax_fmax} eV/Å); their last energies were used"
    )


def _joined(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _finish(job: _Job, settings: ThermalSettings, potential: str) -> ThermalResult:
    structure = job.relaxed or job.structure
    n = len(structure)
    mass = float(structure.composition.weight)
    common = dict(
        id=job.id,
        potential=potential,
        formula=structure.composition.reduced_formula,
        n_atoms=n,
        eos=settings.eos,
        relaxed_volume_change=job.volume_change,
        relax_converged=job.relax_converged,
        relaxed_structure=job.relaxed,
        relax_ions=settings.relax_ions,
        ion_relax_unconverged=job.ion_unconverged if settings.relax_ions else None,
    )
    nan = float("nan")
    note = _ion_note(job, settings)
    empty = np.array([], dtype=float)
    failed = dict(
        status="failed",
        temperatures_K=empty,
        alpha_V_per_K=empty,
        cte_vol_300K_per_K=nan,
        gruneisen=nan,
    )
    if job.error:
        return ThermalResult(
            reason=_joined(job.error, note),
            debye_temperature_K=nan,
            bulk_modulus_GPa=nan,
            bulk_modulus_derivative=nan,
            volume_A3=nan,
            **failed,
            **common,
        )
    try:
        fit = fit_eos(job.volumes, job.energies, n, settings.eos)
    except QHAFailure as exc:
        return ThermalResult(
            reason=_joined(str(exc), note),
            debye_temperature_K=nan,
            bulk_modulus_GPa=nan,
            bulk_modulus_derivative=nan,
            volume_A3=nan,
            **failed,
            **common,
        )
    fitted = dict(
        bulk_modulus_GPa=fit.b0_GPa,
        bulk_modulus_derivative=fit.b1,
        volume_A3=fit.v0_A3,
        fit_rms_meV_per_atom=fit.rms_meV_per_atom,
    )
    temps = _temperature_grid(settings)
    try:
        qha = quasi_harmonic(
            fit,
            n,
            mass,
            temps,
            poisson_ratio=settings.poisson_ratio,
            sampled_range_A3=(job.volumes.min(), job.volumes.max()),
        )
    except QHAFailure as exc:
        from engine.physics.qha import debye_temperature

        theta = float(debye_temperature(fit.v0_A3, fit.b0_GPa, n, mass, settings.poisson_ratio))
        return ThermalResult(
            reason=_joined(str(exc), note), debye_temperature_K=theta, **fitted, **failed, **common
        )
    keep = (qha.temperatures_K >= settings.tmin - 1e-9) & (
        qha.temperatures_K <= settings.tmax + 1e-9
    )
    reason = job.note
    if qha.truncated_at_K is not None and qha.truncated_at_K <= settings.tmax:
        reason = "; ".join(
            x
            for x in (
                reason,
                (
                    f"α_V(T) stops at {qha.temperatures_K[-1]:.0f} K: G(V; T) has no minimum in "
                    f"the stable volume range from {qha.truncated_at_K:.0f} K"
                ),
            )
            if x
        )
    return ThermalResult(
        status="ok",
        reason=_joined(reason, note),
        temperatures_K=qha.temperatures_K[keep],
        alpha_V_per_K=qha.alpha_V_per_K[keep],
        cte_vol_300K_per_K=float(np.interp(300.0, qha.temperatures_K, qha.alpha_V_per_K)),
        debye_temperature_K=qha.debye_temperature_K,
        gruneisen=qha.gruneisen,
        minimum_in_sampled_range=qha.minimum_in_sampled_range,
        **fitted,
        **common,
    )


def _order(job: _Job) -> None:
    """Give a disordered structure an ordered stand-in, since the potential needs whole atoms:
    one seeded ordering in the smallest supercell reproducing its occupancies
    (:func:`engine.materials.disorder.orderings`); said in the result's reason."""
    if job.structure.is_ordered:
        return
    from engine.materials.disorder import DisorderSettings, OrderingError, orderings

    try:
        job.structure = orderings(job.structure, DisorderSettings(mode="orderings", k=1))[0]
    except OrderingError as exc:
        job.error = f"disordered, and no ordered stand-in for the potential: {exc}"
        return
    job.note = (
        f"disordered: computed on one seeded ordering in a {len(job.structure)}-site supercell"
    )


def _relax(job: _Job, settings: ThermalSettings) -> None:
    from engine.physics.potential import relax

    try:
        out = relax(job.structure, fmax=settings.relax_fmax, steps=settings.relax_steps)
    except Exception as exc:  # noqa: BLE001 - recorded as the job's reason
        job.error = f"relaxation failed: {exc}"
        return
    job.relax_converged = out.converged
    job.volume_change = out.volume_change
    if not out.converged:
        job.error = (
            f"relaxation did not converge in {out.steps} steps (largest force "
            f"{out.max_force_eV_per_A:.3g} eV/Å > {settings.relax_fmax} eV/Å)"
        )
        job.relaxed = out.structure
        return
    if abs(out.volume_change) > 0.5:
        job.error = f"relaxation changed the volume by {out.volume_change:+.0%}: unstable cell"
    job.relaxed = out.structure


def _compute(jobs: list[_Job], settings: ThermalSettings, potential: str) -> None:
    """Relax (optionally), sample E(V) for all jobs in one batch, fit and run the model."""
    start = time.perf_counter()
    for job in jobs:
        _order(job)
    if settings.relax:
        for job in jobs:
            if job.error is None:
                _relax(job, settings)
    live = [job for job in jobs if job.error is None]
    fractions = np.linspace(settings.volume_min, settings.volume_max, settings.n_volumes)
    batch = max(16, settings.n_volumes * 2)
    if live:
        _energies(live, fractions, batch, settings)
    # one retry, centred on the lowest sampled energy, for minima at an end of the range
    again = [job for job in live if _needs_recentre(job)]
    for job in again:
        centre = job.volumes[int(np.argmin(job.energies))]
        job.centre = (job.relaxed or job.structure).copy()
        job.centre.scale_lattice(float(centre))
    if again:
        _energies(again, fractions, batch, settings)
    results = [_finish(job, settings, potential) for job in jobs]
    share = (time.perf_counter() - start) / len(jobs)
    for job, result in zip(jobs, results):
        job.done = replace(result, seconds=share)


def thermal_properties(
    structures: Iterable[Structure | NamedStructure],
    settings: ThermalSettings | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[ThermalResult]:
    """Quasi-harmonic Debye thermal expansion of each structure, in input order.

    Structures are taken ``settings.batch_structures`` at a time; their scaled cells go to the
    potential as one batch. Results are read from and written to the disk cache
    (:func:`cache_dir`) unless ``settings.use_cache`` is off.

    Args:
        structures: pymatgen structures (id ``<formula>#<index>``) or named structures.
        settings: the recipe (default :class:`ThermalSettings()`).
        progress: called as ``progress(done, total)`` after each chunk; total is the length of
            ``structures`` when it has one, else the count so far.

    Yields:
        One :class:`ThermalResult` per structure; failures are results with status ``failed``.
    """
    from engine.physics.potential import potential_name

    settings = settings or ThermalSettings()
    potential = potential_name()
    total = len(structures) if hasattr(structures, "__len__") else None
    items = iter(structures)
    done = 0
    index = 0
    while True:
        chunk: list[_Job] = []
        for item in items:
            ident, structure = _named(item, index)
            index += 1
            chunk.append(_Job(ident, structure, cache_key(structure, settings, potential)))
            if len(chunk) >= settings.batch_structures:
                break
        if not chunk:
            return
        todo = []
        for job in chunk:
            cached = _read_cache(job.key) if settings.use_cache else None
            if cached is not None:
                job.done = replace(cached, id=job.id, seconds=0.0, from_cache=True)
            else:
                todo.append(job)
        if todo:
            _compute(todo, settings, potential)
            if settings.use_cache:
                for job in todo:
                    _write_cache(job.key, job.done)
        for job in chunk:
            yield job.done
        done += len(chunk)
        if progress is not None:
            progress(done, total if total is not None else done)
