"""Thermal-expansion screening for fuel-cell stacks: rank candidates by their CTE mismatch to an
electrolyte.

Conventions (tables and CSV files hold SI values in 1/K; the dashboard shows 10⁻⁶ K⁻¹):

* The CTE model predicts the **volumetric** coefficient α_V (AFLOW AGL at 300 K) with σ_V.
* Mismatches use the **linear** coefficient α_L = α_V / 3 (isotropic solid; σ_L = σ_V / 3), the
  value dilatometry measures and data sheets quote. Measured values, typed or in a measured
  table (:func:`~engine.apps.screening.measured.measured_table`), are linear coefficients in
  1/K with an optional σ (default 0).
* A measured value replaces the prediction where present (``cte_source`` says which was used).
  The mismatch is Δα = α_L(candidate) − α_L(electrolyte), its σ is √(σ_c² + σ_e²).

:func:`screen` streams the candidates (:mod:`~engine.apps.screening.candidates`) through the
models (:mod:`~engine.apps.screening.predict`), resolves the electrolyte
(:mod:`~engine.apps.screening.electrolyte`) and ranks (:func:`rank_candidates`, cheap: run it
again for another electrolyte or measured table).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from engine.apps.screening.candidates import DEFAULT_CHUNK_SIZE, Progress
from engine.apps.screening.electrolyte import Reference, resolve_electrolyte
from engine.apps.screening.filters import Filters, filter_reasons, property_models
from engine.apps.screening.measured import measured_lookup, measured_table
from engine.apps.screening.predict import (
    PREDICTION_COLUMNS,
    STRING_COLUMNS,
    add_note,
    loaded_model,
    predict_candidates,
    typed_table,
)
from engine.io import ReadError, ReadLimits, write_csv
from engine.io.datasets import LabelledDataset
from engine.io.output import unescape_cell

__all__ = [
    "OUTPUT_COLUMNS",
    "RANK_COLUMNS",
    "REFERENCE_REASON",
    "ScreenResult",
    "rank_candidates",
    "read_screen_csv",
    "screen",
]

#: ``filter_reason`` of a candidate that is the electrolyte itself (same id or formula): shown
#: as the reference, never ranked against itself.
REFERENCE_REASON = "the electrolyte itself (reference)"
#: Columns :func:`rank_candidates` adds.
RANK_COLUMNS = (
    "cte_lin_pred_per_K",
    "cte_lin_std_per_K",
    "cte_lin_measured_per_K",
    "cte_lin_measured_std_per_K",
    "cte_lin_used_per_K",
    "cte_lin_used_std_per_K",
    "cte_source",
    "electrolyte",
    "electrolyte_cte_lin_per_K",
    "electrolyte_cte_lin_std_per_K",
    "mismatch_per_K",
    "abs_mismatch_per_K",
    "mismatch_std_per_K",
    "passes",
    "filter_reason",
    "rank",
)
#: Column order of a ranked table and its CSV file. Units are in the names: ``_per_K`` 1/K,
#: ``_eV_per_atom`` eV/atom, ``_eV`` eV; ``domain_distance`` and ``rank`` are unitless.
OUTPUT_COLUMNS = ("rank", *PREDICTION_COLUMNS[:9], *RANK_COLUMNS[:-1], *PREDICTION_COLUMNS[9:])


def rank_candidates(
    table: pd.DataFrame, electrolyte: Reference, *, measured=None, filters: Filters | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """Rank candidates by |Δα| to ``electrolyte`` (cheap; run again for another electrolyte).

    Args:
        table: :data:`PREDICTION_COLUMNS` (from :func:`predict_candidates` or a reloaded CSV;
            other columns are recomputed).
        electrolyte: the reference to match (:func:`resolve_electrolyte`).
        measured: measured linear CTEs (:func:`measured_table`); they replace predictions.
        filters: rows failing them keep their values but get no rank.

    Returns:
        The table in :data:`OUTPUT_COLUMNS` (1/K), ranked rows first (rank 1 = smallest |Δα|),
        then the rest in reading order; and notes on disabled filters. A candidate with the
        electrolyte's id or formula is not ranked (``filter_reason`` :data:`REFERENCE_REASON`).
    """
    missing = [c for c in PREDICTION_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"the candidate table lacks the columns {', '.join(missing)}")
    measured = measured_table(measured)
    t = typed_table(table[list(PREDICTION_COLUMNS)])
    lin = t["cte_vol_pred_per_K"].to_numpy(float) / 3
    lin_std = t["cte_vol_std_per_K"].to_numpy(float) / 3
    m_value, m_std = measured_lookup(measured, t["id"], t["formula"])
    has = np.isfinite(m_value)
    used = np.where(has, m_value, lin)
    used_std = np.where(has, m_std, lin_std)
    delta = used - electrolyte.cte_lin
    t["cte_lin_pred_per_K"], t["cte_lin_std_per_K"] = lin, lin_std
    t["cte_lin_measured_per_K"], t["cte_lin_measured_std_per_K"] = m_value, m_std
    t["cte_lin_used_per_K"], t["cte_lin_used_std_per_K"] = used, used_std
    t["cte_source"] = np.where(has, "measured", np.where(np.isfinite(lin), "predicted", ""))
    t["electrolyte"] = electrolyte.name
    t["electrolyte_cte_lin_per_K"] = electrolyte.cte_lin
    t["electrolyte_cte_lin_std_per_K"] = electrolyte.cte_lin_std
    t["mismatch_per_K"], t["abs_mismatch_per_K"] = delta, np.abs(delta)
    t["mismatch_std_per_K"] = np.sqrt(used_std**2 + electrolyte.cte_lin_std**2)
    reasons, notes = filter_reasons(t, filters)
    no_value = ~np.isfinite(delta) & (reasons == "").to_numpy()
    reasons[no_value] = "no CTE value"
    itself = (t["id"] == electrolyte.name) | (
        (t["formula"] == electrolyte.formula) & (electrolyte.formula != "")
    )
    reasons[itself.to_numpy()] = REFERENCE_REASON
    t["filter_reason"] = reasons
    t["passes"] = (reasons == "").to_numpy()
    order = t[t["passes"]].sort_values(["abs_mismatch_per_K", "id"], kind="stable").index
    t["rank"] = pd.Series(pd.NA, index=t.index, dtype="Int64")
    t.loc[order, "rank"] = np.arange(1, len(order) + 1)
    ranked = t.loc[[*order, *t.index[~t["passes"]]]]
    return typed_table(ranked[list(OUTPUT_COLUMNS)]), notes


@dataclass
class ScreenResult:
    """A ranked screening table (:data:`OUTPUT_COLUMNS`, values in 1/K, eV/atom and eV).

    Attributes:
        table: every usable candidate, ranked rows first.
        electrolyte: the reference matched.
        errors: entries that could not be read or predicted (source and reason).
        notes: what was disabled or missing (filters without a model, models without σ).
        model_name: the CTE model.
        n_read: entries met in the candidate source (structures and errors).
    """

    table: pd.DataFrame
    electrolyte: Reference
    errors: list[ReadError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    model_name: str = ""
    n_read: int = 0

    @property
    def ranked(self) -> pd.DataFrame:
        """The rows that passed the filters, best match first."""
        return self.table[self.table["passes"]].reset_index(drop=True)

    def to_csv(self, path) -> None:
        """Write the table atomically, text cells escaped against spreadsheet formulas (one row
        per candidate; reload with :func:`read_screen_csv`)."""
        write_csv(self.table, path)


def read_screen_csv(path_or_buffer) -> pd.DataFrame:
    """A table written by :meth:`ScreenResult.to_csv`, with the same values and dtypes.

    Raises:
        ValueError: the file lacks :data:`PREDICTION_COLUMNS`.
    """
    table = pd.read_csv(
        path_or_buffer,
        keep_default_na=False,
        na_values=[""],
        dtype={c: str for c in STRING_COLUMNS},
        float_precision="round_trip",
    )
    missing = [c for c in PREDICTION_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"not a screening table: missing columns {', '.join(missing)}")
    if "passes" in table.columns:
        table["passes"] = table["passes"].map(
            {True: True, False: False, "True": True, "False": False}
        )
    for column in STRING_COLUMNS:
        if column in table.columns:
            table[column] = table[column].map(unescape_cell)
    return typed_table(table)


def screen(
    candidates,
    electrolyte,
    model,
    *,
    measured=None,
    filters: Filters | None = None,
    eform_model=None,
    gap_model=None,
    dataset: LabelledDataset | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Progress | None = None,
    batch_size: int = 64,
    device: str = "auto",
    disorder=None,
    limits: ReadLimits | None = None,
) -> ScreenResult:
    """Predict, filter and rank ``candidates`` by their linear-CTE mismatch to ``electrolyte``.

    Args:
        candidates: anything :func:`~engine.apps.screening.candidates.iter_candidates` reads
            (streamed in ``chunk_size`` chunks).
        electrolyte: a :class:`Reference`, or a spec for :func:`resolve_electrolyte` (formula,
            id, structure file, or typed linear CTE in 1/K).
        model: the volumetric-CTE model (loaded, directory or name).
        measured: measured linear CTEs (:func:`measured_table`), used where present.
        filters: element and predicted-property filters (:class:`Filters`).
        eform_model, gap_model: models for the formation-energy and band-gap filters; when a
            filter needs one and none is given,
            :func:`~engine.apps.screening.filters.find_property_model` picks one, and when there
            is none the filter is disabled with a note.
        dataset: also searched for the electrolyte's formula.
        disorder: how disordered candidates and electrolyte are predicted
            (:class:`engine.materials.disorder.DisorderSettings`; default the virtual crystal).
        limits: bounds of reading candidates and an electrolyte file (:class:`ReadLimits`).
    """
    model = loaded_model(model)
    measured = measured_table(measured)
    picked, notes = property_models(filters, eform_model, gap_model)
    if not isinstance(electrolyte, Reference):
        electrolyte = resolve_electrolyte(
            electrolyte,
            model,
            measured=measured,
            dataset=dataset,
            batch_size=batch_size,
            device=device,
            disorder=disorder,
            limits=limits,
        )
    pred = predict_candidates(
        candidates,
        model,
        eform_model=picked["e_form"],
        gap_model=picked["band_gap"],
        filters=filters,
        chunk_size=chunk_size,
        progress=progress,
        batch_size=batch_size,
        device=device,
        disorder=disorder,
        limits=limits,
    )
    table, filter_notes = rank_candidates(
        pred.table, electrolyte, measured=measured, filters=filters
    )
    for note in [*pred.notes, *filter_notes]:
        add_note(notes, note)
    return ScreenResult(
        table=table,
        electrolyte=electrolyte,
        errors=pred.errors,
        notes=notes,
        model_name=pred.model_name,
        n_read=pred.n_read,
    )
