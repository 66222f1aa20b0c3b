"""Every dashboard page under Streamlit's AppTest: renders without exception, main widgets work.

The data comes from a small labelled dataset written in code (an isolated data directory), the
shipped SOFC examples and, where noted, the shared data directory (skipped when absent).
"""

from __future__ import annotations

import io
import re
import time
import zipfile

import pandas as pd
import pytest

from tests.dashboard.helpers import (
    cif_bytes,
    goto,
    perovskite,
    plotly_values,
    texts,
    use_dataset,
    wait_job,
    write_dataset,
)

CTE = "agl_thermal_expansion_300K"


def frame_with(app, column: str):
    """The first table on the page that has ``column``."""
    return next(d.value for d in app.dataframe if column in d.value.columns)


def test_home_lists_models_and_teaching_notes(app):
    assert "Crystal-graph screening" in texts(app)
    table = app.dataframe[0].value
    assert "cgcnn-original/formation-energy-per-atom" in set(table["model"])
    app.toggle(key="teaching").set_value(True).run()
    assert not app.exception
    assert any("gated graph convolution" in e.label for e in app.expander)
    assert app.latex, "eq. 1 is shown as LaTeX"


def test_home_plots_the_thermal_expansion_models_against_published_results(app):
    import plotly.io as pio

    from engine import list_models

    (chart,) = [c for c in app.get("plotly_chart") if "published results" in c.proto.spec]
    fig = pio.from_json(chart.proto.spec)
    bars = {label: mae for trace in fig.data for label, mae in zip(trace.y, plotly_values(trace.x))}
    shipped = {
        m["name"]: m["metrics"]["test"]["mae"]
        for m in list_models()
        if m["target"] == "agl_thermal_expansion_300K" and m["source"] == "shipped"
    }
    assert shipped and all(bars[name] == pytest.approx(mae * 1e6) for name, mae in shipped.items())
    assert bars["Roost (composition only) (CrabNet's 724 test formulas)"] == pytest.approx(3.69)
    assert fig.layout.xaxis.title.text == "Test MAE (10⁻⁶ K⁻¹)"
    assert {t.name for t in fig.data} == {
        "shipped model (our test split)",
        "published (another test set)",
    }


def test_every_page_renders_without_data(app):
    for page in (
        "data",
        "structure",
        "train",
        "results",
        "embeddings",
        "fusion",
        "predict",
        "screen",
    ):
        goto(app, page)


def test_data_upload_keeps_good_files_and_lists_bad_ones(app):
    goto(app, "data")
    files = [
        ("SrTiO3.cif", cif_bytes(perovskite(), "SrTiO3"), "chemical/x-cif"),
        ("BaZrO3.cif", cif_bytes(perovskite("Ba", "Zr", 4.19), "BaZrO3"), "chemical/x-cif"),
        ("broken.cif", b"data_broken\n_cell_length_a 4\nthis is not a cif\n", "chemical/x-cif"),
        ("notes.txt", b"hello", "text/plain"),
    ]
    app.file_uploader(key="data_upload").set_value(files).run()
    assert not app.exception, [e.value for e in app.exception]
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Structures loaded"] == "2"
    assert int(metrics["Entries that failed"]) >= 2
    errors = app.dataframe[0].value
    assert {"broken.cif", "notes.txt"} <= {
        s.split("/")[-1].split(" ")[0] for s in errors["file / entry"]
    }
    table = app.dataframe[1].value
    assert sorted(table["formula"]) == ["BaZrO3", "SrTiO3"]
    assert set(table["space group"]) == {"Pm-3m"}
    assert (table["density (g/cm³)"] > 4).all()


def test_data_labelled_zip_upload(app):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("set/a.cif", cif_bytes(perovskite(), "a"))
        zf.writestr("set/b.cif", cif_bytes(perovskite("Ba", "Zr", 4.19), "b"))
        zf.writestr("set/id_prop.csv", "a,1.5e-5\nb,2.5e-5\nc,3e-5\n")
        zf.writestr("../evil.cif", b"nope")
    goto(app, "data")
    app.file_uploader(key="data_upload").set_value(
        ("set.zip", buf.getvalue(), "application/zip")
    ).run()
    assert not app.exception, [e.value for e in app.exception]
    assert {m.label: m.value for m in app.metric}["Structures loaded"] == "2"
    assert app.selectbox(key="data_target").value == "target"
    assert "no structure found for id 'c'" in app.dataframe[0].value["reason"].iloc[0]


