"""Hostile uploads on the pages (issue 13): garbage-only uploads say so, failures are named by
the uploaded file (never a server path), counts are pluralised, limits are set in the sidebar."""

from __future__ import annotations

import io
import zipfile

from tests.dashboard.helpers import cif_bytes, goto, perovskite


def _messages(app, kind: str) -> list[str]:
    return [e.value for e in getattr(app, kind)]


def test_garbage_only_upload_is_an_error_not_a_green_using(app):
    goto(app, "data")
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("set/id_prop.csv", "a,1\n")
        zf.writestr("../../escape.cif", b"x")
        zf.writestr("set/a.cif", b"\x00\x01garbage")
    files = [
        ("junk.cif", b"\x89PNG\r\n\x1a\n\x00\x00", "chemical/x-cif"),
        ("deep.jsonl", b"[" * 50_000 + b"]" * 50_000 + b"\n", "application/json"),
        ("POSCAR", b"x\n1\n1 0 0\n0 1 0\n0 0 1\nNa\n5\ndirect\n0 0 0\n", "text/plain"),
    ]
    app.file_uploader(key="data_upload").set_value(files).run()
    assert not app.exception, [e.value for e in app.exception]
    assert not any("Using" in m for m in _messages(app, "success"))
    assert any("Nothing usable" in m for m in _messages(app, "error"))
    assert {m.label: m.value for m in app.metric}["Structures loaded"] == "0"
    failures = app.dataframe[0].value
    shown = set(failures["file / entry"])
    assert {"junk.cif", "POSCAR"} <= shown and any(s.startswith("deep.jsonl") for s in shown)
    assert not any("/tmp" in s or "uploads" in s for s in shown)
    assert any("1 atom" in r or "coordinate lines" in r for r in failures["reason"])
    # a labelled zip with a '..' entry: listed under the uploaded name, nothing written outside
    app.file_uploader(key="data_upload").set_value(
        ("bad.zip", bomb.getvalue(), "application/zip")
    ).run()
    assert not app.exception, [e.value for e in app.exception]
    reasons = dict(zip(app.dataframe[0].value["file / entry"], app.dataframe[0].value["reason"]))
    assert "leaves the archive" in reasons["bad.zip/../../escape.cif"]


def test_predict_page_plurals_and_no_false_promise(app):
    goto(app, "predict")
    app.radio(key="predict_source").set_value("upload").run()
    app.file_uploader(key="predict_upload").set_value(
        [("junk.cif", b"garbage", "chemical/x-cif")]
    ).run()
    assert not app.exception, [e.value for e in app.exception]
    warning = " ".join(_messages(app, "warning"))
    assert "1 file or entry could not be read; nothing usable is left" in warning
    assert "the others are kept" not in warning
    app.file_uploader(key="predict_upload").set_value(
        [
            ("SrTiO3.cif", cif_bytes(perovskite(), "s"), "chemical/x-cif"),
            ("junk.cif", b"garbage", "chemical/x-cif"),
        ]
    ).run()
    assert "1 file or entry could not be read; 1 structure kept" in " ".join(
        _messages(app, "warning")
    )
    next(b for b in app.button if b.label.startswith("Predict 1 ")).click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert any("**1 prediction**" in m.value for m in app.markdown)


def test_sidebar_atom_limit_applies_to_uploads(app):
    goto(app, "predict")
    app.number_input(key="read_max_atoms").set_value(2).run()
    app.radio(key="predict_source").set_value("upload").run()
    app.file_uploader(key="predict_upload").set_value(
        [("SrTiO3.cif", cif_bytes(perovskite(), "s"), "chemical/x-cif")]
    ).run()
    assert not app.exception, [e.value for e in app.exception]
    reason = app.dataframe[0].value["reason"].iloc[0]
    assert "limit of 2 atoms" in reason
