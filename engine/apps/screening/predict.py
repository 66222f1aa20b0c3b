"""Candidates through the models, chunk by chunk: the volumetric CTE α_V with σ_V (1/K), the
applicability domain, and, when a filter needs them, formation energy (eV/atom) and band gap
(eV). The prediction table is the expensive part of a screen; ranking it is cheap."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from engine.apps.screening.candidates import (
    DEFAULT_CHUNK_SIZE,
    Progress,
    count_candidates,
    iter_candidates,
)
from engine.apps.screening.filters import Filters, property_column
from engine.io import NamedStructure, ReadError, ReadLimits, StructureBatch

__all__ = [
    "PREDICTION_COLUMNS",
    "STRING_COLUMNS",
    "CandidatePredictions",
    "add_note",
    "column_or",
    "empty_predictions",
    "loaded_model",
    "predict_candidates",
    "typed_table",
]

#: Columns of :func:`predict_candidates` (the expensive part; a reloaded CSV carries them).
PREDICTION_COLUMNS = (
    "id",
    "formula",
    "source",
    "elements",
    "n_sites",
    "cte_vol_pred_per_K",
    "cte_vol_std_per_K",
    "domain",
    "domain_distance",
    "e_form_eV_per_atom",
    "band_gap_eV",
    "model",
)
#: Text columns of prediction and ranked tables (object dtype, "" for none).
STRING_COLUMNS = (
    "id",
    "formula",
    "source",
    "elements",
    "domain",
    "model",
    "cte_source",
    "electrolyte",
    "filter_reason",
)


@dataclass
class CandidatePredictions:
    """:data:`PREDICTION_COLUMNS` per candidate read, with the entries that could not be used.

    ``n_read`` counts the entries met (structures and errors); ``notes`` say what is missing.
    """

    table: pd.DataFrame
    errors: list[ReadError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    n_read: int = 0
    model_name: str = ""


def add_note(notes: list[str], note: str) -> None:
    """Append ``note`` to ``notes`` unless it is empty or already there (order kept)."""
    if note and note not in notes:
        notes.append(note)


def loaded_model(model):
    """A loaded model from a LoadedModel, a model directory or a name."""
    from engine.catalog.names import load_model
    from engine.store.directory import LoadedModel

    return model if isinstance(model, LoadedModel) else load_model(model)


def column_or(table: pd.DataFrame, name: str, default) -> np.ndarray:
    """``table[name]`` as an array of shape ``(len(table),)``, or ``default`` for every row
    where a model's table lacks that column."""
    return table[name].to_numpy() if name in table else np.full(len(table), default)


def _elements(structure) -> str:
    """The structure's element symbols, sorted and space-separated."""
    return " ".join(sorted(el.symbol for el in structure.composition.elements))


def _chunk_rows(
    chunk: StructureBatch,
    models: dict,
    filters: Filters | None,
    errors: list[ReadError],
    notes: list[str],
    missing: dict[str, int],
    *,
    batch_size: int,
    device: str,
    disorder=None,
) -> pd.DataFrame:
    """Prediction rows of one chunk, in reading order."""
    from engine.inference.disorder import predict_structures
    from engine.inference.prediction import predict

    items = chunk.items
    elements = [_elements(it.structure) for it in items]
    excluded = [bool(filters.element_reason(e)) if filters else False for e in elements]
    todo = [
        NamedStructure(id=str(k), structure=it.structure, source=it.source)
        for k, it in enumerate(items)
        if not excluded[k]
    ]
    n = len(items)
    values = {
        c: np.full(n, np.nan)
        for c in (
            "cte_vol_pred_per_K",
            "cte_vol_std_per_K",
            "domain_distance",
            "e_form_eV_per_atom",
            "band_gap_eV",
        )
    }
    domain = np.full(n, "", dtype=object)
    keep = np.array(excluded, dtype=bool)  # element-filtered rows stay, unpredicted
    if todo:
        cte_model = models["cte"]
        pred = predict_structures(cte_model, todo, disorder, batch_size=batch_size, device=device)
        errors.extend(pred.errors)
        for note in pred.notes:
            add_note(notes, note)
        pos = pred.table["id"].astype(int).to_numpy()
        keep[pos] = True
        values["cte_vol_pred_per_K"][pos] = pred.table[property_column(cte_model, "cte")]
        values["cte_vol_std_per_K"][pos] = column_or(pred.table, "prediction_std", np.nan)
        values["domain_distance"][pos] = column_or(pred.table, "domain_distance", np.nan)
        domain[pos] = column_or(pred.table, "domain", "unknown").astype(str)
        predicted = set(pos.tolist())
        done = [it for it in todo if int(it.id) in predicted]
        for prop, column in (("e_form", "e_form_eV_per_atom"), ("band_gap", "band_gap_eV")):
            if models.get(prop) is None or not done:
                continue
            extra = predict(models[prop], done, batch_size=batch_size, device=device)
            got = extra.table["id"].astype(int).to_numpy()
            values[column][got] = extra.table[property_column(models[prop], prop)]
            missing[prop] += len(done) - len(got)
    rows = pd.DataFrame(
        {
            "id": [it.id for it in items],
            "formula": [it.structure.composition.reduced_formula for it in items],
            "source": [it.source for it in items],
            "elements": elements,
            "n_sites": [len(it.structure) for it in items],
            **values,
            "domain": domain,
        }
    )
    return rows[keep]