def test_data_directory_dataset_with_target(app, data_dir):
    app.run()  # pick up the test's data directory
    goto(app, "data")
    form_select = app.selectbox[0]
    assert form_select.value == "toy/perovskites.jsonl"
    app.button[0].click().run()  # "Load dataset" (the form's submit button)
    assert not app.exception, [e.value for e in app.exception]
    assert {m.label: m.value for m in app.metric}["Structures loaded"] == "36"
    assert app.selectbox(key="data_target").value == CTE
    columns = list(app.dataframe[0].value.columns)
    assert "Volumetric CTE at 300 K (10⁻⁶ K⁻¹)" in columns


def test_data_shared_cgcnn_sample(app, shared_data):
    sample = shared_data / "cgcnn_sample"
    if not sample.is_dir():
        pytest.skip(f"{sample} is absent")
    use_dataset(app, sample, "cgcnn_sample")
    goto(app, "data")
    assert {m.label: m.value for m in app.metric}["Structures loaded"] == "10"


def test_structure_page_graph_and_warnings(app):
    app.session_state["structure_id"] = "SrTiO3_perovskite"
    goto(app, "structure")  # no dataset: the SOFC examples
    assert "SOFC examples" in texts(app)
    assert app.session_state["structure_id"] == "SrTiO3_perovskite"
    sliders = {s.label: s for s in app.slider}
    sliders["Cutoff radius (Å)"].set_value(3.0).run()
    assert not app.exception
    assert "under-coordinated" in texts(app)
    edges = app.dataframe[1].value
    # within 3 Å: Sr has 12 O (2.76 Å), Ti 6 O (1.95 Å), each O 2 Ti + 4 Sr + 8 O (capped at 12)
    assert len(edges) == 12 + 6 + 3 * 12
    coordination = app.dataframe[0].value
    assert dict(zip(coordination["site"], coordination["within cutoff"]))["Ti1"] == 6
    sliders = {s.label: s for s in app.slider}
    sliders["Cutoff radius (Å)"].set_value(1.5).run()
    assert "no neighbour" in texts(app)
    assert "No edges" in texts(app)


def _highlighted_edge(app) -> str:
    """The 3D view's highlighted (pink) edge, as drawn."""
    html = str(app.get("iframe")[0].proto)
    found = re.findall(r"addCylinder\((.*?ff1493.*?)\);", html)
    assert len(found) == 1, found
    return found[0]


def test_structure_page_edge_choice(app, data_dir):
    use_dataset(app, data_dir / "toy" / "perovskites.jsonl")
    goto(app, "structure")
    first = _highlighted_edge(app)
    app.number_input[0].set_value(5).run()
    assert not app.exception
    specs = [e.proto.spec for e in app.get("plotly_chart")]
    assert any("Edge 5" in spec for spec in specs)
    assert any("Gaussian centre" in spec for spec in specs)
    # the 3D view, drawn before the table and the edge box, follows the choice
    fifth = _highlighted_edge(app)
    assert fifth != first
    app.number_input[0].set_value(0).run()
    assert _highlighted_edge(app) == first


def test_train_page_runs_cancel_and_failure(app, data_dir):
    from engine.apps.jobs.training import job_progress, start_training_job
    from engine.core.config import TrainConfig

    path = data_dir / "toy" / "perovskites.jsonl"
    use_dataset(app, path)
    goto(app, "train")
    assert app.selectbox(key="train_target").value == CTE
    assert "cgcnn" in app.selectbox(key="train_family").options
    # small, long run, started from the form
    app.number_input(key="model_cgcnn.atom_fea_len").set_value(8)
    app.number_input(key="model_cgcnn.h_fea_len").set_value(8)
    app.number_input(key="model_cgcnn.n_conv").set_value(1)
    app.number_input(key="training.epochs").set_value(400)
    app.number_input(key="training.batch_size").set_value(4)
    app.number_input(key="training.early_stopping_patience").set_value(0)
    start = next(b for b in app.button if b.label == "Start training")
    start.click().run()
    assert not app.exception, [e.value for e in app.exception]
    job_id = app.session_state["job_id"]
    assert job_id, texts(app)
    assert "Started run" in texts(app)

    deadline = time.time() + 120
    while job_progress(job_id).epoch < 1 and time.time() < deadline:
        time.sleep(0.3)
    app.run()
    assert "epoch" in texts(app) or app.get("progress")
    # the table, the selector and the panel agree on the state (JobState)
    runs = frame_with(app, "status")
    assert runs.loc[runs["run"] == job_id, "status"].item() == "running"
    assert app.selectbox(key="job_pick").value == job_id
    assert any(o.endswith("(running)") for o in app.selectbox(key="job_pick").options)
    cancelled_at = time.time()
    next(b for b in app.button if b.label == "Cancel").click().run()
    assert not app.exception
    status = wait_job(job_id)
    assert status.state == "cancelled"
    assert time.time() - cancelled_at < 30  # inside the epoch, not after 400 of them
    app.run()
    assert not app.exception
    assert "Cancelled" in texts(app)
    runs = frame_with(app, "status")
    assert runs.loc[runs["run"] == job_id, "status"].item() == "cancelled"
    assert any(o.endswith("(cancelled)") for o in app.selectbox(key="job_pick").options)
    assert not any(o.endswith("(running)") for o in app.selectbox(key="job_pick").options)

    # a run that crashes (bad target) is listed as failed, with its reason
    bad = start_training_job(path, "no_such_target", training=TrainConfig(epochs=1))
    assert wait_job(bad).state == "failed"
    app.session_state["job_id"] = bad
    app.run()
    assert not app.exception
    page = texts(app)
    assert "The run failed" in page and "no_such_target" in page
    overview = app.dataframe[0].value
    assert set(overview["status"]) == {"cancelled", "failed"}


