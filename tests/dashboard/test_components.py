"""Dashboard building blocks without a running app: units, uploads, plots, the 3D viewer."""

from __future__ import annotations

import io
import re
import zipfile

import numpy as np
import pandas as pd
import pytest

from dashboard.components import plots
from dashboard.components.units import display_for
from dashboard.components.viewer import (
    CDN_URL,
    VENDOR_JS,
    VENDOR_URL,
    VIEWER_OPTIONS,
    VIEWER_OPTIONS_ADAPTIVE,
    build_graph,
    viewer_html,
)
from dashboard.uploads import UploadError, save_upload
from tests.dashboard.helpers import cif_bytes, perovskite


def test_cte_is_shown_in_micro_per_kelvin():
    d = display_for("agl_thermal_expansion_300K")
    assert d.label == "Volumetric CTE at 300 K (10⁻⁶ K⁻¹)"
    assert d.scale(1.5e-5) == pytest.approx(15.0)
    assert d.fmt(3.9e-6) == "3.9 10⁻⁶ K⁻¹"
    e = display_for("e_form")
    assert (e.unit, e.factor) == ("eV/atom", 1.0)
    assert display_for("mystery", "").label == "mystery"


def test_every_plot_has_axis_titles_with_units():
    d = display_for("agl_thermal_expansion_300K")
    frame = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "formula": ["X", "Y", "Z"],
            "target": [1e-5, 2e-5, 3e-5],
            "prediction": [1.1e-5, 1.9e-5, 3.2e-5],
            "split": ["val", "test", "test"],
        }
    )
    frame["error"] = frame["prediction"] - frame["target"]
    history = pd.DataFrame(
        {
            "epoch": [1, 2],
            "train_loss": [1.0, 0.5],
            "val_loss": [1.2, 0.7],
            "train_mae": [1e-5, 5e-6],
            "val_mae": [1.2e-5, 7e-6],
        }
    )
    figures = [
        plots.histogram(frame["target"], d),
        plots.parity(frame, d),
        plots.residuals(frame, d),
        plots.learning_curves(history),
        plots.mae_curves(history, d),
        plots.gaussian_expansion(np.arange(0, 8.2, 0.2), np.zeros(41), 2.8, width=0.2),
        plots.coordination_hist(pd.Series([6, 12, 12]), 12),
        plots.embedding_scatter(
            frame.assign(x=[0, 1, 2], y=[2, 1, 0]), "prediction", color_label="p", categorical=False
        ),
        plots.weight_hist(pd.Series([0.2, 0.3, 0.4])),
        plots.weight_vs_error(frame.assign(w_comp=[0.2, 0.3, 0.4]), d),
        plots.element_bar(pd.DataFrame({"element": ["O"], "structures": [3]})),
    ]
    for fig in figures:
        x, y = fig.layout.xaxis.title.text, fig.layout.yaxis.title.text
        assert x and y, fig
    assert "10⁻⁶ K⁻¹" in figures[1].layout.xaxis.title.text
    assert "(Å)" in figures[5].layout.xaxis.title.text
    # hover and selection carry the id and formula
    assert list(figures[1].data[0].customdata[0]) == ["a", "X"]


def test_viewer_draws_cell_images_and_edges():
    from engine import GraphConfig

    s = perovskite()
    graph = build_graph(s, GraphConfig(), cutoff=3.0, max_neighbors=12)
    assert graph.within.tolist() == [12, 6, 14, 14, 14]
    html = viewer_html(s, graph, highlight_edge=0)
    # offline viewer: the vendored script, never a CDN (vendor it with `bash dashboard/vendor.sh`)
    assert VENDOR_JS.is_file() and VENDOR_JS.stat().st_size > 100_000, VENDOR_JS
    assert f"loadScriptAsync('{VENDOR_URL}')" in html
    assert CDN_URL not in html
    assert not re.search(r"https?://", html), "the view fetches something from the web"
    assert html.count("addCylinder") > 10  # edges
    assert "opacity" in html  # translucent periodic-image atoms
    assert html.count("addLine") == 12  # the unit-cell box
    # antialiasing decided in the browser (off where WebGL is drawn in software)
    assert "function softwareWebGL()" in html
    assert VIEWER_OPTIONS_ADAPTIVE in html and VIEWER_OPTIONS not in html
    table = graph.table(s)
    assert {"in cell"} < set(table["image (a, b, c)"])


def test_save_upload_plain_labelled_zip_and_traversal(tmp_path):
    one = save_upload([("a.cif", cif_bytes(perovskite(), "a"))], root=tmp_path)
    assert one.is_dir() and (one / "a.cif").is_file()
    jsonl = save_upload([("set.jsonl", b'{"x": 1}\n')], root=tmp_path)
    assert jsonl.name == "set.jsonl"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("d/a.cif", cif_bytes(perovskite(), "a"))
        zf.writestr("d/id_prop.csv", "a,1\n")
        zf.writestr("../../escape.cif", b"x")
        zf.writestr("/abs.cif", b"x")
    root = save_upload([("d.zip", buf.getvalue())], root=tmp_path)
    assert (root / "id_prop.csv").is_file() and root.name == "d"
    assert not list(tmp_path.rglob("escape.cif")) and not list(tmp_path.rglob("abs.cif"))
    # a zip without labels stays whole for the engine's archive reader
    plain = io.BytesIO()
    with zipfile.ZipFile(plain, "w") as zf:
        zf.writestr("a.cif", cif_bytes(perovskite(), "a"))
    assert (save_upload([("p.zip", plain.getvalue())], root=tmp_path) / "p.zip").is_file()
    with pytest.raises(UploadError):
        save_upload([], root=tmp_path)
