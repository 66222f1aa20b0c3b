"""Tests for engine.io: formats, containers, and validation errors."""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter
from pymatgen.io.vasp import Poscar

import engine.io as st
from engine.core.config import data_dir
from engine.io import (
    NamedStructure,
    ReadError,
    StructureBatch,
    StructureReadError,
    read_structure,
    read_structures,
    record_id,
    structure_from_record,
    validate_structure,
)


def nacl() -> Structure:
    return Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def perovskite() -> Structure:
    return Structure(
        Lattice.cubic(3.9),
        ["Sr", "Ti", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )


def triclinic() -> Structure:
    lat = Lattice.from_parameters(4.1, 5.2, 6.3, 80, 95, 110)
    return Structure(lat, ["Fe", "O", "O"], [[0.1, 0.2, 0.3], [0.6, 0.5, 0.4], [0.3, 0.8, 0.9]])


def cif_text(s: Structure, block: str | None = None) -> str:
    text = str(CifWriter(s))
    if block is not None:
        text = text.replace(f"data_{s.composition.reduced_formula}", f"data_{block}", 1)
    return text


def poscar_text(s: Structure) -> str:
    return Poscar(s).get_str()


def extxyz_text(structs: list[Structure], ids: list[str] | None = None) -> str:
    import ase.io
    from pymatgen.io.ase import AseAtomsAdaptor

    frames = []
    for k, s in enumerate(structs):
        atoms = AseAtomsAdaptor.get_atoms(s)
        if ids:
            atoms.info["material_id"] = ids[k]
        frames.append(atoms)
    buf = io.StringIO()
    ase.io.write(buf, frames, format="extxyz")
    return buf.getvalue()


def record(s: Structure, **extra: object) -> dict:
    return {
        "lattice": s.lattice.matrix.tolist(),
        "species": [site.species_string for site in s],
        "frac_coords": s.frac_coords.tolist(),
        **extra,
    }


def assert_same(a: Structure, b: Structure) -> None:
    assert np.allclose(a.lattice.matrix, b.lattice.matrix, atol=1e-4)
    assert [x.species_string for x in a] == [x.species_string for x in b]
    diff = a.frac_coords - b.frac_coords
    assert np.allclose(diff - np.round(diff), 0, atol=1e-4)


def only_error(batch: StructureBatch) -> ReadError:
    assert len(batch) == 0, batch.ids
    assert len(batch.errors) == 1, batch.errors
    return batch.errors[0]


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("s", [nacl(), perovskite(), triclinic()], ids=["nacl", "srtio3", "tri"])
@pytest.mark.parametrize(
    "fmt", ["cif", "cif.gz", "POSCAR", "vasp", "xyz", "extxyz", "json", "jsonl", "jsonl.gz"]
)
def test_round_trip(tmp_path: Path, s: Structure, fmt: str) -> None:
    if fmt in ("cif", "cif.gz"):
        data = cif_text(s).encode()
    elif fmt in ("POSCAR", "vasp"):
        data = poscar_text(s).encode()
    elif fmt in ("xyz", "extxyz"):
        data = extxyz_text([s]).encode()
    elif fmt == "json":
        data = s.to_json().encode()
    else:
        data = (json.dumps(record(s, material_id="mp-x")) + "\n").encode()
    if fmt.endswith(".gz"):
        data = gzip.compress(data)
    name = "POSCAR" if fmt == "POSCAR" else f"thing.{fmt}"
    path = tmp_path / name
    path.write_bytes(data)
    batch = read_structures(path)
    assert batch.errors == []
    assert len(batch) == 1
    expected_id = {"POSCAR": "POSCAR", "jsonl": "mp-x", "jsonl.gz": "mp-x"}.get(fmt, "thing")
    assert batch.ids == [expected_id]
    assert_same(batch.structures[0], s)
    assert isinstance(batch.items[0], NamedStructure)
    # the same bytes given directly with a name, and as a (name, bytes) tuple
    assert_same(read_structure(data, name=name), s)
    assert_same(read_structure((name, data)), s)


def test_json_list_and_id_map() -> None:
    data = json.dumps([nacl().as_dict(), perovskite().as_dict()]).encode()
    batch = read_structures(data, name="many.json")
    assert batch.ids == ["many#0", "many#1"]
    data = json.dumps({"a": nacl().as_dict(), "b": record(perovskite())}).encode()
    batch = read_structures(data, name="map.json")
    assert batch.ids == ["a", "b"]
    assert batch.structures[1].composition.reduced_formula == "SrTiO3"


def test_multi_block_cif_ids_and_bad_block() -> None:
    text = "\n".join(
        [
            cif_text(nacl(), "first"),
            cif_text(perovskite(), "second"),
            cif_text(nacl(), "broken").replace("Cl  Cl1", "Xx  Xx1"),
        ]
    )
    batch = read_structures(text.encode(), name="multi.cif")
    assert batch.ids == ["first", "second"]
    assert batch.items[1].source == "multi.cif block 'second'"
    err = batch.errors[0]
    assert err.source == "multi.cif block 'broken'"
    assert "unknown element 'Xx'" in err.reason


def test_single_block_cif_id_is_file_stem() -> None:
    batch = read_structures(cif_text(nacl(), "whatever").encode(), name="mp-22862.cif")
    assert batch.ids == ["mp-22862"]


def test_multi_frame_extxyz() -> None:
    text = extxyz_text([nacl(), perovskite(), triclinic()])
    batch = read_structures(text.encode(), name="frames.extxyz")
    assert batch.ids == ["frames#0", "frames#1", "frames#2"]
    assert_same(batch.structures[2], triclinic())
    named = read_structures(extxyz_text([nacl(), perovskite()], ["a", "b"]).encode(), name="f.xyz")
    assert named.ids == ["a", "b"]


def test_extxyz_without_lattice_is_an_error() -> None:
    err = only_error(read_structures(b"2\n\nNa 0 0 0\nCl 2.8 2.8 2.8\n", name="mol.xyz"))
    assert "Lattice" in err.reason


def test_oxidation_states_are_removed() -> None:
    s = nacl()
    s.add_oxidation_state_by_element({"Na": 1, "Cl": -1})
    out = read_structure(cif_text(s).encode(), name="ox.cif")
    assert [site.species_string for site in out] == ["Na", "Cl"]


# ----------------------------------------------------------------------------- containers


def make_zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_zip_with_nested_folders(tmp_path: Path) -> None:
    inner = make_zip({"deep/srtio3.cif": cif_text(perovskite()).encode()})
    data = make_zip(
        {
            "a/b/nacl.cif": cif_text(nacl()).encode(),
            "a/mp-7/POSCAR": poscar_text(triclinic()).encode(),
            "a/README.txt": b"hello",
            "a/id_prop.csv": b"nacl,1.0\n",
            "__MACOSX/a/._nacl.cif": b"junk",
            "inner.zip": inner,
        }
    )
    (tmp_path / "upload.zip").write_bytes(data)
    batch = read_structures(tmp_path / "upload.zip", name="upload.zip")
    assert batch.errors == []
    assert sorted(batch.ids) == ["mp-7", "nacl", "srtio3"]
    sources = {it.id: it.source for it in batch}
    assert sources["nacl"] == "upload.zip/a/b/nacl.cif"
    assert sources["srtio3"] == "upload.zip/inner.zip/deep/srtio3.cif"
    assert "upload.zip/a/README.txt" in batch.skipped
    # uploaded as bytes it reads the same
    assert sorted(read_structures(data, name="upload.zip").ids) == ["mp-7", "nacl", "srtio3"]


def test_zip_bomb_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_zip({"big.cif": b"#" * 200_000, "nacl.cif": cif_text(nacl()).encode()})
    assert len(data) < 10_000
    limits = st.ReadLimits(max_bytes=100_000)
    err = only_error(read_structures(data, name="bomb.zip", limits=limits))
    assert err.source == "bomb.zip/big.cif"
    assert "compression bomb" in err.reason


def test_bad_zip_and_empty_zip() -> None:
    assert "could not" in only_error(read_structures(b"not a zip", name="x.zip")).reason
    err = only_error(read_structures(make_zip({"notes.txt": b"x"}), name="empty.zip"))
    assert "no structure files" in err.reason


def test_folder_reading(tmp_path: Path) -> None:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "nacl.cif").write_text(cif_text(nacl()))
    (tmp_path / "sub" / "srtio3.vasp").write_text(poscar_text(perovskite()))
    (tmp_path / "sub" / "deeper" / "fe2o.json").write_text(triclinic().to_json())
    (tmp_path / "id_prop.csv").write_text("nacl,1\n")
    (tmp_path / "atom_init.json").write_text(json.dumps({"1": [0, 1], "2": [1, 0]}))
    (tmp_path / ".hidden.cif").write_text("garbage")
    (tmp_path / "notes.md").write_text("# notes")
    batch = read_structures(tmp_path)
    assert batch.errors == []
    assert batch.ids == ["nacl", "fe2o", "srtio3"]  # sorted by relative path
    assert {Path(p).name for p in batch.skipped} == {
        "id_prop.csv",
        "atom_init.json",
        "notes.md",
        ".hidden.cif",
    }
    assert next(p for p in batch.skipped if p.endswith(".hidden.cif")).reason == "hidden"


