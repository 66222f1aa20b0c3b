"""Fusion contributions: per-material attention weights and the error each fused part carries.

:func:`fusion_weights` reads the attention-fusion weights (w_comp + w_graph = 1 per material);
:func:`contribution_analysis` measures the MAE increase (target unit) when the composition part is
zeroed and when the graph vectors are shuffled across materials, for early and attention fusion
(the two-step ``fusion_parts``/``fuse`` interface of :mod:`engine.models.fusion`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from engine.inference.prediction import WEIGHT_COLUMNS, as_model, model_inputs, predict
from engine.store.directory import LoadedModel

if TYPE_CHECKING:  # engine.io.datasets loads only when a dataset is evaluated
    from engine.io.datasets import LabelledDataset

__all__ = ["Contributions", "contribution_analysis", "fusion_weights"]


def fusion_weights(
    model: LoadedModel | str | Path,
    source,
    *,
    batch_size: int = 64,
    device: str = "auto",
) -> pd.DataFrame:
    """Per-material attention weights of an attention-fusion model.

    Args:
        model: an attention-fusion model (loaded, directory or name).
        source: what :func:`predict` accepts (a list of :class:`NamedStructure`, files, ...).

    Returns:
        A table with ``id``, ``formula``, ``weight_composition``, ``weight_structure`` (rows sum
        to 1) and ``prediction``. Unreadable entries are left out.

    Raises:
        ValueError: the model has no fusion weights (any family but attention fusion).
    """
    model = as_model(model)
    if not model.has_fusion_weights:
        raise ValueError(
            f"model {model.name!r} ({model.family}) has no per-material fusion "
            "weights; only attention-fusion models do"
        )
    table = predict(model, source, batch_size=batch_size, device=device).table
    return table[["id", "formula", *WEIGHT_COLUMNS, "prediction"]]


@dataclass
class Contributions:
    """How much a fusion model's error depends on each part (zeroing and shuffling ablation).

    Attributes:
        mae: MAE of the unperturbed model on the data, in the target's unit.
        table: one row per part (``composition``, ``structure``): ``perturbation`` (what was
            done), ``mae`` after it, ``mae_increase`` (mae − baseline), ``relative_contribution``
            (the part's share of the summed positive increases; NaN if neither increases the
            error) and ``mean_abs_change`` (mean |Δ prediction|).
        n: materials used; seed, n_shuffles: the graph-shuffle settings.
        mean_weights: attention fusion only: the mean of each :data:`WEIGHT_COLUMNS` entry.
    """

    model_name: str
    family: str
    target: str
    unit: str
    n: int
    mae: float
    table: pd.DataFrame
    seed: int
    n_shuffles: int
    mean_weights: dict[str, float] | None = None

    def as_dict(self) -> dict:
        rows = {
            row["part"]: {k: v for k, v in row.items() if k != "part"}
            for row in self.table.to_dict("records")
        }
        return {
            "model": self.model_name,
            "family": self.family,
            "target": self.target,
            "unit": self.unit,
            "n": self.n,
            "mae": self.mae,
            "parts": rows,
            "seed": self.seed,
            "n_shuffles": self.n_shuffles,
            "mean_weights": self.mean_weights,
        }


def contribution_analysis(
    model: LoadedModel | str | Path,
    dataset: LabelledDataset,
    target: str,
    *,
    seed: int = 0,
    n_shuffles: int = 5,
    batch_size: int = 256,
    device: str = "auto",
) -> Contributions:
    """Error increase when the composition part is zeroed, and when the graph vectors are
    shuffled across materials, for an early- or attention-fusion model.

    Both parts are taken exactly where they meet (``module.fusion_parts``): for early fusion the
    standardised Magpie block (zeroing = every material gets the training-mean composition) and
    the normalised pooled graph vector; for attention fusion the projected composition vector c
    and the graph vector g. The graph part is permuted across all materials with
    ``numpy.random.default_rng(seed)``, ``n_shuffles`` times, and the MAEs averaged.

    Args:
        model: an early- or attention-fusion model.
        dataset: labelled structures; rows without ``target`` are dropped.
        target: the column to score against (normally the model's own target).

    Raises:
        ValueError: the model is not a fusion network, or fewer than two materials are usable.
    """
    import torch
    from torch_geometric.loader import DataLoader

    model = as_model(model)
    module = model.module
    if not hasattr(module, "fusion_parts"):
        raise ValueError(
            f"contribution analysis needs an early- or attention-fusion model; "
            f"{model.name!r} is {model.family}"
        )
    dataset = dataset.dropna(target)
    y = dataset.targets(target)
    inputs, positions, _ = model_inputs(model, dataset.items)
    if len(inputs) < 2:
        raise ValueError(
            f"contribution analysis needs at least two usable materials, got {len(inputs)}"
        )
    y = y[positions]
    module.eval()
    with model.placed(device) as dev, torch.no_grad():
        comps, graphs = [], []
        for batch in DataLoader(inputs, batch_size=batch_size, shuffle=False):
            c, g = module.fusion_parts(batch.to(dev))
            comps.append(c)
            graphs.append(g)
        comp, graph = torch.cat(comps), torch.cat(graphs)

        def predict_from(c: torch.Tensor, g: torch.Tensor) -> np.ndarray:
            out = [
                module.fuse(c[i : i + batch_size], g[i : i + batch_size])
                for i in range(0, len(c), batch_size)
            ]
            return model.card.normalizer.decode(torch.cat(out).cpu().double()).numpy()

        base = predict_from(comp, graph)
        zeroed = predict_from(torch.zeros_like(comp), graph)
        rng = np.random.default_rng(seed)
        shuffled = [
            predict_from(comp, graph[torch.as_tensor(rng.permutation(len(graph)), device=dev)])
            for _ in range(n_shuffles)
        ]
        weights = (
            module.weights(comp, graph).mean(0).cpu().numpy()
            if hasattr(module, "weights")
            else None
        )

    def mae(pred: np.ndarray) -> float:
        return float(np.mean(np.abs(pred - y)))

    base_mae = mae(base)
    rows = [
        {
            "part": "composition",
            "perturbation": "composition part zeroed",
            "mae": mae(zeroed),
            "mean_abs_change": float(np.mean(np.abs(zeroed - base))),
        },
        {
            "part": "structure",
            "perturbation": f"graph vectors shuffled across materials ({n_shuffles}×, seed {seed})",
            "mae": float(np.mean([mae(p) for p in shuffled])),
            "mean_abs_change": float(np.mean([np.mean(np.abs(p - base)) for p in shuffled])),
        },
    ]
    for row in rows:
        row["mae_increase"] = row["mae"] - base_mae
    positive = [max(row["mae_increase"], 0.0) for row in rows]
    total = sum(positive)
    for row, pos in zip(rows, positive):
        row["relative_contribution"] = pos / total if total > 0 else float("nan")
    table = pd.DataFrame(rows)[
        ["part", "perturbation", "mae", "mae_increase", "relative_contribution", "mean_abs_change"]
    ]
    return Contributions(
        model_name=model.name if model.n_members == 1 else f"{model.name} (member 0)",
        family=model.family,
        target=target,
        unit=model.card.unit,
        n=len(y),
        mae=base_mae,
        table=table,
        seed=seed,
        n_shuffles=n_shuffles,
        mean_weights=None
        if weights is None
        else {WEIGHT_COLUMNS[0]: float(weights[0]), WEIGHT_COLUMNS[1]: float(weights[1])},
    )
