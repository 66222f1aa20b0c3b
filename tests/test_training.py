"""Training: metrics, determinism, best-epoch restore, saved run artefacts, end-to-end accuracy."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from engine.catalog.names import load_model
from engine.core.config import CGCNNConfig, SplitConfig, TrainConfig
from engine.io.datasets import load_dataset
from engine.training import regression_metrics, train

CTE = "agl_thermal_expansion_300K"


def test_regression_metrics_known_values():
    m = regression_metrics([1.0, 2.0, 3.0, 4.0], [1.5, 2.0, 2.5, 5.0])
    assert m["n"] == 4
    assert m["mae"] == pytest.approx(0.5)
    assert m["rmse"] == pytest.approx(np.sqrt((0.25 + 0 + 0.25 + 1) / 4))
    assert m["r2"] == pytest.approx(1 - 1.5 / 5.0)
    assert m["r"] == pytest.approx(np.corrcoef([1, 2, 3, 4], [1.5, 2, 2.5, 5])[0, 1])
    assert np.isnan(regression_metrics([1.0], [2.0])["r"])
    with pytest.raises(ValueError, match="shape"):
        regression_metrics([1, 2], [1])


@pytest.fixture(scope="module")
def small_demo(shared_data):
    return load_dataset(shared_data / "aflow_agl" / "demo.jsonl.gz", limit=120)


TINY = dict(
    model=CGCNNConfig(atom_fea_len=16, n_conv=2, h_fea_len=32),
    split=SplitConfig(seed=1),
)


def test_same_seed_gives_identical_runs(small_demo):
    cfg = TrainConfig(epochs=3, batch_size=16, seed=5, device="cpu")
    a = train(small_demo, CTE, training=cfg, **TINY)
    b = train(small_demo, CTE, training=cfg, **TINY)
    cols = ["train_loss", "val_loss", "val_mae"]
    pd.testing.assert_frame_equal(a.history[cols], b.history[cols])
    assert np.array_equal(a.predictions["prediction"], b.predictions["prediction"])
    c = train(small_demo, CTE, training=cfg.model_copy(update={"seed": 6}), **TINY)
    assert not np.array_equal(a.predictions["prediction"], c.predictions["prediction"])


def test_run_is_saved_and_reloads_to_the_same_predictions(small_demo, tmp_path):
    cfg = TrainConfig(epochs=4, batch_size=16, device="cpu")
    result = train(small_demo, CTE, training=cfg, out=tmp_path / "run", **TINY)
    for name in ("model.json", "weights.pt", "history.csv", "predictions.csv"):
        assert (tmp_path / "run" / name).is_file()
    card = result.model.card
    assert card.unit == "1/K" and card.target == CTE
    assert card.dataset.size == len(small_demo.items) and len(card.dataset.content_hash) == 64
    assert set(card.metrics) >= {"train", "val", "test"}
    assert card.normalizer.std > 0 and "O" in card.elements

    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3, 4]
    assert {"train_loss", "val_loss", "train_mae", "val_mae", "train_r", "val_r", "lr"} <= set(
        history.columns
    )

    saved = pd.read_csv(tmp_path / "run" / "predictions.csv")
    val = saved[saved["split"] == "val"]
    assert len(val) == card.metrics["val"]["n"]
    # the best epoch's weights were restored and saved: reloading reproduces the val predictions
    reloaded = load_model(tmp_path / "run")
    by_id = {it.id: it.structure for it in small_demo.items}
    again = reloaded.predict_structures([by_id[i] for i in val["id"]])
    assert np.allclose(again, val["prediction"], rtol=1e-6, atol=0)
    assert regression_metrics(val["target"], val["prediction"])["mae"] == pytest.approx(
        card.metrics["val"]["mae"]
    )


def test_early_stopping_stops_and_says_why(small_demo):
    cfg = TrainConfig(
        epochs=50, batch_size=16, lr=0.5, early_stopping_patience=2, device="cpu", scheduler="none"
    )
    result = train(small_demo, CTE, training=cfg, **TINY)
    assert len(result.history) < 50
    assert "early stopping" in result.stop_reason
    best = int(result.history["val_loss"].idxmin())
    assert len(result.history) == best + 1 + 2


def test_missing_target_column_is_a_clear_error(small_demo):
    with pytest.raises(KeyError, match="agl_debye"):
        train(small_demo, "no_such_column", training=TrainConfig(epochs=1), **TINY)


@pytest.mark.slow
def test_end_to_end_demo_reaches_validation_r_of_0_9(shared_data, tmp_path):
    dataset = load_dataset(shared_data / "aflow_agl" / "demo.jsonl.gz")
    result = train(
        dataset,
        CTE,
        training=TrainConfig(epochs=40, batch_size=32, lr=3e-3, device="cpu", seed=0),
        split=SplitConfig(seed=0),
        out=tmp_path / "demo-cte",
    )
    val = result.metrics["val"]
    assert val["r"] >= 0.9, f"validation R {val['r']:.3f} (MAE {val['mae']:.3g} 1/K)"
    assert val["mae"] < 1.2e-5


def test_cancel_file_stops_training_inside_the_epoch(crystals, tmp_path):
    """A cancel request ends the epoch at the next batch (checked at most every 0.5 s)."""
    import torch

    from engine.core.config import GraphConfig
    from engine.graphs.builder import GraphBuilder
    from engine.models import build_model
    from engine.training.callbacks import Callback, ProgressFile
    from engine.training.loop import Trainer

    graphs = GraphBuilder().build_many(list(crystals.values()) * 20)
    for k, graph in enumerate(graphs):
        graph.y = torch.tensor([float(k % 3)])

    class Count(Callback):
        batches = 0

        def on_batch_end(self, trainer):
            Count.batches += 1

    (tmp_path / "cancel").touch()
    module = build_model(CGCNNConfig(atom_fea_len=8, n_conv=1, h_fea_len=8), GraphConfig())
    trainer = Trainer(
        module,
        TrainConfig(epochs=5, batch_size=4, device="cpu"),
        target_std=1.0,
        callbacks=[Count(), ProgressFile(tmp_path)],
    )
    trainer.fit(graphs[:50], graphs[50:])
    assert trainer.stop_reason == "cancelled by user"
    assert Count.batches == 1  # of 13 in an epoch
    assert json.loads((tmp_path / "progress.json").read_text())["epoch"] == 1


def test_an_epoch_raises_no_user_warning(crystals):
    """The job log once carried torch's "Converting a tensor with requires_grad=True"."""
    import warnings

    import torch

    from engine.core.config import GraphConfig
    from engine.graphs.builder import GraphBuilder
    from engine.models import build_model
    from engine.training.loop import Trainer

    graphs = GraphBuilder().build_many(list(crystals.values()) * 4)
    for k, graph in enumerate(graphs):
        graph.y = torch.tensor([float(k % 3)])
    module = build_model(CGCNNConfig(atom_fea_len=8, n_conv=1, h_fea_len=8), GraphConfig())
    trainer = Trainer(module, TrainConfig(epochs=1, batch_size=4, device="cpu"), target_std=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        trainer.fit(graphs[:8], graphs[8:])