def test_list_of_mixed_sources(tmp_path: Path) -> None:
    (tmp_path / "a.cif").write_text(cif_text(nacl()))
    batch = read_structures(
        [
            tmp_path / "a.cif",
            ("b.vasp", poscar_text(perovskite()).encode()),
            str(tmp_path / "a.cif"),
        ]
    )
    assert batch.ids == ["a", "b", "a"]
    # a pair of paths is two files, not a (name, bytes) upload
    assert read_structures((str(tmp_path / "a.cif"), str(tmp_path / "a.cif"))).ids == ["a", "a"]
    other = StructureBatch()
    other.extend(batch)
    assert len(other) == 3 and len(other.structures) == 3


def test_batch_with_one_bad_file_keeps_the_others(tmp_path: Path) -> None:
    (tmp_path / "good1.cif").write_text(cif_text(nacl()))
    (tmp_path / "bad.cif").write_text("data_bad\n_cell_length_a 3\nthis is not a cif\n")
    (tmp_path / "good2.vasp").write_text(poscar_text(perovskite()))
    batch = read_structures(tmp_path)
    assert sorted(batch.ids) == ["good1", "good2"]
    assert len(batch.errors) == 1
    assert batch.errors[0].source.endswith("bad.cif")
    assert "bad.cif" in str(batch.errors[0])


