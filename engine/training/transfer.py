"""Transfer learning: start a model from another model's weights, optionally with a frozen trunk.

Used by :func:`engine.training.train` through ``TrainConfig.init_from`` and
``TrainConfig.freeze`` (issue 16, lever 3: pretrain on ``mp_elastic`` bulk modulus, fine-tune on
``aflow_agl`` thermal expansion).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from engine.catalog.names import load_model
from engine.core.config import GraphConfig
from engine.store.directory import read_card


def transfer_weights(module: nn.Module, source: str | Path, graph: GraphConfig) -> dict:
    """Copy into ``module`` every entry of the source model's state dict (parameters and
    buffers) whose name and shape match; the others keep their current values.

    Args:
        module: the freshly built model to initialise (changed in place).
        source: a model directory (``model.json`` + ``weights.pt``), e.g. a model pretrained on
            another property.
        graph: this run's graph settings; they must equal the source's, since the convolution
            weights are tied to the distance expansion.

    Returns:
        ``{"init_from": str, "transferred": [names], "skipped": [names]}``: the module's state
        entries copied from the source, and those left as they were (absent from the source or
        of another shape).

    Raises:
        ValueError: graph settings differ, or no entry matches (the wrong source).
    """
    source = Path(source)
    card = read_card(source)
    if card.graph != graph:
        raise ValueError(
            f"init_from {source}: its graph settings ({card.graph}) differ from "
            f"this run's ({graph}); its convolution weights would not fit"
        )
    loaded = load_model(source).module  # checked: finite, matches its own card
    theirs = loaded.state_dict()
    mine = module.state_dict()
    transferred = [k for k, v in mine.items() if k in theirs and theirs[k].shape == v.shape]
    if not transferred:
        raise ValueError(f"init_from {source}: none of its weights fit this model")
    with torch.no_grad():
        for k in transferred:
            mine[k].copy_(theirs[k])
    return {
        "init_from": str(source),
        "transferred": transferred,
        "skipped": [k for k in mine if k not in transferred],
    }


def freeze_parameters(module: nn.Module, prefixes: Sequence[str]) -> list[str]:
    """Stop gradients (``requires_grad = False``) for the parameters whose name starts with one
    of ``prefixes``; returns their names. The optimiser then leaves them unchanged.

    Raises:
        ValueError: a prefix matches no parameter (a typo would otherwise train everything).
    """
    frozen = []
    for prefix in prefixes:
        names = [n for n, _ in module.named_parameters() if n.startswith(prefix)]
        if not names:
            raise ValueError(f"freeze: no parameter name starts with {prefix!r}")
        frozen += names
    for name, p in module.named_parameters():
        if name in frozen:
            p.requires_grad_(False)
    return frozen
