"""Results: metrics, parity plot, residuals and learning curves of a run or any saved model;
two runs side by side; downloads."""

from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import state
from dashboard.components import plots
from dashboard.components.teaching import teach
from dashboard.components.units import Display, display_for
from dashboard.components.viewer import describe_line, show_structure
from engine import csv_text, resolve_source

st.title("Results")
teach("metrics")

models = state.models()
if not models:
    st.info("No model yet: train one on the **Train** page.")
    st.stop()

c1, c2 = st.columns([3, 2])
with c1:
    first = state.choose_model("Model", key="results_model")
with c2:
    compare = st.checkbox("Compare with a second model", key="results_compare")
    second = None
    if compare:
        others = [m for m in models if m["name"] != first["name"]]
        if others:
            names = [m["name"] for m in others]
            wanted = st.session_state.get("compare_model")
            second_name = st.selectbox(
                "Second model",
                names,
                index=names.index(wanted) if wanted in names else 0,
                key="results_second",
                format_func=lambda n: state.model_label(others[names.index(n)]),
            )
            st.session_state["compare_model"] = second_name
            second = others[names.index(second_name)]
        else:
            st.caption("There is only one model.")


def metrics_table(m: dict, disp: Display) -> pd.DataFrame:
    rows = []
    for part in ("train", "val", "test"):
        vals = (m.get("metrics") or {}).get(part)
        if not vals:
            continue

        def get(key, scale=1.0, vals=vals):
            v = vals.get(key)
            return None if v is None or (isinstance(v, float) and math.isnan(v)) else v * scale

        rows.append(
            {
                "split": {"val": "validation"}.get(part, part),
                "n": get("n"),
                disp.short("MAE"): get("mae", disp.factor),
                disp.short("RMSE"): get("rmse", disp.factor),
                "R": get("r"),
                "R²": get("r2"),
            }
        )
    return pd.DataFrame(rows)


