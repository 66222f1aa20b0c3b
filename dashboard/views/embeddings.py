"""Embeddings: pooled crystal vectors of a set of structures through a model, mapped to 2-D."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import caches, state
from dashboard.components import plots
from dashboard.components.teaching import teach
from dashboard.components.units import display_for
from dashboard.components.viewer import describe_line, show_structure
from engine import (
    PHYSICS_INPUT_FAMILIES,
    csv_text,
    embed,
    embed_and_predict,
    reduce,
    resolve_source,
    symmetry,
)

st.title("Embeddings")
teach("pooling", "embeddings")


@st.cache_resource
def _store() -> caches.LockedLRU:
    """Pooled vectors and 2-D maps shared by sessions (bounded, locked, least recently used)."""
    return caches.LockedLRU(max_entries=12)


model_info = state.choose_model("Model", key="emb_model")
if model_info is None:
    st.stop()
try:
    model = state.load_model(state.model_ref(model_info))
except Exception as exc:  # noqa: BLE001
    st.error(f"Could not load {model_info['name']}: {exc}")
    st.stop()
card = model.card
disp = display_for(card.target, card.unit)
what = getattr(model, "pooled_description", "")
if what:
    st.caption(f"Vectors of this model ({getattr(model, 'family', '')}): {what}.")
_, predictions = state.model_files(model_info)
physics_inputs = model_info.get("family") in PHYSICS_INPUT_FAMILIES

# ---------------------------------------------------------------------------------------------
# Which structures

choices: dict[str, str] = {}
training_data = None
if predictions is not None and "split" in predictions:
    training_data = state.training_dataset(card)
if training_data is not None:
    if (predictions["split"] == "test").any():
        choices["test"] = f"Test set of {card.name} (the reference picture)"
    choices["val+test"] = f"Validation + test sets of {card.name}"
src = state.data_source()
if src is not None:
    choices["current"] = f"Current dataset: {src.label}"
choices["examples"] = "SOFC examples (15 structures)"

c1, c2 = st.columns([3, 1])
which = c1.selectbox("Structures", list(choices), format_func=choices.get, key="emb_which")
max_n = int(
    c2.number_input(
        "At most",
        10,
        5000,
        500,
        50,
        key="emb_max",
        help="The first structures of the set are used.",
    )
)


def pick_items():
    """The items to embed, the known target values and the model's saved predictions (by id)."""
    if which in ("test", "val+test"):
        parts = ["test"] if which == "test" else ["val", "test"]
        rows = predictions[predictions["split"].isin(parts)]
        by_id = {it.id: it for it in training_data.items}
        items = [by_id[i] for i in rows["id"].astype(str) if i in by_id]
        ids = rows["id"].astype(str)
        # a physics-input model's saved predictions used CHGNet inputs, which this page does not
        saved = {} if physics_inputs else dict(zip(ids, rows["prediction"]))
        return items[:max_n], dict(zip(ids, rows["target"])), saved
    if which == "current":
        ds = state.current_dataset()
        if ds is None:
            return [], {}, {}
        truth = {}
        if card.target in ds.numeric_columns():
            truth = dict(zip(ds.ids, ds.targets(card.target)))
        return ds.items[:max_n], truth, {}
    ds = state.examples_dataset()
    return ds.items[:max_n], {}, {}


items, truth, saved = pick_items()
if not items:
    st.warning("No structure to embed: load a dataset on **Data** or pick another set.")
    st.stop()

# ---------------------------------------------------------------------------------------------
# Method

m1, m2, m3, m4 = st.columns(4)
method = m1.radio(
    "Method",
    ["tsne", "umap", "pca"],
    horizontal=True,
    key="emb_method",
    format_func={"tsne": "t-SNE", "umap": "UMAP", "pca": "PCA"}.get,
)
seed = int(m2.number_input("Seed", 0, 10_000, 0, 1, key="emb_seed"))
perplexity = n_neighbors = min_dist = None
if method == "tsne":
    perplexity = float(
        m3.slider(
            "Perplexity",
            2,
            100,
            30,
            key="emb_perp",
            help="Effective number of neighbours (lowered for small sets).",
        )
    )
