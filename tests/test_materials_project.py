"""Materials Project access through mp-api, against a fake API on 127.0.0.1."""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from engine.apps.cli.main import main
from engine.io.materials_project import fetch_materials_project
from tests.optimade_server import free_port

pytest.importorskip("mp_api", reason="needs the [mp] extra")

KEY = "k" * 32


@pytest.fixture
def fake_api(crystals):
    """A stand-in for api.materialsproject.org: heartbeat and summary search; records requests."""
    seen: list[tuple[str, str | None]] = []
    docs = [
        {"material_id": "mp-5229", "structure": crystals["SrTiO3"].as_dict()},
        {"material_id": "mp-22862", "structure": crystals["NaCl"].as_dict()},
    ]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server API
            seen.append((self.path, self.headers.get("x-api-key")))
            if self.path.startswith("/heartbeat"):
                body = {
                    "db_version": "2025.09.25",
                    "version": "0.87.3",
                    "access_controlled_batch_ids": [],
                }
            else:
                body = {"data": docs, "meta": {"total_doc": len(docs)}}
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", seen
    server.shutdown()


def test_search_with_the_key_from_the_environment(fake_api, monkeypatch, crystals):
    url, seen = fake_api
    monkeypatch.setenv("MP_API_KEY", KEY)
    result = fetch_materials_project({"chemsys": "Sr-Ti-O"}, endpoint=url, limit=10)
    assert result.complete and [it.id for it in result.items] == ["mp:mp-5229", "mp:mp-22862"]
    assert result.items[0].structure.matches(crystals["SrTiO3"])
    search = [(path, key) for path, key in seen if path.startswith("/materials/summary/")]
    assert search == [
        ("/materials/summary/?chemsys=Sr-Ti-O&_limit=10&_fields=material_id%2Cstructure", KEY)
    ]


def test_limit_and_given_key(fake_api, monkeypatch):
    url, seen = fake_api
    monkeypatch.delenv("MP_API_KEY", raising=False)
    result = fetch_materials_project('{"elements": ["Sr"]}', key="g" * 32, endpoint=url, limit=1)
    assert [it.id for it in result.items] == ["mp:mp-5229"]
    assert seen[-1][1] == "g" * 32


def test_missing_key_is_one_clear_line(monkeypatch):
    monkeypatch.delenv("MP_API_KEY", raising=False)
    result = fetch_materials_project({"chemsys": "Sr-Ti-O"}, endpoint="http://127.0.0.1:9/")
    assert result.error.startswith("no Materials Project API key: set MP_API_KEY")


def test_unreachable_api_masks_the_key(monkeypatch):
    monkeypatch.setenv("MP_API_KEY", KEY)
    url = f"http://127.0.0.1:{free_port()}/"
    result = fetch_materials_project({"chemsys": "Sr-Ti-O"}, endpoint=url)
    assert result.error.startswith(f"the Materials Project API at {url} failed")
    assert KEY not in result.error and "\n" not in result.error


def test_bad_query(fake_api, monkeypatch):
    monkeypatch.setenv("MP_API_KEY", KEY)
    result = fetch_materials_project("chemsys=Sr-Ti-O", endpoint=fake_api[0])
    assert result.error.startswith("the Materials Project query must be a JSON object")
    result = fetch_materials_project({"no_such_field": 1}, endpoint=fake_api[0])
    assert result.error.startswith("the Materials Project client rejected the query")


def test_cli_fetch_mp_api(fake_api, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MP_API_KEY", KEY)
    monkeypatch.setenv("MP_API_ENDPOINT", fake_api[0])
    out = tmp_path / "mp.jsonl.gz"
    rc = main(
        [
            "fetch",
            "--provider",
            "mp-api",
            "--filter",
            '{"chemsys": "Sr-Ti-O"}',
            "--output",
            str(out),
            "--quiet",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0 and KEY not in captured.out + captured.err
    assert [json.loads(x)["id"] for x in gzip.open(out, "rt")] == ["mp:mp-5229", "mp:mp-22862"]
