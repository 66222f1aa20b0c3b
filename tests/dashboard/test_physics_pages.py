"""The physics estimate on the Predict and Structure pages (CHGNet; skipped without chgnet)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.dashboard.helpers import goto, texts

pytest.importorskip("chgnet")


def test_alpha_curve_axes_have_units():
    from dashboard.components.physics import alpha_curve
    from engine.physics import ThermalResult

    result = ThermalResult(
        id="x",
        status="ok",
        reason="",
        temperatures_K=np.array([100.0, 110.0]),
        alpha_V_per_K=np.array([2e-5, 2.1e-5]),
        cte_vol_300K_per_K=3e-5,
        debye_temperature_K=500.0,
        bulk_modulus_GPa=150.0,
        bulk_modulus_derivative=4.5,
        gruneisen=2.1,
        volume_A3=60.0,
        relaxed_volume_change=None,
        potential="CHGNet 0.3.0",
    )
    fig = alpha_curve(result, (3.2e-5, 0.4e-5))
    assert fig.layout.xaxis.title.text == "Temperature (K)"
    assert fig.layout.yaxis.title.text == "α_V (1/K)"
    assert list(fig.data[1].error_y.array) == [0.4e-5] and list(fig.data[1].x) == [300.0]


def test_predict_physics_background_job_and_curve(app):
    from engine.apps.jobs.physics import thermal_job

    goto(app, "predict")
    app.radio(key="predict_source").set_value("examples").run()
    next(b for b in app.button if b.label.startswith("Predict 15")).click().run()
    app.toggle(key="predict_physics_on").set_value(True).run()
    assert not app.exception, [e.value for e in app.exception]
    next(
        b for b in app.button if b.label.startswith("Start the physics estimate for 15")
    ).click().run()
    (entry,) = app.session_state["predict_physics_runs"].values()
    deadline = time.time() + 240
    while thermal_job(entry["job"])[0]["status"] == "running" and time.time() < deadline:
        time.sleep(1)
    status, results = thermal_job(entry["job"])
    assert status["status"] == "done" and len(results) == 15, status
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    table = next(d.value for d in app.dataframe if "α_V 300 K (10⁻⁶ K⁻¹)" in d.value.columns)
    assert len(table) == 15 and table["learned 300 K (10⁻⁶ K⁻¹)"].notna().all()
    assert (table["status"] == "ok").sum() >= 13
    assert len(app.get("plotly_chart")) >= 1


def test_structure_page_shows_the_relaxed_cell(app):
    goto(app, "structure")
    next(b for b in app.button if b.label == "Relax with CHGNet").click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert "Volume change on relaxing" in texts(app)
    cells = next(d.value for d in app.dataframe if "cell" in d.value.columns)
    assert list(cells["cell"]) == ["input", "relaxed"]


def test_predict_with_a_physics_input_model_computes_its_inputs(app):
    """A ``cgcnn-physics`` model on Predict gets CHGNet inputs (not the graph alone), as
    ``python -m engine predict`` does; the rows that fell back say so."""
    from dashboard.state import examples_dataset
    from engine import DisorderSettings, load_model, predict_structures

    name = "cte-cgcnn-physics-aflow-ens5"
    app.session_state["model_name"] = name
    goto(app, "predict")
    assert "this page computes them with CHGNet" in texts(app)
    app.radio(key="predict_source").set_value("examples").run()
    next(b for b in app.button if b.label.startswith("Predict 15")).click().run()
    assert not app.exception, [e.value for e in app.exception]
    shown = app.dataframe[0].value
    assert len(shown) == 15 and shown["physics used"].sum() >= 13
    # the inputs change the numbers: the same crystals from the graph alone differ
    used = app.session_state["predict_result"]["table"]
    alone = predict_structures(load_model(name), examples_dataset().items, DisorderSettings()).table
    assert not alone["physics_used"].any()
    rows = used.merge(alone, on="id", suffixes=("", "_alone")).query("physics_used")
    assert len(rows) >= 13 and (abs(rows["prediction"] - rows["prediction_alone"]) > 1e-9).all()
