"""Fuel-cell pieces shared by Home, Predict and Screen: what the CTE target is, a text box for
SOFC names and compositions on a prototype, calibration to measured CTEs (with its plot) and the
operating-range mode. Values are stored in 1/K and shown in 10⁻⁶ K⁻¹."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from engine import (
    MIN_POINTS,
    PROTOTYPES,
    SOFC_MATERIALS,
    Calibration,
    NamedStructure,
    ReadError,
    apply_calibration,
    fit_calibration,
    pairs_from_table,
    resolve_structure,
)

MICRO = 1e6
UNIT = "10⁻⁶ K⁻¹"

#: What the CTE target is and what it leaves out, said plainly (Home and Screen).
CTE_TARGET = (
    "**What the CTE numbers are.** The models predict AFLOW's AGL **volumetric** thermal "
    "expansion α_V at **300 K**, computed with the quasi-harmonic Debye model; the linear CTE "
    "is taken as α_V/3 (isotropic solid). Data sheets quote a *mean* linear CTE from room "
    "temperature to the operating temperature, which is larger. **Left out:** chemical "
    "expansion of oxygen-deficient perovskites (LSCF, BSCF, LSC lose oxygen on heating), "
    "spin-state transitions in cobaltites, anharmonicity beyond the quasi-harmonic model, and "
    "phase transitions. Dilatometry includes all of these: calibrate to your own measurements "
    "where you have three or more."
)


def target_note() -> None:
    """Show :data:`CTE_TARGET`."""
    st.info(CTE_TARGET)


def spec_box(key: str, label: str = "SOFC names or compositions, one per line"):
    """A text box of SOFC library names (8YSZ, GDC, LSCF …) and ``FORMULA as PROTOTYPE``
    lines; returns (structures, errors) for the lines typed."""
    text = st.text_area(
        label,
        key=key,
        placeholder="LSCF\nLa0.6Sr0.4Co0.2Fe0.8O3 as perovskite\nCe0.9Gd0.1O1.95 as fluorite",
        help="Library names: " + ", ".join(m.name for m in SOFC_MATERIALS) + ". Or a composition "
        f"on a prototype ({', '.join(PROTOTYPES)}): partial occupancies become a disordered "
        "cell with a lattice from occupancy-weighted Shannon radii; O below the ideal count "
        "is oxygen vacancies.",
    )
    items: list[NamedStructure] = []
    errors: list[ReadError] = []
    for line in dict.fromkeys(ln.strip() for ln in (text or "").splitlines() if ln.strip()):
        try:
            named = resolve_structure(line)
        except ValueError as exc:
            errors.append(ReadError(source=line, reason=str(exc)))
            continue
        if named is None:
            errors.append(
                ReadError(
                    source=line,
                    reason="neither an SOFC library name nor "
                    "'FORMULA as " + "|".join(PROTOTYPES) + "'",
                )
            )
        else:
            items.append(named)
    return items, errors


def calibration_figure(cal: Calibration) -> go.Figure:
    """Measured against predicted linear CTE (10⁻⁶ K⁻¹) with the fitted line and y = x."""
    pts = cal.points
    x = pts["predicted_per_K"].to_numpy() * MICRO
    lo, hi = (
        float(min(x.min(), pts["measured_per_K"].min() * MICRO)),
        float(max(x.max(), pts["measured_per_K"].max() * MICRO)),
    )
    grid = np.linspace(lo - 1, hi + 1, 50)
    line, sigma = cal(grid / MICRO)
    fig = go.Figure()
    fig.add_scatter(
        x=grid,
        y=(line + sigma) * MICRO,
        mode="lines",
        line={"width": 0},
        showlegend=False,
        hoverinfo="skip",
    )
    fig.add_scatter(
        x=grid,
        y=(line - sigma) * MICRO,
        mode="lines",
        line={"width": 0},
        fill="tonexty",
        name="fit ± bootstrap σ",
        hoverinfo="skip",
    )
    fig.add_scatter(x=grid, y=line * MICRO, mode="lines", name="robust fit (Huber)")
    fig.add_scatter(x=grid, y=grid, mode="lines", line={"dash": "dot"}, name="measured = predicted")
    fig.add_scatter(
        x=x,
        y=pts["measured_per_K"] * MICRO,
        mode="markers+text",
        text=pts["material"],
        textposition="top center",
        name="your measurements",
    )
    fig.update_xaxes(title=f"Predicted linear CTE α_V/3 at 300 K ({UNIT})")
    fig.update_yaxes(title=f"Measured linear CTE ({UNIT})")
    fig.update_layout(height=420, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return fig


def calibration_section(table: pd.DataFrame, electrolyte):
    """Offer calibration when ≥ :data:`MIN_POINTS` candidates have measured and predicted CTEs;
    returns the (possibly calibrated and re-ranked) table and electrolyte."""
    pairs = pairs_from_table(table)
    with st.expander(f"Calibrate to your measurements ({len(pairs)} measured candidates)"):
        if len(pairs) < MIN_POINTS:
            st.caption(
                f"Enter measured linear CTEs for at least {MIN_POINTS} of the candidates "
                "in the measured table above to fit predicted → measured."
            )
            return table, electrolyte
        try:
            cal = fit_calibration(
                pairs["predicted_per_K"], pairs["measured_per_K"], pairs["material"]
            )
        except ValueError as exc:
            st.warning(f"Calibration: {exc}")
            return table, electrolyte
        st.markdown(
            f"measured ≈ **{cal.intercept * MICRO:+.2f} {UNIT} + {cal.slope:.3f} × predicted** "
            f"(Huber robust fit on {len(pairs)} materials); leave-one-out mean absolute error "
            f"**{cal.loo_mae * MICRO:.2f} {UNIT}**; σ from {len(cal.boot)} bootstrap resamples."
        )
        st.plotly_chart(calibration_figure(cal), key="sofc_calibration_plot")
        st.dataframe(
            (cal.points.set_index("material") * MICRO)
            .round(2)
            .rename(
                columns={
                    "predicted_per_K": f"predicted ({UNIT})",
                    "measured_per_K": f"measured ({UNIT})",
                    "loo_per_K": f"leave-one-out fit ({UNIT})",
                    "loo_error_per_K": f"leave-one-out error ({UNIT})",
                }
            ),
            key="sofc_calibration_table",
        )
        if not st.checkbox(
            "Apply the calibration to every predicted candidate (values marked 'calibrated')",
            key="sofc_calibration_apply",
        ):
            return table, electrolyte
    return apply_calibration(table, cal, electrolyte)


def range_section(table: pd.DataFrame, source, electrolyte, electrolyte_item):
    """The operating-range mode: a °C range (default 25–800) and, when ``engine.physics`` is
    available, the mean linear CTE over it for every candidate and the electrolyte, re-ranked
    by its mismatch; otherwise a note saying why it is disabled.

    Returns:
        The table to show, and ``(t1, t2, method)`` when it is ranked over the range (else
        None).
    """
    from engine import DEFAULT_RANGE_C, METHODS, physics_note, range_column, screen_over_range

    note = physics_note()
    r1, r2, r3 = st.columns(3)
    t1 = r1.number_input(
        "Range from (°C)",
        value=DEFAULT_RANGE_C[0],
        step=25.0,
        key="sofc_t1",
        disabled=note is not None,
    )
    t2 = r2.number_input(
        "to (°C)", value=DEFAULT_RANGE_C[1], step=25.0, key="sofc_t2", disabled=note is not None
    )
    method = r3.selectbox(
        "Temperature dependence",
        METHODS,
        key="sofc_range_method",
        disabled=note is not None,
        format_func={
            "scaled": "physics shape × learned 300 K value",
            "physics": "physics value itself",
        }.get,
        help="The learned 300 K value is far closer to AFLOW's labels than the quick "
        "quasi-harmonic route, so by default only the curve's shape is taken from physics.",
    )
    if note is not None:
        st.info(note)
        return table, None
    if not st.checkbox(f"Rank by the mean linear CTE over {t1:g}–{t2:g} °C", key="sofc_range_on"):
        return table, None
    with st.spinner("Quasi-harmonic α(T) of the candidates and the electrolyte…"):
        ranked, e_value = screen_over_range(
            table, source, electrolyte, electrolyte_item, t1, t2, method=method
        )
    column = range_column(t1, t2)
    st.caption(
        f"Electrolyte mean linear CTE over {t1:g}–{t2:g} °C: "
        f"{e_value[0] * MICRO:.2f} ± {e_value[1] * MICRO:.2f} {UNIT}; ranked by "
        f"`{column.replace('cte_lin_mean', 'mismatch_mean')}`. Measured values are "
        "used as given (enter them over the same range)."
    )
    return ranked, (t1, t2, method)


def range_references(table: pd.DataFrame, top: int, references: list, range_info) -> tuple:
    """Candidates and electrolytes of the mismatch matrix with their mean linear CTE over the
    range instead of the 300 K value: the ``top`` ranked rows of a range-ranked table, and each
    electrolyte through :func:`engine.apps.screening.operating_range.electrolyte_range_cte` (SOFC names and
    'FORMULA as PROTOTYPE' have a structure; other predicted electrolytes are left out with a
    warning)."""
    from dataclasses import replace

    from engine import Reference, electrolyte_range_cte, range_column

    t1, t2, method = range_info
    column = range_column(t1, t2)
    ranked = table[table["passes"]].sort_values("rank").head(top)
    candidates = [
        Reference(
            name=str(r["id"]),
            cte_lin=float(r[column]),
            cte_lin_std=float(r[column.replace("_per_K", "_std_per_K")]),
            source=str(r["cte_source"]),
            formula=str(r["formula"]),
        )
        for _, r in ranked.iterrows()
    ]
    electrolytes = []
    for ref in references:
        item = None
        if ref.source != "measured":
            try:
                item = resolve_structure(ref.name)
            except ValueError:
                item = None
            if item is None:
                st.warning(
                    f"{ref.name}: no structure for its α(T) curve; left out of the "
                    f"matrix over {t1:g}–{t2:g} °C"
                )
                continue
        value, sigma = electrolyte_range_cte(ref, item, t1, t2, method=method)
        electrolytes.append(replace(ref, cte_lin=value, cte_lin_std=sigma))
    return candidates, electrolytes


def disorder_control(key: str, items=None):
    """How disordered structures are predicted (:class:`engine.materials.disorder.DisorderSettings`):
    the virtual crystal, or the mean of k seeded ordered supercells with their spread in σ.
    Shown only when ``items`` (if given) hold a disordered structure."""
    from engine import DisorderSettings

    if items is not None and all(it.structure.is_ordered for it in items):
        return DisorderSettings()
    d1, d2 = st.columns([2, 1])
    mode = d1.radio(
        "Disordered structures (partial occupancies)",
        ["virtual", "orderings"],
        format_func={
            "virtual": "Virtual crystal (occupancy-weighted features; fast)",
            "orderings": "Mean of seeded ordered supercells (spread added to σ)",
        }.get,
        key=f"{key}_mode",
        horizontal=True,
    )
    k = d2.number_input(
        "Orderings", min_value=2, max_value=20, value=5, key=f"{key}_k", disabled=mode == "virtual"
    )
    return DisorderSettings(mode=mode, k=int(k))
