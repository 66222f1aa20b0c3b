"""Session defaults (set in one place) and the cached loaders every page shares.

* Loaded models live in ``st.cache_resource`` (one copy per server process), pinned to their
  device once (``LoadedModel.pin``): a request never moves a shared model between devices.
* Datasets read from disk live in ``st.cache_resource`` keyed by path, limit and modification
  time: they hold thousands of pymatgen structures that must not be copied on every rerun.
* Parsed uploads go through ``st.cache_data``, hashed by the uploaded bytes; saving an upload to
  disk (:func:`save_upload`) is never cached.

A page never touches torch; everything heavy goes through ``engine``.

About 530 lines, over the usual 450: the session defaults and every loader the pages share
sit together so that each page calls one module; the datasets half (sources, uploads,
descriptions) is the seam for a later split.
"""

from __future__ import annotations

import contextlib
import copy
import os
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

#: Every session_state key the app uses, with its default (tests/dashboard/test_state.py checks
#: that every key read or written in dashboard/ is here). Keys made per model picker,
#: ``_model:<picker key>``, follow :data:`PER_PICKER_PREFIX` instead.
DEFAULTS: dict[str, Any] = {
    "teaching": False,  # the "Teaching notes" switch in the sidebar
    "data_source": None,  # {"path", "label", "limit", "query", "origin"} of the current dataset
    "target": None,  # preferred target column
    "structure_id": None,  # structure opened on the Structure & graph page
    "model_name": None,  # a model another page asks the next model picker to open on
    "job_id": None,  # run shown on the Train page
    "job_pick": None,  # the Train page's "Show run" selector (widget key)
    "_job_seen": None,  # run the Train page showed last (tells a new choice from an old one)
    "_train_form_open": None,  # Train's "New training run" form: None until the first visit
    "_linked": False,  # query-string settings (?teaching=1, ?dataset=...) applied once
    "compare_model": None,  # second model on the Results page
    "predict_result": None,  # last table of the Predict page
    "uploaded_structures": None,  # {"label", "items"} of the last upload on Predict
    "upload_ignored": [],  # uploaded file names of no structure format (listed as failures)
    "embedding_result": None,  # key of the last embedding map computed
    "emb_colour_choice": None,  # Embeddings' "Colour by" choice, kept while the widget is hidden
    "fusion_cache": {},  # weights computed on the Fusion page: {key: table}, one entry
    "fusion_crystal_systems": {},  # found on the Fusion page: {(source, ids): {id: system}}
    "screen_run": None,  # settings and table of the last screen run on the Screen page
    "screen_physics_on": False,  # Screen's physics-estimate switch (widget key)
    "screen_physics_runs": {},  # Screen's physics estimates: {(ids, relax): results or job}
    "predict_physics_runs": {},  # Predict's physics estimates: {(ids, relax): results or job}
    "read_max_atoms": 500,  # input limit: largest cell read, in sites (sidebar "Input limits")
    "read_max_mb": 512,  # input limit: most MB expanded from one upload or dataset read
    "_uploads_owner": None,  # removes this session's upload folder when the session ends
}
#: Prefix of the per-picker keys ``_model:<picker key>`` (the model each page's picker showed).
PER_PICKER_PREFIX = "_model:"

#: Target the tool is built around (AFLOW AGL volumetric thermal expansion at 300 K, 1/K).
FLAGSHIP_TARGET = "agl_thermal_expansion_300K"
#: Rows read by default from a dataset of the data directory.
DEFAULT_LIMIT = 500


def init() -> None:
    """Set every default that is not set yet, and honour ``?dataset=...&limit=...`` and
    ``?teaching=1`` links (paths relative to the data directory)."""
    torch_threads()  # before anything imports torch
    for key, value in DEFAULTS.items():
        if key not in st.session_state:
            st.session_state[key] = copy.deepcopy(value)
    params = st.query_params
    if params.get("teaching") in ("1", "true", "on") and not st.session_state.get("_linked"):
        st.session_state["teaching"] = True  # ?teaching=1 links open with the notes on
    st.session_state["_linked"] = True
    if st.session_state["data_source"] is None and "dataset" in params:
        root = data_root()
        rel = params.get("dataset", "")
        path = (root / rel) if root is not None else None
        safe = not Path(rel).is_absolute() and ".." not in Path(rel).parts
        if path is not None and safe and path.exists():
            try:
                limit = int(params.get("limit", DEFAULT_LIMIT)) or None
            except ValueError:
                limit = DEFAULT_LIMIT
            set_data_source(path, label=rel, limit=limit, origin="data directory")


