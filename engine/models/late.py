"""Late fusion: ŷ = α·ŷ_RF + (1 − α)·ŷ_CGCNN, α chosen on validation data.

CGCNN: Xie & Grossman, PRL 120, 145301 (2018); the forest uses Magpie features (Ward et al.,
npj Comput. Mater. 2, 16028 (2016)).

The two halves are trained separately (:func:`engine.training.train` trains the CGCNN, then the
forest, then searches α on the validation split). α is a buffer, so it is saved in
``weights.pt``; the card's ``fitted`` block repeats it with the validation MAE of every α tried.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch_geometric.data import Batch, Data

from engine.core.config import GraphConfig, LateFusionConfig
from engine.models.base import FamilyModule
from engine.models.cgcnn import CGCNN
from engine.models.forest import FOREST_FILE, RFMagpie


class LateFusion(FamilyModule):
    """A CGCNN and a Magpie random forest, mixed with a fitted weight α.

    Shapes:
        - input: a ``Batch`` from :func:`engine.models.build_inputs` (graphs with ``comp``)
        - output: standardised predictions (B,); :meth:`branch_predictions` both halves;
          :meth:`pooled` the CGCNN's pooled vector (B, atom_fea_len)
    """

    config_class = LateFusionConfig
    training_kind = "late-fusion"
    pooled_description = (
        "pooled crystal vector of the CGCNN half (atom_fea_len); the forest half has no vector"
    )
    extra_files = (FOREST_FILE,)

    def __init__(self, config: LateFusionConfig, graph: GraphConfig):
        super().__init__()
        self.config = config
        self.graph_config = graph
        self.cgcnn = CGCNN(config.cgcnn(), graph)
        self.rf = RFMagpie(config.forest(), graph)
        # NaN until fitted on the validation split
        self.register_buffer("alpha", torch.tensor(float("nan")))

    def prepare(self, data: Data, structure) -> None:
        self.rf.prepare(data, structure)

    def fit_statistics(self, inputs: list[Data]) -> None:
        self.rf.fit_statistics(inputs)

    def branch_predictions(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised predictions of the forest and of the CGCNN, each (B,)."""
        return self.rf(batch), self.cgcnn(batch)

    def mix(self, rf: torch.Tensor, cgcnn: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha
        if torch.isnan(alpha):
            raise RuntimeError("late fusion: α has not been fitted on validation data")
        return alpha * rf + (1 - alpha) * cgcnn

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.mix(*self.branch_predictions(batch))

    def pooled(self, batch: Batch) -> torch.Tensor:
        return self.cgcnn.pooled(batch)

    def save_extras(self, directory: Path) -> None:
        self.rf.save_extras(directory)

    def load_extras(self, directory: Path) -> None:
        self.rf.load_extras(directory)
