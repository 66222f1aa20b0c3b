"""The crystal graph convolutional neural network (CGCNN)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.nn import global_mean_pool

from engine.core.config import CGCNNConfig, GraphConfig
from engine.features.elements import MAX_Z, cgcnn_element_table
from engine.graphs.builder import gaussian_expand
from engine.models.base import FamilyModule, embed_atoms
from engine.models.layers import CGCNNConv


def trunk_options(config) -> dict:
    """The :class:`GraphEncoder` keyword arguments of a family config that has the CGCNN
    trunk's fields (``atom_fea_len``, ``n_conv``, ``gate``, ``atom_features``)."""
    return {k: getattr(config, k) for k in ("atom_fea_len", "n_conv", "gate", "atom_features")}


class GraphEncoder(FamilyModule):
    """The CGCNN graph branch: element features → n_conv gated convolutions → mean pool.

    Used on its own as the graph branch of the fusion families, and as the base of
    :class:`CGCNN` (so that parameter names stay those of the original checkpoints).

    Shapes:
        - input: a torch_geometric ``Batch`` of B graphs from :class:`engine.graphs.builder.GraphBuilder`
        - output: :meth:`pooled` gives crystal vectors (B, atom_fea_len)
    """

    def __init__(
        self,
        graph: GraphConfig,
        *,
        atom_fea_len: int,
        n_conv: int,
        gate: bool = True,
        atom_features: str = "cgcnn92",
    ):
        super().__init__()
        self.graph_config = graph
        if atom_features == "cgcnn92":
            # Saved with the weights so a model never silently changes its input features.
            self.register_buffer("atom_table", torch.from_numpy(cgcnn_element_table()))
            self.embedding = nn.Linear(self.atom_table.shape[1], atom_fea_len)
        else:
            self.embedding = nn.Embedding(MAX_Z + 1, atom_fea_len)
        self.convs = nn.ModuleList(
            CGCNNConv(atom_fea_len, graph.n_gaussians, gate=gate) for _ in range(n_conv)
        )

    def atom_features(self, batch: Batch) -> torch.Tensor:
        """Atom vectors v_i after the convolutions, shape (N, atom_fea_len); disordered sites
        start from their occupancy-weighted element features (:func:`embed_atoms`)."""
        x = embed_atoms(batch, self.embedding, getattr(self, "atom_table", None), MAX_Z)
        edge_attr = gaussian_expand(batch.edge_dist, self.graph_config)
        for conv in self.convs:
            x = conv(x, batch.edge_index, edge_attr)
        return x

    def pooled(self, batch: Batch) -> torch.Tensor:
        """The pooled crystal vector v_c (mean over atoms), shape (B, atom_fea_len)."""
        return global_mean_pool(self.atom_features(batch), batch.batch, size=batch.num_graphs)


class HeadLayers:
    """CGCNN's dense head, shared by :class:`CGCNN` and :class:`DenseHead` (a mixin, so that
    CGCNN keeps the parameter names ``conv_to_fc``, ``fcs``, ``fc_out`` of the original
    checkpoints)."""

    def _build_head(self, in_len: int, h_fea_len: int, n_h: int, dropout: float) -> None:
        self.conv_to_fc = nn.Linear(in_len, h_fea_len)
        self.fcs = nn.ModuleList(nn.Linear(h_fea_len, h_fea_len) for _ in range(n_h - 1))
        self.dropout = nn.Dropout(dropout)
        self.fc_out = nn.Linear(h_fea_len, 1)

    def head(self, crystal: torch.Tensor) -> torch.Tensor:
        """Dense head on pooled vectors (B, in_len) → standardised predictions (B,)."""
        h = F.softplus(self.conv_to_fc(F.softplus(crystal)))
        for fc in self.fcs:
            h = F.softplus(fc(h))
        return self.fc_out(self.dropout(h)).squeeze(-1)


class DenseHead(HeadLayers, nn.Module):
    """CGCNN's dense head as a module of its own: softplus → ``conv_to_fc`` → softplus →
    (n_h − 1) × (linear, softplus) → dropout → ``fc_out``. Used as one task head of the
    multi-task family.

    Shapes:
        - input: pooled crystal vectors (B, in_len)
        - output: standardised predictions (B,)
    """

    def __init__(self, in_len: int, h_fea_len: int, n_h: int = 1, dropout: float = 0.0):
        super().__init__()
        self._build_head(in_len, h_fea_len, n_h, dropout)

    def forward(self, crystal: torch.Tensor) -> torch.Tensor:
        return self.head(crystal)


class CGCNN(HeadLayers, GraphEncoder):
    """CGCNN: element features → n_conv gated convolutions → mean pool → dense head.

    ``forward`` returns the prediction on the standardised target scale; the normaliser lives
    with the saved model (see :mod:`engine.store.directory`). Parameter names follow the original code,
    so its checkpoints load directly. ``CGCNNConfig(gate=False)`` is the gate ablation.

    Shapes:
        - input: a torch_geometric ``Batch`` of B graphs from :class:`engine.graphs.builder.GraphBuilder`
        - output: predictions (B,); :meth:`pooled` gives crystal vectors (B, atom_fea_len)
    """

    config_class = CGCNNConfig
    pooled_description = (
        "pooled crystal vector v_c: the mean of the atom vectors after the "
        "last convolution (atom_fea_len)"
    )
    predicts_from_pooled = True

    def __init__(self, config: CGCNNConfig, graph: GraphConfig):
        super().__init__(graph, **trunk_options(config))
        self.config = config
        self._build_head(config.atom_fea_len, config.h_fea_len, config.n_h, config.dropout)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.head(self.pooled(batch))
