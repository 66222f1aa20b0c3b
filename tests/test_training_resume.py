"""Resumable training: an interrupted run continued from its checkpoint equals an uninterrupted
one; a checkpoint of other settings or data is refused; a finished one trains nothing more."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from engine.core.config import CGCNNConfig, SplitConfig, TrainConfig
from engine.io.datasets import load_dataset
from engine.training import Callback, train
from engine.training.checkpoint import CheckpointMismatch

CTE = "agl_thermal_expansion_300K"
# dropout draws from torch's RNG, so a resume that lost the RNG state would differ
TINY = dict(
    model=CGCNNConfig(atom_fea_len=16, n_conv=2, h_fea_len=32, dropout=0.2),
    split=SplitConfig(seed=1),
)
CFG = TrainConfig(epochs=4, batch_size=16, seed=3, device="cpu", early_stopping_patience=2)


class Interrupt(Exception):
    pass


class StopAt(Callback):
    """Raises at the end of epoch ``epoch``, as a killed process would stop."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, trainer, record):
        if record["epoch"] == self.epoch:
            raise Interrupt


@pytest.fixture(scope="module")
def demo(shared_data):
    return load_dataset(shared_data / "aflow_agl" / "demo.jsonl.gz", limit=80)


@pytest.fixture(scope="module")
def uninterrupted(demo, tmp_path_factory):
    path = tmp_path_factory.mktemp("whole") / "ckpt.pt"
    return train(demo, CTE, training=CFG, checkpoint=path, **TINY), path


def _same_run(a, b):
    cols = [c for c in a.history.columns if c != "seconds"]
    pd.testing.assert_frame_equal(a.history[cols], b.history[cols])
    sa, sb = a.model.module.state_dict(), b.model.module.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.stop_reason == b.stop_reason


def test_interrupted_then_resumed_equals_uninterrupted(demo, uninterrupted, tmp_path):
    whole, _ = uninterrupted
    path = tmp_path / "ckpt.pt"
    with pytest.raises(Interrupt):  # epoch 3 is lost: the checkpoint holds epoch 2
        train(demo, CTE, training=CFG, checkpoint=path, callbacks=[StopAt(3)], **TINY)
    assert torch.load(path, weights_only=True)["epoch"] == 2
    resumed = train(demo, CTE, training=CFG, checkpoint=path, **TINY)
    assert list(resumed.history["epoch"]) == list(whole.history["epoch"])
    _same_run(whole, resumed)


def test_finished_checkpoint_trains_nothing_more(demo, uninterrupted):
    whole, path = uninterrupted
    stamp = path.stat().st_mtime_ns
    again = train(demo, CTE, training=CFG, checkpoint=path, **TINY)
    _same_run(whole, again)
    assert path.stat().st_mtime_ns == stamp  # no epoch ran, nothing was rewritten


def test_checkpoint_of_other_settings_or_data_is_refused(demo, uninterrupted):
    _, path = uninterrupted
    with pytest.raises(CheckpointMismatch, match="config"):
        train(demo, CTE, training=CFG.model_copy(update={"lr": 1e-3}), checkpoint=path, **TINY)
    with pytest.raises(CheckpointMismatch, match="data"):
        train(demo.subset(list(range(70))), CTE, training=CFG, checkpoint=path, **TINY)
    # another thread count (or device) is the same run
    moved = CFG.model_copy(update={"num_threads": torch.get_num_threads()})
    _same_run(uninterrupted[0], train(demo, CTE, training=moved, checkpoint=path, **TINY))


def test_resume_false_starts_afresh(demo, uninterrupted, tmp_path):
    whole, path = uninterrupted
    copy = tmp_path / "ckpt.pt"
    copy.write_bytes(path.read_bytes())
    fresh = train(
        demo,
        CTE,
        training=CFG.model_copy(update={"lr": 1e-3}),
        checkpoint=copy,
        resume=False,
        **TINY,
    )
    assert torch.load(copy, weights_only=True)["epoch"] == len(fresh.history)
