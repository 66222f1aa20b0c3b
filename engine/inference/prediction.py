"""Batched prediction, pooled-vector extraction and evaluation (fusion: :mod:`.contributions`).

Every function takes a model of any family (a :class:`~engine.store.directory.LoadedModel` or
:class:`~engine.store.directory.EnsembleModel`, a model directory or a model name). Inputs are built by
the model itself (:meth:`~engine.store.directory.LoadedModel.prepare_one`), so a family's extra inputs (the
Magpie row of the fusion families and forests) can never be forgotten.

Every prediction carries its uncertainty σ and applicability-domain flag
(:mod:`engine.uq.uncertainty`): ``prediction_std`` (target unit), ``domain_distance`` (unitless)
and ``domain`` (``in-domain`` | ``borderline`` | ``out-of-domain``; ``unknown`` with a note for
models without a fitted domain).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from engine.catalog.names import load_model
from engine.features.composition import CompositionError
from engine.graphs.builder import GraphBuildError, IsolatedAtomWarning
from engine.io import NamedStructure, ReadError, ReadLimits, read_structures
from engine.store.directory import LoadedModel
from engine.uq.metrics import regression_metrics
from engine.uq.uncertainty import estimate, uncertainty_columns, uncertainty_outputs

if TYPE_CHECKING:  # engine.io.datasets loads only when a dataset is evaluated
    from engine.io.datasets import LabelledDataset

#: Columns of the per-material attention-fusion weights in :func:`predict`, :func:`evaluate`
#: and :func:`fusion_weights` tables (composition, structure); they sum to 1 per row.
WEIGHT_COLUMNS = ("weight_composition", "weight_structure")


@dataclass
class Predictions:
    """One row per predicted structure (``id``, ``formula``, ``n_sites``, ``prediction``),
    plus the entries that could not be read or graphed, with their reasons.

    A multi-target model's table also has ``prediction_<t>`` for every target ``<t>`` in
    ``targets`` (``prediction`` repeats the primary one, ``targets[0]``); ``targets`` and
    ``units`` list every target (one entry for a single-target model). ``notes`` says what is
    missing, e.g. that the model has no fitted σ or domain."""

    table: pd.DataFrame
    errors: list[ReadError] = field(default_factory=list)
    target: str = ""
    unit: str = ""
    model_name: str = ""
    targets: list[str] = field(default_factory=list)
    units: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def columns(self) -> dict[str, str]:
        """Prediction column → its target: ``{"prediction": target}`` for a single-target model,
        ``{"prediction_<t>": t, ...}`` for a multi-target one."""
        if len(self.targets) > 1:
            return {task_column(t): t for t in self.targets}
        return {"prediction": self.target}


def as_model(model: LoadedModel | str | Path) -> LoadedModel:
    """``model`` itself when loaded, else :func:`~engine.store.directory.load_model` of it."""
    return model if isinstance(model, LoadedModel) else load_model(model)


def _items(
    source, limits: ReadLimits | None = None
) -> tuple[list[NamedStructure], list[ReadError], list[str]]:
    """The structures of ``source`` (a list of NamedStructure, or anything
    :func:`read_structures` reads, under ``limits``), the entries that could not be read, and
    a note naming the files skipped on purpose (hidden, not a structure format), if any."""
    if isinstance(source, list) and source and isinstance(source[0], NamedStructure):
        return source, [], []
    batch = read_structures(source, limits=limits)
    notes = []
    if batch.skipped:
        shown = ", ".join(f"{s} ({getattr(s, 'reason', 'skipped')})" for s in batch.skipped[:5])
        more = f" and {len(batch.skipped) - 5} more" if len(batch.skipped) > 5 else ""
        notes.append(
            f"skipped {len(batch.skipped)} file{'' if len(batch.skipped) == 1 else 's'}"
            f": {shown}{more}"
        )
    return batch.items, list(batch.errors), notes


def model_inputs(model: LoadedModel, items: list[NamedStructure], notes: list[str] | None = None):
    """Model inputs of the items that can be used, their positions in ``items``, and
    ReadErrors for the rest. Isolated-atom warnings are added to ``notes`` when given."""
    try:  # all at once (vectorised graph building); item by item only to find the bad ones
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            inputs = model.prepare([it.structure for it in items], ids=[it.id for it in items])
        if notes is not None:
            notes.extend(
                str(w.message) for w in caught if issubclass(w.category, IsolatedAtomWarning)
            )
        return inputs, list(range(len(items))), []
    except Exception:  # noqa: BLE001 - found and reported item by item below
        pass
    inputs, kept, errors = [], [], []
    for position, item in enumerate(items):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                inputs.append(model.prepare_one(item.structure, structure_id=item.id))
            kept.append(position)
        except (GraphBuildError, CompositionError) as exc:
            errors.append(ReadError(source=item.source, reason=str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 - one structure never stops the batch
            reason = " ".join(str(exc).split())[:240] or type(exc).__name__
            errors.append(ReadError(source=item.source, reason=reason))
            continue
        if notes is not None:
            notes.extend(
                str(w.message) for w in caught if issubclass(w.category, IsolatedAtomWarning)
            )
    return inputs, kept, errors


def task_column(target: str) -> str:
    """The column of one target's predictions in a multi-target :func:`predict` table."""
    return f"prediction_{target}"


