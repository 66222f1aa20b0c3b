"""Predict: candidates (uploaded, the SOFC examples, or the current dataset) through a model,
as a sortable table with units, σ and the applicability-domain flag, a CSV export, and the
nearest training crystals of a chosen candidate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import state
from dashboard.components import optimade, plots
from dashboard.components.physics import physics_section
from dashboard.components.sofc import disorder_control, spec_box
from dashboard.components.teaching import teach
from dashboard.components.units import display_for
from engine import PHYSICS_INPUT_FAMILIES, csv_text


def _with_physics_inputs(items: list) -> tuple[list, dict[str, str]]:
    """Copies of ``items`` carrying the physics inputs of a ``cgcnn-physics`` model (CHGNet and
    the quasi-harmonic Debye route, cached on disk), with a progress bar; and, per id, why a
    structure has none ("" where it has them). Without the physics extra: the items unchanged,
    every reason saying so."""
    import dataclasses

    copies = [dataclasses.replace(it, structure=it.structure.copy()) for it in items]
    bar = st.progress(0.0, text="Physics inputs (CHGNet)…")

    def progress(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"Physics inputs: {done} of {total} structures")

    try:
        from engine import attach_physics_inputs

        results = attach_physics_inputs(copies, progress=progress)
    except ImportError as exc:  # chgnet (the physics extra) not installed
        reason = f"the physics route is not installed ({exc}); pip install '.[physics]'"
        return items, {it.id: reason for it in items}
    finally:
        bar.empty()
    return copies, {
        it.id: ("" if r.status == "ok" else r.reason or r.status) for it, r in zip(copies, results)
    }


def _lower_first(name: str) -> str:
    """Lower-case the first letter only: "volumetric CTE at 300 K", not "... cte at 300 k"."""
    return name[:1].lower() + name[1:]


st.title("Predict")
teach("cte")


SOURCES = {
    "upload": "Upload candidate structures",
    "examples": "SOFC examples (15 structures)",
    "current": "Current dataset",
    "database": "Search a database (OPTIMADE)",
    "typed": "Type SOFC names or compositions (e.g. 'Ce0.9Gd0.1O1.95 as fluorite')",
}
c1, c2 = st.columns([2, 3])
with c1:
    which = st.radio("Candidates", list(SOURCES), format_func=SOURCES.get, key="predict_source")
with c2:
    model_info = state.choose_model("Model", key="predict_model", computes_physics=True)

items, errors, label, truth_table = [], [], "", None
if which == "typed":
    items, errors = spec_box("predict_typed")
    label = "typed: " + ", ".join(it.id for it in items)
elif which == "upload":
    uploaded = st.file_uploader(
        "Structure files (CIF, POSCAR, XYZ, JSON, JSON lines, zip)",
        accept_multiple_files=True,
        key="predict_upload",
        help="Files that cannot be read are listed with the reason; the rest are predicted.",
    )
    if uploaded:
        files = tuple((f.name, f.getvalue()) for f in uploaded)
        batch = state.read_upload(files)
        items, errors = batch.items, list(batch.errors)
        label = state.upload_label([f.name for f in uploaded])
        if items:  # Structure & graph can open them without a second upload
            st.session_state["uploaded_structures"] = {"label": label, "items": items}
            st.page_link(
                "views/structure.py", label="Open them on Structure & graph", icon=":material/hub:"
            )
elif which == "examples":
    ds = state.examples_dataset()
    items, errors, label = ds.items, list(ds.errors), "SOFC examples"
elif which == "database":
    found = optimade.search("predict")
    if found is not None:
        items, errors, label = found.batch.items, list(found.batch.errors), found.label
else:
    ds = state.current_dataset()
    if ds is None:
        st.info("No dataset loaded: load one on the **Data** page.")
    else:
        items, errors, label = ds.items, list(ds.errors), state.data_source().label
        truth_table = ds.table

if errors:
    what = (
        "1 file or entry could not be read"
        if len(errors) == 1
        else f"{len(errors)} files or entries could not be read"
    )
    kept = f"{len(items)} structure{'' if len(items) == 1 else 's'} kept"
    st.warning(f"{what}; {kept}." if items else f"{what}; nothing usable is left.")
    st.dataframe(
        pd.DataFrame([{"file / entry": e.source, "reason": e.reason} for e in errors]),
        hide_index=True,
        width="stretch",
    )

if model_info is None:
    st.stop()
if not items:
    if which == "upload":
        st.info(
            "Upload one or more structure files to predict their "
            f"{_lower_first(display_for(model_info['target'], model_info.get('unit')).name)}."
        )
    st.stop()

disp = display_for(model_info["target"], model_info.get("unit"))
disorder = disorder_control("predict_disorder", items)
run_key = (state.model_ref(model_info), label, tuple(it.id for it in items), disorder)
result = st.session_state.get("predict_result")
fresh = result is not None and result.get("key") == run_key

if st.button(
    f"Predict {len(items)} structure(s) with {model_info['name']}", type="primary", key="predict_go"
) or (fresh and result):
    if not fresh:
        from engine import predict_structures

        try:
            model = state.load_model(state.model_ref(model_info))
        except Exception as exc:  # noqa: BLE001
            st.error(f"Could not load {model_info['name']}: {exc}")
            st.stop()
        physics = None
        if model_info.get("family") in PHYSICS_INPUT_FAMILIES:
            items, physics = _with_physics_inputs(items)
        bar = st.progress(0.0, text="Predicting…")
        frames, failed = [], []
        step = 32
        for start in range(0, len(items), step):
            out = predict_structures(model, items[start : start + step], disorder)
            frames.append(out.table)
            failed.extend(out.errors)
            bar.progress(
                min((start + step) / len(items), 1.0),
                text=f"{min(start + step, len(items))} of {len(items)} structures",
            )
        bar.empty()
        table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        if physics is not None and "physics_used" in table:
            table["physics_reason"] = [physics.get(i, "") for i in table["id"]]
        result = {"key": run_key, "table": table, "failed": failed}
        st.session_state["predict_result"] = result

    table: pd.DataFrame = result["table"].copy()
    for err in result["failed"]:
        st.warning(f"{err.source}: {err.reason}")
    if table.empty:
        st.error("No structure could be predicted.")
        st.stop()
    value_col = f"Predicted {disp.label}"
    sigma_col = disp.short("± σ")
    shown = pd.DataFrame(
        {
            "id": table["id"],
            "formula": table["formula"],
            "atoms": table["n_sites"],
            value_col: disp.scale(table["prediction"].to_numpy(dtype=float)),
            sigma_col: disp.scale(table["prediction_std"].to_numpy(dtype=float)),
            "domain": table["domain"],
            "domain distance": table["domain_distance"].to_numpy(dtype=float),
        }
    )
    raw_col = f"prediction ({model_info.get('unit')})" if model_info.get("unit") else "prediction"
    if "physics_used" in table:  # cgcnn-physics: which rows had physics inputs, and why not
        shown["physics used"] = table["physics_used"].to_numpy(dtype=bool)
        fell_back = table.loc[~table["physics_used"].astype(bool)]
        if len(fell_back):
            st.warning(
                f"{len(fell_back)} structure(s) without physics inputs, predicted from the graph "
                "alone (less accurate): "
                + "; ".join(
                    f"{i}: {r or 'not computed'}"
                    for i, r in zip(
                        fell_back["id"],
                        fell_back["physics_reason"]
                        if "physics_reason" in fell_back
                        else [""] * len(fell_back),
                    )
                )
            )
    for weight, short in (("weight_composition", "w_comp"), ("weight_structure", "w_graph")):
        if weight in table:  # attention fusion: how much each material relies on each part
            shown[short] = table[weight].to_numpy(dtype=float)
    for other in (model_info.get("targets") or [])[1:]:  # multitask: one column per target
        other_disp = display_for(other)
        shown[f"Predicted {other_disp.label}"] = other_disp.scale(
            table[f"prediction_{other}"].to_numpy(dtype=float)
        )
        if f"prediction_std_{other}" in table:
            shown[other_disp.short(f"± σ of {other_disp.name}")] = other_disp.scale(
                table[f"prediction_std_{other}"].to_numpy(dtype=float)
            )
    if model_info["target"] == state.FLAGSHIP_TARGET:
        linear_col = "≈ linear CTE (10⁻⁶ K⁻¹)"
        shown[linear_col] = shown[value_col] / 3.0
        shown["± σ of linear CTE (10⁻⁶ K⁻¹)"] = shown[sigma_col] / 3.0
    if disp.factor != 1.0:
        shown[raw_col] = table["prediction"].to_numpy(dtype=float)
    if truth_table is not None and model_info["target"] in truth_table:
        known = dict(zip(truth_table["id"].astype(str), truth_table[model_info["target"]]))
        truth = np.array([known.get(str(i), np.nan) for i in table["id"]], dtype=float)
        if np.isfinite(truth).any():
            shown[f"True {disp.label}"] = disp.scale(truth)
            shown[disp.short("Error")] = shown[value_col] - shown[f"True {disp.label}"]
    shown = shown.sort_values(value_col, ascending=False, ignore_index=True)
    if model_info["target"] == state.FLAGSHIP_TARGET:  # the engineer's columns first
        first = ["formula", linear_col, "± σ of linear CTE (10⁻⁶ K⁻¹)"]
        first += [c for c in (f"True {disp.label}", disp.short("Error")) if c in shown]
        shown = shown[first + [c for c in shown.columns if c not in first]]
    number = st.column_config.NumberColumn(format="%.3g")
    st.markdown(
        f"**{len(shown)} prediction{'' if len(shown) == 1 else 's'}** of *{disp.name}* by "
        f"**{model_info['name']}**, "
        "highest first. Click a column header to sort."
    )
    st.dataframe(
        shown.style.map(lambda flag: plots.DOMAIN_COLOURS.get(flag, ""), subset=["domain"]),
        hide_index=True,
        width="stretch",
        key="predict_table",
        column_config={  # every number formatted: no "13.81154"
            **{c: number for c in shown.columns if pd.api.types.is_float_dtype(shown[c])},
            value_col: st.column_config.NumberColumn(format="%.4g"),
            sigma_col: st.column_config.NumberColumn(format="%.2g"),
            "domain distance": st.column_config.NumberColumn(format="%.2f"),
            raw_col: st.column_config.NumberColumn(format="%.3e"),
            **{
                c: st.column_config.NumberColumn(format="%.2f")
                for c in shown.columns
                if "linear CTE" in c
            },
        },
    )
    model = state.load_model(state.model_ref(model_info))
    unc = model.card.uncertainty
    counts = shown["domain"].value_counts()
    if unc is None:
        st.info(
            f"**{model_info['name']}** has no fitted uncertainty or applicability domain (it was "
            "saved before they existed, or not trained here), so σ is empty and the domain is "
            "*unknown*. Fit them with `python -m engine calibrate "
            f"{model_info['name']}`."
        )
    else:
        val = unc.calibration.get("val")
        source = (
            f"the spread of the {model.n_members} ensemble members"
            if unc.sigma_source == "ensemble spread"
            else "the validation errors of crystals at a similar domain distance"
        )
        st.markdown(
            "**± σ** is the uncertainty of each prediction, from "
            f"{source}, scaled on the validation split"
            + (
                f" (there {val.within_1sigma:.0%} of errors fell within 1σ and "
                f"{val.within_2sigma:.0%} within 2σ; ideal 68% and 95%)"
                if val is not None
                else ""
            )
            + ". **Domain**: the mean distance of the crystal's pooled vector to its "
            f"{unc.k} nearest training crystals; *in-domain* up to {unc.borderline:.2f} (as close "
            f"as {unc.borderline_quantile:.0%} of validation crystals), *borderline* up to "
            f"{unc.out_of_domain:.2f} ({unc.out_of_domain_quantile:.0%}), *out-of-domain* beyond: "
            "treat those predictions as extrapolations. Here: "
            + ", ".join(f"{int(counts.get(f, 0))} {f}" for f in plots.DOMAIN_COLOURS)
            + "."
        )
    m1, m2, m3 = st.columns(3)
    m1.metric("Lowest", disp.fmt(table["prediction"].min()))
    m2.metric("Median", disp.fmt(table["prediction"].median()))
    m3.metric("Highest", disp.fmt(table["prediction"].max()))
    st.download_button(
        "Download predictions (CSV)",
        csv_text(shown),
        file_name=f"predictions-{model_info['name'].replace('/', '_')}.csv",
        mime="text/csv",
        key="predict_download",
    )
    if model_info["target"] == state.FLAGSHIP_TARGET:
        st.caption(
            "The model predicts the *volumetric* CTE (AFLOW AGL, quasi-harmonic Debye "
            "model). The linear CTE that dilatometry measures is about one third of it; "
            "compare that column with tabulated values of your electrolyte."
        )
    st.caption(
        f"Model target: `{model_info['target']}`"
        + (f", stored in {model_info['unit']}" if model_info.get("unit") else "")
        + ". Predictions outside the chemistry and structure types of the training data "
        "are extrapolations: treat them as a ranking aid, not as measurements."
    )

    if unc is not None:
        st.subheader("Nearest training crystals")
        flags = dict(zip(shown["id"], shown["domain"]))
        formulas = dict(zip(shown["id"], shown["formula"]))
        chosen = st.selectbox(
            "Candidate",
            list(shown["id"]),
            format_func=lambda i: f"{i} — {formulas[i]} ({flags[i]})",
            key="predict_neighbours_of",
        )
        from engine import nearest_training

        item = next(it for it in items if it.id == chosen)
        near = nearest_training(model, [item], k=unc.k)
        st.dataframe(
            pd.DataFrame(
                {
                    "rank": near["rank"],
                    "id": near["id"],
                    "formula": near["formula"],
                    f"Training {disp.label}": disp.scale(near["label"].to_numpy(dtype=float)),
                    "distance": near["distance"],
                }
            ),
            hide_index=True,
            width="stretch",
            key="predict_neighbours",
            column_config={
                f"Training {disp.label}": st.column_config.NumberColumn(format="%.4g"),
                "distance": st.column_config.NumberColumn(format="%.2f"),
            },
        )
        st.caption(
            f"The {unc.k} training crystals whose pooled vectors ({unc.vectors or 'the model'}"
            ") are nearest to this candidate's, with their training labels; their mean distance "
            "is the candidate's domain distance."
        )

result = st.session_state.get("predict_result")
learned = None
if result and result.get("key") == run_key and model_info["target"] == state.FLAGSHIP_TARGET:
    learned = {
        i: (v, sd)
        for i, v, sd in zip(
            result["table"]["id"], result["table"]["prediction"], result["table"]["prediction_std"]
        )
    }
physics_section(items, key="predict", learned=learned)
