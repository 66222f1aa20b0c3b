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

Size: about 460 lines, because the five parsers share the pre-scan helpers and :data:`Parsed`;
one file per format would scatter the limits that must stay alike.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import PurePosixPath
from typing import Any

import numpy as np
from pymatgen.core import Lattice, Structure
from pymatgen.core.periodic_table import DummySpecies, get_el_sp

from engine.io.cif import parse_cif
from engine.io.entries import ReadLimits, StructureReadError
from engine.io.text import Parsed, shorten, stem, warning_notes
from engine.io.validation import OCCUPANCY_TOLERANCE, clean_message, element_symbols

__all__ = [
    "ID_KEYS",
    "SUPPORTED_FORMATS",
    "parse_jsonl_line",
    "parse_text",
    "record_id",
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
_STRUCTURE_KEYS = frozenset({"lattice", "species", "frac_coords"})


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
        raise StructureReadError(f"unknown element '{shorten(str(sp), 40)}'") from exc
    if isinstance(parsed, DummySpecies):
        raise StructureReadError(f"unknown element '{shorten(str(sp), 40)}'")
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
            f"counts, found {shorten(lines[at], 60)!r}"
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
                f"could not parse as POSCAR: {clean_message(exc)}{warning_notes(caught)}"
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
        return parse_cif(text, name, limits)
    if fmt == "poscar":
        return _parse_poscar(text, name, limits)
    if fmt == "extxyz":
        return _parse_extxyz(text, name, limits)
    if fmt == "json":
        return _parse_json(text, name, limits, in_container=in_container)
    raise StructureReadError(f"unknown file format; supported: {SUPPORTED_FORMATS}")
