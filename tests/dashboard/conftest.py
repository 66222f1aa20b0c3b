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


def _train_tiny(
    data_dir: Path,
    model,
    name: str,
    epochs: int,
    target="agl_thermal_expansion_300K",
    dataset="perovskites.jsonl",
) -> Path:
    """Train ``model`` on a toy dataset and save it as the user model ``name``."""
    from engine import load_dataset
    from engine.core.config import SplitConfig, TrainConfig, user_model_dir
    from engine.training import train

    ds = load_dataset(data_dir / "toy" / dataset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train(
            ds,
            target,
            model=model,
            training=TrainConfig(epochs=epochs, batch_size=8),
            split=SplitConfig(kind="random", val_fraction=0.2, test_fraction=0.2),
            out=user_model_dir() / name,
            name=name,
        )
    return result.path


@pytest.fixture
def tiny_model(data_dir):
    """A CGCNN trained for 3 epochs on the toy dataset, saved as a user model ``tiny-cte``."""
    from engine.core.config import CGCNNConfig

    return _train_tiny(data_dir, CGCNNConfig(atom_fea_len=8, n_conv=1, h_fea_len=8), "tiny-cte", 3)


@pytest.fixture
def tiny_fusion(data_dir):
    """An attention-fusion model trained for 2 epochs on the toy dataset (``tiny-attention``)."""
    from engine.core.config import AttentionFusionConfig

    return _train_tiny(
        data_dir, AttentionFusionConfig(atom_fea_len=8, n_conv=1, h_fea_len=8), "tiny-attention", 2
    )


@pytest.fixture
def tiny_multitask(data_dir):
    """A multitask model (CTE and lattice parameter ``lattice_a``) trained for 2 epochs on a toy
    dataset with both columns (``tiny-multi``)."""
    from engine.core.config import MultitaskConfig

    write_dataset(data_dir / "toy" / "two-targets.jsonl", second_target=True)
    return _train_tiny(
        data_dir,
        MultitaskConfig(atom_fea_len=8, n_conv=1, h_fea_len=8),
        "tiny-multi",
        2,
        target=["agl_thermal_expansion_300K", "lattice_a"],
        dataset="two-targets.jsonl",
    )
