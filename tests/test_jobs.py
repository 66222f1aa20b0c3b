"""Background training jobs: a run that finishes, one that crashes, one that is cancelled."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from engine.config import CGCNNConfig, SplitConfig, TrainConfig, user_model_dir
from engine.jobs import (
    cancel_job,
    delete_job,
    job_dir,
    job_progress,
    job_status,
    list_jobs,
    read_log,
    start_training_job,
)

ELEMENTS = [
    ("Sr", "Ti"),
    ("Ba", "Zr"),
    ("La", "Co"),
    ("La", "Fe"),
    ("Ca", "Ti"),
    ("Sr", "Fe"),
    ("Ba", "Ti"),
    ("La", "Mn"),
    ("La", "Ni"),
    ("Sr", "Co"),
    ("Ba", "Ce"),
    ("La", "Ga"),
]


def write_tiny_dataset(path: Path, n: int = 36) -> Path:
    """Cubic perovskites with a made-up target that grows with the lattice parameter."""
    rng = np.random.default_rng(0)
    with open(path, "w") as fh:
        for k in range(n):
            a_el, b_el = ELEMENTS[k % len(ELEMENTS)]
            a = 3.8 + 0.5 * rng.random()
            record = {
                "id": f"p{k}",
                "lattice": [[a, 0, 0], [0, a, 0], [0, 0, a]],
                "species": [a_el, b_el, "O", "O", "O"],
                "frac_coords": [
                    [0, 0, 0],
                    [0.5, 0.5, 0.5],
                    [0.5, 0.5, 0],
                    [0.5, 0, 0.5],
                    [0, 0.5, 0.5],
                ],
                "toy_target": 1e-5 * a + 1e-7 * k,
                "label": "text",
            }
            fh.write(json.dumps(record) + "\n")
    return path


def wait_for(job_id: str, states=("done", "failed", "cancelled"), timeout: float = 120.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = job_status(job_id)
        if status["status"] in states:
            return status
        time.sleep(0.3)
    raise AssertionError(
        f"job {job_id} still {job_status(job_id)} after {timeout} s;\n{read_log(job_id)}"
    )


SMALL = {
    "model": CGCNNConfig(atom_fea_len=16, n_conv=1, h_fea_len=16),
    "split": SplitConfig(kind="random", val_fraction=0.2, test_fraction=0.2),
}


@pytest.mark.slow
def test_job_runs_to_done_and_saves_model(tmp_path):
    data = write_tiny_dataset(tmp_path / "tiny.jsonl")
    job_id = start_training_job(
        data, "toy_target", training=TrainConfig(epochs=3, batch_size=8), name="tiny-model", **SMALL
    )
    assert job_status(job_id)["status"] in ("queued", "running", "done")
    status = wait_for(job_id)
    assert status["status"] == "done", (status, read_log(job_id))
    assert Path(status["model_path"]) == user_model_dir() / "tiny-model"
    assert (user_model_dir() / "tiny-model" / "model.json").is_file()
    assert set(status["metrics"]) >= {"train", "val", "test"}
    progress = job_progress(job_id)
    assert progress["epoch"] == 3 and len(progress["history"]) == 3
    assert [j["id"] for j in list_jobs()] == [job_id]
    # a second job may not overwrite the model
    with pytest.raises(ValueError, match="exists already"):
        start_training_job(data, "toy_target", name="tiny-model")
    delete_job(job_id, remove_model=True)
    assert not job_dir(job_id).exists()
    assert not (user_model_dir() / "tiny-model").exists()


@pytest.mark.slow
def test_bad_target_fails_with_reason(tmp_path):
    data = write_tiny_dataset(tmp_path / "tiny.jsonl", n=12)
    job_id = start_training_job(data, "no_such_column", training=TrainConfig(epochs=1), **SMALL)
    status = wait_for(job_id)
    assert status["status"] == "failed"
    assert "no_such_column" in status["error"] and "toy_target" in status["error"]
    assert "Traceback" in read_log(job_id, lines=200)


@pytest.mark.slow
def test_cancel_stops_after_current_epoch(tmp_path):
    data = write_tiny_dataset(tmp_path / "tiny.jsonl")
    job_id = start_training_job(
        data,
        "toy_target",
        name="to-cancel",
        training=TrainConfig(epochs=500, batch_size=4, early_stopping_patience=None),
        **SMALL,
    )
    deadline = time.time() + 120
    while job_progress(job_id)["epoch"] < 1 and time.time() < deadline:
        assert job_status(job_id)["status"] in ("queued", "running"), read_log(job_id)
        time.sleep(0.2)
    cancel_job(job_id)
    status = wait_for(job_id)
    assert status["status"] == "cancelled", (status, read_log(job_id))
    assert "cancel" in status["stop_reason"]
    assert 1 <= status["epoch"] < 500
    # the best epoch so far is saved and usable
    assert (user_model_dir() / "to-cancel" / "weights.pt").is_file()
    # cancelling a finished job changes nothing
    assert cancel_job(job_id)["status"] == "cancelled"


def test_dead_process_reads_as_failed(tmp_path):
    """A job whose process vanished without writing a result is reported as failed."""
    data = write_tiny_dataset(tmp_path / "tiny.jsonl", n=4)
    job_id = start_training_job(data, "toy_target", python="/bin/false")
    status = wait_for(job_id, timeout=30)
    assert status["status"] == "failed"
    assert "ended without reporting" in status["error"]
    # recorded, so a fresh look agrees
    assert json.loads((job_dir(job_id) / "status.json").read_text())["status"] == "failed"


def test_force_cancel_and_unknown_ids(tmp_path):
    data = write_tiny_dataset(tmp_path / "tiny.jsonl", n=4)
    job_id = start_training_job(data, "toy_target", python="/bin/sleep")  # argv: sleep -m ... fails
    status = cancel_job(job_id, force=True)
    assert status["status"] in ("cancelled", "failed")
    assert job_status("no-such-job")["status"] == "failed"
    assert "no job" in job_status("no-such-job")["error"]
    assert job_status("../etc")["status"] == "failed"
    with pytest.raises(FileNotFoundError):
        start_training_job(tmp_path / "missing.jsonl", "toy_target")


def test_env_home_is_isolated():
    assert "CRYSTAL_SCREEN_HOME" in os.environ
