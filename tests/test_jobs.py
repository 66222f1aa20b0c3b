"""Background training jobs: a run that finishes, one that crashes, one that is cancelled."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from engine.apps.jobs.training import (
    cancel_job,
    delete_job,
    job_dir,
    job_progress,
    job_status,
    list_jobs,
    read_log,
    start_training_job,
)
from engine.core.config import CGCNNConfig, SplitConfig, TrainConfig, user_model_dir
from tests.dashboard.helpers import wait_job, write_dataset

TARGET = "agl_thermal_expansion_300K"  # the column write_dataset fills

SMALL = {
    "model": CGCNNConfig(atom_fea_len=16, n_conv=1, h_fea_len=16),
    "split": SplitConfig(kind="random", val_fraction=0.2, test_fraction=0.2),
}


@pytest.mark.slow
def test_job_runs_to_done_and_saves_model(tmp_path):
    data = write_dataset(tmp_path / "tiny.jsonl")
    job_id = start_training_job(
        data, TARGET, training=TrainConfig(epochs=3, batch_size=8), name="tiny-model", **SMALL
    )
    assert job_status(job_id)["status"] in ("queued", "running", "done")
    status = wait_job(job_id)
    assert status["status"] == "done", (status, read_log(job_id))
    assert Path(status["model_path"]) == user_model_dir() / "tiny-model"
    assert (user_model_dir() / "tiny-model" / "model.json").is_file()
    assert set(status["metrics"]) >= {"train", "val", "test"}
    progress = job_progress(job_id)
    assert progress["epoch"] == 3 and len(progress["history"]) == 3
    assert [j["id"] for j in list_jobs()] == [job_id]
    # a second job may not overwrite the model
    with pytest.raises(ValueError, match="exists already"):
        start_training_job(data, TARGET, name="tiny-model")
    delete_job(job_id, remove_model=True)
    assert not job_dir(job_id).exists()
    assert not (user_model_dir() / "tiny-model").exists()


@pytest.mark.slow
def test_multitask_job_learns_every_target(tmp_path):
    from engine.core.config import MultitaskConfig
    from engine.store.card import read_card

    data = write_dataset(tmp_path / "two.jsonl", n=24, second_target=True)
    job_id = start_training_job(
        data, [TARGET, "lattice_a"], model=MultitaskConfig(atom_fea_len=8, n_conv=1, h_fea_len=8),
        training=TrainConfig(epochs=2, batch_size=8), split=SMALL["split"], name="tiny-multi",
    )
    status = wait_job(job_id)
    assert status["status"] == "done", (status, read_log(job_id))
    assert status["target"] == TARGET and status["targets"] == [TARGET, "lattice_a"]
    assert "lattice_a/mae" in status["metrics"]["val"]
    card = read_card(user_model_dir() / "tiny-multi")
    assert card.task_targets == [TARGET, "lattice_a"] and card.model["n_tasks"] == 2


@pytest.mark.slow
def test_bad_target_fails_with_reason(tmp_path):
    data = write_dataset(tmp_path / "tiny.jsonl", n=12)
    job_id = start_training_job(data, "no_such_column", training=TrainConfig(epochs=1), **SMALL)
    status = wait_job(job_id)
    assert status["status"] == "failed"
    assert "no_such_column" in status["error"] and TARGET in status["error"]
    assert "Traceback" in read_log(job_id, lines=200)


@pytest.mark.slow
def test_cancel_stops_after_current_epoch(tmp_path):
    data = write_dataset(tmp_path / "tiny.jsonl")
    job_id = start_training_job(
        data,
        TARGET,
        name="to-cancel",
        training=TrainConfig(epochs=500, batch_size=4, early_stopping_patience=None),
        **SMALL,
    )
    deadline = time.time() + 120
    while job_progress(job_id)["epoch"] < 1 and time.time() < deadline:
        assert job_status(job_id)["status"] in ("queued", "running"), read_log(job_id)
        time.sleep(0.2)
    cancel_job(job_id)
    status = wait_job(job_id)
    assert status["status"] == "cancelled", (status, read_log(job_id))
    assert "cancel" in status["stop_reason"]
    assert 1 <= status["epoch"] < 500
    # the best epoch so far is saved and usable
    assert (user_model_dir() / "to-cancel" / "weights.pt").is_file()
    # cancelling a finished job changes nothing
    assert cancel_job(job_id)["status"] == "cancelled"


def test_dead_process_reads_as_failed(tmp_path):
    """A job whose process vanished without writing a result is reported as failed."""
    data = write_dataset(tmp_path / "tiny.jsonl", n=4)
    job_id = start_training_job(data, TARGET, python="/bin/false")
    status = wait_job(job_id, timeout=30)
    assert status["status"] == "failed"
    assert "ended without reporting" in status["error"]
    # recorded, so a fresh look agrees
    assert json.loads((job_dir(job_id) / "status.json").read_text())["status"] == "failed"


def test_force_cancel_and_unknown_ids(tmp_path):
    data = write_dataset(tmp_path / "tiny.jsonl", n=4)
    job_id = start_training_job(data, TARGET, python="/bin/sleep")  # argv: sleep -m ... fails
    status = cancel_job(job_id, force=True)
    assert status["status"] in ("cancelled", "failed")
    assert job_status("no-such-job")["status"] == "failed"
    assert "no job" in job_status("no-such-job")["error"]
    assert job_status("../etc")["status"] == "failed"
    with pytest.raises(FileNotFoundError):
        start_training_job(tmp_path / "missing.jsonl", TARGET)


def test_env_home_is_isolated():
    assert "CRYSTAL_SCREEN_HOME" in os.environ