def _multi(model: LoadedModel) -> bool:
    return len(model.targets) > 1


def _outputs(model: LoadedModel) -> tuple[str, ...]:
    outputs = ("prediction", "weights") if model.has_fusion_weights else ("prediction",)
    return (*outputs, "tasks") if _multi(model) else outputs


def _add_weights(frame: pd.DataFrame, out: dict[str, np.ndarray]) -> pd.DataFrame:
    if "weights" in out:
        frame[WEIGHT_COLUMNS[0]] = out["weights"][:, 0]
        frame[WEIGHT_COLUMNS[1]] = out["weights"][:, 1]
    return frame


def predict(
    model: LoadedModel | str | Path,
    source,
    *,
    batch_size: int = 64,
    device: str = "auto",
    limits: ReadLimits | None = None,
) -> Predictions:
    """Predict the model's target for every readable structure in ``source``.

    The table has ``id``, ``formula``, ``n_sites``, ``prediction``, ``prediction_std`` (σ, the
    target's unit), ``domain_distance`` and ``domain`` (:mod:`engine.uq.uncertainty`) and, for
    ``cgcnn-physics`` models, ``physics_used`` (False: no physics inputs on the structure,
    predicted from the graph alone; the CLI computes them with :mod:`engine.physics`), for
    attention-fusion models, the per-material weights :data:`WEIGHT_COLUMNS`
    (``weight_composition``, ``weight_structure``; they sum to 1). A multi-target model adds
    ``prediction_<target>`` (:func:`task_column`) and ``prediction_std_<target>`` per target;
    ``prediction`` and ``prediction_std`` are its primary target's. An ensemble predicts the
    member mean.

    Args:
        model: a loaded model, a model directory, or a model name.
        source: anything :func:`engine.io.read_structures` reads, or a list of
            :class:`NamedStructure`.
        limits: bounds of the read (:class:`engine.io.ReadLimits`; default its defaults).

    Rows whose prediction is not a finite number are moved to ``errors``; isolated atoms (no
    neighbour within the cutoff) are reported in ``notes``.
    """
    model = as_model(model)
    items, errors, skipped = _items(source, limits)
    notes: list[str] = []
    inputs, positions, graph_errors = model_inputs(model, items, notes)
    out = model.run(
        inputs, _outputs(model) + uncertainty_outputs(model), batch_size=batch_size, device=device
    )
    est = estimate(model, out, len(inputs))
    kept = [items[i] for i in positions]
    table = _add_weights(
        pd.DataFrame(
            {
                "id": [it.id for it in kept],
                "formula": [it.structure.composition.reduced_formula for it in kept],
                "n_sites": [len(it.structure) for it in kept],
                "prediction": out["prediction"],
            }
        ),
        out,
    )
    if "tasks" in out:
        for k, target in enumerate(model.targets):
            table[task_column(target)] = out["tasks"][:, k]
    if inputs and hasattr(inputs[0], "physics_used"):  # cgcnn-physics: False = graph alone
        table["physics_used"] = [bool(d.physics_used.item()) for d in inputs]
    for column, values in uncertainty_columns(est, model.targets).items():
        table[column] = values
    predicted = ["prediction", *(task_column(t) for t in model.targets if "tasks" in out)]
    finite = np.isfinite(table[predicted].to_numpy(dtype=float)).all(axis=1)
    graph_errors += [
        ReadError(kept[i].source, "the model returned a non-finite prediction")
        for i in np.flatnonzero(~finite)
    ]
    table = table[finite].reset_index(drop=True)
    return Predictions(
        table=table,
        errors=errors + graph_errors,
        target=model.card.target,
        unit=model.card.unit,
        model_name=model.name,
        targets=model.targets,
        units=model.card.task_units,
        notes=([est.note] if est.note else []) + skipped + _summarised(notes),
    )


def _summarised(notes: list[str], shown: int = 3) -> list[str]:
    """At most ``shown`` isolated-atom notes, then one line counting the rest."""
    if len(notes) <= shown + 1:
        return notes
    return [*notes[:shown], f"{len(notes) - shown} more structures have isolated atoms"]


