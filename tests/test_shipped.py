"""The models shipped in assets/models: load by name, carry σ and a domain flag, stay small."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.apps.cli.main import main
from engine.catalog.names import load_model
from engine.core.config import shipped_model_dir
from engine.inference.prediction import predict
from engine.materials.examples import EXAMPLES_DIR
from engine.store.card import read_card

SHIPPED = sorted(p.name for p in shipped_model_dir().iterdir() if (p / "model.json").is_file())
MAX_BYTES = 50 * 2**20  # the limit on assets/models


def test_shipped_models_fit_the_size_limit():
    size = sum(p.stat().st_size for p in shipped_model_dir().rglob("*") if p.is_file())
    assert SHIPPED and size < MAX_BYTES, f"{size / 2**20:.1f} MiB"


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_predicts_with_sigma_and_domain(name):
    card = read_card(shipped_model_dir() / name)
    assert card.source == "shipped" and card.description
    assert card.metrics["test"]["n"] > 0 and card.dataset.split is not None
    assert card.uncertainty is not None, "shipped models carry a fitted σ and domain"
    model = load_model(name)  # by name, as the CLI and the dashboard do
    table = predict(model, str(EXAMPLES_DIR)).table
    assert len(table) == 15 and np.isfinite(table["prediction"]).all()
    assert (table["prediction_std"] > 0).all()
    assert set(table["domain"]) <= {"in-domain", "borderline", "out-of-domain"}


def test_models_json_lists_every_shipped_model_with_targets_and_units(capsys):
    assert main(["models", "--json"]) == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    for name in SHIPPED:
        assert listed[name]["source"] == "shipped"
        assert listed[name]["targets"] and len(listed[name]["units"]) == len(
            listed[name]["targets"]
        )