def test_train_page_hyperparameter_search_job(app, data_dir):
    use_dataset(app, data_dir / "toy" / "perovskites.jsonl")
    goto(app, "train")
    app.number_input(key="model_cgcnn.h_fea_len").set_value(8)
    app.number_input(key="training.epochs").set_value(1)
    app.number_input(key="training.batch_size").set_value(8)
    app.checkbox(key="search_on").check()
    app.multiselect(key="search_atom_fea_len").set_value([32])
    app.multiselect(key="search_n_conv").set_value([2, 3])
    app.multiselect(key="search_h_fea_len").set_value([64])
    app.multiselect(key="search_lr").set_value([1e-3])
    app.number_input(key="search_trials").set_value(5)
    next(b for b in app.button if b.label == "Start training").click().run()
    assert not app.exception, [e.value for e in app.exception]
    job_id = app.session_state["job_id"]
    status = wait_job(job_id)
    assert status.state == "finished", status
    assert "best of 2 trials" in status.stop_reason
    app.run()
    page = texts(app)
    assert "Finished after 2 trials" in page
    trials = frame_with(app, "n_conv")
    assert sorted(trials["n_conv"]) == [2, 3] and len(trials) == 2


def test_results_page_metrics_and_compare(app, tiny_model):
    app.session_state["model_name"] = "tiny-cte"
    goto(app, "results")
    assert app.selectbox(key="results_model").value == "tiny-cte"
    metrics = app.dataframe[0].value
    assert list(metrics["split"]) == ["train", "validation", "test"]
    assert "MAE (10⁻⁶ K⁻¹)" in metrics.columns
    calibration = frame_with(app, "within 1σ")
    assert list(calibration["split"]) == ["validation", "test"]
    assert any("Calibration of σ" in str(c.proto.spec) for c in app.get("plotly_chart"))
    labels = [b.label for b in app.download_button]
    assert "Download predictions (CSV)" in labels
    assert "Download the model directory (zip)" in labels
    app.checkbox(key="results_compare").check().run()
    assert not app.exception, [e.value for e in app.exception]
    assert len(app.dataframe) >= 2


def test_results_page_picks_each_target_of_a_multitask_model(app, tiny_multitask):
    app.session_state["model_name"] = "tiny-multi"
    goto(app, "results")
    picker = app.selectbox(key="task_a")
    assert picker.options == ["Volumetric CTE at 300 K", "lattice_a"]
    assert "MAE (10⁻⁶ K⁻¹)" in app.dataframe[0].value.columns
    picker.set_value("lattice_a").run()
    assert not app.exception, [e.value for e in app.exception]
    metrics = app.dataframe[0].value
    assert "MAE" in metrics.columns and list(metrics["split"]) == ["train", "validation", "test"]
    assert 1e-3 < float(metrics["MAE"].iloc[0]) < 5.0  # an error in Å, not the CTE's (~1e-6)


def test_train_page_multitask_needs_a_second_target(app, data_dir):
    write_dataset(data_dir / "toy" / "two.jsonl", second_target=True)
    use_dataset(app, data_dir / "toy" / "two.jsonl")
    goto(app, "train")
    app.selectbox(key="train_family").set_value("multitask").run()
    assert app.multiselect(key="train_more_targets").options == ["lattice_a"]
    assert "Pick at least one other target" in texts(app)
    next(b for b in app.button if b.label == "Start training").click().run()
    assert "learns several targets" in texts(app) and not app.session_state["job_id"]


