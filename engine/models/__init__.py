"""Model families, looked up by the ``name`` of their config, and the one way to build inputs.

==================  ===========================================  ==================================
name                class                                        config
==================  ===========================================  ==================================
cgcnn               :class:`~engine.models.cgcnn.CGCNN`           :class:`~engine.core.config.CGCNNConfig`
                                                                 (``gate=False``: gate ablation)
early-fusion        :class:`~engine.models.fusion.EarlyFusion`    ``EarlyFusionConfig``
attention-fusion    :class:`~engine.models.fusion.AttentionFusion`  ``AttentionFusionConfig``
late-fusion         :class:`~engine.models.late.LateFusion`       ``LateFusionConfig``
rf-magpie           :class:`~engine.models.forest.RFMagpie`       ``RFMagpieConfig``
multitask           :class:`~engine.models.multitask.MultitaskCGCNN`  ``MultitaskConfig``
                                                                 (several targets, one head each)
alignn              :class:`~engine.models.alignn.ALIGNN`         ``ALIGNNConfig``
                                                                 (line graph of bond angles)
cgcnn-physics       :class:`~engine.models.physics_inputs.CGCNNPhysics`  ``CGCNNPhysicsConfig``
                                                                 (physics inputs ‖ pooled vector)
cgcnn-debye         :class:`~engine.models.debye.CGCNNDebye`      ``CGCNNDebyeConfig``
                                                                 (ln B, γ, ln θ_D → α = γC_V/BV)
==================  ===========================================  ==================================

What a family declares is described in :mod:`engine.models.base`.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Sequence

from pydantic import TypeAdapter
from torch_geometric.data import Data

from engine.core.config import MODEL_FAMILIES, GraphConfig, ModelConfig
from engine.graphs.cache import build_many_cached
from engine.models.alignn import ALIGNN
from engine.models.base import FamilyModule, MissingInputError
from engine.models.cgcnn import CGCNN
from engine.models.debye import CGCNNDebye
from engine.models.forest import RFMagpie
from engine.models.fusion import AttentionFusion, EarlyFusion
from engine.models.late import LateFusion
from engine.models.multitask import MultitaskCGCNN
from engine.models.physics_inputs import CGCNNPhysics

__all__ = [
    "MODEL_REGISTRY",
    "FamilyModule",
    "MissingInputError",
    "build_inputs",
    "build_model",
    "model_config_from_dict",
    "prepare_input",
]

#: config ``name`` → model class (with its ``config_class``). A family added here appears in the
#: CLI (``train --model``) and on the dashboard's Train page; add its config to
#: :data:`engine.core.config.ModelConfig` too.
MODEL_REGISTRY: dict[str, type[FamilyModule]] = {
    "cgcnn": CGCNN,
    "early-fusion": EarlyFusion,
    "attention-fusion": AttentionFusion,
    "late-fusion": LateFusion,
    "rf-magpie": RFMagpie,
    "multitask": MultitaskCGCNN,
    "alignn": ALIGNN,
    "cgcnn-physics": CGCNNPhysics,
    "cgcnn-debye": CGCNNDebye,
}

_CONFIG_ADAPTER: TypeAdapter = TypeAdapter(ModelConfig)


def _union_names() -> set[str]:
    union = typing.get_args(typing.get_args(ModelConfig)[0])
    return {cls.model_fields["name"].default for cls in union}


if (
    _union_names() != set(MODEL_REGISTRY)
    or set(MODEL_FAMILIES) != set(MODEL_REGISTRY)
    or any(
        cls.config_class.model_fields["name"].default != name
        for name, cls in MODEL_REGISTRY.items()
    )
):  # pragma: no cover - a programming error caught at import
    raise RuntimeError("MODEL_REGISTRY and engine.core.config.ModelConfig list different families")


def _unknown(name) -> ValueError:
    return ValueError(f"Unknown model family {name!r}; available: {sorted(MODEL_REGISTRY)}")


def build_model(config: ModelConfig, graph: GraphConfig) -> FamilyModule:
    """Instantiate the model family named by ``config.name``."""
    try:
        cls = MODEL_REGISTRY[config.name]
    except KeyError:
        raise _unknown(config.name) from None
    return cls(config, graph)


def model_config_from_dict(data: dict) -> ModelConfig:
    """Parse a saved model config, choosing the family by its ``name`` (default ``cgcnn``, for
    cards written before there were other families).

    Raises:
        ValueError: an unknown family (the message lists the known ones), or a field that does
            not fit the family (pydantic's ValidationError, a ValueError).
    """
    data = {"name": "cgcnn", **data}
    if data["name"] not in MODEL_REGISTRY:
        raise _unknown(data["name"])
    return _CONFIG_ADAPTER.validate_python(data)


def prepare_input(
    module: FamilyModule, builder, structure, *, structure_id: str | None = None
) -> Data:
    """The input ``Data`` of one structure for ``module``: its graph (if the family needs one)
    plus whatever the family attaches in ``prepare`` (e.g. ``comp``, the Magpie row).

    Raises:
        engine.graphs.builder.GraphBuildError: the graph cannot be built under the isolated-atom policy.
        engine.features.composition.CompositionError: no Magpie descriptor for the composition.
    """
    if module.needs_graph:
        data = builder(structure, structure_id=structure_id)
    else:
        data = Data(num_nodes=len(structure))
        if structure_id is not None:
            data.structure_id = structure_id
    module.prepare(data, structure)
    return data


def build_inputs(
    module: FamilyModule,
    builder,
    structures: Iterable,
    ids: Sequence[str] | None = None,
    *,
    use_cache: bool | None = None,
) -> list[Data]:
    """Inputs of many structures (see :func:`prepare_input`). The only place inputs are built:
    training, prediction, evaluation and embedding all come through here.

    Graphs come from :func:`engine.graphs.cache.build_many_cached` (built once per structure and
    graph config, kept in memory and on disk); ``use_cache=False`` (or
    ``CRYSTAL_SCREEN_GRAPH_CACHE=0``) builds them all."""
    structures = list(structures)
    ids = list(ids) if ids is not None else [None] * len(structures)
    if not module.needs_graph or not hasattr(builder, "build_many"):
        return [prepare_input(module, builder, s, structure_id=i) for s, i in zip(structures, ids)]
    # one vectorised neighbour selection for the graphs not cached yet
    graphs = build_many_cached(builder, structures, ids, use_cache=use_cache)
    for data, structure in zip(graphs, structures):
        module.prepare(data, structure)
    return graphs
