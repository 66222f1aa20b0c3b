"""The 3D structure + neighbour-graph viewer (py3Dmol / 3Dmol.js), and the graph it draws.

The graph comes from the engine's ``GraphBuilder`` with the model's settings (cutoff and
neighbour cap adjustable). Atoms of the cell are drawn as opaque spheres in VESTA colours;
neighbours that lie in a periodic image are drawn as smaller translucent spheres outside the cell;
every edge is a stick coloured by its length; the unit cell is a dashed box.

3Dmol.js is loaded from ``dashboard/static/vendor/3Dmol-min.js`` (installed at set-up from npm
``3dmol@2.5.5`` and served by Streamlit's static file serving at ``app/static/...``), so the view
works offline. Without that file the CDN is used and a note says so.
"""

from __future__ import annotations

import functools
import html
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
VENDOR_JS = STATIC_DIR / "vendor" / "3Dmol-min.js"
#: URL of the vendored file, relative to the page (Streamlit serves <app folder>/static/ at
#: app/static/); relative so that it also works behind a base URL path.
VENDOR_URL = "app/static/vendor/3Dmol-min.js"
CDN_URL = "https://cdn.jsdelivr.net/npm/3dmol@2.5.5/build/3Dmol-min.js"


#: The viewer's WebGL antialiasing is on unless the browser draws WebGL in software (no GPU:
#: virtual machines, remote desktops, headless browsers): there multisampling took about 1 s of
#: the 1.2–1.7 s a view needed (docs/benchmarks.md, browser timings of 2026-11-30 08:58).
SOFTWARE_GL_CHECK = """<script>
function softwareWebGL() {
  try {
    const gl = document.createElement("canvas").getContext("webgl");
    const info = gl && gl.getExtension("WEBGL_debug_renderer_info");
    const name = info ? String(gl.getParameter(info.UNMASKED_RENDERER_WEBGL)) : "";
    const lose = gl && gl.getExtension("WEBGL_lose_context");
    if (lose) lose.loseContext();
    return /swiftshader|llvmpipe|softpipe|software|basic render/i.test(name);
  } catch (e) {
    return false;
  }
}
</script>"""
VIEWER_OPTIONS = '{backgroundColor:"white"}'
VIEWER_OPTIONS_ADAPTIVE = '{backgroundColor:"white",antialias:!softwareWebGL()}'


def js_url() -> str:
    return VENDOR_URL if VENDOR_JS.is_file() else CDN_URL


def vendored() -> bool:
    return VENDOR_JS.is_file()


# ----------------------------------------------------------------------------------------------
# The graph


@dataclass
class GraphView:
    """The neighbour graph of one structure as plain arrays.

    Attributes:
        center, neighbor: (E,) site indices; messages flow neighbor → center.
        offset: (E, 3) periodic image of the neighbour (integer cell translations).
        distance: (E,) Å.
        features: (E, G) Gaussian expansion of each edge.
        centres: (G,) Gaussian centres μ_k in Å.
        width: σ in Å.
        within: (N,) neighbours within the cutoff, before the cap.
        cutoff, cap: the settings used.
    """

    center: np.ndarray
    neighbor: np.ndarray
    offset: np.ndarray
    distance: np.ndarray
    features: np.ndarray
    centres: np.ndarray
    width: float
    within: np.ndarray
    cutoff: float
    cap: int

    def table(self, structure) -> pd.DataFrame:
        species = [site.species_string for site in structure]
        return pd.DataFrame(
            {
                "edge": np.arange(len(self.center)),
                "centre i": [f"{species[i]}{i}" for i in self.center],
                "neighbour j": [f"{species[j]}{j}" for j in self.neighbor],
                "image (a, b, c)": [
                    "in cell" if not any(o) else f"({o[0]:+d}, {o[1]:+d}, {o[2]:+d})"
                    for o in self.offset
                ],
                "distance (Å)": np.round(self.distance, 4),
            }
        )

    def coordination(self, structure) -> pd.DataFrame:
        """Per atom: element, neighbours within the cutoff, edges kept, nearest and mean distance."""
        n = len(structure)
        kept = np.bincount(self.center, minlength=n)
        nearest = np.full(n, np.nan)
        mean = np.full(n, np.nan)
        for i in range(n):
            d = self.distance[self.center == i]
            if len(d):
                nearest[i], mean[i] = d.min(), d.mean()
        return pd.DataFrame(
            {
                "site": [f"{site.species_string}{i}" for i, site in enumerate(structure)],
                "element": [site.species_string for site in structure],
                "within cutoff": self.within,
                "edges kept": kept,
                "nearest (Å)": np.round(nearest, 3),
                "mean edge (Å)": np.round(mean, 3),
            }
        )


