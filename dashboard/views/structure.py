"""Structure & graph: one crystal in 3D with the model's neighbour graph, its neighbour table,
coordination statistics and the Gaussian expansion of an edge."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import state
from dashboard.components import plots
from dashboard.components.physics import relaxed_cell_section
from dashboard.components.teaching import teach
from dashboard.components.viewer import build_graph, describe_line, show_viewer, viewer_html

st.title("Structure & graph")
teach("graph")

dataset = state.current_dataset()
source_label = state.data_source().label if dataset is not None else None
if dataset is None or len(dataset) == 0:
    dataset = state.examples_dataset()
    source_label = "SOFC examples"
    st.caption("No dataset loaded: showing the shipped SOFC examples (load data on **Data**).")
items = dataset.items
uploaded = st.session_state.get("uploaded_structures")  # {"label", "items"} from Predict
if uploaded:
    pick = st.radio(
        "Structures from",
        ["upload", "dataset"],
        format_func={
            "upload": f"Uploaded on Predict: {uploaded['label']}",
            "dataset": source_label,
        }.get,
        horizontal=True,
        key="structure_source",
    )
    if pick == "upload":
        items, source_label = uploaded["items"], uploaded["label"]

ids = [it.id for it in items]
formulas = [it.structure.composition.reduced_formula for it in items]
wanted = st.session_state.get("structure_id")
index = ids.index(wanted) if wanted in ids else 0

top = st.columns([2, 2])
choice = top[0].selectbox(
    f"Structure ({source_label}, {len(ids)})",
    range(len(ids)),
    index=index,
    format_func=lambda k: f"{formulas[k]} — {ids[k]}",
    key="structure_pick",
)
item = items[choice]
st.session_state["structure_id"] = item.id
structure = item.structure

with top[1]:
    model = state.choose_model(
        "Graph settings of model",
        key="structure_model",
        help="The cutoff and neighbour cap start at this model's values.",
    )
graph_config = None
if model is not None:
    try:
        graph_config = state.model_card(model).graph
    except Exception as exc:  # noqa: BLE001
        st.warning(f"Could not load {model['name']}: {exc}. Using the default graph settings.")
if graph_config is None:
    from engine import GraphConfig

    graph_config = GraphConfig()

st.markdown(describe_line(item))

c1, c2, c3, c4, c5 = st.columns(5)
cutoff = c1.slider(
    "Cutoff radius (Å)",
    1.0,
    12.0,
    float(min(graph_config.cutoff, 12.0)),
    0.25,
    key=f"cutoff_{model['name'] if model else ''}",
    help=f"The model uses {graph_config.cutoff:g} Å.",
)
cap = c2.slider(
    "Neighbour cap",
    1,
    32,
    int(min(graph_config.max_neighbors, 32)),
    key=f"cap_{model['name'] if model else ''}",
    help=f"The model keeps at most {graph_config.max_neighbors} neighbours per atom.",
)
show_images = c3.checkbox(
    "Periodic images", value=True, help="Draw neighbours outside the cell as translucent spheres."
)
show_edges = c4.checkbox("Edges", value=True)
labels = c5.checkbox("Atom labels", value=len(structure) <= 30)

if (cutoff, cap) != (graph_config.cutoff, graph_config.max_neighbors):
    st.caption(
        f"Exploring other settings than the model's ({graph_config.cutoff:g} Å, "
        f"{graph_config.max_neighbors} neighbours): the model itself always uses its own."
    )
if graph_config.pad_like_original:
    st.caption(
        "This model (an original CGCNN checkpoint) pads atoms that have fewer neighbours "
        f"than the cap with fake edges to atom 0 at {graph_config.cutoff + 1:g} Å, as the "
        "original code did; they are not drawn."
    )

try:
    graph = build_graph(structure, graph_config, cutoff=cutoff, max_neighbors=cap)
except Exception as exc:  # noqa: BLE001
    st.error(f"Could not build the graph: {exc}")
    st.stop()

edges = graph.table(structure)
coord = graph.coordination(structure)

isolated = coord[coord["within cutoff"] == 0]
under = coord[(coord["within cutoff"] > 0) & (coord["within cutoff"] < cap)]
if len(isolated):
    st.error(
        f"{len(isolated)} atom(s) have **no neighbour** within {cutoff:g} Å: "
        + ", ".join(isolated["site"].head(12))
        + ". They receive no messages at all; raise the "
        "cutoff."
    )
if len(under):
    st.warning(
        f"{len(under)} atom(s) are **under-coordinated**: fewer than {cap} neighbours within "
        f"{cutoff:g} Å ("
        + ", ".join(
            f"{s} has {n}" for s, n in zip(under["site"].head(8), under["within cutoff"].head(8))
        )
        + ("…" if len(under) > 8 else "")
        + "). They get fewer messages than the others; the "
        "original CGCNN padded them with fake neighbours."
    )


def chosen_edge(n_edges: int) -> int | None:
    """The edge picked in the neighbour table or the edge box below, read from the session
    before they are drawn, so that the 3D view is sent to the browser first."""
    if not n_edges:
        return None
    table = st.session_state.get("edge_table")
    rows = table["selection"]["rows"] if table else []
    default_edge = rows[0] if rows else 0
    picked = st.session_state.get(f"edge_number_{default_edge}", default_edge)
    return int(min(max(picked, 0), n_edges - 1))


left, right = st.columns([3, 2])
with left:
    height = 520
    show_viewer(
        viewer_html(
            structure,
            graph,
            show_images=show_images,
            show_edges=show_edges,
            labels=labels,
            height=height,
            highlight_edge=chosen_edge(len(edges)),
        ),
        height=height,
        title=f"3D view of {item.id}",
    )
    n_img = int((graph.offset != 0).any(axis=1).sum())
    st.caption(
        f"{len(structure)} atoms, {len(graph.center)} directed edges "
        f"({n_img} to periodic images). Dashed box: the unit cell; pink: the edge chosen "
        "below. Drag to rotate, scroll to zoom."
    )
with right:
    st.markdown("**Coordination**")
    m1, m2, m3 = st.columns(3)
    m1.metric(
        "In cutoff",
        f"{coord['within cutoff'].mean():.1f}",
        help="Mean number of neighbours within the cutoff per atom.",
    )
    m2.metric(
        "Edges kept",
        f"{coord['edges kept'].mean():.1f}",
        help="Mean number of edges per atom after the neighbour cap.",
    )
    m3.metric(
        "Shortest",
        f"{graph.distance.min():.2f} Å" if len(graph.distance) else "–",
        help="Shortest edge length.",
    )
    st.dataframe(coord, hide_index=True, width="stretch", height=260)
    st.plotly_chart(
        plots.coordination_hist(coord["within cutoff"], cap, title="Neighbours within the cutoff"),
        key="coord_hist",
    )

st.subheader("Neighbour table")
st.caption(
    "Each row is one directed edge: the message flows from neighbour j (in the image "
    "given) to centre i. Click a row to see its Gaussian expansion and highlight it."
)
event = st.dataframe(
    edges,
    hide_index=True,
    width="stretch",
    height=300,
    key="edge_table",
    on_select="rerun",
    selection_mode="single-row",
)
rows = event.selection.rows if event is not None else []

if len(edges):
    default_edge = rows[0] if rows else 0
    k = st.number_input(
        "Edge for the Gaussian expansion",
        0,
        len(edges) - 1,
        default_edge,
        key=f"edge_number_{default_edge}",
    )
    k = int(k)
    teach("gaussian")
    row = edges.iloc[k]
    st.plotly_chart(
        plots.gaussian_expansion(
            graph.centres,
            graph.features[k],
            float(graph.distance[k]),
            width=graph.width,
            title=f"Edge {k}: {row['centre i']} ← {row['neighbour j']} "
            f"({row['image (a, b, c)']}), d = {graph.distance[k]:.3f} Å",
        ),
        key="gauss_plot",
    )
    st.caption(
        f"{len(graph.centres)} Gaussians from {graph.centres[0]:g} to "
        f"{graph.centres[-1]:g} Å, σ = {graph.width:g} Å. Features of an edge longer than "
        "the last centre fade towards zero."
    )
else:
    k = None
    st.info("No edges with these settings.")


with st.expander("Lattice and sites"):
    lat = structure.lattice
    st.dataframe(
        pd.DataFrame(
            {
                "a, b, c (Å)": [", ".join(f"{x:.4f}" for x in lat.abc)],
                "α, β, γ (°)": [", ".join(f"{x:.2f}" for x in lat.angles)],
                "volume (Å³)": [round(lat.volume, 3)],
            }
        ),
        hide_index=True,
    )
    st.dataframe(
        pd.DataFrame(
            {
                "site": [f"{s.species_string}{i}" for i, s in enumerate(structure)],
                "x (frac)": structure.frac_coords[:, 0].round(4),
                "y (frac)": structure.frac_coords[:, 1].round(4),
                "z (frac)": structure.frac_coords[:, 2].round(4),
            }
        ),
        hide_index=True,
        width="stretch",
    )

relaxed_cell_section(item)
