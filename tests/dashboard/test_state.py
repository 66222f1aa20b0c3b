"""``dashboard.state.DEFAULTS`` lists every session key the dashboard uses, one commented line
each; the shared caches (:mod:`dashboard.caches`) are bounded, locked and keyed by the model's
files and the structures."""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from dashboard import caches, state
from engine.io.entries import NamedStructure
from tests.dashboard.helpers import perovskite

DASHBOARD = Path(state.__file__).resolve().parent
#: A literal key read or written through ``st.session_state``.
LITERAL = re.compile(
    r"""session_state(?:\[|\.(?:get|pop|setdefault)\()\s*(?P<q>["'])(?P<key>[^"']+)(?P=q)"""
)
#: A key made by an f-string.
FORMATTED = re.compile(r"""session_state(?:\[|\.(?:get|pop|setdefault)\()\s*f(["'])([^"']+)\1""")
ATTRIBUTE = re.compile(
    r"session_state\.(?!get\b|pop\b|setdefault\b|keys\b|items\b|values\b)"
    r"(\w+)"
)
#: The key of a widget, literal or f-string (its text).
WIDGET_KEY = re.compile(r"""\bkey=f?(["'])([^"']+)\1""")
MEMBERSHIP = re.compile(r"""(["'])([^"']+)\1\s+(?:not\s+)?in\s+st\.session_state""")


def _sources() -> dict[Path, str]:
    return {p: p.read_text() for p in sorted(DASHBOARD.rglob("*.py"))}


def _section_keys(component: str) -> set[str]:
    """``key=`` arguments of every call, anywhere in dashboard/, to a function defined in the
    component's source (the keys its f"{key}_..." session keys are made from)."""
    names = re.findall(r"^def (\w+)\(", component, flags=re.M)
    found = set()
    for text in _sources().values():
        for name in names:
            found |= set(re.findall(rf'\b{name}\((?:[^()]|\([^()]*\))*?key="(\w+)"', text))
    assert found, "no call site found for a component with f-string session keys"
    return found


def test_every_session_key_used_in_the_dashboard_is_in_defaults():
    """Keys read or written through ``st.session_state`` are listed in DEFAULTS, except the
    keys of widgets drawn in the same file (``key="..."``/``key=f"..."``), whose value is read
    before the widget is drawn (e.g. the Structure page's chosen edge)."""
    used: dict[str, str] = {}
    for path, text in _sources().items():
        widgets = {m.group(2) for m in WIDGET_KEY.finditer(text)}
        for pattern, group in ((LITERAL, "key"), (ATTRIBUTE, 1), (MEMBERSHIP, 2)):
            for m in pattern.finditer(text):
                if m.group(group) not in widgets:
                    used.setdefault(m.group(group), str(path.relative_to(DASHBOARD)))
        for m in FORMATTED.finditer(text):
            if m.group(2).startswith(("{PER_PICKER_PREFIX}", "{state.PER_PICKER_PREFIX}")):
                continue
            if m.group(2) in widgets:
                continue
            assert m.group(2).startswith("{key}"), f"{path.name}: session key f'{m.group(2)}'"
            for section in _section_keys(text):  # f"{key}_x" of a component called with key=
                used.setdefault(section + m.group(2).removeprefix("{key}"), path.name)
    assert len(used) > 15, "the scan found too few keys: the patterns no longer match the code"
    missing = {
        k: where
        for k, where in used.items()
        if k not in state.DEFAULTS and not k.startswith(state.PER_PICKER_PREFIX)
    }
    assert not missing, f"session keys used but not in state.DEFAULTS: {missing}"


def test_defaults_have_one_key_and_its_own_comment_per_line():
    text = (DASHBOARD / "state.py").read_text()
    block = text[text.index("DEFAULTS: dict[str, Any] = {") :]
    block = block[block.index("\n") + 1 : block.index("\n}")]
    lines = block.splitlines()
    assert len(lines) == len(state.DEFAULTS)
    for line, key in zip(lines, state.DEFAULTS):
        assert re.fullmatch(rf'    "{re.escape(key)}": [^#]+,  # [^#]+', line), line