def build_graph(structure, graph_config, *, cutoff: float, max_neighbors: int) -> GraphView:
    """The model's neighbour graph of ``structure`` with this cutoff and cap (no padding)."""
    from engine import GraphBuilder, gaussian_centers, gaussian_expand

    builder = GraphBuilder(
        graph_config,
        cutoff=cutoff,
        max_neighbors=max_neighbors,
        isolated_atoms="ignore",
        pad_like_original=False,
    )
    data = builder(structure)
    centre_all = structure.get_neighbor_list(r=cutoff, exclude_self=True)[0]
    edge_index = data.edge_index.numpy()
    return GraphView(
        center=edge_index[1].astype(int),
        neighbor=edge_index[0].astype(int),
        offset=data.edge_offset.numpy().astype(int),
        distance=data.edge_dist.numpy().astype(float),
        features=gaussian_expand(data.edge_dist, builder.config).numpy(),
        centres=gaussian_centers(builder.config).numpy(),
        width=float(builder.config.gaussian_width),
        within=np.bincount(centre_all, minlength=len(structure)),
        cutoff=float(cutoff),
        cap=int(max_neighbors),
    )


# ----------------------------------------------------------------------------------------------
# Drawing


@functools.lru_cache(maxsize=1)
def _element_colours() -> dict[str, str]:
    import pymatgen.core
    from ruamel.yaml import YAML

    path = Path(pymatgen.core.__file__).parent / "ElementColorSchemes.yaml"
    try:
        table = YAML(typ="safe").load(path.read_text())["VESTA"]
    except Exception:  # noqa: BLE001 - colours are cosmetic
        return {}
    return {el: "#{:02x}{:02x}{:02x}".format(*map(int, rgb)) for el, rgb in table.items()}


def element_colour(symbol: str) -> str:
    return _element_colours().get(symbol, "#ff69b4")


@functools.lru_cache(maxsize=256)
def _radius(symbol: str) -> float:
    from pymatgen.core import Element

    try:
        r = Element(symbol).atomic_radius
        return float(r) if r else 1.2
    except (ValueError, KeyError):
        return 1.2


def distance_colour(t: float) -> str:
    """Viridis colour (hex) for t in [0, 1]."""
    from plotly.colors import sample_colorscale, unlabel_rgb

    rgb = unlabel_rgb(sample_colorscale("Viridis", [min(max(t, 0.0), 1.0)])[0])
    return "#{:02x}{:02x}{:02x}".format(*(round(float(c)) for c in rgb))


def _xyz(v) -> dict:
    return {"x": float(v[0]), "y": float(v[1]), "z": float(v[2])}


