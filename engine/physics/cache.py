"""Disk cache of physics results, keyed by structure + result-changing settings + potential.

Entries live under :func:`cache_dir` as ``<key[:2]>/<key>.json`` (:meth:`ThermalResult.to_json`),
written atomically; an unreadable entry counts as a miss.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
from pymatgen.core import Structure

from engine.core.config import home_dir
from engine.physics.schema import ThermalResult, ThermalSettings

__all__ = [
    "RECIPE_VERSION",
    "cache_dir",
    "cache_key",
    "cached_result",
    "read_cache",
    "structure_hash",
    "write_cache",
]

#: Bump when a change to the recipe changes results, so old cache entries are not reused.
RECIPE_VERSION = 1


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


def read_cache(key: str) -> ThermalResult | None:
    """The cached result under ``key``, or None when absent or unreadable."""
    path = _cache_path(key)
    try:
        return ThermalResult.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def write_cache(key: str, result: ThermalResult) -> None:
    """Store ``result`` under ``key`` (atomic: a temporary file, then a rename)."""
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

    return read_cache(cache_key(structure, settings or ThermalSettings(), potential_name()))
