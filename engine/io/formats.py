"""Parsers for the structure formats, each behind a cheap pre-scan of the atom count.

Formats: CIF (one or many data blocks), POSCAR/CONTCAR, extended XYZ with a ``Lattice=`` header
(one or many frames), pymatgen ``Structure.as_dict()`` JSON (one, a list, or id → structure), and
JSON lines (``lattice`` 3×3 Å, ``species``, ``frac_coords``; one record per line). Every parser
returns :data:`Parsed` tuples; a bad block, frame or entry is a :class:`StructureReadError` beside
the good ones. The pre-scan (CIF atom-site rows and symmetry operations, the POSCAR counts line,
XYZ frame headers, JSON ``sites``/``species`` lengths) refuses cells over ``max_atoms`` before
pymatgen spends quadratic time on them, and catches wrong inputs pymatgen reads silently: POSCAR
counts that disagree with the coordinate lines, non-positive CIF cell lengths, two atoms at one
CIF position.
"""

from __future__ import annotations

import io
import json
import math
import re
import warnings
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any, Union

import numpy as np
from pymatgen.core import Lattice, Structure
from pymatgen.core.periodic_table import DummySpecies, get_el_sp

from engine.io.entries import ReadLimits, StructureReadError
from engine.io.validation import OCCUPANCY_TOLERANCE, clean_message, element_symbols

__all__ = [
    "ID_KEYS",
    "SUPPORTED_FORMATS",
    "Parsed",
    "check_text_head",
    "decode_text",
    "parse_jsonl_line",
    "parse_text",
    "record_id",
    "stem",
    "structure_from_record",
]

#: Human list of the accepted formats, used in error messages.
SUPPORTED_FORMATS = (
    "CIF (.cif), POSCAR/CONTCAR (POSCAR*, CONTCAR*, .vasp, .poscar), extended XYZ with a "
    "Lattice (.xyz, .extxyz), pymatgen Structure JSON (.json), JSON lines (.jsonl), "
    "gzipped versions of these (.gz), folders and .zip archives"
)
#: Keys tried, in order, for a record's id.
ID_KEYS = ("id", "material_id", "auid", "mp_id")
#: Extensions removed from a file name to make an id.
_EXTENSIONS = (".cif", ".mcif", ".vasp", ".poscar", ".xyz", ".extxyz", ".jsonl", ".ndjson", ".json")
_STRUCTURE_KEYS = frozenset({"lattice", "species", "frac_coords"})

#: One parsed entry: (id, structure or the reason it failed, entry suffix such as " block 'x'",
#: the record's other fields for JSON lines).
Parsed = tuple[str, Union[Structure, StructureReadError], str, dict]  # noqa: UP007


def stem(name: str) -> str:
    """File name without folders and format extensions (``a/b.jsonl.gz`` → ``b``)."""
    base = PurePosixPath(name.replace("\\", "/")).name
    base = base[:-3] if base.lower().endswith(".gz") else base
    for ext in _EXTENSIONS:
        if base.lower().endswith(ext):
            return base[: -len(ext)]
    return base


def _shorten(text: str, limit: int = 160) -> str:
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


# ----------------------------------------------------------------------------------------------
# Records (JSON lines and JSON)


def record_id(record: dict, fallback: str) -> str:
    """The id of a record: the first of ``id``, ``material_id``, ``auid``, ``mp_id`` that is set.

    Args:
        record: a JSON object.
        fallback: returned when none of the keys holds a non-empty value.
    """
    for key in ID_KEYS:
        value = record.get(key)
        if value is not None and not isinstance(value, (dict, list)) and str(value).strip():
            return str(value).strip()
    return fallback


def _parse_species(sp: Any) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = get_el_sp(sp)
    except Exception as exc:
        raise StructureReadError(f"unknown element '{_shorten(str(sp), 40)}'") from exc
    if isinstance(parsed, DummySpecies):
        raise StructureReadError(f"unknown element '{_shorten(str(sp), 40)}'")
    return parsed


