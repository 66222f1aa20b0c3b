"""The Predict page shows σ, the domain flag and the nearest training crystals."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd

from engine.core.config import user_model_dir
from tests.dashboard.helpers import goto, texts

FLAGS = {"in-domain", "borderline", "out-of-domain"}


def _predict_examples(app, model: str = "tiny-cte"):
    app.session_state["model_name"] = model
    goto(app, "predict")
    app.radio(key="predict_source").set_value("examples").run()
    next(b for b in app.button if b.label.startswith("Predict 15")).click().run()
    assert not app.exception, [e.value for e in app.exception]
    return app.dataframe[0].value


def test_predict_page_shows_sigma_domain_and_neighbours(app, tiny_model):
    table = _predict_examples(app)
    assert len(table) == 15
    sigma = table["± σ (10⁻⁶ K⁻¹)"]
    assert (sigma > 0).all()
    np.testing.assert_allclose(table["± σ of linear CTE (10⁻⁶ K⁻¹)"], sigma / 3)
    assert set(table["domain"]) <= FLAGS and table["domain distance"].notna().all()
    assert "Domain" in texts(app) and "within 1σ" in texts(app)

    picker = app.selectbox(key="predict_neighbours_of")
    assert len(picker.options) == 15
    picker.set_value(table["id"].iloc[3]).run()
    assert not app.exception, [e.value for e in app.exception]
    near = app.dataframe[1].value
    assert list(near["rank"]) == [1, 2, 3, 4, 5] and near["distance"].is_monotonic_increasing
    with np.load(tiny_model / "domain.npz", allow_pickle=False) as raw:
        training_ids = set(raw["ids"])
    held_out = set(pd.read_csv(tiny_model / "predictions.csv")["id"])  # val and test
    assert set(near["id"]) <= training_ids and not set(near["id"]) & held_out
    assert near.filter(like="Training Volumetric CTE").notna().all().all()


def test_predict_page_model_without_domain(app, tiny_model):
    old = user_model_dir() / "tiny-old"
    shutil.copytree(tiny_model, old)
    (old / "domain.npz").unlink()
    card = json.loads((old / "model.json").read_text())
    del card["uncertainty"]
    card["name"] = "tiny-old"
    (old / "model.json").write_text(json.dumps(card))
    table = _predict_examples(app, "tiny-old")
    assert set(table["domain"]) == {"unknown"}
    assert "python -m engine calibrate tiny-old" in texts(app)


def test_predict_page_has_a_column_per_target_of_a_multitask_model(app, tiny_multitask):
    table = _predict_examples(app, "tiny-multi")
    assert table["Predicted lattice_a"].notna().all()
    assert (table["± σ of lattice_a"] > 0).all()
    assert table["Predicted Volumetric CTE at 300 K (10⁻⁶ K⁻¹)"].notna().all()
