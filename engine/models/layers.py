"""Message-passing layers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CGCNNConv(nn.Module):
    r"""The gated crystal graph convolution of Xie & Grossman (PRL 120, 145301, eq. 1).

    .. math::
        v_i \leftarrow \mathrm{softplus}\Big(v_i + \mathrm{BN}\big(\sum_{j,k}
        \sigma(z_{(i,j)_k} W_f + b_f) \odot g(z_{(i,j)_k} W_s + b_s)\big)\Big),
        \quad z_{(i,j)_k} = v_i \oplus v_j \oplus u_{(i,j)_k}

    As in the original code, one linear layer ``fc_full`` produces both the gate (filter) and
    the core halves, batch norm ``bn1`` acts on z·W and ``bn2`` on the summed message.
    Parameter names match the original checkpoints.

    Args:
        atom_fea_len: width F of the atom vectors.
        edge_fea_len: width G of the edge features (number of Gaussians).
        gate: if False the sigmoid gate is fixed at 1 (ablation: far neighbours weigh as much
            as near ones).

    Shapes:
        - input: atom features (N, F), edge_index (2, E), edge features (E, G)
        - output: atom features (N, F)
    """

    def __init__(self, atom_fea_len: int, edge_fea_len: int, *, gate: bool = True):
        super().__init__()
        self.gate = gate
        self.fc_full = nn.Linear(2 * atom_fea_len + edge_fea_len, 2 * atom_fea_len)
        self.bn1 = nn.BatchNorm1d(2 * atom_fea_len)
        self.bn2 = nn.BatchNorm1d(atom_fea_len)

    def reset_parameters(self) -> None:
        self.fc_full.reset_parameters()
        self.bn1.reset_parameters()
        self.bn2.reset_parameters()

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor
    ) -> torch.Tensor:
        # fc_full(v_i ⊕ v_j ⊕ u) = v_i W_i + v_j W_j + u W_u + b: the atom parts are projected
        # once per atom and gathered per edge, instead of multiplying the (E, 2F + G) concat
        f = x.shape[1]
        weight = self.fc_full.weight
        atom_weight = torch.cat([weight[:, :f], weight[:, f : 2 * f]])
        centre, neighbour = F.linear(x, atom_weight).chunk(2, dim=-1)
        gated = F.linear(edge_attr, weight[:, 2 * f :], self.fc_full.bias)
        # index_select: its backward (index_add) is deterministic on the CPU, unlike indexing
        gated = self.bn1(
            gated + centre.index_select(0, edge_index[1]) + neighbour.index_select(0, edge_index[0])
        )
        filt, core = gated.chunk(2, dim=-1)
        message = F.softplus(core)
        if self.gate:
            message = torch.sigmoid(filt) * message
        summed = torch.zeros_like(x).index_add_(0, edge_index[1], message)
        return F.softplus(x + self.bn2(summed))

    def __repr__(self) -> str:
        f = self.bn2.num_features
        g = self.fc_full.in_features - 2 * f
        return f"{self.__class__.__name__}(atom_fea_len={f}, edge_fea_len={g}, gate={self.gate})"