#: Page runs in progress, and when the last one ended (``time.monotonic()`` s): the UMAP part
#: of the warm-up waits for a quiet server.
_activity = {"running": 0, "last_end": 0.0}
_activity_lock = threading.Lock()


@contextlib.contextmanager
def page_activity():
    """Count a page run as user activity (``app.py`` wraps ``page.run()`` in it), here and for
    the training jobs, which leave the dashboard its cores while a page runs."""
    from engine import note_dashboard_activity

    with _activity_lock:
        _activity["running"] += 1
        note_dashboard_activity(_activity["running"])
    try:
        yield
    finally:
        with _activity_lock:
            _activity["running"] -= 1
            _activity["last_end"] = time.monotonic()
            note_dashboard_activity(_activity["running"])


def wait_until_quiet(quiet_s: float, poll_s: float = 0.25) -> None:
    """Return once no page has run for ``quiet_s`` seconds."""
    while True:
        with _activity_lock:
            running, last_end = _activity["running"], _activity["last_end"]
        if not running and time.monotonic() - last_end >= quiet_s:
            return
        time.sleep(poll_s)


@st.cache_resource(show_spinner=False)
def warm_up(delay_s: float = 2.0, quiet_s: float = 5.0) -> threading.Thread | None:
    """Once per server process, in a background thread that starts ``delay_s`` after the first
    page: load the shipped examples, the default model and the dataset it was trained on into
    the shared caches (the first visit of Structure, Predict, Embeddings or Fusion otherwise
    waits for them). Then, once no page has run for ``quiet_s`` seconds, import UMAP and compile
    its numba kernels (the first UMAP map otherwise waits 10-50 s). The compiler holds Python's
    lock for that time, which would halve the speed of any page running beside it; waiting for
    a quiet server keeps it out of the user's way. ``CRYSTAL_SCREEN_NO_WARM_UP=1`` turns it off."""
    if os.environ.get("CRYSTAL_SCREEN_NO_WARM_UP"):
        return None

    def work() -> None:
        time.sleep(delay_s)
        import numpy as np

        from engine import reduce

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                examples_dataset()
                chosen = default_model(models())
                if chosen is not None:
                    training_dataset(load_model(model_ref(chosen)).card)
            except Exception:  # noqa: BLE001 - a failed warm-up only leaves the caches cold
                pass
            wait_until_quiet(quiet_s)
            reduce(np.random.default_rng(0).normal(size=(40, 8)), "umap", n_neighbors=5)

    thread = threading.Thread(target=work, name="warm-up", daemon=True)
    thread.start()
    return thread


def keep_teaching_in_url() -> None:
    """Mirror the teaching switch in ``?teaching=1`` so that a reload keeps it."""
    if st.session_state.get("teaching"):
        st.query_params["teaching"] = "1"
    elif "teaching" in st.query_params:
        del st.query_params["teaching"]


# ----------------------------------------------------------------------------------------------
# Paths


def project_root() -> Path:
    return Path(__file__).resolve().parent.parent


def examples_dir() -> Path:
    from engine import EXAMPLES_DIR

    return EXAMPLES_DIR


def data_root() -> Path | None:
    from engine import data_dir

    root = data_dir()
    return root if root is not None and root.is_dir() else None


# ----------------------------------------------------------------------------------------------
# Models


@st.cache_data(ttl=20, show_spinner=False)
def _models_cached(stamp: str) -> list[dict]:
    from engine import list_models

    return list_models()


def _models_stamp() -> str:
    """Changes when a model directory is added or removed (so new runs show up at once)."""
    from engine import shipped_model_dir, user_model_dir

    parts = []
    for root in (shipped_model_dir(), user_model_dir()):
        try:
            parts += sorted(f"{p.name}:{p.stat().st_mtime_ns}" for p in root.iterdir())
        except OSError:
            continue
    return "|".join(parts)


def models() -> list[dict]:
    """Every available model (``engine.list_models()``), cached briefly."""
    return _models_cached(_models_stamp())


def model_label(m: dict) -> str:
    unit = f" ({m['unit']})" if m.get("unit") else ""
    return f"{m['name']} — {m['target']}{unit}"


def model_ref(m: dict) -> str:
    """What ``engine.load_model`` needs: a directory path, or the name of an original model."""
    return m["path"] or m["name"]


