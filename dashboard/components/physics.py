"""The physics estimate on the Predict and Screen pages: universal potential (CHGNet) +
quasi-harmonic Debye model, inline for a handful of structures, as a background job beyond, with
the α_V(T) curve of a chosen candidate beside the learned 300 K prediction ± σ."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard.components.teaching import teach

#: Up to this many structures run inline; more go to a background job.
INLINE_MAX = 5


def alpha_curve(result, learned: tuple[float, float] | None = None) -> go.Figure:
    """α_V(T) (1/K against K) of one result, with the learned 300 K value ± σ as an error bar."""
    fig = go.Figure()
    fig.add_scatter(
        x=result.temperatures_K,
        y=result.alpha_V_per_K,
        mode="lines",
        name=f"physics ({result.potential})",
    )
    if learned is not None and np.isfinite(learned[0]):
        fig.add_scatter(
            x=[300.0],
            y=[learned[0]],
            mode="markers",
            name="learned model, 300 K",
            error_y={"type": "data", "array": [learned[1] if np.isfinite(learned[1]) else 0.0]},
            marker={"size": 10, "symbol": "diamond"},
        )
    fig.update_layout(
        height=380,
        title=f"{result.id}: volumetric thermal expansion",
        xaxis_title="Temperature (K)",
        yaxis_title="α_V (1/K)",
        yaxis_exponentformat="e",
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        legend_title_text="",
    )
    return fig


def _results(items, settings, key: str) -> list | None:
    """Results for ``items``: computed inline, or from a background job (None while running)."""
    from engine import start_thermal_job, thermal_job, thermal_properties

    runs = st.session_state.setdefault(f"{key}_physics_runs", {})
    run_key = (tuple(it.id for it in items), settings.relax)
    entry = runs.get(run_key)
    if entry is None:
        if len(items) <= INLINE_MAX:
            bar = st.progress(0.0, text="Physics estimate…")
            results = list(
                thermal_properties(
                    items,
                    settings,
                    progress=lambda d, t: bar.progress(d / t, text=f"{d} of {t} structures"),
                )
            )
            bar.empty()
            runs[run_key] = {"results": results}
            return results
        if not st.button(
            f"Start the physics estimate for {len(items)} structures (background job)",
            key=f"{key}_physics_start",
        ):
            st.caption("Runs in a separate process: you can leave the page and come back.")
            return None
        runs[run_key] = entry = {"job": start_thermal_job(items, settings)}
    if "results" in entry:
        return entry["results"]
    status, results = thermal_job(entry["job"])
    if status["status"] == "failed":
        st.error(f"The physics job failed: {status.get('error')}")
        return results or None
    if status["status"] == "running":
        st.progress(
            status.get("done", 0) / max(status.get("total", 1), 1),
            text=f"Physics job {entry['job']}: {status.get('done', 0)} of "
            f"{status.get('total')} structures",
        )
        st.button("Refresh", key=f"{key}_physics_refresh")
        return None
    entry["results"] = results
    return results


def physics_section(items, *, key: str, learned: dict | None = None) -> None:
    """The "physics estimate (universal potential)" option for ``items`` (named structures).

    Args:
        items: the candidates.
        key: widget-key prefix of the page.
        learned: id → (learned volumetric CTE at 300 K, σ), both in 1/K, drawn beside the curve.
    """
    from engine import ThermalSettings

    st.subheader("Physics estimate (universal potential)")
    teach("physics")
    c1, c2 = st.columns(2)
    on = c1.toggle(
        "Physics estimate (universal potential)",
        key=f"{key}_physics_on",
        help="CHGNet energy–volume curve + quasi-harmonic Debye model (AFLOW's AGL "
        "recipe): α_V(T) from 100 to 1,300 K, θ_D, B0, B′, γ. About a second per "
        "small structure; results are cached.",
    )
    relax = c2.checkbox(
        "Relax with the universal potential first",
        key=f"{key}_physics_relax",
        help="Positions and cell relaxed with CHGNet (FIRE) before E(V); the "
        "volume change is listed. Idealised library cells run 0–4 % off.",
    )
    if not on:
        return
    if not items:
        st.info("No candidate to estimate.")
        return
    results = _results(items, ThermalSettings(relax=relax), key)
    if not results:
        return
    table = pd.DataFrame([r.summary() for r in results])
    shown = pd.DataFrame(
        {
            "id": table["id"],
            "formula": table["formula"],
            "status": table["status"],
            "α_V 300 K (10⁻⁶ K⁻¹)": table["cte_vol_300K_per_K"] * 1e6,
            "θ_D (K)": table["debye_temperature_K"],
            "B0 (GPa)": table["bulk_modulus_GPa"],
            "B′": table["bulk_modulus_derivative"],
            "γ": table["gruneisen"],
            "curve up to (K)": table["t_max_reached_K"],
            "reason": table["reason"],
        }
    )
    if relax:
        shown.insert(3, "volume change on relaxing (%)", table["relaxed_volume_change"] * 100)
    if learned:
        shown.insert(
            4,
            "learned 300 K (10⁻⁶ K⁻¹)",
            [learned.get(i, (np.nan, np.nan))[0] * 1e6 for i in table["id"]],
        )
    st.dataframe(
        shown,
        hide_index=True,
        width="stretch",
        key=f"{key}_physics_table",
        column_config={
            c: st.column_config.NumberColumn(format="%.3g")
            for c in shown.columns
            if c not in ("id", "formula", "status", "reason")
        },
    )
    ok = [r for r in results if r.status == "ok"]
    st.caption(
        f"{len(ok)} of {len(results)} ok with {results[0].potential}; volumetric α_V. "
        "A failed row says why (soft or unstable E(V), no minimum of G(V; T))."
    )
    if not ok:
        return
    by_id = {r.id: r for r in ok}
    chosen = st.selectbox(
        "Candidate for the α_V(T) curve",
        list(by_id),
        format_func=lambda i: f"{i} — {by_id[i].formula}",
        key=f"{key}_physics_pick",
    )
    st.plotly_chart(
        alpha_curve(by_id[chosen], (learned or {}).get(chosen)),
        width="stretch",
        key=f"{key}_physics_plot",
    )


def _lattice_row(label: str, structure) -> dict:
    lat = structure.lattice
    return {
        "cell": label,
        "a (Å)": lat.a,
        "b (Å)": lat.b,
        "c (Å)": lat.c,
        "α (°)": lat.alpha,
        "β (°)": lat.beta,
        "γ (°)": lat.gamma,
        "volume (Å³)": lat.volume,
    }


def relaxed_cell_section(item) -> None:
    """The cell of ``item`` relaxed with the universal potential (cached, or on request) beside
    the input cell, with the volume change."""
    from engine import ThermalSettings, cached_result, thermal_properties

    st.subheader("Relaxed with the universal potential")
    settings = ThermalSettings(relax=True)
    result = cached_result(item.structure, settings)
    if result is None:
        st.caption(
            "Library and uploaded cells are often idealised (Shannon-radius cells run "
            "0–4 % off). Relaxing takes a few seconds for a small cell and also gives "
            "its physics estimate."
        )
        if not st.button("Relax with CHGNet", key="structure_relax"):
            return
        with st.spinner("Relaxing and sampling E(V)…"):
            result = next(thermal_properties([item], settings))
    if result.relaxed_structure is None:
        st.warning(f"No relaxed cell: {result.reason}")
        return
    change = result.relaxed_volume_change or 0.0
    converged = "converged" if result.relax_converged else "**not converged**"
    st.markdown(f"Volume change on relaxing: **{change:+.2%}** ({converged}, {result.potential}).")
    st.dataframe(
        pd.DataFrame(
            [
                _lattice_row("input", item.structure),
                _lattice_row("relaxed", result.relaxed_structure),
            ]
        ),
        hide_index=True,
        width="stretch",
        key="structure_relaxed_cell",
        column_config={
            c: st.column_config.NumberColumn(format="%.4f")
            for c in ("a (Å)", "b (Å)", "c (Å)", "volume (Å³)")
        },
    )
    if result.status == "ok":
        st.caption(
            f"Physics estimate of the relaxed cell: α_V(300 K) = "
            f"{result.cte_vol_300K_per_K:.3g} 1/K, θ_D = {result.debye_temperature_K:.0f} "
            f"K, B0 = {result.bulk_modulus_GPa:.0f} GPa."
        )
    else:
        st.caption(f"Physics estimate of the relaxed cell failed: {result.reason}")
