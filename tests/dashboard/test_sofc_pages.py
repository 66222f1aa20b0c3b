"""Screen and Predict with fuel-cell materials: the SOFC library against GDC, calibration to
measured values, the disabled range mode, typed compositions on Predict."""

from __future__ import annotations

import importlib

import pandas as pd

from tests.dashboard.helpers import goto, texts

DELTA = "Δα (10⁻⁶ K⁻¹)"


def _frame(app, column: str) -> pd.DataFrame:
    return next(d.value for d in app.dataframe if column in d.value.columns)


def test_screen_ranks_the_sofc_library_against_gdc_with_a_heatmap(app, monkeypatch):
    real = importlib.import_module

    def no_physics(name, *args):
        if name == "engine.physics":
            raise ImportError("No module named 'engine.physics'")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", no_physics)
    goto(app, "screen")
    assert "AGL **volumetric**" in texts(app) or "volumetric" in texts(app)
    app.radio(key="screen_source").set_value("sofc").run()
    app.selectbox(key="screen_electrolyte").set_value("10GDC").run()
    next(b for b in app.button if b.label.startswith("Screen 13")).click().run()
    assert not app.exception, [e.value for e in app.exception]
    table = _frame(app, DELTA)
    assert "10GDC" not in set(table["id"])  # the electrolyte is the reference
    assert list(table["rank"]) == list(range(1, 13))
    assert table[DELTA].abs().is_monotonic_increasing
    assert "operating-range CTE disabled" in texts(app)
    heatmap = app.get("plotly_chart")[-1].proto.spec
    assert "Electrolyte (linear CTE ± σ, 10⁻⁶ K⁻¹)" in heatmap and "GDC" in heatmap

    # three measured candidates: the calibration is offered, plotted and applied
    app.session_state["screen_measured"] = {
        "edited_rows": {},
        "added_rows": [
            {"material": "LSCF6428", "linear CTE (10⁻⁶ K⁻¹)": 17.0},
            {"material": "8YSZ", "linear CTE (10⁻⁶ K⁻¹)": 10.5},
            {"material": "LSM20", "linear CTE (10⁻⁶ K⁻¹)": 11.8},
        ],
        "deleted_rows": [],
    }
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert any("leave-one-out" in m.value for m in app.markdown)
    app.checkbox(key="sofc_calibration_apply").check().run()
    assert not app.exception, [e.value for e in app.exception]
    table = _frame(app, DELTA)
    assert "calibrated" in set(table["CTE used is"]) and "measured" in set(table["CTE used is"])


def test_predict_takes_typed_compositions(app):
    goto(app, "predict")
    app.radio(key="predict_source").set_value("typed").run()
    app.text_area(key="predict_typed").set_value(
        "Ce0.9Gd0.1O1.95 as fluorite\nLSCF\nCeO2.5 as fluorite"
    ).run()
    assert not app.exception, [e.value for e in app.exception]
    errors = _frame(app, "file / entry")
    assert list(errors["file / entry"]) == ["CeO2.5 as fluorite"]
    assert "more oxygen" in errors["reason"].iloc[0]
    button = next(b for b in app.button if b.label.startswith("Predict 2 structure"))
    button.click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert set(_frame(app, "id")["id"]) == {"Ce0.9Gd0.1O1.95 as fluorite", "LSCF6428"}
    app.radio(key="predict_disorder_mode").set_value("orderings").run()
    next(b for b in app.button if b.label.startswith("Predict 2 structure")).click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert set(_frame(app, "id")["id"]) == {"Ce0.9Gd0.1O1.95 as fluorite", "LSCF6428"}


def test_screen_over_the_operating_range_with_a_physics_curve(app, monkeypatch):
    import sys
    import types

    import numpy as np

    fake = types.ModuleType("engine.physics")

    class ThermalSettings:
        def __init__(self, tmin=100.0, tmax=1300.0, tstep=10.0, **_):
            self.tmin, self.tmax, self.tstep = tmin, tmax, tstep

    def thermal_properties(structures, settings=None, *, progress=None):
        for s in structures:
            t = np.arange(settings.tmin, settings.tmax + 1e-9, settings.tstep)
            yield types.SimpleNamespace(
                id=s.id, status="ok", reason="", temperatures_K=t, alpha_V_per_K=2e-5 + 2e-8 * t
            )

    fake.ThermalSettings, fake.thermal_properties = ThermalSettings, thermal_properties
    monkeypatch.setitem(sys.modules, "engine.physics", fake)
    goto(app, "screen")
    app.radio(key="screen_source").set_value("sofc").run()
    app.selectbox(key="screen_electrolyte").set_value("10GDC").run()
    next(b for b in app.button if b.label.startswith("Screen 13")).click().run()
    app.checkbox(key="sofc_range_on").check().run()
    assert not app.exception, [e.value for e in app.exception]
    column = "mismatch_mean_25_800C (10⁻⁶ K⁻¹)"
    table = _frame(app, column)
    assert table[column].abs().is_monotonic_increasing and "10GDC" not in set(table["id"])
    assert any("Mean linear CTEs over 25–800 °C" in c.value for c in app.caption)
    assert app.get("plotly_chart"), "the mismatch heatmap is drawn"