def default_model(available: list[dict]) -> dict | None:
    """Prefer the shipped thermal-expansion model with the lowest validation MAE that needs only
    the structure (not ``PHYSICS_INPUT_FAMILIES``), then any thermal-expansion model, then any
    shipped one, then the first."""
    from engine import PHYSICS_INPUT_FAMILIES

    flagship = [
        m
        for m in available
        if m["source"] == "shipped"
        and m["target"] == FLAGSHIP_TARGET
        and m.get("family") not in PHYSICS_INPUT_FAMILIES
    ]
    if flagship:
        return min(
            flagship,
            key=lambda m: ((m.get("metrics") or {}).get("val") or {}).get("mae", float("inf")),
        )
    rank = [
        lambda m: m["target"] == FLAGSHIP_TARGET,
        lambda m: m["source"] == "shipped",
        lambda m: m["source"] == "user",
        lambda m: True,
    ]
    for test in rank:
        for m in available:
            if test(m):
                return m
    return None


def torch_threads() -> int:
    """Threads for torch in the dashboard's process: ``$CRYSTAL_SCREEN_THREADS`` (set here to
    half the cores, at least 1, when unset; the CHGNet physics route reads it too). Training
    jobs run beside the server on the other cores. On 2 busy cores one thread predicted one
    structure 8-20× and 300 structures 3× faster than two; on a quiet machine two are 1.4×
    faster for 300 structures and equal for one (docs/benchmarks.md)."""
    default = str(max(1, (os.cpu_count() or 2) // 2))
    return max(1, int(os.environ.setdefault("CRYSTAL_SCREEN_THREADS", default)))


@st.cache_resource(max_entries=6, show_spinner="Loading model…")
def _load_model_cached(ref: str, stamp: str):
    import torch

    from engine import load_model

    torch.set_num_threads(torch_threads())

    # shared by every session: placed on its device once and never moved by a request
    return load_model(ref).pin()


def load_model(ref: str):
    """A loaded model (``engine.LoadedModel``) shared by sessions, pinned to its device
    (``LoadedModel.pin``); reloaded when its files change (:func:`dashboard.caches.model_stamp`)."""
    from dashboard.caches import model_stamp

    return _load_model_cached(ref, model_stamp(ref))


def model_card(m: dict):
    """The card (``engine.ModelCard``) of model entry ``m``, read from its ``model.json``
    without loading the weights where it has a directory."""
    if m.get("path"):
        from engine import read_card

        return read_card(m["path"])
    return load_model(model_ref(m)).card


def model_files(m: dict) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """``history.csv`` and ``predictions.csv`` of a model directory (None where missing)."""
    if not m.get("path"):
        return None, None
    return _read_csv(Path(m["path"]) / "history.csv"), _read_csv(
        Path(m["path"]) / "predictions.csv"
    )


def _read_csv(path: Path) -> pd.DataFrame | None:
    try:
        return _read_csv_cached(str(path), path.stat().st_mtime)
    except OSError:
        return None


@st.cache_data(max_entries=32, show_spinner=False)
def _read_csv_cached(path: str, mtime: float) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path)
    except (OSError, ValueError):
        return None


def choose_model(
    label: str = "Model",
    *,
    key: str,
    help: str | None = None,
    container=None,
    computes_physics: bool = False,
) -> dict | None:
    """A model picker; each page (``key``) keeps its own choice. A model that takes physics
    inputs gets a warning, or on a page that computes them (``computes_physics``) a note of the
    cost.

    ``session_state.model_name`` is a one-time request from another page (e.g. Train's "Open in
    Results"): the next picker that offers that model opens on it and clears the request.
    """
    where = container or st
    available = models()
    if not available:
        where.warning("No model is available. Train one on the **Train** page.")
        return None
    names = [m["name"] for m in available]
    wanted = page_model(key, names, default_model(available)["name"])
    choice = where.selectbox(
        label,
        names,
        index=names.index(wanted),
        key=key,
        help=help,
        format_func=lambda n: model_label(available[names.index(n)]),
    )
    st.session_state[f"{PER_PICKER_PREFIX}{key}"] = choice
    chosen = available[names.index(choice)]
    from engine import PHYSICS_INPUT_FAMILIES

    if chosen.get("family") in PHYSICS_INPUT_FAMILIES and computes_physics:
        where.info(
            f"**{choice}** takes physics inputs (θ_D, B0, B′, γ, α_V): this page computes them "
            "with CHGNet before predicting, about 0.5 s per structure of ≤ 20 atoms (cached)."
        )
    elif chosen.get("family") in PHYSICS_INPUT_FAMILIES:
        where.warning(
            f"**{choice}** takes physics inputs (θ_D, B0, B′, γ, α_V from CHGNet), which "
            "this page does not compute (the Predict page does): here it predicts every crystal "
            "from its graph alone (`physics_used` False), about twice the error of its card. "
            "`python -m engine predict --model " + choice + "` computes them (~0.5 s per "
            "structure)."
        )
    return chosen


def page_model(key: str, names: list[str], default: str) -> str:
    """The model a page's picker ``key`` opens on: a pending request (``model_name``, then
    cleared), else the page's own last choice, else ``default``."""
    requested = st.session_state.get("model_name")
    if requested in names:
        st.session_state["model_name"] = None
        st.session_state.pop(key, None)  # the request wins over the widget's old value
        return requested
    own = st.session_state.get(f"{PER_PICKER_PREFIX}{key}")
    return own if own in names else default


# ----------------------------------------------------------------------------------------------
# Datasets


@dataclass(frozen=True)
class DataSource:
    path: str
    label: str
    limit: int | None = None
    query: str | None = None
    origin: str = "data directory"


def set_data_source(
    path,
    *,
    label: str,
    limit: int | None = None,
    query: str | None = None,
    origin: str = "data directory",
) -> None:
    st.session_state["data_source"] = {
        "path": str(path),
        "label": label,
        "limit": limit,
        "query": query or None,
        "origin": origin,
    }
    st.session_state["structure_id"] = None
    st.session_state["embedding_result"] = None


def data_source() -> DataSource | None:
    raw = st.session_state.get("data_source")
    return DataSource(**raw) if raw else None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def read_limits():
    """The input limits of this session (``engine.io.ReadLimits``), set in the sidebar."""
    from engine import make_limits

    return make_limits(
        max_atoms=int(st.session_state.get("read_max_atoms") or 500),
        max_bytes=int(st.session_state.get("read_max_mb") or 512) * 1024**2,
    )


def limits_settings() -> None:
    """The sidebar's "Input limits" expander (defaults: ``engine.io.DEFAULT_LIMITS``)."""
    with st.expander("Input limits"):
        st.number_input(
            "Largest cell read (atoms)",
            min_value=1,
            max_value=5000,
            step=50,
            key="read_max_atoms",
            help="Larger cells are refused before parsing.",
        )
        st.number_input(
            "Most data read per upload or dataset (MB)",
            min_value=1,
            max_value=8192,
            step=64,
            key="read_max_mb",
            help="Total expanded size, zips and .gz included; protects the server "
            "from compression bombs.",
        )


class _UploadsOwner:
    """Held in a session's state; when the session ends and is collected, its uploads go."""

    def __init__(self, session: str) -> None:
        import weakref

        from dashboard.uploads import remove_session_uploads

        self.session = session
        weakref.finalize(self, remove_session_uploads, session)


def session_id() -> str:
    """This browser session's id ("shared" outside a Streamlit run)."""
    try:
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        ctx = get_script_run_ctx()
    except ImportError:  # pragma: no cover
        ctx = None
    sid = ctx.session_id if ctx is not None else "shared"
    if st.session_state.get("_uploads_owner") is None:
        st.session_state["_uploads_owner"] = _UploadsOwner(sid)
    return sid


@st.cache_resource(max_entries=4, show_spinner="Reading structures…")
def _load_dataset_cached(
    path: str,
    limit: int | None,
    query: str | None,
    mtime: float,
    max_atoms: int = 500,
    max_bytes: int = 512 * 1024**2,
):
    from engine import load_dataset, make_limits

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = load_dataset(
            path, limit=limit, limits=make_limits(max_atoms=max_atoms, max_bytes=max_bytes)
        )
    if query:
        dataset = dataset.query(query)
    return dataset


def load_dataset(path, *, limit: int | None = None, query: str | None = None):
    """A dataset (``engine.LabelledDataset``), cached by path, limit, query and file time.

    Raises whatever ``engine.load_dataset`` raises (FileNotFoundError, ValueError).
    """
    p = Path(path)
    lim = read_limits()
    return _load_dataset_cached(
        str(p), limit, query or None, _mtime(p), lim.max_atoms, lim.max_bytes
    )


def current_dataset():
    """The dataset chosen on the Data page, or None. Errors are shown, not raised."""
    src = data_source()
    if src is None:
        return None
    try:
        return load_dataset(src.path, limit=src.limit, query=src.query)
    except Exception as exc:  # noqa: BLE001 - a bad dataset must not take the page down
        st.error(f"Could not read the dataset **{src.label}**: {exc}")
        return None


def examples_dataset():
    """The shipped SOFC example structures (``assets/examples``) as an unlabelled dataset."""
    return load_dataset(examples_dir())


def save_upload(files: tuple[tuple[str, bytes], ...]) -> str:
    """Save uploaded files in this session's upload folder and return the path to load them
    from (not cached: it writes files; the same upload reuses its folder). Parsing is
    :func:`read_upload`'s, cached and free of side effects."""
    from dashboard.uploads import save_upload

    return str(save_upload(list(files), session=session_id(), limits=read_limits()))


@st.cache_data(max_entries=8, show_spinner="Reading the uploaded structures…")
def _read_upload_cached(files: tuple[tuple[str, bytes], ...], max_atoms: int, max_bytes: int):
    from engine import make_limits, read_structures

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_structures(
            list(files), limits=make_limits(max_atoms=max_atoms, max_bytes=max_bytes)
        )


def read_upload(files: tuple[tuple[str, bytes], ...]):
    """``engine.read_structures`` of uploaded ``(name, bytes)`` files under this session's
    input limits, cached by their bytes and the limits."""
    lim = read_limits()
    return _read_upload_cached(files, lim.max_atoms, lim.max_bytes)


def upload_label(names: list[str]) -> str:
    shown = ", ".join(names[:3])
    return f"upload: {shown}" + (f" (+{len(names) - 3} more)" if len(names) > 3 else "")


def dataset_choices() -> dict[str, Path]:
    """Datasets of the data directory, by their path relative to it."""
    from engine import find_datasets

    root = data_root()
    if root is None:
        return {}
    out = {}
    for p in find_datasets(root):
        try:
            out[str(p.relative_to(root))] = p
        except ValueError:
            out[str(p)] = p
    # the all-entries provenance file holds rows without structures: offer it last
    return dict(sorted(out.items(), key=lambda kv: ("all_entries" in kv[0], kv[0])))


def preferred_target(columns: list[str]) -> str | None:
    """The remembered target if present, else the flagship target, else the first column."""
    if not columns:
        return None
    for cand in (st.session_state.get("target"), FLAGSHIP_TARGET):
        if cand in columns:
            return cand
    return columns[0]


# ----------------------------------------------------------------------------------------------
# Structure descriptions (space group, volume, density) for tables


@st.cache_data(max_entries=8, show_spinner="Finding space groups, volumes and densities…")
def _describe_cached(key: str, _items) -> pd.DataFrame:
    from dashboard.components.structinfo import describe_many

    return describe_many(_items)


def describe(dataset, key: str) -> pd.DataFrame:
    """One row per structure: id, formula, atoms, space group, crystal system, volume, density."""
    return _describe_cached(key, dataset.items)


def dataset_key(dataset, src: DataSource | None = None) -> str:
    """A cache key for a dataset: its source, limit, query and size."""
    if src is not None:
        return f"{src.path}|{src.limit}|{src.query}|{len(dataset)}|{_mtime(Path(src.path))}"
    return f"{dataset.source}|{len(dataset)}"


def training_source(card) -> Path | None:
    """Where the dataset a model was trained on is on this machine (None if absent); cheap."""
    if card is None or card.dataset is None:
        return None
    from engine import resolve_source

    return resolve_source(card.dataset.source)


def training_dataset(card):
    """The dataset a model was trained on, if it is on this machine (query applied), else None."""
    path = training_source(card)
    if path is None:
        return None
    try:
        return load_dataset(path, query=card.dataset.query)
    except Exception:  # noqa: BLE001 - missing training data only disables a feature
        return None


def open_structure(ident: str, *, path=None, label: str = "", query: str | None = None) -> None:
    """Show structure ``ident`` on the Structure & graph page; if the current dataset does not
    hold it, make the dataset at ``path`` (where it was found) the current one first."""
    current = current_dataset()
    if (current is None or ident not in current.ids) and path is not None:
        set_data_source(path, label=label or Path(path).name, query=query, origin="model")
    st.session_state["structure_id"] = ident
    st.switch_page("views/structure.py")


def find_structure(ident: str, datasets) -> Any:
    """The first item with this id in any of the datasets (None if absent)."""
    for ds in datasets:
        if ds is None:
            continue
        for item in ds.items:
            if item.id == ident:
                return item
    return None


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")
