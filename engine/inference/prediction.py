"""Batched prediction, pooled-vector extraction, evaluation, fusion weights and contributions.

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
from engine.uq.uncertainty import (
    estimate,
    no_uncertainty_note,
    uncertainty_columns,
    uncertainty_outputs,
)

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


def _as_model(model: LoadedModel | str | Path) -> LoadedModel:
    return model if isinstance(model, LoadedModel) else load_model(model)


def _items(source, limits: ReadLimits | None = None
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
        notes.append(f"skipped {len(batch.skipped)} file{'' if len(batch.skipped) == 1 else 's'}"
                     f": {shown}{more}")
    return batch.items, list(batch.errors), notes


def _inputs(model: LoadedModel, items: list[NamedStructure], notes: list[str] | None = None):
    """Model inputs of the items that can be used, their positions in ``items``, and
    ReadErrors for the rest. Isolated-atom warnings are added to ``notes`` when given."""
    try:  # all at once (vectorised graph building); item by item only to find the bad ones
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            inputs = model.prepare([it.structure for it in items], ids=[it.id for it in items])
        if notes is not None:
            notes.extend(str(w.message) for w in caught
                         if issubclass(w.category, IsolatedAtomWarning))
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
            notes.extend(str(w.message) for w in caught
                         if issubclass(w.category, IsolatedAtomWarning))
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
    model = _as_model(model)
    items, errors, skipped = _items(source, limits)
    notes: list[str] = []
    inputs, positions, graph_errors = _inputs(model, items, notes)
    out = model.run(inputs, _outputs(model) + uncertainty_outputs(model), batch_size=batch_size,
                    device=device)
    est = estimate(model, out, len(inputs))
    kept = [items[i] for i in positions]
    table = _add_weights(pd.DataFrame({
        "id": [it.id for it in kept],
        "formula": [it.structure.composition.reduced_formula for it in kept],
        "n_sites": [len(it.structure) for it in kept],
        "prediction": out["prediction"],
    }), out)
    if "tasks" in out:
        for k, target in enumerate(model.targets):
            table[task_column(target)] = out["tasks"][:, k]
    if inputs and hasattr(inputs[0], "physics_used"):  # cgcnn-physics: False = graph alone
        table["physics_used"] = [bool(d.physics_used.item()) for d in inputs]
    for column, values in uncertainty_columns(est, model.targets).items():
        table[column] = values
    predicted = ["prediction", *(task_column(t) for t in model.targets if "tasks" in out)]
    finite = np.isfinite(table[predicted].to_numpy(dtype=float)).all(axis=1)
    graph_errors += [ReadError(kept[i].source, "the model returned a non-finite prediction")
                     for i in np.flatnonzero(~finite)]
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
    model = _as_model(model)
    if model.uncertainty is None:
        raise ValueError(no_uncertainty_note(model.name))
    items, _, _ = _items(source)
    inputs, positions, _ = _inputs(model, items)
    pooled = model.embed_graphs(inputs, batch_size=batch_size, device=device)
    domain = model.uncertainty.domain
    distance, index = domain.neighbours(pooled, k)
    several = len(domain.targets) > 1
    rows = []
    for position, dist_row, index_row in zip(positions, distance, index):
        for rank, (d, i) in enumerate(zip(dist_row, index_row), start=1):
            row = {"query_id": items[position].id, "rank": rank, "id": str(domain.ids[i]),
                   "formula": str(domain.formulas[i]), "label": float(domain.labels[i, 0])}
            if several:
                row.update({f"label_{t}": float(domain.labels[i, j])
                            for j, t in enumerate(domain.targets)})
            rows.append({**row, "distance": float(d)})
    labels = [f"label_{t}" for t in domain.targets] if several else []
    return pd.DataFrame(rows, columns=["query_id", "rank", "id", "formula", "label", *labels,
                                       "distance"])


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
    model = _as_model(model)
    inputs, positions, _ = _inputs(model, items)
    vectors = model.embed_graphs(inputs, batch_size=batch_size, device=device)
    return vectors, [items[i] for i in positions]


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
    :func:`engine.uq.sigma.split_calibration` of ``error`` and ``prediction_std`` gives the
    calibration of σ on the data.

    For a multi-target model ``target`` picks the task: it must be one of the model's targets,
    and ``prediction`` is that task's output.

    Raises:
        ValueError: ``target`` is not one of a multi-target model's targets.
    """
    model = _as_model(model)
    task = None
    if _multi(model):
        if target not in model.targets:
            raise ValueError(f"model {model.name!r} predicts {', '.join(model.targets)}; "
                             f"{target!r} is not one of them")
        task = model.targets.index(target)
    dataset = dataset.dropna(target)
    y = dataset.targets(target)
    inputs, positions, _ = _inputs(model, dataset.items)
    out = model.run(inputs, _outputs(model) + uncertainty_outputs(model), batch_size=batch_size,
                    device=device)
    est = estimate(model, out, len(inputs))
    frame = pd.DataFrame({
        "id": [dataset.items[i].id for i in positions],
        "formula": [dataset.items[i].structure.composition.reduced_formula for i in positions],
        "target": y[positions],
        "prediction": out["prediction"] if task is None else out["tasks"][:, task],
    })
    frame["error"] = frame["prediction"] - frame["target"]
    for column, values in uncertainty_columns(est, [target], task or 0).items():
        frame[column] = values
    frame = _add_weights(frame, out)
    return regression_metrics(frame["target"], frame["prediction"]), frame


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
    model = _as_model(model)
    if not model.has_fusion_weights:
        raise ValueError(f"model {model.name!r} ({model.family}) has no per-material fusion "
                         "weights; only attention-fusion models do")
    table = predict(model, source, batch_size=batch_size, device=device).table
    return table[["id", "formula", *WEIGHT_COLUMNS, "prediction"]]


