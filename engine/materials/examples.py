"""Example structures of common solid-oxide fuel-cell (SOFC) materials, built from lattice
parameters.

Each example is an idealised, fully stoichiometric cell made with pymatgen from one or two
lattice parameters and the ideal Wyckoff positions of its structure type:

* cubic perovskites ABO3 (Pm-3m, 5 atoms): A at 1a (0, 0, 0), B at 1b (½, ½, ½), O at 3c;
* fluorites AO2 (Fm-3m, 12 atoms in the conventional cell): A at 4a, O at 8c (¼, ¼, ¼);
* rock salt (Fm-3m, 8 atoms) and fcc metals (Fm-3m, 4 atoms).

Many SOFC perovskites are only *pseudo*-cubic at room temperature (rhombohedral R-3c or
orthorhombic Pnma/Pbnm, with tilted BO6 octahedra). For those the example is the ideal cubic cell
whose lattice parameter is the pseudo-cubic one, a_pc = (V_cell / Z)^(1/3) — good enough for a
first screening look and for teaching, not a substitute for the real low-symmetry structure.
Doped, non-stoichiometric compositions (LSM, LSCF, YSZ, GDC …) cannot be written as ordered cells
and are left out.

The lattice parameters are room-temperature experimental values as commonly tabulated (rounded);
each entry states what its number is. Run ``python -m engine.materials.examples [folder]`` to (re)write
the CIF files and the README table in ``assets/examples/``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from engine.core.config import ASSETS_DIR

EXAMPLES_DIR = ASSETS_DIR / "examples"

__all__ = ["EXAMPLES", "EXAMPLES_DIR", "Example", "build", "example_files", "write_examples"]


@dataclass(frozen=True)
class Example:
    """One example material.

    Attributes:
        key: file stem, e.g. ``"CeO2_fluorite"``.
        formula: reduced formula the built cell must have (pymatgen spelling).
        kind: ``"perovskite"``, ``"fluorite"``, ``"rocksalt"`` or ``"fcc"``.
        a: cubic lattice parameter in Å (pseudo-cubic for non-cubic perovskites).
        species: element symbols, A then B (then O is implied) for perovskites; the cation for
            fluorite/rock salt; the element for fcc.
        role: what the material does in a fuel cell.
        structure_note: the real room-temperature structure.
        source: what the lattice parameter is and where it comes from.
    """

    key: str
    formula: str
    kind: str
    a: float
    species: tuple[str, ...]
    role: str
    structure_note: str
    source: str


#: The shipped examples. Values are rounded room-temperature experimental lattice parameters.
EXAMPLES: tuple[Example, ...] = (
    Example(
        "SrTiO3_perovskite",
        "SrTiO3",
        "perovskite",
        3.905,
        ("Sr", "Ti"),
        "substrate; parent of donor-doped anode/interconnect titanates",
        "cubic perovskite Pm-3m (truly cubic at room temperature)",
        "a = 3.905 Å: experimental room-temperature value, the textbook lattice parameter of "
        "cubic SrTiO3 (ICDD PDF 35-0734, tausonite)",
    ),
    Example(
        "BaZrO3_perovskite",
        "BaZrO3",
        "perovskite",
        4.193,
        ("Ba", "Zr"),
        "proton-conducting electrolyte (as Y-doped BaZrO3, BZY)",
        "cubic perovskite Pm-3m (cubic at room temperature)",
        "a = 4.193 Å: experimental room-temperature value as commonly tabulated for cubic BaZrO3 "
        "(ICDD PDF 06-0399)",
    ),
    Example(
        "SrCoO3_perovskite",
        "SrCoO3",
        "perovskite",
        3.835,
        ("Sr", "Co"),
        "parent of Sr-rich cobaltite cathodes (SSC, BSCF)",
        "cubic perovskite Pm-3m (fully oxidised SrCoO3, made by electrochemical oxidation)",
        "a = 3.835 Å: experimental room-temperature value reported for fully oxidised cubic "
        "SrCoO3 (Bezdicka et al., Z. Anorg. Allg. Chem. 619, 7 (1993))",
    ),
    Example(
        "SrFeO3_perovskite",
        "SrFeO3",
        "perovskite",
        3.851,
        ("Sr", "Fe"),
        "parent of ferrite cathodes (LSF, LSCF)",
        "cubic perovskite Pm-3m",
        "a = 3.851 Å: experimental room-temperature value commonly tabulated for cubic SrFeO3 "
        "(MacChesney et al., J. Chem. Phys. 43, 1907 (1965))",
    ),
    Example(
        "LaCoO3_pseudocubic",
        "LaCoO3",
        "perovskite",
        3.83,
        ("La", "Co"),
        "cathode (parent of LSC and LSCF)",
        "rhombohedral R-3c at room temperature; here the ideal cubic cell",
        "a_pc = 3.83 Å: pseudo-cubic parameter of the experimental room-temperature rhombohedral "
        "cell, as commonly quoted (3.82-3.83 Å)",
    ),
    Example(
        "LaMnO3_pseudocubic",
        "LaMnO3",
        "perovskite",
        3.94,
        ("La", "Mn"),
        "cathode (parent of LSM, La1-xSrxMnO3)",
        "orthorhombic Pbnm (O') at room temperature; here the ideal cubic cell",
        "a_pc = 3.94 Å: (V/4)^(1/3) of the experimental room-temperature orthorhombic cell "
        "(a ≈ 5.54, b ≈ 5.75, c ≈ 7.69 Å)",
    ),
    Example(
        "LaFeO3_pseudocubic",
        "LaFeO3",
        "perovskite",
        3.93,
        ("La", "Fe"),
        "cathode (parent of LSF and LSCF)",
        "orthorhombic Pbnm at room temperature; here the ideal cubic cell",
        "a_pc = 3.93 Å: (V/4)^(1/3) of the experimental room-temperature orthorhombic cell "
        "(a ≈ 5.56, b ≈ 5.57, c ≈ 7.86 Å)",
    ),
    Example(
        "LaNiO3_pseudocubic",
        "LaNiO3",
        "perovskite",
        3.84,
        ("La", "Ni"),
        "cathode / current-collector material",
        "rhombohedral R-3c at room temperature; here the ideal cubic cell",
        "a_pc = 3.84 Å: pseudo-cubic parameter of the experimental room-temperature rhombohedral "
        "cell, as commonly quoted (3.83-3.84 Å)",
    ),
    Example(
        "LaGaO3_pseudocubic",
        "LaGaO3",
        "perovskite",
        3.89,
        ("La", "Ga"),
        "electrolyte (parent of LSGM, Sr/Mg-doped LaGaO3)",
        "orthorhombic Pbnm at room temperature; here the ideal cubic cell",
        "a_pc = 3.89 Å: (V/4)^(1/3) of the experimental room-temperature orthorhombic cell "
        "(a ≈ 5.50, b ≈ 5.52, c ≈ 7.79 Å)",
    ),
    Example(
        "LaCrO3_pseudocubic",
        "LaCrO3",
        "perovskite",
        3.88,
        ("La", "Cr"),
        "interconnect (as Sr/Ca-doped LaCrO3)",
        "orthorhombic Pbnm at room temperature; here the ideal cubic cell",
        "a_pc = 3.88 Å: (V/4)^(1/3) of the experimental room-temperature orthorhombic cell "
        "(a ≈ 5.48, b ≈ 5.52, c ≈ 7.76 Å)",
    ),
    Example(
        "BaCeO3_pseudocubic",
        "BaCeO3",
        "perovskite",
        4.40,
        ("Ba", "Ce"),
        "proton-conducting electrolyte (as Y-doped BaCeO3, BCY)",
        "orthorhombic Pnma at room temperature; here the ideal cubic cell",
        "a_pc = 4.40 Å: (V/4)^(1/3) of the experimental room-temperature orthorhombic cell "
        "(V ≈ 342 Å³ for Z = 4)",
    ),
    Example(
        "CeO2_fluorite",
        "CeO2",
        "fluorite",
        5.411,
        ("Ce",),
        "electrolyte / barrier layer (as Gd- or Sm-doped ceria, GDC/SDC)",
        "cubic fluorite Fm-3m",
        "a = 5.411 Å: experimental room-temperature value (ICDD PDF 34-0394, cerianite); the "
        "Materials Project entry is mp-20194",
    ),
    Example(
        "ZrO2_cubic_fluorite",
        "ZrO2",
        "fluorite",
        5.07,
        ("Zr",),
        "electrolyte (as yttria-stabilised zirconia, YSZ)",
        "cubic fluorite Fm-3m; pure ZrO2 is cubic only above ~2370 °C (monoclinic at room "
        "temperature), dopants such as Y2O3 stabilise the cubic phase",
        "a = 5.07 Å: value commonly quoted for pure cubic ZrO2 (extrapolated to room "
        "temperature); for comparison, 8 mol% YSZ measures a ≈ 5.14 Å",
    ),
    Example(
        "NiO_rocksalt",
        "NiO",
        "rocksalt",
        4.177,
        ("Ni",),
        "anode precursor (NiO-YSZ is reduced to the Ni-YSZ cermet)",
        "rock salt Fm-3m (tiny rhombohedral distortion below 523 K ignored)",
        "a = 4.177 Å: experimental room-temperature value (ICDD PDF 47-1049, bunsenite)",
    ),
    Example(
        "Ni_fcc",
        "Ni",
        "fcc",
        3.524,
        ("Ni",),
        "anode metal (the Ni of the Ni-YSZ cermet)",
        "face-centred cubic Fm-3m",
        "a = 3.524 Å: experimental room-temperature value (ICDD PDF 04-0850)",
    ),
)


def build(example: Example):
    """The pymatgen ``Structure`` of one example (conventional cubic cell)."""
    from pymatgen.core import Lattice, Structure

    lattice = Lattice.cubic(example.a)
    if example.kind == "perovskite":
        a_site, b_site = example.species
        return Structure(
            lattice,
            [a_site, b_site, "O", "O", "O"],
            [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
        )
    if example.kind == "fluorite":
        return Structure.from_spacegroup(
            "Fm-3m", lattice, [example.species[0], "O"], [[0, 0, 0], [0.25, 0.25, 0.25]]
        )
    if example.kind == "rocksalt":
        return Structure.from_spacegroup(
            "Fm-3m", lattice, [example.species[0], "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
        )
    if example.kind == "fcc":
        return Structure.from_spacegroup("Fm-3m", lattice, [example.species[0]], [[0, 0, 0]])
    raise ValueError(
        f"unknown example kind {example.kind!r}; valid: perovskite, fluorite, rocksalt, fcc"
    )


def _kind_label(example: Example) -> str:
    return {
        "perovskite": "perovskite ABO3",
        "fluorite": "fluorite AO2",
        "rocksalt": "rock salt",
        "fcc": "fcc metal",
    }[example.kind]


def _readme(examples: tuple[Example, ...]) -> str:
    lines = [
        "# Example structures: common solid-oxide fuel-cell materials",
        "",
        "Generated by `python -m engine.materials.examples` (do not edit by hand; edit `engine/materials/examples.py`).",
        "",
        (
            "Each file is an idealised, stoichiometric, conventional cubic cell built with pymatgen "
            "from the lattice parameter below and the ideal positions of its structure type "
            "(perovskite: A 1a, B 1b, O 3c; fluorite: cation 4a, O 8c; rock salt: 4a/4b). Several "
            "perovskites are only *pseudo*-cubic at room temperature (rhombohedral or orthorhombic "
            "with tilted octahedra); for those the file is the ideal cubic cell at the pseudo-cubic "
            "lattice parameter a_pc = (V/Z)^(1/3). Doped, non-stoichiometric electrolytes and "
            "electrodes (YSZ, GDC, LSM, LSCF) have no ordered cell and are represented by their "
            "parent compounds."
        ),
        "",
        (
            "Lattice parameters are rounded room-temperature experimental values as commonly "
            "tabulated; the source column says what each number is. They are for screening and "
            "teaching, not for quantitative work."
        ),
        "",
        (
            "| file | formula | structure type | role in a fuel cell | real room-temperature "
            "structure | lattice parameter | source |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for ex in examples:
        lines.append(
            f"| `{ex.key}.cif` | {ex.formula} | {_kind_label(ex)} | {ex.role} | "
            f"{ex.structure_note} | {ex.a:g} Å | {ex.source} |"
        )
    lines.append("")
    return "\n".join(lines)


def write_examples(directory: str | Path | None = None) -> list[Path]:
    """Write every example as ``<key>.cif`` plus ``README.md`` into ``directory``.

    Args:
        directory: target folder (default ``assets/examples``); created if needed.

    Returns:
        The CIF paths written, in :data:`EXAMPLES` order.
    """
    import warnings

    from pymatgen.io.cif import CifWriter

    folder = Path(directory) if directory is not None else EXAMPLES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for ex in EXAMPLES:
        structure = build(ex)
        if structure.composition.reduced_formula != ex.formula:
            raise AssertionError(
                f"{ex.key}: built {structure.composition.reduced_formula}, expected {ex.formula}"
            )
        path = folder / f"{ex.key}.cif"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            text = str(CifWriter(structure, symprec=0.01))
        # name the data block after the file so that the structure's id is the file stem
        lines = text.splitlines()
        lines = [f"data_{ex.key}" if ln.startswith("data_") else ln for ln in lines]
        header = [
            f"# {ex.formula}: {_kind_label(ex)}, {ex.structure_note}",
            f"# Lattice parameter source: {ex.source}",
            "# Generated by `python -m engine.materials.examples` (crystal-screen).",
        ]
        path.write_text("\n".join(header + lines) + "\n")
        written.append(path)
    (folder / "README.md").write_text(_readme(EXAMPLES))
    return written


def example_files(directory: str | Path | None = None) -> list[Path]:
    """The example CIF files present in ``directory`` (default ``assets/examples``), sorted."""
    folder = Path(directory) if directory is not None else EXAMPLES_DIR
    return sorted(folder.glob("*.cif")) if folder.is_dir() else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engine.materials.examples",
        description="Write the example SOFC structures (CIF) and their README table.",
    )
    parser.add_argument(
        "directory",
        nargs="?",
        default=str(EXAMPLES_DIR),
        help="output folder (default: assets/examples)",
    )
    args = parser.parse_args(argv)
    paths = write_examples(args.directory)
    print(f"wrote {len(paths)} example structures and README.md to {args.directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
