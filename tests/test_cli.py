"""The command line, in the exact forms other tools depend on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.apps.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
CTE = "agl_thermal_expansion_300K"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def trained(shared_data, tmp_path_factory):
    """A tiny model trained through the CLI on 100 rows of the demo set."""
    out = tmp_path_factory.mktemp("cli") / "tiny-cte"
    code = main(
        [
            "train",
            "--data",
            str(shared_data / "aflow_agl" / "demo.jsonl.gz"),
            "--target",
            CTE,
            "--out",
            str(out),
            "--epochs",
            "2",
            "--seed",
            "1",
            "--limit",
            "100",
            "--atom-fea-len",
            "16",
            "--n-conv",
            "1",
            "--quiet",
        ]
    )
    assert code == 0
    return out


def test_train_writes_a_model_directory(trained):
    card = json.loads((trained / "model.json").read_text())
    assert card["target"] == CTE and card["unit"] == "1/K" and card["name"] == "tiny-cte"
    assert card["training"]["epochs"] == 2 and card["dataset"]["size"] == 100


def test_predict_prints_a_table_and_lists_bad_files(trained, shared_data, tmp_path, capsys):
    sample = shared_data / "cgcnn_sample"
    (tmp_path / "good.cif").write_text((sample / "1000041.cif").read_text())
    (tmp_path / "broken.cif").write_text("data_x\n_cell_length_a 3\n")
    assert main(["predict", "--model", str(trained), "--input", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "good" in out and f"{CTE} (1/K)" in out
    assert "broken.cif" in err


def test_predict_writes_csv(trained, shared_data, tmp_path):
    out = tmp_path / "pred.csv"
    assert (
        main(
            [
                "predict",
                "--model",
                str(trained),
                "--input",
                str(shared_data / "cgcnn_sample"),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    lines = out.read_text().splitlines()
    assert len(lines) == 11 and lines[0].startswith("id,formula,n_sites,")


def test_predict_with_nothing_readable_fails_without_traceback(trained, tmp_path):
    (tmp_path / "junk.cif").write_text("this is not a crystal")
    result = _cli("predict", "--model", str(trained), "--input", str(tmp_path / "junk.cif"))
    assert result.returncode != 0
    assert "junk.cif" in result.stderr and "Traceback" not in result.stderr


def test_evaluate_json_last_line(trained, shared_data, capsys):
    code = main(
        [
            "evaluate",
            "--model",
            str(trained),
            "--data",
            str(shared_data / "aflow_agl" / "demo.jsonl.gz"),
            "--target",
            CTE,
            "--limit",
            "30",
            "--json",
        ]
    )
    assert code == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    metrics = json.loads(last)
    assert set(metrics) == {"n", "mae", "rmse", "r", "r2"} and metrics["n"] == 30
    assert 0 < metrics["mae"] < 1e-3


def test_models_json_lists_pretrained_and_user_models(trained, capsys, monkeypatch):
    import shutil

    from engine.core.config import user_model_dir

    shutil.copytree(trained, user_model_dir() / "tiny-cte")
    assert main(["models", "--json"]) == 0
    models = json.loads(capsys.readouterr().out)
    by_name = {m["name"]: m for m in models}
    assert by_name["tiny-cte"]["source"] == "user" and by_name["tiny-cte"]["unit"] == "1/K"
    original = by_name["cgcnn-original/formation-energy-per-atom"]
    assert original["source"] == "cgcnn-original" and original["unit"] == "eV/atom"
    assert all({"name", "target", "unit", "source"} <= set(m) for m in models)


@pytest.mark.parametrize(
    "args, message",
    [
        (["predict", "--model", "no-such-model", "--input", "x.cif"], "no-such-model"),
        (
            [
                "evaluate",
                "--model",
                "cgcnn-original/band-gap",
                "--data",
                "/nonexistent/data.jsonl",
                "--target",
                "y",
            ],
            "/nonexistent/data.jsonl",
        ),
        (
            [
                "train",
                "--data",
                "/nonexistent.jsonl",
                "--target",
                "y",
                "--out",
                "/tmp/x",
                "--model",
                "megnet",
            ],
            "megnet",
        ),
    ],
)
def test_errors_are_one_clear_line(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_unknown_target_names_the_available_columns(shared_data, tmp_path, capsys):
    code = main(
        [
            "train",
            "--data",
            str(shared_data / "aflow_agl" / "demo.jsonl.gz"),
            "--target",
            "cte",
            "--out",
            str(tmp_path / "m"),
            "--limit",
            "20",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "'cte'" in err and CTE in err


def test_train_checkpoint_resumes_and_refuses_other_settings(shared_data, tmp_path, capsys):
    """``--checkpoint``: a finished run is not trained again (same history); another learning
    rate on the same checkpoint is refused with one error line, no traceback."""
    ckpt = tmp_path / "run.ckpt"
    args = [
        "train",
        "--data",
        str(shared_data / "aflow_agl" / "demo.jsonl.gz"),
        "--target",
        CTE,
        "--epochs",
        "2",
        "--limit",
        "60",
        "--atom-fea-len",
        "8",
        "--n-conv",
        "1",
        "--quiet",
        "--checkpoint",
        str(ckpt),
    ]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0 and ckpt.is_file()
    first = (tmp_path / "a" / "history.csv").read_text()
    assert main([*args, "--out", str(tmp_path / "b")]) == 0  # resumed: already finished
    assert (tmp_path / "b" / "history.csv").read_text() == first
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "c"), "--lr", "0.01"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "config" in err and "Traceback" not in err