def test_bytes_need_a_name() -> None:
    with pytest.raises(TypeError, match="name"):
        read_structures(b"data_x")


def test_missing_file() -> None:
    assert only_error(read_structures("/no/such/file.cif")).reason == "file not found"


def test_read_structure_wants_exactly_one() -> None:
    multi = (cif_text(nacl(), "a") + cif_text(perovskite(), "b")).encode()
    with pytest.raises(StructureReadError, match="exactly one structure, found 2"):
        read_structure(multi, name="two.cif")
    with pytest.raises(StructureReadError, match="unknown element") as info:
        read_structure(poscar_text(nacl()).replace("Cl", "Xx").encode(), name="POSCAR")
    assert info.value.source == "POSCAR"
    assert isinstance(info.value, ValueError)


@pytest.mark.skipif(data_dir() is None, reason="shared data folder not found (CRYSTAL_SCREEN_DATA)")
def test_cgcnn_sample_folder_reads() -> None:
    root = data_dir()
    assert root is not None
    batch = read_structures(root / "cgcnn_sample")
    assert batch.errors == []
    assert len(batch) == 10
    assert "1000041" in batch.ids


# ----------------------------------------------------------------------------- validation


PARTIAL_CIF = cif_text(nacl()).replace(
    "Cl  Cl1  1  0.50000000  0.50000000  0.50000000  1",
    "Cl  Cl1  1  0.50000000  0.50000000  0.50000000  0.5\n"
    "  Br  Br1  1  0.50000000  0.50000000  0.50000000  0.5",
)


