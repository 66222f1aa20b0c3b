"""The one streaming reader: sources → structures, per-entry errors and skipped files.

:func:`iter_entries` is what every entry point uses (``read_structures``, datasets, the screening
stream, the dashboard's uploads): :func:`engine.io.archive.walk` finds the files under one budget,
JSON lines stream line by line (each line capped), other formats are read whole (each file
capped), pre-scanned (:mod:`engine.io.formats`), parsed and validated
(:mod:`engine.io.validation`). Nothing a bad entry does stops the others, and no exception other
than ``TypeError`` (a source of the wrong type) leaves it.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from pymatgen.core import Structure

from engine.io.archive import Member, Source, display_name, iter_lines, read_whole, walk
from engine.io.entries import (
    DEFAULT_LIMITS,
    LimitExceeded,
    NamedStructure,
    ReadError,
    ReadLimits,
    Skipped,
    StructureBatch,
    StructureReadError,
)
from engine.io.formats import SUPPORTED_FORMATS, parse_jsonl_line, parse_text
from engine.io.text import Parsed, check_text_head, decode_text, stem
from engine.io.validation import clean_message, normalise, validate_structure

__all__ = [
    "Entry",
    "count_entries",
    "iter_batches",
    "iter_entries",
    "jsonl_records",
    "make_limits",
    "read_structure",
    "read_structures",
]

Entry = NamedStructure | ReadError | Skipped


def make_limits(limits: ReadLimits | None = None, **overrides: Any) -> ReadLimits:
    """``limits`` (default :data:`DEFAULT_LIMITS`) with the given fields replaced (None kept)."""
    base = limits or DEFAULT_LIMITS
    changes = {k: v for k, v in overrides.items() if v is not None}
    return replace(base, **changes) if changes else base


def _validated(parsed: Parsed, label: str, limits: ReadLimits) -> NamedStructure | ReadError:
    ident, result, suffix, fields = parsed
    where = f"{label}{suffix}"
    if isinstance(result, StructureReadError):
        return ReadError(where, result.reason)
    try:
        structure = normalise(result)
        validate_structure(structure, max_atoms=limits.max_atoms, min_distance=limits.min_distance)
    except StructureReadError as exc:
        return ReadError(where, exc.reason)
    except Exception as exc:  # noqa: BLE001 - never let a traceback through
        return ReadError(where, f"invalid structure: {clean_message(exc)}")
    return NamedStructure(id=ident, structure=structure, source=where, fields=fields)


#: Leading unparsable JSON lines held back to tell "not a JSON-lines file" from one bad line.
_HELD_ERRORS = 100


def _jsonl(member: Member, limits: ReadLimits) -> Iterator[Entry]:
    """Records of a JSON-lines member, one at a time; a file none of whose lines is JSON (up to
    :data:`_HELD_ERRORS` lines) is one error."""
    base = stem(member.name)
    with member.open(None) as fh:
        check_text_head(fh.peek(4096)[:4096])
        lines = (
            (n, line)
            for n, line in iter_lines(fh, limits.max_line_bytes)
            if line is None or line.strip()
        )
        first = next(lines, None)
        if first is None:
            yield ReadError(member.label, "the file is empty")
            return
        try:
            second = next(lines, None)
        except LimitExceeded:  # the budget ran out on line 2: line 1 still counts
            yield _jsonl_entry(member, first, f"{base}#0", limits)
            raise
        if second is None:
            yield _jsonl_entry(member, first, base, limits)
            return
        held: list[ReadError] | None = []
        try:
            for k, item in enumerate(itertools.chain([first, second], lines)):
                entry = _jsonl_entry(member, item, f"{base}#{k}", limits)
                if (
                    held is not None
                    and len(held) < _HELD_ERRORS
                    and isinstance(entry, ReadError)
                    and entry.reason.startswith("invalid JSON")
                ):
                    held.append(entry)
                    continue
                if held is not None:
                    yield from held
                    held = None
                yield entry
        except LimitExceeded:
            yield from held or []
            raise
        if held:
            yield ReadError(
                member.label,
                f"could not parse as JSON lines: no line is JSON "
                f"({held[0].source.removeprefix(member.label + ' ')}: {held[0].reason})",
            )


def _jsonl_entry(
    member: Member, item: tuple[int, bytes | None], fallback: str, limits: ReadLimits
) -> Entry:
    lineno, line = item
    where = f"{member.label} line {lineno}"
    if line is None:
        return ReadError(
            where,
            f"the line is longer than {limits.max_line_bytes} bytes (the line limit); skipped",
        )
    parsed = parse_jsonl_line(line, fallback, limits)
    entry = _validated(parsed, where, limits)
    if isinstance(entry, ReadError) and parsed[0] != fallback:  # name the record's own id
        return ReadError(f"{where} ({parsed[0][:80]})", entry.reason)
    return entry


def jsonl_records(
    path: str | os.PathLike,
    *,
    first: int,
    count: int,
    single: bool = False,
    limits: ReadLimits | None = None,
) -> Iterator[Entry]:
    """Records ``first`` … ``first + count − 1`` (0-based over non-blank lines) of one JSON-lines
    file, named as :func:`iter_entries` names them (``single``: the whole file is one record).
    For workers that each read their own slice of a large file."""
    limits = limits or DEFAULT_LIMITS
    for member in walk(path, limits):
        if not isinstance(member, Member):
            yield member
            continue
        base = stem(member.name)
        with member.open(None) as fh:
            lines = (
                (n, line)
                for n, line in iter_lines(fh, limits.max_line_bytes)
                if line is None or line.strip()
            )
            for k, item in enumerate(itertools.islice(lines, first, first + count), start=first):
                yield _jsonl_entry(member, item, base if single else f"{base}#{k}", limits)


def _member_entries(member: Member, limits: ReadLimits) -> Iterator[Entry]:
    if member.fmt == "jsonl":
        yield from _jsonl(member, limits)
        return
    data = read_whole(member, limits)
    parsed = parse_text(
        member.fmt, decode_text(data), member.name, limits, in_container=member.in_container
    )
    if parsed is None:
        yield Skipped(member.label, "JSON that holds no structure")
        return
    for entry in parsed:
        yield _validated(entry, member.label, limits)


def iter_entries(
    source: Source, *, limits: ReadLimits | None = None, name: str | None = None
) -> Iterator[Entry]:
    """Every structure, error and skipped file of ``source``, in reading order, streamed.

    Args:
        source: a path (file or folder, read recursively); raw ``bytes`` with ``name``; a
            ``(name, bytes)`` upload; an object with ``.name`` and ``.read()``; or an iterable
            mixing these. The file name decides the format.
        limits: the bounds of this read (default :data:`DEFAULT_LIMITS`), shared by everything
            ``source`` holds.
        name: the file name of raw ``bytes``, or the label shown for a path.

    Yields:
        :class:`NamedStructure` (JSON-lines records carry their other fields in ``fields``),
        :class:`ReadError` naming the file, line, block or entry and the reason, and
        :class:`Skipped` for files not read on purpose (unknown formats inside folders and
        archives, hidden names). A source that yields neither a structure nor an error gives one
        error ("no structure files found").

    Raises:
        TypeError: for ``bytes`` without ``name`` or an unsupported source type.
    """
    limits = limits or DEFAULT_LIMITS
    found = False
    label = name or _label(source)
    walker = walk(source, limits, name=name)
    try:
        for got in walker:
            if isinstance(got, Member):
                label = got.label
                for entry in _safe(got, limits):
                    found = found or not isinstance(entry, Skipped)
                    yield entry
            else:
                found = found or isinstance(got, ReadError)
                yield got
    except LimitExceeded as exc:  # the whole read's budget: one error, then stop
        found = True
        yield ReadError(label, exc.reason)
    if not found:
        yield ReadError(
            _label(source) if name is None else name,
            f"no structure files found; supported: {SUPPORTED_FORMATS}",
        )


def _safe(member: Member, limits: ReadLimits) -> Iterator[Entry]:
    try:
        yield from _member_entries(member, limits)
    except LimitExceeded as exc:
        if exc.total:
            raise
        yield ReadError(member.label, exc.reason)
    except StructureReadError as exc:
        yield ReadError(member.label, exc.reason)
    except RecursionError:
        yield ReadError(member.label, "nested too deeply to read")
    except MemoryError:
        yield ReadError(member.label, "too large to read in the memory available")
    except Exception as exc:  # noqa: BLE001 - zlib, zip, OS errors: this file only
        yield ReadError(member.label, f"could not read the file: {clean_message(exc)}")


def _label(source: Source) -> str:
    """How a source is named in messages: its file name, never a server folder."""
    if isinstance(source, (str, os.PathLike)):
        return display_name(source)
    if isinstance(source, tuple) and len(source) == 2 and isinstance(source[0], str):
        return display_name(source[0])
    if hasattr(source, "name"):
        return display_name(str(source.name))
    return "the input"


def read_structures(
    source: Source,
    *,
    name: str | None = None,
    max_atoms: int | None = None,
    min_distance: float | None = None,
    limits: ReadLimits | None = None,
) -> StructureBatch:
    """Read every structure from files, folders, archives or uploaded bytes.

    Args:
        source: as for :func:`iter_entries`.
        name: the file name of raw ``bytes``, or the label shown for a path.
        max_atoms: largest allowed number of sites per cell (overrides ``limits``).
        min_distance: smallest allowed interatomic distance in Å (overrides ``limits``).
        limits: all bounds of the read (default :data:`DEFAULT_LIMITS`).

    Returns:
        The loaded structures, one :class:`ReadError` per bad file or entry, and the skipped
        files. In folders and archives files of unknown format are skipped; an explicitly
        given file of unknown format is an error.

    Raises:
        TypeError: for ``bytes`` without ``name`` or an unsupported source type.
    """
    limits = make_limits(limits, max_atoms=max_atoms, min_distance=min_distance)
    batch = StructureBatch()
    for entry in iter_entries(source, limits=limits, name=name):
        batch.add(entry)
    return batch


def read_structure(source: Source, **kw: Any) -> Structure:
    """Read exactly one structure (``**kw`` as for :func:`read_structures`).

    Raises:
        StructureReadError: when the source holds no valid structure or more than one.
    """
    batch = read_structures(source, **kw)
    if batch.errors:
        first = batch.errors[0]
        more = f" (and {len(batch.errors) - 1} more errors)" if len(batch.errors) > 1 else ""
        raise StructureReadError(first.reason + more, source=first.source)
    if len(batch.items) != 1:
        where = kw.get("name") or (_label(source) if isinstance(source, (str, os.PathLike)) else "")
        raise StructureReadError(
            f"expected exactly one structure, found {len(batch.items)}", source=where
        )
    return batch.items[0].structure


def iter_batches(
    source: Source, *, chunk_size: int, limits: ReadLimits | None = None
) -> Iterator[StructureBatch]:
    """:func:`iter_entries` in batches of at most ``chunk_size`` structures (≥ 1); each batch
    carries the errors and skipped files met since the previous one."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    buffer = StructureBatch()
    for entry in iter_entries(source, limits=limits):
        buffer.add(entry)
        if len(buffer.items) >= chunk_size:
            yield buffer
            buffer = StructureBatch()
    if buffer.items or buffer.errors or buffer.skipped:
        yield buffer


def count_entries(source: Source, *, limits: ReadLimits | None = None) -> int:
    """About how many entries ``source`` holds, for progress bars, without parsing: non-empty
    JSON lines, plus one per other structure file. Reads under the same budget as a real read
    and stops counting where that read would stop."""
    limits = limits or DEFAULT_LIMITS
    total = 0
    try:
        for got in walk(source, limits):
            if not isinstance(got, Member):
                continue
            if got.fmt != "jsonl":
                total += 1
                continue
            try:
                with got.open(None) as fh:
                    for _, line in iter_lines(fh, limits.max_line_bytes):
                        total += line is None or bool(line.strip())
            except LimitExceeded:
                raise
            except Exception:  # noqa: BLE001 - the real read reports it
                total += 1
    except LimitExceeded:
        pass
    return total
