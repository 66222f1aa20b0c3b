"""Router of the crystal-graph screening dashboard: ``streamlit run dashboard/app.py``.

Sets the page config and the session defaults, draws the sidebar shared by all pages (teaching
notes switch, current dataset, running jobs) and hands over to the chosen page.

The pages live in ``dashboard/views/``, not ``dashboard/pages/``: Streamlit treats a ``pages/``
folder beside the entry script as a legacy (v1) multipage app, and then a direct link such as
``/data`` runs the page without this router (no session defaults, no sidebar) until someone
opens the root URL.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run` puts dashboard/ on the path, not the project
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402 (after the sys.path fix above)

from dashboard import state  # noqa: E402

st.set_page_config(
    page_title="Crystal-graph screening",
    page_icon=str(ROOT / "dashboard" / "static" / "favicon.png"),  # local: no CDN fetch
    layout="wide",
    initial_sidebar_state="expanded",
)
state.init()

PAGES = {
    "": [
        st.Page(
            "views/home.py", title="Home", icon=":material/home:", default=True, url_path="home"
        ),
    ],
    "Explore": [
        st.Page("views/data.py", title="Data", icon=":material/table:", url_path="data"),
        st.Page(
            "views/structure.py",
            title="Structure & graph",
            icon=":material/hub:",
            url_path="structure",
        ),
    ],
    "Model": [
        st.Page(
            "views/train.py", title="Train", icon=":material/model_training:", url_path="train"
        ),
        st.Page(
            "views/results.py", title="Results", icon=":material/insights:", url_path="results"
        ),
        st.Page(
            "views/embeddings.py",
            title="Embeddings",
            icon=":material/scatter_plot:",
            url_path="embeddings",
        ),
        st.Page(
            "views/fusion.py", title="Fusion weights", icon=":material/merge:", url_path="fusion"
        ),
    ],
    "Screen": [
        st.Page("views/predict.py", title="Predict", icon=":material/science:", url_path="predict"),
        st.Page("views/screen.py", title="Screen", icon=":material/filter_alt:", url_path="screen"),
    ],
}

page = st.navigation(PAGES)

with st.sidebar:
    st.toggle(
        "Teaching notes",
        key="teaching",
        help="Short explanations of the crystal graph, the gated convolution, pooling and "
        "embeddings, shown on every page.",
    )
    state.keep_teaching_in_url()
    dataset_caption = st.empty()
    try:
        from engine import list_jobs

        active = [j for j in list_jobs() if j.state.active]
    except Exception:  # noqa: BLE001 - the sidebar never fails because of a job folder
        active = []
    if active:
        st.caption(f"Training runs in progress: **{len(active)}** (see **Train**)")
    state.limits_settings()


def _show_dataset() -> None:
    src = state.data_source()
    if src is not None:
        text = f"Dataset: **{src.label}**" + (f" (first {src.limit})" if src.limit else "")
    else:
        text = "Dataset: none loaded (see **Data**)"
    dataset_caption.caption(text)


_show_dataset()
with state.page_activity():
    page.run()
_show_dataset()  # again after the page: "Load dataset" there shows at once, not a rerun later
state.warm_up()  # once per server, after the first page is drawn
