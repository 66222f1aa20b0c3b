"""Issue 12's rough edges: each test fails on the behaviour the issue reported."""

from __future__ import annotations

import pandas as pd

from tests.dashboard.helpers import goto, texts, use_dataset


def test_teaching_switch_is_kept_in_the_url_so_a_reload_keeps_it(app):
    app.toggle(key="teaching").set_value(True).run()
    assert app.query_params.get("teaching") in ("1", ["1"])
    goto(app, "data")
    assert app.query_params.get("teaching") in ("1", ["1"])
    app.toggle(key="teaching").set_value(False).run()
    assert "teaching" not in app.query_params


def test_sidebar_names_the_dataset_in_the_same_run_as_load_dataset(app, data_dir):
    goto(app, "data")
    form_button = next(b for b in app.button if b.label == "Load dataset")
    form_button.click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert any(
        c.value.startswith("Dataset: **toy/perovskites.jsonl**") for c in app.sidebar.caption
    )


def test_each_page_keeps_its_own_model(app):
    goto(app, "predict")
    picker = app.selectbox(key="predict_model")
    assert picker.value != "cte-attention-aflow-ens3"
    before = picker.value
    goto(app, "fusion")
    assert app.selectbox(key="fusion_model").value == "cte-attention-aflow-ens3"
    goto(app, "predict")
    assert app.selectbox(key="predict_model").value == before
    app.selectbox(key="predict_model").set_value("eform-cgcnn-mp").run()
    goto(app, "results")
    assert app.selectbox(key="results_model").value != "eform-cgcnn-mp"
    goto(app, "predict")
    assert app.selectbox(key="predict_model").value == "eform-cgcnn-mp"


def test_predict_prompt_keeps_the_capitals_of_cte_and_kelvin(app):
    goto(app, "predict")
    app.selectbox(key="predict_model").set_value("cte-cgcnn-aflow").run()
    assert "volumetric CTE at 300 K" in texts(app)
    assert "cte at 300 k" not in texts(app)


def test_colour_by_stays_with_the_plot_after_switching_method(app, tiny_model, data_dir):
    use_dataset(app, data_dir / "toy" / "perovskites.jsonl")
    app.session_state["model_name"] = "tiny-cte"
    goto(app, "embeddings")
    app.selectbox(key="emb_which").set_value("current").run()
    app.radio(key="emb_method").set_value("pca").run()
    next(b for b in app.button if b.label == "Compute map").click().run()
    app.selectbox(key="emb_colour").set_value("crystal system").run()
    app.radio(key="emb_method").set_value("tsne").run()  # waits for "Compute map"
    next(b for b in app.button if b.label == "Compute map").click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert app.selectbox(key="emb_colour").value == "crystal system"
    chart = app.get("plotly_chart")[-1].proto.spec
    assert '"legendgroup":"cubic"' in chart.replace(" ", "")


def test_epoch_axis_has_whole_number_ticks():
    from dashboard.components import plots

    history = pd.DataFrame(
        {"epoch": [1, 2, 3], "train_loss": [1.0, 0.5, 0.4], "val_loss": [1.1, 0.6, 0.5]}
    )
    axis = plots.learning_curves(history).layout.xaxis
    assert axis.dtick == 1 and axis.tick0 == 1 and axis.tickmode == "linear"
    long = pd.DataFrame({"epoch": range(1, 151), "train_loss": 1.0, "val_loss": 1.0})
    assert plots.learning_curves(long).layout.xaxis.dtick == 20


def test_crystal_systems_get_seven_distinct_colours():
    from dashboard.components import plots

    systems = list(plots.CRYSTAL_SYSTEM_COLOURS)
    frame = pd.DataFrame(
        {"x": range(7), "y": range(7), "id": systems, "formula": systems, "crystal system": systems}
    )
    fig = plots.embedding_scatter(
        frame, "crystal system", color_label="Crystal system", categorical=True
    )
    colours = {trace.name: trace.marker.color for trace in fig.data}
    assert len(set(colours.values())) == 7
    assert colours == plots.CRYSTAL_SYSTEM_COLOURS


def test_favicon_is_served_locally():
    from tests.dashboard.helpers import APP

    source = APP.read_text()
    assert "favicon.png" in source and ":material/hub:" not in source.split("page_icon")[1][:80]
    assert (APP.parent / "static" / "favicon.png").stat().st_size > 100


def test_predict_shows_linear_cte_and_sigma_first(app):
    goto(app, "predict")
    app.radio(key="predict_source").set_value("examples").run()
    app.selectbox(key="predict_model").set_value("cte-cgcnn-aflow").run()
    app.button(key="predict_go").click().run()
    assert not app.exception, [e.value for e in app.exception]
    table = next(d for d in app.dataframe if "formula" in d.value.columns)
    columns = list(table.value.columns)
    assert columns[:3] == ["formula", "≈ linear CTE (10⁻⁶ K⁻¹)", "± σ of linear CTE (10⁻⁶ K⁻¹)"]
    assert '"format":"%.2f"' in str(table.proto).replace(" ", "").replace("\\", "")


def test_a_cif_uploaded_on_predict_opens_on_structure_and_graph(app):
    from tests.dashboard.helpers import cif_bytes, perovskite

    goto(app, "predict")
    app.radio(key="predict_source").set_value("upload").run()
    cif = cif_bytes(perovskite("Ba", "Zr", 4.19), "BaZrO3")
    app.file_uploader(key="predict_upload").set_value([("BaZrO3.cif", cif, "chemical/x-cif")]).run()
    goto(app, "structure")
    assert app.radio(key="structure_source").value == "upload"
    picker = app.selectbox(key="structure_pick")
    assert len(picker.options) == 1 and "BaZrO3" in picker.options[0]
