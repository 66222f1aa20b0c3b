"""Shared fixtures: small crystals built in code, and the shared data directory."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from engine.core.config import data_dir


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Keep user models and jobs of a test inside its tmp_path."""
    monkeypatch.setenv("CRYSTAL_SCREEN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CRYSTAL_SCREEN_NO_WARM_UP", "1")  # no UMAP compile behind the tests


@pytest.fixture(scope="session")
def shared_data():
    root = data_dir()
    if root is None:
        pytest.skip(
            "shared data directory not found (set CRYSTAL_SCREEN_DATA or put it at ../shared/data)"
        )
    return root


def nacl() -> Structure:
    """Rock-salt NaCl, a = 5.64 Å, as its 2-atom primitive cell."""
    conv = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    return conv.get_primitive_structure()


def srtio3() -> Structure:
    """Cubic perovskite SrTiO3, a = 3.905 Å."""
    return Structure(
        Lattice.cubic(3.905),
        ["Sr", "Ti", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )


def distorted() -> Structure:
    """A low-symmetry triclinic ternary cell with no equal distances (no ties at the cap)."""
    rng = np.random.default_rng(7)
    lattice = Lattice.from_parameters(4.1, 4.6, 5.3, 83.0, 97.0, 104.0)
    frac = np.array([[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0.25], [0, 0.5, 0.7], [0.3, 0.8, 0.1]])
    frac = frac + rng.normal(scale=0.03, size=frac.shape)
    return Structure(lattice, ["La", "Co", "O", "O", "O"], frac)


def equivalent_cells(structure: Structure) -> list[Structure]:
    """Cells of the same crystal as ``structure``: rotated and translated, three supercells
    (one sheared), and the last with its atoms shuffled; a model must predict the same for all."""
    from pymatgen.core.operations import SymmOp

    moved = structure.copy()
    moved.apply_operation(SymmOp.from_axis_angle_and_translation([1, 2, 3], 37.0))
    moved.translate_sites(range(len(moved)), [0.13, -0.4, 0.71], frac_coords=True)
    cells = [moved]
    for scaling in ([2, 1, 1], [2, 2, 2], [[1, 1, 0], [-1, 1, 0], [0, 0, 1]]):
        supercell = structure.copy()
        supercell.make_supercell(scaling)
        cells.append(supercell)
    order = np.random.default_rng(3).permutation(len(cells[-1]))
    cells.append(type(structure).from_sites([cells[-1][i] for i in order]))
    return cells


@pytest.fixture
def crystals() -> dict[str, Structure]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {"NaCl": nacl(), "SrTiO3": srtio3(), "distorted": distorted()}
