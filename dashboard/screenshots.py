"""Screenshots of every dashboard page, for the README: ``docs/screenshots/<page>.png``.

Starts the dashboard on a free localhost port (or uses ``--url``), drives headless Chromium with
Playwright and saves one PNG per page. The Data, Structure, Embeddings and Predict pages are shown
with the ``aflow_agl`` demo set loaded (through the app's ``?dataset=`` link) when the data
directory has it.

    .venv/bin/python -m dashboard.screenshots            # all pages
    .venv/bin/python -m dashboard.screenshots --pages home predict

Needs Chromium (``bash .ci/browser-deps``) and the ``playwright`` Python package.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "docs" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGES = [
    "home",
    "data",
    "structure",
    "train",
    "results",
    "embeddings",
    "fusion",
    "predict",
    "screen",
]
DEMO = "aflow_agl/demo.jsonl.gz"
#: Browser window (and screenshot) size in CSS pixels. Streamlit scrolls inside its main
#: container, so a "full page" shot would show only the window: the window is made tall.
WINDOW = (1280, 1400)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def dashboard_server(
    port: int | None = None, env: dict | None = None, timeout: float = 90.0
) -> Iterator[str]:
    """Run ``streamlit run dashboard/app.py`` on localhost; yield its base URL."""
    port = port or free_port()
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(ROOT / "dashboard" / "app.py"),
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
    ]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
        try:
            deadline = time.time() + timeout
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.time() > deadline:
                    log.seek(0)
                    raise RuntimeError(
                        "the dashboard did not start:\n"
                        + log.read().decode(errors="replace")[-3000:]
                    )
                time.sleep(0.3)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextlib.contextmanager
def browser_page(width: int = WINDOW[0], height: int = WINDOW[1]):
    """A Playwright page in headless Chromium with a fresh profile."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height},
        )
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def wait_idle(page, timeout: float = 120.0, settle: float = 1.0) -> None:
    """Wait until Streamlit has finished running the script and drawn every element.

    The app root carries ``data-test-script-state`` (``running`` while the script runs); loading
    elements show ``stSkeleton`` placeholders.
    """
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout * 1000)
    deadline = time.time() + timeout
    quiet_since = None
    while time.time() < deadline:
        script_state = page.get_attribute('[data-testid="stApp"]', "data-test-script-state")
        busy = (
            script_state in (None, "initial", "running")
            or page.locator('[data-testid="stSkeleton"]').count() > 0
        )
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.time()
        elif time.time() - quiet_since >= settle:
            return
        time.sleep(0.2)
    raise TimeoutError(f"the app kept running for {timeout} s")


def page_url(base: str, name: str, with_data: bool, teaching: bool = False) -> str:
    """URL of a page (Home is the root), optionally loading the demo set through ``?dataset=``
    and switching the teaching notes on."""
    params = ([f"dataset={DEMO}", "limit=300"] if with_data else []) + (
        ["teaching=1"] if teaching else []
    )
    query = ("?" + "&".join(params)) if params else ""
    return f"{base}/{'' if name == 'home' else name}{query}"


def capture(page, base: str, name: str, out_dir: Path, *, with_data: bool) -> Path:
    """Open one page, do what shows it at its best, and save a PNG."""
    page.goto(
        page_url(
            base,
            name,
            with_data and name in ("data", "embeddings", "predict"),
            teaching=name == "structure",
        )
    )
    wait_idle(page)
    if name == "embeddings":
        button = page.get_by_role("button", name="Compute map")
        if button.count():
            button.click()
            wait_idle(page, timeout=300)
    if name == "predict":
        page.get_by_text("SOFC examples (15 structures)").click()
        wait_idle(page)
        page.get_by_role("button", name="Predict").first.click()
        wait_idle(page)
    if name == "screen":
        page.get_by_role("button", name="Screen").first.click()
        wait_idle(page, timeout=300)
    if name in ("structure",):
        time.sleep(2.0)  # let 3Dmol.js draw inside its iframe
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    shrink(path)
    return path


def shrink(path: Path) -> None:
    """Re-save a screenshot as a 256-colour PNG (about a third of the size), if Pillow is there."""
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(path) as img:
        small = img.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", nargs="*", default=PAGES, choices=PAGES)
    parser.add_argument("--out", default=str(OUT_DIR))
    parser.add_argument("--url", help="use a running dashboard instead of starting one")
    args = parser.parse_args(argv)
    from engine import data_dir

    root = data_dir()
    with_data = bool(root and (root / DEMO).is_file())
    server = contextlib.nullcontext(args.url) if args.url else dashboard_server()
    with server as base, browser_page() as page:
        for name in args.pages:
            path = capture(page, base, name, Path(args.out), with_data=with_data)
            print(f"{path} ({path.stat().st_size // 1024} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
