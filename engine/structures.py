"""Read crystal structures from files, folders, archives and uploaded bytes, and validate them.

Every entry that cannot be used becomes a :class:`ReadError` that names the file (and the entry
inside it) and gives a human reason; the other entries still load. Supported formats:

* CIF (``.cif``; one or many data blocks),
* POSCAR/CONTCAR (``POSCAR*``, ``CONTCAR*``, ``*.vasp``, ``*.poscar``),
* extended XYZ with a ``Lattice=`` header (``.xyz``, ``.extxyz``; one or many frames),
* pymatgen ``Structure.as_dict()`` JSON (``.json``; one structure, a list, or id → structure),
* this project's JSON lines (``.jsonl``; keys ``lattice``, ``species``, ``frac_coords``),
* any of these gzipped (``.gz``), folders of them, and ``.zip`` archives of them.

Lengths are in Å throughout.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any, Union

import numpy as np
from pymatgen.core import Element, Lattice, Structure
from pymatgen.core.periodic_table import DummySpecies, get_el_sp

__all__ = [
    "MAX_ARCHIVE_BYTES",
    "MAX_ARCHIVE_DEPTH",
    "SUPPORTED_FORMATS",
    "NamedStructure",
    "ReadError",
    "StructureBatch",
    "StructureReadError",
    "detect_format",
    "read_structure",
    "read_structures",
    "record_id",
    "structure_from_record",
    "validate_structure",
]

#: Largest total uncompressed size read from one archive (zip or gzip, nested ones included).
MAX_ARCHIVE_BYTES = 500 * 1024**2
#: How deep zip archives may nest inside each other.
MAX_ARCHIVE_DEPTH = 3
#: Human list of the accepted formats, used in error messages.
SUPPORTED_FORMATS = (
    "CIF (.cif), POSCAR/CONTCAR (POSCAR*, CONTCAR*, .vasp, .poscar), extended XYZ with a "
    "Lattice (.xyz, .extxyz), pymatgen Structure JSON (.json), JSON lines (.jsonl), "
    "gzipped versions of these (.gz), folders and .zip archives"
)
#: Keys tried, in order, for a record's id.
ID_KEYS = ("id", "material_id", "auid", "mp_id")

_REASON_MAX = 240

Source = Union[str, os.PathLike, bytes, tuple, Iterable]  # noqa: UP007 - runtime alias on 3.10


@dataclass(frozen=True)
class NamedStructure:
    """A structure with the name it is known by.

    Attributes:
        id: file stem, CIF data-block name, record id, or ``"<file>#<n>"`` (0-based) for one of
            several unnamed entries of a multi-entry file.
        structure: the ordered pymatgen structure (oxidation states removed).
        source: where it came from, e.g. ``"upload.zip/a/b.cif"`` or ``"x.cif block 'abc'"``.
    """

    id: str
    structure: Structure
    source: str


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


@dataclass
class StructureBatch:
    """Structures read from one or more sources, plus the entries that failed.

    Attributes:
        items: structures that loaded and passed validation, in reading order.
        errors: entries that failed, in reading order.
        skipped: files inside folders/archives ignored because their format is not a structure
            format (e.g. ``id_prop.csv``, ``atom_init.json``).
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


# ----------------------------------------------------------------------------------------------
# Validation


@lru_cache(maxsize=1)
def _element_symbols() -> frozenset[str]:
    return frozenset(el.symbol for el in Element)


def _fmt_species(site: Any) -> str:
    parts = [f"{occ:g} {sp}" for sp, occ in site.species.items()]
    return " + ".join(parts) if parts else "nothing"


def _site_name(structure: Structure, i: int, *, with_species: bool = True) -> str:
    """E.g. ``"Fe (site 3, 'Fe1')"``: species, 0-based site index, CIF label when it has one."""
    label = getattr(structure[i], "label", None)
    species = structure[i].species_string
    has_label = bool(label) and label != species
    if not with_species:
        return f"site {i} (label '{label}')" if has_label else f"site {i}"
    return f"{species} (site {i}, '{label}')" if has_label else f"{species} (site {i})"


