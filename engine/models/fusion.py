"""Hybrid composition + structure networks: early fusion and attention fusion.

Graph branch: CGCNN (Xie & Grossman, PRL 120, 145301 (2018)); composition: Magpie (Ward et al.,
npj Comput. Mater. 2, 16028 (2016)).

Both take the CGCNN graph branch (:class:`~engine.models.cgcnn.GraphEncoder`) and the Magpie
descriptor of the composition, attached to every input graph as ``data.comp`` (1, 132) by
:meth:`prepare` and standardised inside the model with training statistics
(:class:`~engine.models.base.CompositionScaler`, saved in ``weights.pt``).

Both expose the same two-step interface used by
:func:`engine.inference.contributions.contribution_analysis`: ``fusion_parts(batch) -> (c, g)``
gives the composition part and the graph part exactly as they enter the fusion, and
``fuse(c, g)`` the standardised prediction from them, so a part can be zeroed or shuffled across
materials between the two steps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import Batch, Data

from engine.core.config import AttentionFusionConfig, EarlyFusionConfig, GraphConfig
from engine.features.composition import N_MAGPIE
from engine.models.base import (
    CompositionScaler,
    FamilyModule,
    attach_composition,
    batch_composition,
    stack_composition,
)
from engine.models.cgcnn import GraphEncoder, trunk_options


class _FusionBase(FamilyModule):
    """Graph branch + standardised composition; subclasses define the fusion."""

    def __init__(self, config, graph: GraphConfig):
        super().__init__()
        self.config = config
        self.graph_config = graph
        self.graph = GraphEncoder(graph, **trunk_options(config))
        self.composition = CompositionScaler(N_MAGPIE)

    def prepare(self, data: Data, structure) -> None:
        attach_composition(data, structure)

    def fit_statistics(self, inputs: list[Data]) -> None:
        self.composition.fit(stack_composition(inputs))

    def fusion_parts(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def fuse(self, comp: torch.Tensor, graph: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.fuse(*self.fusion_parts(batch))


class EarlyFusion(_FusionBase):
    """Early fusion: [standardised Magpie ‖ LayerNorm(pooled CGCNN vector)] → MLP → ŷ.

    Scaling: the 132 Magpie features are z-scores of the training split (order one per entry);
    the pooled graph vector goes through a LayerNorm (zero mean, unit variance over its entries,
    with a learned per-entry scale), so neither part dominates the first layer by its units.
    MLP: (132 + atom_fea_len) → fc1_len → fc2_len → 1, softplus and dropout after each hidden
    layer.

    Shapes:
        - input: a ``Batch`` from :func:`engine.models.build_inputs` (graphs with ``comp``)
        - output: standardised predictions (B,); :meth:`pooled` (B, fc1_len)
    """

    config_class = EarlyFusionConfig
    pooled_description = (
        "fused hidden vector h1 (fc1_len = 128 by default): softplus of the first fusion layer "
        "applied to [standardised Magpie ‖ LayerNorm(pooled CGCNN vector)]"
    )

    def __init__(self, config: EarlyFusionConfig, graph: GraphConfig):
        super().__init__(config, graph)
        self.graph_norm = nn.LayerNorm(config.atom_fea_len)
        self.fc1 = nn.Linear(N_MAGPIE + config.atom_fea_len, config.fc1_len)
        self.fc2 = nn.Linear(config.fc1_len, config.fc2_len)
        self.fc_out = nn.Linear(config.fc2_len, 1)
        self.dropout = nn.Dropout(config.dropout)

    def fusion_parts(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Composition part (B, 132) and graph part (B, atom_fea_len), as concatenated."""
        comp = self.composition(batch_composition(batch))
        return comp, self.graph_norm(self.graph.pooled(batch))

    def hidden(self, comp: torch.Tensor, graph: torch.Tensor) -> torch.Tensor:
        """h1 = softplus(W1 [c ‖ g] + b1), shape (B, fc1_len)."""
        return F.softplus(self.fc1(torch.cat([comp, graph], dim=-1)))

    def fuse(self, comp: torch.Tensor, graph: torch.Tensor) -> torch.Tensor:
        h = self.dropout(self.hidden(comp, graph))
        h = self.dropout(F.softplus(self.fc2(h)))
        return self.fc_out(h).squeeze(-1)

    def pooled(self, batch: Batch) -> torch.Tensor:
        return self.hidden(*self.fusion_parts(batch))


class AttentionFusion(_FusionBase):
    """Attention fusion: softmax weights over a composition vector and a graph vector.

    c = LayerNorm(W_p · standardised Magpie) projects the composition to the graph width;
    g = LayerNorm(pooled CGCNN vector). Each is scored by its own linear layer, s_c = a_c·c + b_c
    and s_g = a_g·g + b_g; (w_comp, w_graph) = softmax(s_c, s_g) per material; the head (as in
    CGCNN: softplus → dense → softplus → dropout → linear) predicts from z = w_comp·c + w_graph·g.
    The LayerNorms put both vectors on the same scale, so a weight reflects reliance, not units.

    Shapes:
        - input: a ``Batch`` from :func:`engine.models.build_inputs` (graphs with ``comp``)
        - output: standardised predictions (B,); :meth:`fusion_weights` (B, 2) with columns
          (w_comp, w_graph); :meth:`pooled` the fused vector z (B, atom_fea_len)
    """

    config_class = AttentionFusionConfig
    pooled_description = (
        "attention-weighted fused vector z = w_comp·c + w_graph·g (atom_fea_len), the input of "
        "the prediction head"
    )

    def __init__(self, config: AttentionFusionConfig, graph: GraphConfig):
        super().__init__(config, graph)
        width = config.atom_fea_len
        self.comp_proj = nn.Linear(N_MAGPIE, width)
        self.comp_norm = nn.LayerNorm(width)
        self.graph_norm = nn.LayerNorm(width)
        self.score_comp = nn.Linear(width, 1)
        self.score_graph = nn.Linear(width, 1)
        self.fc = nn.Linear(width, config.h_fea_len)
        self.dropout = nn.Dropout(config.dropout)
        self.fc_out = nn.Linear(config.h_fea_len, 1)

    def fusion_parts(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Composition vector c and graph vector g, both (B, atom_fea_len)."""
        comp = self.comp_norm(self.comp_proj(self.composition(batch_composition(batch))))
        return comp, self.graph_norm(self.graph.pooled(batch))

    def weights(self, comp: torch.Tensor, graph: torch.Tensor) -> torch.Tensor:
        """(w_comp, w_graph) per material, (B, 2); rows sum to 1."""
        scores = torch.cat([self.score_comp(comp), self.score_graph(graph)], dim=-1)
        return torch.softmax(scores, dim=-1)

    def fused(self, comp: torch.Tensor, graph: torch.Tensor) -> torch.Tensor:
        w = self.weights(comp, graph)
        return w[:, :1] * comp + w[:, 1:] * graph

    def fuse(self, comp: torch.Tensor, graph: torch.Tensor) -> torch.Tensor:
        h = F.softplus(self.fc(F.softplus(self.fused(comp, graph))))
        return self.fc_out(self.dropout(h)).squeeze(-1)

    def fusion_weights(self, batch: Batch) -> torch.Tensor:
        """Per-material (w_comp, w_graph), shape (B, 2)."""
        return self.weights(*self.fusion_parts(batch))

    def pooled(self, batch: Batch) -> torch.Tensor:
        return self.fused(*self.fusion_parts(batch))
