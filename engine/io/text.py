"""Text helpers shared by the format parsers: ids from file names, decoding, pymatgen notes."""

from __future__ import annotations

import re
import warnings
from pathlib import PurePosixPath
from typing import Union

from pymatgen.core import Structure

from engine.io.entries import StructureReadError

__all__ = ["Parsed", "check_text_head", "decode_text", "shorten", "stem", "warning_notes"]

#: One parsed entry: (id, structure or the reason it failed, entry suffix such as " block 'x'",
#: the record's other fields for JSON lines).
Parsed = tuple[str, Union[Structure, StructureReadError], str, dict]  # noqa: UP007

#: Extensions removed from a file name to make an id.
_EXTENSIONS = (".cif", ".mcif", ".vasp", ".poscar", ".xyz", ".extxyz", ".jsonl", ".ndjson", ".json")


def stem(name: str) -> str:
    """File name without folders and format extensions (``a/b.jsonl.gz`` → ``b``)."""
    base = PurePosixPath(name.replace("\\", "/")).name
    base = base[:-3] if base.lower().endswith(".gz") else base
    for ext in _EXTENSIONS:
        if base.lower().endswith(ext):
            return base[: -len(ext)]
    return base


def shorten(text: str, limit: int = 160) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def decode_text(data: bytes) -> str:
    """Bytes of a text structure file as text: UTF-8 (BOM allowed), UTF-16 with a BOM, else
    Latin-1. Raises :class:`StructureReadError` for binary data or UTF-16 without a BOM."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise StructureReadError(f"invalid UTF-16 text: {exc.reason}") from exc
    check_text_head(data[:4096])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def check_text_head(head: bytes) -> None:
    """Refuse binary data or UTF-16 without a BOM, judged from the first bytes of a file."""
    if b"\x00" in head:
        if len(head) >= 8 and (
            head[1::2].count(0) > 0.9 * len(head[1::2])
            or head[0::2].count(0) > 0.9 * len(head[0::2])
        ):
            raise StructureReadError(
                "this looks like UTF-16 text without a byte-order mark; save it as UTF-8"
            )
        raise StructureReadError("this is a binary file, not a text structure file")


_BORING_WARNINGS = (
    "default value of primitive",
    "is not a valid element",
    "missing elements",
    "incorrect stoichiometry",
    "issues encountered while parsing",
)


def warning_notes(caught: list[warnings.WarningMessage]) -> str:
    notes: list[str] = []
    for w in caught:
        msg = shorten(str(w.message))
        if any(b in msg.lower() for b in _BORING_WARNINGS) or msg in notes:
            continue
        notes.append(msg)
    return f" (pymatgen: {'; '.join(notes[:2])})" if notes else ""
