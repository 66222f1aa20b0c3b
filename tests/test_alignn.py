"""The ALIGNN-style family: line-graph construction, batching, invariances, save/load, training
and the CLI."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch_geometric.data import Batch

from engine.catalog.names import load_model
from engine.core.config import ALIGNNConfig, GraphConfig, SplitConfig, TrainConfig
from engine.graphs.builder import GraphBuilder
from engine.graphs.linegraph import LineGraphData, attach_line_graph, line_graph
from engine.models import MissingInputError, build_model, model_config_from_dict
from engine.store.card import ModelCard, Normalizer
from engine.store.directory import LoadedModel, save_model
from tests.conftest import equivalent_cells, srtio3

CTE = "agl_thermal_expansion_300K"
DEFAULT = GraphConfig()  # 8 Å, 12 neighbours: the cap binds, and cuts shells of NaCl, SrTiO3
ALL_BONDS = GraphConfig(cutoff=4.0, max_neighbors=64)  # the cap never binds: no cut shells


def _lg(structure, graph: GraphConfig = DEFAULT, angle_cutoff=None) -> LineGraphData:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = GraphBuilder(graph)(structure)
    return attach_line_graph(data, cutoff=graph.cutoff, angle_cutoff=angle_cutoff)


def _model(graph: GraphConfig = DEFAULT, seed: int = 0, **config) -> LoadedModel:
    torch.manual_seed(seed)
    cfg = ALIGNNConfig(**{"atom_fea_len": 32, "h_fea_len": 32, **config})
    module = build_model(cfg, graph)
    card = ModelCard(
        name="test",
        target="y",
        unit="eV",
        model=cfg.model_dump(),
        graph=graph,
        normalizer=Normalizer(mean=1.5, std=0.5),
    )
    return LoadedModel(card=card, module=module)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One torch thread: these graphs are small, and with two threads on two shared cores
    every op can wait milliseconds for a busy core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return _model()


# ---------------------------------------------------------------------------------------------
# Line graph


@pytest.mark.parametrize("name", ["NaCl", "SrTiO3", "distorted"])
def test_line_graph_joins_every_pair_of_bonds_of_a_centre(crystals, name):
    data = _lg(crystals[name], ALL_BONDS)
    assert not data.edge_cut_shell.any()
    degree = torch.bincount(data.edge_index[1], minlength=data.num_nodes)
    assert data.lg_edge_index.shape == (2, int((degree * (degree - 1)).sum()))
    assert data.lg_cos.shape == (data.lg_edge_index.shape[1],)
    src, dst = data.lg_edge_index
    assert (src != dst).all()
    assert torch.equal(data.edge_index[1][src], data.edge_index[1][dst])  # same centre atom
    pairs = set(zip(src.tolist(), dst.tolist()))
    assert len(pairs) == len(src) and {(b, a) for a, b in pairs} == pairs  # both directions


def test_perovskite_angles_at_titanium_are_90_and_180_degrees():
    graph = GraphConfig(cutoff=2.5, max_neighbors=64, isolated_atoms="ignore")  # Ti–O only
    data = _lg(srtio3(), graph)
    centre = data.edge_index[1][data.lg_edge_index[1]]
    at_ti = data.lg_cos[centre == 1]  # Ti: 6 O bonds → 30 pairs, 6 opposite, 24 at right angles
    assert len(at_ti) == 30
    assert torch.isclose(at_ti, torch.tensor(-1.0), atol=1e-6).sum() == 6
    assert torch.isclose(at_ti, torch.tensor(0.0), atol=1e-6).sum() == 24
    at_o = data.lg_cos[centre >= 2]  # O: two Ti across the oxygen, Ti–O–Ti = 180°
    assert len(at_o) == 6 and torch.allclose(at_o, torch.tensor(-1.0), atol=1e-6)
    assert data.lg_cos.min() >= -1.0 and data.lg_cos.max() <= 1.0


def _reference(structure, data, bonds) -> dict[tuple[int, int], float]:
    """Slow loop: bond pairs sharing a centre and cos θ from the structure's float64 coords."""
    cart = structure.cart_coords
    lattice = structure.lattice.matrix
    j, i = data.edge_index.numpy()
    vec = cart[j] + data.edge_offset.numpy() @ lattice - cart[i]
    out = {}
    for e1 in range(len(i)):
        for e2 in range(len(i)):
            if e1 != e2 and i[e1] == i[e2] and bonds[e1] and bonds[e2]:
                a, b = vec[e1], vec[e2]
                out[(e1, e2)] = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    return out