def test_partial_occupancy_is_read_as_a_disordered_site() -> None:
    assert "0.5" in PARTIAL_CIF  # the fixture really is disordered
    s = read_structure(PARTIAL_CIF.encode(), name="alloy.cif")
    assert not s.is_ordered
    assert {str(sp): occ for sp, occ in s[1].species.items()} == {"Cl": 0.5, "Br": 0.5}


def test_vacancy_is_read() -> None:
    text = cif_text(nacl()).replace(
        "Cl  Cl1  1  0.50000000  0.50000000  0.50000000  1",
        "Cl  Cl1  1  0.50000000  0.50000000  0.50000000  0.9",
    )
    s = read_structure(text.encode(), name="vacancy.cif")
    assert s[1].species.num_atoms == pytest.approx(0.9)


def test_two_atoms_at_one_position_are_refused() -> None:
    text = cif_text(nacl()).replace(
        "Cl  Cl1  1  0.50000000  0.50000000  0.50000000  1",
        "Cl  Cl1  1  0.50000000  0.50000000  0.50000000  1\n"
        "  Br  Br1  1  0.50000000  0.50000000  0.50000000  1",
    )
    err = only_error(read_structures(text.encode(), name="double.cif"))
    assert err.source == "double.cif"
    assert "'Cl1' and 'Br1'" in err.reason and "summing to 2, more than 1" in err.reason
    assert "sum to > 1" not in err.reason


def test_overfull_site_in_pymatgen_json_names_the_site() -> None:
    d = nacl().as_dict()
    d["sites"][1]["species"] = [{"element": "Cl", "occu": 1}, {"element": "Br", "occu": 0.5}]
    err = only_error(read_structures(json.dumps(d).encode(), name="over.json"))
    assert err.source == "over.json"
    assert "site 1" in err.reason and "sum to 1.5, more than 1" in err.reason
    d["sites"][1]["species"] = [{"element": "Cl", "occu": 0.5}, {"element": "Br", "occu": 0.25}]
    s = read_structure(json.dumps(d).encode(), name="ok.json")
    assert s[1].species.num_atoms == pytest.approx(0.75)


def test_no_atoms() -> None:
    empty_cif = cif_text(nacl()).split("loop_\n _atom_site")[0]
    assert "no atoms" in only_error(read_structures(empty_cif.encode(), name="e.cif")).reason
    with pytest.raises(StructureReadError, match="no atoms"):
        validate_structure(Structure(Lattice.cubic(3), [], []))
    bad = record(nacl())
    bad["species"], bad["frac_coords"] = [], []
    with pytest.raises(StructureReadError, match="no atoms"):
        structure_from_record(bad)


def test_close_atoms_inside_the_cell() -> None:
    s = Structure(Lattice.cubic(5), ["Na", "Cl"], [[0, 0, 0], [0.02, 0, 0]])
    err = only_error(read_structures(poscar_text(s).encode(), name="close.vasp"))
    assert "0.100 Å apart" in err.reason and "Na (site 0)" in err.reason
    assert "Cl (site 1)" in err.reason and "limit 0.5 Å" in err.reason


def test_close_atoms_across_the_boundary() -> None:
    s = Structure(Lattice.cubic(5), ["Na", "Cl"], [[0.01, 0.5, 0.5], [0.99, 0.5, 0.5]])
    assert s.get_distance(0, 1, jimage=[0, 0, 0]) > 4.8  # far apart inside the cell
    err = only_error(read_structures(cif_text(s).encode(), name="image.cif"))
    assert "0.100 Å apart across the cell boundary" in err.reason
    # a looser limit accepts it
    assert len(read_structures(cif_text(s).encode(), name="image.cif", min_distance=0.05)) == 1