def validate_structure(
    structure: Structure, *, max_atoms: int = 500, min_distance: float = 0.5
) -> None:
    """Check that a structure can be used by the models.

    Args:
        structure: the structure to check.
        max_atoms: largest allowed number of sites in the cell.
        min_distance: smallest allowed distance between two atoms, periodic images included, in Å
            (0 or less turns the check off).

    Raises:
        StructureReadError: with a specific reason (no atoms, too many atoms, degenerate cell,
            non-finite coordinates, unknown element, partial occupancy, atoms too close).
    """
    n = len(structure)
    if n == 0:
        raise StructureReadError("the structure has no atoms")
    if n > max_atoms:
        raise StructureReadError(f"{n} sites is more than the limit of {max_atoms} atoms per cell")
    matrix = np.asarray(structure.lattice.matrix, dtype=float)
    if not np.all(np.isfinite(matrix)):
        raise StructureReadError("the lattice contains non-finite numbers")
    lengths = np.linalg.norm(matrix, axis=1)
    det = float(np.linalg.det(matrix))
    if not (np.all(lengths > 0) and abs(det) > 1e-6 * float(np.prod(lengths))):
        raise StructureReadError(
            f"cell volume {abs(det):.3g} Å³ is not positive: the lattice vectors are degenerate"
        )
    if not np.all(np.isfinite(structure.frac_coords)):
        raise StructureReadError("some atomic coordinates are not finite numbers")
    unknown: list[str] = []
    partial: int | None = None
    for i, site in enumerate(structure):
        if partial is None and not site.is_ordered:
            partial = i
        for sp in site.species:
            if isinstance(sp, DummySpecies) or getattr(sp, "Z", 0) < 1:
                name = getattr(sp, "symbol", str(sp))
                if name not in unknown:
                    unknown.append(name)
    if unknown:
        names = ", ".join(f"'{u}'" for u in unknown)
        raise StructureReadError(
            f"unknown element {names}" if len(unknown) == 1 else f"unknown elements {names}"
        )
    if partial is not None:
        raise StructureReadError(
            f"partial occupancy ({_fmt_species(structure[partial])} on "
            f"{_site_name(structure, partial, with_species=False)}) is not supported"
        )
    if min_distance > 0:
        _check_distances(structure, min_distance)


def _check_distances(structure: Structure, min_distance: float) -> None:
    centers, points, images, dists = structure.get_neighbor_list(r=min_distance)
    if len(dists) == 0:
        return
    k = int(np.argmin(dists))
    i, j, d = int(centers[k]), int(points[k]), float(dists[k])
    if i == j:
        raise StructureReadError(
            f"{_site_name(structure, i)} is only {d:.3f} Å from its own periodic image "
            f"(limit {min_distance:g} Å): the cell is too small"
        )
    i, j = min(i, j), max(i, j)
    across = " across the cell boundary" if np.any(images[k] != 0) else ""
    raise StructureReadError(
        f"atoms {_site_name(structure, i)} and {_site_name(structure, j)} are only {d:.3f} Å "
        f"apart{across} (limit {min_distance:g} Å)"
    )


# ----------------------------------------------------------------------------------------------
# Records (JSON lines)


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


