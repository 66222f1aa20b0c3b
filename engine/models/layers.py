"""Message-passing layers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import MessagePassing


class CGCNNConv(MessagePassing):
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
        super().__init__(aggr="add")
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
        summed = self.propagate(edge_index, x=x, edge_attr=edge_attr)
        return F.softplus(x + self.bn2(summed))

    def message(
        self, x_i: torch.Tensor, x_j: torch.Tensor, edge_attr: torch.Tensor
    ) -> torch.Tensor:
        gated = self.bn1(self.fc_full(torch.cat([x_i, x_j, edge_attr], dim=-1)))
        filt, core = gated.chunk(2, dim=-1)
        core = F.softplus(core)
        return torch.sigmoid(filt) * core if self.gate else core

    def __repr__(self) -> str:
        f = self.bn2.num_features
        g = self.fc_full.in_features - 2 * f
        return f"{self.__class__.__name__}(atom_fea_len={f}, edge_fea_len={g}, gate={self.gate})"
