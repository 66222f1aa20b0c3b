"""The electrolyte (or any reference material) a candidate is matched against: a typed linear
CTE (1/K), a structure file, an SOFC material name, or a formula or id looked up in the measured
table, a dataset, the SOFC examples and the candidate library; and ranked candidates as
references for a mismatch matrix."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from engine.apps.screening.candidates import example_items, library_items
from engine.apps.screening.filters import property_column
from engine.apps.screening.measured import (
    check_cte,
    material_key,
    measured_lookup,
    measured_table,
)
from engine.apps.screening.predict import column_or, loaded_model
from engine.io import NamedStructure, ReadLimits, display_name, read_structures
from engine.io.datasets import LabelledDataset

__all__ = [
    "Reference",
    "candidate_references",
    "example_electrolytes",
    "resolve_electrolyte",
]

#: Longest electrolyte name or formula accepted (characters); longer ones are cut in messages.
_MAX_NAME = 200


@dataclass(frozen=True)
class Reference:
    """A material with a linear CTE to match against: an electrolyte, or a ranked candidate.

    Attributes:
        name: what the user called it (formula, id, file or typed name).
        cte_lin: linear CTE used, 1/K (measured where known, else α_V/3 of the prediction).
        cte_lin_std: its σ, 1/K (0 for a value typed without σ; NaN when the model has none).
        source: ``"measured"`` (typed or from the measured table) or ``"predicted"``.
        formula: reduced formula ("" for a typed value).
        cte_vol_pred: predicted volumetric CTE, 1/K (NaN when not predicted).
        domain: applicability-domain flag of the prediction ("" when not predicted).
        note: how it was found, when there was a choice.
    """

    name: str
    cte_lin: float
    cte_lin_std: float
    source: str
    formula: str = ""
    cte_vol_pred: float = float("nan")
    domain: str = ""
    note: str = ""


def example_electrolytes() -> list[str]:
    """Formulas of the shipped SOFC examples whose role is an electrolyte."""
    from engine.materials.examples import EXAMPLES

    return [ex.formula for ex in EXAMPLES if "electrolyte" in ex.role]


def _typed_value(spec) -> tuple[str, float] | None:
    """``(name, value)`` of a typed CTE: a number, or ``NAME=NUMBER`` (linear, 1/K)."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return f"typed {float(spec):.3g} 1/K", float(spec)
    name, _, number = str(spec).strip().rpartition("=")
    try:
        value = float(number)
    except ValueError:
        return None
    return (name.strip() or f"typed {value:.3g} 1/K"), value


def _find_structure(text: str, dataset) -> tuple[NamedStructure | None, str]:
    """The structure ``text`` names, and a note on where it was found: an SOFC material name
    or ``"FORMULA as PROTOTYPE"`` (:func:`engine.materials.sofc.resolve_structure`), else the first
    structure with that id or reduced formula in the dataset, the SOFC examples or the
    candidate library."""
    from engine.materials.sofc import resolve_structure

    named = resolve_structure(text)
    if named is not None:
        return named, f"{named.id} ({named.structure.composition.reduced_formula}, {named.source})"
    key = material_key(text)
    pools = [
        ("the dataset", lambda: dataset.items if dataset is not None else []),
        ("the SOFC examples", example_items),
        ("the candidate library", library_items),
    ]
    for where, items in pools:
        hits = [
            it for it in items() if it.id == text or it.structure.composition.reduced_formula == key
        ]
        if hits:
            note = (
                f"{len(hits)} structures of {key} in {where}; used {hits[0].id}"
                if len(hits) > 1
                else f"{hits[0].id} from {where}"
            )
            return hits[0], note
    return None, ""


def _predicted_reference(
    model,
    item: NamedStructure,
    name: str,
    note: str,
    *,
    batch_size: int,
    device: str,
    disorder=None,
) -> Reference:
    """``item`` as a predicted reference: linear CTE α_V/3 and σ_V/3 (1/K) of ``model``."""
    from engine.inference.disorder import predict_structures

    pred = predict_structures(model, [item], disorder, batch_size=batch_size, device=device)
    if pred.table.empty:
        reason = pred.errors[0].reason if pred.errors else "the model could not use it"
        raise ValueError(f"electrolyte {name!r} cannot be predicted: {reason}")
    row = pred.table.iloc[0]
    vol = float(row[property_column(model, "cte")])
    std = float(column_or(pred.table, "prediction_std", np.nan)[0])
    return Reference(
        name=name,
        cte_lin=vol / 3,
        cte_lin_std=std / 3,
        source="predicted",
        formula=str(row["formula"]),
        cte_vol_pred=vol,
        domain=str(column_or(pred.table, "domain", "unknown")[0]),
        note=note,
    )


