"""Fixtures of the dashboard tests: the app under AppTest, a data directory, a tiny model."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from tests.dashboard.helpers import APP, TIMEOUT, write_dataset


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """A data directory holding one small labelled dataset, ``toy/perovskites.jsonl``."""
    root = tmp_path / "data"
    (root / "toy").mkdir(parents=True)
    write_dataset(root / "toy" / "perovskites.jsonl")
    monkeypatch.setenv("CRYSTAL_SCREEN_DATA", str(root))
    return root


@pytest.fixture
def app():
    """A fresh AppTest of the router, already run once (Home)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def tiny_model(tmp_path, data_dir):
    """A CGCNN trained for 3 epochs on the toy dataset, saved as a user model ``tiny-cte``."""
    from engine import load_dataset
    from engine.config import CGCNNConfig, SplitConfig, TrainConfig, user_model_dir
    from engine.training import train

    ds = load_dataset(data_dir / "toy" / "perovskites.jsonl")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train(
            ds,
            "agl_thermal_expansion_300K",
            model=CGCNNConfig(atom_fea_len=8, n_conv=1, h_fea_len=8),
            training=TrainConfig(epochs=3, batch_size=8),
            split=SplitConfig(kind="random", val_fraction=0.2, test_fraction=0.2),
            out=user_model_dir() / "tiny-cte",
            name="tiny-cte",
        )
    return result.path


@pytest.fixture
def tiny_fusion(data_dir):
    """An attention-fusion model trained for 2 epochs on the toy dataset (``tiny-attention``)."""
    from engine import load_dataset
    from engine.config import SplitConfig, TrainConfig, user_model_dir
    from engine.training import train

    try:
        from engine.config import AttentionFusionConfig
    except ImportError:
        pytest.skip("the engine has no attention-fusion family")
    ds = load_dataset(data_dir / "toy" / "perovskites.jsonl")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train(
            ds,
            "agl_thermal_expansion_300K",
            model=AttentionFusionConfig(atom_fea_len=8, n_conv=1, h_fea_len=8),
            training=TrainConfig(epochs=2, batch_size=8),
            split=SplitConfig(kind="random", val_fraction=0.2, test_fraction=0.2),
            out=user_model_dir() / "tiny-attention",
            name="tiny-attention",
        )
    return result.path
