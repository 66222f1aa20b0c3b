"""Background jobs: runs that finish, fail or are cancelled (cleanly, at once, or killed after
the grace period), the typed status on disk (also in the format of older versions), and the
physics jobs' shared launcher."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import psutil
import pytest

from engine.apps.jobs import launcher
from engine.apps.jobs.physics import physics_jobs_dir, start_thermal_job, thermal_job
from engine.apps.jobs.schema import JobProgress, JobState, JobStatus, read_status, update_status
from engine.apps.jobs.training import (
    cancel_job,
    delete_job,
    job_dir,
    job_progress,
    job_request,
    job_status,
    jobs_dir,
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
#: Epochs no test waits for: a job this long only ends by being cancelled.
ENDLESS = TrainConfig(epochs=500, batch_size=4, early_stopping_patience=None)


def _gone(pid: int, timeout: float = 5.0) -> bool:
    """Whether process ``pid`` has ended (a zombie counts as ended) within ``timeout`` s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def _wait_running(job_id: str, *, epochs: int = 0, timeout: float = 120) -> JobStatus:
    """The status once the job runs and has completed ``epochs`` epochs."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = job_status(job_id)
        assert status.state.active, (status, read_log(job_id))
        if status.state == JobState.RUNNING and status.epoch >= epochs:
            return status
        time.sleep(0.2)
    raise AssertionError(f"{job_id} did not start: {read_log(job_id)}")


@pytest.mark.slow
def test_job_runs_to_finished_and_saves_model(tmp_path):
    data = write_dataset(tmp_path / "tiny.jsonl")
    job_id = start_training_job(
        data, TARGET, training=TrainConfig(epochs=3, batch_size=8), name="tiny-model", **SMALL
    )
    assert job_status(job_id).state in (JobState.QUEUED, JobState.RUNNING, JobState.FINISHED)
    assert job_request(job_id).targets == [TARGET]
    status = wait_job(job_id)
    assert status.state == JobState.FINISHED, (status, read_log(job_id))
    assert status.error is None and status.ended >= status.started >= status.created
    assert Path(status.model_path) == user_model_dir() / "tiny-model"
    assert (user_model_dir() / "tiny-model" / "model.json").is_file()
    assert set(status.metrics) >= {"train", "val", "test"}
    progress = job_progress(job_id)
    assert progress.epoch == status.epoch == 3 and len(progress.history) == 3
    assert [j.id for j in list_jobs()] == [job_id]
    assert _gone(status.pid)  # the state is recorded just before the process exits
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
        data,
        [TARGET, "lattice_a"],
        model=MultitaskConfig(atom_fea_len=8, n_conv=1, h_fea_len=8),
        training=TrainConfig(epochs=2, batch_size=8),
        split=SMALL["split"],
        name="tiny-multi",
    )
    status = wait_job(job_id)
    assert status.state == JobState.FINISHED, (status, read_log(job_id))
    assert status.target == TARGET and status.targets == [TARGET, "lattice_a"]
    assert "lattice_a/mae" in status.metrics["val"]
    card = read_card(user_model_dir() / "tiny-multi")
    assert card.task_targets == [TARGET, "lattice_a"] and card.model["n_tasks"] == 2


@pytest.mark.slow
def test_bad_target_fails_with_the_error(tmp_path):
    data = write_dataset(tmp_path / "tiny.jsonl", n=12)
    job_id = start_training_job(data, "no_such_column", training=TrainConfig(epochs=1), **SMALL)
    status = wait_job(job_id)
    assert status.state == JobState.FAILED
    assert status.error.startswith("ValueError: target 'no_such_column'")
    assert TARGET in status.error and status.ended is not None
    assert "Traceback" in read_log(job_id, lines=200)
    assert read_status(job_dir(job_id)).state == JobState.FAILED  # recorded, not inferred


@pytest.mark.slow
def test_cancel_stops_a_running_epoch_and_saves_the_best(tmp_path):
    data = write_dataset(tmp_path / "tiny.jsonl")
    job_id = start_training_job(data, TARGET, name="to-cancel", training=ENDLESS, **SMALL)
    running = _wait_running(job_id, epochs=1)
    assert launcher.alive(running.pid, running.pid_created)
    start = time.time()
    status = cancel_job(job_id)
    # SIGTERM → the cancel flag → the epoch ends at the next batch, the best epoch is saved
    assert time.time() - start < 15, read_log(job_id)
    assert status.state == JobState.CANCELLED, (status, read_log(job_id))
    assert _gone(running.pid, timeout=0.5)
    assert status.stop_reason == "cancelled by user" and 1 <= status.epoch < 500
    assert (user_model_dir() / "to-cancel" / "weights.pt").is_file()
    assert status.model_path and status.metrics
    # cancelling a finished job changes nothing; it can be deleted now, not before
    assert cancel_job(job_id) == status
    delete_job(job_id)
    assert not job_dir(job_id).exists()


@pytest.mark.slow
def test_force_cancel_kills_a_running_job(tmp_path):
    data = write_dataset(tmp_path / "tiny.jsonl")
    job_id = start_training_job(data, TARGET, name="to-kill", training=ENDLESS, **SMALL)
    running = _wait_running(job_id)
    with pytest.raises(ValueError, match="still running"):
        delete_job(job_id)
    start = time.time()
    status = cancel_job(job_id, force=True)
    assert time.time() - start < 8
    assert _gone(running.pid, timeout=0.5)
    assert status.state == JobState.CANCELLED
    assert status.stop_reason == "stopped at once by user (nothing saved)"
    assert not (user_model_dir() / "to-kill" / "model.json").exists()
    assert job_status(job_id) == status  # recorded: a fresh look agrees


def test_cancel_kills_a_worker_that_ignores_sigterm(tmp_path):
    """SIGTERM, then SIGKILL to the worker and its children after the grace period."""
    data = write_dataset(tmp_path / "tiny.jsonl", n=4)
    stubborn = tmp_path / "stubborn"
    stubborn.write_text("#!/bin/sh\ntrap '' TERM\nsleep 120 &\nwait\n")
    stubborn.chmod(0o755)
    job_id = start_training_job(data, TARGET, python=str(stubborn))
    status = job_status(job_id)
    assert status.state == JobState.QUEUED and launcher.alive(status.pid, status.pid_created)
    deadline = time.time() + 10
    while not psutil.Process(status.pid).children() and time.time() < deadline:
        time.sleep(0.05)
    (child,) = psutil.Process(status.pid).children()
    start = time.time()
    final = cancel_job(job_id, grace_s=1.0)
    assert 1.0 <= time.time() - start < 8
    assert _gone(status.pid, timeout=0.5) and _gone(child.pid)
    assert final.state == JobState.CANCELLED
    assert final.stop_reason == "cancelled by user; killed after 1 s (nothing saved)"


def test_sigterm_and_the_cancel_file_end_an_epoch_between_batches(tmp_path):
    """SIGTERM in the worker creates the cancel file; ProgressFile then ends the epoch at the
    next batch (the training loop breaks on ``stop_reason``)."""
    import signal
    from types import SimpleNamespace

    from engine.apps.jobs.worker import cancel_handler
    from engine.training import ProgressFile

    trainer = SimpleNamespace(stop_reason=None)
    progress = ProgressFile(tmp_path)
    progress.on_batch_end(trainer)
    assert trainer.stop_reason is None
    cancel_handler(tmp_path)(signal.SIGTERM, None)
    assert (tmp_path / "cancel").is_file()
    time.sleep(0.6)  # ProgressFile looks for the file at most every 0.5 s
    progress.on_batch_end(trainer)
    assert trainer.stop_reason == "cancelled by user"


def test_dead_process_reads_as_failed(tmp_path):
    """A job whose process vanished without writing a result is reported as failed."""
    data = write_dataset(tmp_path / "tiny.jsonl", n=4)
    job_id = start_training_job(data, TARGET, python="/bin/false")
    status = wait_job(job_id, timeout=30)
    assert status.state == JobState.FAILED
    assert "ended without reporting" in status.error
    # recorded, so a fresh look agrees
    assert json.loads((job_dir(job_id) / "status.json").read_text())["state"] == "failed"


def test_status_round_trips_through_the_schema(tmp_path):
    directory = tmp_path / "job"
    directory.mkdir()
    status = JobStatus(
        id="20250101-000000-abcdef",
        state="finished",
        name="m",
        target=TARGET,
        targets=[TARGET],
        dataset="/data/x.jsonl",
        family="cgcnn",
        created="2025-01-01T00:00:00+00:00",
        started="2025-01-01T00:00:05+00:00",
        ended="2025-01-01T00:01:00+00:00",
        pid=1234,
        pid_created=1735689605.25,
        epoch=3,
        epochs=3,
        error=None,
        stop_reason="early stopping",
        model_path="/models/m",
        metrics={"val": {"mae": 1e-6, "r": 0.9, "n": 7}, "test": {"mae": None}},
    )
    assert update_status(directory, **status.model_dump()) == status
    assert read_status(directory) == status
    assert JobStatus.model_validate_json((directory / "status.json").read_text()) == status
    moved = update_status(directory, state=JobState.CANCELLED)
    assert (
        moved.state == JobState.CANCELLED
        and moved.model_copy(update={"state": status.state}) == status
    )
    assert (
        JobProgress.model_validate({"epoch": 2, "history": [{}, {}], "status": "running"}).epoch
        == 2
    )  # progress.json has extra keys


def test_old_format_status_file_is_read():
    """A status.json of the previous version: ``status`` with ``done``, no ``targets``."""
    directory = jobs_dir() / "20240101-120000-a1b2c3"
    directory.mkdir(parents=True)
    (directory / "status.json").write_text(
        json.dumps(
            {
                "id": directory.name,
                "kind": "train",
                "status": "done",
                "name": "old-model",
                "target": TARGET,
                "dataset": "/data/old.jsonl",
                "family": "cgcnn",
                "created": "2024-01-01T12:00:00+00:00",
                "pid": 999999999,
                "started": "2024-01-01T12:00:01+00:00",
                "ended": "2024-01-01T12:05:00+00:00",
                "stop_reason": "early stopping",
                "model_path": "/models/old-model",
                "error": None,
                "metrics": {"val": {"mae": 2e-6, "r": 0.8}},
            }
        )
    )
    (directory / "progress.json").write_text(
        json.dumps({"status": "finishing", "epoch": 40, "epochs": 100, "history": [], "updated": 0})
    )
    status = job_status(directory.name)
    assert status.state == JobState.FINISHED and status.targets == [TARGET]
    assert status.epoch == 40 and status.epochs == 100 and status.metrics["val"]["mae"] == 2e-6
    assert [j.id for j in list_jobs()] == [directory.name]
    # an old job that claims to run while its process is gone reads as failed
    (directory / "status.json").write_text(
        json.dumps(
            {
                "id": directory.name,
                "status": "running",
                "pid": 999999999,
                "created": "2024-01-01T12:00:00+00:00",
            }
        )
    )
    assert job_status(directory.name).state == JobState.FAILED


def test_unknown_and_invalid_ids(tmp_path):
    assert job_status("no-such-job").state == JobState.FAILED
    assert "no job" in job_status("no-such-job").error
    assert job_status("../etc").state == JobState.FAILED
    assert job_request("no-such-job") is None
    assert cancel_job("no-such-job").state == JobState.FAILED
    with pytest.raises(FileNotFoundError):
        start_training_job(tmp_path / "missing.jsonl", TARGET)


def test_physics_job_whose_process_dies_reads_as_failed():
    job = start_thermal_job([], python="/bin/false")
    deadline = time.time() + 30
    while thermal_job(job)[0]["status"] == "running" and time.time() < deadline:
        time.sleep(0.2)
    status, results = thermal_job(job)
    assert status["status"] == "failed" and "ended without reporting" in status["error"]
    assert results == [] and status["pid_created"] is not None
    assert (physics_jobs_dir() / job / "log.txt").exists()


def test_a_job_trains_on_the_cores_the_dashboard_leaves_free(monkeypatch):
    from engine.apps.jobs.activity import job_threads

    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.setenv("CRYSTAL_SCREEN_THREADS", "8")  # what the dashboard took (half)
    assert job_threads() == 8
    monkeypatch.delenv("CRYSTAL_SCREEN_THREADS")
    assert job_threads() == 15
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setenv("CRYSTAL_SCREEN_THREADS", "2")
    assert job_threads() == 1


def test_a_job_trains_on_every_core_while_the_dashboard_is_idle(monkeypatch):
    from engine.apps.jobs.activity import dashboard_busy, note_dashboard_activity, threads_now
    from engine.core.config import home_dir

    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.setenv("CRYSTAL_SCREEN_THREADS", "2")
    assert not dashboard_busy() and threads_now() == 4  # no dashboard at all
    note_dashboard_activity(1)  # a page runs
    assert dashboard_busy() and threads_now() == 2
    note_dashboard_activity(0)  # it just ended
    assert dashboard_busy(quiet_s=5)

    def age(seconds):
        then = time.time() - seconds
        os.utime(home_dir() / "dashboard-activity", (then, then))

    age(60)
    assert not dashboard_busy(quiet_s=5) and threads_now() == 4
    note_dashboard_activity(1)
    age(60)
    assert dashboard_busy(quiet_s=5)  # a long page still runs
    age(3600)
    assert not dashboard_busy(quiet_s=5)  # stale: its dashboard stopped during a page


def test_adaptive_threads_applies_the_count_between_batches_at_most_every_check():
    import torch

    from engine.training.callbacks import AdaptiveThreads

    before = torch.get_num_threads()
    asked = []
    callback = AdaptiveThreads(lambda: asked.append(1) or 1, check_s=60)
    try:
        torch.set_num_threads(2)
        callback.on_train_start(None)
        assert torch.get_num_threads() == 1 and len(asked) == 1
        callback.on_batch_end(None)  # within check_s: not asked again
        assert len(asked) == 1
    finally:
        torch.set_num_threads(before)


def test_an_unwritable_home_does_not_stop_the_dashboard_noting_its_activity(monkeypatch, tmp_path):
    from engine.apps.jobs.activity import dashboard_busy, note_dashboard_activity

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("CRYSTAL_SCREEN_HOME", str(blocker / "home"))
    note_dashboard_activity(1)  # no error: the home folder cannot be made
    assert not dashboard_busy()
