"""Fusion weights: how much an attention-fusion model relies on composition versus structure.

Contract with the engine (for the fusion families of the next release): a fusion model's
``predictions.csv`` carries, per material, the composition weight ``w_comp`` and the graph
weight ``w_graph`` (they sum to 1). Models whose family name contains ``fusion``, or whose
predictions hold these columns, are listed here.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import state
from dashboard.components import plots
from dashboard.components.teaching import teach
from dashboard.components.units import display_for

WEIGHT_COLUMNS = ("w_comp", "w_graph")

st.title("Fusion weights")
teach("fusion")


def fusion_frame(m: dict) -> pd.DataFrame | None:
    _, predictions = state.model_files(m)
    if predictions is None or "w_comp" not in predictions:
        return None
    frame = predictions.copy()
    if "w_graph" not in frame:
        frame["w_graph"] = 1.0 - frame["w_comp"]
    return frame


models = state.models()
candidates = []
for m in models:
    frame = fusion_frame(m)
    if frame is not None or "fusion" in str(m.get("family", "")).lower():
        candidates.append((m, frame))

if not candidates:
    from engine import MODEL_REGISTRY

    families = ", ".join(sorted(MODEL_REGISTRY))
    st.info(
        "**This page needs a fusion model, and none is available yet.**\n\n"
        "It shows, for a model that combines a composition branch with a crystal-graph branch "
        "through attention, the per-material weights w_comp and w_graph: their distribution, a "
        "table per material, and the weights against the prediction error.\n\n"
        f"Model families installed now: **{families}** (no fusion family). Once the engine "
        "provides an attention-fusion family, train one on the **Train** page (it will appear "
        "in the family list by itself); its saved predictions carry the weights "
        f"(columns {', '.join(f'`{c}`' for c in WEIGHT_COLUMNS)} of `predictions.csv`) and this "
        "page picks it up."
    )
    st.page_link("views/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()

names = [m["name"] for m, _ in candidates]
choice = st.selectbox("Fusion model", names, key="fusion_model")
m, frame = candidates[names.index(choice)]
disp = display_for(m["target"], m.get("unit"))

if frame is None:
    st.warning(
        f"{m['name']} is a fusion model, but its `predictions.csv` has no `w_comp` column, so "
        "there are no per-material weights to show. Retrain it with an engine that records them."
    )
    st.stop()

c1, c2, c3 = st.columns(3)
c1.metric("Mean composition weight", f"{frame['w_comp'].mean():.2f}")
c2.metric("Mean graph weight", f"{frame['w_graph'].mean():.2f}")
c3.metric("Materials", len(frame))

left, right = st.columns(2)
left.plotly_chart(plots.weight_hist(frame["w_comp"], title="Composition weight per material"),
                  key="fusion_hist")
if "error" in frame:
    right.plotly_chart(plots.weight_vs_error(frame, disp, title="Weight against error"),
                       key="fusion_err")
else:
    right.info("No errors recorded (no true values), so weights cannot be set against error.")

show = frame[[c for c in ("split", "id", "formula", "w_comp", "w_graph", "target", "prediction",
                          "error") if c in frame]].copy()
for col in ("target", "prediction", "error"):
    if col in show:
        show[disp.short(col)] = disp.scale(show.pop(col))
st.dataframe(show, hide_index=True, width="stretch", column_config={
    "w_comp": st.column_config.ProgressColumn("w_comp", min_value=0.0, max_value=1.0,
                                              format="%.2f"),
    "w_graph": st.column_config.ProgressColumn("w_graph", min_value=0.0, max_value=1.0,
                                               format="%.2f"),
})
st.download_button("Download weights (CSV)", show.to_csv(index=False),
                   file_name=f"{m['name']}-fusion-weights.csv", mime="text/csv")
