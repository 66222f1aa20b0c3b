"""Tests for engine.io.datasets and engine.io.splits: layouts, table, hashing and splits."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter
from pymatgen.io.vasp import Poscar

from engine.core.config import SplitConfig
from engine.io import NamedStructure
from engine.io.datasets import LabelledDataset, find_datasets, load_dataset
from engine.io.splits import split_dataset

ELEMENTS = ["Li", "Na", "K", "Rb", "Cs", "Mg", "Ca", "Sr", "Ba", "Zn"]
ANIONS = ["F", "Cl", "Br", "I", "O", "S"]


def rocksalt(cation: str, anion: str, a: float = 5.0) -> Structure:
    return Structure(Lattice.cubic(a), [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]])


def synthetic(n_formulas: int = 40, polymorphs: int = 3, seed: int = 0) -> LabelledDataset:
    """Up to ``polymorphs`` cells (different lattice constants) for each of ``n_formulas``."""
    rng = np.random.default_rng(seed)
    pairs = [(c, a) for c in ELEMENTS for a in ANIONS][:n_formulas]
    items, rows = [], []
    for k, (c, a) in enumerate(pairs):
        for p in range(1 + k % polymorphs):
            s = rocksalt(c, a, 4.5 + 0.3 * p)
            ident = f"{c}{a}-{p}"
            items.append(NamedStructure(ident, s, "synthetic"))
            rows.append(
                {
                    "id": ident,
                    "formula": s.composition.reduced_formula,
                    "n_sites": len(s),
                    "y": float(rng.normal()),
                }
            )
    return LabelledDataset("synthetic", items, pd.DataFrame(rows), [], "synthetic")


def write_jsonl(path: Path, records: list[dict]) -> None:
    text = "".join(json.dumps(r) + "\n" for r in records)
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)


def rec(s: Structure, **extra: object) -> dict:
    return {
        "lattice": s.lattice.matrix.tolist(),
        "species": [x.species_string for x in s],
        "frac_coords": s.frac_coords.tolist(),
        **extra,
    }


# ----------------------------------------------------------------------------- shared data


def test_cgcnn_sample_folder(shared_data: Path) -> None:
    ds = load_dataset(shared_data / "cgcnn_sample")
    assert ds.name == "cgcnn_sample"
    assert len(ds) == 10 and ds.errors == []
    assert list(ds.table.columns) == ["id", "formula", "n_sites", "target"]
    ids = [
        line.split(",")[0]
        for line in (shared_data / "cgcnn_sample/id_prop.csv").read_text().split()
    ]
    assert ds.ids == ids
    assert np.array_equal(ds.targets("target"), np.arange(1.0, 11.0))
    assert ds.targets("target").dtype == np.float64
    assert ds.numeric_columns() == ["target"]
    assert ds.table.loc[ds.table.id == "1000050", "formula"].item() == "KCl"


def test_aflow_demo(shared_data: Path) -> None:
    ds = load_dataset(shared_data / "aflow_agl" / "demo.jsonl.gz")
    assert ds.name == "aflow_agl/demo"
    assert len(ds) == 1278 and ds.errors == []
    assert list(ds.table.columns[:3]) == ["id", "formula", "n_sites"]
    assert ds.ids[0].startswith("aflow:")
    numeric = ds.numeric_columns()
    assert "agl_thermal_expansion_300K" in numeric and "n_sites" not in numeric
    y = ds.targets("agl_thermal_expansion_300K")
    assert y.shape == (1278,) and np.all(y[np.isfinite(y)] < 1e-3)
    with pytest.raises(KeyError, match="agl_debye"):
        ds.targets("no_such_column")
    with pytest.raises(KeyError, match="not numeric"):
        ds.targets("crabnet_split")
    assert int(ds.table.n_sites.max()) <= 24


def test_column_split_on_crabnet_split(shared_data: Path) -> None:
    ds = load_dataset(shared_data / "aflow_agl" / "demo.jsonl.gz")
    labels = ds.table.crabnet_split.str.lower()
    assert "test" not in set(labels.dropna())
    cfg = SplitConfig(kind="column", column="crabnet_split", test_fraction=0.1, seed=3)
    parts = split_dataset(ds, cfg)
    assert set(labels.iloc[parts["val"]]) == {"val"}
    assert set(labels.iloc[parts["train"]]) == {"train"}
    assert set(labels.iloc[parts["test"]]) == {"train"}  # carved out of train
    n_train = int((labels == "train").sum())
    assert len(parts["train"]) + len(parts["test"]) == n_train
    assert 0.05 * n_train < len(parts["test"]) < 0.15 * n_train
    f = ds.table.formula.to_numpy()
    assert not set(f[parts["test"]]) & set(f[parts["train"]])
    assert all(np.array_equal(parts[k], split_dataset(ds, cfg)[k]) for k in parts)


def test_mp_elastic_nested_fields_are_not_columns(shared_data: Path) -> None:
    ds = load_dataset(shared_data / "mp_elastic" / "structures.jsonl.gz", limit=60)
    assert len(ds) + len(ds.errors) == 60
    assert "K_raw" not in ds.table.columns and "G_raw" not in ds.table.columns
    assert "K_VRH" in ds.numeric_columns()
    assert "source_formula" in ds.table.columns  # the file's own 'formula' key, renamed
    assert ds.ids[0].startswith("mp-")


def test_find_datasets_in_shared_data(shared_data: Path) -> None:
    found = find_datasets()
    assert shared_data / "cgcnn_sample" in found
    assert shared_data / "aflow_agl" / "structures.jsonl.gz" in found
    assert found == sorted(found)


# ----------------------------------------------------------------------------- layouts


def test_jsonl_layout(tmp_path: Path) -> None:
    records = [
        rec(rocksalt("Na", "Cl"), material_id="mp-1", e=1.5, tag="a", nested={"x": 1}),
        {"material_id": "mp-2", "e": 2.0},  # no structure
        rec(rocksalt("K", "Cl"), material_id="mp-3", e=None, tag="b", nested=[1, 2]),
        rec(rocksalt("Na", "Cl", 0.4), material_id="mp-4", e=4.0),  # atoms overlap
    ]
    path = tmp_path / "mini.jsonl.gz"
    write_jsonl(path, records)
    ds = load_dataset(path)
    assert ds.ids == ["mp-1", "mp-3"]
    assert list(ds.table.columns) == ["id", "formula", "n_sites", "material_id", "e", "tag"]
    assert ds.numeric_columns() == ["e"]
    assert np.isnan(ds.targets("e")[1])
    assert [e.source for e in ds.errors] == [
        "mini.jsonl.gz line 2 (mp-2)",
        "mini.jsonl.gz line 4 (mp-4)",
    ]
    assert len(ds.dropna("e")) == 1
    limited = load_dataset(path, limit=2)
    assert limited.ids == ["mp-1"] and len(limited.errors) == 1


def cgcnn_folder(root: Path, missing: bool = False) -> Path:
    folder = root / "cg"
    folder.mkdir()
    pairs = [("Na", "Cl"), ("K", "Br"), ("Li", "F")]
    for k, (c, a) in enumerate(pairs):
        if missing and k == 1:
            continue
        (folder / f"{k:04d}.cif").write_text(str(CifWriter(rocksalt(c, a))))
    (folder / "id_prop.csv").write_text("".join(f"{k:04d},{k + 0.5},{10 * k}\n" for k in range(3)))
    return folder


def test_cgcnn_layout_with_missing_file(tmp_path: Path) -> None:
    ds = load_dataset(cgcnn_folder(tmp_path, missing=True))
    assert ds.ids == ["0000", "0002"]  # ids keep their leading zeros
    assert list(ds.table.columns) == ["id", "formula", "n_sites", "target", "target_1"]
    assert np.allclose(ds.targets("target_1"), [0, 20])
    assert len(ds.errors) == 1
    err = ds.errors[0]
    assert "0001" in err.reason and "id_prop.csv line 2" in err.source


def test_csv_with_structure_files(tmp_path: Path) -> None:
    (tmp_path / "a.cif").write_text(str(CifWriter(rocksalt("Na", "Cl"))))
    (tmp_path / "b.vasp").write_text(Poscar(rocksalt("K", "Br")).get_str())
    multi = str(CifWriter(rocksalt("Li", "F"))).replace("data_LiF", "data_c1") + str(
        CifWriter(rocksalt("Rb", "I", 7.0))
    ).replace("data_RbI", "data_c2")
    (tmp_path / "many.cif").write_text(multi)
    (tmp_path / "broken.cif").write_text("data_broken\n_cell_length_a 3\n")
    (tmp_path / "labels.csv").write_text(
        "material_id,band_gap,note\na,1.0,x\nb,2.0,y\nc2,3.0,z\nnope,4.0,w\nbroken,5.0,v\n"
    )
    ds = load_dataset(tmp_path / "labels.csv")
    assert ds.name == f"{tmp_path.name}/labels"
    assert ds.ids == ["a", "b", "c2"]
    assert list(ds.table.columns) == ["id", "formula", "n_sites", "band_gap", "note"]
    assert np.allclose(ds.targets("band_gap"), [1, 2, 3])
    assert ds.table.formula.tolist() == ["NaCl", "KBr", "RbI"]
    reasons = " | ".join(str(e) for e in ds.errors)
    assert "no structure found for id 'nope'" in reasons
    assert "broken" in reasons
    # the folder works too when it holds exactly one CSV
    assert load_dataset(tmp_path).ids == ds.ids


def test_unlabelled_folder(tmp_path: Path) -> None:
    (tmp_path / "a.cif").write_text(str(CifWriter(rocksalt("Na", "Cl"))))
    ds = load_dataset(tmp_path)
    assert ds.ids == ["a"] and ds.numeric_columns() == []


def test_missing_path() -> None:
    with pytest.raises(FileNotFoundError):
        load_dataset("/no/such/dataset.jsonl")


def test_find_datasets_layouts(tmp_path: Path) -> None:
    cgcnn_folder(tmp_path)
    (tmp_path / "x").mkdir()
    write_jsonl(tmp_path / "x" / "d.jsonl.gz", [rec(rocksalt("Na", "Cl"))])
    write_jsonl(tmp_path / "e.jsonl", [rec(rocksalt("Na", "Cl"))])
    (tmp_path / ".hidden").mkdir()
    write_jsonl(tmp_path / ".hidden" / "h.jsonl", [rec(rocksalt("Na", "Cl"))])
    (tmp_path / "notes.csv").write_text("a,b\n")
    assert find_datasets(tmp_path) == [
        tmp_path / "cg",
        tmp_path / "e.jsonl",
        tmp_path / "x" / "d.jsonl.gz",
    ]


# ----------------------------------------------------------------------------- table ops


def test_subset_query_dropna() -> None:
    ds = synthetic()
    small = ds.query("y > 0")
    assert len(small) == int((ds.table.y > 0).sum())
    assert all(small.table.y > 0)
    assert [it.id for it in small.items] == small.ids  # items follow the table
    with pytest.raises(ValueError, match="invalid query"):
        ds.query("y >")
    with pytest.raises(ValueError, match="invalid query"):
        ds.query("no_such_column > 1")
    sub = ds.subset([3, 1])
    assert sub.ids == [ds.ids[3], ds.ids[1]]
    assert sub.subset(np.array([True, False])).ids == [ds.ids[3]]
    with pytest.raises(KeyError):
        ds.dropna("nope")


def test_content_hash_is_stable_and_sensitive() -> None:
    a, b = synthetic(), synthetic()
    assert a.content_hash() == b.content_hash()
    assert len(a.content_hash()) == 64
    b.table.loc[2, "y"] += 1e-3
    assert a.content_hash() != b.content_hash()
    c = synthetic()
    moved = c.items[0].structure.copy()
    moved.translate_sites([1], [0.01, 0, 0])
    c.items[0] = NamedStructure(c.items[0].id, moved, "x")
    assert a.content_hash() != c.content_hash()
    assert a.subset(range(len(a) - 1)).content_hash() != a.content_hash()


def test_content_hash_of_a_loaded_file(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    write_jsonl(path, [rec(rocksalt("Na", "Cl"), id="x", y=1.0)])
    assert load_dataset(path).content_hash() == load_dataset(path).content_hash()
    write_jsonl(path, [rec(rocksalt("Na", "Cl"), id="x", y=1.5)])
    h2 = load_dataset(path).content_hash()
    write_jsonl(path, [rec(rocksalt("Na", "Cl"), id="x", y=1.0)])
    assert load_dataset(path).content_hash() != h2


# ----------------------------------------------------------------------------- splits


def check_partition(parts: dict[str, np.ndarray], n: int, *, full: bool = True) -> None:
    assert set(parts) == {"train", "val", "test"}
    for v in parts.values():
        assert v.dtype == np.int64 and np.array_equal(v, np.sort(v))
    joined = np.concatenate(list(parts.values()))
    assert len(joined) == len(set(joined.tolist()))
    if full:
        assert sorted(joined.tolist()) == list(range(n))


def test_group_split_keeps_formulas_together() -> None:
    ds = synthetic()
    f = ds.table.formula.to_numpy()
    for seed in range(5):
        parts = split_dataset(ds, SplitConfig(kind="group", seed=seed, val_fraction=0.2))
        check_partition(parts, len(ds))
        sets = [set(f[parts[k]]) for k in ("train", "val", "test")]
        assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
        assert abs(len(parts["val"]) - 0.2 * len(ds)) <= 3
        assert abs(len(parts["test"]) - 0.1 * len(ds)) <= 3


def test_split_reproducible_and_seed_dependent() -> None:
    ds = synthetic()
    for kind in ("group", "random"):
        one = split_dataset(ds, SplitConfig(kind=kind, seed=1))
        two = split_dataset(ds, SplitConfig(kind=kind, seed=1))
        other = split_dataset(ds, SplitConfig(kind=kind, seed=2))
        assert all(np.array_equal(one[k], two[k]) for k in one)
        assert not np.array_equal(one["test"], other["test"])


def test_random_split_sizes() -> None:
    ds = synthetic()
    parts = split_dataset(ds, SplitConfig(kind="random", val_fraction=0.25, test_fraction=0.0))
    check_partition(parts, len(ds))
    assert len(parts["test"]) == 0
    assert len(parts["val"]) == round(0.25 * len(ds))


def test_tiny_datasets() -> None:
    three = synthetic(n_formulas=3, polymorphs=1)
    for kind in ("group", "random"):
        parts = split_dataset(three, SplitConfig(kind=kind))
        check_partition(parts, 3)
        assert all(len(v) == 1 for v in parts.values())
    two = three.subset([0, 1])
    with pytest.raises(ValueError, match="too small"):
        split_dataset(two, SplitConfig(kind="random"))
    parts = split_dataset(two, SplitConfig(kind="group", test_fraction=0.0))
    assert len(parts["train"]) == 1 and len(parts["val"]) == 1
    one_formula = synthetic(n_formulas=3, polymorphs=3).query("formula == 'LiBr'")
    assert len(one_formula) == 3
    with pytest.raises(ValueError, match="distinct reduced formulas"):
        split_dataset(one_formula, SplitConfig(kind="group"))
    with pytest.raises(ValueError, match="empty"):
        split_dataset(three.subset([]), SplitConfig())


def test_column_split_drops_unlabelled_rows_and_carves_val() -> None:
    ds = synthetic()
    n = len(ds)
    labels = np.array(["Train"] * n, dtype=object)
    labels[:10] = "TEST"
    labels[10:13] = None
    labels[13:15] = "holdout"
    ds.table["split"] = labels
    parts = split_dataset(ds, SplitConfig(kind="column", column="split", val_fraction=0.2))
    check_partition(parts, n, full=False)
    assert parts["test"].tolist() == list(range(10))
    assert not set(range(10, 15)) & set(np.concatenate(list(parts.values())).tolist())
    assert len(parts["val"]) > 0  # no 'val' rows: carved from train by formula
    f = ds.table.formula.to_numpy()
    assert not set(f[parts["val"]]) & set(f[parts["train"]])
    with pytest.raises(KeyError, match="nope"):
        split_dataset(ds, SplitConfig(kind="column", column="nope"))
