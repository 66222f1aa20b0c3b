"""Model families, looked up by the ``name`` of their config."""

from __future__ import annotations

from torch import nn

from engine.config import GraphConfig, ModelConfig
from engine.models.cgcnn import CGCNN

#: config ``name`` → model class. A family added here appears in the CLI and the dashboard.
MODEL_REGISTRY: dict[str, type[nn.Module]] = {"cgcnn": CGCNN}


def build_model(config: ModelConfig, graph: GraphConfig) -> nn.Module:
    """Instantiate the model family named by ``config.name``."""
    try:
        cls = MODEL_REGISTRY[config.name]
    except KeyError:
        raise ValueError(
            f"Unknown model family {config.name!r}; available: {sorted(MODEL_REGISTRY)}"
        ) from None
    return cls(config, graph)


def model_config_from_dict(data: dict) -> ModelConfig:
    """Parse a saved model config, choosing the family by its ``name``."""
    name = data.get("name", "cgcnn")
    try:
        cls = MODEL_REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"Unknown model family {name!r}; available: {sorted(MODEL_REGISTRY)}"
        ) from None
    return cls.config_class(**data)
