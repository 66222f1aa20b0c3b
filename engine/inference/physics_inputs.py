"""Physics inputs of the ``cgcnn-physics`` family for new structures.

The family (:mod:`engine.models.physics_inputs`) reads θ_D, B0, B′, γ and α_V(300 K) from
``structure.properties``; this module computes them with :func:`thermal_properties` (cached on
disk) and puts them there, so that prediction on arbitrary structures uses the same physics as
the training rows (``docs/results/physics_aflow.csv``, same default recipe). A structure whose
route fails keeps no physics inputs and is predicted from its graph alone.
"""

from __future__ import annotations

from collections.abc import Callable

from engine.io import NamedStructure
from engine.models.physics_inputs import PHYSICS_INPUTS, PHYSICS_PROPERTY
from engine.physics.schema import ThermalResult, ThermalSettings
from engine.physics.thermal import thermal_properties


def attach_physics_inputs(
    items: list[NamedStructure],
    settings: ThermalSettings | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> list[ThermalResult]:
    """Compute the physics of each item and, where its status is ``ok``, store the inputs in
    ``item.structure.properties`` (in place). Returns the results in item order, so a caller can
    report which rows used physics (``status``) and why the others did not (``reason``)."""
    results = list(thermal_properties(items, settings, progress=progress))
    for item, result in zip(items, results):
        if result.status == "ok":
            item.structure.properties[PHYSICS_PROPERTY] = {
                name: float(getattr(result, name)) for name in PHYSICS_INPUTS
            }
    return results
