"""Plot builders shared by the pages. Every axis has a title with its unit.

All builders take plain pandas/numpy data and a :class:`~dashboard.components.units.Display`
for the target, and return a plotly ``Figure``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from dashboard.components.units import Display

SPLIT_COLOURS = {"train": "#9aa5b1", "val": "#1f77b4", "test": "#d62728"}
#: Seven clearly different colours (Okabe & Ito's colour-blind-safe set), one per crystal system.
CRYSTAL_SYSTEM_COLOURS = {
    "triclinic": "#000000",
    "monoclinic": "#E69F00",
    "orthorhombic": "#56B4E9",
    "tetragonal": "#009E73",
    "trigonal": "#F0E442",
    "hexagonal": "#0072B2",
    "cubic": "#D55E00",
}
#: Other categories: a qualitative palette without light/dark pairs of one hue.
QUALITATIVE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]
#: Table-cell styles of the domain flags (engine.uq.uncertainty: in-domain | borderline |
#: out-of-domain), for ``DataFrame.style.map``.
DOMAIN_COLOURS = {
    "in-domain": "background-color: rgba(46, 160, 67, 0.25)",
    "borderline": "background-color: rgba(219, 171, 9, 0.30)",
    "out-of-domain": "background-color: rgba(218, 54, 51, 0.30)",
}
_LAYOUT = {"margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "legend_title_text": ""}


def _finish(fig: go.Figure, title: str | None = None, height: int = 380) -> go.Figure:
    fig.update_layout(height=height, title=title, **_LAYOUT)
    return fig


def histogram(values, display: Display, *, title: str | None = None, bins: int = 40) -> go.Figure:
    """Distribution of target values in display units."""
    v = display.scale(pd.Series(values, dtype=float).dropna())
    fig = px.histogram(x=v, nbins=bins)
    fig.update_traces(marker_color="#1f77b4", hovertemplate="%{x}<br>count %{y}<extra></extra>")
    fig.update_xaxes(title=display.label)
    fig.update_yaxes(title="Number of structures")
    return _finish(fig, title)


def element_bar(counts: pd.DataFrame, *, top: int = 40, title: str | None = None) -> go.Figure:
    """Number of structures containing each element (``counts``: element, structures)."""
    shown = counts.head(top)
    fig = px.bar(shown, x="element", y="structures")
    fig.update_xaxes(title="Element", type="category")
    fig.update_yaxes(title="Structures containing it")
    return _finish(fig, title)


def parity(
    frame: pd.DataFrame, display: Display, *, title: str | None = None, height: int = 460
) -> go.Figure:
    """Prediction against truth, one trace per split, hover shows id and formula.

    ``frame`` needs ``target``, ``prediction``, ``id``, ``formula`` and optionally ``split``.
    Each point carries ``customdata = [id, formula]`` for selection events.
    """
    df = frame.copy()
    if "split" not in df:
        df["split"] = "data"
    fig = go.Figure()
    for split, part in df.groupby("split", sort=False):
        fig.add_trace(
            go.Scatter(
                x=display.scale(part["target"]),
                y=display.scale(part["prediction"]),
                mode="markers",
                name=str(split),
                marker={"size": 7, "opacity": 0.75, "color": SPLIT_COLOURS.get(str(split))},
                customdata=np.stack([part["id"].astype(str), part["formula"].astype(str)], axis=1),
                hovertemplate=(
                    "<b>%{customdata[1]}</b><br>id %{customdata[0]}<br>"
                    f"true %{{x:.4g}}<br>predicted %{{y:.4g}} {display.unit}<extra>{split}</extra>"
                ),
            )
        )
    both = np.concatenate(
        [
            display.scale(df["target"].to_numpy(float)),
            display.scale(df["prediction"].to_numpy(float)),
        ]
    )
    both = both[np.isfinite(both)]
    if both.size:
        lo, hi = float(both.min()), float(both.max())
        pad = 0.03 * (hi - lo or 1.0)
        fig.add_trace(
            go.Scatter(
                x=[lo - pad, hi + pad],
                y=[lo - pad, hi + pad],
                mode="lines",
                name="y = x",
                line={"color": "black", "dash": "dash", "width": 1},
                hoverinfo="skip",
            )
        )
    fig.update_xaxes(title=f"True {display.label}")
    fig.update_yaxes(title=f"Predicted {display.label}")
    return _finish(fig, title, height)


def residuals(frame: pd.DataFrame, display: Display, *, title: str | None = None) -> go.Figure:
    """Histogram of prediction − truth, one colour per split."""
    df = frame.copy()
    if "split" not in df:
        df["split"] = "data"
    df["residual"] = display.scale(df["prediction"] - df["target"])
    fig = px.histogram(
        df,
        x="residual",
        color="split",
        barmode="overlay",
        nbins=40,
        color_discrete_map=SPLIT_COLOURS,
        opacity=0.7,
    )
    fig.add_vline(x=0, line_dash="dash", line_color="black")
    fig.update_xaxes(title=f"Residual, predicted − true ({display.unit or 'target unit'})")
    fig.update_yaxes(title="Number of structures")
    return _finish(fig, title)


def _train_val_curves(history: pd.DataFrame, metric: str, label: str, scale=None) -> go.Figure:
    """A figure with the ``train_<metric>`` (solid) and ``val_<metric>`` (dashed) columns per
    epoch; ``scale`` converts values to display units."""
    fig = go.Figure()
    prefix = f"{label} " if label else ""
    for part, dash, name in (("train", "solid", "train"), ("val", "dash", "validation")):
        col = f"{part}_{metric}"
        if col in history:
            fig.add_trace(
                go.Scatter(
                    x=history["epoch"],
                    y=scale(history[col]) if scale else history[col],
                    mode="lines+markers",
                    name=f"{prefix}{name}",
                    line={"dash": dash},
                    marker={"size": 4},
                )
            )
    _epoch_ticks(fig, int(history["epoch"].max()) if len(history) else 1)
    return fig


def _epoch_ticks(fig: go.Figure, epochs: int) -> None:
    """Whole-number epoch ticks (1, 2, 5, 10, 20, 50 … apart), never 1.5 or 2.5."""
    step = next((s for s in (1, 2, 5, 10, 20, 50, 100, 200, 500) if epochs / s <= 10), 1000)
    fig.update_xaxes(tickmode="linear", tick0=1 if step == 1 else 0, dtick=step)


def learning_curves(
    history: pd.DataFrame,
    display: Display | None = None,
    *,
    title: str | None = None,
    label: str = "",
    height: int = 340,
) -> go.Figure:
    """Training and validation loss (MSE on the standardised target) per epoch, log scale."""
    fig = _train_val_curves(history, "loss", label)
    fig.update_xaxes(title="Epoch")
    fig.update_yaxes(
        title="Loss: MSE of the standardised target (unitless)",
        type="log",
        dtick="D2",
        tickformat=".1g",
    )
    return _finish(fig, title, height)


def mae_curves(
    history: pd.DataFrame,
    display: Display,
    *,
    title: str | None = None,
    label: str = "",
    height: int = 340,
) -> go.Figure:
    """Training and validation MAE per epoch, in display units."""
    fig = _train_val_curves(history, "mae", label, scale=display.scale)
    fig.update_xaxes(title="Epoch")
    fig.update_yaxes(title=display.short("MAE"))
    return _finish(fig, title, height)


def gaussian_expansion(
    centres: np.ndarray,
    values: np.ndarray,
    distance: float,
    *,
    width: float,
    title: str | None = None,
) -> go.Figure:
    """The edge feature vector u_k(d) against the Gaussian centres μ_k."""
    fig = go.Figure(
        go.Bar(
            x=centres,
            y=values,
            marker_color="#1f77b4",
            hovertemplate="μ = %{x:.2f} Å<br>u = %{y:.3f}<extra></extra>",
            name="u_k(d)",
        )
    )
    fine = np.linspace(float(centres.min()), float(centres.max()), 400)
    fig.add_trace(
        go.Scatter(
            x=fine,
            y=np.exp(-((distance - fine) ** 2) / width**2),
            mode="lines",
            line={"color": "#d62728", "width": 1},
            name=f"exp(−(d − μ)²/σ²), σ = {width:g} Å",
            hoverinfo="skip",
        )
    )
    fig.add_vline(
        x=distance, line_dash="dash", line_color="black", annotation_text=f"d = {distance:.3f} Å"
    )
    fig.update_xaxes(title="Gaussian centre μ_k (Å)")
    fig.update_yaxes(title="Edge feature u_k(d) (unitless)", range=[0, 1.05])
    return _finish(fig, title, 320)


def coordination_hist(counts: pd.Series, cap: int, *, title: str | None = None) -> go.Figure:
    """How many atoms have how many neighbours within the cutoff (before the cap)."""
    tally = counts.value_counts().sort_index()
    fig = go.Figure(
        go.Bar(
            x=tally.index,
            y=tally.values,
            marker_color="#1f77b4",
            hovertemplate="%{x} neighbours: %{y} atoms<extra></extra>",
        )
    )
    fig.add_vline(x=cap, line_dash="dash", line_color="#d62728", annotation_text=f"cap = {cap}")
    fig.update_xaxes(title="Neighbours within the cutoff (count)")
    fig.update_yaxes(title="Number of atoms", dtick=1 if tally.max() < 10 else None)
    return _finish(fig, title, 300)


def embedding_scatter(
    frame: pd.DataFrame,
    color: str,
    *,
    color_label: str,
    categorical: bool,
    title: str | None = None,
    height: int = 560,
) -> go.Figure:
    """2-D map of pooled vectors; ``frame`` has x, y, id, formula and the colour column.

    Points carry ``customdata = [id, formula]``; hover shows the formula. A continuous colour
    scale spans the 2nd to 98th percentile, so that a few extreme values do not wash it out.
    """
    df = frame.copy()
    custom = ["id", "formula"]
    if categorical:
        df[color] = df[color].astype(str)
        fig = px.scatter(
            df,
            x="x",
            y="y",
            color=color,
            custom_data=custom,
            labels={color: color_label},
            color_discrete_map=CRYSTAL_SYSTEM_COLOURS,
            color_discrete_sequence=QUALITATIVE,
        )
    else:
        values = pd.to_numeric(df[color], errors="coerce").dropna()
        lo, hi = np.percentile(values, [2, 98]) if len(values) > 2 else (None, None)
        fig = px.scatter(
            df,
            x="x",
            y="y",
            color=color,
            custom_data=custom,
            color_continuous_scale="Viridis",
            labels={color: color_label},
            range_color=[lo, hi] if lo is not None and hi > lo else None,
        )
        fig.update_layout(coloraxis_colorbar={"title": color_label})
    fig.update_traces(
        marker={"size": 8, "opacity": 0.85, "line": {"width": 0.3, "color": "white"}},
        hovertemplate="<b>%{customdata[1]}</b><br>id %{customdata[0]}<extra></extra>",
    )
    fig.update_xaxes(title="Embedding axis 1 (arbitrary units)", showticklabels=False)
    fig.update_yaxes(title="Embedding axis 2 (arbitrary units)", showticklabels=False)
    return _finish(fig, title, height)


def weight_hist(weights: pd.Series, *, title: str | None = None) -> go.Figure:
    """Distribution of the composition weight w_comp (w_graph = 1 − w_comp)."""
    fig = px.histogram(x=weights, nbins=30, range_x=[0, 1])
    fig.add_vline(
        x=float(weights.mean()), line_dash="dash", annotation_text=f"mean {weights.mean():.2f}"
    )
    fig.update_xaxes(title="Composition weight w_comp (unitless; w_graph = 1 − w_comp)")
    fig.update_yaxes(title="Number of structures")
    return _finish(fig, title)


def weight_vs_error(
    frame: pd.DataFrame, display: Display, *, title: str | None = None
) -> go.Figure:
    """|error| against w_comp; ``frame`` has w_comp, error, id, formula."""
    df = frame.copy()
    df["abs_error"] = display.scale(df["error"].abs())
    fig = px.scatter(
        df,
        x="w_comp",
        y="abs_error",
        custom_data=["id", "formula"],
        color="split" if "split" in df else None,
        color_discrete_map=SPLIT_COLOURS,
    )
    fig.update_traces(
        hovertemplate="<b>%{customdata[1]}</b><br>id %{customdata[0]}<br>"
        "w_comp %{x:.2f}<br>|error| %{y:.3g}<extra></extra>"
    )
    fig.update_xaxes(title="Composition weight w_comp (unitless)", range=[0, 1])
    fig.update_yaxes(title=display.short("Absolute error |predicted − true|"))
    return _finish(fig, title)


def weight_by_group(frame: pd.DataFrame, group: str, *, title: str | None = None) -> go.Figure:
    """Box plot of w_comp per value of ``group`` (e.g. crystal system), each box labelled with
    its number of structures; ``frame`` has w_comp, id, formula and ``group``."""
    df = frame.copy()
    counts = df[group].value_counts()
    df["label"] = df[group].map(lambda g: f"{g} ({counts[g]})")
    order = [f"{g} ({counts[g]})" for g in df.groupby(group)["w_comp"].median().sort_values().index]
    fig = px.box(
        df,
        x="label",
        y="w_comp",
        points="all",
        custom_data=["id", "formula"],
        category_orders={"label": order},
    )
    fig.update_traces(
        hovertemplate="<b>%{customdata[1]}</b><br>id %{customdata[0]}<br>"
        "w_comp %{y:.2f}<extra></extra>"
    )
    fig.update_xaxes(title=f"{group.replace('_', ' ').capitalize()} (number of structures)")
    fig.update_yaxes(title="Composition weight w_comp (unitless)", range=[0, 1])
    return _finish(fig, title)


def polymorph_scatter(
    pairs: pd.DataFrame, display: Display, *, title: str | None = None
) -> go.Figure:
    """Predicted against true difference between the two structures of each polymorph pair
    (same formula), coloured by the pair's mean graph weight; ``pairs`` comes from
    :func:`engine.inference.explain.polymorph_pairs` with ``target`` and ``w_graph`` carried."""
    df = pairs.copy()
    df["true_diff"] = display.scale(df["target_a"] - df["target_b"])
    df["pred_diff"] = display.scale(df["prediction_a"] - df["prediction_b"])
    df["mean_w_graph"] = (df["w_graph_a"] + df["w_graph_b"]) / 2
    fig = px.scatter(
        df,
        x="true_diff",
        y="pred_diff",
        color="mean_w_graph",
        range_color=[0, 1],
        color_continuous_scale="Viridis",
        custom_data=["formula", "id_a", "id_b"],
    )
    lim = float(np.nanmax(np.abs(df[["true_diff", "pred_diff"]].to_numpy()))) * 1.05 or 1.0
    fig.add_trace(
        go.Scatter(
            x=[-lim, lim],
            y=[-lim, lim],
            mode="lines",
            showlegend=False,
            line={"dash": "dash", "color": "#888"},
            hoverinfo="skip",
        )
    )
    fig.add_hline(y=0, line_color="#ccc")
    fig.update_traces(
        selector={"mode": "markers"},
        hovertemplate="<b>%{customdata[0]}</b><br>%{customdata[1]} − %{customdata[2]}<br>"
        "true Δ %{x:.3g}<br>predicted Δ %{y:.3g}<extra></extra>",
    )
    fig.update_xaxes(title=display.short("True difference a − b"))
    fig.update_yaxes(title=display.short("Predicted difference a − b"))
    fig.update_layout(coloraxis_colorbar={"title": "mean w_graph"})
    return _finish(fig, title)


def calibration(curves: dict[str, dict], *, title: str | None = None) -> go.Figure:
    """Observed against expected coverage of the Gaussian intervals ±z·σ; ``curves`` maps a
    label to ``{"levels": [...], "observed": [...]}`` (shares in [0, 1]); the diagonal is a
    perfectly calibrated σ, a curve below it an overconfident one."""
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            name="ideal",
            line={"dash": "dash", "color": "#888"},
            hoverinfo="skip",
        )
    )
    for label, curve in curves.items():
        fig.add_trace(
            go.Scatter(
                x=curve["levels"],
                y=curve["observed"],
                mode="lines+markers",
                name=label,
                line={"dash": "dot"} if "unscaled" in label else {},
                hovertemplate="expected %{x:.0%}<br>observed %{y:.0%}<extra>" + label + "</extra>",
            )
        )
    fig.update_xaxes(title="Expected coverage of ±z·σ (fraction)", range=[0, 1])
    fig.update_yaxes(title="Observed share of errors inside (fraction)", range=[0, 1])
    return _finish(fig, title)


#: Bar colours of :func:`accuracy_bars`, by kind of row.
ACCURACY_KINDS = {
    "shipped model (our test split)": "#1f77b4",
    "your model (its test split)": "#2ca02c",
    "published (another test set)": "#9e9e9e",
}


def accuracy_bars(
    frame: pd.DataFrame, display: Display, *, goal: float | None = None, title: str | None = None
) -> go.Figure:
    """Test MAE of models against published anchors: ``frame`` has ``label``, ``mae`` (in the
    target's unit) and ``kind`` (a key of :data:`ACCURACY_KINDS`); one horizontal bar each,
    lowest first; ``goal`` (target unit) is a dashed line."""
    shown = frame.assign(mae=display.scale(frame["mae"])).sort_values("mae", ascending=False)
    fig = go.Figure()
    for kind, colour in ACCURACY_KINDS.items():
        part = shown[shown["kind"] == kind]
        if len(part):
            fig.add_bar(
                x=part["mae"],
                y=part["label"],
                orientation="h",
                name=kind,
                marker_color=colour,
                hovertemplate="%{y}: %{x:.3g} " + display.unit + "<extra></extra>",
            )
    if goal is not None:
        fig.add_vline(
            x=display.scale(goal),
            line_dash="dash",
            line_color="#d62728",
            annotation_text=f"goal {display.scale(goal):.3g}",
            annotation_position="bottom right",
        )
    fig.update_xaxes(title=display.short("Test MAE"), rangemode="tozero")
    fig.update_yaxes(title=None, categoryorder="array", categoryarray=list(shown["label"]))
    fig.update_layout(legend={"orientation": "h", "y": -0.25})
    return _finish(fig, title, 120 + 28 * len(shown))
