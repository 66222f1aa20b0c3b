"""Multi-task CGCNN (MEGNet-style): a shared trunk, one head per property.

CGCNN: Xie & Grossman, PRL 120, 145301 (2018); MEGNet: Chen et al., Chem. Mater. 31, 3564 (2019).

The trunk is the CGCNN graph branch (:class:`~engine.models.cgcnn.GraphEncoder`: element
features → gated convolutions → mean pool); each target has its own CGCNN dense head
(:class:`~engine.models.cgcnn.DenseHead`). ``forward`` returns one standardised prediction per
task, (B, K); the K normalisers live in the model card (``normalizers``, in target order).

Labels come as ``data.y`` (1, K), standardised, with 0 where a label is missing, and
``data.y_mask`` (1, K), True where the label exists. Missing labels are masked out of the loss
(:meth:`MaskedTaskLosses.task_losses`; ``TrainConfig.loss`` on each task), so a row that lacks
one target still trains the others, and whatever value is stored under a False mask never
matters. The weighting of the task losses
(learned log-variances or fixed inverse-scale) is described in
:class:`~engine.core.config.MultitaskConfig`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import Batch

from engine.core.config import GraphConfig, MultitaskConfig
from engine.models.base import FamilyModule
from engine.models.cgcnn import DenseHead, GraphEncoder, trunk_options


class MaskedTaskLosses:
    """Masked, weighted task losses of a family with K outputs (a mixin for ``nn.Module``
    subclasses with ``config.weighting``, a ``log_vars`` (K,) parameter and ``n_tasks``):
    the multi-task family and the Debye head (:mod:`engine.models.debye`)."""

    @staticmethod
    def task_losses(
        pred: torch.Tensor,
        y: torch.Tensor,
        mask: torch.Tensor,
        *,
        loss: str = "mse",
        delta: float = 0.1,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-task masked loss L_k on the standardised scale, and which tasks had a label.

        Args:
            pred, y: (B, K) standardised predictions and labels (any finite value where masked).
            mask: (B, K) bool, True where the label exists.
            loss, delta: ``mse``, ``l1`` or ``huber`` (with ``delta``), as ``TrainConfig.loss``.

        Returns:
            ``(losses (K,), present (K,) bool)``; a task with no label in the batch has loss 0
            and ``present`` False. Masked entries contribute neither value nor gradient.
        """
        mask = mask.to(torch.bool)
        diff = torch.where(mask, pred - y, torch.zeros_like(pred))
        if loss == "huber":
            each = F.huber_loss(diff, torch.zeros_like(diff), reduction="none", delta=delta)
        elif loss == "l1":
            each = diff.abs()
        else:
            each = diff**2
        count = mask.sum(0)
        return each.sum(0) / count.clamp(min=1), count > 0

    def objective(
        self,
        pred: torch.Tensor,
        y: torch.Tensor,
        mask: torch.Tensor,
        *,
        loss: str = "mse",
        delta: float = 0.1,
    ) -> torch.Tensor:
        """The loss minimised on one batch (see :class:`~engine.core.config.MultitaskConfig`):
        ``learned``: Σ_k exp(−s_k)·L_k + s_k; ``inverse-scale``: mean_k L_k; both over the tasks
        with at least one label in the batch (L_k of :meth:`task_losses` with ``loss``)."""
        losses, present = self.task_losses(pred, y, mask, loss=loss, delta=delta)
        if self.config.weighting == "learned":
            terms = torch.exp(-self.log_vars) * losses + self.log_vars
            return torch.where(present, terms, torch.zeros_like(terms)).sum()
        return losses.sum() / present.sum().clamp(min=1)

    def task_weights(self) -> torch.Tensor:
        """The current weight of each task's standardised loss in :meth:`objective`, (K,)."""
        if self.config.weighting == "learned":
            return torch.exp(-self.log_vars.detach())
        return torch.full((self.n_tasks,), 1.0 / self.n_tasks)


class MultitaskCGCNN(MaskedTaskLosses, FamilyModule):
    """Shared CGCNN trunk → pooled crystal vector → one dense head per task.

    Parameters: ``trunk.*`` (as :class:`GraphEncoder`), ``heads.<k>.*`` (as CGCNN's head), and
    ``log_vars`` (K,), the per-task log-variances s_k of the ``learned`` weighting (trained only
    with that weighting; 0 otherwise).

    Shapes:
        - input: a torch_geometric ``Batch`` of B graphs from :class:`engine.graphs.builder.GraphBuilder`
        - output: standardised predictions (B, K); :meth:`pooled` gives (B, atom_fea_len)
    """

    config_class = MultitaskConfig
    training_kind = "multitask"
    multi_target = True
    pooled_description = (
        "pooled crystal vector v_c of the shared trunk: the mean of the atom "
        "vectors after the last convolution (atom_fea_len); every task head reads it"
    )

    def __init__(self, config: MultitaskConfig, graph: GraphConfig):
        super().__init__()
        self.config = config
        self.graph_config = graph
        self.trunk = GraphEncoder(graph, **trunk_options(config))
        self.heads = nn.ModuleList(
            DenseHead(config.atom_fea_len, config.h_fea_len, config.n_h, config.dropout)
            for _ in range(config.n_tasks)
        )
        self.log_vars = nn.Parameter(
            torch.zeros(config.n_tasks), requires_grad=config.weighting == "learned"
        )

    @property
    def n_tasks(self) -> int:
        return len(self.heads)

    def pooled(self, batch: Batch) -> torch.Tensor:
        """The trunk's pooled crystal vector (B, atom_fea_len)."""
        return self.trunk.pooled(batch)

    def heads_on(self, crystal: torch.Tensor) -> torch.Tensor:
        """All task heads on pooled vectors (B, atom_fea_len) → (B, K)."""
        return torch.stack([head(crystal) for head in self.heads], dim=-1)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.heads_on(self.pooled(batch))