elif method == "umap":
    n_neighbors = int(m3.slider("Neighbours", 2, 100, 15, key="emb_nn"))
    min_dist = float(m4.slider("Minimum distance", 0.0, 1.0, 0.1, 0.05, key="emb_md"))
params = {
    "perplexity": perplexity or 30.0,
    "n_neighbors": n_neighbors or 15,
    "min_dist": 0.1 if min_dist is None else min_dist,
}

model_ref = state.model_ref(model_info)
vec_key = caches.vectors_key(model_ref, items)
map_key = ("map", vec_key, method, seed, tuple(sorted(params.items())))

auto = map_key in _store() or st.session_state.get("embedding_result") == map_key
go = st.button("Compute map", type="primary", key="emb_go") or auto
if not go:
    st.info(
        f"{len(items)} structures will be passed through **{card.name}** and mapped with "
        f"{ {'tsne': 't-SNE', 'umap': 'UMAP', 'pca': 'PCA'}[method] }. Press *Compute map*."
    )
    st.stop()


def pooled_vectors(
    model, items: list, key: str, saved: dict[str, float]
) -> tuple[np.ndarray, list, np.ndarray]:
    """Pooled vectors (N, D) of the usable ``items``, those items and their predictions (N,):
    from memory, else from the disk cache, else computed (with a progress bar) and stored in
    both under ``key`` (:func:`dashboard.caches.vectors_key`). The model's ``saved``
    predictions (by id) stand in for computed ones where every item has one."""
    found = _store().get(key)
    if found is not None:
        return found
    stored = caches.load_vectors(key)
    if stored is not None and (len(stored[1]) == 0 or stored[1].max() < len(items)):
        vectors, positions, preds = stored
        return _store().put(key, (vectors, [items[i] for i in positions], preds))
    bar = st.progress(0.0, text="Computing pooled crystal vectors…")
    vectors, kept, preds = [], [], []
    step = 64
    for start in range(0, len(items), step):
        chunk = items[start : start + step]
        if all(it.id in saved for it in chunk):
            v, k = embed(model, chunk)
            p = np.array([saved[it.id] for it in k], dtype=float)
        else:
            v, p, k = embed_and_predict(model, chunk)
        if len(k):
            vectors.append(v)
            kept.extend(k)
            preds.append(p)
        bar.progress(
            min((start + step) / len(items), 1.0),
            text=f"Pooled vectors: {min(start + step, len(items))} of {len(items)}",
        )
    bar.empty()
    if not kept:
        st.error("None of these structures could be turned into a graph.")
        st.stop()
    where = {id(it): i for i, it in enumerate(items)}
    result = (np.concatenate(vectors), kept, np.concatenate(preds))
    caches.save_vectors(key, result[0], np.array([where[id(it)] for it in kept]), result[2])
    return _store().put(key, result)


vectors, kept, preds = pooled_vectors(model, items, vec_key, saved)

found = _store().get(map_key)
if found is None:
    label = {"tsne": "t-SNE", "umap": "UMAP", "pca": "PCA"}[method]
    note = " (the first UMAP import takes 20–30 s)" if method == "umap" else ""
    with st.spinner(f"{label} of {len(kept)} vectors{note}…"):
        t0 = time.perf_counter()
        try:
            xy = reduce(vectors, method, seed=seed, **params)
        except Exception as exc:  # noqa: BLE001
            st.error(f"{label} failed: {exc}")
            st.stop()
        found = _store().put(map_key, (xy, time.perf_counter() - t0))
st.session_state["embedding_result"] = map_key
xy, seconds = found

frame = pd.DataFrame(
    {
        "x": xy[:, 0],
        "y": xy[:, 1],
        "id": [it.id for it in kept],
        "formula": [it.structure.composition.reduced_formula for it in kept],
        "prediction": disp.scale(preds),
        "elements": [" ".join(sorted(el.symbol for el in it.structure.composition)) for it in kept],
    }
)
known = np.array([truth.get(it.id, np.nan) for it in kept], dtype=float)
if np.isfinite(known).any():
    frame["target"] = disp.scale(known)
    frame["error"] = frame["prediction"] - frame["target"]

