"""Transfer learning in training: ``TrainConfig.init_from`` and ``TrainConfig.freeze``."""

from __future__ import annotations

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
from engine.io.datasets import load_dataset
from engine.training import train

CTE = "agl_thermal_expansion_300K"
TINY = CGCNNConfig(atom_fea_len=16, n_conv=2, h_fea_len=32)
TRUNK = ("embedding.", "convs.")


@pytest.fixture(scope="module")
def small_demo(shared_data):
    return load_dataset(shared_data / "aflow_agl" / "demo.jsonl.gz", limit=80)


@pytest.fixture(scope="module")
def source(small_demo, tmp_path_factory):
    """A tiny CGCNN 'pretrained' on the Debye temperature."""
    out = tmp_path_factory.mktemp("pre") / "debye"
    train(
        small_demo,
        "agl_debye",
        model=TINY,
        split=SplitConfig(seed=1),
        out=out,
        training=TrainConfig(epochs=2, batch_size=16, device="cpu", seed=3),
    )
    return out


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "batch_size": 16, "device": "cpu", "seed": 4, **kw})


def test_frozen_trunk_keeps_the_pretrained_weights_and_the_head_trains(small_demo, source):
    pre = load_model(source).module.state_dict()
    result = train(
        small_demo,
        CTE,
        model=TINY,
        split=SplitConfig(seed=1),
        training=_cfg(init_from=str(source), freeze=TRUNK),
    )
    after = result.model.module.state_dict()
    trunk = [k for k, p in result.model.module.named_parameters() if k.startswith(TRUNK)]
    assert trunk and all(torch.equal(after[k], pre[k]) for k in trunk)
    assert not torch.equal(after["fc_out.weight"], pre["fc_out.weight"])
    record = result.model.card.fitted["transfer"]
    assert record["init_from"] == str(source)
    assert record["transferred"] == len(pre) and record["not_transferred"] == []
    assert record["frozen"] == len(trunk)
    assert result.model.card.training.freeze == TRUNK


def test_fine_tuning_starts_from_the_source_and_changes_every_weight(small_demo, source):
    pre = load_model(source).module.state_dict()
    result = train(
        small_demo, CTE, model=TINY, split=SplitConfig(seed=1), training=_cfg(init_from=str(source))
    )
    after = result.model.module.state_dict()
    assert not torch.equal(after["convs.0.fc_full.weight"], pre["convs.0.fc_full.weight"])
    assert "frozen" not in result.model.card.fitted["transfer"]


def test_a_head_of_another_shape_is_left_fresh(small_demo, source):
    model = CGCNNPhysicsConfig(atom_fea_len=16, n_conv=2, h_fea_len=32)
    result = train(
        small_demo,
        CTE,
        model=model,
        split=SplitConfig(seed=1),
        training=_cfg(init_from=str(source), epochs=1),
    )
    record = result.model.card.fitted["transfer"]
    assert "conv_to_fc.weight" in record["not_transferred"]
    assert record["transferred"] > 0


def test_transfer_refuses_other_graph_settings_and_unknown_prefixes(small_demo, source):
    with pytest.raises(ValueError, match="graph settings"):
        train(
            small_demo,
            CTE,
            model=TINY,
            graph=GraphConfig(cutoff=6.0),
            training=_cfg(init_from=str(source), epochs=1),
        )
    with pytest.raises(ValueError, match="no parameter name starts with 'trunk.'"):
        train(small_demo, CTE, model=TINY, training=_cfg(freeze=("trunk.",), epochs=1))
