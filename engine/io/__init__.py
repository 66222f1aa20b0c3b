"""The io layer: reading structures from files, folders, archives and uploads, safely.

Imports only :mod:`engine.core.config`/:mod:`engine.core.units`, pymatgen (and ase for XYZ) and the
standard library. Public API:

* :func:`iter_entries` — the streaming reader every entry point uses;
* :func:`read_structures` / :func:`read_structure` — the same, collected;
* :func:`iter_batches` — the stream in chunks of structures;
* :class:`ReadLimits` (:data:`DEFAULT_LIMITS`, :func:`make_limits`) — the one budget;
* :func:`validate_structure`, :func:`structure_from_record`, :func:`record_id`,
  :func:`detect_format`, :func:`display_name`;
* :func:`write_csv`, :func:`atomic_write`, :func:`strict_json`, :func:`check_output_path` —
  safe outputs (:mod:`engine.io.output`);
* :class:`NamedStructure`, :class:`ReadError`, :class:`Skipped`, :class:`StructureBatch`,
  :class:`StructureReadError`.
"""

from __future__ import annotations

from engine.io.archive import detect_format, display_name
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
from engine.io.formats import SUPPORTED_FORMATS, record_id, structure_from_record
from engine.io.output import atomic_write, check_output_path, csv_text, strict_json, write_csv
from engine.io.reader import (
    Entry,
    count_entries,
    iter_batches,
    iter_entries,
    jsonl_records,
    make_limits,
    read_structure,
    read_structures,
)
from engine.io.text import stem
from engine.io.validation import validate_structure

__all__ = [
    "DEFAULT_LIMITS",
    "SUPPORTED_FORMATS",
    "Entry",
    "atomic_write",
    "check_output_path",
    "count_entries",
    "csv_text",
    "LimitExceeded",
    "NamedStructure",
    "ReadError",
    "ReadLimits",
    "Skipped",
    "StructureBatch",
    "StructureReadError",
    "detect_format",
    "display_name",
    "iter_batches",
    "iter_entries",
    "jsonl_records",
    "make_limits",
    "read_structure",
    "read_structures",
    "record_id",
    "stem",
    "strict_json",
    "structure_from_record",
    "validate_structure",
    "write_csv",
]
