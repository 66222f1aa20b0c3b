"""The universal interatomic potential (CHGNet, weights shipped in its wheel): loading, batched
static energies and relaxation with ASE's optimisers.

chgnet and torch are imported on first use only.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata

import numpy as np
from pymatgen.core import Structure

#: The CHGNet weights used (shipped in the chgnet wheel).
MODEL_NAME = "0.3.0"


def potential_name() -> str:
    """The potential and package version recorded in every output, e.g.
    ``"CHGNet 0.3.0 (chgnet 0.4.2)"``."""
    try:
        version = metadata.version("chgnet")
    except metadata.PackageNotFoundError:
        version = "not installed"
    return f"CHGNet {MODEL_NAME} (chgnet {version})"


@lru_cache(maxsize=1)
def load_potential():
    """The CHGNet model on CPU, loaded once per process.

    torch uses ``$CRYSTAL_SCREEN_THREADS`` threads when set, else all cores up to 4.

    Raises:
        RuntimeError: when chgnet is not installed (``pip install .[physics]``).
    """
    try:
        from chgnet.model import CHGNet
    except ImportError as exc:
        raise RuntimeError("the physics route needs chgnet: pip install -e '.[physics]'") from exc
    import torch

    threads = int(os.environ.get("CRYSTAL_SCREEN_THREADS", min(os.cpu_count() or 1, 4)))
    torch.set_num_threads(max(threads, 1))
    with contextlib.redirect_stdout(io.StringIO()):  # CHGNet prints its size on construction
        return CHGNet.load(model_name=MODEL_NAME, use_device="cpu", verbose=False)


def static_energies(structures: list[Structure], batch_size: int = 16) -> np.ndarray:
    """Total energies in eV per cell, shape (len(structures),), ions and cell as given."""
    model = load_potential()
    preds = model.predict_structure(structures, task="e", batch_size=batch_size)
    if isinstance(preds, dict):
        preds = [preds]
    per_atom = np.array([float(np.asarray(p["e"]).reshape(-1)[0]) for p in preds])
    return per_atom * np.array([len(s) for s in structures])


@dataclass(frozen=True)
class RelaxResult:
    """Outcome of a cell + positions relaxation.

    Attributes:
        structure: the last structure reached (the relaxed one when ``converged``).
        converged: whether the largest force (and the cell-filter stress term) fell below fmax.
        steps: optimiser steps taken.
        max_force_eV_per_A: the largest residual generalised force at the end.
        volume_change: (V_relaxed − V_input) / V_input (fraction).
        energy_eV: final energy per cell.
    """

    structure: Structure
    converged: bool
    steps: int
    max_force_eV_per_A: float
    volume_change: float
    energy_eV: float


def relax(
    structure: Structure,
    *,
    fmax: float = 0.05,
    steps: int = 300,
    optimizer: str = "FIRE",
    relax_cell: bool = True,
) -> RelaxResult:
    """Relax positions (and the cell through ASE's ``FrechetCellFilter``) with CHGNet.

    Args:
        structure: the input cell.
        fmax: force limit in eV/Å for convergence.
        steps: largest number of optimiser steps.
        optimizer: ``FIRE`` or ``BFGS`` (ASE).
        relax_cell: also relax the cell shape and volume at p = 0.
    """
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS, FIRE
    from chgnet.model.dynamics import CHGNetCalculator
    from pymatgen.io.ase import AseAtomsAdaptor

    optimisers = {"FIRE": FIRE, "BFGS": BFGS}
    if optimizer not in optimisers:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose from {sorted(optimisers)}")
    atoms = AseAtomsAdaptor.get_atoms(structure)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints the device it runs on
        atoms.calc = CHGNetCalculator(
            load_potential(), use_device="cpu", on_isolated_atoms="ignore"
        )
    target = FrechetCellFilter(atoms) if relax_cell else atoms
    opt = optimisers[optimizer](target, logfile=None)
    converged = bool(opt.run(fmax=fmax, steps=steps))
    forces = target.get_forces()
    relaxed = AseAtomsAdaptor.get_structure(atoms)
    relaxed = Structure(relaxed.lattice, relaxed.species, relaxed.frac_coords)
    return RelaxResult(
        structure=relaxed,
        converged=converged,
        steps=int(opt.get_number_of_steps()),
        max_force_eV_per_A=float(np.sqrt((forces**2).sum(axis=1)).max()),
        volume_change=relaxed.volume / structure.volume - 1.0,
        energy_eV=float(atoms.get_potential_energy()),
    )
