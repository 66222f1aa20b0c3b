"""The hybrid families (early, attention and late fusion) and the Magpie random forest.

Every family is trained once per module for 2 epochs on 100 rows of the demo set, then checked
for: save → load identity, batched = one by one, supercell and atom-order invariance, what its
predictions and pooled vectors carry, and the family's own promises (attention weights, α on
validation, safe forest files, contribution analysis).
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import TypeAdapter
from torch_geometric.data import Batch

from engine.catalog.names import load_model
from engine.core.config import (
    MODEL_FAMILIES,
    AttentionFusionConfig,
    CGCNNConfig,
    EarlyFusionConfig,
    LateFusionConfig,
    ModelConfig,
    RFMagpieConfig,
    SplitConfig,
    TrainConfig,
)
from engine.features.composition import magpie_many
from engine.inference.contributions import contribution_analysis, fusion_weights
from engine.inference.prediction import WEIGHT_COLUMNS, embed, evaluate, predict
from engine.models import MODEL_REGISTRY, MissingInputError, model_config_from_dict
from engine.store.card import ModelLoadError
from engine.training import train
from engine.training.run import alpha_search

CTE = "agl_thermal_expansion_300K"
TINY = {
    "cgcnn": CGCNNConfig(atom_fea_len=16, n_conv=2, h_fea_len=32),
    "early-fusion": EarlyFusionConfig(atom_fea_len=16, n_conv=2),
    "attention-fusion": AttentionFusionConfig(atom_fea_len=16, n_conv=2, h_fea_len=32),
    "late-fusion": LateFusionConfig(atom_fea_len=16, n_conv=2, h_fea_len=32, rf_n_estimators=20),
    "rf-magpie": RFMagpieConfig(n_estimators=20),
}
NEW = ["early-fusion", "attention-fusion", "late-fusion", "rf-magpie"]


@pytest.fixture(scope="module")
def demo(shared_data):
    from engine.io.datasets import load_dataset

    return load_dataset(shared_data / "aflow_agl" / "demo.jsonl.gz", limit=100)


@pytest.fixture(scope="module")
def runs(demo, tmp_path_factory):
    """family → (TrainResult, saved directory)."""
    root = tmp_path_factory.mktemp("fusion")
    cfg = TrainConfig(epochs=2, batch_size=16, device="cpu", seed=3)
    return {
        name: (
            result := train(
                demo,
                CTE,
                model=TINY[name],
                training=cfg,
                split=SplitConfig(seed=1),
                out=root / name,
            ),
            result.path,
        )
        for name in TINY
    }


@pytest.fixture(scope="module")
def loaded(runs):
    return {name: load_model(path) for name, (_, path) in runs.items()}


def _structures(demo, n=12):
    return [item.structure for item in demo.items[:n]]


# ---------------------------------------------------------------------------------------------
# Registry and configs


def test_registry_and_config_union_list_the_same_families():
    assert (
        set(MODEL_REGISTRY)
        == set(MODEL_FAMILIES)
        == {
            "cgcnn",
            "early-fusion",
            "attention-fusion",
            "late-fusion",
            "rf-magpie",
            "multitask",
            "alignn",
            "cgcnn-physics",
            "cgcnn-debye",
        }
    )
    adapter = TypeAdapter(ModelConfig)
    for name, cls in MODEL_REGISTRY.items():
        config = cls.config_class()
        assert config.name == name
        assert model_config_from_dict(config.model_dump()) == config
        assert type(adapter.validate_python(config.model_dump())) is cls.config_class


def test_saved_configs_are_strict():
    assert model_config_from_dict({"n_conv": 2}) == CGCNNConfig(n_conv=2)  # old cards: cgcnn
    with pytest.raises(ValueError, match="fc1_len"):
        model_config_from_dict({"name": "cgcnn", "fc1_len": 3})  # a field of another family
    with pytest.raises(ValueError, match="megnet"):
        model_config_from_dict({"name": "megnet"})


def test_defaults_follow_the_science_notes():
    early = EarlyFusionConfig()
    assert (early.fc1_len, early.fc2_len, early.dropout) == (128, 64, 0.2)
    late = LateFusionConfig()
    assert (late.rf_n_estimators, late.rf_max_depth) == (100, 30)
    grid = late.alpha_grid()
    assert len(grid) == 21 and grid[0] == 0.0 and grid[-1] == 1.0
    assert np.allclose(np.diff(grid), 0.05)
    assert RFMagpieConfig().n_estimators == 100


# ---------------------------------------------------------------------------------------------
# Behaviour common to every family


@pytest.mark.parametrize("family", list(TINY))
def test_save_load_gives_identical_predictions_and_vectors(family, runs, loaded, demo):
    result, path = runs[family]
    for name in ("model.json", "weights.pt", "predictions.csv", "history.csv"):
        assert (path / name).is_file()
    assert (path / "forest.skops").is_file() == (family in ("rf-magpie", "late-fusion"))
    structures = _structures(demo)
    assert np.array_equal(
        loaded[family].predict_structures(structures), result.model.predict_structures(structures)
    )
    assert np.array_equal(
        loaded[family].embed_structures(structures), result.model.embed_structures(structures)
    )
    # the saved validation/test predictions are reproduced from the files alone
    saved = pd.read_csv(path / "predictions.csv")
    by_id = {it.id: it.structure for it in demo.items}
    again = loaded[family].predict_structures([by_id[i] for i in saved["id"]])
    assert np.allclose(again, saved["prediction"], rtol=1e-6, atol=0)


@pytest.mark.parametrize("family", list(TINY))
def test_batched_equals_one_by_one(family, loaded, demo):
    model = loaded[family]
    inputs = model.prepare(_structures(demo, 10))
    batched = model.predict_graphs(inputs, batch_size=4)
    single = [model.predict_graphs([x], batch_size=1)[0] for x in inputs]
    assert np.allclose(batched, single, rtol=1e-5, atol=1e-12)
    pooled = model.embed_graphs(inputs, batch_size=3)
    alone = np.concatenate([model.embed_graphs([x]) for x in inputs])
    assert np.allclose(pooled, alone, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", list(TINY))
@pytest.mark.parametrize("name", ["SrTiO3", "distorted"])
def test_invariant_to_supercell_and_atom_order(family, name, loaded, crystals):
    model = loaded[family]
    structure = crystals[name]
    supercell = structure.copy()
    supercell.make_supercell([[1, 1, 0], [-1, 1, 0], [0, 0, 2]])
    order = np.random.default_rng(3).permutation(len(supercell))
    shuffled = type(structure).from_sites([supercell[i] for i in order])
    base, big, permuted = model.predict_structures([structure, supercell, shuffled])
    assert big == pytest.approx(base, rel=1e-5, abs=1e-12)
    assert permuted == pytest.approx(base, rel=1e-5, abs=1e-12)
    vectors = model.embed_structures([structure, shuffled])
    assert np.allclose(vectors[0], vectors[1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", list(TINY))
def test_predict_embed_evaluate_work_for_every_family(family, loaded, demo):
    model = loaded[family]
    items = demo.items[:8]
    table = predict(model, list(items)).table
    assert len(table) == 8 and np.isfinite(table["prediction"]).all()
    assert any("weight" in c for c in table.columns) == (family == "attention-fusion")
    vectors, kept = embed(model, list(items))
    assert vectors.shape[0] == 8 and len(kept) == 8 and model.pooled_description
    metrics, frame = evaluate(model, demo.subset(range(8)), CTE)
    assert metrics["n"] == 8 and np.allclose(frame["prediction"], table["prediction"])


@pytest.mark.parametrize("family", NEW)
def test_composition_statistics_come_from_the_training_split(family, runs, loaded, demo):
    _, path = runs[family]
    held_out = set(pd.read_csv(path / "predictions.csv")["id"])
    train_comps = [it.structure.composition for it in demo.items if it.id not in held_out]
    expected = magpie_many(train_comps).mean(axis=0)
    module = loaded[family].module
    scaler = module.rf.composition if family == "late-fusion" else module.composition
    assert np.allclose(scaler.mean.numpy(), expected, rtol=1e-5, atol=1e-4)
    everything = magpie_many([it.structure.composition for it in demo.items]).mean(axis=0)
    assert not np.allclose(scaler.mean.numpy(), everything, rtol=1e-6, atol=0)


@pytest.mark.parametrize("family", ["early-fusion", "attention-fusion", "late-fusion"])
def test_inputs_built_without_the_family_hook_are_refused(family, loaded, demo):
    model = loaded[family]
    bare = model.builder.build_many(_structures(demo, 3))  # graphs without data.comp
    with pytest.raises(MissingInputError, match="comp"):
        model.predict_graphs(bare)


def test_composition_only_families_build_no_graph(loaded, demo):
    data = loaded["rf-magpie"].prepare_one(demo.items[0].structure, structure_id="x")
    assert "edge_index" not in data and data.comp.shape == (1, 132)
    data = loaded["early-fusion"].prepare_one(demo.items[0].structure)
    assert data.edge_index.shape[0] == 2 and data.comp.shape == (1, 132)


# ---------------------------------------------------------------------------------------------
# Attention fusion: weights with every prediction


def test_attention_weights_are_in_unit_interval_and_sum_to_one(loaded, demo):
    model = loaded["attention-fusion"]
    items = list(demo.items[:20])
    table = predict(model, items).table
    w = table[list(WEIGHT_COLUMNS)].to_numpy()
    assert ((w >= 0) & (w <= 1)).all()
    assert np.allclose(w.sum(axis=1), 1.0, atol=1e-6)
    assert w[:, 0].std() > 0  # per material, not one global number
    weights = fusion_weights(model, items)
    assert list(weights.columns) == ["id", "formula", *WEIGHT_COLUMNS, "prediction"]
    assert np.allclose(weights[list(WEIGHT_COLUMNS)].to_numpy(), w)
    _, frame = evaluate(model, demo.subset(range(20)), CTE)
    assert np.allclose(frame[list(WEIGHT_COLUMNS)].to_numpy(), w)


def test_attention_predictions_csv_carries_the_weights(runs):
    saved = pd.read_csv(runs["attention-fusion"][1] / "predictions.csv")
    for comp, graph in (WEIGHT_COLUMNS, ("w_comp", "w_graph")):
        assert np.allclose(saved[comp] + saved[graph], 1.0, atol=1e-6)
        assert saved[comp].between(0, 1).all()


def test_fusion_weights_are_refused_for_other_families(loaded, demo):
    with pytest.raises(ValueError, match="only attention-fusion"):
        fusion_weights(loaded["early-fusion"], list(demo.items[:2]))


def test_cli_predict_csv_has_weight_columns(runs, shared_data, tmp_path):
    from engine.apps.cli.main import main

    out = tmp_path / "pred.csv"
    assert (
        main(
            [
                "predict",
                "--model",
                str(runs["attention-fusion"][1]),
                "--input",
                str(shared_data / "cgcnn_sample"),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    table = pd.read_csv(out)
    weight_cols = [c for c in table.columns if "weight" in c]
    assert weight_cols == list(WEIGHT_COLUMNS) and len(table) == 10
    assert np.allclose(table[weight_cols].sum(axis=1), 1.0, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Late fusion: α on validation


def test_alpha_search_finds_the_known_mixture():
    rng = np.random.default_rng(0)
    rf, cg = rng.normal(size=200), rng.normal(size=200)
    grid = LateFusionConfig().alpha_grid()
    alpha, maes = alpha_search(rf, cg, 0.35 * rf + 0.65 * cg, grid)
    assert alpha == pytest.approx(0.35) and min(maes) == pytest.approx(0.0, abs=1e-12)
    assert alpha_search(rf, cg, rf, grid)[0] == 1.0 and alpha_search(rf, cg, cg, grid)[0] == 0.0


def test_late_fusion_alpha_is_the_validation_argmin(runs, loaded, demo):
    _, path = runs["late-fusion"]
    model = loaded["late-fusion"]
    card = model.card
    alpha = card.fitted["alpha"]
    assert 0.0 <= alpha <= 1.0 and alpha == pytest.approx(float(model.module.alpha), abs=1e-7)
    assert json.loads((path / "model.json").read_text())["fitted"]["alpha"] == alpha

    # recompute both halves on the validation rows, independently of the training code
    saved = pd.read_csv(path / "predictions.csv")
    val = saved[saved["split"] == "val"]
    by_id = {it.id: it for it in demo.items}
    inputs = model.prepare([by_id[i].structure for i in val["id"]])
    batch = Batch.from_data_list(inputs)
    with torch.no_grad():
        rf, cg = (card.normalizer.decode(t).numpy() for t in model.module.branch_predictions(batch))
    y = val["target"].to_numpy()
    grid = LateFusionConfig().alpha_grid()
    maes = [np.mean(np.abs(a * rf + (1 - a) * cg - y)) for a in grid]
    assert alpha == grid[int(np.argmin(maes))]
    assert np.allclose(card.fitted["val_mae_by_alpha"], maes, rtol=1e-6)
    assert np.allclose(val["prediction"], alpha * rf + (1 - alpha) * cg, rtol=1e-6)
    assert np.allclose(val["prediction_rf"], rf) and np.allclose(val["prediction_cgcnn"], cg)
    # choosing on validation means the mixture is at least as good there as either half
    assert card.metrics["val"]["mae"] <= min(maes[0], maes[-1]) + 1e-15


def test_late_fusion_alpha_in_weights_must_match_the_card(runs, tmp_path):
    copy = tmp_path / "late"
    shutil.copytree(runs["late-fusion"][1], copy)
    card = json.loads((copy / "model.json").read_text())
    card["fitted"]["alpha"] = 1.0 - card["fitted"]["alpha"] + 0.01
    (copy / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match="alpha"):
        load_model(copy)


# ---------------------------------------------------------------------------------------------
# Random forests: training, persistence and refusing tampered files


def test_forest_history_has_one_row_and_the_usual_columns(runs):
    result, path = runs["rf-magpie"]
    history = pd.read_csv(path / "history.csv")
    assert list(history["epoch"]) == [1]
    assert {"train_loss", "val_loss", "train_mae", "val_mae", "val_r"} <= set(history.columns)
    assert history["val_mae"].iloc[0] == pytest.approx(result.metrics["val"]["mae"])
    cgcnn_cols = list(pd.read_csv(runs["cgcnn"][1] / "predictions.csv").columns)
    assert list(pd.read_csv(path / "predictions.csv").columns) == cgcnn_cols


def test_forest_beats_the_mean_and_is_seeded(runs, demo):
    result, _ = runs["rf-magpie"]
    val = result.predictions[result.predictions["split"] == "val"]
    train_mean = result.model.card.normalizer.mean
    assert result.metrics["val"]["mae"] < np.mean(np.abs(val["target"] - train_mean))
    cfg = TrainConfig(epochs=2, device="cpu", seed=3)
    again = train(demo, CTE, model=TINY["rf-magpie"], training=cfg, split=SplitConfig(seed=1))
    assert np.array_equal(again.predictions["prediction"], result.predictions["prediction"])
    other = train(
        demo,
        CTE,
        model=TINY["rf-magpie"],
        training=cfg.model_copy(update={"seed": 4}),
        split=SplitConfig(seed=1),
    )
    assert not np.array_equal(other.predictions["prediction"], result.predictions["prediction"])


def test_rf_embedding_is_the_standardised_magpie_vector(loaded, demo):
    model = loaded["rf-magpie"]
    structures = _structures(demo, 5)
    raw = magpie_many([s.composition for s in structures])
    scaler = model.module.composition
    expected = (raw - scaler.mean.double().numpy()) / scaler.std.double().numpy()
    assert np.allclose(model.embed_structures(structures), expected, rtol=1e-4, atol=1e-4)


def _rewrite_skops(path, edit_schema=None, edit_array=None):
    """Rewrite a .skops zip, changing its schema.json or its tree-node arrays."""
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    if edit_schema:
        members["schema.json"] = edit_schema(members["schema.json"].decode()).encode()
    if edit_array:
        for name, raw in members.items():
            if name.endswith(".npy"):
                array = np.load(io.BytesIO(raw), allow_pickle=False)
                if array.dtype.names and "left_child" in array.dtype.names:
                    edit_array(array)
                    buf = io.BytesIO()
                    np.save(buf, array, allow_pickle=False)
                    members[name] = buf.getvalue()
                    break
    with zipfile.ZipFile(path, "w") as zf:
        for name, raw in members.items():
            zf.writestr(name, raw)


@pytest.mark.parametrize("family", ["rf-magpie", "late-fusion"])
def test_a_forest_file_with_an_untrusted_type_is_refused(family, runs, tmp_path):
    copy = tmp_path / family
    shutil.copytree(runs[family][1], copy)
    load_model(copy)  # the untouched copy loads

    def swap(schema: str) -> str:
        assert '"sklearn.ensemble._forest"' in schema
        return schema.replace('"RandomForestRegressor"', '"Popen"', 1).replace(
            '"sklearn.ensemble._forest"', '"subprocess"', 1
        )

    _rewrite_skops(copy / "forest.skops", edit_schema=swap)
    with pytest.raises(ModelLoadError, match=r"untrusted types \['subprocess.Popen'\]"):
        load_model(copy)


def test_a_forest_with_out_of_range_nodes_is_refused(runs, tmp_path):
    copy = tmp_path / "rf"
    shutil.copytree(runs["rf-magpie"][1], copy)

    def corrupt(nodes):
        inner = np.flatnonzero(nodes["left_child"] >= 0)[0]
        nodes["left_child"][inner] = 10**6

    _rewrite_skops(copy / "forest.skops", edit_array=corrupt)
    with pytest.raises(ModelLoadError, match="forest.skops"):
        load_model(copy)


def test_a_missing_forest_file_is_a_clear_error(runs, tmp_path):
    copy = tmp_path / "rf"
    shutil.copytree(runs["rf-magpie"][1], copy)
    (copy / "forest.skops").unlink()
    with pytest.raises(ModelLoadError, match="forest.skops"):
        load_model(copy)


# ---------------------------------------------------------------------------------------------
# Contribution analysis


@pytest.mark.parametrize("family", ["early-fusion", "attention-fusion"])
def test_contribution_analysis_reports_both_parts(family, loaded, demo):
    model = loaded[family]
    data = demo.subset(range(40))
    result = contribution_analysis(model, data, CTE, seed=0, n_shuffles=3)
    assert result.n == 40 and np.isfinite(result.mae) and result.mae > 0
    metrics, _ = evaluate(model, data, CTE)
    assert result.mae == pytest.approx(metrics["mae"], rel=1e-5)
    table = result.table.set_index("part")
    assert list(table.index) == ["composition", "structure"]
    # removing either part changes the predictions of a model that uses both
    assert (table["mean_abs_change"] > 0).all()
    assert np.allclose(table["mae_increase"], table["mae"] - result.mae)
    rel = table["relative_contribution"]
    if rel.notna().all():
        assert ((rel >= 0) & (rel <= 1)).all() and rel.sum() == pytest.approx(1.0)
    else:
        assert (table["mae_increase"] <= 0).all()
    again = contribution_analysis(model, data, CTE, seed=0, n_shuffles=3)
    pd.testing.assert_frame_equal(again.table, result.table)
    other = contribution_analysis(model, data, CTE, seed=1, n_shuffles=3)
    assert other.table["mae"].iloc[1] != result.table["mae"].iloc[1]
    assert (result.mean_weights is not None) == (family == "attention-fusion")
    json.dumps(result.as_dict())


@pytest.mark.parametrize("family", ["cgcnn", "rf-magpie", "late-fusion"])
def test_contribution_analysis_needs_a_fusion_network(family, loaded, demo):
    with pytest.raises(ValueError, match="early- or attention-fusion"):
        contribution_analysis(loaded[family], demo.subset(range(5)), CTE)


# ---------------------------------------------------------------------------------------------
# Command line


def test_train_help_lists_every_family(capsys):
    from engine.apps.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in MODEL_REGISTRY:
        assert name in out
    assert "--no-gate" in out


def test_cli_trains_a_forest_and_an_ungated_cgcnn(shared_data, tmp_path, capsys):
    from engine.apps.cli.main import main

    data = str(shared_data / "aflow_agl" / "demo.jsonl.gz")
    common = ["--data", data, "--target", CTE, "--limit", "60", "--quiet", "--device", "cpu"]
    assert (
        main(
            [
                "train",
                *common,
                "--model",
                "rf-magpie",
                "--n-estimators",
                "7",
                "--max-depth",
                "none",
                "--out",
                str(tmp_path / "rf"),
            ]
        )
        == 0
    )
    card = json.loads((tmp_path / "rf" / "model.json").read_text())
    assert card["model"] == {**RFMagpieConfig().model_dump(), "n_estimators": 7, "max_depth": None}
    assert len(load_model(tmp_path / "rf").module.forest.estimators_) == 7
    assert (
        main(
            [
                "train",
                *common,
                "--no-gate",
                "--epochs",
                "1",
                "--atom-fea-len",
                "8",
                "--n-conv",
                "1",
                "--out",
                str(tmp_path / "nogate"),
            ]
        )
        == 0
    )
    card = json.loads((tmp_path / "nogate" / "model.json").read_text())
    assert card["model"]["name"] == "cgcnn" and card["model"]["gate"] is False
    assert not load_model(tmp_path / "nogate").module.convs[0].gate
    capsys.readouterr()
    assert main(["train", *common, "--fc1-len", "32", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --fc1-len does not apply to --model cgcnn")


def test_cli_contributions_json(runs, shared_data, capsys):
    from engine.apps.cli.main import main

    assert (
        main(
            [
                "contributions",
                "--model",
                str(runs["attention-fusion"][1]),
                "--data",
                str(shared_data / "aflow_agl" / "demo.jsonl.gz"),
                "--target",
                CTE,
                "--limit",
                "30",
                "--shuffles",
                "2",
                "--json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["n"] == 30 and set(report["parts"]) == {"composition", "structure"}
    assert set(report["mean_weights"]) == set(WEIGHT_COLUMNS)
    assert sum(report["mean_weights"].values()) == pytest.approx(1.0)
    capsys.readouterr()
    assert (
        main(
            [
                "contributions",
                "--model",
                str(runs["rf-magpie"][1]),
                "--data",
                str(shared_data / "aflow_agl" / "demo.jsonl.gz"),
                "--target",
                CTE,
                "--limit",
                "5",
            ]
        )
        == 2
    )
    assert "early- or attention-fusion" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize(
    "config, min_r",
    [
        (EarlyFusionConfig(), 0.9),
        (AttentionFusionConfig(), 0.9),
        (RFMagpieConfig(), 0.85),
    ],
)
def test_end_to_end_demo_accuracy(config, min_r, shared_data):
    from engine.io.datasets import load_dataset

    dataset = load_dataset(shared_data / "aflow_agl" / "demo.jsonl.gz")
    result = train(
        dataset,
        CTE,
        model=config,
        split=SplitConfig(seed=0),
        training=TrainConfig(epochs=30, batch_size=32, device="cpu", seed=0),
    )
    val = result.metrics["val"]
    assert val["r"] >= min_r, f"{config.name}: validation R {val['r']:.3f}"