def test_locked_lru_is_bounded_and_least_recently_used():
    lru = caches.LockedLRU(max_entries=2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # a is now the most recently used
    lru.put("c", 3)
    assert "b" not in lru and lru.get("a") == 1 and lru.get("c") == 3 and len(lru) == 2
    assert lru.get("b", "gone") == "gone"

    def hammer(seed: int) -> None:
        for i in range(2000):
            key = (seed * 7 + i) % 5
            lru.put(key, key)
            value = lru.get(key)
            assert value is None or value == key

    threads = [threading.Thread(target=hammer, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(lru) <= 2


def test_vector_keys_follow_the_model_files_and_the_structures(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "model.json").write_text("{}")
    s = perovskite()
    items = [NamedStructure(id="a", structure=s, source="x")]
    key = caches.vectors_key(str(model), items)
    assert key == caches.vectors_key(str(model), [NamedStructure("a", s.copy(), "y")])
    moved = s.copy()
    moved.translate_sites([0], [0.01, 0, 0])
    assert key != caches.vectors_key(str(model), [NamedStructure("a", moved, "x")])
    stamp = caches.model_stamp(str(model))
    os.utime(model / "model.json", ns=(1, 1))
    assert caches.model_stamp(str(model)) != stamp
    assert caches.vectors_key(str(model), items) != key
    assert caches.model_stamp("cgcnn-original/formation-energy-per-atom") == ""


def test_pooled_vectors_round_trip_on_disk(tmp_path):
    vectors = np.arange(6, dtype=np.float32).reshape(3, 2)
    assert caches.load_vectors("k", root=tmp_path) is None
    path = caches.save_vectors("k", vectors, np.array([0, 2, 3]), np.ones(3), root=tmp_path)
    assert path is not None and path.is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    got = caches.load_vectors("k", root=tmp_path)
    assert got is not None
    np.testing.assert_array_equal(got[0], vectors)
    np.testing.assert_array_equal(got[1], [0, 2, 3])
    assert caches.cache_dir().is_relative_to(Path(os.environ["CRYSTAL_SCREEN_HOME"]))


def test_a_shared_model_is_pinned_once_and_never_moved_by_a_request(monkeypatch):
    from engine.core.config import shipped_model_dir
    from engine.core.device import resolve_device
    from engine.inference.prediction import embed, predict

    items = [NamedStructure("p", perovskite(), "x")]
    for name in ("cte-cgcnn-aflow", "cte-attention-aflow-ens3"):
        ref = str(shipped_model_dir() / name)
        model = state.load_model(ref)
        assert model is state.load_model(ref)  # one object shared by every session
        assert model.pinned == resolve_device("auto")
        nets = [m.module for m in getattr(model, "members", [])] or [model.module]
        assert all(p.device.type == model.pinned.type for n in nets for p in n.parameters())

        def refuse(*args, **kwargs):
            raise AssertionError("a request moved the shared model")

        for net in nets:
            monkeypatch.setattr(net, "to", refuse)
        assert np.isfinite(predict(model, items).table["prediction"]).all()
        assert embed(model, items)[0].shape[0] == 1


def test_default_model_skips_physics_input_families():
    from dashboard.state import FLAGSHIP_TARGET, default_model

    def entry(name, family, mae):
        return {
            "name": name,
            "family": family,
            "source": "shipped",
            "target": FLAGSHIP_TARGET,
            "metrics": {"val": {"mae": mae}},
        }

    available = [
        entry("a", "alignn", 3.9e-6),
        entry("p", "cgcnn-physics", 3.5e-6),
        entry("c", "cgcnn", 3.7e-6),
    ]
    assert default_model(available)["name"] == "c"


def test_warm_up_loads_the_examples_the_default_model_and_its_training_data(monkeypatch):
    import engine.inference.embeddings as embeddings
    import engine.io.datasets as datasets

    monkeypatch.delenv("CRYSTAL_SCREEN_NO_WARM_UP", raising=False)
    umap_warmed = threading.Event()
    monkeypatch.setattr(embeddings, "reduce", lambda *a, **k: umap_warmed.set())
    thread = state.warm_up(delay_s=0.0)
    thread.join(300)
    assert not thread.is_alive() and umap_warmed.is_set()
    chosen = state.default_model(state.models())
    card = state.load_model(state.model_ref(chosen)).card
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("read again"))
    dataset = state.training_dataset(card)  # from the shared cache the warm-up filled
    assert dataset is not None and len(dataset) > 100
    assert len(state.examples_dataset()) > 5


def test_the_umap_warm_up_waits_for_a_quiet_server():
    """The numba compiler holds Python's lock: it must not run beside a page."""
    quiet = threading.Event()
    waiter = threading.Thread(
        target=lambda: (state.wait_until_quiet(0.3, poll_s=0.02), quiet.set()), daemon=True
    )
    from engine.core.config import home_dir

    activity = home_dir() / "dashboard-activity"  # the training jobs read it
    with state.page_activity():
        waiter.start()
        assert not quiet.wait(0.6)  # a page is running
        assert activity.read_text() == "1"
        left = time.monotonic()
    assert activity.read_text() == "0"
    assert quiet.wait(10)
    assert time.monotonic() - left >= 0.3


def test_the_dashboard_runs_torch_on_half_the_cores(monkeypatch):
    import torch

    from engine.core.config import shipped_model_dir

    monkeypatch.delenv("CRYSTAL_SCREEN_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert state.torch_threads() == 4 and os.environ["CRYSTAL_SCREEN_THREADS"] == "4"
    monkeypatch.setenv("CRYSTAL_SCREEN_THREADS", "1")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        state._load_model_cached.clear()
        state.load_model(str(shipped_model_dir() / "cte-cgcnn-aflow"))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
