"""Accuracy levers (issue 16): log target and robust losses; physics inputs next to the graph."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from engine.catalog.names import load_model
from engine.core.config import (
    CGCNNConfig,
    CGCNNPhysicsConfig,
    GraphConfig,
    SplitConfig,
    TrainConfig,
)
from engine.graphs.builder import GraphBuilder
from engine.io.datasets import load_dataset
from engine.models import build_inputs, build_model, model_config_from_dict
from engine.models.physics_inputs import PHYSICS_INPUTS, PHYSICS_PROPERTY
from engine.store.card import Normalizer
from engine.training import regression_metrics, train
from engine.training.loop import Trainer

CTE = "agl_thermal_expansion_300K"
TINY = dict(atom_fea_len=16, n_conv=2, h_fea_len=32)


@pytest.fixture(scope="module")
def small_demo(shared_data):
    return load_dataset(shared_data / "aflow_agl" / "demo.jsonl.gz", limit=120)


def test_log_normalizer_round_trips_and_refuses_non_positive_values():
    y = np.array([1e-6, 3e-5, 2e-4])
    n = Normalizer.fit(y, "log")
    assert n.mean == pytest.approx(np.mean(np.log(y)))
    z = n.encode(torch.tensor(y))
    assert float(z.mean()) == pytest.approx(0.0, abs=1e-9)
    assert np.allclose(n.decode(z).numpy(), y, rtol=1e-9)
    assert Normalizer.model_validate({"mean": 1.0, "std": 2.0}).transform == "none"  # old cards
    with pytest.raises(ValueError, match="2 of 4 training values are zero or negative"):
        Normalizer.fit(np.array([1.0, 0.0, -2.0, 3.0]), "log")


@pytest.mark.parametrize("loss", ["mse", "l1", "huber"])
def test_losses_are_the_named_functions(loss):
    trainer = Trainer(
        torch.nn.Linear(1, 1), TrainConfig(loss=loss, huber_delta=0.5), target_std=1.0
    )
    pred, y = torch.tensor([0.0, 0.0]), torch.tensor([0.2, 3.0])
    value, recorded = trainer.batch_loss(pred, type("B", (), {"y": y})())
    expected = {
        "mse": (0.04 + 9.0) / 2,
        "l1": 3.2 / 2,
        "huber": (0.5 * 0.04 + 0.5 * (3.0 - 0.25)) / 2,
    }[loss]
    assert float(value) == pytest.approx(expected) and recorded == pytest.approx(expected)


def test_log_target_with_huber_saves_loads_and_predicts_in_the_original_unit(small_demo, tmp_path):
    cfg = TrainConfig(epochs=3, batch_size=16, device="cpu", target_transform="log", loss="huber")
    result = train(
        small_demo,
        CTE,
        model=CGCNNConfig(**TINY),
        training=cfg,
        split=SplitConfig(seed=1),
        out=tmp_path / "run",
    )
    card = load_model(tmp_path / "run").card
    assert card.normalizer.transform == "log" and card.training.loss == "huber"
    y = small_demo.targets(CTE)
    assert card.normalizer.mean == pytest.approx(np.log(y[y > 0]).mean(), abs=1.0)
    val = result.predictions[result.predictions["split"] == "val"]
    # predictions are α in 1/K (positive, the label's scale), not ln α
    assert (val["prediction"] > 0).all() and val["prediction"].median() < 1e-3
    assert regression_metrics(val["target"], val["prediction"])["mae"] == pytest.approx(
        card.metrics["val"]["mae"]
    )
    hist_last = result.history.iloc[-1]
    assert 0 < hist_last["val_mae"] < 1e-3  # the history's MAE is in 1/K too
    by_id = {it.id: it.structure for it in small_demo.items}
    reloaded = load_model(tmp_path / "run")
    again = reloaded.predict_structures([by_id[i] for i in val["id"]])
    assert np.allclose(again, val["prediction"], rtol=1e-5)
    # σ and the domain were fitted on the back-transformed residuals: σ is in 1/K
    sigma = val["prediction_std"].to_numpy()
    assert np.all(sigma > 0) and np.median(sigma) < 10 * np.abs(val["error"]).max()


def test_log_target_refuses_non_positive_labels(small_demo):
    shifted = small_demo.subset(np.arange(len(small_demo.items)))
    shifted.table[CTE] = shifted.table[CTE] - np.nanmedian(shifted.table[CTE])
    with pytest.raises(ValueError, match="strictly positive"):
        train(
            shifted,
            CTE,
            model=CGCNNConfig(**TINY),
            split=SplitConfig(seed=1),
            training=TrainConfig(epochs=1, device="cpu", target_transform="log"),
        )


def _with_physics(structure, **values):
    s = structure.copy()
    s.properties[PHYSICS_PROPERTY] = {k: values.get(k, 1.0) for k in PHYSICS_INPUTS}
    return s


def test_physics_family_uses_inputs_and_falls_back_without_them(crystals):
    torch.manual_seed(0)
    module = build_model(CGCNNPhysicsConfig(**TINY), GraphConfig())
    base = crystals["SrTiO3"]
    with_a = _with_physics(base, debye_temperature_K=300.0)
    with_b = _with_physics(base, debye_temperature_K=900.0)
    partial = _with_physics(base, gruneisen=math.nan)  # a failed quantity: no physics at all
    inputs = build_inputs(module, GraphBuilder(GraphConfig()), [with_a, with_b, base, partial])
    module.fit_statistics(inputs[:2])
    assert torch.equal(
        torch.cat([d.physics_used for d in inputs]), torch.tensor([1.0, 1.0, 0.0, 0.0])
    )
    from torch_geometric.data import Batch

    module.eval()
    batch = Batch.from_data_list(inputs)
    pooled = module.pooled(batch)
    assert pooled.shape == (4, 16 + len(PHYSICS_INPUTS) + 1)
    assert torch.equal(pooled[2, 16:], torch.zeros(6))  # no physics: z = 0, flag 0
    assert torch.equal(pooled[2], pooled[3])
    out = module(batch)
    assert out.shape == (4,) and not torch.isclose(out[0], out[1])  # θ_D changes the output
    assert model_config_from_dict({"name": "cgcnn-physics"}) == CGCNNPhysicsConfig()


def test_physics_family_trains_saves_and_reloads(small_demo, tmp_path):
    dataset = small_demo.subset(np.arange(len(small_demo.items)))
    rng = np.random.default_rng(0)
    for i, s in enumerate(dataset.structures):
        if i % 3:  # a third of the rows without physics (the fallback)
            s.properties[PHYSICS_PROPERTY] = dict(zip(PHYSICS_INPUTS, rng.random(5) + 1))
    result = train(
        dataset,
        CTE,
        model=CGCNNPhysicsConfig(**TINY),
        out=tmp_path / "run",
        split=SplitConfig(seed=1),
        training=TrainConfig(epochs=2, device="cpu"),
    )
    module = load_model(tmp_path / "run").module
    assert torch.allclose(module.physics_scaler.mean, result.model.module.physics_scaler.mean)
    val = result.predictions[result.predictions["split"] == "val"]
    by_id = {it.id: it.structure for it in dataset.items}
    again = load_model(tmp_path / "run").predict_structures([by_id[i] for i in val["id"]])
    assert np.allclose(again, val["prediction"], rtol=1e-5)


def test_cli_predict_computes_physics_inputs_and_reports_the_fallback(
    small_demo, shared_data, tmp_path, monkeypatch, capsys
):
    from types import SimpleNamespace

    import engine.inference.physics_inputs as physics_inputs
    from engine.apps.cli.main import main

    dataset = small_demo.subset(np.arange(len(small_demo.items)))
    for s in dataset.structures:
        s.properties[PHYSICS_PROPERTY] = dict(zip(PHYSICS_INPUTS, (3e-5, 400.0, 100.0, 4.5, 1.8)))
    train(
        dataset,
        CTE,
        model=CGCNNPhysicsConfig(**TINY),
        out=tmp_path / "model",
        split=SplitConfig(seed=1),
        training=TrainConfig(epochs=1, device="cpu"),
    )
    sample = shared_data / "cgcnn_sample"
    for name in ("1000041", "1000050"):
        (tmp_path / "in").mkdir(exist_ok=True)
        (tmp_path / "in" / f"{name}.cif").write_text((sample / f"{name}.cif").read_text())

    def fake_route(items, settings=None, progress=None):  # no potential in a unit test
        for k, _ in enumerate(items):
            ok = k == 0
            yield SimpleNamespace(
                status="ok" if ok else "failed",
                reason="" if ok else "EOS minimum outside the sampled volumes",
                **dict(zip(PHYSICS_INPUTS, (3e-5, 400.0, 100.0, 4.5, 1.8))),
            )

    monkeypatch.setattr(physics_inputs, "thermal_properties", fake_route)
    out = tmp_path / "pred.csv"
    assert (
        main(
            [
                "predict",
                "--model",
                str(tmp_path / "model"),
                "--input",
                str(tmp_path / "in"),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    table = pd.read_csv(out)
    assert list(table["physics_used"]) == [True, False]
    assert table["physics_reason"].fillna("").str.contains("EOS minimum").tolist() == [False, True]
    assert "1 structure(s) without physics inputs" in capsys.readouterr().err
    assert table.filter(like=CTE).notna().all().all()


def test_cli_train_takes_target_transform_and_loss(shared_data, tmp_path):
    from engine.apps.cli.main import main

    out = tmp_path / "log-huber"
    code = main(
        [
            "train",
            "--data",
            str(shared_data / "aflow_agl" / "demo.jsonl.gz"),
            "--target",
            CTE,
            "--out",
            str(out),
            "--epochs",
            "1",
            "--limit",
            "60",
            "--atom-fea-len",
            "16",
            "--n-conv",
            "1",
            "--quiet",
            "--target-transform",
            "log",
            "--loss",
            "huber",
            "--huber-delta",
            "0.3",
        ]
    )
    assert code == 0
    card = load_model(out).card
    assert card.normalizer.transform == "log"
    assert (card.training.loss, card.training.huber_delta) == ("huber", 0.3)


def test_refit_trains_on_validation_too_ends_at_the_chosen_epoch_and_has_no_sigma(
    small_demo, tmp_path
):
    """The final fit (lever 5): train ∪ val, test still held out, the weights of the epoch asked
    for (not the best one), and no σ or domain (nothing held out to fit them on)."""
    from engine.io.splits import split_dataset
    from engine.training.ensembles import calibrate_model

    split = SplitConfig(seed=1)
    plain, refit = (
        split_dataset(small_demo.dropna(CTE), split.model_copy(update={"refit": r}))
        for r in (False, True)
    )
    assert np.array_equal(refit["train"], np.union1d(plain["train"], plain["val"]))
    assert np.array_equal(refit["val"], plain["val"]) and np.array_equal(
        refit["test"], plain["test"]
    )
    assert not np.intersect1d(refit["train"], refit["test"]).size

    cfg = TrainConfig(epochs=6, batch_size=16, device="cpu", lr=0.05, early_stopping_patience=1)
    refit_split = split.model_copy(update={"refit": True})
    with pytest.raises(ValueError, match="stop_after"):
        train(small_demo, CTE, model=CGCNNConfig(**TINY), training=cfg, split=refit_split)

    result = train(
        small_demo,
        CTE,
        model=CGCNNConfig(**TINY),
        training=cfg.model_copy(update={"stop_after": 4}),
        split=refit_split,
        out=tmp_path / "refit",
    )
    # four epochs despite early stopping's patience of 1 and a schedule of six
    assert list(result.history["epoch"]) == [1, 2, 3, 4]
    assert result.stop_reason == "stopped after epoch 4 (stop_after)"
    model = load_model(tmp_path / "refit")
    assert model.card.dataset.n_train == len(refit["train"])
    assert model.card.uncertainty is None and not (tmp_path / "refit" / "domain.npz").exists()
    # the saved weights are epoch 4's: its validation loss, whatever the best epoch was
    history = result.history.set_index("epoch")
    val = result.predictions[result.predictions["split"] == "val"]
    decoded_mae = float(np.mean(np.abs(val["prediction"] - val["target"])))
    assert decoded_mae == pytest.approx(history.loc[4, "val_mae"], rel=1e-4)
    with pytest.raises(ValueError, match="is a refit"):
        calibrate_model(model, small_demo, device="cpu", write=False)
