"""Line graphs of periodic neighbour graphs: bonds as nodes, bond angles as edges (ALIGNN).

ALIGNN: Choudhary & DeCost, npj Comput. Mater. 7, 185 (2021).

The neighbour graph of :class:`engine.graphs.builder.GraphBuilder` has directed edges e = (j → i):
``edge_index[0]`` is the neighbour j, ``edge_index[1]`` the centre i, and the edge is "a bond of
centre i". Its bond vector points from the centre to the neighbour's periodic image::

    r_e = pos[j] + edge_offset[e] · cell − pos[i]

**Convention.** The line graph joins two bonds e1 ≠ e2 that share their centre atom i (bonds
i–j and i–k of i's neighbour list), in both directions (e1 → e2 and e2 → e1). Its feature is
cos θ_jik = r_e1 · r_e2 / (|r_e1| |r_e2|), the angle at i, from the actual bond vectors
(periodic images included), clamped to [−1, 1]. A centre with d bonds that take part gives
d·(d − 1) line-graph edges. ``lg_edge_index[0]`` is the source bond e1, ``lg_edge_index[1]``
the target bond e2, both indices into the graph's edges.

**Which bonds take part in angles.** Every bond is a node of the line graph (it keeps its own
features), but angles are formed only between bonds that

* are real (within the graph cutoff; the fake padding edges of ``pad_like_original`` are not);
* are within ``angle_cutoff`` Å, when one is given (a cost knob, as the three-body cutoffs of
  M3GNet and CHGNet; ``None``: every bond, as in ALIGNN);
* are not in a shell that the ``max_neighbors`` cap cut (``edge_cut_shell``, set by the
  graph builder). When the cap falls inside a shell of equal distances, which members of the
  shell are kept is a convention (Z, then index and image) that a supercell or the atom order
  can change. Their distances are equal, so a distance-only model (CGCNN) does not care, but
  their *angles* differ: using them would make predictions change with it (NaCl: the 12 Na–Na
  second-shell bonds of which the cap keeps 6). Such bonds stay nodes of the line graph and
  edges of the atom graph; they only form no angles.

**Batching.** ``lg_edge_index`` indexes edges, not atoms, so batching must shift it by the
number of *edges* of the preceding graphs. torch_geometric shifts any attribute whose name
contains ``index`` by ``num_nodes``, which would be wrong; :class:`LineGraphData` (a ``Data``
subclass) overrides ``__inc__`` for it. :func:`attach_line_graph` turns the graph it is given
into a :class:`LineGraphData` in place, so every input built through
:func:`engine.models.build_inputs` (training, prediction, evaluation, embedding, loaded models)
has this class, and so do the ``Batch`` objects made from them.
"""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Data

#: Slack (Å) when telling real bonds (≤ cutoff) from the padding edges at cutoff + 1 Å.
_TOLERANCE = 1e-4


class LineGraphData(Data):
    """A neighbour graph carrying its line graph.

    Attributes (besides those of :class:`engine.graphs.builder.GraphBuilder`'s ``Data``):
        lg_edge_index: long (2, L); row 0 the source bond, row 1 the target bond, as edge
            indices. Batching shifts it by the number of edges of the graphs before it.
        lg_cos: float (L,); cos θ of the angle between the two bonds at their shared centre.
    """

    def __inc__(self, key, value, *args, **kwargs):
        if key == "lg_edge_index":
            return self.edge_index.size(1)
        return super().__inc__(key, value, *args, **kwargs)


def bond_vectors(data: Data) -> torch.Tensor:
    """Bond vectors r_e = pos[j] + offset·cell − pos[i] of one (unbatched) graph, float64 (E, 3)."""
    j, i = data.edge_index.numpy()
    pos = data.pos.numpy().astype(np.float64)
    cell = data.cell.numpy().reshape(3, 3).astype(np.float64)
    return torch.from_numpy(pos[j] + data.edge_offset.numpy() @ cell - pos[i])


def angle_bonds(data: Data, *, cutoff: float, angle_cutoff: float | None = None) -> torch.Tensor:
    """Which bonds of a graph take part in angles (see the module notes), bool (E,)."""
    dist = data.edge_dist.double()
    keep = (dist <= cutoff + _TOLERANCE) & ~data.edge_cut_shell
    if angle_cutoff is not None:
        keep &= dist <= angle_cutoff
    return keep


def line_graph(
    centre: torch.Tensor, vectors: torch.Tensor, bonds: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs of bonds sharing their centre atom, and the cosine of the angle between them.

    Vectorised, with no Python loop over bonds or atoms: the chosen bonds are sorted by centre,
    so each centre's bonds form a run of d bonds starting at s; bond p of a run is paired with
    s + 0 … s + d_max − 1 on a (bonds × d_max) grid (d_max: the longest run), keeping the
    positions inside its run and dropping the pair with itself. The index arithmetic runs in
    NumPy: per structure the arrays are small, and torch's thread pool would cost more than the
    work (milliseconds per call when the cores are busy).

    Args:
        centre: centre atom i of each bond, long (E,).
        vectors: bond vectors r_e, float (E, 3).
        bonds: which bonds take part, bool (E,); default all.

    Returns:
        ``lg_edge_index`` long (2, L) (source bond, target bond; L = Σ_i d_i (d_i − 1), ordered
        by centre, then source, then target) and cos θ float32 (L,).
    """
    centre = centre.numpy()
    chosen = np.arange(len(centre)) if bonds is None else np.flatnonzero(bonds.numpy())
    if len(chosen) == 0:
        return torch.zeros((2, 0), dtype=torch.long), torch.zeros(0)
    chosen = chosen[np.argsort(centre[chosen], kind="stable")]
    _, first, run, sizes = np.unique(
        centre[chosen], return_index=True, return_inverse=True, return_counts=True
    )
    slot = np.arange(sizes.max())
    src = np.broadcast_to(np.arange(len(chosen))[:, None], (len(chosen), len(slot)))
    dst = first[run][:, None] + slot
    valid = (slot < sizes[run][:, None]) & (dst != src)
    src, dst = chosen[src[valid]], chosen[dst[valid]]
    unit = vectors.numpy().astype(np.float64)
    unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    cos = np.clip(np.einsum("ij,ij->i", unit[src], unit[dst]), -1.0, 1.0)
    return (
        torch.from_numpy(np.stack([src, dst]).astype(np.int64)),
        torch.from_numpy(cos.astype(np.float32)),
    )


def attach_line_graph(
    data: Data, *, cutoff: float, angle_cutoff: float | None = None
) -> LineGraphData:
    """Add ``lg_edge_index`` and ``lg_cos`` to a graph from :class:`engine.graphs.builder.GraphBuilder`
    and make it a :class:`LineGraphData` (in place; the same object is returned).

    Args:
        data: one unbatched graph (with ``pos``, ``cell``, ``edge_offset``, ``edge_dist``,
            ``edge_cut_shell``).
        cutoff: the graph's cutoff (:class:`~engine.core.config.GraphConfig`).
        angle_cutoff: only bonds up to this length (Å) form angles; ``None``: all.
    """
    bonds = angle_bonds(data, cutoff=cutoff, angle_cutoff=angle_cutoff)
    data.lg_edge_index, data.lg_cos = line_graph(data.edge_index[1], bond_vectors(data), bonds)
    # Data.__setattr__ would store "__class__" as a graph attribute; set the real one.
    object.__setattr__(data, "__class__", LineGraphData)
    return data
