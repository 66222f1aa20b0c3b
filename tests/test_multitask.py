"""The multi-task family: shared CGCNN trunk, one head per target, masked and weighted losses.

One model is trained through the API (learned weighting, four targets) and one through the CLI
(inverse-scale weighting, three targets), each for 2 epochs on a slice of ``mp_elastic`` whose
``log10_K_VRH``/``log10_G_VRH`` columns have missing values.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from torch_geometric.data import Batch

from engine.catalog.names import list_models, load_model
from engine.core.config import (
    CGCNNConfig,
    GraphConfig,
    MultitaskConfig,
    SplitConfig,
    TrainConfig,
    user_model_dir,
)
from engine.graphs.builder import GraphBuilder
from engine.inference.prediction import evaluate, predict
from engine.io import NamedStructure
from engine.models import MODEL_REGISTRY, build_inputs, build_model, model_config_from_dict
from engine.store.card import ModelLoadError, Normalizer
from engine.training import train
from engine.training.multitask import attach_task_labels
from tests.conftest import nacl

TARGETS = ["formation_energy_per_atom", "band_gap", "log10_K_VRH", "log10_G_VRH"]
K = TARGETS.index("log10_K_VRH")
TINY = {"atom_fea_len": 16, "n_conv": 2, "h_fea_len": 32}


@pytest.fixture(scope="module")
def elastic_path(shared_data):
    return shared_data / "mp_elastic" / "structures.jsonl.gz"


@pytest.fixture(scope="module")
def elastic(elastic_path):
    from engine.io.datasets import load_dataset

    ds = load_dataset(elastic_path, limit=150)
    assert ds.table["log10_K_VRH"].isna().sum() > 0  # the slice has missing labels
    return ds


@pytest.fixture(scope="module")
def learned(elastic, tmp_path_factory):
    """Learned log-variances, four targets, 2 epochs: (TrainResult, directory)."""
    out = tmp_path_factory.mktemp("mt") / "learned"
    result = train(
        elastic,
        TARGETS,
        model=MultitaskConfig(**TINY),
        training=TrainConfig(epochs=2, batch_size=32, device="cpu", seed=2),
        split=SplitConfig(seed=1),
        out=out,
    )
    return result, out


@pytest.fixture(scope="module")
def cli_model(elastic_path, tmp_path_factory):
    """Inverse-scale weighting, three targets, trained with the CLI."""
    from engine.apps.cli.main import main

    out = tmp_path_factory.mktemp("mtcli") / "cli-mt"
    assert (
        main(
            [
                "train",
                "--data",
                str(elastic_path),
                "--limit",
                "80",
                "--model",
                "multitask",
                "--target",
                "band_gap",
                "formation_energy_per_atom",
                "log10_K_VRH",
                "--weighting",
                "inverse-scale",
                "--epochs",
                "2",
                "--atom-fea-len",
                "8",
                "--n-conv",
                "1",
                "--h-fea-len",
                "16",
                "--quiet",
                "--device",
                "cpu",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    return out


# ---------------------------------------------------------------------------------------------
# The module and its loss


def _batch(elastic, n=24, weighting="learned"):
    ds = elastic.subset(range(n))
    values = np.column_stack([ds.targets(t) for t in TARGETS])
    normalizers = [Normalizer.fit(v[np.isfinite(v)]) for v in values.T]
    module = build_model(
        MultitaskConfig(**TINY, n_tasks=len(TARGETS), weighting=weighting), GraphConfig()
    )
    inputs = build_inputs(module, GraphBuilder(GraphConfig()), ds.structures, ds.ids)
    attach_task_labels(inputs, values, normalizers)
    return module, Batch.from_data_list(inputs), values, normalizers


def test_registered_and_configured():
    cls = MODEL_REGISTRY["multitask"]
    assert cls.multi_target and not MODEL_REGISTRY["cgcnn"].multi_target
    config = MultitaskConfig(weighting="inverse-scale", n_tasks=3)
    assert model_config_from_dict(config.model_dump()) == config
    assert MultitaskConfig().weighting == "learned"
    with pytest.raises(ValueError):
        MultitaskConfig(weighting="equal")


def test_missing_labels_are_masked_not_dropped(elastic):
    module, batch, values, _ = _batch(elastic)
    missing = ~np.isfinite(values[:, K])
    assert missing.any() and np.isfinite(values[missing, 0]).all()
    assert not batch.y_mask[torch.from_numpy(missing), K].any()
    module.train()
    torch.manual_seed(0)
    pred = module(batch)
    loss = module.objective(pred, batch.y, batch.y_mask)

    # whatever is stored under a missing label changes nothing, neither loss nor gradient
    y = batch.y.clone()
    y[torch.from_numpy(missing), K] = 123.0
    assert float(module.objective(pred, y, batch.y_mask)) == float(loss)
    head = module.heads[K].fc_out.weight
    only_missing = batch.y_mask.clone()
    only_missing[:, K] = False
    grad = torch.autograd.grad(module.objective(pred, y, only_missing), head, allow_unused=True)[0]
    assert grad is None or float(grad.abs().max()) == 0.0

    # ... but the same rows still train the other tasks
    y = batch.y.clone()
    y[torch.from_numpy(missing), 0] += 1.0
    assert float(module.objective(pred, y, batch.y_mask)) != float(loss)

    # L_K is the MSE over the labelled rows only
    losses, present = module.task_losses(pred, batch.y, batch.y_mask)
    keep = torch.from_numpy(~missing)
    expected = ((pred[keep, K] - batch.y[keep, K]) ** 2).mean()
    assert torch.allclose(losses[K], expected) and present.all()


def test_weightings_are_what_the_config_says(elastic):
    module, batch, values, normalizers = _batch(elastic, weighting="inverse-scale")
    with torch.no_grad():
        pred = module(batch)
        # inverse-scale: the raw-unit MSE of each task weighted by 1 / (K σ_k²)
        std = torch.tensor([n.std for n in normalizers])
        mean = torch.tensor([n.mean for n in normalizers])
        raw_pred, raw_y = pred * std + mean, torch.from_numpy(values).float()
        mask = batch.y_mask
        raw_mse = torch.stack(
            [
                ((raw_pred[mask[:, k], k] - raw_y[mask[:, k], k]) ** 2).mean()
                for k in range(len(TARGETS))
            ]
        )
        expected = (raw_mse / (len(TARGETS) * std**2)).sum()
        assert torch.allclose(module.objective(pred, batch.y, mask), expected, rtol=1e-4)
        assert not module.log_vars.requires_grad

        learned = build_model(MultitaskConfig(**TINY, n_tasks=len(TARGETS)), GraphConfig())
        learned.log_vars.copy_(torch.tensor([0.5, -0.2, 1.0, 0.0]))
        losses, _ = learned.task_losses(pred, batch.y, mask)
        s = learned.log_vars
        assert torch.allclose(
            learned.objective(pred, batch.y, mask), (torch.exp(-s) * losses + s).sum()
        )
        # a task without any label in the batch adds nothing, not even its s_k
        none_k = mask.clone()
        none_k[:, K] = False
        losses, present = learned.task_losses(pred, batch.y, none_k)
        assert not present[K]
        keep = torch.arange(len(TARGETS)) != K
        assert torch.allclose(
            learned.objective(pred, batch.y, none_k), (torch.exp(-s) * losses + s)[keep].sum()
        )


# ---------------------------------------------------------------------------------------------
# A trained model: card, files, reloading


def test_card_history_and_predictions_have_every_task(learned, elastic):
    result, path = learned
    card = result.model.card
    assert (card.target, card.unit) == (TARGETS[0], "eV/atom")
    assert card.targets == TARGETS and card.units == ["eV/atom", "eV", "log10(GPa)", "log10(GPa)"]
    assert len(card.normalizers) == 4 and card.normalizers[0] == card.normalizer
    assert card.model["n_tasks"] == 4 and card.model["name"] == "multitask"
    # rows missing K are kept (formation energy and band gap are complete here)
    d = card.dataset
    assert d.n_train + d.n_val + d.n_test == len(elastic)
    for part in ("train", "val", "test"):
        m = card.metrics[part]
        for t in TARGETS:
            assert {f"{t}/{k}" for k in ("n", "mae", "rmse", "r", "r2")} <= set(m)
        assert m["mae"] == m[f"{TARGETS[0]}/mae"] and m["n"] == m[f"{TARGETS[0]}/n"]
        assert m["log10_K_VRH/n"] <= m["n"]
    assert card.metrics["train"]["log10_K_VRH/n"] < card.metrics["train"]["n"]

    history = pd.read_csv(path / "history.csv")
    assert {"train_loss", "val_loss", "val_mae"} <= set(history.columns)
    assert {f"val_mae_{t}" for t in TARGETS} <= set(history.columns)
    assert np.allclose(history["val_mae"], history[f"val_mae_{TARGETS[0]}"])

    saved = pd.read_csv(path / "predictions.csv")
    assert set(saved["split"]) == {"val", "test"}
    for t in TARGETS:
        assert {f"target_{t}", f"prediction_{t}", f"error_{t}"} <= set(saved.columns)
    val = saved[saved["split"] == "val"]
    assert val["target_log10_K_VRH"].notna().sum() == card.metrics["val"]["log10_K_VRH/n"]
    mae = float(np.nanmean(np.abs(val["error_band_gap"])))
    assert mae == pytest.approx(card.metrics["val"]["band_gap/mae"], rel=1e-6)
    assert np.allclose(saved["prediction"], saved[f"prediction_{TARGETS[0]}"])


def test_learned_log_variances_change_and_are_saved(learned):
    result, path = learned
    fitted = result.model.card.fitted
    assert fitted["weighting"] == "learned"
    assert all(s != 0.0 for s in fitted["log_vars"].values())
    history = result.history
    for t in TARGETS:
        assert history[f"log_var_{t}"].iloc[-1] != 0.0
        assert fitted["task_weights"][t] == pytest.approx(math.exp(-fitted["log_vars"][t]))
    reloaded = load_model(path)
    assert reloaded.module.log_vars.tolist() == pytest.approx(list(fitted["log_vars"].values()))

    # the card and the weights must agree
    raw = json.loads((path / "model.json").read_text())
    raw["fitted"]["log_vars"]["band_gap"] += 0.5
    broken = path.parent / "broken"
    shutil.copytree(path, broken)
    (broken / "model.json").write_text(json.dumps(raw))
    with pytest.raises(ModelLoadError, match="log_vars"):
        load_model(broken)
    raw = json.loads((path / "model.json").read_text())
    raw["targets"] = raw["targets"][:3]
    (broken / "model.json").write_text(json.dumps(raw))
    with pytest.raises(ModelLoadError, match="targets"):
        load_model(broken)


def test_reloaded_model_predicts_the_same_batched_or_not(learned, elastic):
    result, path = learned
    reloaded = load_model(path)
    inputs = reloaded.prepare(elastic.structures[:8])
    before = result.model.predict_tasks_graphs(inputs, device="cpu")
    after = reloaded.predict_tasks_graphs(inputs, batch_size=5, device="cpu")
    assert before.shape == (8, 4)
    np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-6)
    single = np.vstack([reloaded.predict_tasks_graphs([x], batch_size=1) for x in inputs])
    np.testing.assert_allclose(single, after, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(reloaded.predict_graphs(inputs), after[:, 0], rtol=1e-6)
    assert reloaded.embed_graphs(inputs).shape == (8, TINY["atom_fea_len"])

    saved = pd.read_csv(path / "predictions.csv")
    row = saved.iloc[0]
    i = elastic.ids.index(str(row["id"]))
    again = reloaded.predict_tasks_graphs(reloaded.prepare([elastic.structures[i]]))[0]
    np.testing.assert_allclose(again, [row[f"prediction_{t}"] for t in TARGETS], rtol=1e-5)


def test_predict_and_evaluate_per_task(learned, elastic):
    _, path = learned
    model = load_model(path)
    items = elastic.items[:10]
    result = predict(model, items)
    assert result.targets == TARGETS and result.columns == {f"prediction_{t}": t for t in TARGETS}
    table = result.table
    assert np.allclose(table["prediction"], table[f"prediction_{TARGETS[0]}"])

    metrics, frame = evaluate(model, elastic.subset(range(40)), "log10_K_VRH")
    assert set(metrics) == {"n", "mae", "rmse", "r", "r2"}
    assert metrics["n"] == int(elastic.table["log10_K_VRH"][:40].notna().sum())
    by_id = dict(zip(table["id"], table["prediction_log10_K_VRH"]))
    shared = [i for i in frame["id"] if i in by_id]
    assert shared and np.allclose(
        frame.set_index("id").loc[shared, "prediction"], [by_id[i] for i in shared]
    )
    with pytest.raises(ValueError, match="not one of them"):
        evaluate(model, elastic, "homogeneous_poisson")


def test_list_models_gives_the_targets(learned, capsys):
    from engine.apps.cli.main import main

    _, path = learned
    shutil.copytree(path, user_model_dir() / "mt-listed")
    assert main(["models", "--json"]) == 0
    models = json.loads(capsys.readouterr().out)
    assert all({"name", "target", "unit", "source", "targets"} <= set(m) for m in models)
    entry = next(m for m in models if m["name"] == "learned")
    assert entry["target"] == TARGETS[0] and entry["targets"] == TARGETS
    assert entry["family"] == "multitask" and entry["source"] == "user"
    listed = {m["name"]: m for m in list_models()}
    assert all(m["targets"] == [m["target"]] for n, m in listed.items() if n != "learned")


# ---------------------------------------------------------------------------------------------
# Command line and single-target families


def test_cli_multitarget_train_predict_evaluate(
    cli_model, elastic_path, shared_data, tmp_path, capsys
):
    from engine.apps.cli.main import main

    card = json.loads((cli_model / "model.json").read_text())
    assert card["target"] == "band_gap"
    assert card["targets"] == ["band_gap", "formation_energy_per_atom", "log10_K_VRH"]
    assert card["model"]["weighting"] == "inverse-scale"
    assert card["fitted"]["log_vars"] == dict.fromkeys(card["targets"], 0.0)
    assert card["fitted"]["task_weights"] == pytest.approx(dict.fromkeys(card["targets"], 1 / 3))
    capsys.readouterr()

    out = tmp_path / "pred.csv"
    assert (
        main(
            [
                "predict",
                "--model",
                str(cli_model),
                "--input",
                str(shared_data / "cgcnn_sample"),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    table = pd.read_csv(out)
    assert len(table) == 10
    assert list(table.columns) == [
        "id",
        "formula",
        "n_sites",
        "band_gap (eV)",
        "formation_energy_per_atom (eV/atom)",
        "log10_K_VRH (log10(GPa))",
        "band_gap std (eV)",
        "formation_energy_per_atom std (eV/atom)",
        "log10_K_VRH std (log10(GPa))",
        "domain_distance",
        "domain",
    ]
    assert (
        main(["predict", "--model", str(cli_model), "--input", str(shared_data / "cgcnn_sample")])
        == 0
    )
    assert "log10_K_VRH (log10(GPa))" in capsys.readouterr().out

    common = [
        "evaluate",
        "--model",
        str(cli_model),
        "--data",
        str(elastic_path),
        "--limit",
        "40",
        "--json",
    ]
    assert main([*common, "--target", "log10_K_VRH"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(metrics) == {"n", "mae", "rmse", "r", "r2"} and 0 < metrics["n"] <= 40
    assert main([*common, "--target", "formation_energy_per_atom"]) == 0
    other = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert other["n"] == 40 and other["mae"] != metrics["mae"]
    assert main([*common, "--target", "log10_G_VRH"]) == 2
    assert "not one of them" in capsys.readouterr().err


def test_single_target_families_refuse_several_targets(elastic, elastic_path, tmp_path, capsys):
    from engine.apps.cli.main import main

    with pytest.raises(ValueError, match="single target"):
        train(elastic, TARGETS[:2], model=CGCNNConfig(**TINY), out=tmp_path / "x")
    assert (
        main(
            [
                "train",
                "--data",
                str(elastic_path),
                "--target",
                *TARGETS[:2],
                "--model",
                "cgcnn",
                "--quiet",
                "--out",
                str(tmp_path / "y"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error: model family 'cgcnn' predicts a single target")
    assert "multitask" in err and not (tmp_path / "y").exists()


def test_old_single_target_cards_load_unchanged():
    model = load_model("cte-cgcnn-aflow")
    card = model.card
    assert card.targets == [] and card.normalizers == []
    assert card.task_targets == [card.target] and model.targets == [card.target]
    inputs = model.prepare([nacl()])
    tasks = model.run(inputs, ("prediction", "tasks"))
    assert tasks["tasks"].shape == (1, 1)
    assert tasks["tasks"][0, 0] == tasks["prediction"][0]
    result = predict(model, [_named(nacl())])
    assert list(result.table.columns) == [
        "id",
        "formula",
        "n_sites",
        "prediction",
        "prediction_std",
        "domain_distance",
        "domain",
    ]
    assert result.columns == {"prediction": card.target}


def _named(structure):
    return NamedStructure(id="NaCl", structure=structure, source="test")


def test_a_log_transform_applies_to_the_primary_target_only(elastic, tmp_path):
    """Auxiliary targets (here formation energies, negative) are standardised as they are."""
    from engine.store.card import read_card

    targets = ["log10_K_VRH", "formation_energy_per_atom"]
    result = train(
        elastic,
        targets,
        model=MultitaskConfig(**TINY),
        training=TrainConfig(epochs=1, batch_size=32, device="cpu", target_transform="log"),
        split=SplitConfig(seed=1),
        out=tmp_path / "log-mt",
    )
    card = read_card(tmp_path / "log-mt")
    assert [n.transform for n in card.normalizers] == ["log", "none"]
    model = load_model(tmp_path / "log-mt")
    tasks = model.predict_tasks_graphs(model.prepare(elastic.structures[:8]))
    assert tasks.shape == (8, 2) and np.isfinite(tasks).all()
    assert (tasks[:, 0] > 0).all()  # exp of the primary target's output
    assert result.metrics["val"]["n"] > 0
