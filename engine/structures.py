"""Read crystal structures and validate them: the public names, kept for existing callers.

The implementation lives in the io layer, :mod:`engine.io` (one archive walker with one budget,
format parsers with an atom-count pre-scan, validation). Every entry that cannot be used becomes a
:class:`ReadError` that names the file (and the line, block or entry inside it) and gives a human
reason; the other entries still load. Lengths are in Å throughout.
"""

from __future__ import annotations

from engine.io import (
    DEFAULT_LIMITS,
    SUPPORTED_FORMATS,
    NamedStructure,
    ReadError,
    ReadLimits,
    Skipped,
    StructureBatch,
    StructureReadError,
    detect_format,
    iter_entries,
    read_structure,
    read_structures,
    record_id,
    structure_from_record,
    validate_structure,
)

__all__ = [
    "MAX_ARCHIVE_BYTES",
    "MAX_ARCHIVE_DEPTH",
    "SUPPORTED_FORMATS",
    "NamedStructure",
    "ReadError",
    "ReadLimits",
    "Skipped",
    "StructureBatch",
    "StructureReadError",
    "detect_format",
    "iter_entries",
    "read_structure",
    "read_structures",
    "record_id",
    "structure_from_record",
    "validate_structure",
]

#: Default largest total expanded size of one read, in bytes (``ReadLimits.max_bytes``).
MAX_ARCHIVE_BYTES = DEFAULT_LIMITS.max_bytes
#: Default deepest nesting of zip archives (``ReadLimits.max_depth``).
MAX_ARCHIVE_DEPTH = DEFAULT_LIMITS.max_depth