@dataclass
class Contributions:
    """How much a fusion model's error depends on each part (SCIENCE.md §3).

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
        rows = {row["part"]: {k: v for k, v in row.items() if k != "part"}
                for row in self.table.to_dict("records")}
        return {"model": self.model_name, "family": self.family, "target": self.target,
                "unit": self.unit, "n": self.n, "mae": self.mae, "parts": rows,
                "seed": self.seed, "n_shuffles": self.n_shuffles,
                "mean_weights": self.mean_weights}


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

    from engine.core.device import resolve_device

    model = _as_model(model)
    module = model.module
    if not hasattr(module, "fusion_parts"):
        raise ValueError(f"contribution analysis needs an early- or attention-fusion model; "
                         f"{model.name!r} is {model.family}")
    dataset = dataset.dropna(target)
    y = dataset.targets(target)
    inputs, positions, _ = _inputs(model, dataset.items)
    if len(inputs) < 2:
        raise ValueError(f"contribution analysis needs at least two usable materials, got "
                         f"{len(inputs)}")
    y = y[positions]
    dev = resolve_device(device)
    module.to(dev).eval()
    try:
        with torch.no_grad():
            comps, graphs = [], []
            for batch in DataLoader(inputs, batch_size=batch_size, shuffle=False):
                c, g = module.fusion_parts(batch.to(dev))
                comps.append(c)
                graphs.append(g)
            comp, graph = torch.cat(comps), torch.cat(graphs)

            def predict_from(c: torch.Tensor, g: torch.Tensor) -> np.ndarray:
                out = [module.fuse(c[i:i + batch_size], g[i:i + batch_size])
                       for i in range(0, len(c), batch_size)]
                return model.card.normalizer.decode(torch.cat(out).cpu().double()).numpy()

            base = predict_from(comp, graph)
            zeroed = predict_from(torch.zeros_like(comp), graph)
            rng = np.random.default_rng(seed)
            shuffled = [predict_from(comp, graph[torch.as_tensor(rng.permutation(len(graph)),
                                                                 device=dev)])
                        for _ in range(n_shuffles)]
            weights = (module.weights(comp, graph).mean(0).cpu().numpy()
                       if hasattr(module, "weights") else None)
    finally:
        module.to("cpu")

    def mae(pred: np.ndarray) -> float:
        return float(np.mean(np.abs(pred - y)))

    base_mae = mae(base)
    rows = [
        {"part": "composition", "perturbation": "composition part zeroed",
         "mae": mae(zeroed), "mean_abs_change": float(np.mean(np.abs(zeroed - base)))},
        {"part": "structure",
         "perturbation": f"graph vectors shuffled across materials ({n_shuffles}×, seed {seed})",
         "mae": float(np.mean([mae(p) for p in shuffled])),
         "mean_abs_change": float(np.mean([np.mean(np.abs(p - base)) for p in shuffled]))},
    ]
    for row in rows:
        row["mae_increase"] = row["mae"] - base_mae
    positive = [max(row["mae_increase"], 0.0) for row in rows]
    total = sum(positive)
    for row, pos in zip(rows, positive):
        row["relative_contribution"] = pos / total if total > 0 else float("nan")
    table = pd.DataFrame(rows)[["part", "perturbation", "mae", "mae_increase",
                                "relative_contribution", "mean_abs_change"]]
    return Contributions(
        model_name=model.name if model.n_members == 1 else f"{model.name} (member 0)",
        family=model.family, target=target, unit=model.card.unit,
        n=len(y), mae=base_mae, table=table, seed=seed, n_shuffles=n_shuffles,
        mean_weights=None if weights is None else {WEIGHT_COLUMNS[0]: float(weights[0]),
                                                   WEIGHT_COLUMNS[1]: float(weights[1])},
    )
