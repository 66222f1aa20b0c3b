"""Data: upload structures or a labelled dataset, or pick one from the data directory."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import state
from dashboard.components import optimade, plots
from dashboard.components.structinfo import element_counts
from dashboard.components.teaching import teach
from dashboard.components.units import display_for

st.title("Data")
teach("splits")

tab_upload, tab_dir, tab_examples = st.tabs(["Upload files", "Data directory", "SOFC examples"])

with tab_upload:
    try:
        from engine import SUPPORTED_FORMATS
    except ImportError:  # pragma: no cover
        SUPPORTED_FORMATS = "CIF, POSCAR, XYZ, JSON, JSON lines, zip"
    st.markdown(
        "Upload one or many structure files, or a zip. Accepted: "
        f"{SUPPORTED_FORMATS}. For a **labelled** dataset, upload a JSON-lines file with label "
        "keys, or CIFs together with an `id_prop.csv` (id, target) / a CSV with a header "
        "(its id column names the files), loose or in one zip."
    )
    uploaded = st.file_uploader(
        "Structure files or a labelled dataset",
        accept_multiple_files=True,
        key="data_upload",
        help="Files that cannot be read are listed with the reason; the rest are kept.",
    )
    if uploaded:
        files = tuple((f.name, f.getvalue()) for f in uploaded)
        try:
            path = state.save_upload(files)
        except Exception as exc:  # noqa: BLE001 - show, never crash
            st.error(f"Could not store the upload: {exc}")
        else:
            label = state.upload_label([f.name for f in uploaded])
            current = state.data_source()
            if current is None or current.path != path:
                state.set_data_source(path, label=label, origin="upload")
            try:
                n_loaded = len(state.load_dataset(path))
            except Exception:  # noqa: BLE001 - reported below with the dataset
                n_loaded = 0
            if n_loaded:
                st.success(f"Using {label}: {n_loaded} structure{'' if n_loaded == 1 else 's'}.")
            else:
                st.error(f"Nothing usable in {label}: no structure could be read (see below).")
        from engine import detect_format

        # a folder read skips files of unknown format silently; an upload should say so
        ignored = [
            f.name
            for f in uploaded
            if detect_format(f.name) is None and not f.name.lower().endswith(".csv")
        ]
        st.session_state["upload_ignored"] = ignored
    else:
        st.session_state["upload_ignored"] = []

with tab_dir:
    choices = state.dataset_choices()
    if not choices:
        st.info(
            "No data directory found. Set the environment variable `CRYSTAL_SCREEN_DATA` to a "
            "folder of datasets (JSON lines, or CIF folders with `id_prop.csv`) and restart."
        )
    else:
        names = list(choices)
        default = next((n for n in names if n.endswith("demo.jsonl.gz")), names[0])
        with st.form("dataset_from_dir"):
            name = st.selectbox(
                "Dataset", names, index=names.index(default), help=f"Found in {state.data_root()}"
            )
            c1, c2 = st.columns(2)
            limit = c1.number_input(
                "Read at most this many entries (0 = all)",
                min_value=0,
                value=state.DEFAULT_LIMIT,
                step=100,
                help="Symmetry analysis and training take longer on big sets.",
            )
            query = c2.text_input(
                "Filter (optional, pandas query)",
                placeholder="n_sites <= 24",
                help="E.g. `n_sites <= 24 and density > 4`. Quote odd column names in backticks.",
            )
            if st.form_submit_button("Load dataset", type="primary"):
                state.set_data_source(
                    choices[name],
                    label=name,
                    limit=int(limit) or None,
                    query=query.strip() or None,
                    origin="data directory",
                )

with tab_examples:
    st.markdown(
        "Fifteen idealised cells of common solid-oxide fuel-cell materials (perovskite "
        "cathodes and proton conductors, fluorite electrolytes, the Ni/NiO anode), built from "
        "tabulated lattice parameters. See `assets/examples/README.md` for the sources."
    )
    if st.button("Use the SOFC examples", key="use_examples"):
        state.set_data_source(state.examples_dir(), label="SOFC examples", origin="examples")

found = optimade.search("data")
if found is not None and found.new:
    state.set_data_source(optimade.save(found), label=found.label, origin="OPTIMADE")

src = state.data_source()
if src is None:
    st.info("No dataset loaded yet: upload files or pick a dataset above.")
    st.stop()

dataset = state.current_dataset()
if dataset is None:
    st.stop()

st.subheader(f"{src.label}")
numeric = dataset.numeric_columns()
c1, c2, c3 = st.columns(3)
c1.metric("Structures loaded", len(dataset))
c3.metric("Numeric label columns", len(numeric))


def _shown(source: str) -> str:
    """An entry's name as uploaded (without the upload folder's own name)."""
    return source.removeprefix("upload/") if src.origin == "upload" else source


failures = [{"file / entry": _shown(e.source), "reason": e.reason} for e in dataset.errors]
if src.origin == "upload":
    from dashboard.uploads import upload_problems

    failures += [
        {"file / entry": p["source"], "reason": p["reason"]} for p in upload_problems(src.path)
    ]
    failures += [
        {
            "file / entry": name,
            "reason": "not a structure file: the name does not say "
            f"which format it is (accepted: {SUPPORTED_FORMATS})",
        }
        for name in st.session_state.get("upload_ignored", [])
    ]
c2.metric("Entries that failed", len(failures))
if failures:
    with st.expander(
        (
            "1 file or entry could not be used"
            if len(failures) == 1
            else f"{len(failures)} files or entries could not be used"
        )
        + " — see why",
        expanded=len(dataset) == 0 or len(failures) <= 5,
    ):
        st.dataframe(pd.DataFrame(failures), hide_index=True, width="stretch")
if len(dataset) == 0:
    st.warning("No structure could be read from this source.")
    st.stop()

target = None
if numeric:
    target = st.selectbox(
        "Target column",
        numeric,
        index=numeric.index(state.preferred_target(numeric)),
        key="data_target",
        help="Shown in the table and the histogram; also the default on the Train page.",
    )
    st.session_state["target"] = target

info = state.describe(dataset, state.dataset_key(dataset, src))
table = info.drop(columns=["sg number", "elements"]).copy()
disp = display_for(target) if target else None
if target:  # the target right after the formula, where it is seen without scrolling
    table.insert(
        2,
        disp.label,
        disp.scale(dataset.table[target].to_numpy(dtype=float, na_value=float("nan"))),
    )

st.markdown("**Structures** — click a row to open it on the *Structure & graph* page.")
event = st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    height=360,
    key="data_table",
    on_select="rerun",
    selection_mode="single-row",
    column_config={disp.label: st.column_config.NumberColumn(format="%.3f")} if disp else None,
)
rows = event.selection.rows if event is not None else []
if rows:
    chosen = table.iloc[rows[0]]["id"]
    st.session_state["structure_id"] = chosen
    st.page_link(
        "views/structure.py", label=f"Open {chosen} on Structure & graph", icon=":material/hub:"
    )

left, right = st.columns(2)
with left:
    if target:
        values = dataset.table[target].dropna()
        if len(values):
            st.plotly_chart(
                plots.histogram(values, disp, title=f"{disp.name}: distribution"), key="target_hist"
            )
            st.caption(
                f"{len(values)} of {len(dataset)} structures have a value. "
                f"Mean {disp.fmt(values.mean())}, median {disp.fmt(values.median())}."
            )
        else:
            st.info(f"No structure has a value for {target}.")
        if target == state.FLAGSHIP_TARGET:
            teach("cte")
    else:
        st.info(
            "This dataset has no numeric label column: it can be used for predictions, "
            "not for training."
        )
with right:
    counts = element_counts(info["elements"])
    st.plotly_chart(
        plots.element_bar(counts, title="Elements: structures containing each"), key="element_bar"
    )

with st.expander("All columns of the dataset table"):
    st.dataframe(dataset.table, hide_index=True, width="stretch")
