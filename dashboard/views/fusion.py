"""Fusion weights: how much a fusion model relies on composition versus structure.

* Attention fusion learns per-material weights (w_comp + w_graph = 1): their distribution, a
  table per material and the weights against the error. They come from the model's saved
  validation/test predictions (``predictions.csv`` columns ``w_comp``/``w_graph``, alias
  ``weight_composition``/``weight_structure``) or are computed for the current dataset or the
  SOFC examples with ``engine.inference.contributions.fusion_weights`` /
  ``engine.inference.prediction.evaluate``.
* Early and attention fusion: the contribution analysis of ``engine.inference.contributions.
  contribution_analysis`` (error increase when the composition part is zeroed or the graph
  vectors are shuffled across materials).
* Attention fusion: the weights against crystal system (spglib, on request: it reads the
  structures and takes about 5 ms a structure), and polymorph pairs (same formula, different
  structure: ``engine.inference.explain.polymorph_pairs``) to show when structure matters.
* Late fusion: the fitted mixing weight α.
"""

from __future__ import annotations

from functools import partial

import pandas as pd
import plotly.express as px
import streamlit as st

from dashboard import state
from dashboard.components import plots
from dashboard.components.teaching import teach
from dashboard.components.units import display_for
from engine import csv_text, polymorph_pairs, symmetry

ALIASES = {"weight_composition": "w_comp", "weight_structure": "w_graph"}

st.title("Fusion weights")
teach("fusion")


def saved_weights(m: dict) -> pd.DataFrame | None:
    _, predictions = state.model_files(m)
    if predictions is None:
        return None
    frame = predictions.rename(
        columns={k: v for k, v in ALIASES.items() if k in predictions and v not in predictions}
    )
    if "w_comp" not in frame:
        return None
    if "w_graph" not in frame:
        frame["w_graph"] = 1.0 - frame["w_comp"]
    return frame


def training_materials(card, ids: set[str]):
    """The materials of a model's training dataset whose ids are in ``ids``."""
    ds = state.training_dataset(card)
    if ds is None:
        raise ValueError(f"Could not read {card.dataset.name}, the model's training dataset.")
    return ds.subset([i for i, ident in enumerate(ds.ids) if str(ident) in ids])


def crystal_systems(ds, ids: set[str]) -> dict[str, str]:
    """The crystal system (spglib) of each structure of ``ds`` whose id is in ``ids``, with a
    progress bar."""
    items = [item for item in ds.items if str(item.id) in ids]
    bar = st.progress(0.0, text=f"Crystal systems of {len(items)} structures…")
    systems = {}
    for done, item in enumerate(items, 1):
        systems[str(item.id)] = symmetry(item.structure)[2]
        if done % 10 == 0 or done == len(items):
            bar.progress(done / len(items), text=f"Crystal systems: {done} of {len(items)}")
    bar.empty()
    return systems


def structure_sections(frame: pd.DataFrame, disp, *, source, load) -> None:
    """Weights against crystal system, found when asked for (``load()`` reads the structures of
    ``source``, None when they are not on this machine) and kept for the session; polymorph
    pairs (same formula, different structure) from ``frame`` alone."""
    st.subheader("Weights by crystal system")
    ids = frame["id"].astype(str)
    found = st.session_state["fusion_crystal_systems"]
    key = (source, tuple(ids))
    if source is not None and key not in found:
        slot = st.empty()
        if slot.button(
            f"Find the crystal systems of {len(ids)} structures (spglib)",
            key="fusion_find_systems",
            help="Reads the structures, then spglib finds each one's symmetry (about 5 ms each).",
        ):
            with slot.container():
                ds = load()
                found[key] = {} if ds is None else crystal_systems(ds, set(ids))
            slot.empty()
    systems = found.get(key)
    if source is None or systems == {}:
        st.info(
            "The structures of these materials are not on this machine (the model's training "
            "dataset was not found), so their crystal systems are unknown."
        )
    elif systems:
        frame = frame.assign(crystal_system=ids.map(systems).fillna("?"))
        st.plotly_chart(
            plots.weight_by_group(
                frame, "crystal_system", title="Composition weight by crystal system"
            ),
            key="fusion_systems",
        )
        st.caption(
            "Crystal systems from spglib (tolerance 0.1 Å). A system whose box sits low leans on "
            "the crystal graph more than the others."
        )

    st.subheader("Polymorph pairs")
    pairs = polymorph_pairs(frame)
    if pairs.empty:
        st.info(
            "No formula appears twice among these materials, so there are no polymorph pairs. "
            "Pairs show when structure matters: a composition-only model must predict the same "
            "value for every polymorph of a formula."
        )
        return
    st.caption(
        f"{len(pairs)} pairs of structures with the same formula. A composition-only model "
        "would put every pair on the horizontal zero line; points near the dashed diagonal are "
        "polymorphs the model tells apart through the structure branch."
    )
    if "target_a" in pairs:
        st.plotly_chart(
            plots.polymorph_scatter(pairs, disp, title="Polymorphs: predicted vs true difference"),
            key="fusion_polymorphs",
        )
    table = pairs.copy()
    for col in [c for c in table if c.startswith(("target", "prediction", "delta"))]:
        table[disp.short(col)] = disp.scale(table.pop(col))
    st.dataframe(table, hide_index=True, width="stretch", key="fusion_pairs")


