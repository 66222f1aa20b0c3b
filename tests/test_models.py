"""CGCNN physics and bookkeeping: invariances, batching, save/load round trip, bad model dirs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pymatgen.core.operations import SymmOp

from engine.catalog.names import load_model
from engine.core.config import CGCNNConfig, GraphConfig
from engine.models import build_model
from engine.store.card import ModelCard, ModelLoadError, Normalizer
from engine.store.directory import LoadedModel, save_model


def _model(seed: int = 0, **config) -> LoadedModel:
    torch.manual_seed(seed)
    cfg = CGCNNConfig(**config)
    graph = GraphConfig()
    module = build_model(cfg, graph)
    # Non-trivial batch-norm statistics, so that eval mode is not an identity.
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.normal_(0, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    card = ModelCard(
        name="test",
        target="y",
        unit="eV",
        model=cfg.model_dump(),
        graph=graph,
        normalizer=Normalizer(mean=1.5, std=0.5),
        elements=["Na", "Cl"],
    )
    return LoadedModel(card=card, module=module)


def _predict(model, structures, kind="predict"):
    graphs = model.builder.build_many(structures)
    if kind == "pooled":
        return model.embed_graphs(graphs, device="cpu")
    return model.predict_graphs(graphs, device="cpu")


@pytest.fixture(scope="module")
def model():
    return _model()


def test_default_size_is_close_to_the_paper(model):
    n = sum(p.numel() for p in model.module.parameters())
    assert 70_000 < n < 90_000  # the paper quotes about 85k


@pytest.mark.parametrize("name", ["NaCl", "SrTiO3", "distorted"])
@pytest.mark.parametrize("scaling", [[2, 1, 1], [2, 2, 2], [[1, 1, 0], [-1, 1, 0], [0, 0, 1]]])
def test_prediction_invariant_to_supercell(model, crystals, name, scaling):
    structure = crystals[name]
    supercell = structure.copy()
    supercell.make_supercell(scaling)
    base, big = _predict(model, [structure, supercell])
    assert big == pytest.approx(base, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("name", ["NaCl", "SrTiO3", "distorted"])
def test_prediction_invariant_to_rotation_and_translation(model, crystals, name):
    structure = crystals[name]
    moved = structure.copy()
    moved.apply_operation(SymmOp.from_axis_angle_and_translation([1, 2, 3], 37.0))
    moved.translate_sites(range(len(moved)), [0.13, -0.4, 0.71], frac_coords=True)
    base, rotated = _predict(model, [structure, moved])
    assert rotated == pytest.approx(base, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("name", ["SrTiO3", "distorted"])
def test_prediction_invariant_to_atom_order(model, crystals, name):
    structure = crystals[name]
    order = np.random.default_rng(3).permutation(len(structure))
    shuffled = structure.copy()
    shuffled = type(structure).from_sites([structure[i] for i in order])
    base, permuted = _predict(model, [structure, shuffled])
    assert permuted == pytest.approx(base, rel=1e-5, abs=1e-5)
    assert _predict(model, [shuffled], "pooled") == pytest.approx(
        _predict(model, [structure], "pooled"), rel=1e-5, abs=1e-6
    )


def test_batched_equals_one_at_a_time(model, crystals):
    structures = list(crystals.values()) * 3
    batched = model.predict_graphs(model.builder.build_many(structures), batch_size=4)
    single = [model.predict_graphs([model.builder(s)], batch_size=1)[0] for s in structures]
    assert np.allclose(batched, single, rtol=1e-5, atol=1e-6)
    pooled = model.embed_graphs(model.builder.build_many(structures), batch_size=5)
    assert pooled.shape == (len(structures), 64)


def test_gate_ablation_changes_the_output(crystals):
    gated = _model(seed=1)
    ungated = _model(seed=1, gate=False)
    ungated.module.load_state_dict(gated.module.state_dict())
    s = list(crystals.values())
    assert not np.allclose(_predict(gated, s), _predict(ungated, s))


def test_learned_embedding_variant_runs(crystals):
    model = _model(atom_features="embedding", atom_fea_len=32, n_conv=2, n_h=2)
    assert np.isfinite(_predict(model, list(crystals.values()))).all()


def test_save_load_round_trip_is_exact(model, crystals, tmp_path):
    save_model(tmp_path / "m", model.card, model.module)
    loaded = load_model(tmp_path / "m")
    assert loaded.card.model == model.card.model and loaded.card.graph == model.card.graph
    assert loaded.card.normalizer == model.card.normalizer
    s = list(crystals.values())
    assert np.array_equal(_predict(loaded, s), _predict(model, s))


def _edit_card(directory, **changes):
    card = json.loads((directory / "model.json").read_text())
    for key, value in changes.items():
        if isinstance(value, dict):
            card[key].update(value)
        else:
            card[key] = value
    (directory / "model.json").write_text(json.dumps(card))


def test_load_refuses_a_wrong_schema_version(model, tmp_path):
    save_model(tmp_path / "m", model.card, model.module)
    _edit_card(tmp_path / "m", schema_version=99)
    with pytest.raises(ModelLoadError, match="schema_version=99"):
        load_model(tmp_path / "m")


def test_load_refuses_a_config_that_does_not_fit_the_weights(model, tmp_path):
    save_model(tmp_path / "m", model.card, model.module)
    _edit_card(tmp_path / "m", model={"n_conv": 4})
    with pytest.raises(ModelLoadError, match="does not match model.json"):
        load_model(tmp_path / "m")


def test_load_refuses_unknown_settings_and_families(model, tmp_path):
    save_model(tmp_path / "m", model.card, model.module)
    _edit_card(tmp_path / "m", graph={"radius": 8.0})
    with pytest.raises(ModelLoadError, match="radius"):
        load_model(tmp_path / "m")
    save_model(tmp_path / "n", model.card, model.module)
    _edit_card(tmp_path / "n", model={"name": "megnet"})
    with pytest.raises(ModelLoadError, match="megnet"):
        load_model(tmp_path / "n")


def test_load_unknown_name_lists_what_exists(tmp_path):
    with pytest.raises(ModelLoadError, match="No model directory or model named 'nope'"):
        load_model("nope")


def test_unknown_element_is_a_clear_error(model):
    from pymatgen.core import Lattice, Structure

    heavy = Structure(Lattice.cubic(4.0), ["Og"], [[0, 0, 0]])  # Z = 118
    with pytest.raises(ValueError, match=r"\[118\] have no CGCNN element features"):
        model.predict_structures([heavy])


def test_cgcnn_conv_equals_the_concatenated_linear_of_the_paper():
    """The split projection gives fc_full(v_i ⊕ v_j ⊕ u) summed over each atom's edges."""
    from engine.models.layers import CGCNNConv

    torch.manual_seed(0)
    conv = CGCNNConv(8, 5)
    x, edge_attr = torch.randn(6, 8), torch.randn(20, 5)
    edge_index = torch.randint(0, 6, (2, 20))
    j, i = edge_index
    gated = conv.bn1(conv.fc_full(torch.cat([x[i], x[j], edge_attr], dim=-1)))
    filt, core = gated.chunk(2, dim=-1)
    message = torch.sigmoid(filt) * torch.nn.functional.softplus(core)
    summed = torch.zeros_like(x).index_add_(0, i, message)
    expected = torch.nn.functional.softplus(x + conv.bn2(summed))
    assert torch.allclose(conv(x, edge_index, edge_attr), expected, atol=1e-5)