def empty_predictions() -> pd.DataFrame:
    """A prediction table with no rows: :data:`PREDICTION_COLUMNS` with their dtypes."""
    return typed_table(pd.DataFrame({c: [] for c in PREDICTION_COLUMNS}))


def typed_table(table: pd.DataFrame) -> pd.DataFrame:
    """A copy with fixed dtypes and a fresh index: :data:`STRING_COLUMNS` as object ("" for
    none), rank and n_sites as nullable integers, passes as bool, the rest as float."""
    table = table.copy()
    for column in table.columns:
        if column in STRING_COLUMNS:
            table[column] = table[column].astype(object).where(table[column].notna(), "")
            table[column] = table[column].astype(str).astype(object)
        elif column in ("rank", "n_sites"):
            table[column] = pd.to_numeric(table[column]).astype("Int64")
        elif column == "passes":
            table[column] = table[column].astype(bool)
        else:
            table[column] = pd.to_numeric(table[column]).astype(float)
    return table.reset_index(drop=True)


def predict_candidates(
    candidates,
    model,
    *,
    eform_model=None,
    gap_model=None,
    filters: Filters | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Progress | None = None,
    batch_size: int = 64,
    device: str = "auto",
    disorder=None,
    limits: ReadLimits | None = None,
) -> CandidatePredictions:
    """Stream ``candidates`` (anything :func:`iter_candidates` reads) through the models.

    Candidates failing the element filters of ``filters`` are not predicted (their rows keep
    NaN values); the value filters are applied by
    :func:`engine.apps.screening.ranking.rank_candidates`.

    Args:
        model: the volumetric-CTE model (loaded, directory or name; predictions in 1/K).
        eform_model, gap_model: formation-energy (eV/atom) and band-gap (eV) models, or None.
        progress: called after each chunk with (entries read so far, expected total).
        disorder: how disordered candidates are predicted (:class:`engine.materials.disorder.
            DisorderSettings`; default the virtual crystal).
        limits: bounds of the read (:class:`ReadLimits`; default its defaults).

    Returns:
        One row per usable candidate, :data:`PREDICTION_COLUMNS`, in reading order.
    """
    models = {"cte": loaded_model(model)}
    for prop, given in (("e_form", eform_model), ("band_gap", gap_model)):
        models[prop] = loaded_model(given) if given is not None else None
    for prop, loaded in models.items():  # a model of the wrong target fails before any reading
        if loaded is not None:
            property_column(loaded, prop)
    total = count_candidates(candidates, limits=limits) if progress is not None else None
    errors: list[ReadError] = []
    notes: list[str] = []
    missing = {"e_form": 0, "band_gap": 0}
    frames, n_read = [], 0
    for chunk in iter_candidates(candidates, chunk_size=chunk_size, limits=limits):
        errors.extend(chunk.errors)
        n_read += len(chunk.items) + len(chunk.errors)
        if chunk.items:
            frames.append(
                _chunk_rows(
                    chunk,
                    models,
                    filters,
                    errors,
                    notes,
                    missing,
                    batch_size=batch_size,
                    device=device,
                    disorder=disorder,
                )
            )
        if progress is not None:
            progress(n_read, total)
    for prop, label in (("e_form", "formation-energy"), ("band_gap", "band-gap")):
        if models[prop] is not None:
            add_note(notes, f"{label} predictions by {models[prop].name!r}")
        if missing[prop]:
            add_note(
                notes,
                f"{missing[prop]} candidates have no {label} prediction (model "
                f"{models[prop].name!r} could not use them)",
            )
    table = pd.concat(frames, ignore_index=True) if frames else empty_predictions()
    table["model"] = models["cte"].name
    return CandidatePredictions(
        table=typed_table(table[list(PREDICTION_COLUMNS)]),
        errors=errors,
        notes=notes,
        n_read=n_read,
        model_name=models["cte"].name,
    )
