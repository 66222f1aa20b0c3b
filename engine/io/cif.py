"""CIF: a cheap pre-scan of every data block, then pymatgen's parser.

The pre-scan reads the cell and the ``_atom_site`` loop without building anything: non-positive
cell lengths, angles outside (0, 180)°, more distinct positions than ``max_atoms``, a symmetry
expansion that could exceed 4 × ``max_atoms``, and two atoms whose occupancies at one position
sum above 1 are refused before pymatgen spends (fast-growing) time on them.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterator

from engine.io.entries import ReadLimits, StructureReadError
from engine.io.text import Parsed, stem, warning_notes
from engine.io.validation import clean_message

__all__ = ["parse_cif"]

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
    return StructureReadError(f"could not parse as CIF: {msg}{warning_notes(caught)}")


def parse_cif(text: str, name: str, limits: ReadLimits) -> list[Parsed]:
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
                        f"could not parse as CIF: no structure in the block{warning_notes(caught)}"
                    ),
                    suffix,
                    {},
                )
            )
            continue
        out.append((ident, structures[0], suffix, {}))
    return out
