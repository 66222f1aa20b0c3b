"""The ``optimade`` package's reference server on 127.0.0.1, for the client and page tests."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

#: The wheel's example data keep Materials Project field names; these aliases serve them as
#: OPTIMADE fields (as the package's own example configuration does).
ALIASES = {
    "structures": {
        "id": "task_id",
        "chemical_formula_reduced": "pretty_formula",
        "chemical_formula_anonymous": "formula_anonymous",
    }
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def reference_server(tmp: Path, jsonl: Path | None = None):
    """Serve the wheel's example structures, or those of an OPTIMADE JSON-lines file; yields
    the base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "OPTIMADE_CONFIG_FILE": str(tmp / "none.json"),
        "OPTIMADE_BASE_URL": url,
        "OPTIMADE_ALIASES": json.dumps(ALIASES),
    }
    if jsonl is not None:
        env.update(
            OPTIMADE_INSERT_FROM_JSONL=str(jsonl),
            OPTIMADE_INSERT_TEST_DATA="false",
            OPTIMADE_ALIASES="{}",
        )
    with open(tmp / f"server-{port}.log", "w+") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "optimade.server.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            deadline = time.monotonic() + 90
            while True:
                with contextlib.suppress(requests.ConnectionError):
                    if requests.get(f"{url}/v1/info", timeout=2).ok:
                        break
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(
                        f"the OPTIMADE reference server did not start:\n{log.read()[-2000:]}"
                    )
                time.sleep(0.3)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def optimade_jsonl(path: Path, entries: dict) -> Path:
    """An OPTIMADE JSON-lines file of ``{id: pymatgen Structure or attributes dict}``."""
    from optimade.adapters.structures.pymatgen import from_pymatgen

    lines = [{"x-optimade": {"meta": {"api_version": "1.1.0"}}}]
    for ident, value in entries.items():
        attrs = (
            value if isinstance(value, dict) else json.loads(from_pymatgen(value).model_dump_json())
        )
        attrs = {**attrs, "last_modified": "2026-01-01T00:00:00Z"}
        lines.append({"type": "structures", "id": ident, "attributes": attrs})
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return path