colour_options = {"prediction": f"Predicted {disp.label}"}
if "target" in frame:
    colour_options["target"] = f"True {disp.label}"
    colour_options["error"] = disp.short("Error, predicted − true")
colour_options["crystal system"] = "Crystal system"
colour_options["element"] = "Contains an element"

k1, k2 = st.columns([2, 1])
# The choice is kept outside the widget: the widget is not drawn while a new map waits for
# "Compute map", and a recreated widget must show the quantity the plot is coloured by.
options = list(colour_options)
kept_choice = st.session_state.get("emb_colour_choice")
colour = k1.selectbox(
    "Colour by",
    options,
    index=options.index(kept_choice) if kept_choice in options else 0,
    format_func=colour_options.get,
    key="emb_colour",
)
st.session_state["emb_colour_choice"] = colour
systems_key = ("systems", vec_key)
if colour == "crystal system" and systems_key not in _store():
    # spglib takes a few ms per structure: only when asked for, then kept with the vectors
    bar = st.progress(0.0, text="Finding crystal systems (spglib)…")
    systems = []
    for k, it in enumerate(kept):
        systems.append(symmetry(it.structure)[2])
        if k % 50 == 0:
            bar.progress(k / len(kept), text=f"Crystal systems: {k} of {len(kept)}")
    bar.empty()
    _store().put(systems_key, systems)
if systems_key in _store():
    frame["crystal system"] = _store().get(systems_key)
categorical = colour in ("crystal system", "element")
column = colour
if colour == "element":
    present = sorted({el for text in frame["elements"] for el in text.split()})
    default_el = next((e for e in ("O", "La", "Sr") if e in present), present[0])
    element = k2.selectbox("Element", present, index=present.index(default_el), key="emb_el")
    column = f"contains {element}"
    frame[column] = np.where(
        frame["elements"].str.split().apply(lambda els: element in els),
        f"with {element}",
        f"without {element}",
    )

fig = plots.embedding_scatter(
    frame,
    column,
    color_label=colour_options[colour],
    categorical=categorical,
    title=f"{len(frame)} structures, {card.name}, "
    f"{ {'tsne': 't-SNE', 'umap': 'UMAP', 'pca': 'PCA'}[method] }",
)
event = st.plotly_chart(fig, key="emb_plot", on_select="rerun", selection_mode=("points",))
st.caption(
    f"Map computed in {seconds:.1f} s. Hover shows the formula; click a point to open "
    "its structure."
    + (" Predictions are the model's saved ones for these structures." if saved else "")
)

points = event.selection.points if event is not None and event.selection else []
chosen = next((p.get("customdata") for p in points if p.get("customdata")), None)
if chosen:
    ident = str(chosen[0])
    item = next((it for it in kept if it.id == ident), None)
    row = frame[frame["id"] == ident].iloc[0]
    with st.container(border=True):
        text = f"predicted {row['prediction']:.4g} {disp.unit}"
        if "target" in frame and np.isfinite(row["target"]):
            text += f", true {row['target']:.4g} {disp.unit}"
        system = row.get("crystal system") or (symmetry(item.structure)[2] if item else "?")
        st.markdown(f"**{row['formula']}** (`{ident}`, {system}): {text}")
        if item is not None:
            st.markdown(describe_line(item))
            show_structure(item.structure, card.graph, height=340, title=f"3D view of {ident}")
            if st.button("Open on Structure & graph", key="emb_open"):
                if which in ("test", "val+test"):
                    state.open_structure(
                        ident,
                        path=resolve_source(card.dataset.source),
                        label=card.dataset.name,
                        query=card.dataset.query,
                    )
                elif which == "examples":
                    state.open_structure(ident, path=state.examples_dir(), label="SOFC examples")
                else:
                    state.open_structure(ident)

st.download_button(
    "Download the map (CSV)",
    csv_text(frame),
    file_name=f"embedding-{card.name}-{method}.csv",
    mime="text/csv",
)