@pytest.mark.parametrize(
    "name,angle_cutoff", [("distorted", None), ("SrTiO3", None), ("distorted", 3.5)]
)
def test_line_graph_matches_a_slow_reference_loop(crystals, name, angle_cutoff):
    structure = crystals[name]
    data = _lg(structure, angle_cutoff=angle_cutoff)
    bonds = ~data.edge_cut_shell.numpy()
    if angle_cutoff:
        bonds &= data.edge_dist.numpy() <= angle_cutoff
        assert 0 < bonds.sum() < len(bonds)
    expected = _reference(structure, data, bonds)
    got = {(a, b): c for a, b, c in zip(*data.lg_edge_index.tolist(), data.lg_cos.tolist())}
    assert got.keys() == expected.keys()
    assert np.allclose([got[k] for k in expected], list(expected.values()), atol=1e-5)


def test_bonds_of_a_shell_cut_by_the_neighbour_cap_form_no_angles(crystals):
    # NaCl, 12 neighbours: 6 Cl at 2.82 Å, then 6 of the 12 Na at 3.99 Å (an arbitrary half)
    data = _lg(crystals["NaCl"])
    assert data.edge_cut_shell.sum() == 12 and (data.edge_dist[data.edge_cut_shell] > 3.9).all()
    used = torch.unique(data.lg_edge_index)
    assert not data.edge_cut_shell[used].any()
    assert data.lg_edge_index.shape[1] == 2 * 6 * 5
    # SrTiO3: Sr has exactly 12 O at 2.76 Å (a full shell, not cut); its 132 angles are kept
    data = _lg(crystals["SrTiO3"])
    centre = data.edge_index[1][data.lg_edge_index[1]]
    assert (centre == 0).sum() == 12 * 11


def test_line_graph_of_no_bonds_is_empty():
    index, cos = line_graph(
        torch.tensor([0, 0, 1]), torch.randn(3, 3), torch.tensor([False, True, True])
    )
    assert index.shape == (2, 0) and cos.shape == (0,)


def test_batching_shifts_the_line_graph_by_the_number_of_edges(crystals):
    graphs = [_lg(s) for s in crystals.values()]
    batch = Batch.from_data_list(graphs)
    assert isinstance(batch, LineGraphData)
    shift = np.cumsum([0] + [g.edge_index.shape[1] for g in graphs[:-1]])
    expected = torch.cat([g.lg_edge_index + int(s) for g, s in zip(graphs, shift)], dim=1)
    assert torch.equal(batch.lg_edge_index, expected)
    src, dst = batch.lg_edge_index
    assert torch.equal(batch.edge_index[1][src], batch.edge_index[1][dst])


# ---------------------------------------------------------------------------------------------
# The model


def test_config_is_a_registered_family():
    config = ALIGNNConfig()
    assert (config.atom_fea_len, config.n_alignn, config.n_gcn, config.n_angle_basis) == (
        64,
        2,
        2,
        16,
    )
    assert model_config_from_dict(config.model_dump()) == config
    with pytest.raises(ValueError, match="n_conv"):
        model_config_from_dict({"name": "alignn", "n_conv": 3})


def test_batched_equals_one_by_one(model, crystals):
    structures = list(crystals.values()) * 2
    inputs = model.prepare(structures)
    assert all(type(x) is LineGraphData for x in inputs)
    batched = model.predict_graphs(inputs, batch_size=4, device="cpu")
    single = [model.predict_graphs([x], batch_size=1, device="cpu")[0] for x in inputs]
    assert np.allclose(batched, single, rtol=1e-5, atol=1e-6)
    pooled = model.embed_graphs(inputs, batch_size=5, device="cpu")
    alone = np.concatenate([model.embed_graphs([x], device="cpu") for x in inputs])
    assert pooled.shape == (6, 32) and np.allclose(pooled, alone, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["NaCl", "SrTiO3", "distorted"])
def test_invariant_to_rotation_translation_supercell_and_atom_order(model, crystals, name):
    structure = crystals[name]
    variants = equivalent_cells(structure)
    base, *others = model.predict_structures([structure, *variants], device="cpu")
    assert others == pytest.approx([base] * len(others), rel=1e-5, abs=1e-6)
    vectors = model.embed_structures([structure, variants[-1]], device="cpu")
    assert np.allclose(vectors[0], vectors[1], rtol=1e-4, atol=1e-5)


def test_angles_change_the_prediction(crystals):
    """The same atoms and distances but other angles: the model must tell them apart."""
    model = _model(ALL_BONDS, seed=2)
    data = model.prepare([crystals["distorted"]])[0]
    other = data.clone()
    other.lg_cos = torch.flip(other.lg_cos, [0])
    a, b = model.predict_graphs([data, other], device="cpu")
    assert abs(a - b) > 1e-6
    plain = _model(ALL_BONDS, seed=2, n_alignn=0)  # no ALIGNN layer: angles unused
    a, b = plain.predict_graphs([plain.prepare_one(crystals["distorted"]), other], device="cpu")
    assert a == pytest.approx(b, rel=1e-6)


