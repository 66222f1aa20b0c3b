"""Helpers for the dashboard tests: small structures and datasets, page navigation, texts."""

from __future__ import annotations

import base64
import json
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "dashboard" / "app.py"
TIMEOUT = 90

PEROVSKITES = [
    ("Sr", "Ti"),
    ("Ba", "Zr"),
    ("La", "Co"),
    ("La", "Fe"),
    ("Ca", "Ti"),
    ("Sr", "Fe"),
    ("Ba", "Ti"),
    ("La", "Mn"),
    ("La", "Ni"),
    ("Sr", "Co"),
    ("Ba", "Ce"),
    ("La", "Ga"),
]


def perovskite(a_el: str = "Sr", b_el: str = "Ti", a: float = 3.905):
    from pymatgen.core import Lattice, Structure

    return Structure(
        Lattice.cubic(a),
        [a_el, b_el, "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )


def cif_bytes(structure, name: str = "x") -> bytes:
    from pymatgen.io.cif import CifWriter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return str(CifWriter(structure)).replace("data_", f"data_{name}_", 1).encode()


def write_dataset(path: Path, n: int = 36, *, second_target: bool = False) -> Path:
    """Cubic perovskites with a CTE-like target (1/K) that grows with the lattice parameter;
    with ``second_target``, also the lattice parameter itself as ``lattice_a`` (Å)."""
    rng = np.random.default_rng(0)
    with open(path, "w") as fh:
        for k in range(n):
            a_el, b_el = PEROVSKITES[k % len(PEROVSKITES)]
            a = 3.8 + 0.5 * rng.random()
            fh.write(
                json.dumps(
                    {
                        "id": f"p{k}",
                        "lattice": [[a, 0, 0], [0, a, 0], [0, 0, a]],
                        "species": [a_el, b_el, "O", "O", "O"],
                        "frac_coords": [
                            [0, 0, 0],
                            [0.5, 0.5, 0.5],
                            [0.5, 0.5, 0],
                            [0.5, 0, 0.5],
                            [0, 0.5, 0.5],
                        ],
                        "agl_thermal_expansion_300K": 1e-5 * a + 2e-7 * (k % 5),
                        "note": "toy",
                    }
                    | ({"lattice_a": a} if second_target else {})
                )
                + "\n"
            )
    return path


def use_dataset(at, path: Path, label: str = "toy", limit=None):
    at.session_state["data_source"] = {
        "path": str(path),
        "label": label,
        "limit": limit,
        "query": None,
        "origin": "test",
    }


def goto(at, page: str):
    at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at) -> str:
    """Every markdown, caption, alert and header text on the page, joined."""
    parts = []
    for kind in (
        "markdown",
        "caption",
        "info",
        "warning",
        "error",
        "success",
        "title",
        "subheader",
        "header",
    ):
        parts += [str(e.value) for e in getattr(at, kind)]
    return "\n".join(parts)


def wait_job(job_id: str, timeout: float = 120):
    """The status of a training job once it reaches a final state (AssertionError after
    ``timeout`` seconds)."""
    from engine.apps.jobs.training import job_status, read_log

    deadline = time.time() + timeout
    while time.time() < deadline:
        status = job_status(job_id)
        if status.state.final:
            return status
        time.sleep(0.3)
    raise AssertionError(f"job {job_id}: {job_status(job_id)}\n{read_log(job_id)}")


def plotly_values(values) -> np.ndarray:
    """A plotly trace's array, whether plain or typed (``{"dtype", "bdata"}`` in JSON)."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
    return np.asarray(values)
