"""Screen: candidates (uploads, a zip, the current dataset, the SOFC examples, the generated
library, the named SOFC library or typed 'FORMULA as PROTOTYPE' lines) → predicted volumetric
CTE ± σ, the linear CTE beside it, the domain flag, element and predicted-property filters, a
ranking by |Δα| to the chosen electrolyte (never ranked against itself), calibration to measured
values, the mean CTE over an operating range (with :mod:`engine.physics`), CSV export and reload,
and a mismatch heatmap. Everything is computed by :mod:`engine.apps.screening`; CTEs are shown in
10⁻⁶ K⁻¹ and stored in 1/K."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from pymatgen.core import Element

from dashboard import state
from dashboard.components import optimade, plots
from dashboard.components import sofc as sofc_ui
from dashboard.components.physics import physics_section
from dashboard.components.teaching import teach
from engine import (
    DEFAULT_CHUNK_SIZE,
    EXAMPLES,
    MEASURED_COLUMNS,
    Filters,
    candidate_references,
    count_candidates,
    csv_text,
    example_electrolytes,
    iter_candidates,
    measured_table,
    mismatch_matrix,
    predict_candidates,
    range_column,
    rank_candidates,
    read_screen_csv,
    resolve_electrolyte,
)

st.title("Screen")
teach("cte")
sofc_ui.target_note()

#: Display unit of CTEs: values in 1/K × MICRO.
MICRO = 1e6
UNIT = "10⁻⁶ K⁻¹"
SOURCES = {
    "examples": "SOFC examples",
    "library": "Generated candidate library",
    "sofc": "SOFC library (8YSZ, GDC, LSGM, LSCF, BSCF, … by name)",
    "typed": "Type SOFC names or compositions (e.g. 'La0.6Sr0.4CoO3 as perovskite')",
    "current": "Current dataset",
    "upload": "Upload structures (files or a zip)",
    "database": "Search a database (OPTIMADE)",
    "reload": "Reload a screening CSV",
}
#: SOFC library electrolytes offered by name.
SOFC_ELECTROLYTES = ("8YSZ", "10GDC", "20SDC", "LSGM", "BZY20")
ELECTROLYTE_BY = {
    "formula": "Formula or id",
    "file": "Structure file",
    "value": "Measured value",
}


@st.cache_resource(show_spinner="Building the candidate library…")
def _library():
    from engine import library_batch

    return library_batch()


@st.cache_data(max_entries=64, show_spinner=False)
def _reference(key: tuple, measured: tuple, _spec, _model, _dataset, _disorder=None):
    """An electrolyte (``engine.apps.screening.electrolyte.Reference``), cached by ``key`` (model, spec,
    dataset and disorder mode) and the measured table."""
    table = pd.DataFrame(list(measured), columns=list(MEASURED_COLUMNS))
    return resolve_electrolyte(_spec, _model, measured=table, dataset=_dataset, disorder=_disorder)


@st.cache_data(max_entries=16, show_spinner=False)
def _count(source_key: str, which: str, _source) -> int:
    """Entries expected in a candidate source (for the button and the progress bar)."""
    return count_candidates(_source)


def _models_for(prop: str) -> list[dict]:
    """Models predicting ``prop`` in its unit (any 1/K model for the CTE)."""
    from engine import PROPERTY_TARGETS, PROPERTY_UNITS

    wanted = set(PROPERTY_TARGETS[prop])
    out = []
    for m in state.models():
        units = dict(zip(m.get("targets") or [m["target"]], m.get("units") or [m["unit"]]))
        if any(units.get(t) == PROPERTY_UNITS[prop] for t in wanted) or (
            prop == "cte" and m["unit"] == "1/K"
        ):
            out.append(m)
    return out


def _pick_model(label: str, prop: str, key: str, container) -> dict | None:
    """A model picker for one property, defaulting to the one the engine would pick."""
    from engine import find_property_model

    available = _models_for(prop)
    if not available:
        return None
    refs = [state.model_ref(m) for m in available]
    default = find_property_model(prop)
    index = refs.index(default) if default in refs else 0
    name = container.selectbox(
        label,
        [m["name"] for m in available],
        index=index,
        key=key,
        format_func=lambda n: state.model_label(next(m for m in available if m["name"] == n)),
    )
    return next(m for m in available if m["name"] == name)


def _micro(value) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value * MICRO:.2f}"


def _upload_key(files) -> str:
    h = hashlib.sha256()
    for name, data in files:
        h.update(name.encode() + b"\0" + data)
    return h.hexdigest()


def mismatch_heatmap(matrix, electrolytes) -> go.Figure:
    """Δα (colour and cell text ± σ, 10⁻⁶ K⁻¹) of candidates (rows) × electrolytes (columns)."""
    z = matrix.delta.to_numpy() * MICRO
    sigma = matrix.sigma.to_numpy() * MICRO
    text = [[f"{v:+.2f} ± {_micro(s / MICRO)}" for v, s in zip(zr, sr)] for zr, sr in zip(z, sigma)]
    columns = [f"{e.name}<br>{_micro(e.cte_lin)} ± {_micro(e.cte_lin_std)}" for e in electrolytes]
    limit = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=columns,
            y=list(matrix.delta.index),
            text=text,
            texttemplate="%{text}",
            customdata=sigma,
            colorscale="RdBu_r",
            zmin=-limit,
            zmax=limit,
            colorbar={"title": {"text": f"Δα ({UNIT})"}},
            hovertemplate=(
                "candidate %{y}<br>electrolyte %{x}<br>Δα = %{z:+.2f} ± %{customdata:.2f} "
                f"{UNIT}<extra></extra>"
            ),
        )
    )
    fig.update_xaxes(title=f"Electrolyte (linear CTE ± σ, {UNIT})", side="top")
    fig.update_yaxes(title="Candidate (best match first)", autorange="reversed")
    fig.update_layout(
        height=max(320, 44 * len(matrix.delta.index) + 160),
        margin={"l": 10, "r": 10, "t": 90, "b": 10},
    )
    return fig


# ----------------------------------------------------------------------------------------------
# Candidates and model

c1, c2 = st.columns([2, 3])
with c1:
    which = st.radio("Candidates", list(SOURCES), format_func=SOURCES.get, key="screen_source")
with c2:
    model_info = _pick_model("Thermal-expansion model", "cte", "screen_model", st)
    if model_info is None:
        st.warning("No thermal-expansion model (unit 1/K) is available. Train one on **Train**.")
        st.stop()

source, source_key, dataset, reloaded = None, "", None, None
if which == "examples":
    source, source_key = str(state.examples_dir()), "examples"
elif which == "library":
    source, source_key = _library(), "library"
    st.caption(
        f"{len(source)} idealised perovskites, fluorites, pyrochlores, spinels and "
        "Ruddlesden–Popper phases built from Shannon radii (`engine.materials.library`)."
    )
elif which == "sofc":
    from engine import sofc_batch

    source, source_key = sofc_batch(), "sofc"
    st.caption(
        f"{len(source.items)} named SOFC materials (`engine.materials.sofc`): doped and "
        "oxygen-deficient compositions as disordered cells on their prototype, lattices "
        "from occupancy-weighted Shannon radii (Ni and NiO: experimental)."
    )
elif which == "typed":
    typed_items, typed_errors = sofc_ui.spec_box("screen_typed")
    for err in typed_errors:
        st.error(f"{err.source}: {err.reason}")
    if typed_items:
        from engine import StructureBatch

        source = StructureBatch(items=typed_items)
        source_key = "typed:" + "|".join(it.id for it in typed_items)
elif which == "current":
    dataset = state.current_dataset()
    if dataset is None:
        st.info("No dataset loaded: load one on the **Data** page.")
    else:
        source, source_key = dataset, state.dataset_key(dataset, state.data_source())
elif which == "upload":
    uploaded = st.file_uploader(
        "Structure files or a zip (CIF, POSCAR, XYZ, JSON, JSON lines)",
        accept_multiple_files=True,
        key="screen_upload",
        help="JSON lines and zips are read in chunks, so large candidate sets stay within "
        "memory. Files that cannot be read are listed with the reason; the rest are screened.",
    )
    if uploaded:
        files = tuple((f.name, f.getvalue()) for f in uploaded)
        source, source_key = files, _upload_key(files)
    else:
        st.info("Upload candidate structures to screen them.")
elif which == "database":
    found = optimade.search("screen")
    if found is not None:
        source, source_key = found.batch, found.key
else:
    csv = st.file_uploader(
        "A screening table exported from this page or `python -m engine screen --output`",
        type=["csv"],
        key="screen_reload",
    )
    if csv is not None:
        try:
            reloaded = read_screen_csv(io.BytesIO(csv.getvalue()))
        except Exception as exc:  # noqa: BLE001 - a bad file is reported, not raised
            st.error(f"Could not read {csv.name}: {exc}")
        else:
            st.success(
                f"Reloaded {len(reloaded)} candidates predicted by "
                f"{', '.join(sorted(set(reloaded['model']))) or 'an unknown model'}; they are "
                "ranked below against the electrolyte chosen here."
            )

# ----------------------------------------------------------------------------------------------
# Electrolyte and measured values

st.subheader("Electrolyte")
e1, e2 = st.columns([1, 2])
with e1:
    by = st.radio(
        "Give the electrolyte by",
        list(ELECTROLYTE_BY),
        format_func=ELECTROLYTE_BY.get,
        key="screen_electrolyte_by",
    )
electrolyte_spec, spec_key = None, ""
with e2:
    if by == "formula":
        options = list(
            dict.fromkeys(
                [*example_electrolytes(), *(e.formula for e in EXAMPLES), *SOFC_ELECTROLYTES]
            )
        )
        electrolyte_spec = st.selectbox(
            "Formula or id",
            options,
            key="screen_electrolyte",
            accept_new_options=True,
            help="SOFC names and abbreviations (8YSZ, YSZ, GDC, LSGM, BZY20) and 'FORMULA as "
            "perovskite|fluorite' are built as disordered cells; other formulas or ids are "
            "looked up in the measured table below, the current dataset, the SOFC examples and "
            "the generated library.",
        )
        spec_key = electrolyte_spec
    elif by == "file":
        upload = st.file_uploader(
            "Electrolyte structure (one structure)", key="screen_electrolyte_file"
        )
        if upload is not None:
            batch = state.read_upload(((upload.name, upload.getvalue()),))
            if len(batch.items) == 1:
                electrolyte_spec = batch.items[0]
                spec_key = "file:" + _upload_key(((upload.name, upload.getvalue()),))
            else:
                reasons = "; ".join(str(e) for e in batch.errors)
                st.error(
                    f"{upload.name} holds {len(batch.items)} usable structures, not one"
                    + (f": {reasons}" if reasons else "")
                )
    else:
        v1, v2 = st.columns(2)
        name = v1.text_input("Name", value="my electrolyte", key="screen_electrolyte_name")
        value = v2.number_input(
            f"Measured linear CTE ({UNIT})",
            value=10.0,
            step=0.1,
            format="%.2f",
            key="screen_electrolyte_value",
        )
        electrolyte_spec = spec_key = f"{name.strip() or 'typed'}={value / MICRO!r}"

with st.expander("Measured CTEs (optional): used instead of predictions where given"):
    st.caption(
        f"Linear CTE as dilatometry measures it, in {UNIT}, with its σ (0 if left empty). "
        "*Material* is a formula (matched by reduced formula) or a candidate id. A measured "
        "value is shown beside the prediction and used in the mismatch, for candidates and "
        "electrolytes alike."
    )
    edited = st.data_editor(
        pd.DataFrame(
            {
                "material": pd.Series(dtype=str),
                f"linear CTE ({UNIT})": pd.Series(dtype=float),
                f"σ ({UNIT})": pd.Series(dtype=float),
            }
        ),
        num_rows="dynamic",
        key="screen_measured",
        width="stretch",
    )
try:
    measured = measured_table(
        pd.DataFrame(
            {
                "material": edited["material"],
                "cte_lin_per_K": pd.to_numeric(edited[f"linear CTE ({UNIT})"]) / MICRO,
                "cte_lin_std_per_K": pd.to_numeric(edited[f"σ ({UNIT})"]) / MICRO,
            }
        )
    )
except ValueError as exc:
    st.error(f"Measured CTEs: {exc}")
    measured = measured_table(None)
measured_key = tuple(measured.itertuples(index=False, name=None))

# ----------------------------------------------------------------------------------------------
# Filters

st.subheader("Filters")
symbols = [el.symbol for el in sorted(Element, key=lambda el: el.Z)]
f1, f2 = st.columns(2)
include = f1.multiselect("Must contain all of", symbols, key="screen_include")
exclude = f2.multiselect("Must contain none of", symbols, key="screen_exclude")
g1, g2 = st.columns(2)
property_models, limits = {}, {}
for column, prop, what, unit in (
    (g1, "e_form", "formation energy", "eV/atom"),
    (g2, "band_gap", "band gap", "eV"),
):
    available = _models_for(prop)
    on = column.checkbox(
        f"Predict the {what} and filter on it", key=f"screen_{prop}_on", disabled=not available
    )
    if not available:
        column.info(
            f"The {what} filter is disabled: no model predicts it "
            "(`python -m engine models` lists them)."
        )
        continue
    if on:
        property_models[prop] = _pick_model(
            f"{what.capitalize()} model", prop, f"screen_{prop}_model", column
        )
        if prop == "e_form":
            limits["max_e_form"] = column.number_input(
                f"Largest formation energy kept ({unit})",
                value=0.0,
                step=0.1,
                key="screen_max_eform",
            )
        else:
            limits["min_band_gap"] = column.number_input(
                f"Smallest band gap kept ({unit}); an electrolyte must insulate",
                value=None,
                min_value=0.0,
                step=0.5,
                key="screen_min_gap",
            )
            limits["max_band_gap"] = column.number_input(
                f"Largest band gap kept ({unit}); electrodes conduct",
                value=None,
                min_value=0.0,
                step=0.5,
                key="screen_max_gap",
            )
try:
    filters = Filters(include=include, exclude=exclude, **limits)
except ValueError as exc:
    st.error(str(exc))
    st.stop()

# ----------------------------------------------------------------------------------------------
# Predict (streamed, with progress) or reuse the last run

model_ref = state.model_ref(model_info)
prop_refs = tuple((p, state.model_ref(m)) for p, m in property_models.items() if m)
chunk = st.number_input(
    "Structures per chunk (bounds memory)",
    min_value=8,
    max_value=4096,
    value=DEFAULT_CHUNK_SIZE,
    step=64,
    key="screen_chunk",
)
disorder = sofc_ui.disorder_control("screen_disorder")
run_key = (model_ref, which, source_key, prop_refs, disorder)
last = st.session_state.get("screen_run")
predictions = None
if reloaded is not None:
    predictions = {"table": reloaded, "errors": [], "notes": [], "n_read": len(reloaded)}
elif source is not None:
    expected = _count(source_key, which, source)
    fresh = last is not None and last["key"] == run_key
    if st.button(f"Screen {expected} candidate entries", type="primary", key="screen_go") or fresh:
        if not fresh:
            bar = st.progress(0.0, text="Reading and predicting…")

            def report(done: int, total: int | None) -> None:
                share = min(done / total, 1.0) if total else 0.0
                bar.progress(share, text=f"{done} of ~{total} entries screened")

            extra = {p: state.load_model(ref) for p, ref in prop_refs}
            try:
                result = predict_candidates(
                    source,
                    state.load_model(model_ref),
                    eform_model=extra.get("e_form"),
                    gap_model=extra.get("band_gap"),
                    chunk_size=int(chunk),
                    disorder=disorder,
                    progress=report,
                    limits=state.read_limits(),
                )
            except Exception as exc:  # noqa: BLE001 - show, never crash
                bar.empty()
                st.error(f"Screening failed: {exc}")
                st.stop()
            bar.empty()
            last = {
                "key": run_key,
                "table": result.table,
                "errors": result.errors,
                "notes": result.notes,
                "n_read": result.n_read,
            }
            st.session_state["screen_run"] = last
        predictions = last

if predictions is None:
    st.stop()

for err_note in predictions["notes"]:
    st.info(err_note)
if predictions["errors"]:
    st.warning(f"{len(predictions['errors'])} entries could not be used; the others are screened.")
    st.dataframe(
        pd.DataFrame(
            [{"file / entry": e.source, "reason": e.reason} for e in predictions["errors"]]
        ),
        hide_index=True,
        width="stretch",
        key="screen_errors",
    )
if predictions["table"].empty:
    st.error("No candidate could be screened.")
    st.stop()

# ----------------------------------------------------------------------------------------------
# Rank against the electrolyte

model = state.load_model(model_ref)
dataset_key = state.dataset_key(dataset) if dataset is not None else ""
if electrolyte_spec is None:
    st.info("Choose the electrolyte above to rank the candidates.")
    st.stop()
try:
    electrolyte = _reference(
        (model_ref, spec_key, dataset_key, disorder.mode, disorder.k),
        measured_key,
        electrolyte_spec,
        model,
        dataset,
        disorder,
    )
except ValueError as exc:
    st.error(str(exc))
    st.stop()
table, filter_notes = rank_candidates(
    predictions["table"], electrolyte, measured=measured, filters=filters
)
for note in filter_notes:
    st.info(note)
table, electrolyte = sofc_ui.calibration_section(table, electrolyte)
electrolyte_item = electrolyte_spec if not isinstance(electrolyte_spec, str) else None
if isinstance(electrolyte_spec, str):
    from engine import resolve_structure

    try:
        electrolyte_item = resolve_structure(electrolyte_spec)
    except ValueError:
        electrolyte_item = None
range_info = None
if source is not None:
    table, range_info = sofc_ui.range_section(table, source, electrolyte, electrolyte_item)

m1, m2, m3 = st.columns(3)
m1.metric(
    f"Electrolyte {electrolyte.name}: linear CTE ({UNIT})",
    f"{_micro(electrolyte.cte_lin)} ± {_micro(electrolyte.cte_lin_std)}",
)
m2.metric("Candidates ranked", f"{int(table['passes'].sum())} of {len(table)}")
best = table[table["passes"]].head(1)
best_column, best_label = "abs_mismatch_per_K", f"Best |Δα| ({UNIT})"
if range_info is not None:
    best_column = f"mismatch_mean_{range_column(*range_info[:2]).removeprefix('cte_lin_mean_')}"
    best_label = f"Best |Δα| over {range_info[0]:g}–{range_info[1]:g} °C ({UNIT})"
m3.metric(best_label, _micro(abs(float(best[best_column].iloc[0]))) if len(best) else "–")
detail = ", ".join(x for x in (electrolyte.source, electrolyte.domain, electrolyte.note) if x)
if detail:
    st.caption(f"Electrolyte value: {detail}.")

show_all = st.checkbox("Show the filtered-out candidates too", key="screen_show_all")
shown_rows = table if show_all else table[table["passes"]]
vol, vol_sd = f"Predicted volumetric CTE ({UNIT})", f"± σ vol. ({UNIT})"
lin, lin_sd = f"Linear CTE α_V/3 ({UNIT})", f"± σ lin. ({UNIT})"
meas, used = f"Measured linear CTE ({UNIT})", f"Linear CTE used ({UNIT})"
delta, delta_sd = f"Δα ({UNIT})", f"σ of Δα ({UNIT})"
shown = pd.DataFrame(
    {  # what an engineer compares first: linear CTE ± σ, measured, Δα
        "rank": shown_rows["rank"],
        "formula": shown_rows["formula"],
        lin: shown_rows["cte_lin_pred_per_K"] * MICRO,
        lin_sd: shown_rows["cte_lin_std_per_K"] * MICRO,
        meas: shown_rows["cte_lin_measured_per_K"] * MICRO,
        delta: shown_rows["mismatch_per_K"] * MICRO,
        delta_sd: shown_rows["mismatch_std_per_K"] * MICRO,
        used: shown_rows["cte_lin_used_per_K"] * MICRO,
        "domain": shown_rows["domain"],
        vol: shown_rows["cte_vol_pred_per_K"] * MICRO,
        vol_sd: shown_rows["cte_vol_std_per_K"] * MICRO,
        "id": shown_rows["id"],
    }
)
for column, label in (
    ("e_form_eV_per_atom", "Formation energy (eV/atom)"),
    ("band_gap_eV", "Band gap (eV)"),
):
    if shown_rows[column].notna().any():
        shown[label] = shown_rows[column]
range_columns = [c for c in shown_rows.columns if c.startswith(("cte_lin_mean_", "mismatch_mean_"))]
for column in range_columns:
    shown[column.removesuffix("_per_K") + f" ({UNIT})"] = shown_rows[column] * MICRO
if "cte_lin_calibrated_per_K" in shown_rows:
    shown[f"Calibrated linear CTE ({UNIT})"] = shown_rows["cte_lin_calibrated_per_K"] * MICRO
    shown["CTE used is"] = shown_rows["cte_source"]
if show_all:
    shown["filtered out because"] = shown_rows["filter_reason"]
number = st.column_config.NumberColumn(format="%.2f")
st.markdown(
    f"**{len(shown)} candidates**, best thermal-expansion match to **{electrolyte.name}** "
    "first (smallest |Δα|). Click a column header to sort."
)
st.dataframe(
    shown.style.map(lambda flag: plots.DOMAIN_COLOURS.get(flag, ""), subset=["domain"]),
    hide_index=True,
    width="stretch",
    key="screen_table",
    column_config={c: number for c in (vol, vol_sd, lin, lin_sd, meas, used, delta, delta_sd)},
)
st.caption(
    "The model predicts the **volumetric** CTE (AFLOW AGL, quasi-harmonic Debye model, 300 K); "
    "the linear CTE that dilatometry measures is taken as one third of it (isotropic solid). "
    "Δα = linear CTE used − the electrolyte's; its σ is √(σ_candidate² + σ_electrolyte²), "
    "with σ = 0 for measured values typed without one. *Domain* flags how far a candidate is "
    "from the training crystals: treat *out-of-domain* values as extrapolations."
)
st.download_button(
    "Download the ranked table (CSV, values in 1/K)",
    csv_text(table),
    file_name=f"screen-{electrolyte.name.replace('/', '_')}.csv",
    mime="text/csv",
    key="screen_download",
)

# ----------------------------------------------------------------------------------------------
# Physics estimate of the top-ranked candidates

ranked = table[table["passes"]].sort_values("rank")
if source is not None and len(ranked):
    n_physics = st.number_input(
        "Top-ranked candidates for the physics estimate",
        1,
        len(ranked),
        min(len(ranked), 5),
        key="screen_physics_n",
    )
    wanted = list(ranked["id"].head(int(n_physics)))
    found = {}
    if st.session_state.get("screen_physics_on"):  # re-read only the candidates asked for
        found = {
            it.id: it for batch in iter_candidates(source) for it in batch.items if it.id in wanted
        }
    physics_section(
        [found[i] for i in wanted if i in found],
        key="screen",
        learned={
            i: (v, sd)
            for i, v, sd in zip(
                ranked["id"], ranked["cte_vol_pred_per_K"], ranked["cte_vol_std_per_K"]
            )
        },
    )

# ----------------------------------------------------------------------------------------------
# Mismatch matrix

st.subheader("Mismatch matrix")
st.markdown(
    f"Linear CTE mismatch **Δα = candidate − electrolyte** ({UNIT}) of the top-ranked "
    "candidates with several electrolytes."
)
n_ranked = int(table["passes"].sum())
if n_ranked == 0:
    st.info("No candidate passes the filters.")
    st.stop()
x1, x2 = st.columns([1, 2])
top = (
    x1.slider("Top-ranked candidates", 1, min(n_ranked, 40), min(n_ranked, 10))
    if n_ranked > 1
    else 1
)
choices = list(
    dict.fromkeys([*SOFC_ELECTROLYTES, *(e.formula for e in EXAMPLES), *measured["material"]])
)
others = x2.multiselect(
    "Electrolytes beside the chosen one (formulas or ids)",
    [c for c in choices if c != electrolyte.name],
    default=[f for f in example_electrolytes() if f != electrolyte.name],
    key="screen_matrix_electrolytes",
    accept_new_options=True,
)
references = [electrolyte]
for spec in dict.fromkeys(others):
    if spec == electrolyte.name:
        continue
    try:
        references.append(
            _reference(
                (model_ref, spec, dataset_key, disorder.mode, disorder.k),
                measured_key,
                spec,
                model,
                dataset,
                disorder,
            )
        )
    except ValueError as exc:
        st.warning(str(exc))
matrix_candidates = candidate_references(table, top)
if range_info is not None:
    matrix_candidates, references = sofc_ui.range_references(table, top, references, range_info)
    st.caption(f"Mean linear CTEs over {range_info[0]:g}–{range_info[1]:g} °C.")
matrix = mismatch_matrix(matrix_candidates, references)
st.plotly_chart(mismatch_heatmap(matrix, references), key="screen_heatmap")
st.caption(
    "Each cell is Δα ± σ in 10⁻⁶ K⁻¹: blue, the candidate expands less than the electrolyte; "
    "red, more. A |Δα| within about 2σ of zero is a match the model cannot tell apart from "
    "a perfect one."
)
st.download_button(
    "Download the mismatch matrix (CSV, values in 1/K)",
    csv_text(matrix.long()),
    file_name="mismatch-matrix.csv",
    mime="text/csv",
    key="screen_matrix_download",
)