def structure_from_record(record: dict) -> Structure:
    """Build a structure of plain elements from a JSON-lines record (not validated).

    Args:
        record: with ``lattice`` (3×3, Å, rows a, b, c), ``species`` (element symbols, one per
            site) and ``frac_coords`` (N×3).

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
    try:
        lattice = np.asarray(record["lattice"], dtype=float)
        coords = np.asarray(record["frac_coords"], dtype=float)
    except (TypeError, ValueError) as exc:
        raise StructureReadError(f"'lattice'/'frac_coords' are not numbers: {_clean(exc)}") from exc
    if lattice.shape != (3, 3):
        raise StructureReadError(f"'lattice' must be 3×3, got shape {lattice.shape}")
    if len(species) == 0:
        raise StructureReadError("the structure has no atoms")
    if coords.shape != (len(species), 3):
        raise StructureReadError(
            f"'frac_coords' has shape {coords.shape} but there are {len(species)} species"
        )
    known = _element_symbols()
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
        raise StructureReadError(f"could not build the structure: {_clean(exc)}") from exc
    if not plain:
        structure.remove_oxidation_states()  # e.g. "Fe2+" → Fe
    return structure


def _parse_species(sp: Any) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = get_el_sp(sp)
    except Exception as exc:
        raise StructureReadError(f"unknown element '{sp}'") from exc
    if isinstance(parsed, DummySpecies):
        raise StructureReadError(f"unknown element '{sp}'")
    return parsed


# ----------------------------------------------------------------------------------------------
# Helpers


def _clean(exc: BaseException) -> str:
    """A one-line, shortened message for an exception."""
    msg = str(exc)
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        msg = f"missing key {exc.args[0]!r}"
    msg = re.sub(r"\s+", " ", msg).strip()
    if not msg:
        msg = type(exc).__name__
    elif type(exc).__name__ not in ("ValueError", "StructureReadError") and len(msg) < 60:
        msg = f"{msg} ({type(exc).__name__})"
    if len(msg) > _REASON_MAX:
        msg = msg[: _REASON_MAX - 1].rstrip() + "…"
    return msg


def _shorten(text: str, limit: int = _REASON_MAX) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _decode(data: bytes) -> str:
    if b"\x00" in data[:4096]:
        raise StructureReadError("this is a binary file, not a text structure file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _strip_gz(name: str) -> str:
    return name[:-3] if name.lower().endswith(".gz") else name


def _stem(name: str) -> str:
    """File name without folders and without format extensions (``a/b.jsonl.gz`` → ``b``)."""
    base = PurePosixPath(name.replace("\\", "/")).name
    base = _strip_gz(base)
    for ext in (".cif", ".vasp", ".poscar", ".xyz", ".extxyz", ".jsonl", ".json"):
        if base.lower().endswith(ext):
            return base[: -len(ext)]
    return base


def detect_format(name: str) -> str | None:
    """The format a file name implies, ignoring a trailing ``.gz``.

    Returns:
        one of ``"cif"``, ``"poscar"``, ``"extxyz"``, ``"json"``, ``"jsonl"``, ``"zip"``, or
        ``None`` for an unknown name.
    """
    base = PurePosixPath(name.replace("\\", "/")).name
    low = base.lower()
    if low.endswith(".zip"):
        return "zip"
    low = _strip_gz(low)
    if low.endswith((".cif", ".mcif")):
        return "cif"
    if low.endswith((".vasp", ".poscar")):
        return "poscar"
    if low.startswith(("poscar", "contcar")):
        return "poscar"
    if low.endswith((".xyz", ".extxyz")):
        return "extxyz"
    if low.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if low.endswith(".json"):
        return "json"
    return None


def _hidden(rel: str) -> bool:
    parts = PurePosixPath(rel.replace("\\", "/")).parts
    return any(p.startswith(".") or p == "__MACOSX" or p == "__pycache__" for p in parts)


class _Budget:
    """Uncompressed bytes still allowed for one top-level archive."""

    def __init__(self, limit: int) -> None:
        self.left = limit
        self.limit = limit

    def take(self, n: int, what: str) -> None:
        self.left -= n
        if self.left < 0:
            raise StructureReadError(
                f"{what} unpacks to more than {self.limit / 1024**2:.0f} MB; refusing to read it "
                "(possible zip bomb). Split it into smaller archives"
            )


def _read_capped(fh: Any, cap: int) -> bytes:
    data = fh.read(cap + 1)
    if len(data) > cap:
        raise StructureReadError(
            f"the file unpacks to more than {MAX_ARCHIVE_BYTES / 1024**2:.0f} MB; refusing to read "
            "it (possible zip bomb)"
        )
    return data


# ----------------------------------------------------------------------------------------------
# Per-format parsers: each yields (id, structure-or-StructureReadError, entry suffix)

_Entry = tuple[str, Union[Structure, StructureReadError], str]  # noqa: UP007


def _parse_cif(text: str, name: str) -> list[_Entry]:
    from pymatgen.io.cif import CifFile, CifParser

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            cif = CifFile.from_str(text)
        except Exception as exc:
            raise StructureReadError(f"could not parse as CIF: {_clean(exc)}") from exc
    blocks = [b for b in cif.data.values() if b.data or b.loops]
    if not blocks:
        raise StructureReadError("could not parse as CIF: no data_ block found")
    single = len(blocks) == 1
    out: list[_Entry] = []
    for block in blocks:
        block_name = str(block.header).strip() or _stem(name)
        ident = _stem(name) if single else block_name
        suffix = "" if single else f" block '{block_name}'"
        keys = {k.lower() for k in block.data}
        if not any(k.startswith(("_atom_site_fract_", "_atom_site_cartn_")) for k in keys):
            out.append(
                (
                    ident,
                    StructureReadError("the CIF block has no atoms (no _atom_site coordinates)"),
                    suffix,
                )
            )
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                parser = CifParser.from_str(str(block), occupancy_tolerance=1.05)
                structures = parser.parse_structures(primitive=False)
            except Exception as exc:  # noqa: BLE001
                notes = _warning_notes(caught)
                out.append(
                    (
                        ident,
                        StructureReadError(f"could not parse as CIF: {_clean(exc)}{notes}"),
                        suffix,
                    )
                )
                continue
        if not structures:
            out.append(
                (
                    ident,
                    StructureReadError(
                        f"could not parse as CIF: no structure in the block{_warning_notes(caught)}"
                    ),
                    suffix,
                )
            )
            continue
        out.append((ident, structures[0], suffix))
    return out


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
        msg = _shorten(str(w.message), 160)
        if any(b in msg.lower() for b in _BORING_WARNINGS) or msg in notes:
            continue
        notes.append(msg)
    return f" (pymatgen: {'; '.join(notes[:2])})" if notes else ""


def _parse_poscar(text: str, name: str) -> list[_Entry]:
    from pymatgen.io.vasp import Poscar

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            poscar = Poscar.from_str(text, read_velocities=False)
        except Exception as exc:
            raise StructureReadError(
                f"could not parse as POSCAR: {_clean(exc)}{_warning_notes(caught)}"
            ) from exc
    for w in caught:
        if "cannot be determined" in str(w.message):
            raise StructureReadError(
                "the POSCAR does not name its elements (no species line); pymatgen would "
                "invent H, He, …. Add the element line after the lattice"
            )
    return [(_poscar_id(name), poscar.structure, "")]


def _poscar_id(name: str) -> str:
    path = PurePosixPath(name.replace("\\", "/"))
    stem = _stem(name)
    if stem.upper() in ("POSCAR", "CONTCAR") and len(path.parts) > 1:
        parent = path.parts[-2]
        if parent and not parent.lower().endswith(".zip"):
            return parent
    return stem


def _parse_extxyz(text: str, name: str) -> list[_Entry]:
    try:
        import ase.io
    except ImportError as exc:  # pragma: no cover - ase is a dependency
        raise StructureReadError("reading extended XYZ needs the 'ase' package") from exc

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frames = ase.io.read(io.StringIO(text), index=":", format="extxyz")
    except KeyError as exc:
        raise StructureReadError(f"unknown element {exc.args[0]!r}") from exc
    except Exception as exc:
        raise StructureReadError(f"could not parse as extended XYZ: {_clean(exc)}") from exc
    if not frames:
        raise StructureReadError("could not parse as extended XYZ: the file has no frames")
    single = len(frames) == 1
    out: list[_Entry] = []
    for n, atoms in enumerate(frames):
        fallback = _stem(name) if single else f"{_stem(name)}#{n}"
        ident = record_id(dict(atoms.info), fallback)
        suffix = "" if single else f" frame {n}"
        try:
            if atoms.cell.rank < 3:
                raise StructureReadError(
                    "the frame has no Lattice= (only periodic crystals are supported)"
                )
            structure = Structure(
                Lattice(np.array(atoms.cell[:], dtype=float)),
                atoms.get_chemical_symbols(),
                atoms.get_positions(),
                coords_are_cartesian=True,
            )
            out.append((ident, structure, suffix))
        except StructureReadError as exc:
            out.append((ident, exc, suffix))
        except Exception as exc:  # noqa: BLE001
            out.append(
                (ident, StructureReadError(f"could not build the structure: {_clean(exc)}"), suffix)
            )
    return out


def _is_structure_dict(obj: Any) -> bool:
    if not isinstance(obj, dict):
        return False
    if obj.get("@class") == "Structure" or ("lattice" in obj and "sites" in obj):
        return True
    return "lattice" in obj and "species" in obj and "frac_coords" in obj


def _structure_from_any_dict(obj: dict) -> Structure:
    if "sites" in obj:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return Structure.from_dict(obj)
        except Exception as exc:
            raise StructureReadError(
                f"could not read the pymatgen Structure dict: {_clean(exc)}"
            ) from exc
    return structure_from_record(obj)


def _parse_json(text: str, name: str, *, in_container: bool) -> list[_Entry] | None:
    """Parse a ``.json`` file; ``None`` means "not a structure file" (skipped in folders)."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StructureReadError(
            f"could not parse as JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from exc
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
    out: list[_Entry] = []
    for n, (key, obj_n) in enumerate(entries):
        fallback = _stem(name) if single else f"{_stem(name)}#{n}"
        ident = key if key is not None else record_id(obj_n, fallback)
        suffix = "" if single else (f" entry '{key}'" if key is not None else f" entry {n}")
        try:
            out.append((ident, _structure_from_any_dict(obj_n), suffix))
        except StructureReadError as exc:
            out.append((ident, exc, suffix))
    return out


