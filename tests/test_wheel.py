"""The built wheel installs into a fresh virtual environment and works outside the repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Not copied into the build tree: environments, VCS data, build leftovers and caches.
IGNORED = shutil.ignore_patterns(
    ".venv",
    ".git",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    "node_modules",
    "runs",
    ".cache",
)

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict]:
    """A fresh venv with the wheel installed (--no-deps); dependencies come from this
    environment's site-packages through a .pth path line (which does not run this environment's
    editable-install hook, so ``engine`` can only come from the wheel)."""
    pytest.importorskip("build", reason="needs the 'build' package (test extra)")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=IGNORED)  # builds never touch the checkout
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    _run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(tmp / "dist"),
            str(src),
        ],
        cwd=tmp,
        env=env,
    )
    wheel = next((tmp / "dist").glob("crystal_screen-*.whl"))
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp, env=env)
    py = venv / "bin" / "python"
    purelib = _run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        cwd=tmp,
        env=env,
    ).stdout.strip()
    Path(purelib, "_shared_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ],
        cwd=tmp,
        env=env,
    )
    env["CRYSTAL_SCREEN_HOME"] = str(tmp / "home")
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    return venv, {"env": env, "cwd": elsewhere, "wheel": wheel}


def test_wheel_holds_models_examples_and_dashboard(installed):
    names = zipfile.ZipFile(installed[1]["wheel"]).namelist()
    shipped = {
        p.relative_to(ROOT / "assets").as_posix()
        for p in (ROOT / "assets").rglob("*")
        if p.is_file()
    }
    assert {
        n.removeprefix("engine/_assets/") for n in names if n.startswith("engine/_assets/")
    } == shipped
    assert {
        "dashboard/app.py",
        "dashboard/launch.py",
        "dashboard/streamlit_config.toml",
        "engine/io/optimade.py",
    } <= set(names)


def test_engine_comes_from_the_wheel(installed):
    venv, ctx = installed
    out = _run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import engine, dashboard; print(engine.__file__); print(dashboard.__file__)",
        ],
        **{k: ctx[k] for k in ("cwd", "env")},
    ).stdout.split()
    assert all(Path(p).is_relative_to(venv) for p in out), out


def test_console_script_models_json(installed):
    venv, ctx = installed
    out = _run(
        [str(venv / "bin" / "crystal-screen"), "models", "--json"], cwd=ctx["cwd"], env=ctx["env"]
    ).stdout
    models = {m["name"]: m for m in json.loads(out)}
    assert models["cte-alignn-aflow"]["source"] == "shipped"
    assert Path(models["cte-alignn-aflow"]["path"]).is_relative_to(venv)


def test_console_script_predicts_from_another_folder(installed):
    venv, ctx = installed
    cif = ctx["cwd"] / "x.cif"
    shutil.copy(ROOT / "assets" / "examples" / "CeO2_fluorite.cif", cif)
    proc = _run(
        [
            str(venv / "bin" / "crystal-screen"),
            "predict",
            "--model",
            "cte-alignn-aflow",
            "--input",
            "x.cif",
            "--output",
            "out.csv",
        ],
        cwd=ctx["cwd"],
        env=ctx["env"],
    )
    assert "wrote 1 prediction to out.csv" in proc.stdout
    row = (ctx["cwd"] / "out.csv").read_text().splitlines()
    assert row[0].startswith("id,formula,n_sites,agl_thermal_expansion_300K (1/K)")
    value = float(row[1].split(",")[3])
    assert 1e-5 < value < 1e-4  # CeO2: volumetric CTE of a few 10⁻⁵ 1/K


def test_console_script_starts_the_dashboard(installed):
    import time

    import requests

    from tests.optimade_server import free_port

    venv, ctx = installed
    port = free_port()
    proc = subprocess.Popen(
        [
            str(venv / "bin" / "crystal-screen"),
            "dashboard",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
        ],
        cwd=ctx["cwd"],
        env=ctx["env"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline, health = time.monotonic() + 120, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = requests.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.5)
        assert health is not None and health.text == "ok", "the dashboard did not start"
        page = requests.get(f"http://127.0.0.1:{port}/app/static/README.md", timeout=5)
        assert page.status_code == 200  # static serving is on: the packaged config was used
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