def test_inputs_without_the_line_graph_are_refused(model, crystals):
    bare = model.builder.build_many(list(crystals.values()))
    with pytest.raises(MissingInputError, match="line graph"):
        model.predict_graphs(bare, device="cpu")


def test_learned_embedding_and_angle_cutoff_variants_run(crystals):
    for config in ({"atom_features": "embedding"}, {"angle_cutoff": 3.0, "n_gcn": 0}):
        model = _model(**config)
        assert np.isfinite(model.predict_structures(list(crystals.values()), device="cpu")).all()
    short = _model(angle_cutoff=3.0).prepare_one(crystals["distorted"])
    assert short.lg_cos.numel() < _model().prepare_one(crystals["distorted"]).lg_cos.numel()


def test_save_load_round_trip_is_exact(model, crystals, tmp_path):
    save_model(tmp_path / "m", model.card, model.module)
    loaded = load_model(tmp_path / "m")
    assert loaded.family == "alignn" and loaded.card.model == model.card.model
    assert type(loaded.prepare_one(crystals["SrTiO3"])) is LineGraphData
    structures = list(crystals.values())
    assert np.array_equal(
        loaded.predict_structures(structures, device="cpu"),
        model.predict_structures(structures, device="cpu"),
    )
    assert np.array_equal(
        loaded.embed_structures(structures, device="cpu"),
        model.embed_structures(structures, device="cpu"),
    )


# ---------------------------------------------------------------------------------------------
# Training and the CLI on the demo set


@pytest.fixture(scope="module")
def demo(shared_data):
    from engine.io.datasets import load_dataset

    return load_dataset(shared_data / "aflow_agl" / "demo.jsonl.gz", limit=100)


@pytest.fixture(scope="module")
def run(demo, tmp_path_factory):
    from engine.training import train

    out = tmp_path_factory.mktemp("alignn") / "tiny-alignn"
    result = train(
        demo,
        CTE,
        model=ALIGNNConfig(atom_fea_len=16, h_fea_len=16, n_gcn=1),
        training=TrainConfig(epochs=2, batch_size=16, device="cpu", seed=3),
        split=SplitConfig(seed=1),
        out=out,
    )
    return result, out


def test_trains_two_epochs_and_reloads_identically(run, demo):
    result, out = run
    assert list(result.history["epoch"]) == [1, 2]
    assert np.isfinite(result.history[["train_loss", "val_loss"]].to_numpy()).all()
    loaded = load_model(out)
    assert loaded.family == "alignn" and "atom vectors" in loaded.pooled_description
    structures = [item.structure for item in demo.items[:12]]
    assert np.array_equal(
        loaded.predict_structures(structures), result.model.predict_structures(structures)
    )
    saved = pd.read_csv(out / "predictions.csv")
    by_id = {it.id: it.structure for it in demo.items}
    again = loaded.predict_structures([by_id[i] for i in saved["id"]])
    assert np.allclose(again, saved["prediction"], rtol=1e-6, atol=0)


def test_cli_lists_and_trains_alignn(shared_data, tmp_path, capsys):
    from engine.apps.cli.main import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "alignn" in capsys.readouterr().out
    out = tmp_path / "cli-alignn"
    code = main(
        [
            "train",
            "--data",
            str(shared_data / "aflow_agl" / "demo.jsonl.gz"),
            "--target",
            CTE,
            "--out",
            str(out),
            "--model",
            "alignn",
            "--epochs",
            "1",
            "--limit",
            "40",
            "--atom-fea-len",
            "8",
            "--n-alignn",
            "1",
            "--n-gcn",
            "1",
            "--h-fea-len",
            "8",
            "--quiet",
        ]
    )
    assert code == 0
    card = json.loads((out / "model.json").read_text())
    assert card["model"]["name"] == "alignn" and card["model"]["n_alignn"] == 1
    assert (
        main(
            [
                "train",
                "--data",
                "x",
                "--target",
                CTE,
                "--out",
                str(tmp_path / "no"),
                "--model",
                "cgcnn",
                "--n-alignn",
                "1",
            ]
        )
        == 2
    )
    assert "--n-alignn does not apply" in capsys.readouterr().err


def test_line_graph_order_on_a_large_input():
    """Pairs come ordered by centre, then source bond, then target bond, whatever the order of
    the bonds (here: shuffled)."""
    centre = torch.arange(500).repeat_interleave(12)[torch.randperm(6000)]
    index, cos = line_graph(centre, torch.randn(6000, 3))
    assert index.shape == (2, 500 * 12 * 11) and cos.shape == (500 * 12 * 11,)
    key = centre[index[1]] * 6000**2 + index[0] * 6000 + index[1]
    assert (key[1:] > key[:-1]).all()