def _parse_jsonl(text: str, name: str) -> list[_Entry]:
    lines = [(i + 1, line) for i, line in enumerate(text.splitlines()) if line.strip()]
    single = len(lines) == 1
    out: list[_Entry] = []
    n_bad_json = 0
    for n, (lineno, line) in enumerate(lines):
        fallback = _stem(name) if single else f"{_stem(name)}#{n}"
        suffix = f" line {lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            n_bad_json += 1
            reason = f"invalid JSON: {exc.msg} (column {exc.colno})"
            if n_bad_json == len(lines):  # not a single line is JSON: one error for the file
                raise StructureReadError(f"could not parse as JSON lines: {reason}") from exc
            out.append((fallback, StructureReadError(reason), suffix))
            continue
        if not isinstance(record, dict):
            out.append((fallback, StructureReadError("the line is not a JSON object"), suffix))
            continue
        ident = record_id(record, fallback)
        try:
            out.append((ident, structure_from_record(record), suffix))
        except StructureReadError as exc:
            out.append((ident, exc, suffix))
    return out


# ----------------------------------------------------------------------------------------------
# Dispatch


class _Reader:
    def __init__(self, max_atoms: int, min_distance: float) -> None:
        self.max_atoms = max_atoms
        self.min_distance = min_distance
        self.batch = StructureBatch()

    # -- entry points ---------------------------------------------------------------------------
    def source(self, source: Any, name: str | None) -> None:
        if isinstance(source, (bytes, bytearray, memoryview)):
            if not name:
                raise TypeError("raw bytes need name= (the file name decides the format)")
            self.data(bytes(source), name, label=name, in_container=False)
        elif (
            isinstance(source, tuple)
            and len(source) == 2
            and isinstance(source[0], str)
            and isinstance(source[1], (bytes, bytearray, memoryview))
        ):
            self.data(bytes(source[1]), source[0], label=source[0], in_container=False)
        elif isinstance(source, (str, os.PathLike)):
            self.path(Path(source), label=str(source), in_container=False)
        elif hasattr(source, "read") and hasattr(source, "name"):  # e.g. Streamlit UploadedFile
            self.data(source.read(), str(source.name), label=str(source.name), in_container=False)
        elif isinstance(source, Iterable):
            for item in source:
                self.source(item, None)
        else:
            raise TypeError(
                f"cannot read structures from a {type(source).__name__}: give a path, "
                "(name, bytes), bytes with name=, or a list of these"
            )

    def path(self, path: Path, label: str, in_container: bool) -> None:
        if path.is_dir():
            self.folder(path, label)
            return
        if not path.exists():
            self.error(label, "file not found")
            return
        fmt = detect_format(path.name)
        if fmt is None:
            if in_container:
                self.batch.skipped.append(label)
            else:
                self.error(label, f"unknown file format; supported: {SUPPORTED_FORMATS}")
            return
        try:
            size = path.stat().st_size
            if size > MAX_ARCHIVE_BYTES:
                raise StructureReadError(
                    f"the file is {size / 1024**2:.0f} MB, more than the "
                    f"{MAX_ARCHIVE_BYTES / 1024**2:.0f} MB limit"
                )
            if fmt == "zip":
                with zipfile.ZipFile(path) as zf:
                    self.zip(zf, label, _Budget(MAX_ARCHIVE_BYTES), depth=1)
                return
            data = path.read_bytes()
        except StructureReadError as exc:
            self.error(label, exc.reason)
            return
        except (OSError, zipfile.BadZipFile) as exc:
            self.error(label, f"could not open the file: {_clean(exc)}")
            return
        self.data(data, path.name, label=label, in_container=in_container)

    def folder(self, folder: Path, label: str) -> None:
        before = (len(self.batch.items), len(self.batch.errors))
        files = sorted(
            (p for p in folder.rglob("*") if p.is_file()),
            key=lambda p: p.relative_to(folder).as_posix(),
        )
        for p in files:
            rel = p.relative_to(folder).as_posix()
            if _hidden(rel):
                continue
            self.path(p, label=f"{label.rstrip('/')}/{rel}", in_container=True)
        if (len(self.batch.items), len(self.batch.errors)) == before:
            self.error(
                label, f"no structure files found in the folder; supported: {SUPPORTED_FORMATS}"
            )

    def zip(self, zf: zipfile.ZipFile, label: str, budget: _Budget, depth: int) -> None:
        infos = [i for i in zf.infolist() if not i.is_dir() and not _hidden(i.filename)]
        budget.take(sum(i.file_size for i in infos), label)
        before = (len(self.batch.items), len(self.batch.errors))
        for info in sorted(infos, key=lambda i: i.filename):
            entry = f"{label}/{info.filename}"
            fmt = detect_format(info.filename)
            if fmt is None:
                self.batch.skipped.append(entry)
                continue
            try:
                with zf.open(info) as fh:
                    data = _read_capped(fh, max(info.file_size, 0) + 1024)
                if fmt == "zip":
                    if depth >= MAX_ARCHIVE_DEPTH:
                        raise StructureReadError(
                            f"archives nested more than {MAX_ARCHIVE_DEPTH} deep are not read"
                        )
                    with zipfile.ZipFile(io.BytesIO(data)) as inner:
                        self.zip(inner, entry, budget, depth + 1)
                    continue
            except StructureReadError as exc:
                self.error(entry, exc.reason)
                continue
            except (OSError, zipfile.BadZipFile, RuntimeError, ValueError) as exc:
                self.error(entry, f"could not unpack the entry: {_clean(exc)}")
                continue
            self.data(data, info.filename, label=entry, in_container=True, budget=budget)
        if (len(self.batch.items), len(self.batch.errors)) == before:
            self.error(
                label, f"no structure files found in the archive; supported: {SUPPORTED_FORMATS}"
            )

    def data(
        self,
        data: bytes,
        name: str,
        label: str,
        in_container: bool,
        budget: _Budget | None = None,
    ) -> None:
        fmt = detect_format(name)
        if fmt is None:
            if in_container:
                self.batch.skipped.append(label)
            else:
                self.error(label, f"unknown file format; supported: {SUPPORTED_FORMATS}")
            return
        try:
            if fmt == "zip":
                with zipfile.ZipFile(io.BytesIO(data)) as zf:
                    self.zip(zf, label, budget or _Budget(MAX_ARCHIVE_BYTES), depth=1)
                return
            if name.lower().endswith(".gz"):
                with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
                    data = _read_capped(gz, MAX_ARCHIVE_BYTES)
                if budget is not None:
                    budget.take(len(data), label)
            text = _decode(data)
            entries = self.parse(fmt, text, _strip_gz(name), in_container)
        except StructureReadError as exc:
            self.error(label, exc.reason)
            return
        except (OSError, EOFError, zipfile.BadZipFile) as exc:
            self.error(label, f"could not unpack: {_clean(exc)}")
            return
        except Exception as exc:  # noqa: BLE001 - never let a traceback through
            self.error(label, f"could not read as {fmt}: {_clean(exc)}")
            return
        if entries is None:
            self.batch.skipped.append(label)
            return
        for ident, result, suffix in entries:
            self.entry(ident, result, f"{label}{suffix}")

    def parse(self, fmt: str, text: str, name: str, in_container: bool) -> list[_Entry] | None:
        if not text.strip():
            raise StructureReadError("the file is empty")
        if fmt == "cif":
            return _parse_cif(text, name)
        if fmt == "poscar":
            return _parse_poscar(text, name)
        if fmt == "extxyz":
            return _parse_extxyz(text, name)
        if fmt == "json":
            return _parse_json(text, name, in_container=in_container)
        if fmt == "jsonl":
            return _parse_jsonl(text, name)
        raise StructureReadError(f"unknown file format; supported: {SUPPORTED_FORMATS}")

    # -- results --------------------------------------------------------------------------------
    def entry(self, ident: str, result: Any, source: str) -> None:
        if isinstance(result, StructureReadError):
            self.error(source, result.reason)
            return
        try:
            structure = _normalise(result)
            validate_structure(structure, max_atoms=self.max_atoms, min_distance=self.min_distance)
        except StructureReadError as exc:
            self.error(source, exc.reason)
            return
        except Exception as exc:  # noqa: BLE001
            self.error(source, f"invalid structure: {_clean(exc)}")
            return
        self.batch.items.append(NamedStructure(id=ident, structure=structure, source=source))

    def error(self, source: str, reason: str) -> None:
        self.batch.errors.append(ReadError(source=source, reason=reason))