@pytest.mark.parametrize(
    "name", ["cte-cgcnn-aflow", "cte-alignn-aflow", "cte-alignn-cgcnn-log-huber-aflow-ens8"]
)
def test_predictions_and_vectors_in_one_pass_equal_separate_passes(name, crystals):
    """``predicts_from_pooled`` families answer both from one trunk pass; an ensemble takes
    member 0's vectors from the pass that gives its predictions."""
    model = load_model(name)
    inputs = model.prepare(list(crystals.values()))
    both = model.run(inputs, ("prediction", "pooled"))
    assert np.array_equal(both["prediction"], model.run(inputs, ("prediction",))["prediction"])
    assert np.array_equal(both["pooled"], model.run(inputs, ("pooled",))["pooled"])


def test_the_one_pass_flag_holds_for_every_family_that_sets_it(crystals):
    """Where ``predicts_from_pooled`` is set, ``forward`` must equal ``head(pooled(.))``."""
    from engine.graphs.batching import GraphLoader
    from engine.graphs.builder import GraphBuilder
    from engine.models import MODEL_REGISTRY, build_inputs

    flagged = [n for n, cls in MODEL_REGISTRY.items() if cls.predicts_from_pooled]
    assert {"cgcnn", "alignn"} <= set(flagged)
    for name in flagged:
        torch.manual_seed(0)
        module = build_model(MODEL_REGISTRY[name].config_class(), GraphConfig()).eval()
        inputs = build_inputs(module, GraphBuilder(), list(crystals.values()))
        batch = next(iter(GraphLoader(inputs, len(inputs))))
        with torch.no_grad():
            z, pooled = module.forward_and_pooled(batch)
            assert torch.equal(z, module(batch)), name
            assert torch.equal(pooled, module.pooled(batch)), name


@pytest.mark.parametrize("family", ["cgcnn", "alignn"])
def test_output_equals_that_from_the_exact_gaussian_features(monkeypatch, crystals, family):
    """The models expand edge_dist themselves, with subnormal features set to 0: the output
    equals that from the exact exp(-(r - μ_k)² / σ²) (the edge_attr graphs used to store)."""
    from torch_geometric.data import Batch

    from engine.core.config import ALIGNNConfig
    from engine.graphs.builder import GraphBuilder, gaussian_centers
    from engine.models import alignn, build_inputs, cgcnn

    graph = GraphConfig()
    torch.manual_seed(0)
    config = CGCNNConfig() if family == "cgcnn" else ALIGNNConfig(atom_fea_len=32, h_fea_len=32)
    module = build_model(config, graph).eval()
    inputs = build_inputs(module, GraphBuilder(graph), crystals.values(), use_cache=False)
    batch = Batch.from_data_list(inputs)
    with torch.no_grad():
        ours = module(batch)

    def exact(distances, config):
        return torch.exp(-((distances[:, None] - gaussian_centers(config)) ** 2) / 0.2**2)

    monkeypatch.setattr(cgcnn, "gaussian_expand", exact)
    monkeypatch.setattr(alignn, "gaussian_expand", exact)
    with torch.no_grad():
        assert torch.equal(module(batch), ours)