def zip_directory(path: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(path.rglob("*")):
            if p.is_file():
                zf.write(p, Path(path.name) / p.relative_to(path))
    return buf.getvalue()


@st.cache_data(max_entries=4, show_spinner="Zipping the model directory…")
def _zip_cached(path: str, mtime: float) -> bytes:
    return zip_directory(Path(path))


def card_of(m: dict):
    try:
        return state.model_card(m)  # from model.json, without loading the weights
    except Exception as exc:  # noqa: BLE001
        st.error(f"Could not load {m['name']}: {exc}")
        return None


def source_datasets(card) -> list:
    """The dataset the model was trained on (if still on disk) and the current dataset."""
    return [state.training_dataset(card), state.current_dataset()]


def task_view(m: dict, history, predictions, task: str):
    """One target of a multi-target model as if it were a single-target one: its metrics
    (``<task>/mae`` …), predictions (``target_<task>`` … renamed to ``target`` …, rows without
    that label dropped) and learning curves (``train_mae_<task>``/``val_mae_<task>``)."""
    from engine import per_task_metrics

    k = m["targets"].index(task)
    metrics = {
        part: per_task_metrics(vals, task) for part, vals in (m.get("metrics") or {}).items()
    }
    m = {**m, "target": task, "unit": (m.get("units") or [None] * (k + 1))[k], "metrics": metrics}
    if predictions is not None and f"prediction_{task}" in predictions:
        columns = {f"{c}_{task}": c for c in ("target", "prediction", "error")}
        predictions = (
            predictions.drop(columns=["target", "prediction", "error"])
            .rename(columns=columns)
            .dropna(subset=["target"])
        )
    if history is not None and f"val_mae_{task}" in history:
        history = history.drop(columns=["train_mae", "val_mae"]).rename(
            columns={f"train_mae_{task}": "train_mae", f"val_mae_{task}": "val_mae"}
        )
    return m, history, predictions


def show_model(m: dict, *, key: str, compact: bool = False) -> None:
    card = card_of(m)
    history, predictions = state.model_files(m)
    st.markdown(f"#### {m['name']}")
    if len(m.get("targets") or []) > 1:
        task = st.selectbox(
            "Target",
            m["targets"],
            key=f"task_{key}",
            format_func=lambda t: display_for(t).name,
            help="This model predicts several targets; each has its own metrics and plots. "
            "Learning-curve losses are the mean over all targets.",
        )
        m, history, predictions = task_view(m, history, predictions, task)
    disp = display_for(m["target"], m.get("unit"))
    info = [
        f"target **{disp.name}**" + (f" (`{m['target']}`)" if disp.name != m["target"] else ""),
        f"family **{m.get('family', '?')}**",
        f"source **{m.get('source', '?')}**",
    ]
    if card is not None and card.dataset is not None:
        d = card.dataset
        info.append(
            f"dataset **{d.name}** ({d.size} structures: {d.n_train} train / {d.n_val} "
            f"validation / {d.n_test} test)"
        )
    st.markdown(" · ".join(info))
    if m.get("description"):
        st.caption(m["description"])
    table = metrics_table(m, disp)
    if len(table):
        st.dataframe(
            table,
            hide_index=True,
            width="stretch",
            column_config={
                c: st.column_config.NumberColumn(format="%.4g")
                for c in table.columns
                if c not in ("split", "n")
            },
        )
    else:
        st.info("This model's card records no metrics.")

    if predictions is not None and len(predictions):
        if compact:
            st.plotly_chart(
                plots.parity(predictions, disp, title="Parity", height=380), key=f"parity_{key}"
            )
        else:
            st.markdown("**Parity plot** — click a point to open its structure.")
            event = st.plotly_chart(
                plots.parity(predictions, disp, title="Predicted vs true"),
                key=f"parity_{key}",
                on_select="rerun",
                selection_mode=("points",),
            )
            points = event.selection.points if event is not None and event.selection else []
            chosen = next((p.get("customdata") for p in points if p.get("customdata")), None)
            if chosen:
                ident = str(chosen[0])
                item = state.find_structure(ident, source_datasets(card))
                with st.container(border=True):
                    row = predictions[predictions["id"].astype(str) == ident].head(1)
                    if len(row):
                        r = row.iloc[0]
                        st.markdown(
                            f"**{r['formula']}** (`{ident}`, {r.get('split', '')}): "
                            f"true {disp.fmt(r['target'])}, predicted "
                            f"{disp.fmt(r['prediction'])}"
                        )
                    if item is not None:
                        st.markdown(describe_line(item))
                        show_structure(
                            item.structure,
                            card.graph if card else None,
                            height=340,
                            title=f"3D view of {ident}",
                        )
                        if st.button("Open on Structure & graph", key=f"open_{key}"):
                            src = card.dataset if card is not None else None
                            state.open_structure(
                                ident,
                                path=resolve_source(src.source) if src else None,
                                label=src.name if src else "",
                                query=src.query if src else None,
                            )
                    else:
                        st.caption(
                            "The structure is not in the model's training data on disk "
                            "nor in the current dataset."
                        )
            st.plotly_chart(
                plots.residuals(predictions, disp, title="Residuals"), key=f"resid_{key}"
            )
            show_calibration(card, m["target"], key)
        st.download_button(
            "Download predictions (CSV)",
            csv_text(predictions),
            file_name=f"{m['name']}-predictions.csv",
            mime="text/csv",
            key=f"dl_pred_{key}",
        )
    else:
        st.caption(
            "No saved predictions (`predictions.csv`) for this model: parity plot and "
            "residuals need a run trained here, or an evaluation on data (below)."
        )
        if not compact:
            evaluate_here(m, disp, key)

    if history is not None and len(history):
        if compact:
            st.plotly_chart(
                plots.learning_curves(history, title="Loss per epoch", height=300),
                key=f"loss_{key}",
            )
        else:
            a, b = st.columns(2)
            a.plotly_chart(
                plots.learning_curves(history, title="Loss per epoch"), key=f"loss_{key}"
            )
            b.plotly_chart(plots.mae_curves(history, disp, title="MAE per epoch"), key=f"mae_{key}")
    if m.get("path") and Path(m["path"]).is_dir():
        path = Path(m["path"])
        stamp = max((p.stat().st_mtime for p in path.iterdir() if p.is_file()), default=0.0)
        st.download_button(
            "Download the model directory (zip)",
            _zip_cached(str(path), stamp),
            file_name=f"{path.name}.zip",
            mime="application/zip",
            key=f"dl_zip_{key}",
        )


def show_calibration(card, target: str, key: str) -> None:
    """σ calibration of the model on its validation and test splits (``card.uncertainty``)."""
    unc = card.uncertainty if card is not None else None
    if unc is None:
        st.caption(
            "This model has no fitted uncertainty: run `python -m engine calibrate "
            f"{card.name if card else 'MODEL'}` to fit σ and the applicability domain."
        )
        return
    primary = target == card.target
    splits = {
        part: unc.calibration.get(part if primary else f"{part}/{target}")
        for part in ("val", "test")
    }
    splits = {part: c for part, c in splits.items() if c is not None}
    if not splits:
        return
    st.markdown(
        f"**Uncertainty calibration** — σ from {unc.sigma_source}, rescaled on the validation "
        "split. Ideal: 68.3 % of errors within 1σ and 95.4 % within 2σ."
    )
    curves = {}
    for part, c in splits.items():
        name = {"val": "validation"}.get(part, part)
        curves[name] = {"levels": c.levels, "observed": c.observed}
        if part == "val":
            curves[f"{name}, unscaled σ"] = {"levels": c.levels, "observed": c.observed_unscaled}
    left, right = st.columns([3, 2])
    left.plotly_chart(plots.calibration(curves, title="Calibration of σ"), key=f"calib_{key}")
    right.dataframe(
        pd.DataFrame(
            [
                {
                    "split": {"val": "validation"}.get(part, part),
                    "n": c.n,
                    "within 1σ": f"{c.within_1sigma:.1%}",
                    "within 2σ": f"{c.within_2sigma:.1%}",
                    "within 1σ, unscaled": f"{c.within_1sigma_unscaled:.1%}",
                    "within 2σ, unscaled": f"{c.within_2sigma_unscaled:.1%}",
                }
                for part, c in splits.items()
            ]
        ),
        hide_index=True,
        key=f"calib_table_{key}",
    )


def evaluate_here(m: dict, disp: Display, key: str) -> None:
    """Evaluate a model without saved predictions on the current dataset, with progress."""
    dataset = state.current_dataset()
    if dataset is None or m["target"] not in dataset.numeric_columns():
        st.caption(f"Load a dataset with a `{m['target']}` column on **Data** to evaluate it.")
        return
    ds = dataset.dropna(m["target"])
    if not st.button(f"Evaluate on the current dataset ({len(ds)} structures)", key=f"eval_{key}"):
        return
    from engine import evaluate, regression_metrics

    model = state.load_model(state.model_ref(m))
    bar = st.progress(0.0, text="Evaluating…")
    frames = []
    step = 64
    for start in range(0, len(ds), step):
        idx = list(range(start, min(start + step, len(ds))))
        _, frame = evaluate(model, ds.subset(idx), m["target"])
        frames.append(frame)
        bar.progress(min((start + step) / len(ds), 1.0), text=f"{idx[-1] + 1} of {len(ds)}")
    bar.empty()
    frame = pd.concat(frames, ignore_index=True)
    metrics = regression_metrics(frame["target"], frame["prediction"])
    st.dataframe(metrics_table({"metrics": {"data": metrics}}, disp), hide_index=True)
    st.plotly_chart(
        plots.parity(frame, disp, title="Predicted vs true (current dataset)"),
        key=f"eval_parity_{key}",
    )
    st.plotly_chart(plots.residuals(frame, disp, title="Residuals"), key=f"eval_resid_{key}")


if second is None:
    show_model(first, key="a")
else:
    left, right = st.columns(2)
    with left:
        show_model(first, key="a", compact=True)
    with right:
        show_model(second, key="b", compact=True)
    ha, _ = state.model_files(first)
    hb, _ = state.model_files(second)
    if ha is not None and hb is not None and first["target"] == second["target"]:
        disp = display_for(first["target"], first.get("unit"))
        fig = plots.mae_curves(ha, disp, label=first["name"], title="MAE per epoch, both runs")
        for trace in plots.mae_curves(hb, disp, label=second["name"]).data:
            fig.add_trace(trace)
        st.plotly_chart(fig, key="compare_mae")
