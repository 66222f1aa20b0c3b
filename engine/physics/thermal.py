"""Thermal expansion from a universal potential: E(V) with CHGNet, then the quasi-harmonic Debye
model (:mod:`engine.physics.qha`); results are reused from :mod:`engine.physics.cache`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np
from pymatgen.core import Structure

from engine.io import NamedStructure
from engine.physics.cache import cache_key, read_cache, write_cache
from engine.physics.qha import QHAFailure, fit_eos, quasi_harmonic
from engine.physics.schema import ThermalResult, ThermalSettings

__all__ = ["energy_volume", "thermal_properties"]


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
            cached = read_cache(job.key) if settings.use_cache else None
            if cached is not None:
                job.done = replace(cached, id=job.id, seconds=0.0, from_cache=True)
            else:
                todo.append(job)
        if todo:
            _compute(todo, settings, potential)
            if settings.use_cache:
                for job in todo:
                    write_cache(job.key, job.done)
        for job in chunk:
            yield job.done
        done += len(chunk)
        if progress is not None:
            progress(done, total if total is not None else done)