def structure_from_record(record: dict, *, max_atoms: int | None = None) -> Structure:
    """Build a structure of plain elements from a JSON-lines record (not validated).

    Args:
        record: with ``lattice`` (3×3, Å, rows a, b, c), ``species`` (element symbols, one per
            site) and ``frac_coords`` (N×3).
        max_atoms: refuse more species than this before building anything (None: no check).

    Raises:
        StructureReadError: when a key is missing, shapes disagree or a species is unknown.
    """
    missing = [k for k in ("lattice", "species", "frac_coords") if record.get(k) is None]
    if missing:
        raise StructureReadError(
            "the record has no " + " or ".join(f"'{k}'" for k in missing) + " (no structure)"
        )
    species = record["species"]
    if isinstance(species, str) or not isinstance(species, list):
        raise StructureReadError("'species' must be a list of element symbols")
    if max_atoms is not None and len(species) > max_atoms:
        raise StructureReadError(
            f"{len(species)} sites is more than the limit of {max_atoms} "
            "atoms per cell (--max-atoms)"
        )
    try:
        lattice = np.asarray(record["lattice"], dtype=float)
        coords = np.asarray(record["frac_coords"], dtype=float)
    except (TypeError, ValueError) as exc:
        raise StructureReadError(
            f"'lattice'/'frac_coords' are not numbers: {clean_message(exc)}"
        ) from exc
    if lattice.shape != (3, 3):
        raise StructureReadError(f"'lattice' must be 3×3, got shape {lattice.shape}")
    if len(species) == 0:
        raise StructureReadError("the structure has no atoms")
    if coords.shape != (len(species), 3):
        raise StructureReadError(
            f"'frac_coords' has shape {coords.shape} but there are {len(species)} species"
        )
    known = element_symbols()
    clean: list[Any] = []
    plain = True
    for sp in species:
        if isinstance(sp, str) and sp in known:
            clean.append(sp)
        else:
            clean.append(_parse_species(sp))
            plain = False
    try:
        structure = Structure(Lattice(lattice), clean, coords)
    except Exception as exc:
        raise StructureReadError(f"could not build the structure: {clean_message(exc)}") from exc
    if not plain:
        structure.remove_oxidation_states()  # e.g. "Fe2+" → Fe
    return structure


def _is_structure_dict(obj: Any) -> bool:
    if not isinstance(obj, dict):
        return False
    if obj.get("@class") == "Structure" or ("lattice" in obj and "sites" in obj):
        return True
    return "lattice" in obj and "species" in obj and "frac_coords" in obj


def _check_sites(sites: Any, max_atoms: int) -> None:
    """Pre-check a pymatgen dict's ``sites``: count and per-site occupancy sums."""
    if not isinstance(sites, list):
        raise StructureReadError("'sites' must be a list")
    if len(sites) > max_atoms:
        raise StructureReadError(
            f"{len(sites)} sites is more than the limit of {max_atoms} atoms per cell (--max-atoms)"
        )
    for i, site in enumerate(sites):
        species = site.get("species") if isinstance(site, dict) else None
        if not isinstance(species, list):
            continue  # pymatgen reports the malformed site
        try:
            total = sum(float(sp.get("occu", 1.0)) for sp in species if isinstance(sp, dict))
        except (TypeError, ValueError):
            continue
        if total > OCCUPANCY_TOLERANCE:
            label = site.get("label")
            named = f"site {i}" + (f" (label '{label}')" if label else "")
            raise StructureReadError(
                f"the occupancies of {named} sum to {total:g}, more than 1: "
                "two atoms at one position?"
            )


