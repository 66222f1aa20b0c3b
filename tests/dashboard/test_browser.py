"""The main path in a real browser: start the dashboard, upload a CIF, see a prediction.

Needs Chromium (``bash .ci/browser-deps``) and the ``playwright`` package; skipped otherwise.
With ``DASHBOARD_SCREENSHOTS=1`` it also saves a screenshot of every page to
``docs/screenshots/`` (the same as ``python -m dashboard.screenshots``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.dashboard.helpers import cif_bytes, perovskite

pytestmark = pytest.mark.browser


def _chromium() -> str:
    from dashboard.screenshots import CHROMIUM

    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip("Chromium is not installed (run `bash .ci/browser-deps`)")
    return CHROMIUM


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    _chromium()
    from dashboard.screenshots import dashboard_server

    home = tmp_path_factory.mktemp("browser-home")
    with dashboard_server(env={"CRYSTAL_SCREEN_HOME": str(home)}) as url:
        yield url


@pytest.fixture(scope="module")
def page(server):
    from dashboard.screenshots import browser_page

    with browser_page(1280, 1000) as p:
        yield p


def test_upload_cif_and_see_prediction(server, page, tmp_path):
    from dashboard.screenshots import wait_idle

    cif = tmp_path / "SrTiO3.cif"
    cif.write_bytes(cif_bytes(perovskite(), "SrTiO3"))
    page.goto(f"{server}/predict")
    wait_idle(page)
    page.locator('input[type="file"]').first.set_input_files(str(cif))
    button = page.get_by_role("button", name="Predict 1 structure(s)")
    button.wait_for(timeout=60_000)
    wait_idle(page)
    button.click()
    page.get_by_text("1 prediction", exact=True).wait_for(timeout=120_000)
    wait_idle(page)
    assert page.get_by_text("Download predictions (CSV)").count() == 1
    body = page.inner_text("body")
    assert "Traceback" not in body and "Error" not in body.split("Predict", 1)[0]


def test_structure_view_loads_3dmol_offline(server, page):
    from dashboard.components.viewer import VENDOR_JS
    from dashboard.screenshots import wait_idle

    if not VENDOR_JS.is_file():
        pytest.skip("3Dmol.js is not vendored (run `bash dashboard/vendor.sh`)")
    page.goto(f"{server}/structure")
    wait_idle(page)
    frame = page.frame_locator("iframe").first
    frame.locator("canvas").first.wait_for(timeout=30_000)
    assert frame.get_by_text("3Dmol.js failed to load").count() == 0
    # headless chromium draws WebGL in software (SwiftShader): the view is drawn without
    # multisampling there, which cost about 1 s a view
    software, antialias = frame.locator("canvas").first.evaluate(
        "() => [softwareWebGL(), window[Object.keys(window).find(k => k.startsWith('viewer_'))]"
        ".renderer.context.getContextAttributes().antialias]"
    )
    assert software is True and antialias is False


@pytest.mark.skipif(
    not os.environ.get("DASHBOARD_SCREENSHOTS"),
    reason="set DASHBOARD_SCREENSHOTS=1 to refresh docs/screenshots",
)
def test_screenshots_of_every_page(server, page):
    from dashboard.screenshots import OUT_DIR, PAGES, capture
    from engine.core.config import data_dir

    root = data_dir()
    with_data = bool(root and (root / "aflow_agl" / "demo.jsonl.gz").is_file())
    for name in PAGES:
        path = capture(page, server, name, OUT_DIR, with_data=with_data)
        assert path.stat().st_size > 10_000
