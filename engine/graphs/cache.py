"""Graphs built once per structure and graph configuration: a memory cache and a disk cache.

:func:`build_many_cached` gives what ``GraphBuilder.build_many`` gives, but reuses graphs built
before:

* **Keys** are per structure (:func:`structure_key`): a BLAKE2 hash of the species and
  occupancies, lattice and fractional coordinates (exact float bytes), the ``GraphConfig``, the
  cache format (:data:`CACHE_VERSION`), the engine version and a hash of the builder's source
  (:func:`builder_stamp`). Partially overlapping data sets share work in memory.
* **Memory**: a thread-safe LRU of per-structure tensors bounded in bytes
  (:class:`GraphMemoryCache`, default 512 MiB). Every hit returns a *new* ``Data`` (the tensors
  are shared and never modified in place), so callers that attach ``y``, ``comp`` or a line
  graph to their inputs never see each other's attributes.
* **Disk**: one file per list of structures (its key hashes the per-structure keys), under
  ``home_dir()/cache/graphs/<key>.pt``: the graphs' tensors concatenated, written atomically
  (temporary file, then rename), read with ``torch.load(weights_only=True)`` (plain tensors,
  strings and ints; ``Data`` is rebuilt): one read per data set, not one per structure. A
  size cap (default 2 GiB) evicts the least recently used files first (a hit refreshes a
  file's time). An unreadable or inconsistent file is a miss, with a
  :class:`GraphCacheWarning`, and is rebuilt.

Graphs with isolated atoms (no neighbour within the cutoff) are rebuilt every time (flagged in
the file, never kept in memory), so the builder's warning comes on every build as before; a
graph that fails to build raises as before and nothing is written. ``CRYSTAL_SCREEN_GRAPH_CACHE=0`` (or
``build_many_cached(..., use_cache=False)``, or the :func:`graph_cache_disabled` context) turns
both caches off; benchmarks that time graph building use it.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import os
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from pymatgen.core import __version__ as pymatgen_version
from torch_geometric.data import Data

from engine.core.config import ENGINE_VERSION, home_dir
from engine.graphs import builder as builder_module
from engine.graphs import neighbors as neighbors_module
from engine.graphs.builder import GraphBuilder
from engine.io.output import atomic_write

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = [
    "CACHE_VERSION",
    "GraphCacheWarning",
    "GraphDiskCache",
    "GraphMemoryCache",
    "build_many_cached",
    "builder_stamp",
    "cache_enabled",
    "config_bytes",
    "default_disk_cache",
    "graph_cache_disabled",
    "memory_cache",
    "structure_key",
]

#: Bump when the graphs or the file layout change, so old entries are never reused.
CACHE_VERSION = 2

#: Per-node tensors of a graph, then per-edge ones (edge_index is (2, E)).
NODE_FIELDS = ("z", "species_z", "species_w", "pos")
EDGE_FIELDS = ("edge_dist", "edge_offset", "edge_cut_shell")
FIELDS = (*NODE_FIELDS, "cell", "edge_index", *EDGE_FIELDS)

_DISABLED: contextvars.ContextVar[bool] = contextvars.ContextVar("graph_cache_off", default=False)


class GraphCacheWarning(UserWarning):
    """A cached graph file could not be used (it is rebuilt) or written."""


def cache_enabled() -> bool:
    """False under ``CRYSTAL_SCREEN_GRAPH_CACHE=0`` (or ``false``/``off``/``no``) or inside
    :func:`graph_cache_disabled`."""
    env = os.environ.get("CRYSTAL_SCREEN_GRAPH_CACHE", "1").strip().lower()
    return env not in {"0", "false", "off", "no"} and not _DISABLED.get()


@contextlib.contextmanager
def graph_cache_disabled() -> Iterator[None]:
    """Inside the block (this thread or task), graphs are always built, nothing is cached."""
    token = _DISABLED.set(True)
    try:
        yield
    finally:
        _DISABLED.reset(token)


@functools.cache
def builder_stamp() -> str:
    """A hash of the graph builder's source (``engine/graphs/builder.py`` and ``neighbors.py``)
    and pymatgen's version (its neighbour search): any change to how graphs are built makes new
    keys, even without a :data:`CACHE_VERSION` bump."""
    source = b"".join(
        Path(module.__file__).read_bytes() for module in (builder_module, neighbors_module)
    )
    return hashlib.blake2b(source + pymatgen_version.encode(), digest_size=8).hexdigest()


def config_bytes(builder: GraphBuilder) -> bytes:
    """What every key of ``builder``'s graphs starts with: cache version, engine version,
    :func:`builder_stamp` and the ``GraphConfig``."""
    return (
        f"graphs v{CACHE_VERSION}\0engine {ENGINE_VERSION}\0builder {builder_stamp()}\0"
        f"{builder.config.model_dump_json()}\0"
    ).encode()


def structure_key(structure: Structure, prefix: bytes) -> str:
    """The key of one structure's graph: species and occupancies, lattice and fractional
    coordinates (exact), after ``prefix`` (:func:`config_bytes`: graph config, cache and engine
    versions)."""
    h = hashlib.blake2b(prefix, digest_size=20)
    sites = structure.sites
    # exact species and amounts of every site, ordered or not ("(Element Mn, 1)")
    h.update(repr([tuple(site.species.items()) for site in sites]).encode())
    h.update(b"\0")
    h.update(np.ascontiguousarray(structure.lattice.matrix, dtype=np.float64).tobytes())
    h.update(np.array([site.frac_coords for site in sites], dtype=np.float64).tobytes())
    return h.hexdigest()


def _fields(data: Data) -> dict[str, torch.Tensor]:
    return {name: data[name] for name in FIELDS}


def _nbytes(fields: dict[str, torch.Tensor]) -> int:
    return sum(t.element_size() * t.numel() for t in fields.values()) + 512


def _data(fields: dict[str, torch.Tensor], structure_id: str | None) -> Data:
    data = Data(**fields, num_nodes=int(fields["z"].shape[0]))
    if structure_id is not None:
        data.structure_id = structure_id
    return data


class GraphMemoryCache:
    """A thread-safe LRU of graphs' tensors by :func:`structure_key`, at most ``max_bytes``."""

    def __init__(self, max_bytes: int = 512 * 2**20) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._data: OrderedDict[str, tuple[dict[str, torch.Tensor], int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, torch.Tensor] | None:
        """The tensors under ``key`` (now the most recently used), or None."""
        with self._lock:
            found = self._data.get(key)
            if found is None:
                return None
            self._data.move_to_end(key)
            return found[0]

    def put(self, key: str, fields: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Store ``fields`` under ``key``, dropping the least recently used beyond the bound;
        returns what is stored: a tensor that is a slice of a larger one (a graph cut out of
        a batch or a file) is copied, so that the bound counts every byte kept alive."""
        size = _nbytes(fields)
        if size > self.max_bytes:
            return fields
        fields = {
            name: t.clone() if t.untyped_storage().nbytes() > t.element_size() * t.numel() else t
            for name, t in fields.items()
        }
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.nbytes -= old[1]
            self._data[key] = (fields, size)
            self.nbytes += size
            while self.nbytes > self.max_bytes:
                _, (_, dropped) = self._data.popitem(last=False)
                self.nbytes -= dropped
        return fields

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.nbytes = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)


class GraphDiskCache:
    """Lists of graphs on disk, one ``<key>.pt`` per list, at most ``max_bytes`` in all."""

    def __init__(self, root: Path | None = None, max_bytes: int = 2 * 2**30) -> None:
        self.root = Path(root) if root is not None else home_dir() / "cache" / "graphs"
        self.max_bytes = max_bytes

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def load(
        self, key: str, keys: Sequence[str]
    ) -> tuple[list[dict[str, torch.Tensor]], list[bool]] | None:
        """The graphs' tensors stored under ``key`` for the structures ``keys`` and which of
        them have isolated atoms, or None when absent; an unreadable or inconsistent file warns
        and counts as a miss."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            pack = torch.load(path, map_location="cpu", weights_only=True)
            graphs = _tensors_from_pack(pack, keys)
        except Exception as exc:  # noqa: BLE001 - any damage to the file is a miss
            warnings.warn(
                f"graph cache file {path} is unreadable ({type(exc).__name__}: "
                f"{exc}); rebuilding the graphs",
                GraphCacheWarning,
                stacklevel=3,
            )
            path.unlink(missing_ok=True)
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: evicted last
        return graphs

    def save(
        self,
        key: str,
        keys: Sequence[str],
        graphs: Sequence[dict[str, torch.Tensor]],
        isolated: Sequence[bool] | None = None,
    ) -> Path | None:
        """Store the graphs (and which have isolated atoms: those are rebuilt on load)
        atomically, then evict the oldest files beyond the cap; None when the folder cannot
        be written or the list alone exceeds the cap."""
        pack = _pack_tensors(keys, graphs, isolated)
        if (
            sum(t.element_size() * t.numel() for t in pack.values() if isinstance(t, torch.Tensor))
            > self.max_bytes
        ):
            return None
        path = self.path(key)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda tmp: torch.save(pack, tmp))
            self.evict()
        except OSError as exc:
            warnings.warn(
                f"graph cache not written to {path}: {exc}", GraphCacheWarning, stacklevel=3
            )
            return None
        return path

    def evict(self) -> None:
        """Delete the least recently used files until the total is under the cap (and
        temporary files that a killed writer left over an hour ago)."""
        files = []
        stale = time.time_ns() - 3600 * 10**9
        for entry in os.scandir(self.root):
            with contextlib.suppress(OSError):
                stat = entry.stat()
                if entry.name.endswith(".pt"):
                    files.append((stat.st_mtime_ns, stat.st_size, entry.path))
                elif entry.name.endswith(".tmp") and stat.st_mtime_ns < stale:
                    os.unlink(entry.path)
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.max_bytes:
                break
            with contextlib.suppress(OSError):
                os.unlink(path)
            total -= size


def _pack_tensors(
    keys: Sequence[str],
    graphs: Sequence[dict[str, torch.Tensor]],
    isolated: Sequence[bool] | None = None,
) -> dict:
    """One dict of concatenated tensors (and the keys), for ``torch.save``."""
    pack = {
        name: torch.cat([g[name] for g in graphs], dim=1 if name == "edge_index" else 0)
        for name in FIELDS
    }
    pack["n_nodes"] = torch.tensor([g["z"].shape[0] for g in graphs], dtype=torch.int64)
    pack["n_edges"] = torch.tensor([g["edge_dist"].shape[0] for g in graphs], dtype=torch.int64)
    pack["isolated"] = torch.tensor(list(isolated or [False] * len(keys)), dtype=torch.bool)
    pack["keys"] = list(keys)
    pack["version"] = CACHE_VERSION
    return pack


def _tensors_from_pack(
    pack: dict, keys: Sequence[str]
) -> tuple[list[dict[str, torch.Tensor]], list[bool]]:
    """The per-structure tensors of a pack and its isolated-atom flags; ValueError when it
    does not hold ``keys``."""
    if pack.get("version") != CACHE_VERSION or list(pack.get("keys", ())) != list(keys):
        raise ValueError("the file holds other structures or another cache version")
    n_nodes, n_edges = pack["n_nodes"].tolist(), pack["n_edges"].tolist()
    n, e = sum(n_nodes), sum(n_edges)
    parts: dict[str, tuple] = {}
    for name in FIELDS:
        tensor = pack[name]
        if name == "edge_index":
            if tensor.shape != (2, e):
                raise ValueError(f"edge_index has shape {tuple(tensor.shape)}, expected (2, {e})")
            parts[name] = torch.split(tensor, n_edges, dim=1)
            continue
        expected = {"cell": len(keys)}.get(name, n if name in NODE_FIELDS else e)
        if tensor.shape[0] != expected:
            raise ValueError(f"{name} has {tensor.shape[0]} rows, expected {expected}")
        parts[name] = torch.split(
            tensor,
            [1] * len(keys) if name == "cell" else n_nodes if name in NODE_FIELDS else n_edges,
        )
    isolated = pack["isolated"].tolist()
    if len(isolated) != len(keys):
        raise ValueError(f"{len(isolated)} isolated-atom flags for {len(keys)} graphs")
    return [{name: parts[name][k] for name in FIELDS} for k in range(len(keys))], isolated


#: The process-wide memory cache.
memory_cache = GraphMemoryCache()

_DISK: dict[Path, GraphDiskCache] = {}


def default_disk_cache() -> GraphDiskCache:
    """The disk cache under the current ``home_dir()``."""
    root = home_dir() / "cache" / "graphs"
    return _DISK.setdefault(root, GraphDiskCache(root))


def _isolated(fields: dict[str, torch.Tensor], cutoff: float) -> bool:
    """Whether an atom has no edge within the cutoff (padded fake edges lie beyond it)."""
    centers = fields["edge_index"][1].numpy()[fields["edge_dist"].numpy() <= cutoff]
    return bool(np.bincount(centers, minlength=fields["z"].shape[0]).min() == 0)


def build_many_cached(
    builder: GraphBuilder,
    structures: Iterable[Structure],
    ids: Sequence[str] | None = None,
    *,
    use_cache: bool | None = None,
    memory: GraphMemoryCache | None = None,
    disk: GraphDiskCache | None = None,
) -> list[Data]:
    """``builder.build_many(structures, ids)``, reusing cached graphs (see the module doc).

    Args:
        use_cache: False builds every graph; None (default) follows :func:`cache_enabled`.
        memory, disk: the caches (default: :data:`memory_cache`, :func:`default_disk_cache`).

    Raises:
        engine.graphs.builder.GraphBuildError: as ``build_many`` (errors are never cached).
    """
    structures = list(structures)
    ids = list(ids) if ids is not None else [None] * len(structures)
    if (
        not (cache_enabled() if use_cache is None else use_cache)
        or not structures
        or not isinstance(builder, GraphBuilder)
    ):
        return builder.build_many(structures, ids)
    memory = memory_cache if memory is None else memory
    disk = default_disk_cache() if disk is None else disk
    config = config_bytes(builder)
    keys = [structure_key(s, config) for s in structures]
    found: list = [memory.get(k) for k in keys]
    missing = [k for k, f in enumerate(found) if f is None]
    pack_key = hashlib.blake2b("\0".join(keys).encode(), digest_size=20).hexdigest()
    write = bool(missing) or not disk.path(pack_key).is_file()
    isolated = [False] * len(keys)
    if missing:
        loaded = disk.load(pack_key, keys)
        if loaded is not None:
            fields, isolated = loaded
            for k in missing:
                if not isolated[k]:
                    found[k] = memory.put(keys[k], fields[k])
            missing = [k for k in missing if isolated[k]]
            write = False
    if missing:
        built = builder.build_many([structures[k] for k in missing], [ids[k] for k in missing])
        for k, data in zip(missing, built):
            fields = _fields(data)
            isolated[k] = _isolated(fields, builder.config.cutoff)
            if not isolated[k]:  # else not cached in memory: its warning comes again next time
                memory.put(keys[k], fields)
            found[k] = (fields, data)
    if write:
        disk.save(pack_key, keys, [f[0] if isinstance(f, tuple) else f for f in found], isolated)
    return [f[1] if isinstance(f, tuple) else _data(f, i) for f, i in zip(found, ids)]