def test_embeddings_page_map_and_colours(app, tiny_model, data_dir, monkeypatch):
    use_dataset(app, data_dir / "toy" / "perovskites.jsonl")
    app.session_state["model_name"] = "tiny-cte"
    goto(app, "embeddings")
    which = app.selectbox(key="emb_which")
    assert which.options[0].startswith("Test set of tiny-cte")  # the model's own test split
    which.set_value("current").run()
    next(b for b in app.button if b.label == "Compute map").click().run()
    assert not app.exception, [e.value for e in app.exception]
    colour = app.selectbox(key="emb_colour")
    labels = " | ".join(colour.options)
    for text in (
        "Predicted Volumetric CTE",
        "True Volumetric CTE",
        "Error",
        "Crystal system",
        "Contains an element",
    ):
        assert text in labels
    for option in ("target", "crystal system", "element"):
        app.selectbox(key="emb_colour").set_value(option).run()
        assert not app.exception, (option, [e.value for e in app.exception])
    # pooled vectors are kept on disk: after a restart (memory caches cleared) a new map
    # reuses them instead of passing the structures through the model again
    import streamlit as st

    import engine.inference.prediction as prediction
    from dashboard.caches import cache_dir

    assert len(list(cache_dir().glob("*.npz"))) == 1
    st.cache_resource.clear()
    for name in ("embed", "embed_and_predict"):
        monkeypatch.setattr(prediction, name, lambda *a, **k: pytest.fail("vectors recomputed"))
    app.radio(key="emb_method").set_value("pca").run()
    next(b for b in app.button if b.label == "Compute map").click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert any("Map computed" in c.value for c in app.caption)


def test_embeddings_reuse_saved_predictions_and_find_systems_on_demand(
    app, tiny_model, data_dir, monkeypatch
):
    """The model's own test set is coloured by its saved predictions (the model runs for the
    vectors only), and spglib runs only when the map is coloured by crystal system."""
    import engine.inference.explain as explain
    import engine.inference.prediction as prediction

    calls = []
    real_symmetry = explain.symmetry
    monkeypatch.setattr(explain, "symmetry", lambda s: calls.append(1) or real_symmetry(s))
    monkeypatch.setattr(
        prediction, "embed_and_predict", lambda *a, **k: pytest.fail("predictions recomputed")
    )
    app.session_state["model_name"] = "tiny-cte"
    goto(app, "embeddings")
    assert app.selectbox(key="emb_which").value == "test"
    next(b for b in app.button if b.label == "Compute map").click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert not calls  # no crystal systems until asked for
    saved = pd.read_csv(tiny_model / "predictions.csv").query("split == 'test'")
    chart = app.get("plotly_chart")[0].proto.spec
    assert f"{len(saved)} structures" in chart
    app.selectbox(key="emb_colour").set_value("crystal system").run()
    assert not app.exception, [e.value for e in app.exception]
    assert len(calls) == len(saved)
    app.selectbox(key="emb_colour").set_value("prediction").run()
    app.selectbox(key="emb_colour").set_value("crystal system").run()
    assert len(calls) == len(saved)  # kept, not found again


def test_fusion_page_says_what_it_needs(app, tmp_path, monkeypatch):
    import engine.catalog.names
    import engine.core.config

    for module in (engine.core.config, engine.catalog.names):  # no shipped fusion model either
        monkeypatch.setattr(module, "shipped_model_dir", lambda: tmp_path)
    goto(app, "fusion")
    assert "needs a fusion model" in texts(app)


def test_fusion_page_on_the_shipped_attention_ensemble(app):
    goto(app, "fusion")
    assert app.selectbox(key="fusion_model").value == "cte-attention-aflow-ens3"
    assert not app.exception, [e.value for e in app.exception]
    table = frame_with(app, "w_comp")
    assert len(table) > 500 and ((table["w_comp"] >= 0) & (table["w_comp"] <= 1)).all()
    assert "Polymorph pairs" in texts(app)


