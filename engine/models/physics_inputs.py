"""CGCNN with per-crystal physics inputs next to the pooled graph vector (``cgcnn-physics``).

The models layer does not compute physics: a caller puts the quantities on the structure, as
``structure.properties[PHYSICS_PROPERTY]`` = {name: value for name in :data:`PHYSICS_INPUTS`}
(training: the precomputed ``docs/results/physics_aflow.csv`` by ``auid``; prediction:
:func:`engine.physics.thermal_properties`, filled in by :mod:`engine.inference.prediction`). A structure
without it, or with a non-finite value, is predicted without physics (``physics_used`` 0).
"""

from __future__ import annotations

import math

import torch
from torch_geometric.data import Batch, Data

from engine.core.config import CGCNNPhysicsConfig, GraphConfig
from engine.models.base import CompositionScaler, MissingInputError
from engine.models.cgcnn import GraphEncoder, HeadLayers, trunk_options

#: Key of ``Structure.properties`` holding the physics inputs of a crystal.
PHYSICS_PROPERTY = "physics_inputs"
#: The physics quantities, in the units of :class:`engine.physics.ThermalResult`:
#: α_V(300 K) (1/K), θ_D (K), B0 (GPa), B′ (1), γ (1).
PHYSICS_INPUTS = (
    "cte_vol_300K_per_K",
    "debye_temperature_K",
    "bulk_modulus_GPa",
    "bulk_modulus_derivative",
    "gruneisen",
)
#: Standardised physics inputs are clipped to ±CLIP (soft materials give extreme α_V and B′).
CLIP = 5.0


def physics_vector(structure) -> tuple[list[float], bool]:
    """The raw physics inputs of a structure (5,) and whether all are present and finite."""
    values = (getattr(structure, "properties", None) or {}).get(PHYSICS_PROPERTY) or {}
    row = [float(values.get(name, math.nan)) for name in PHYSICS_INPUTS]
    return row, all(math.isfinite(v) for v in row)


class CGCNNPhysics(HeadLayers, GraphEncoder):
    """CGCNN whose head sees the pooled graph vector ‖ standardised physics ‖ physics_used.

    Shapes:
        - input: a ``Batch`` of B graphs carrying ``phys`` (B, 5) raw physics inputs (NaN where
          missing) and ``physics_used`` (B,) float 0/1, both attached by :meth:`prepare`
        - output: standardised predictions (B,); :meth:`pooled` gives the head's input
          (B, atom_fea_len + 6)
    """

    config_class = CGCNNPhysicsConfig
    pooled_description = (
        "pooled crystal vector v_c ‖ standardised physics inputs ‖ physics_used (atom_fea_len + 6)"
    )

    def __init__(self, config: CGCNNPhysicsConfig, graph: GraphConfig):
        super().__init__(graph, **trunk_options(config))
        self.config = config
        self.physics_scaler = CompositionScaler(len(PHYSICS_INPUTS))
        self._build_head(
            config.atom_fea_len + len(PHYSICS_INPUTS) + 1,
            config.h_fea_len,
            config.n_h,
            config.dropout,
        )

    def prepare(self, data: Data, structure) -> None:
        """Attach ``data.phys`` (1, 5) and ``data.physics_used`` (1,) from the structure."""
        row, used = physics_vector(structure)
        data.phys = torch.tensor([row if used else [math.nan] * len(row)], dtype=torch.float32)
        data.physics_used = torch.tensor([float(used)])

    def fit_statistics(self, inputs: list[Data]) -> None:
        """Mean and std of each physics input over the training crystals that have them."""
        if inputs:
            self.physics_scaler.fit(torch.cat([self._phys(d) for d in inputs]))

    @staticmethod
    def _phys(batch) -> torch.Tensor:
        phys = getattr(batch, "phys", None)
        if phys is None:
            raise MissingInputError(
                "this model needs physics inputs (data.phys) that the batch does not carry; "
                "build inputs with LoadedModel.prepare(...) / engine.models.build_inputs(...)"
            )
        return phys

    def pooled(self, batch: Batch) -> torch.Tensor:
        z = self.physics_scaler(self._phys(batch)).clamp(-CLIP, CLIP)
        used = batch.physics_used.to(z.dtype).unsqueeze(1)
        return torch.cat([super().pooled(batch), z * used, used], dim=1)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.head(self.pooled(batch))
