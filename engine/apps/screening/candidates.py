"""Candidates in, streamed in chunks: paths, uploads, datasets and structures held in memory, the
shipped SOFC examples and the generated candidate library.

JSON lines are read line by line, zip archives entry by entry and folders file by file, so memory
stays bounded by the chunk size (a single multi-structure CIF/XYZ/JSON file is read whole).
Entries that cannot be read or graphed are collected as :class:`~engine.io.ReadError` (source
and reason) on the batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path

from engine.io import (
    NamedStructure,
    ReadLimits,
    StructureBatch,
    count_entries,
    iter_batches,
    make_limits,
    read_structures,
)
from engine.io.datasets import LabelledDataset

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "Progress",
    "count_candidates",
    "example_items",
    "iter_candidates",
    "library_items",
    "open_candidates",
]

#: Structures per chunk: read, graphed and predicted together, then only their table rows kept.
DEFAULT_CHUNK_SIZE = 256

#: Progress callback: ``(entries read so far, expected total or None)``.
Progress = Callable[[int, "int | None"], None]


def _in_memory(source) -> StructureBatch | None:
    """``source`` as a batch when it is already in memory (dataset, batch, structure list)."""
    if isinstance(source, StructureBatch):
        return source
    if isinstance(source, LabelledDataset):
        return StructureBatch(items=list(source.items), errors=list(source.errors))
    if isinstance(source, NamedStructure):
        return StructureBatch(items=[source])
    if (
        isinstance(source, (list, tuple))
        and source
        and all(isinstance(s, NamedStructure) for s in source)
    ):
        return StructureBatch(items=list(source))
    return None


def _batches(source, chunk_size: int, limits: ReadLimits) -> Iterator[StructureBatch]:
    """In-memory sources as they are; everything else through :func:`engine.io.iter_batches`."""
    held = _in_memory(source)
    if held is not None:
        yield held
    elif (
        isinstance(source, list) and source and any(_in_memory(part) is not None for part in source)
    ):
        for part in source:
            yield from _batches(part, chunk_size, limits)
    else:
        yield from iter_batches(source, chunk_size=chunk_size, limits=limits)


def iter_candidates(
    source,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_atoms: int | None = None,
    min_distance: float | None = None,
    limits: ReadLimits | None = None,
) -> Iterator[StructureBatch]:
    """The candidates of ``source`` in chunks of at most ``chunk_size`` structures.

    Args:
        source: a file, folder or zip path (JSON lines streamed line by line, zips entry by
            entry, folders file by file, all under one :class:`~engine.io.ReadLimits` budget);
            an upload ``(name, bytes)`` or an object with ``.name`` and ``.read()``; a
            :class:`LabelledDataset`, :class:`StructureBatch` or list of
            :class:`NamedStructure`; or a list of any of these.
        chunk_size: structures per chunk (≥ 1).
        max_atoms, min_distance: validation limits (sites per cell; Å), overriding ``limits``.
        limits: bounds of the read (default :data:`engine.io.DEFAULT_LIMITS`).

    Yields:
        Batches of at most ``chunk_size`` items; each carries the errors and skipped files met
        since the previous one (a last batch may hold only errors).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    limits = make_limits(limits, max_atoms=max_atoms, min_distance=min_distance)
    buffer = StructureBatch()
    for unit in _batches(source, chunk_size, limits):
        buffer.extend(unit)
        while len(buffer.items) >= chunk_size:
            yield StructureBatch(
                items=buffer.items[:chunk_size], errors=buffer.errors, skipped=buffer.skipped
            )
            buffer = StructureBatch(items=buffer.items[chunk_size:])
    if buffer.items or buffer.errors or buffer.skipped:
        yield buffer


def count_candidates(source, *, limits: ReadLimits | None = None) -> int:
    """Entries ``source`` is expected to hold, for progress bars: JSON-lines records, structure
    files in folders and zips (a multi-structure file counts once), items in memory."""
    held = _in_memory(source)
    if held is not None:
        return len(held.items) + len(held.errors)
    if isinstance(source, list) and any(_in_memory(part) is not None for part in source):
        return sum(count_candidates(part, limits=limits) for part in source)
    return count_entries(source, limits=limits)


def open_candidates(spec: str):
    """A candidate source named on the command line: a path, ``examples`` (the shipped SOFC
    examples), ``library`` / ``library:FAMILY,FAMILY`` (:mod:`engine.materials.library`),
    ``sofc`` / ``sofc:NAME,NAME`` (the named SOFC materials of :mod:`engine.materials.sofc`), one
    SOFC material by name or abbreviation (``LSCF``), or a composition on a prototype
    (``"La0.6Sr0.4Co0.2Fe0.8O3 as perovskite"``)."""
    if Path(spec).exists():
        return spec
    from engine.materials.sofc import resolve_structure, sofc_batch

    if spec == "sofc" or spec.startswith("sofc:"):
        return sofc_batch([n for n in spec.partition(":")[2].split(",") if n] or None)
    named = resolve_structure(spec)
    if named is not None:
        return StructureBatch(items=[named])
    if spec == "examples":
        from engine.materials.examples import EXAMPLES_DIR

        return str(EXAMPLES_DIR)
    if spec == "library" or spec.startswith("library:"):
        from engine.materials.library import build_library, library_batch

        families = [f for f in spec.partition(":")[2].split(",") if f] or None
        return library_batch(build_library(families))
    raise ValueError(
        f"{spec!r} is neither a file or folder, 'examples', 'library', 'sofc', an "
        "SOFC material name (e.g. LSCF) nor 'FORMULA as perovskite|fluorite'"
    )


@lru_cache(maxsize=1)
def example_items() -> tuple[NamedStructure, ...]:
    """The shipped SOFC example structures (:data:`engine.materials.examples.EXAMPLES_DIR`),
    read once per process."""
    from engine.materials.examples import EXAMPLES_DIR

    return tuple(read_structures(EXAMPLES_DIR).items)


@lru_cache(maxsize=1)
def library_items() -> tuple[NamedStructure, ...]:
    """The generated candidate library (:func:`engine.materials.library.library_batch`, every
    family), built once per process."""
    from engine.materials.library import library_batch

    return tuple(library_batch().items)