def test_fusion_page_weights_and_contributions(app, tiny_fusion, data_dir):
    use_dataset(app, data_dir / "toy" / "perovskites.jsonl")
    app.session_state["model_name"] = "tiny-attention"
    goto(app, "fusion")
    assert app.selectbox(key="fusion_model").value == "tiny-attention"
    metrics = {m.label: float(m.value) for m in app.metric if m.label.startswith("Mean")}
    assert sum(metrics.values()) == pytest.approx(1.0, abs=0.02)
    table = frame_with(app, "w_comp")
    assert {"w_comp", "w_graph", "formula"} <= set(table.columns)
    app.radio(key="fusion_source").set_value("current").run()
    assert not app.exception, [e.value for e in app.exception]
    # the toy perovskites repeat each formula with other lattice parameters: polymorph pairs
    pairs = frame_with(app, "id_b")
    assert len(pairs) > 0 and (pairs["id_a"] != pairs["id_b"]).all()
    assert any(c.startswith("delta_target") for c in pairs.columns)
    assert any("Polymorphs" in str(c.proto.spec) for c in app.get("plotly_chart"))
    assert not any("crystal system" in str(c.proto.spec) for c in app.get("plotly_chart"))
    app.button(key="fusion_find_systems").click().run()
    assert any("crystal system" in str(c.proto.spec) for c in app.get("plotly_chart"))
    app.radio(key="fusion_source").set_value("examples").run()
    assert not app.exception, [e.value for e in app.exception]
    assert len(frame_with(app, "w_comp")) == 15  # the SOFC examples
    app.button(key="fusion_contrib").click().run()
    assert not app.exception, [e.value for e in app.exception]
    parts = frame_with(app, "part")
    assert list(parts["part"]) == ["composition", "structure"]


def test_fusion_page_finds_crystal_systems_only_when_asked(app, tiny_fusion, monkeypatch):
    """The first visit shows the weights and polymorph pairs without reading the training
    structures or running spglib; the button does both, and the chart then stays."""
    import pymatgen.symmetry.analyzer as analyzer

    from dashboard import state

    calls = {"spglib": 0, "training dataset": 0}

    class CountedAnalyzer(analyzer.SpacegroupAnalyzer):
        def __init__(self, *args, **kwargs):
            calls["spglib"] += 1
            super().__init__(*args, **kwargs)

    def counted_training_dataset(card, read=state.training_dataset):
        calls["training dataset"] += 1
        return read(card)

    monkeypatch.setattr(analyzer, "SpacegroupAnalyzer", CountedAnalyzer)
    monkeypatch.setattr(state, "training_dataset", counted_training_dataset)

    def system_charts() -> int:
        return sum("crystal system" in str(c.proto.spec) for c in app.get("plotly_chart"))

    app.session_state["model_name"] = "tiny-attention"
    goto(app, "fusion")
    assert app.radio(key="fusion_source").value == "saved"
    n = len(frame_with(app, "w_comp"))
    assert calls == {"spglib": 0, "training dataset": 0}
    assert system_charts() == 0 and "Polymorph pairs" in texts(app)
    button = app.button(key="fusion_find_systems")
    assert button.label == f"Find the crystal systems of {n} structures (spglib)"

    button.click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert calls == {"spglib": n, "training dataset": 1}
    assert system_charts() == 1
    app.run()
    goto(app, "home")
    goto(app, "fusion")
    assert calls == {"spglib": n, "training dataset": 1}  # found once, shown again from the cache
    assert system_charts() == 1
    assert not [b for b in app.button if b.key == "fusion_find_systems"]


def test_predict_examples_and_upload(app):
    goto(app, "predict")
    app.radio(key="predict_source").set_value("examples").run()
    next(b for b in app.button if b.label.startswith("Predict 15")).click().run()
    assert not app.exception, [e.value for e in app.exception]
    table = app.dataframe[0].value
    assert len(table) == 15 and "CeO2" in set(table["formula"])
    values = table.filter(like="Predicted").iloc[:, 0]
    assert values.is_monotonic_decreasing
    assert app.download_button[0].label == "Download predictions (CSV)"

    app.radio(key="predict_source").set_value("upload").run()
    app.file_uploader(key="predict_upload").set_value(
        [
            ("SrTiO3.cif", cif_bytes(perovskite(), "s"), "chemical/x-cif"),
            ("bad.cif", b"garbage", "chemical/x-cif"),
        ]
    ).run()
    assert "bad.cif" in app.dataframe[0].value["file / entry"].iloc[0]
    next(b for b in app.button if b.label.startswith("Predict 1 ")).click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert list(app.dataframe[1].value["formula"]) == ["SrTiO3"]


