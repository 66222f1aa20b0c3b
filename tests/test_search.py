"""Hyperparameter search: grid sampling, ranking on validation only, saving the best model."""

from __future__ import annotations

import warnings

import pytest

from engine.apps.cli.main import main
from engine.catalog.names import load_model
from engine.core.config import SplitConfig, TrainConfig
from engine.io.datasets import load_dataset
from engine.training.search import CGCNN_GRID, hyperparameter_search, search_settings
from tests.dashboard.helpers import write_dataset

CTE = "agl_thermal_expansion_300K"
SPLIT = SplitConfig(kind="random", val_fraction=0.2, test_fraction=0.2, seed=0)
GRID = {"n_conv": [1, 2], "lr": [1e-3, 1e-2], "atom_fea_len": [8]}


def test_cgcnn_grid_has_54_settings_and_sampling_is_seeded_without_replacement():
    full = search_settings(CGCNN_GRID, None, seed=0)
    assert len(full) == 54 and len({tuple(sorted(s.items())) for s in full}) == 54
    sample = search_settings(CGCNN_GRID, 10, seed=3)
    assert len({tuple(sorted(s.items())) for s in sample}) == 10
    assert all(s in full for s in sample)
    assert sample == search_settings(CGCNN_GRID, 10, seed=3)
    assert sample != search_settings(CGCNN_GRID, 10, seed=4)
    assert len(search_settings(CGCNN_GRID, 100, seed=0)) == 54  # more than the grid: all of it


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    dataset = load_dataset(write_dataset(root / "toy.jsonl", n=30))
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = hyperparameter_search(
            dataset,
            CTE,
            grid=GRID,
            n_trials=None,
            epochs=2,
            split=SPLIT,
            training=TrainConfig(batch_size=8),
            out=root / "best",
            name="best-of-search",
            on_trial=lambda done, total, row: seen.append((done, total)),
        )
    return result, seen


def test_every_setting_is_tried_and_ranked_by_validation_mae(searched):
    result, seen = searched
    table = result.table
    assert len(table) == 4 and result.n_settings == 4 and seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert (table["status"] == "ok").all()
    assert list(table["val_mae"]) == sorted(table["val_mae"])
    assert "test_mae" not in table  # selection never sees the test split
    assert result.best == {k: table.iloc[0][k] for k in GRID}
    assert result.best_result.metrics["val"]["mae"] == pytest.approx(table["val_mae"].iloc[0])


def test_best_model_is_saved_with_its_settings(searched):
    result, _ = searched
    model = load_model(result.best_result.path)
    assert model.name == "best-of-search"
    assert model.card.model["n_conv"] == result.best["n_conv"]
    assert model.card.training.lr == pytest.approx(result.best["lr"])


def test_unknown_setting_is_refused(tmp_path):
    dataset = load_dataset(write_dataset(tmp_path / "toy.jsonl", n=12))
    with pytest.raises(ValueError, match="not a setting of cgcnn"):
        hyperparameter_search(dataset, CTE, grid={"n_trees": [1, 2]}, epochs=1, split=SPLIT)


def test_cli_search_writes_the_table(tmp_path, capsys):
    data = write_dataset(tmp_path / "toy.jsonl", n=24)
    table = tmp_path / "search.csv"
    code = main(
        [
            "search",
            "--data",
            str(data),
            "--target",
            CTE,
            "--grid",
            '{"n_conv": [1, 2], "atom_fea_len": [8]}',
            "--trials",
            "0",
            "--epochs",
            "1",
            "--split",
            "random",
            "--batch-size",
            "8",
            "--table",
            str(table),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "trial 2/2" in out and "2 of 2 settings" in out
    lines = table.read_text().splitlines()
    assert lines[0].startswith("trial,") and "val_mae" in lines[0] and len(lines) == 3
    assert main(["search", "--data", str(data), "--target", CTE, "--grid", "[1, 2]"]) == 2


def test_a_cancel_file_ends_the_running_trial_within_a_batch(tmp_path):
    """The callbacks reach every trial: with a ``cancel`` file present the first trial stops in
    its first epoch and on_trial ends the search, so a cancel never waits for a whole trial."""
    from engine.training.callbacks import CANCELLED, CancelFile

    dataset = load_dataset(write_dataset(tmp_path / "toy.jsonl", n=30))
    (tmp_path / "cancel").touch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = hyperparameter_search(
            dataset,
            CTE,
            grid=GRID,
            epochs=5,
            split=SPLIT,
            training=TrainConfig(batch_size=4, early_stopping_patience=None),
            callbacks=[CancelFile(tmp_path)],
            on_trial=lambda done, total, row: (tmp_path / "cancel").exists(),
        )
    assert len(result.table) == 1
    assert len(result.best_result.history) == 1
    assert result.best_result.stop_reason == CANCELLED
