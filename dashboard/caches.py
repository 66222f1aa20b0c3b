"""Caches the dashboard shares between sessions: a bounded, locked LRU in memory and the
pooled crystal vectors on disk.

* :class:`LockedLRU`: least-recently-used, at most ``max_entries`` values, every access under
  one lock (Streamlit runs each session's script in its own thread), so a value read after a
  hit is the value found, never a key that vanished in between.
* Pooled vectors of a model and a set of structures are also kept on disk, under
  ``home_dir()/cache/embeddings/<key>.npz``, written atomically; a key holds the model
  reference, the model files' modification times (:func:`model_stamp`) and a hash of the
  structures (:func:`items_hash`), so a retrained model or changed data never reuses old vectors.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np

#: Files of a model directory whose change makes a model new (see :func:`model_stamp`).
MODEL_FILES = ("model.json", "weights.pt", "forest.skops")


class LockedLRU:
    """A thread-safe least-recently-used map with at most ``max_entries`` values."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value of ``key`` (now the most recently used), or ``default``."""
        with self._lock:
            if key not in self._data:
                return default
            self._data.move_to_end(key)
            return self._data[key]

    def put(self, key: Hashable, value: Any) -> Any:
        """Store ``value`` under ``key``, dropping the least recently used beyond the bound;
        returns ``value``."""
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)
        return value

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._data

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)


def model_stamp(ref: str) -> str:
    """The modification times (ns) of a model directory's files, or ``""`` for a model named
    without a directory (an original checkpoint, which does not change)."""
    path = Path(ref)
    if not path.is_dir():
        return ""
    stamps = []
    for name in MODEL_FILES:
        try:
            stamps.append(f"{name}:{(path / name).stat().st_mtime_ns}")
        except OSError:
            continue
    return "|".join(stamps)


#: Hashes of item lists seen recently, by the identity of their items (the value keeps the
#: items alive, so an identity cannot be reused while its entry exists).
_HASHES = LockedLRU(max_entries=8)


def items_hash(items) -> str:  # noqa: ANN001 - list of engine NamedStructure
    """A hash of the structures themselves: ids, species, lattice (Å) and fractional
    coordinates (rounded to 1e-6), in order. Remembered for the same item objects (datasets
    are cached objects), so a rerun does not hash a thousand structures again."""
    identity = tuple(map(id, items))
    found = _HASHES.get(identity)
    if found is not None:
        return found[1]
    h = hashlib.sha256()
    for item in items:
        s = item.structure
        h.update(item.id.encode())
        h.update(b"\0")
        h.update(" ".join(site.species_string for site in s).encode())
        h.update(np.round(s.lattice.matrix, 6).tobytes())
        h.update(np.round(s.frac_coords, 6).tobytes())
    return _HASHES.put(identity, (list(items), h.hexdigest()[:24]))[1]


def vectors_key(ref: str, items) -> str:  # noqa: ANN001
    """The cache key of the pooled vectors of model ``ref`` for ``items``: model reference,
    its :func:`model_stamp` and :func:`items_hash`."""
    text = f"{ref}\0{model_stamp(ref)}\0{items_hash(items)}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def cache_dir() -> Path:
    """Where pooled vectors are kept on disk: ``home_dir()/cache/embeddings``."""
    from engine import home_dir

    return home_dir() / "cache" / "embeddings"


def load_vectors(
    key: str, root: Path | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Vectors (N, D), positions of their items in the embedded list (N,) and predictions (N,)
    stored under ``key``, or None when absent or unreadable."""
    path = (root or cache_dir()) / f"{key}.npz"
    try:
        with np.load(path, allow_pickle=False) as npz:
            return npz["vectors"], npz["positions"], npz["predictions"]
    except (OSError, KeyError, ValueError):
        return None


def save_vectors(
    key: str,
    vectors: np.ndarray,
    positions: np.ndarray,
    predictions: np.ndarray,
    root: Path | None = None,
) -> Path | None:
    """Store what :func:`load_vectors` gives back, atomically; None when the folder cannot be
    written (the cache is then memory-only)."""
    from engine import atomic_write

    folder = root or cache_dir()
    path = folder / f"{key}.npz"
    try:
        folder.mkdir(parents=True, exist_ok=True)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, vectors=vectors, positions=positions, predictions=predictions)

        atomic_write(path, write)
    except OSError:
        return None
    return path
