"""What a read produces: structures with their names, per-entry errors, skipped files, limits."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pymatgen.core import Structure

__all__ = [
    "DEFAULT_LIMITS",
    "LimitExceeded",
    "NamedStructure",
    "ReadError",
    "ReadLimits",
    "Skipped",
    "StructureBatch",
    "StructureReadError",
]


@dataclass(frozen=True)
class ReadLimits:
    """Bounds on one read (one call of :func:`engine.io.iter_entries` or ``read_structures``).

    Attributes:
        max_atoms: most sites per cell; checked by a cheap pre-scan before the full parse
            (CIF atom-site rows, POSCAR counts line, extended-XYZ frame headers, JSON ``sites``).
        max_bytes: most bytes expanded in total (files, zip entries, gunzipped data), in bytes.
        max_file_bytes: most expanded bytes of one file or archive entry read whole (CIF,
            POSCAR, XYZ, JSON; a nested zip), in bytes.
        max_line_bytes: longest JSON line, in bytes; a longer line is one error, the rest reads.
        max_entries: most files and archive entries met in total.
        max_depth: how deep zip archives may nest (1: a zip, no zip inside it).
        min_distance: smallest interatomic distance in Å, periodic images included (0: off).
    """

    max_atoms: int = 500
    max_bytes: int = 512 * 1024**2
    max_file_bytes: int = 64 * 1024**2
    max_line_bytes: int = 4 * 1024**2
    max_entries: int = 100_000
    max_depth: int = 3
    min_distance: float = 0.5

    def __post_init__(self) -> None:
        for name in (
            "max_atoms",
            "max_bytes",
            "max_file_bytes",
            "max_line_bytes",
            "max_entries",
            "max_depth",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    def file_cap(self) -> int:
        """Bytes one whole-read file may expand to: the smaller of the file and total limits."""
        return min(self.max_file_bytes, self.max_bytes)


#: The limits used when none are given.
DEFAULT_LIMITS = ReadLimits()


@dataclass(frozen=True)
class NamedStructure:
    """A structure with the name it is known by.

    Attributes:
        id: file stem, CIF data-block name, record id, or ``"<file>#<n>"`` (0-based) for one of
            several unnamed entries of a multi-entry file.
        structure: the pymatgen structure (oxidation states removed; sites may be disordered,
            with occupancies summing to at most 1).
        source: where it came from, e.g. ``"upload.zip/a/b.cif"`` or ``"x.cif block 'abc'"``.
        fields: a JSON-lines record's other fields (labels, metadata); empty for other formats.
    """

    id: str
    structure: Structure
    source: str
    fields: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class ReadError:
    """An entry that could not be used.

    Attributes:
        source: file name and entry, e.g. ``"archive.zip/x.cif"``, ``"data.jsonl.gz line 17"``.
        reason: a human sentence saying what is wrong.
    """

    source: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


class Skipped(str):
    """A file that was deliberately not read: its label, with ``reason`` (e.g. ``"hidden"``)."""

    reason: str

    def __new__(cls, label: str, reason: str = "not a structure file format") -> Skipped:
        obj = super().__new__(cls, label)
        obj.reason = reason
        return obj


@dataclass
class StructureBatch:
    """Structures read from one or more sources, plus the entries that failed.

    Attributes:
        items: structures that loaded and passed validation, in reading order.
        errors: entries that failed, in reading order.
        skipped: files inside folders/archives that were not read (:class:`Skipped`: the label,
            with a ``reason`` such as a non-structure format or a hidden name).
    """

    items: list[NamedStructure] = field(default_factory=list)
    errors: list[ReadError] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[NamedStructure]:
        return iter(self.items)

    @property
    def ids(self) -> list[str]:
        """Ids of the loaded structures."""
        return [item.id for item in self.items]

    @property
    def structures(self) -> list[Structure]:
        """The loaded structures."""
        return [item.structure for item in self.items]

    def extend(self, other: StructureBatch) -> None:
        """Append another batch's items, errors and skipped files to this one."""
        self.items.extend(other.items)
        self.errors.extend(other.errors)
        self.skipped.extend(other.skipped)

    def add(self, entry: NamedStructure | ReadError | Skipped) -> None:
        """Append one entry of :func:`engine.io.iter_entries` to the right list."""
        if isinstance(entry, NamedStructure):
            self.items.append(entry)
        elif isinstance(entry, ReadError):
            self.errors.append(entry)
        else:
            self.skipped.append(entry)


class StructureReadError(ValueError):
    """A structure could not be read or failed validation.

    Attributes:
        source: the file/entry ("" when unknown).
        reason: the human reason alone.
    """

    def __init__(self, reason: str, source: str = "") -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}" if source else reason)


class LimitExceeded(StructureReadError):
    """A :class:`ReadLimits` bound was reached. ``total`` is True when the whole read must stop
    (total bytes or entries), False when only the current file or line is refused."""

    def __init__(self, reason: str, *, total: bool = False) -> None:
        super().__init__(reason)
        self.total = total