def _normalise(structure: Structure) -> Structure:
    """Drop oxidation states so that every site holds plain elements."""
    if structure.is_ordered and all(isinstance(sp, Element) for sp in structure.species):
        return structure
    if any(isinstance(sp, DummySpecies) for site in structure for sp in site.species):
        return structure  # validation reports the unknown element
    structure = structure.copy()
    structure.remove_oxidation_states()
    return structure


def read_structures(
    source: Source,
    *,
    name: str | None = None,
    max_atoms: int = 500,
    min_distance: float = 0.5,
) -> StructureBatch:
    """Read every structure from files, folders, archives or uploaded bytes.

    Args:
        source: a path (file or folder, read recursively); raw ``bytes`` with ``name``; a
            ``(name, bytes)`` tuple; an object with ``.name`` and ``.read()`` (an upload); or an
            iterable mixing these. The file name decides the format.
        name: the file name of raw ``bytes``.
        max_atoms: largest allowed number of sites per cell.
        min_distance: smallest allowed interatomic distance in Å, periodic images included.

    Returns:
        The loaded structures and one :class:`ReadError` per bad file or entry. In folders and
        archives, files of unknown format are skipped (listed in ``skipped``); an explicitly
        given file of unknown format is an error.

    Raises:
        TypeError: for ``bytes`` without ``name`` or an unsupported source type.
    """
    reader = _Reader(max_atoms=max_atoms, min_distance=min_distance)
    if isinstance(source, (bytes, bytearray, memoryview)):
        reader.source(source, name)
    elif name is not None and isinstance(source, (str, os.PathLike)):
        reader.path(Path(source), label=name, in_container=False)
    else:
        reader.source(source, name)
    return reader.batch


def read_structure(source: Source, **kw: Any) -> Structure:
    """Read exactly one structure.

    Args:
        source: as for :func:`read_structures`.
        **kw: ``name``, ``max_atoms``, ``min_distance`` as for :func:`read_structures`.

    Raises:
        StructureReadError: when the source holds no valid structure or more than one.
    """
    batch = read_structures(source, **kw)
    if batch.errors:
        first = batch.errors[0]
        more = f" (and {len(batch.errors) - 1} more errors)" if len(batch.errors) > 1 else ""
        raise StructureReadError(first.reason + more, source=first.source)
    if len(batch.items) != 1:
        where = kw.get("name") or (str(source) if isinstance(source, (str, os.PathLike)) else "")
        raise StructureReadError(
            f"expected exactly one structure, found {len(batch.items)}", source=where
        )
    return batch.items[0].structure
