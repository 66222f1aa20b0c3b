"""The "Search a database (OPTIMADE)" box of the Data, Predict and Screen pages, against the
optimade reference server on 127.0.0.1 holding the SOFC examples."""

from __future__ import annotations

import pytest

from engine.io import read_structures
from engine.materials.examples import EXAMPLES_DIR
from tests.dashboard.helpers import goto, texts
from tests.optimade_server import optimade_jsonl, reference_server
from tests.test_materials_project import fake_api  # noqa: F401 - a fixture

#: Every SOFC example (the partially occupied entry of the client tests is not served here).
FILTER = "nsites >= 1"


@pytest.fixture(scope="module")
def sofc_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("optimade_pages")
    entries = {it.id: it.structure for it in read_structures(EXAMPLES_DIR).items}
    with reference_server(tmp, optimade_jsonl(tmp / "sofc.jsonl", entries)) as url:
        yield url


def _search(at, page: str, url: str, query: str = FILTER):
    at.selectbox(key=f"optimade_provider_{page}").set_value("custom")
    at.text_input(key=f"optimade_url_{page}").input(url)
    at.text_input(key=f"optimade_filter_{page}").input(query)
    next(b for b in at.button if b.label == "Search").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_data_page_loads_the_search_as_dataset(app, sofc_server):
    at = _search(goto(app, "data"), "data", sofc_server)
    src = at.session_state["data_source"]
    assert src["origin"] == "OPTIMADE" and src["label"] == f"OPTIMADE exmpl: {FILTER}"
    assert src["path"].endswith(".jsonl.gz")
    assert [m.value for m in at.metric if m.label == "Structures loaded"] == ["15"]
    assert "15 usable structures of 15 matching" in texts(at)


def test_predict_page_predicts_the_search(app, sofc_server):
    at = goto(app, "predict")
    at.radio(key="predict_source").set_value("database").run()
    at = _search(at, "predict", sofc_server, 'elements HAS "Ce"')
    go = at.button(key="predict_go")
    assert go.label.startswith("Predict 2 structure(s)")  # CeO2 and BaCeO3
    go.click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert {"exmpl:CeO2_fluorite", "exmpl:BaCeO3_pseudocubic"} <= set(
        at.dataframe[0].value["id"].tolist()
    )


def test_screen_page_takes_the_search_as_candidates(app, sofc_server):
    at = goto(app, "screen")
    at.radio(key="screen_source").set_value("database").run()
    at = _search(at, "screen", sofc_server, 'elements HAS "La"')
    assert at.button(key="screen_go").label == "Screen 6 candidate entries"


def test_bad_filter_is_shown_not_raised(app, sofc_server):
    at = goto(app, "predict")
    at.radio(key="predict_source").set_value("database").run()
    at = _search(at, "predict", sofc_server, "nsites <<< 3")
    assert any("rejected the query (HTTP 400)" in e.value for e in at.error)


def test_materials_project_api_with_a_typed_key(app, fake_api, monkeypatch):  # noqa: F811
    url, seen = fake_api
    monkeypatch.delenv("MP_API_KEY", raising=False)
    monkeypatch.setenv("MP_API_ENDPOINT", url)
    at = goto(app, "predict")
    at.radio(key="predict_source").set_value("database").run()
    at.selectbox(key="optimade_provider_predict").set_value("mp-api")
    at.text_input(key="optimade_mpkey_predict").input("t" * 32)
    at.text_input(key="optimade_filter_predict").input('{"chemsys": "Sr-Ti-O"}')
    next(b for b in at.button if b.label == "Search").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.button(key="predict_go").label.startswith("Predict 2 structure(s)")
    assert seen[-1][1] == "t" * 32
    assert "t" * 32 not in texts(at)
