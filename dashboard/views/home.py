"""Home: what the tool does, the models available with their measured accuracy, a quick start."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from dashboard import state
from dashboard.components.sofc import CTE_TARGET
from dashboard.components.teaching import NOTES, teaching_on
from dashboard.components.units import display_for

st.title("Crystal-graph screening")
st.markdown(
    "Predict properties of inorganic crystals from their structure with **crystal graph "
    "convolutional neural networks** (CGCNN, Xie & Grossman 2018). The tool's flagship task is "
    "the **thermal expansion coefficient (CTE)** of candidate solid-oxide fuel-cell materials: "
    "electrodes and electrolytes must expand alike, or the cell cracks. Upload structures "
    "(CIF, POSCAR, XYZ, JSON, zip), look at the graph a model builds from them, train your own "
    "model in the background, inspect its accuracy and its learnt embedding, and rank "
    "candidates."
)
st.markdown(CTE_TARGET)

models = state.models()
datasets = state.dataset_choices()
try:
    from engine import list_jobs

    jobs = list_jobs()
except Exception:  # noqa: BLE001
    jobs = []

c1, c2, c3, c4 = st.columns(4)
c1.metric("Models available", len(models))
c2.metric("Datasets in the data folder", len(datasets))
c3.metric("Training runs", len(jobs))
c4.metric("Running now", sum(j.state.active for j in jobs))

st.subheader("Available models")


def _metric(m: dict, part: str, key: str):
    value = (m.get("metrics") or {}).get(part, {}).get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def _flagship_accuracy(models: list[dict]) -> None:
    """Test MAE of the thermal-expansion models next to the published results."""
    from dashboard.components import plots
    from engine import ANCHORS

    spec = ANCHORS[state.FLAGSHIP_TARGET]
    rows = [
        {
            "label": m["name"],
            "mae": _metric(m, "test", "mae"),
            "kind": "shipped model (our test split)"
            if m.get("source") == "shipped"
            else "your model (its test split)",
        }
        for m in models
        if m["target"] == state.FLAGSHIP_TARGET and _metric(m, "test", "mae") is not None
    ]
    if not rows:
        return
    rows += [
        {
            "label": f"{name} ({where})",
            "mae": metrics["mae"],
            "kind": "published (another test set)",
        }
        for name, metrics, where in spec["anchors"]
        if "mae" in metrics
    ]
    display = display_for(state.FLAGSHIP_TARGET, "1/K")
    st.plotly_chart(
        plots.accuracy_bars(
            pd.DataFrame(rows),
            display,
            goal=spec["goal"]["mae"],
            title="Thermal expansion: test error against published results",
        ),
        key="flagship_accuracy",
    )
    st.caption(
        "Lower is better. The published results were measured on other test sets (CrabNet's "
        "formulas), so they place our models in the field rather than rank them; "
        "`docs/accuracy.md` has the full comparison."
    )


rows = []
for m in models:
    disp = display_for(m["target"], m.get("unit"))
    val_mae, test_mae = _metric(m, "val", "mae"), _metric(m, "test", "mae")
    rows.append(
        {
            "model": m["name"],
            "target": disp.name if disp.name != m["target"] else m["target"],
            "unit shown": disp.unit or "–",
            "validation MAE": None if val_mae is None else val_mae * disp.factor,
            "test MAE": None if test_mae is None else test_mae * disp.factor,
            "test R": _metric(m, "test", "r"),
            "family": m.get("family", ""),
            "source": m.get("source", ""),
            "description": m.get("description", ""),
        }
    )
if rows:
    st.dataframe(
        pd.DataFrame(rows),
        hide_index=True,
        width="stretch",
        column_config={
            "validation MAE": st.column_config.NumberColumn(format="%.4g"),
            "test MAE": st.column_config.NumberColumn(format="%.4g"),
            "test R": st.column_config.NumberColumn(format="%.3f"),
        },
    )
    st.caption(
        "Accuracy as recorded in each model's card (`model.json`), in the unit shown. The "
        "original CGCNN checkpoints record only the validation MAE of their paper's training run."
    )
    _flagship_accuracy(models)
    default = state.default_model(models)
    if default is not None and default["target"] != state.FLAGSHIP_TARGET:
        st.info(
            "No thermal-expansion model is installed yet. Train one on the **Train** page "
            "(the demo set of `aflow_agl` trains in a few minutes), or use one of the models "
            "above for its own property."
        )
else:
    st.warning("No model is available yet: train one on the **Train** page.")

st.subheader("Quick start")
steps = [
    (
        "views/data.py",
        "1. Data",
        "load the `aflow_agl` demo set from the data folder, or upload your own structures.",
    ),
    (
        "views/structure.py",
        "2. Structure & graph",
        "look at one crystal and the neighbour graph the model builds from it.",
    ),
    (
        "views/train.py",
        "3. Train",
        "pick a target (e.g. the volumetric CTE at 300 K) and start a background run.",
    ),
    ("views/results.py", "4. Results", "parity plot, errors and learning curves of a run."),
    (
        "views/embeddings.py",
        "5. Embeddings",
        "map the learnt crystal vectors in 2-D and colour them by property.",
    ),
    (
        "views/predict.py",
        "6. Predict",
        "rank candidate materials (or the shipped SOFC examples) and export a CSV.",
    ),
]
for path, label, text in steps:
    left, right = st.columns([1, 4])
    left.page_link(path, label=label)
    right.markdown(text)

st.subheader("Teaching notes")
if teaching_on():
    st.caption("Teaching notes are on: every page shows short explanations like these.")
    for topic in ("graph", "convolution", "pooling", "embeddings"):
        title, text = NOTES[topic]
        with st.expander(title, expanded=topic == "graph"):
            st.markdown(text)
            if topic == "convolution":
                st.latex(
                    r"\mathbf{v}_i \leftarrow \mathbf{v}_i + \sum_{j,k} "
                    r"\sigma(\mathbf{z}_{(i,j)_k}\mathbf{W}_f + \mathbf{b}_f) \odot "
                    r"g(\mathbf{z}_{(i,j)_k}\mathbf{W}_s + \mathbf{b}_s),\quad "
                    r"\mathbf{z}_{(i,j)_k} = \mathbf{v}_i \oplus \mathbf{v}_j \oplus "
                    r"\mathbf{u}_{(i,j)_k}"
                )
else:
    st.markdown(
        "Switch on **Teaching notes** in the sidebar to get short explanations of the crystal "
        "graph, the gated convolution (eq. 1 of the CGCNN paper), pooling and embeddings on "
        "every page."
    )

st.caption(
    "References: T. Xie & J. C. Grossman, Phys. Rev. Lett. 120, 145301 (2018) (CGCNN); "
    "C. Toher et al., Phys. Rev. B 90, 174107 (2014) (AFLOW AGL thermal properties)."
)