def _structure_from_any_dict(obj: dict, max_atoms: int) -> Structure:
    if "sites" in obj:
        _check_sites(obj["sites"], max_atoms)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return Structure.from_dict(obj)
        except Exception as exc:
            raise StructureReadError(
                f"could not read the pymatgen Structure dict: {clean_message(exc)}"
            ) from exc
    return structure_from_record(obj, max_atoms=max_atoms)


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise StructureReadError(
            f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from exc
    except RecursionError as exc:
        raise StructureReadError("invalid JSON: nested too deeply") from exc


def _parse_json(
    text: str, name: str, limits: ReadLimits, *, in_container: bool
) -> list[Parsed] | None:
    """A ``.json`` file; ``None`` means "not a structure file" (skipped in folders)."""
    obj = _loads(text)
    entries: list[tuple[str | None, Any]]
    if _is_structure_dict(obj):
        entries = [(None, obj)]
    elif isinstance(obj, list) and obj and all(_is_structure_dict(o) for o in obj):
        entries = [(None, o) for o in obj]
    elif isinstance(obj, dict) and obj and all(_is_structure_dict(v) for v in obj.values()):
        entries = [(str(k), v) for k, v in obj.items()]
    else:
        if in_container:
            return None
        raise StructureReadError(
            "this JSON holds no structure: expected a pymatgen Structure dict "
            "(Structure.as_dict()), a list of them, or a record with lattice/species/frac_coords"
        )
    single = len(entries) == 1
    out: list[Parsed] = []
    for n, (key, obj_n) in enumerate(entries):
        fallback = stem(name) if single else f"{stem(name)}#{n}"
        ident = key if key is not None else record_id(obj_n, fallback)
        suffix = "" if single else (f" entry '{key}'" if key is not None else f" entry {n}")
        try:
            out.append((ident, _structure_from_any_dict(obj_n, limits.max_atoms), suffix, {}))
        except StructureReadError as exc:
            out.append((ident, exc, suffix, {}))
    return out


def parse_jsonl_line(line: bytes, fallback: str, limits: ReadLimits) -> Parsed:
    """One JSON-lines record: ``(id, structure or error, "", scalar fields)``."""
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return (
            fallback,
            StructureReadError(
                f"not valid UTF-8 (byte 0x{line[exc.start]:02x} at column {exc.start + 1})"
            ),
            "",
            {},
        )
    try:
        record = _loads(text)
    except StructureReadError as exc:
        return fallback, StructureReadError(exc.reason.replace(" (line 1, ", " (")), "", {}
    if not isinstance(record, dict):
        return fallback, StructureReadError("the line is not a JSON object"), "", {}
    ident = record_id(record, fallback)
    fields = {k: v for k, v in record.items() if k not in _STRUCTURE_KEYS and k != "sites"}
    try:
        return ident, _structure_from_any_dict(record, limits.max_atoms), "", fields
    except StructureReadError as exc:
        return ident, exc, "", fields


# ----------------------------------------------------------------------------------------------
# CIF

_TOKEN = re.compile(r"'[^']*'|\"[^\"]*\"|\S+")
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_SYMOP_TAGS = ("_symmetry_equiv_pos_as_xyz", "_space_group_symop_operation_xyz")
#: Most symmetry operations of any space group (assumed when a CIF names a group but lists none).
_MAX_SYMOPS = 192


def _cif_number(token: str) -> float | None:
    """A CIF number such as ``5.431(2)``; None for ``?``, ``.`` or text."""
    m = _NUMBER.match(token.strip("'\""))
    return float(m.group(0)) if m else None


def _split_blocks(text: str) -> list[tuple[str, str]]:
    """``(block name, block text)`` of each ``data_`` block (text before the first dropped)."""
    starts = [m for m in re.finditer(r"(?im)^[ \t]*data_(\S*)", text)]
    return [
        (m.group(1), text[m.start() : nxt.start() if nxt else len(text)])
        for m, nxt in zip(starts, [*starts[1:], None])
    ]


def _cif_loops(text: str) -> Iterator[tuple[list[str], list[str]]]:
    """``(tags, value tokens)`` of every ``loop_`` (semicolon text fields are skipped)."""
    tags: list[str] = []
    values: list[str] = []
    in_loop = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        low = line.lower()
        if low.startswith(("loop_", "data_")) or (low.startswith("_") and values):
            if in_loop and tags:
                yield tags, values
            tags, values, in_loop = [], [], low.startswith("loop_")
            if not low.startswith("_"):
                continue
        if not in_loop:
            continue
        if line.startswith("_") and not values:
            tags.append(low.split()[0])
        elif not line.startswith(";"):
            values.extend(_TOKEN.findall(line))
    if in_loop and tags:
        yield tags, values


def _prescan_cif(block: str, limits: ReadLimits) -> None:
    """Refuse a CIF block before parsing: non-positive cell, too many atoms, overfull site."""
    for axis in "abc":
        m = re.search(rf"(?im)^\s*_cell_length_{axis}\s+(\S+)", block)
        value = _cif_number(m.group(1)) if m else None
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise StructureReadError(f"cell length {axis} = {m.group(1)} Å is not positive")
    for angle in ("alpha", "beta", "gamma"):
        m = re.search(rf"(?im)^\s*_cell_angle_{angle}\s+(\S+)", block)
        value = _cif_number(m.group(1)) if m else None
        if value is not None and not 0 < value < 180:
            raise StructureReadError(
                f"cell angle {angle} = {m.group(1)}° is not between 0 and 180°"
            )
    n_ops = None
    positions: dict[tuple[str, str, str], list[tuple[str, float]]] = {}
    for tags, values in _cif_loops(block):
        if any(t in _SYMOP_TAGS for t in tags):
            n_ops = max(1, len(values) // len(tags))
            continue
        xyz = [f"_atom_site_{kind}_{c}" for kind in ("fract", "cartn") for c in "xyz"]
        cols = (
            [tags.index(t) for t in xyz[:3]]
            if all(t in tags for t in xyz[:3])
            else ([tags.index(t) for t in xyz[3:]] if all(t in tags for t in xyz[3:]) else None)
        )
        if cols is None:
            continue
        k = len(tags)
        n_rows = len(values) // k
        if n_rows > 20 * limits.max_atoms:
            raise StructureReadError(
                f"the CIF lists {n_rows} atom sites, more than the limit of "
                f"{limits.max_atoms} atoms per cell (--max-atoms); not parsed"
            )
        occ_col = tags.index("_atom_site_occupancy") if "_atom_site_occupancy" in tags else None
        label_col = tags.index("_atom_site_label") if "_atom_site_label" in tags else None
        for r in range(n_rows):
            row = values[r * k : (r + 1) * k]
            key = tuple(re.sub(r"\(\d+\)$", "", row[c].strip("'\"")) for c in cols)
            occ = _cif_number(row[occ_col]) if occ_col is not None else None
            label = row[label_col].strip("'\"") if label_col is not None else f"row {r + 1}"
            positions.setdefault(key, []).append((label, 1.0 if occ is None else occ))  # type: ignore[arg-type]
    if len(positions) > limits.max_atoms:
        raise StructureReadError(
            f"the CIF lists {len(positions)} distinct atom positions, more "
            f"than the limit of {limits.max_atoms} atoms per cell "
            "(--max-atoms); not parsed"
        )
    if n_ops is None:
        m = re.search(
            r"(?im)^\s*_(?:symmetry_space_group_name_h-m|space_group_name_h-m_alt)"
            r"\s+['\"]?([^'\"\n]*)",
            block,
        )
        named = m.group(1).replace(" ", "").upper() if m else ""
        n_ops = 1 if named in ("", "P1", "?", ".") else _MAX_SYMOPS
    if len(positions) * n_ops > 4 * limits.max_atoms:
        raise StructureReadError(
            f"{len(positions)} atom positions × {n_ops} symmetry operations could expand to "
            f"{len(positions) * n_ops} sites, more than 4 × the limit of {limits.max_atoms} "
            "atoms per cell (--max-atoms); not parsed"
        )
    for key, members in positions.items():
        total = sum(occ for _, occ in members)
        if total > 1.05:  # pymatgen's occupancy tolerance below
            names = " and ".join(f"'{label}'" for label, _ in members[:4])
            raise StructureReadError(
                f"{'atoms ' if len(members) > 1 else 'atom '}{names} at position "
                f"({', '.join(key)}) have occupancies summing to {total:g}, more than 1 (two "
                "atoms at one position?)"
            )


_BORING_WARNINGS = (
    "default value of primitive",
    "is not a valid element",
    "missing elements",
    "incorrect stoichiometry",
    "issues encountered while parsing",
)


def _warning_notes(caught: list[warnings.WarningMessage]) -> str:
    notes: list[str] = []
    for w in caught:
        msg = _shorten(str(w.message))
        if any(b in msg.lower() for b in _BORING_WARNINGS) or msg in notes:
            continue
        notes.append(msg)
    return f" (pymatgen: {'; '.join(notes[:2])})" if notes else ""


def _cif_failure(exc: BaseException, caught: list) -> StructureReadError:
    msg = clean_message(exc)
    if "sum to > 1" in msg or "occupancies" in msg.lower():
        return StructureReadError(
            "site occupancies sum to more than 1 after applying the "
            "symmetry (two atoms at one position?)"
        )
    if isinstance(exc, (ValueError, IndexError, KeyError, TypeError)) and (
        "zip()" in msg
        or "index out of range" in msg
        or "missing key" in msg
        or "is not a multiple" in msg
    ):
        return StructureReadError(
            f"could not parse as CIF: the file looks truncated or a loop is incomplete ({msg})"
        )
    return StructureReadError(f"could not parse as CIF: {msg}{_warning_notes(caught)}")


def _parse_cif(text: str, name: str, limits: ReadLimits) -> list[Parsed]:
    from pymatgen.io.cif import CifParser

    blocks = _split_blocks(text)
    if not blocks:
        raise StructureReadError("could not parse as CIF: no data_ block found")
    single = len(blocks) == 1
    out: list[Parsed] = []
    for block_name, block in blocks:
        block_name = block_name.strip() or stem(name)
        ident = stem(name) if single else block_name
        suffix = "" if single else f" block '{block_name}'"
        if not re.search(r"(?im)^\s*_atom_site_(fract|cartn)_", block):
            out.append(
                (
                    ident,
                    StructureReadError("the CIF block has no atoms (no _atom_site coordinates)"),
                    suffix,
                    {},
                )
            )
            continue
        try:
            _prescan_cif(block, limits)
        except StructureReadError as exc:
            out.append((ident, exc, suffix, {}))
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                parser = CifParser.from_str(block, occupancy_tolerance=1.05)
                structures = parser.parse_structures(primitive=False)
            except Exception as exc:  # noqa: BLE001 - any pymatgen failure is this block's error
                out.append((ident, _cif_failure(exc, caught), suffix, {}))
                continue
        if not structures:
            out.append(
                (
                    ident,
                    StructureReadError(
                        f"could not parse as CIF: no structure in the block{_warning_notes(caught)}"
                    ),
                    suffix,
                    {},
                )
            )
            continue
        out.append((ident, structures[0], suffix, {}))
    return out


# ----------------------------------------------------------------------------------------------
# POSCAR


def _floats(line: str, n: int) -> bool:
    parts = line.split()
    if len(parts) < n:
        return False
    try:
        [float(p) for p in parts[:n]]
    except ValueError:
        return False
    return True


def _prescan_poscar(text: str, limits: ReadLimits) -> None:
    """Check the counts line against ``max_atoms`` and against the coordinate lines."""
    lines = text.splitlines()
    if len(lines) < 7:
        raise StructureReadError(
            f"could not parse as POSCAR: only {len(lines)} lines (a POSCAR "
            "has a comment, scale, 3 lattice lines, counts and coordinates)"
        )
    at = 5
    if not lines[5].split() or not all(t.isdigit() for t in lines[5].split()):
        at = 6  # line 6 names the elements
    try:
        counts = [int(t) for t in lines[at].split()]
    except ValueError:
        raise StructureReadError(
            f"could not parse as POSCAR: line {at + 1} should hold the atom "
            f"counts, found {_shorten(lines[at], 60)!r}"
        ) from None
    if not counts or any(c < 0 for c in counts):
        raise StructureReadError(
            f"could not parse as POSCAR: line {at + 1} holds no valid atom counts"
        )
    total = sum(counts)
    if total > limits.max_atoms:
        raise StructureReadError(
            f"the counts line says {total} atoms, more than the limit of "
            f"{limits.max_atoms} atoms per cell (--max-atoms); not parsed"
        )
    mode = at + 1
    if mode < len(lines) and lines[mode].strip()[:1].lower() == "s":
        mode += 1  # selective dynamics
    coords = 0
    for line in lines[mode + 1 :]:
        if not _floats(line, 3):
            break
        coords += 1
    if coords != total:
        raise StructureReadError(
            f"the counts line (line {at + 1}) says {total} atoms but "
            f"{coords} coordinate lines follow"
        )


def _poscar_id(name: str) -> str:
    path = PurePosixPath(name.replace("\\", "/"))
    base = stem(name)
    if base.upper() in ("POSCAR", "CONTCAR") and len(path.parts) > 1:
        parent = path.parts[-2]
        if parent and not parent.lower().endswith(".zip"):
            return parent
    return base


def _parse_poscar(text: str, name: str, limits: ReadLimits) -> list[Parsed]:
    from pymatgen.io.vasp import Poscar

    _prescan_poscar(text, limits)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            poscar = Poscar.from_str(text, read_velocities=False)
        except Exception as exc:
            raise StructureReadError(
                f"could not parse as POSCAR: {clean_message(exc)}{_warning_notes(caught)}"
            ) from exc
    for w in caught:
        if "cannot be determined" in str(w.message):
            raise StructureReadError(
                "the POSCAR does not name its elements (no species line); pymatgen would "
                "invent H, He, …. Add the element line after the lattice"
            )
    return [(_poscar_id(name), poscar.structure, "", {})]


# ----------------------------------------------------------------------------------------------
# Extended XYZ


def _prescan_extxyz(text: str, limits: ReadLimits) -> None:
    """Check every frame header (atom count) against ``max_atoms`` and the lines present."""
    lines = text.splitlines()
    i, frame = 0, 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        try:
            n = int(lines[i].split()[0])
        except ValueError:
            raise StructureReadError(
                f"could not parse as extended XYZ: line {i + 1} should hold "
                f"the atom count of frame {frame}"
            ) from None
        if n < 0 or n > limits.max_atoms:
            raise StructureReadError(
                f"frame {frame} declares {n} atoms, "
                + (
                    "not a count"
                    if n < 0
                    else f"more than the limit of {limits.max_atoms} atoms per cell (--max-atoms)"
                )
            )
        if i + 2 + n > len(lines):
            raise StructureReadError(
                f"frame {frame} declares {n} atoms but only "
                f"{max(0, len(lines) - i - 2)} atom lines follow"
            )
        i += n + 2
        frame += 1


def _parse_extxyz(text: str, name: str, limits: ReadLimits) -> list[Parsed]:
    import ase.io

    _prescan_extxyz(text, limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frames = ase.io.read(io.StringIO(text), index=":", format="extxyz")
    except KeyError as exc:
        raise StructureReadError(f"unknown element {exc.args[0]!r}") from exc
    except Exception as exc:
        raise StructureReadError(f"could not parse as extended XYZ: {clean_message(exc)}") from exc
    if not frames:
        raise StructureReadError("could not parse as extended XYZ: the file has no frames")
    single = len(frames) == 1
    out: list[Parsed] = []
    for n, atoms in enumerate(frames):
        fallback = stem(name) if single else f"{stem(name)}#{n}"
        ident = record_id(dict(atoms.info), fallback)
        suffix = "" if single else f" frame {n}"
        if atoms.cell.rank < 3:
            out.append(
                (
                    ident,
                    StructureReadError(
                        "the frame has no Lattice= (only periodic crystals are supported)"
                    ),
                    suffix,
                    {},
                )
            )
            continue
        try:
            structure = Structure(
                Lattice(np.array(atoms.cell[:], dtype=float)),
                atoms.get_chemical_symbols(),
                atoms.get_positions(),
                coords_are_cartesian=True,
            )
        except Exception as exc:  # noqa: BLE001
            out.append(
                (
                    ident,
                    StructureReadError(f"could not build the structure: {clean_message(exc)}"),
                    suffix,
                    {},
                )
            )
            continue
        out.append((ident, structure, suffix, {}))
    return out


# ----------------------------------------------------------------------------------------------


def parse_text(
    fmt: str, text: str, name: str, limits: ReadLimits, *, in_container: bool
) -> list[Parsed] | None:
    """Parse a whole text file of format ``fmt`` (not ``jsonl``, which streams by line).

    Returns:
        the entries, or None for a JSON file in a folder/archive that holds no structure.

    Raises:
        StructureReadError: when the file as a whole cannot be used.
    """
    if not text.strip():
        raise StructureReadError("the file is empty")
    if fmt == "cif":
        return _parse_cif(text, name, limits)
    if fmt == "poscar":
        return _parse_poscar(text, name, limits)
    if fmt == "extxyz":
        return _parse_extxyz(text, name, limits)
    if fmt == "json":
        return _parse_json(text, name, limits, in_container=in_container)
    raise StructureReadError(f"unknown file format; supported: {SUPPORTED_FORMATS}")