def nearest_training(
    model: LoadedModel | str | Path,
    source,
    *,
    k: int = 5,
    batch_size: int = 64,
    device: str = "auto",
) -> pd.DataFrame:
    """The k nearest training crystals of every readable structure in ``source``, in the
    space of the applicability domain (standardised pooled vectors).

    Returns:
        One row per (structure, neighbour): ``query_id``, ``rank`` (1 = nearest), ``id``,
        ``formula``, ``label`` (the primary target's training value, its unit; plus
        ``label_<t>`` per target of a multi-target model) and ``distance`` (unitless).

    Raises:
        ValueError: the model has no fitted domain.
    """
    from engine.uq.uncertainty import no_uncertainty_note

    model = as_model(model)
    if model.uncertainty is None:
        raise ValueError(no_uncertainty_note(model.name))
    items, _, _ = _items(source)
    inputs, positions, _ = model_inputs(model, items)
    pooled = model.embed_graphs(inputs, batch_size=batch_size, device=device)
    domain = model.uncertainty.domain
    distance, index = domain.neighbours(pooled, k)
    several = len(domain.targets) > 1
    rows = []
    for position, dist_row, index_row in zip(positions, distance, index):
        for rank, (d, i) in enumerate(zip(dist_row, index_row), start=1):
            row = {
                "query_id": items[position].id,
                "rank": rank,
                "id": str(domain.ids[i]),
                "formula": str(domain.formulas[i]),
                "label": float(domain.labels[i, 0]),
            }
            if several:
                row.update(
                    {f"label_{t}": float(domain.labels[i, j]) for j, t in enumerate(domain.targets)}
                )
            rows.append({**row, "distance": float(d)})
    labels = [f"label_{t}" for t in domain.targets] if several else []
    return pd.DataFrame(
        rows, columns=["query_id", "rank", "id", "formula", "label", *labels, "distance"]
    )


def embed(
    model: LoadedModel | str | Path,
    items: list[NamedStructure],
    *,
    batch_size: int = 64,
    device: str = "auto",
) -> tuple[np.ndarray, list[NamedStructure]]:
    """Pooled vectors (B, D) of the items that could be used, and those items.

    What the vector is depends on the family (``model.pooled_description``): the pooled CGCNN
    vector for ``cgcnn`` and ``late-fusion``, the fused hidden vector for ``early-fusion``, the
    attention-weighted fused vector for ``attention-fusion``, the standardised Magpie
    descriptor for ``rf-magpie``.
    """
    model = as_model(model)
    inputs, positions, _ = model_inputs(model, items)
    vectors = model.embed_graphs(inputs, batch_size=batch_size, device=device)
    return vectors, [items[i] for i in positions]


def embed_and_predict(
    model: LoadedModel | str | Path,
    items: list[NamedStructure],
    *,
    batch_size: int = 64,
    device: str = "auto",
) -> tuple[np.ndarray, np.ndarray, list[NamedStructure]]:
    """Pooled vectors (B, D) and predictions in the target's unit (B,) of the items that could
    be used, and those items: :func:`embed` and the ``prediction`` column of :func:`predict`
    from inputs prepared once (no σ, domain or nearest-neighbour columns)."""
    model = as_model(model)
    inputs, positions, _ = model_inputs(model, items)
    out = model.run(inputs, ("pooled", "prediction"), batch_size=batch_size, device=device)
    return out["pooled"], out["prediction"], [items[i] for i in positions]


def evaluate(
    model: LoadedModel | str | Path,
    dataset: LabelledDataset,
    target: str,
    *,
    batch_size: int = 64,
    device: str = "auto",
) -> tuple[dict[str, float], pd.DataFrame]:
    """Metrics (n, mae, rmse, r, r2 in the target's unit) and per-structure predictions
    (``id``, ``formula``, ``target``, ``prediction``, ``error``, ``prediction_std``,
    ``domain_distance``, ``domain``, plus :data:`WEIGHT_COLUMNS` for attention-fusion models).
    :func:`engine.uq.uncertainty.split_calibration` of ``error`` and ``prediction_std`` gives the
    calibration of σ on the data.

    For a multi-target model ``target`` picks the task: it must be one of the model's targets,
    and ``prediction`` is that task's output.

    Raises:
        ValueError: ``target`` is not one of a multi-target model's targets.
    """
    model = as_model(model)
    task = None
    if _multi(model):
        if target not in model.targets:
            raise ValueError(
                f"model {model.name!r} predicts {', '.join(model.targets)}; "
                f"{target!r} is not one of them"
            )
        task = model.targets.index(target)
    dataset = dataset.dropna(target)
    y = dataset.targets(target)
    inputs, positions, _ = model_inputs(model, dataset.items)
    out = model.run(
        inputs, _outputs(model) + uncertainty_outputs(model), batch_size=batch_size, device=device
    )
    est = estimate(model, out, len(inputs))
    frame = pd.DataFrame(
        {
            "id": [dataset.items[i].id for i in positions],
            "formula": [dataset.items[i].structure.composition.reduced_formula for i in positions],
            "target": y[positions],
            "prediction": out["prediction"] if task is None else out["tasks"][:, task],
        }
    )
    frame["error"] = frame["prediction"] - frame["target"]
    for column, values in uncertainty_columns(est, [target], task or 0).items():
        frame[column] = values
    frame = _add_weights(frame, out)
    return regression_metrics(frame["target"], frame["prediction"]), frame