def viewer_html(
    structure,
    graph: GraphView | None,
    *,
    show_images: bool = True,
    show_edges: bool = True,
    show_cell: bool = True,
    labels: bool = False,
    highlight_edge: int | None = None,
    height: int = 480,
    atom_scale: float = 0.45,
) -> str:
    """HTML (with script) of a 3Dmol view of the cell and its neighbour graph."""
    import py3Dmol

    view = py3Dmol.view(width="100%", height=height, js=js_url())
    view.setBackgroundColor("white")
    lattice = structure.lattice
    cart = structure.cart_coords
    species = [site.species_string for site in structure]
    for i, (pos, el) in enumerate(zip(cart, species)):
        view.addSphere(
            {"center": _xyz(pos), "radius": atom_scale * _radius(el), "color": element_colour(el)}
        )
        if labels:
            view.addLabel(
                f"{el}{i}",
                {"position": _xyz(pos), "fontSize": 11, "backgroundOpacity": 0.5, "inFront": True},
            )
    if show_cell:
        m = lattice.matrix
        corners = {
            (a, b, c): a * m[0] + b * m[1] + c * m[2]
            for a in (0, 1)
            for b in (0, 1)
            for c in (0, 1)
        }
        for (a, b, c), p in corners.items():
            for d in ((1, 0, 0), (0, 1, 0), (0, 0, 1)):
                q = (a + d[0], b + d[1], c + d[2])
                if q in corners:
                    view.addLine(
                        {
                            "start": _xyz(p),
                            "end": _xyz(corners[q]),
                            "color": "#555555",
                            "dashed": True,
                        }
                    )
    if graph is not None and len(graph.center):
        dmin, dmax = float(graph.distance.min()), float(graph.distance.max())
        span = dmax - dmin or 1.0
        drawn_images: set[tuple[int, int, int, int]] = set()
        drawn_edges: set[tuple] = set()
        for k, (i, j, off, d) in enumerate(
            zip(graph.center, graph.neighbor, graph.offset, graph.distance)
        ):
            off = tuple(int(x) for x in off)
            end = cart[j] + np.asarray(off) @ lattice.matrix
            if any(off) and show_images and (j, *off) not in drawn_images:
                drawn_images.add((j, *off))
                view.addSphere(
                    {
                        "center": _xyz(end),
                        "radius": 0.6 * atom_scale * _radius(species[j]),
                        "color": element_colour(species[j]),
                        "opacity": 0.35,
                    }
                )
            if not show_edges:
                continue
            key = (int(i), int(j), off)
            twin = (int(j), int(i), tuple(-x for x in off))
            if (key in drawn_edges or twin in drawn_edges) and k != highlight_edge:
                continue
            drawn_edges.add(key)
            if not any(off) or show_images:
                hot = k == highlight_edge
                view.addCylinder(
                    {
                        "start": _xyz(cart[i]),
                        "end": _xyz(end),
                        "radius": 0.12 if hot else 0.05,
                        "color": "#ff1493" if hot else distance_colour((d - dmin) / span),
                        "fromCap": 1,
                        "toCap": 1,
                    }
                )
    view.zoomTo()
    body = view._make_html().replace(VIEWER_OPTIONS, VIEWER_OPTIONS_ADAPTIVE, 1)
    legend = ""
    if graph is not None and len(graph.distance) and show_edges:
        stops = ", ".join(distance_colour(t) for t in np.linspace(0, 1, 8))
        legend = (
            '<div style="font:12px sans-serif;margin-top:4px;display:flex;align-items:center;'
            'gap:6px"><span>edge length</span>'
            f"<span>{graph.distance.min():.2f} Å</span>"
            f'<span style="flex:0 0 160px;height:10px;background:linear-gradient(90deg,{stops})">'
            f"</span><span>{graph.distance.max():.2f} Å</span>"
            '<span style="margin-left:12px;opacity:.7">● translucent = atom in a periodic image'
            "</span></div>"
        )
    return f'<div style="width:100%">{SOFTWARE_GL_CHECK}{body}{legend}</div>'


def show_viewer(html_text: str, *, height: int = 480, title: str = "3D structure") -> None:
    """Render viewer HTML in an iframe (``st.iframe`` where available)."""
    total = height + 40
    if hasattr(st, "iframe"):
        st.iframe(html_text, height=total, alt=title)
    else:  # pragma: no cover - older Streamlit
        import streamlit.components.v1 as components

        components.html(html_text, height=total)
    if not vendored():
        st.caption(
            "3Dmol.js is loaded from the internet (no local copy in dashboard/static/vendor; "
            "run `bash dashboard/vendor.sh`). Offline, the view stays blank."
        )


def show_structure(
    structure,
    graph_config=None,
    *,
    height: int = 380,
    cutoff: float | None = None,
    max_neighbors: int | None = None,
    show_images: bool = True,
    title: str = "3D structure",
) -> None:
    """A compact view of one structure with its graph, for pages that open a selected point."""
    graph = None
    if graph_config is not None:
        graph = build_graph(
            structure,
            graph_config,
            cutoff=cutoff or graph_config.cutoff,
            max_neighbors=max_neighbors or graph_config.max_neighbors,
        )
    show_viewer(
        viewer_html(structure, graph, show_images=show_images, height=height),
        height=height,
        title=title,
    )


def describe_line(item) -> str:
    s = item.structure
    return (
        f"**{html.escape(s.composition.reduced_formula)}** · id `{item.id}` · {len(s)} atoms · "
        f"V = {s.volume:.1f} Å³ · a, b, c = " + ", ".join(f"{x:.3f}" for x in s.lattice.abc) + " Å"
    )


def nice_cutoff(x: float) -> float:
    return math.floor(x * 2 + 0.5) / 2
