"""ALIGNN-style line-graph network (Choudhary & DeCost, npj Comput. Mater. 7, 185 (2021)).

Three sets of vectors, all of width ``atom_fea_len``:

* atom vectors x_i (nodes of the atom graph), from the element features;
* bond vectors y_e (edges of the atom graph, nodes of the line graph), from the Gaussian
  expansion of the bond lengths ``edge_dist`` (:func:`~engine.graphs.builder.gaussian_expand`);
* angle vectors z_(e1,e2) (edges of the line graph), from cos θ expanded in Gaussians on [−1, 1].

The line graph is built once per structure in :meth:`ALIGNN.prepare`
(:func:`engine.graphs.linegraph.attach_line_graph`: two bonds sharing their centre atom are joined; the
input becomes a :class:`~engine.graphs.linegraph.LineGraphData`, which batches ``lg_edge_index`` by the
number of edges). Each ALIGNN layer runs an :class:`EdgeGatedConv` on the line graph (nodes y,
edges z), then one on the atom graph (nodes x, edges the updated y); ``n_gcn`` atom-graph-only
layers follow; the mean of the atom vectors goes to the head.

Cost: with 12 neighbours an atom has up to 12·11 = 132 angles, so the line graph has about 9×
as many edges as the atom graph, and its O(angles · width²) updates dominate. Measured on 500
demo structures (``benchmarks/alignn_cost.py``, docs/results/alignn_cost.json): a training epoch
costs about 4× CGCNN's and training adds about 6× as much memory; ``angle_cutoff=3`` Å (angles
only between bonds up to 3 Å, about the first shell of the oxides) brings it to about 2×.

Differences from the reference implementation, on purpose: LayerNorm instead of BatchNorm in the
convolutions and embeddings (per row, so a batch with no angle, or one, trains, and predictions
never depend on the batch), the graph's own Gaussian distance features, and the bond-graph update
before the atom-graph one in each layer (as the paper describes it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.nn import MessagePassing, global_mean_pool

from engine.core.config import ALIGNNConfig, GraphConfig
from engine.features.elements import MAX_Z, cgcnn_element_table
from engine.graphs.builder import gaussian_expand
from engine.graphs.linegraph import LineGraphData, attach_line_graph
from engine.models.base import FamilyModule, MissingInputError, embed_atoms


def _embedding(in_len: int, out_len: int) -> nn.Sequential:
    """Linear → LayerNorm → SiLU."""
    return nn.Sequential(nn.Linear(in_len, out_len), nn.LayerNorm(out_len), nn.SiLU())


class EdgeGatedConv(MessagePassing):
    r"""The edge-gated graph convolution of ALIGNN (after Bresson & Laurent's residual gated GCN).

    For an edge from source j to target i with features e_ij:

    .. math::
        m_{ij} = A x_i + B x_j + C e_{ij}, \quad \sigma_{ij} = \mathrm{sigmoid}(m_{ij}),\\
        h_i = U x_i + \frac{\sum_j \sigma_{ij} \odot V x_j}{\sum_j \sigma_{ij} + \epsilon},\\
        x_i \leftarrow x_i + \mathrm{SiLU}(\mathrm{LN}(h_i)), \quad
        e_{ij} \leftarrow e_{ij} + \mathrm{SiLU}(\mathrm{LN}(m_{ij}))

    The normalised gate sum makes the update independent of how many neighbours a node has.
    A, B, U and V are one linear layer (``node_linear``) for speed.

    Shapes:
        - input: node features (N, F), edge_index (2, E) (row 0 source, row 1 target), edge
          features (E, F)
        - output: node features (N, F), edge features (E, F)
    """

    def __init__(self, width: int):
        super().__init__(aggr="add")
        self.width = width
        self.node_linear = nn.Linear(width, 4 * width)  # A (target), B (source), U, V
        self.edge_linear = nn.Linear(width, width)  # C
        self.node_norm = nn.LayerNorm(width)
        self.edge_norm = nn.LayerNorm(width)

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        gate_target, gate_source, self_part, neighbour = self.node_linear(x).chunk(4, dim=-1)
        src, dst = edge_index
        m = gate_target[dst] + gate_source[src] + self.edge_linear(edge_attr)
        summed = self.propagate(
            edge_index, v=neighbour, sigma=torch.sigmoid(m), size=(x.size(0), x.size(0))
        )
        weighted, total = summed.split(self.width, dim=-1)
        h = self_part + weighted / (total + 1e-6)
        return x + F.silu(self.node_norm(h)), edge_attr + F.silu(self.edge_norm(m))

    def message(self, v_j: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return torch.cat([sigma * v_j, sigma], dim=-1)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(width={self.width})"


class ALIGNNLayer(nn.Module):
    """Bond-graph update (angles as edges), then atom-graph update (updated bonds as edges)."""

    def __init__(self, width: int):
        super().__init__()
        self.bond_update = EdgeGatedConv(width)
        self.atom_update = EdgeGatedConv(width)

    def forward(self, x, y, z, edge_index, lg_edge_index):
        y, z = self.bond_update(y, lg_edge_index, z)
        x, y = self.atom_update(x, edge_index, y)
        return x, y, z


class ALIGNN(FamilyModule):
    """ALIGNN: element features → n_alignn (bond graph, atom graph) layers → n_gcn atom-graph
    layers → mean pool → dense head.

    Shapes:
        - input: a ``Batch`` of :class:`~engine.graphs.linegraph.LineGraphData` from
          :func:`engine.models.build_inputs`
        - output: standardised predictions (B,); :meth:`pooled` (B, atom_fea_len)
    """

    config_class = ALIGNNConfig
    pooled_description = (
        "mean over atoms of the atom vectors after the last layer (ALIGNN and GCN layers), "
        "atom_fea_len"
    )
    predicts_from_pooled = True

    def __init__(self, config: ALIGNNConfig, graph: GraphConfig):
        super().__init__()
        self.config = config
        self.graph_config = graph
        width = config.atom_fea_len
        if config.atom_features == "cgcnn92":
            # Saved with the weights so a model never silently changes its input features.
            self.register_buffer("atom_table", torch.from_numpy(cgcnn_element_table()))
            self.atom_embedding = _embedding(self.atom_table.shape[1], width)
        else:
            self.atom_embedding = nn.Embedding(MAX_Z + 1, width)
        self.bond_embedding = _embedding(graph.n_gaussians, width)
        self.register_buffer("angle_centers", torch.linspace(-1.0, 1.0, config.n_angle_basis))
        self.angle_width = 2.0 / (config.n_angle_basis - 1)
        self.angle_embedding = _embedding(config.n_angle_basis, width)
        self.alignn_layers = nn.ModuleList(ALIGNNLayer(width) for _ in range(config.n_alignn))
        self.gcn_layers = nn.ModuleList(EdgeGatedConv(width) for _ in range(config.n_gcn))
        self.fc = nn.Linear(width, config.h_fea_len)
        self.dropout = nn.Dropout(config.dropout)
        self.fc_out = nn.Linear(config.h_fea_len, 1)

    def prepare(self, data: Data, structure) -> None:
        """Attach the line graph (``lg_edge_index``, ``lg_cos``); ``data`` becomes a
        :class:`~engine.graphs.linegraph.LineGraphData`."""
        attach_line_graph(
            data, cutoff=self.graph_config.cutoff, angle_cutoff=self.config.angle_cutoff or None
        )

    def angle_features(self, cos: torch.Tensor) -> torch.Tensor:
        """Gaussian expansion of cos θ, (L,) → (L, n_angle_basis)."""
        return torch.exp(-(((cos.unsqueeze(-1) - self.angle_centers) / self.angle_width) ** 2))

    def atom_features(self, batch: Batch) -> torch.Tensor:
        """Atom vectors after the last layer, (N, atom_fea_len)."""
        if not isinstance(batch, LineGraphData):
            raise MissingInputError(
                "this model needs the line graph (lg_edge_index, lg_cos) that the batch does not "
                "carry; build inputs with LoadedModel.prepare(...) / "
                "engine.models.build_inputs(...), not with a bare GraphBuilder"
            )
        x = embed_atoms(batch, self.atom_embedding, getattr(self, "atom_table", None), MAX_Z)
        y = self.bond_embedding(gaussian_expand(batch.edge_dist, self.graph_config))
        if self.alignn_layers:
            angles = self.angle_embedding(self.angle_features(batch.lg_cos))
            for layer in self.alignn_layers:
                x, y, angles = layer(x, y, angles, batch.edge_index, batch.lg_edge_index)
        for layer in self.gcn_layers:
            x, y = layer(x, batch.edge_index, y)
        return x

    def pooled(self, batch: Batch) -> torch.Tensor:
        """Mean of the final atom vectors per crystal, (B, atom_fea_len)."""
        return global_mean_pool(self.atom_features(batch), batch.batch, size=batch.num_graphs)

    def head(self, crystal: torch.Tensor) -> torch.Tensor:
        """Pooled vectors (B, atom_fea_len) → standardised predictions (B,)."""
        return self.fc_out(self.dropout(F.silu(self.fc(crystal)))).squeeze(-1)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.head(self.pooled(batch))
