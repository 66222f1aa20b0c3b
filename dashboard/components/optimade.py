"""Search box "Search a database (OPTIMADE)" shared by the Data, Predict and Screen pages.

A search runs :func:`engine.io.optimade.fetch_structures` with a progress bar; its result is kept
per page in the session, so it survives reruns. Structures that fail the engine's validation
are listed with their reasons, like unreadable uploads.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

CUSTOM = "custom"
MP_API = "mp-api"
EXAMPLE_FILTER = 'elements HAS ALL "La","Co","O" AND nsites<=20'


@dataclass
class Found:
    """The last search of a page.

    Attributes:
        batch: usable structures (ids ``provider:id``) and the entries that failed, with reasons.
        fetched: every structure converted, before validation (what :func:`save` writes).
        label: what was searched, for captions and data-source labels.
        key: a hash of the search and the ids found (for caches).
        new: true only on the run in which the search was made.
    """

    batch: object
    fetched: list
    label: str
    key: str
    new: bool = False


def _validated(items, errors):
    """A ``StructureBatch`` of the items that pass the engine's checks; the rest as errors."""
    from engine import ReadError, StructureBatch, StructureReadError, validate_structure

    batch = StructureBatch(errors=list(errors))
    for item in items:
        try:
            validate_structure(item.structure)
        except StructureReadError as exc:
            batch.errors.append(ReadError(source=item.id, reason=exc.reason))
        else:
            batch.items.append(item)
    return batch


def _run(provider: str, query: str, limit: int, state_key: str, mp_key: str) -> None:
    from engine import fetch_materials_project, fetch_structures

    bar = st.progress(0.0, text=f"Searching {provider}…")

    def progress(done: int, total: int | None) -> None:
        share = done / total if total else 0.0
        bar.progress(min(share, 1.0), text=f"Fetched {done} of {total or '?'} entries")

    if provider == MP_API:
        result = fetch_materials_project(query, limit=limit, key=mp_key or None, progress=progress)
    else:
        result = fetch_structures(provider, query, limit=limit, progress=progress)
    bar.empty()
    where = "Materials Project API" if provider == MP_API else f"OPTIMADE {result.provider}"
    label = f"{where}: {query or 'everything'}"
    ids = "\n".join(it.id for it in result.items)
    key = hashlib.sha256(f"{label}\n{ids}".encode()).hexdigest()[:16]
    st.session_state[state_key] = {
        "found": Found(_validated(result.items, result.errors), result.items, label, key),
        "error": result.error,
        "available": result.available,
    }


def search(page: str) -> Found | None:
    """Draw the search expander of ``page``; return its last search (None before the first)."""
    from engine import providers

    state_key = f"optimade_{page}"
    listed = {p.id: p for p in providers()}
    names = [*sorted(listed), MP_API, CUSTOM]
    special = {CUSTOM: "other (base URL)", MP_API: "Materials Project API (mp-api, API key)"}
    made = False
    with st.expander("Search a database (OPTIMADE)", expanded=state_key in st.session_state):
        with st.form(f"optimade_form_{page}"):
            c1, c2 = st.columns([1, 3])
            provider = c1.selectbox(
                "Provider",
                names,
                index=names.index("mp") if "mp" in names else 0,
                format_func=lambda p: special.get(p) or f"{listed[p].name} ({p})",
                help="The OPTIMADE providers listed by the optimade package.",
                key=f"optimade_provider_{page}",
            )
            url = c2.text_input(
                "Base URL (for 'other')",
                placeholder="https://optimade.example.org",
                key=f"optimade_url_{page}",
            )
            query = st.text_input(
                "Filter (OPTIMADE syntax)",
                value=EXAMPLE_FILTER,
                help='E.g. `elements HAS ALL "Sr","Ti","O" AND nelements=3`, '
                '`chemical_formula_reduced="CeO2"`, `nsites<=10`. Empty: everything.',
                key=f"optimade_filter_{page}",
            )
            mp_key = st.text_input(
                "Materials Project API key (for mp-api)",
                type="password",
                help="Used for this search only: never saved or logged. Empty: the MP_API_KEY "
                "environment variable. For mp-api the filter is a JSON object of summary-search "
                'arguments, e.g. {"chemsys": "La-Co-O", "num_sites": [1, 20]}.',
                key=f"optimade_mpkey_{page}",
            )
            limit = st.number_input(
                "At most this many structures",
                min_value=1,
                max_value=2000,
                value=50,
                step=10,
                key=f"optimade_limit_{page}",
            )
            made = st.form_submit_button("Search", type="primary")
        if made:
            target = url.strip() if provider == CUSTOM else provider
            if not target:
                st.error("Give the base URL of an OPTIMADE database for 'other'.")
                made = False
            else:
                _run(target, query.strip(), int(limit), state_key, mp_key.strip())
        last = st.session_state.get(state_key)
        if last is None:
            return None
        found = last["found"]
        raw = len(found.fetched)
        if last["error"]:
            kept = f" Kept the {raw} structures fetched before." if raw else ""
            st.error(f"{last['error']}.{kept}")
        if raw:
            more = f" of {last['available']} matching" if last["available"] is not None else ""
            st.success(
                f"{len(found.batch.items)} usable structures{more} from {found.label} "
                f"(ids provider:id)."
            )
        elif not last["error"]:
            st.info("No structure matched the filter.")
    found.new = made
    return found if found.batch.items or found.batch.errors else None


def save(found: Found) -> Path:
    """Write every structure of a search as JSON lines (``home_dir()/optimade/``); the dataset
    reader then lists the ones it cannot use, with reasons."""
    from engine import home_dir, write_jsonl

    folder = home_dir() / "optimade"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{found.key}.jsonl.gz"
    if not path.is_file():
        write_jsonl(found.fetched, path)
    return path