def test_atom_overlapping_its_own_image() -> None:
    s = Structure(Lattice.cubic(0.4), ["Na"], [[0, 0, 0]])
    with pytest.raises(StructureReadError, match="own periodic image"):
        validate_structure(s)


def test_unknown_element_in_cif_and_poscar() -> None:
    # pymatgen turns unknown symbols into DummySpecies silently (POSCAR) or with a warning (CIF)
    cif = cif_text(nacl()).replace("Cl  Cl1", "Xx  Xx1")
    assert only_error(read_structures(cif.encode(), name="x.cif")).reason == "unknown element 'Xx'"
    pos = poscar_text(nacl()).replace("Cl", "Qq")
    assert only_error(read_structures(pos.encode(), name="POSCAR")).reason == (
        "unknown element 'Qq'"
    )
    bad = record(nacl())
    bad["species"] = ["Na", "Zz"]
    with pytest.raises(StructureReadError, match="unknown element 'Zz'"):
        structure_from_record(bad)
    xyz = extxyz_text([nacl()]).replace("Cl ", "Xx ")
    assert "unknown element" in only_error(read_structures(xyz.encode(), name="x.xyz")).reason


def test_poscar_without_element_names() -> None:
    lines = poscar_text(nacl()).splitlines()
    del lines[5]  # the species line
    text = "\n".join(line.replace(" Na", "").replace(" Cl", "") for line in lines)
    err = only_error(read_structures(text.encode(), name="POSCAR"))
    assert "does not name its elements" in err.reason


def test_too_many_atoms() -> None:
    err = only_error(read_structures(cif_text(perovskite()).encode(), name="p.cif", max_atoms=4))
    assert err.reason.startswith(
        "the CIF lists 5 distinct atom positions, more than the limit of 4 atoms per cell"
    )


def test_degenerate_lattice() -> None:
    bad = record(nacl())
    bad["lattice"] = [[3, 0, 0], [0, 3, 0], [3, 3, 0]]
    err = only_error(read_structures(json.dumps(bad).encode(), name="flat.jsonl"))
    assert "volume" in err.reason and "degenerate" in err.reason
    assert err.source == "flat.jsonl line 1"


@pytest.mark.parametrize("name", ["g.cif", "POSCAR", "g.xyz", "g.json", "g.jsonl", "g.cif.gz"])
def test_garbage_bytes(name: str) -> None:
    err = only_error(read_structures(b"\x89PNG\r\n\x1a\n\x00\x00garbage\xff\xfe", name=name))
    assert err.source == name
    assert err.reason
    assert "Traceback" not in err.reason
    text_err = only_error(read_structures(b"hello world\nthis is text", name=name))
    assert text_err.reason


def test_unknown_extension() -> None:
    err = only_error(read_structures(b"whatever", name="structure.docx"))
    assert "unknown file format" in err.reason and "CIF" in err.reason


def test_empty_file() -> None:
    assert only_error(read_structures(b"  \n", name="e.cif")).reason == "the file is empty"


def test_jsonl_bad_line_keeps_others() -> None:
    lines = [
        json.dumps(record(nacl(), id="a")),
        "{not json",
        json.dumps({"id": "c", "note": "no structure"}),
        json.dumps(record(perovskite(), id="d")),
    ]
    batch = read_structures("\n".join(lines).encode(), name="data.jsonl")
    assert batch.ids == ["a", "d"]
    assert [e.source for e in batch.errors] == ["data.jsonl line 2", "data.jsonl line 3 (c)"]


def test_record_id_order() -> None:
    assert record_id({"auid": "aflow:1", "mp_id": "mp-1"}, "x") == "aflow:1"
    assert record_id({"material_id": "mp-2", "auid": "aflow:1"}, "x") == "mp-2"
    assert record_id({"id": 7}, "x") == "7"
    assert record_id({"id": None, "name": "n"}, "fallback") == "fallback"