def test_screen_page_ranks_filters_exports_reloads_and_maps(app):
    import numpy as np

    from engine.apps.screening.ranking import read_screen_csv, screen
    from engine.materials.examples import EXAMPLES_DIR

    goto(app, "screen")
    app.radio(key="screen_source").set_value("examples").run()
    app.selectbox(key="screen_electrolyte").set_value("CeO2").run()
    app.multiselect(key="screen_exclude").set_value(["Ni"]).run()
    next(b for b in app.button if b.label.startswith("Screen 15")).click().run()
    assert not app.exception, [e.value for e in app.exception]
    delta = "Δα (10⁻⁶ K⁻¹)"
    table = frame_with(app, delta)
    # Ni, NiO and LaNiO3 excluded; the electrolyte CeO2 is the reference, not ranked
    assert list(table["rank"]) == list(range(1, 12))
    assert not {"Ni", "NiO", "LaNiO3", "CeO2"} & set(table["formula"])
    assert table[delta].abs().is_monotonic_increasing
    linear = table["Linear CTE α_V/3 (10⁻⁶ K⁻¹)"]
    assert np.allclose(linear, table["Predicted volumetric CTE (10⁻⁶ K⁻¹)"] / 3)
    assert (table["σ of Δα (10⁻⁶ K⁻¹)"] > 0).all()
    assert set(table["domain"]) <= {"in-domain", "borderline", "out-of-domain"}
    labels = [b.label for b in app.download_button]
    assert "Download the ranked table (CSV, values in 1/K)" in labels
    heatmap = app.get("plotly_chart")[0].proto.spec
    assert "Electrolyte (linear CTE ± σ, 10⁻⁶ K⁻¹)" in heatmap and "ZrO2" in heatmap
    assert "Δα = %{z:+.2f} ± %{customdata:.2f}" in heatmap  # σ in every cell's hover

    # a typed, measured electrolyte re-ranks without predicting again
    app.radio(key="screen_electrolyte_by").set_value("value").run()
    app.text_input(key="screen_electrolyte_name").set_value("YSZ").run()
    app.number_input(key="screen_electrolyte_value").set_value(10.5).run()
    assert not app.exception, [e.value for e in app.exception]
    table = frame_with(app, delta)
    used = table["Linear CTE used (10⁻⁶ K⁻¹)"]
    assert np.allclose(table[delta], used - 10.5)
    assert table[delta].abs().is_monotonic_increasing
    assert any(
        m.label.startswith("Electrolyte YSZ") and m.value == "10.50 ± 0.00" for m in app.metric
    )

    # uploaded candidates: the bad file is listed with its reason, the good one screened
    app.radio(key="screen_source").set_value("upload").run()
    app.file_uploader(key="screen_upload").set_value(
        [
            ("SrTiO3.cif", cif_bytes(perovskite(), "s"), "chemical/x-cif"),
            ("bad.cif", b"garbage", "chemical/x-cif"),
        ]
    ).run()
    next(b for b in app.button if b.label.startswith("Screen ")).click().run()
    assert not app.exception, [e.value for e in app.exception]
    errors = frame_with(app, "file / entry")
    assert list(errors["file / entry"]) == ["bad.cif"]
    assert list(frame_with(app, delta)["formula"]) == ["SrTiO3"]

    # an exported table reloads as the same candidates
    exported = screen(str(EXAMPLES_DIR), "YSZ=10.5e-6", "cte-cgcnn-aflow")
    buf = io.StringIO()
    exported.table.to_csv(buf, index=False)
    assert read_screen_csv(io.StringIO(buf.getvalue())).equals(exported.table)
    app.multiselect(key="screen_exclude").set_value([])
    app.radio(key="screen_source").set_value("reload").run()
    app.file_uploader(key="screen_reload").set_value(
        ("ranked.csv", buf.getvalue().encode(), "text/csv")
    ).run()
    assert not app.exception, [e.value for e in app.exception]
    table = frame_with(app, delta)
    assert list(table["id"]) == list(exported.table.loc[exported.table["passes"], "id"])
    assert np.allclose(table[delta], exported.table["mismatch_per_K"] * 1e6, atol=1e-9)


def test_results_page_reads_the_models_card_without_loading_its_weights(
    app, tiny_model, monkeypatch
):
    from dashboard import state

    loaded = []
    monkeypatch.setattr(state, "load_model", lambda ref: loaded.append(ref))
    app.session_state["model_name"] = "tiny-cte"
    goto(app, "results")
    assert app.selectbox(key="results_model").value == "tiny-cte"
    assert "MAE (10⁻⁶ K⁻¹)" in app.dataframe[0].value.columns
    assert loaded == []