def resolve_electrolyte(
    spec,
    model,
    *,
    measured=None,
    dataset: LabelledDataset | None = None,
    batch_size: int = 64,
    device: str = "auto",
    disorder=None,
    limits: ReadLimits | None = None,
) -> Reference:
    """The electrolyte (or any reference material) to match, as a :class:`Reference`.

    Args:
        spec: a typed **linear** CTE in 1/K (a number, or ``"NAME=NUMBER"``, e.g.
            ``"YSZ=10.5e-6"``); a structure file (one structure); a :class:`NamedStructure`; an
            SOFC material name or abbreviation (``8YSZ``, ``GDC``) or ``"FORMULA as
            PROTOTYPE"`` (:mod:`engine.materials.sofc`); or a formula or id, looked up in the
            measured table, then among the structures of ``dataset``, the SOFC examples and the
            candidate library (:mod:`engine.materials.library`).
        model: the CTE model (loaded, directory or name) predicting structures.
        measured: measured linear CTEs (:func:`measured_table`); a match replaces the prediction.
        disorder: how a disordered electrolyte is predicted (:class:`engine.materials.disorder.
            DisorderSettings`; default the virtual crystal).
        limits: bounds of reading a structure file (:class:`engine.io.ReadLimits`).

    Raises:
        ValueError: an implausible typed value, a file without exactly one structure, or a name
            found nowhere (the message says where it looked).
    """
    measured = measured_table(measured)
    typed = None if isinstance(spec, NamedStructure) else _typed_value(spec)
    if typed is not None:
        name, value = typed
        return Reference(
            name=name,
            cte_lin=check_cte(value, f"electrolyte {name!r}"),
            cte_lin_std=0.0,
            source="measured",
        )
    model = loaded_model(model)
    if isinstance(spec, NamedStructure):
        item, name, note = spec, spec.id, ""
    elif len(str(spec)) < 4096 and Path(str(spec)).is_file():
        batch = read_structures(str(spec), limits=limits)
        if len(batch.items) != 1:
            why = f": {batch.errors[0]}" if batch.errors else ""
            raise ValueError(
                f"electrolyte file {display_name(spec)} holds {len(batch.items)} "
                f"usable structures, not one{why}"
            )
        item, name, note = batch.items[0], batch.items[0].id, f"from {display_name(spec)}"
    else:
        name = str(spec).strip()
        if len(name) > _MAX_NAME:
            raise ValueError(
                f"electrolyte {_short(name)!r} ({len(name)} characters) is neither a "
                "file, a formula or id, nor a measured CTE"
            )
        item, note = _find_structure(name, dataset)
    value, std = measured_lookup(
        measured, [name], [item.structure.composition.reduced_formula if item is not None else name]
    )
    if not np.isfinite(value[0]) and item is not None and item.id != name:  # "GDC" → "10GDC"
        value, std = measured_lookup(measured, [item.id], [""])
    ref = None
    if item is not None:
        ref = _predicted_reference(
            model, item, name, note, batch_size=batch_size, device=device, disorder=disorder
        )
    if np.isfinite(value[0]):
        base = ref or Reference(
            name=name,
            cte_lin=math.nan,
            cte_lin_std=math.nan,
            source="measured",
            formula=material_key(name),
        )
        return replace(base, cte_lin=float(value[0]), cte_lin_std=float(std[0]), source="measured")
    if ref is None:
        material, eq, _ = name.partition("=")
        example = f"{material.strip() or 'YSZ'}=10.5e-6"
        what = (
            f"{name!r} is not NAME=NUMBER: {name.partition('=')[2].strip()!r} is not a number"
            if eq
            else f"{name!r}: no measured value and no structure with that formula or "
            "id in " + ("the dataset, " if dataset is not None else "") + "the SOFC "
            "examples or the candidate library, and not an SOFC material name or 'FORMULA as "
            "PROTOTYPE'"
        )
        raise ValueError(
            f"electrolyte {what}; give a structure file, a measured linear CTE in "
            f"1/K (e.g. {example}), or add it to the measured table"
        )
    return ref


def _short(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters (an ellipsis marks the cut)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def candidate_references(table: pd.DataFrame, top: int = 10) -> list[Reference]:
    """The ``top`` ranked rows of a ranked table as references (named by id, CTE used)."""
    ranked = table[table["passes"]].sort_values("rank").head(top)
    return [
        Reference(
            name=str(r.id),
            cte_lin=float(r.cte_lin_used_per_K),
            cte_lin_std=float(r.cte_lin_used_std_per_K),
            source=str(r.cte_source),
            formula=str(r.formula),
            cte_vol_pred=float(r.cte_vol_pred_per_K),
            domain=str(r.domain),
        )
        for r in ranked.itertuples(index=False)
    ]