models = state.models()
fusion = [
    m
    for m in models
    if "fusion" in str(m.get("family", "")).lower() or saved_weights(m) is not None
]

if not fusion:
    from engine import MODEL_REGISTRY

    families = sorted(MODEL_REGISTRY)
    fusion_families = [f for f in families if "fusion" in f]
    st.info(
        "**This page needs a fusion model, and none has been trained yet.**\n\n"
        "It shows, for a model that combines a composition branch (Magpie element statistics) "
        "with a crystal-graph branch, how much each material relies on each: the "
        "per-material attention weights w_comp and w_graph (attention fusion), their "
        "distribution, a table per material, the weights against the prediction error, and a "
        "contribution analysis (how much the error grows without each part).\n\n"
        + (
            f"Fusion families available: **{', '.join(fusion_families)}**. Train one on the "
            "**Train** page (pick it under *Model family*); it appears here when it is saved."
            if fusion_families
            else f"Model families installed: **{', '.join(families)}**; none is a fusion family yet."
        )
    )
    st.page_link("views/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()

names = [m["name"] for m in fusion]
prefer = next((m["name"] for m in fusion if m.get("family") == "attention-fusion"), names[0])
choice = st.selectbox(
    "Fusion model",
    names,
    key="fusion_model",
    index=names.index(state.page_model("fusion_model", names, prefer)),
    format_func=lambda n: state.model_label(fusion[names.index(n)]),
)
st.session_state[f"{state.PER_PICKER_PREFIX}fusion_model"] = choice
m = fusion[names.index(choice)]
disp = display_for(m["target"], m.get("unit"))
try:
    model = state.load_model(state.model_ref(m))
except Exception as exc:  # noqa: BLE001
    st.error(f"Could not load {m['name']}: {exc}")
    st.stop()
family = m.get("family", "")
st.caption(f"Family **{family}** · target {disp.label}")

# ---------------------------------------------------------------------------------------------
# Per-material weights

st.subheader("Per-material weights")
frame = None
if getattr(model, "has_fusion_weights", False):
    saved = saved_weights(m)
    sources = {}
    if saved is not None:
        sources["saved"] = "Saved validation and test predictions"
    if state.data_source() is not None:
        sources["current"] = f"Current dataset: {state.data_source().label}"
    sources["examples"] = "SOFC examples"
    which = st.radio(
        "Materials", list(sources), format_func=sources.get, horizontal=True, key="fusion_source"
    )
    source = None  # where the structures of ``frame`` are (None: not on this machine)
    if which == "saved":
        frame = saved
        source = state.training_source(model.card)
        load = partial(state.training_dataset, model.card)  # read only when asked for
    else:
        load = state.current_dataset if which == "current" else state.examples_dataset
        ds = load()
        if ds is not None and len(ds):
            source = ds.source
            key = ("fusion", state.model_ref(m), which, tuple(ds.ids))
            cache = st.session_state["fusion_cache"]
            if key not in cache:
                from engine import evaluate, fusion_weights

                with st.spinner(f"Weights of {len(ds)} structures…"):
                    if m["target"] in ds.numeric_columns():
                        _, computed = evaluate(model, ds, m["target"])
                    else:
                        computed = fusion_weights(model, ds.items)
                cache.clear()
                cache[key] = computed.rename(columns=ALIASES)
            frame = cache[key]
    if frame is None or frame.empty:
        st.info("No materials to show.")
    else:
        c1, c2, c3 = st.columns(3)
        c1.metric("Mean composition weight w_comp", f"{frame['w_comp'].mean():.2f}")
        c2.metric("Mean graph weight w_graph", f"{frame['w_graph'].mean():.2f}")
        c3.metric("Materials", len(frame))
        left, right = st.columns(2)
        left.plotly_chart(
            plots.weight_hist(frame["w_comp"], title="Composition weight per material"),
            key="fusion_hist",
        )
        if "error" in frame:
            right.plotly_chart(
                plots.weight_vs_error(frame, disp, title="Weight against error"), key="fusion_err"
            )
        else:
            right.info(
                "No true values for these materials, so the weights cannot be set "
                "against the error."
            )
        show = frame[
            [
                c
                for c in (
                    "split",
                    "id",
                    "formula",
                    "w_comp",
                    "w_graph",
                    "target",
                    "prediction",
                    "error",
                )
                if c in frame
            ]
        ].copy()
        for col in ("target", "prediction", "error"):
            if col in show:
                show[disp.short(col)] = disp.scale(show.pop(col))
        show = show.sort_values("w_comp", ascending=False, ignore_index=True)
        st.dataframe(
            show,
            hide_index=True,
            width="stretch",
            key="fusion_table",
            column_config={
                "w_comp": st.column_config.ProgressColumn(
                    "w_comp", min_value=0.0, max_value=1.0, format="%.2f"
                ),
                "w_graph": st.column_config.ProgressColumn(
                    "w_graph", min_value=0.0, max_value=1.0, format="%.2f"
                ),
            },
        )
        st.download_button(
            "Download weights (CSV)",
            csv_text(show),
            file_name=f"{m['name']}-fusion-weights.csv",
            mime="text/csv",
        )
        structure_sections(frame, disp, source=source, load=load)
elif family == "late-fusion":
    fitted = getattr(model.card, "fitted", {}) or {}
    alpha = fitted.get("alpha")
    st.info(
        "Late fusion has no per-material weights: one weight α mixes the two predictions for "
        "every material, ŷ = α·ŷ_RF + (1 − α)·ŷ_CGCNN"
        + (
            f". This model uses **α = {alpha:.2f}**, chosen on the validation split."
            if alpha is not None
            else "."
        )
    )
    if fitted.get("alpha_grid") and fitted.get("val_mae_by_alpha"):
        curve = pd.DataFrame(
            {
                "alpha": fitted["alpha_grid"],
                "mae": disp.scale(pd.Series(fitted["val_mae_by_alpha"])),
            }
        )
        fig = px.line(curve, x="alpha", y="mae", markers=True)
        fig.update_xaxes(title="α, weight of the random forest (unitless)")
        fig.update_yaxes(title=disp.short("Validation MAE"))
        fig.update_layout(height=320, margin={"l": 10, "r": 10, "t": 30, "b": 10})
        st.plotly_chart(fig, key="alpha_curve")
else:
    st.info(
        f"The {family} family learns no per-material weights (only attention fusion does); "
        "the contribution analysis below still shows how much it relies on each part."
    )

# ---------------------------------------------------------------------------------------------
# Contribution analysis

if hasattr(model.module, "fusion_parts"):
    st.subheader("Contribution analysis")
    st.caption(
        "How much the MAE grows when the composition part is zeroed, and when the graph "
        "vectors are shuffled across materials (5 shuffles, seed 0)."
    )
    materials = None  # reads the materials to perturb, once the button is pressed
    label = ""
    _, predictions = state.model_files(m)
    test_ids = set()
    if predictions is not None and "split" in predictions:
        test_ids = set(predictions.loc[predictions["split"] == "test", "id"].astype(str))
    if test_ids and state.training_source(model.card) is not None:
        materials = partial(training_materials, model.card, test_ids)
        label = f"the test split of {model.card.dataset.name} ({len(test_ids)} materials)"
    else:
        current = state.current_dataset()
        if current is not None and m["target"] in current.numeric_columns():
            materials = state.current_dataset
            label = f"the current dataset ({len(current)} materials)"
    if materials is None:
        st.caption(f"Load a dataset with a `{m['target']}` column on **Data** to run it.")
    elif st.button(f"Run on {label}", key="fusion_contrib"):
        from engine import contribution_analysis

        with st.spinner("Perturbing each part…"):
            try:
                result = contribution_analysis(model, materials(), m["target"])
            except ValueError as exc:
                st.error(str(exc))
                result = None
        if result is not None:
            table = result.table.copy()
            table[disp.short("MAE")] = disp.scale(table.pop("mae"))
            table[disp.short("MAE increase")] = disp.scale(table.pop("mae_increase"))
            table[disp.short("mean |Δ prediction|")] = disp.scale(table.pop("mean_abs_change"))
            st.metric(disp.short("MAE unperturbed"), f"{disp.scale(result.mae):.4g}")
            st.dataframe(
                table,
                hide_index=True,
                width="stretch",
                key="contrib_table",
                column_config={
                    "relative_contribution": st.column_config.ProgressColumn(
                        "relative contribution", min_value=0.0, max_value=1.0, format="%.2f"
                    )
                },
            )
