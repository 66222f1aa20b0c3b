"""Train: configure a run, start it as a background job, follow and cancel it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import state
from dashboard.components import plots
from dashboard.components.forms import config_widgets, validation_message
from dashboard.components.teaching import teach
from dashboard.components.units import display_for
from engine import (
    MODEL_REGISTRY,
    GraphConfig,
    JobState,
    JobStatus,
    SplitConfig,
    TrainConfig,
    cancel_job,
    delete_job,
    job_progress,
    job_request,
    job_status,
    job_trials,
    list_jobs,
    read_log,
    start_training_job,
)

st.title("Train")
teach("splits", "convolution")


def search_widgets(config_class) -> dict | None:
    """The reduced hyperparameter search of the form: the CGCNN grid values that apply to
    this family, and how many settings to sample; None unless switched on."""
    from engine import CGCNN_GRID, TRAINING_KEYS

    keys = [k for k in CGCNN_GRID if k in TRAINING_KEYS or k in config_class.model_fields]
    if not keys:
        return None
    with st.expander("Hyperparameter search (optional)"):
        enabled = st.checkbox(
            "Search instead of a single run",
            key="search_on",
            help="Trains one model per setting (epochs per trial = Training → epochs) on the "
            "same split and keeps the one with the lowest validation MAE. The test split is "
            "never used to choose.",
        )
        cols = st.columns(len(keys) + 1)
        grid = {
            k: col.multiselect(k, CGCNN_GRID[k], default=CGCNN_GRID[k], key=f"search_{k}")
            for k, col in zip(keys, cols)
        }
        size = 1
        for values in grid.values():
            size *= max(len(values), 1)
        trials = cols[-1].number_input(
            "trials",
            1,
            200,
            6,
            1,
            key="search_trials",
            help="Settings sampled from the grid without replacement (seeded by Training → seed).",
        )
        st.caption(f"The grid holds {size} settings; {min(int(trials), size)} will be tried.")
    return {"grid": grid, "n_trials": int(trials)} if enabled else None


# ----------------------------------------------------------------------------------------------
# Dataset and target

CURRENT = "current"
sources: dict[str, tuple[str, str, int | None, str | None]] = {}
src = state.data_source()
if src is not None:
    sources[CURRENT] = (src.path, f"Current dataset: {src.label}", src.limit, src.query)
for rel, path in state.dataset_choices().items():
    sources[rel] = (str(path), f"Data directory: {rel}", None, None)

jobs = list_jobs()
# open on a first visit without runs, and never collapsed by a run started from it
if st.session_state.get("_train_form_open") is None:
    st.session_state["_train_form_open"] = not jobs
with st.expander("New training run", expanded=st.session_state["_train_form_open"]):
    if not sources:
        st.info("Load or upload a labelled dataset on the **Data** page first.")
    else:
        keys = list(sources)
        pick = st.selectbox(
            "Dataset", keys, format_func=lambda k: sources[k][1], key="train_dataset"
        )
        path, label, limit, query = sources[pick]
        if pick != CURRENT:
            c1, c2 = st.columns(2)
            limit = (
                int(
                    c1.number_input(
                        "Read at most this many entries (0 = all)",
                        0,
                        None,
                        0 if "demo" in pick else state.DEFAULT_LIMIT,
                        100,
                        key=f"train_limit_{pick}",
                    )
                )
                or None
            )
            query = (
                c2.text_input(
                    "Filter (optional, pandas query)",
                    key=f"train_query_{pick}",
                    placeholder="n_sites <= 24",
                ).strip()
                or None
            )
        try:
            dataset = state.load_dataset(path, limit=limit, query=query)
        except Exception as exc:  # noqa: BLE001
            st.error(f"Could not read this dataset: {exc}")
            dataset = None
        numeric = dataset.numeric_columns() if dataset is not None else []
        if dataset is not None and not numeric:
            st.warning("This dataset has no numeric column to learn. Pick a labelled dataset.")
        if numeric:
            c1, c2 = st.columns(2)
            target = c1.selectbox(
                "Target",
                numeric,
                index=numeric.index(state.preferred_target(numeric)),
                key="train_target",
            )
            n_known = int(dataset.table[target].notna().sum())
            c1.caption(
                f"{n_known} of {len(dataset)} structures have a value "
                f"({display_for(target).unit or 'no unit'})."
            )
            families = sorted(MODEL_REGISTRY)
            family = c2.selectbox(
                "Model family",
                families,
                index=families.index("cgcnn") if "cgcnn" in families else 0,
                key="train_family",
                help="Every family registered in the engine appears here.",
            )
            config_class = MODEL_REGISTRY[family].config_class
            summary = (config_class.__doc__ or "").strip().split("\n\n")[0]
            if summary:
                c2.caption(" ".join(summary.split()))
            targets = [target]
            if "n_tasks" in config_class.model_fields:  # a multi-target family
                others = [c for c in numeric if c != target]
                targets += c1.multiselect(
                    "Other targets (learned together)",
                    others,
                    key="train_more_targets",
                    help="The first target above is the primary one (early stopping and the "
                    "headline metrics); each target gets its own head and learned loss weight.",
                )
                if len(targets) < 2:
                    c1.warning("Pick at least one other target: multitask learns several.")
            default_name = (
                f"{family}-{target.replace('agl_', '').replace('_300K', '')}-"
                f"{datetime.now():%Y%m%d-%H%M}"
            )
            text_cols = [
                c
                for c in dataset.table.columns
                if c not in dataset.numeric_columns() and c not in ("id", "formula")
            ]
            with st.form("train_form"):
                name = st.text_input(
                    "Model name",
                    value=default_name,
                    help="The model is saved under this name with your models.",
                )
                st.markdown(f"**Model: {family}**")
                model_values = config_widgets(config_class, key=f"model_{family}", columns=4)
                st.markdown("**Graph**")
                graph_values = config_widgets(
                    GraphConfig,
                    key="graph",
                    columns=4,
                    skip={
                        "gaussian_start",
                        "gaussian_stop",
                        "gaussian_step",
                        "gaussian_width",
                        "pad_like_original",
                    },
                )
                with st.expander("Gaussian distance expansion"):
                    gauss_values = config_widgets(
                        GraphConfig,
                        key="gauss",
                        columns=4,
                        skip={"cutoff", "max_neighbors", "isolated_atoms", "pad_like_original"},
                    )
                st.markdown("**Training**")
                train_values = config_widgets(TrainConfig, key="training", columns=4)
                search = search_widgets(config_class)
                st.markdown("**Split**")
                s1, s2, s3, s4, s5 = st.columns(5)
                kind = s1.selectbox(
                    "kind",
                    ["group", "random", "column"],
                    help="group: by reduced formula (polymorphs stay together)",
                )
                val_fraction = s2.number_input("val fraction", 0.01, 0.9, 0.1, 0.05)
                test_fraction = s3.number_input("test fraction", 0.0, 0.9, 0.1, 0.05)
                split_seed = s4.number_input("split seed", 0, None, 0, 1)
                column = s5.selectbox(
                    "split column (kind = column)",
                    ["(none)", *text_cols],
                    index=1 + text_cols.index("crabnet_split")
                    if "crabnet_split" in text_cols
                    else 0,
                )
                submitted = st.form_submit_button("Start training", type="primary")
            if submitted:
                try:
                    if search is not None and not all(search["grid"].values()):
                        raise ValueError("the search needs at least one value of every setting")
                    if "n_tasks" in config_class.model_fields and len(targets) < 2:
                        raise ValueError(
                            f"{family} learns several targets: pick at least one "
                            "under 'Other targets'"
                        )
                    model_cfg = config_class(**model_values)
                    graph_cfg = GraphConfig(**{**graph_values, **gauss_values})
                    train_cfg = TrainConfig(**train_values)
                    split_cfg = SplitConfig(
                        kind=kind,
                        val_fraction=val_fraction,
                        test_fraction=test_fraction,
                        seed=int(split_seed),
                        column=None if column == "(none)" else column,
                    )
                except Exception as exc:  # noqa: BLE001 - pydantic ValidationError
                    st.error(f"Invalid settings: {validation_message(exc)}")
                else:
                    try:
                        job_id = start_training_job(
                            path,
                            targets,
                            model=model_cfg,
                            graph=graph_cfg,
                            training=train_cfg,
                            split=split_cfg,
                            name=name.strip() or None,
                            query=query,
                            limit=limit,
                            search=search,
                        )
                    except Exception as exc:  # noqa: BLE001
                        st.error(f"Could not start the run: {exc}")
                    else:
                        st.session_state["job_id"] = job_id
                        st.session_state["target"] = target
                        st.success(
                            f"Started run **{job_id}**. It runs in the background: you "
                            "can leave this page or reload it."
                        )
                        jobs = list_jobs()

# ----------------------------------------------------------------------------------------------
# Runs

st.subheader("Runs")
if not jobs:
    st.info("No training run yet.")
    st.stop()


def _best_val_mae(job: JobStatus):
    mae = job.metrics.get("val", {}).get("mae")
    if mae is None:
        return "–"
    return display_for(job.target or "").fmt(mae)


overview = pd.DataFrame(
    [
        {
            "run": j.id,
            "model name": j.name or "",
            "status": j.state.value,
            "epoch": f"{j.epoch}/{j.epochs or '?'}",
            "target": j.target or "",
            "dataset": Path(j.dataset or "").name,
            "started": f"{j.created:%Y-%m-%d %H:%M:%S}" if j.created else "",
            "val MAE": _best_val_mae(j),
        }
        for j in jobs
    ]
)
st.dataframe(overview, hide_index=True, width="stretch", height=min(38 + 35 * len(overview), 300))

listed = {j.id: j for j in jobs}  # one status per run: the table, selector and panel agree
ids = list(listed)
selected = st.session_state.get("job_id")
if selected not in ids:
    selected = ids[0]
if st.session_state.get("job_pick") not in ids or (
    st.session_state.get("job_pick") != selected and st.session_state.get("_job_seen") != selected
):
    st.session_state["job_pick"] = selected  # a run started or chosen elsewhere is shown
chosen = st.selectbox(
    "Show run",
    ids,
    key="job_pick",
    format_func=lambda i: f"{i} — {listed[i].name or ''} ({listed[i].state})",
)
st.session_state["job_id"] = chosen
st.session_state["_job_seen"] = chosen
live = listed[chosen].state.active

STATUS_ICON = {
    JobState.QUEUED: ":material/hourglass_top:",
    JobState.RUNNING: ":material/directions_run:",
    JobState.FINISHED: ":material/check_circle:",
    JobState.FAILED: ":material/error:",
    JobState.CANCELLED: ":material/cancel:",
}


def show_run(job_id: str, listed_state: JobState) -> None:
    """The panel of one run; ``listed_state``: its state in the runs table and selector."""
    status = job_status(job_id)
    state = status.state
    if state != listed_state:
        st.rerun(scope="app")  # queued → running → finished/cancelled: table and selector too
    disp = display_for(status.target or "")
    st.markdown(f"### {STATUS_ICON[state]} {status.name or job_id} — {state}")
    epoch, epochs, step = status.epoch, status.epochs or 0, status.unit
    if state.active:
        frac = min(epoch / epochs, 1.0) if epochs else 0.0
        text = (
            f"{step} {epoch} of {epochs}"
            if epoch
            else "loading data and building graphs…"
            if state == JobState.RUNNING
            else "starting…"
        )
        st.progress(frac, text=text)
        b1, b2, _ = st.columns([1, 1, 3])
        if b1.button(
            "Cancel",
            key=f"cancel_{job_id}",
            help="Stops within a few seconds; the best completed epoch is saved.",
        ):
            with st.spinner("Stopping the run…"):
                cancel_job(job_id)
            st.rerun(scope="app")
        if b2.button(
            "Stop now", key=f"kill_{job_id}", help="End the process at once; nothing is saved."
        ):
            cancel_job(job_id, force=True)
            st.rerun(scope="app")
    elif state == JobState.FAILED:
        st.error(f"The run failed: {status.error or 'no reason recorded'}")
    elif state == JobState.CANCELLED:
        saved = status.model_path
        st.warning(
            f"Cancelled ({status.stop_reason or 'by user'}) after {step} {epoch}."
            + (
                f" The best epoch so far was saved as **{status.name}**."
                if saved
                else " Nothing was saved."
            )
        )
    elif state == JobState.FINISHED:
        reason = status.stop_reason
        st.success(
            f"Finished after {epoch} {step}s"
            + (f" ({reason})" if reason else "")
            + f". Saved as **{status.name}**."
        )
    metrics = status.metrics
    if metrics:
        cols = st.columns(len(metrics))
        for col, (part, m) in zip(cols, metrics.items()):
            col.metric(
                f"{part} MAE ({disp.unit})" if disp.unit else f"{part} MAE",
                f"{(m.get('mae') or float('nan')) * disp.factor:.4g}",
                help=f"R = {m.get('r')}, n = {m.get('n')}",
            )
    trials = job_trials(job_id)
    if trials is not None:
        trials = trials.sort_values("val_mae", na_position="last")
        trials["val_mae"] = disp.scale(trials["val_mae"])
        st.markdown("**Trials** (best first; chosen on validation MAE)")
        st.dataframe(
            trials.rename(columns={"val_mae": disp.short("val MAE")}),
            hide_index=True,
            width="stretch",
            key=f"trials_{job_id}_{len(trials)}",
        )
    history = pd.DataFrame(job_progress(job_id).history)
    if len(history):
        c1, c2 = st.columns(2)
        c1.plotly_chart(
            plots.learning_curves(history, title="Loss per epoch"),
            key=f"loss_{job_id}_{len(history)}",
        )
        c2.plotly_chart(
            plots.mae_curves(history, disp, title="MAE per epoch"),
            key=f"mae_{job_id}_{len(history)}",
        )
    a1, a2, a3 = st.columns([1, 1, 2])
    has_model = bool(status.model_path) and Path(status.model_path).is_dir()
    if has_model and a1.button("Open in Results", key=f"results_{job_id}", type="primary"):
        st.session_state["model_name"] = status.name
        st.switch_page("views/results.py")
    if state.final:
        remove_model = a3.checkbox("also delete the saved model", key=f"rm_model_{job_id}")
        if a2.button("Delete run", key=f"delete_{job_id}"):
            try:
                delete_job(job_id, remove_model=remove_model)
            except ValueError as exc:
                st.error(str(exc))
            else:
                st.session_state["job_id"] = None
                st.rerun(scope="app")
    with st.expander("Log (last lines)"):
        st.code(read_log(job_id, lines=40) or "(empty)", language=None)
    with st.expander("Settings of this run"):
        request = job_request(job_id)
        if request is not None:
            st.code(request.model_dump_json(indent=2), language="json")


monitor = st.fragment(show_run, run_every=2.0 if live else None)
monitor(chosen, listed[chosen].state)
if live:
    st.caption("This panel refreshes every 2 s. The run continues if you close the page.")
