"""Thermal-expansion screening for fuel-cell stacks: rank candidates by their CTE mismatch to an
electrolyte.

Conventions (tables and CSV files hold SI values in 1/K; the dashboard shows 10⁻⁶ K⁻¹):

* The CTE model predicts the **volumetric** coefficient α_V (AFLOW AGL at 300 K) with σ_V.
* Mismatches use the **linear** coefficient α_L = α_V / 3 (isotropic solid; σ_L = σ_V / 3), the
  value dilatometry measures and data sheets quote. Measured values, typed or in a measured
  table (:func:`measured_table`), are linear coefficients in 1/K with an optional σ (default 0).
* A measured value replaces the prediction where present (``cte_source`` says which was used).
  The mismatch is Δα = α_L(candidate) − α_L(electrolyte), its σ is √(σ_c² + σ_e²).

Candidates stream in chunks (:func:`iter_candidates`): JSON lines are read line by line, zip
archives entry by entry and folders file by file, so memory stays bounded by the chunk size (a
single multi-structure CIF/XYZ/JSON file is read whole). Entries that cannot be read or graphed
are collected as :class:`~engine.io.ReadError` (source and reason); the rest are screened.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Composition, Element

from engine.io import (
    NamedStructure,
    ReadError,
    ReadLimits,
    StructureBatch,
    count_entries,
    display_name,
    iter_batches,
    make_limits,
    read_structures,
    write_csv,
)
from engine.io.datasets import LabelledDataset
from engine.io.output import unescape_cell

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "OUTPUT_COLUMNS",
    "PREDICTION_COLUMNS",
    "PROPERTY_TARGETS",
    "Filters",
    "MismatchMatrix",
    "Reference",
    "ScreenResult",
    "candidate_references",
    "count_candidates",
    "example_electrolytes",
    "filter_reasons",
    "find_property_model",
    "iter_candidates",
    "measured_table",
    "mismatch_matrix",
    "open_candidates",
    "predict_candidates",
    "rank_candidates",
    "read_screen_csv",
    "resolve_electrolyte",
    "screen",
]

#: Structures per chunk: read, graphed and predicted together, then only their table rows kept.
DEFAULT_CHUNK_SIZE = 256
#: Largest plausible |linear CTE| in 1/K; larger typed values are taken as a unit mistake.
MAX_PLAUSIBLE_CTE = 1e-3
#: Model targets that give each screened property, in order of preference (``list_models()``).
PROPERTY_TARGETS: dict[str, tuple[str, ...]] = {
    "cte": ("agl_thermal_expansion_300K",),
    "e_form": ("e_form", "formation_energy_per_atom"),
    "band_gap": ("band_gap",),
}
#: Units a property model must predict in.
PROPERTY_UNITS = {"cte": "1/K", "e_form": "eV/atom", "band_gap": "eV"}
#: Model sources tried in order when a property model is chosen automatically.
SOURCE_PREFERENCE = ("shipped", "cgcnn-original", "user")

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
_STRING_COLUMNS = ("id", "formula", "source", "elements", "domain", "model", "cte_source",
                   "electrolyte", "filter_reason")
MEASURED_COLUMNS = ("material", "cte_lin_per_K", "cte_lin_std_per_K")

Progress = Callable[[int, "int | None"], None]


# ----------------------------------------------------------------------------------------------
# Candidates, in chunks


def _in_memory(source) -> StructureBatch | None:
    """``source`` as a batch when it is already in memory (dataset, batch, structure list)."""
    if isinstance(source, StructureBatch):
        return source
    if isinstance(source, LabelledDataset):
        return StructureBatch(items=list(source.items), errors=list(source.errors))
    if isinstance(source, NamedStructure):
        return StructureBatch(items=[source])
    if (isinstance(source, (list, tuple)) and source
            and all(isinstance(s, NamedStructure) for s in source)):
        return StructureBatch(items=list(source))
    return None


def _batches(source, chunk_size: int, limits: ReadLimits) -> Iterator[StructureBatch]:
    """In-memory sources as they are; everything else through :func:`engine.io.iter_batches`."""
    held = _in_memory(source)
    if held is not None:
        yield held
    elif (isinstance(source, list) and source
          and any(_in_memory(part) is not None for part in source)):
        for part in source:
            yield from _batches(part, chunk_size, limits)
    else:
        yield from iter_batches(source, chunk_size=chunk_size, limits=limits)


def iter_candidates(source, *, chunk_size: int = DEFAULT_CHUNK_SIZE, max_atoms: int | None = None,
                    min_distance: float | None = None, limits: ReadLimits | None = None
                    ) -> Iterator[StructureBatch]:
    """The candidates of ``source`` in chunks of at most ``chunk_size`` structures.

    Args:
        source: a file, folder or zip path (JSON lines streamed line by line, zips entry by
            entry, folders file by file, all under one :class:`~engine.io.ReadLimits` budget);
            an upload ``(name, bytes)`` or an object with ``.name`` and ``.read()``; a
            :class:`LabelledDataset`, :class:`StructureBatch` or list of
            :class:`NamedStructure`; or a list of any of these.
        chunk_size: structures per chunk (≥ 1).
        max_atoms, min_distance: validation limits (sites per cell; Å), overriding ``limits``.
        limits: bounds of the read (default :data:`engine.io.DEFAULT_LIMITS`).

    Yields:
        Batches of at most ``chunk_size`` items; each carries the errors and skipped files met
        since the previous one (a last batch may hold only errors).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    limits = make_limits(limits, max_atoms=max_atoms, min_distance=min_distance)
    buffer = StructureBatch()
    for unit in _batches(source, chunk_size, limits):
        buffer.extend(unit)
        while len(buffer.items) >= chunk_size:
            yield StructureBatch(items=buffer.items[:chunk_size], errors=buffer.errors,
                                 skipped=buffer.skipped)
            buffer = StructureBatch(items=buffer.items[chunk_size:])
    if buffer.items or buffer.errors or buffer.skipped:
        yield buffer


def count_candidates(source, *, limits: ReadLimits | None = None) -> int:
    """Entries ``source`` is expected to hold, for progress bars: JSON-lines records, structure
    files in folders and zips (a multi-structure file counts once), items in memory."""
    held = _in_memory(source)
    if held is not None:
        return len(held.items) + len(held.errors)
    if isinstance(source, list) and any(_in_memory(part) is not None for part in source):
        return sum(count_candidates(part, limits=limits) for part in source)
    return count_entries(source, limits=limits)


def open_candidates(spec: str):
    """A candidate source named on the command line: a path, ``examples`` (the shipped SOFC
    examples), ``library`` / ``library:FAMILY,FAMILY`` (:mod:`engine.materials.library`), ``sofc`` /
    ``sofc:NAME,NAME`` (the named SOFC materials of :mod:`engine.materials.sofc`), one SOFC material by
    name or abbreviation (``LSCF``), or a composition on a prototype
    (``"La0.6Sr0.4Co0.2Fe0.8O3 as perovskite"``)."""
    if Path(spec).exists():
        return spec
    from engine.materials.sofc import resolve_structure, sofc_batch

    if spec == "sofc" or spec.startswith("sofc:"):
        return sofc_batch([n for n in spec.partition(":")[2].split(",") if n] or None)
    named = resolve_structure(spec)
    if named is not None:
        return StructureBatch(items=[named])
    if spec == "examples":
        from engine.materials.examples import EXAMPLES_DIR

        return str(EXAMPLES_DIR)
    if spec == "library" or spec.startswith("library:"):
        from engine.materials.library import build_library, library_batch

        families = [f for f in spec.partition(":")[2].split(",") if f] or None
        return library_batch(build_library(families))
    raise ValueError(f"{spec!r} is neither a file or folder, 'examples', 'library', 'sofc', an "
                     "SOFC material name (e.g. LSCF) nor 'FORMULA as perovskite|fluorite'")


# ----------------------------------------------------------------------------------------------
# Models


def find_property_model(prop: str) -> str | None:
    """The model to use for ``prop`` (``"cte"``, ``"e_form"`` or ``"band_gap"``) when none is
    named: the first of :data:`SOURCE_PREFERENCE` sources that predicts one of its
    :data:`PROPERTY_TARGETS` (as a primary or extra target). Returns its directory or name, or
    None when no model predicts it."""
    from engine.catalog.names import list_models

    targets = PROPERTY_TARGETS[prop]
    found = [m for m in list_models()
             if any(t in (m.get("targets") or [m["target"]]) for t in targets)]
    rank = {s: k for k, s in enumerate(SOURCE_PREFERENCE)}
    found.sort(key=lambda m: rank.get(m["source"], len(rank)))
    return (found[0]["path"] or found[0]["name"]) if found else None


def _property_column(model, prop: str) -> str:
    """The :func:`engine.inference.prediction.predict` column holding ``prop`` for ``model``.

    Raises:
        ValueError: the model predicts none of the property's targets in the property's unit
            (a CTE model may also be any model whose primary target is in 1/K).
    """
    from engine.inference.prediction import task_column

    units = dict(zip(model.targets, model.card.task_units))
    wanted = PROPERTY_UNITS[prop]
    found = [t for t in PROPERTY_TARGETS[prop] if units.get(t) == wanted]
    if not found and prop == "cte" and units.get(model.targets[0]) == wanted:
        found = [model.targets[0]]
    if not found:
        raise ValueError(
            f"model {model.name!r} predicts " + ", ".join(f"{t} ({u or 'no unit'})"
                                                        for t, u in units.items())
            + f"; screening needs {' or '.join(PROPERTY_TARGETS[prop])} in {wanted}")
    return "prediction" if found[0] == model.targets[0] else task_column(found[0])


# ----------------------------------------------------------------------------------------------
# Filters and measured values


def _elements(structure) -> str:
    return " ".join(sorted(el.symbol for el in structure.composition.elements))


def _symbols(values: Iterable[str], what: str) -> tuple[str, ...]:
    out = []
    for value in values:
        text = str(value).strip()
        if not Element.is_valid_symbol(text):
            raise ValueError(f"{what}: {text!r} is not an element symbol")
        out.append(text)
    return tuple(out)


@dataclass(frozen=True)
class Filters:
    """Which candidates are ranked.

    Attributes:
        include: element symbols a candidate must all contain.
        exclude: element symbols a candidate must not contain.
        max_e_form: largest predicted formation energy kept, eV/atom (None: no limit).
        min_band_gap, max_band_gap: predicted band-gap window kept, eV (None: open).
    """

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    max_e_form: float | None = None
    min_band_gap: float | None = None
    max_band_gap: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "include", _symbols(self.include, "include"))
        object.__setattr__(self, "exclude", _symbols(self.exclude, "exclude"))
        both = set(self.include) & set(self.exclude)
        if both:
            raise ValueError(f"elements both included and excluded: {', '.join(sorted(both))}")

    @property
    def needs_e_form(self) -> bool:
        return self.max_e_form is not None

    @property
    def needs_band_gap(self) -> bool:
        return self.min_band_gap is not None or self.max_band_gap is not None

    def element_reason(self, elements: str) -> str:
        """Why a candidate with these (space-separated) elements fails; "" when it passes."""
        present = set(elements.split())
        missing = [e for e in self.include if e not in present]
        banned = [e for e in self.exclude if e in present]
        parts = ([f"lacks {', '.join(missing)}"] if missing else []) + (
            [f"contains excluded {', '.join(banned)}"] if banned else [])
        return "; ".join(parts)


_VALUE_FILTERS = (  # (column, attribute, fails when, name, unit)
    ("e_form_eV_per_atom", "max_e_form", np.greater, "formation energy", "eV/atom"),
    ("band_gap_eV", "min_band_gap", np.less, "band gap", "eV"),
    ("band_gap_eV", "max_band_gap", np.greater, "band gap", "eV"),
)


def filter_reasons(table: pd.DataFrame, filters: Filters | None) -> tuple[pd.Series, list[str]]:
    """Why each row fails ``filters`` ("" when it passes), and notes on filters that could not
    be applied (a value filter whose column holds no prediction at all is disabled)."""
    reasons = [[] for _ in range(len(table))]
    notes: list[str] = []
    if filters is not None:
        predicted = np.isfinite(table["cte_vol_pred_per_K"].to_numpy(dtype=float))
        for k, elements in enumerate(table["elements"].astype(str)):
            why = filters.element_reason(elements)
            if why:
                reasons[k].append(why)
        for column, attribute, fails, name, unit in _VALUE_FILTERS:
            limit = getattr(filters, attribute)
            if limit is None:
                continue
            values = table[column].to_numpy(dtype=float)
            if not np.isfinite(values).any():
                note = f"{name} filter disabled: no {name} predictions (no model for it)"
                if note not in notes:
                    notes.append(note)
                continue
            word = "above" if fails is np.greater else "below"
            for k, v in enumerate(values):
                if not np.isfinite(v):
                    if predicted[k]:  # unpredicted rows already fail an element filter
                        reasons[k].append(f"no {name} prediction")
                elif fails(v, limit):
                    reasons[k].append(f"{name} {v:.3g} {unit} {word} {limit:g}")
    return pd.Series(["; ".join(r) for r in reasons], index=table.index, dtype=object), notes


def _material_key(text: str) -> str:
    """A reduced formula when ``text`` parses as one, else the stripped text."""
    text = str(text).strip()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Composition(text).reduced_formula
    except Exception:  # noqa: BLE001 - ids and names are not formulas
        return text


def _check_cte(value: float, what: str) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{what}: {value} is not a number")
    if abs(value) > MAX_PLAUSIBLE_CTE:
        raise ValueError(f"{what}: {value:g} 1/K is not a plausible linear CTE; values are in "
                         f"1/K (e.g. 10.5e-6, not 10.5)")
    return value


def measured_table(data) -> pd.DataFrame:
    """Measured **linear** CTEs, checked: columns ``material`` (formula or candidate id),
    ``cte_lin_per_K`` and ``cte_lin_std_per_K`` (σ, default 0), both in 1/K.

    Args:
        data: a CSV path, a DataFrame with those columns, or ``{material: value}`` /
            ``{material: (value, σ)}``. Rows with neither material nor value are dropped.

    Raises:
        ValueError: a missing column, a material without a value (or the reverse), an
            implausible value (|α| above 1e-3 1/K: a unit mistake), σ < 0, or a material twice.
    """
    if data is None:
        return pd.DataFrame({c: pd.Series(dtype=object if c == "material" else float)
                             for c in MEASURED_COLUMNS})
    if isinstance(data, (str, os.PathLike)):
        frame = pd.read_csv(data)
    elif isinstance(data, dict):
        frame = pd.DataFrame([{"material": k, "cte_lin_per_K": v[0], "cte_lin_std_per_K": v[1]}
                              if isinstance(v, (tuple, list)) else
                              {"material": k, "cte_lin_per_K": v} for k, v in data.items()])
    else:
        frame = pd.DataFrame(data)
    missing = [c for c in MEASURED_COLUMNS[:2] if c not in frame.columns]
    if missing:
        raise ValueError(f"the measured-CTE table needs the columns {', '.join(MEASURED_COLUMNS)}"
                         f" (linear CTE and σ in 1/K); missing: {', '.join(missing)}")
    if "cte_lin_std_per_K" not in frame.columns:
        frame["cte_lin_std_per_K"] = 0.0
    material = frame["material"].astype(object).where(frame["material"].notna(), "")
    material = material.astype(str).str.strip()
    value = pd.to_numeric(frame["cte_lin_per_K"], errors="coerce")
    std = pd.to_numeric(frame["cte_lin_std_per_K"], errors="coerce").fillna(0.0)
    keep = (material != "") | value.notna()
    rows = []
    for m, v, s in zip(material[keep], value[keep], std[keep]):
        if not m:
            raise ValueError(f"measured CTE {v:g} 1/K has no material")
        if not np.isfinite(v):
            raise ValueError(f"measured CTE of {m!r} is missing or not a number")
        if s < 0:
            raise ValueError(f"measured σ of {m!r} is negative ({s:g} 1/K)")
        rows.append({"material": m, "cte_lin_per_K": _check_cte(v, f"measured CTE of {m!r}"),
                     "cte_lin_std_per_K": float(s)})
    out = pd.DataFrame(rows, columns=list(MEASURED_COLUMNS))
    keys = out["material"].map(_material_key)
    twice = sorted(set(keys[keys.duplicated()]))
    if twice:
        raise ValueError(f"measured CTE given twice for {', '.join(twice)}")
    return out.astype({"material": object, "cte_lin_per_K": float, "cte_lin_std_per_K": float})


def _measured_lookup(measured: pd.DataFrame | None, ids, formulas) -> tuple[np.ndarray, ...]:
    """Measured value and σ (1/K) per row, matched by id first, then by reduced formula."""
    n = len(ids)
    value, std = np.full(n, np.nan), np.full(n, np.nan)
    if measured is None or measured.empty:
        return value, std
    by_name = {m: (v, s) for m, v, s in measured.itertuples(index=False)}
    by_formula = {_material_key(m): (v, s) for m, v, s in measured.itertuples(index=False)}
    for k, (ident, formula) in enumerate(zip(ids, formulas)):
        hit = by_name.get(str(ident)) or by_formula.get(_material_key(formula))
        if hit is not None:
            value[k], std[k] = hit
    return value, std


# ----------------------------------------------------------------------------------------------
# Electrolytes and other references


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


@lru_cache(maxsize=1)
def _example_items() -> tuple[NamedStructure, ...]:
    from engine.materials.examples import EXAMPLES_DIR

    return tuple(read_structures(EXAMPLES_DIR).items)


@lru_cache(maxsize=1)
def _library_items() -> tuple[NamedStructure, ...]:
    from engine.materials.library import library_batch

    return tuple(library_batch().items)


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
        return named, f"{named.id} ({named.structure.composition.reduced_formula}, " \
            f"{named.source})"
    key = _material_key(text)
    pools = [("the dataset", lambda: dataset.items if dataset is not None else []),
             ("the SOFC examples", _example_items), ("the candidate library", _library_items)]
    for where, items in pools:
        hits = [it for it in items()
                if it.id == text or it.structure.composition.reduced_formula == key]
        if hits:
            note = (f"{len(hits)} structures of {key} in {where}; used {hits[0].id}"
                    if len(hits) > 1 else f"{hits[0].id} from {where}")
            return hits[0], note
    return None, ""


def _predicted_reference(model, item: NamedStructure, name: str, note: str, *, batch_size: int,
                         device: str, disorder=None) -> Reference:
    from engine.inference.disorder import predict_structures

    pred = predict_structures(model, [item], disorder, batch_size=batch_size, device=device)
    if pred.table.empty:
        reason = pred.errors[0].reason if pred.errors else "the model could not use it"
        raise ValueError(f"electrolyte {name!r} cannot be predicted: {reason}")
    row = pred.table.iloc[0]
    vol = float(row[_property_column(model, "cte")])
    std = float(_column(pred.table, "prediction_std", np.nan)[0])
    return Reference(name=name, cte_lin=vol / 3, cte_lin_std=std / 3, source="predicted",
                     formula=str(row["formula"]), cte_vol_pred=vol,
                     domain=str(_column(pred.table, "domain", "unknown")[0]), note=note)


def resolve_electrolyte(spec, model, *, measured=None, dataset: LabelledDataset | None = None,
                        batch_size: int = 64, device: str = "auto", disorder=None,
                        limits: ReadLimits | None = None) -> Reference:
    """The electrolyte (or any reference material) to match, as a :class:`Reference`.

    Args:
        spec: a typed **linear** CTE in 1/K (a number, or ``"NAME=NUMBER"``, e.g.
            ``"YSZ=10.5e-6"``); a structure file (one structure); a :class:`NamedStructure`; an
            SOFC material name or abbreviation (``8YSZ``, ``GDC``) or ``"FORMULA as
            PROTOTYPE"`` (:mod:`engine.materials.sofc`); or a formula or id, looked up in the measured
            table, then among the structures of ``dataset``, the SOFC examples and the
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
        return Reference(name=name, cte_lin=_check_cte(value, f"electrolyte {name!r}"),
                         cte_lin_std=0.0, source="measured")
    model = _load(model)
    if isinstance(spec, NamedStructure):
        item, name, note = spec, spec.id, ""
    elif len(str(spec)) < 4096 and Path(str(spec)).is_file():
        batch = read_structures(str(spec), limits=limits)
        if len(batch.items) != 1:
            why = f": {batch.errors[0]}" if batch.errors else ""
            raise ValueError(f"electrolyte file {display_name(spec)} holds {len(batch.items)} "
                             f"usable structures, not one{why}")
        item, name, note = batch.items[0], batch.items[0].id, f"from {display_name(spec)}"
    else:
        name = str(spec).strip()
        if len(name) > _MAX_NAME:
            raise ValueError(f"electrolyte {_short(name)!r} ({len(name)} characters) is neither a "
                             "file, a formula or id, nor a measured CTE")
        item, note = _find_structure(name, dataset)
    value, std = _measured_lookup(measured, [name], [item.structure.composition.reduced_formula
                                                     if item is not None else name])
    if not np.isfinite(value[0]) and item is not None and item.id != name:  # "GDC" → "10GDC"
        value, std = _measured_lookup(measured, [item.id], [""])
    ref = None
    if item is not None:
        ref = _predicted_reference(model, item, name, note, batch_size=batch_size, device=device,
                                   disorder=disorder)
    if np.isfinite(value[0]):
        base = ref or Reference(name=name, cte_lin=math.nan, cte_lin_std=math.nan,
                                source="measured", formula=_material_key(name))
        return replace(base, cte_lin=float(value[0]), cte_lin_std=float(std[0]),
                       source="measured")
    if ref is None:
        material, eq, _ = name.partition("=")
        example = f"{material.strip() or 'YSZ'}=10.5e-6"
        what = (f"{name!r} is not NAME=NUMBER: {name.partition('=')[2].strip()!r} is not a number"
                if eq else f"{name!r}: no measured value and no structure with that formula or "
                "id in " + ("the dataset, " if dataset is not None else "") + "the SOFC "
                "examples or the candidate library, and not an SOFC material name or 'FORMULA as "
                "PROTOTYPE'")
        raise ValueError(f"electrolyte {what}; give a structure file, a measured linear CTE in "
                         f"1/K (e.g. {example}), or add it to the measured table")
    return ref


#: Longest electrolyte name or formula accepted (characters); longer ones are cut in messages.
_MAX_NAME = 200


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ----------------------------------------------------------------------------------------------
# Screening


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


def _add_note(notes: list[str], note: str) -> None:
    if note and note not in notes:
        notes.append(note)


def _load(model):
    """A loaded model from a LoadedModel, a model directory or a name."""
    from engine.catalog.names import load_model
    from engine.store.directory import LoadedModel

    return model if isinstance(model, LoadedModel) else load_model(model)


def _column(table: pd.DataFrame, name: str, default) -> np.ndarray:
    """``table[name]``, or ``default`` for every row where a model's table lacks it."""
    return table[name].to_numpy() if name in table else np.full(len(table), default)


def _chunk_rows(chunk: StructureBatch, models: dict, filters: Filters | None,
                errors: list[ReadError], notes: list[str], missing: dict[str, int], *,
                batch_size: int, device: str, disorder=None) -> pd.DataFrame:
    """Prediction rows of one chunk, in reading order."""
    from engine.inference.disorder import predict_structures
    from engine.inference.prediction import predict

    items = chunk.items
    elements = [_elements(it.structure) for it in items]
    excluded = [bool(filters.element_reason(e)) if filters else False for e in elements]
    todo = [NamedStructure(id=str(k), structure=it.structure, source=it.source)
            for k, it in enumerate(items) if not excluded[k]]
    n = len(items)
    values = {c: np.full(n, np.nan) for c in ("cte_vol_pred_per_K", "cte_vol_std_per_K",
                                               "domain_distance", "e_form_eV_per_atom",
                                               "band_gap_eV")}
    domain = np.full(n, "", dtype=object)
    keep = np.array(excluded, dtype=bool)  # element-filtered rows stay, unpredicted
    if todo:
        cte_model = models["cte"]
        pred = predict_structures(cte_model, todo, disorder, batch_size=batch_size,
                                  device=device)
        errors.extend(pred.errors)
        for note in pred.notes:
            _add_note(notes, note)
        pos = pred.table["id"].astype(int).to_numpy()
        keep[pos] = True
        values["cte_vol_pred_per_K"][pos] = pred.table[_property_column(cte_model, "cte")]
        values["cte_vol_std_per_K"][pos] = _column(pred.table, "prediction_std", np.nan)
        values["domain_distance"][pos] = _column(pred.table, "domain_distance", np.nan)
        domain[pos] = _column(pred.table, "domain", "unknown").astype(str)
        predicted = set(pos.tolist())
        done = [it for it in todo if int(it.id) in predicted]
        for prop, column in (("e_form", "e_form_eV_per_atom"), ("band_gap", "band_gap_eV")):
            if models.get(prop) is None or not done:
                continue
            extra = predict(models[prop], done, batch_size=batch_size, device=device)
            got = extra.table["id"].astype(int).to_numpy()
            values[column][got] = extra.table[_property_column(models[prop], prop)]
            missing[prop] += len(done) - len(got)
    rows = pd.DataFrame({
        "id": [it.id for it in items],
        "formula": [it.structure.composition.reduced_formula for it in items],
        "source": [it.source for it in items],
        "elements": elements,
        "n_sites": [len(it.structure) for it in items],
        **values,
        "domain": domain,
    })
    return rows[keep]


def _empty_predictions() -> pd.DataFrame:
    return _typed_table(pd.DataFrame({c: [] for c in PREDICTION_COLUMNS}))


def _typed_table(table: pd.DataFrame) -> pd.DataFrame:
    """Fixed dtypes: strings as object ("" for none), numbers as float, rank and n_sites as
    nullable integers, passes as bool."""
    table = table.copy()
    for column in table.columns:
        if column in _STRING_COLUMNS:
            table[column] = table[column].astype(object).where(table[column].notna(), "")
            table[column] = table[column].astype(str).astype(object)
        elif column in ("rank", "n_sites"):
            table[column] = pd.to_numeric(table[column]).astype("Int64")
        elif column == "passes":
            table[column] = table[column].astype(bool)
        else:
            table[column] = pd.to_numeric(table[column]).astype(float)
    return table.reset_index(drop=True)


def predict_candidates(candidates, model, *, eform_model=None, gap_model=None,
                       filters: Filters | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE,
                       progress: Progress | None = None, batch_size: int = 64,
                       device: str = "auto", disorder=None,
                       limits: ReadLimits | None = None) -> CandidatePredictions:
    """Stream ``candidates`` (anything :func:`iter_candidates` reads) through the models.

    Candidates failing the element filters of ``filters`` are not predicted (their rows keep
    NaN values); the value filters are applied by :func:`rank_candidates`.

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
    models = {"cte": _load(model)}
    for prop, given in (("e_form", eform_model), ("band_gap", gap_model)):
        models[prop] = _load(given) if given is not None else None
    for prop, loaded in models.items():  # a model of the wrong target fails before any reading
        if loaded is not None:
            _property_column(loaded, prop)
    total = count_candidates(candidates, limits=limits) if progress is not None else None
    errors: list[ReadError] = []
    notes: list[str] = []
    missing = {"e_form": 0, "band_gap": 0}
    frames, n_read = [], 0
    for chunk in iter_candidates(candidates, chunk_size=chunk_size, limits=limits):
        errors.extend(chunk.errors)
        n_read += len(chunk.items) + len(chunk.errors)
        if chunk.items:
            frames.append(_chunk_rows(chunk, models, filters, errors, notes, missing,
                                      batch_size=batch_size, device=device, disorder=disorder))
        if progress is not None:
            progress(n_read, total)
    for prop, label in (("e_form", "formation-energy"), ("band_gap", "band-gap")):
        if models[prop] is not None:
            _add_note(notes, f"{label} predictions by {models[prop].name!r}")
        if missing[prop]:
            _add_note(notes, f"{missing[prop]} candidates have no {label} prediction (model "
                             f"{models[prop].name!r} could not use them)")
    table = pd.concat(frames, ignore_index=True) if frames else _empty_predictions()
    table["model"] = models["cte"].name
    return CandidatePredictions(table=_typed_table(table[list(PREDICTION_COLUMNS)]),
                                errors=errors, notes=notes, n_read=n_read,
                                model_name=models["cte"].name)


def rank_candidates(table: pd.DataFrame, electrolyte: Reference, *, measured=None,
                    filters: Filters | None = None) -> tuple[pd.DataFrame, list[str]]:
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
    t = _typed_table(table[list(PREDICTION_COLUMNS)])
    lin = t["cte_vol_pred_per_K"].to_numpy(float) / 3
    lin_std = t["cte_vol_std_per_K"].to_numpy(float) / 3
    m_value, m_std = _measured_lookup(measured, t["id"], t["formula"])
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
        (t["formula"] == electrolyte.formula) & (electrolyte.formula != ""))
    reasons[itself.to_numpy()] = REFERENCE_REASON
    t["filter_reason"] = reasons
    t["passes"] = (reasons == "").to_numpy()
    order = t[t["passes"]].sort_values(["abs_mismatch_per_K", "id"], kind="stable").index
    t["rank"] = pd.Series(pd.NA, index=t.index, dtype="Int64")
    t.loc[order, "rank"] = np.arange(1, len(order) + 1)
    ranked = t.loc[[*order, *t.index[~t["passes"]]]]
    return _typed_table(ranked[list(OUTPUT_COLUMNS)]), notes


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
    table = pd.read_csv(path_or_buffer, keep_default_na=False, na_values=[""],
                        dtype={c: str for c in _STRING_COLUMNS}, float_precision="round_trip")
    missing = [c for c in PREDICTION_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"not a screening table: missing columns {', '.join(missing)}")
    if "passes" in table.columns:
        table["passes"] = table["passes"].map({True: True, False: False, "True": True,
                                               "False": False})
    for column in _STRING_COLUMNS:
        if column in table.columns:
            table[column] = table[column].map(unescape_cell)
    return _typed_table(table)


def property_models(filters: Filters | None, eform_model, gap_model) -> tuple[dict, list[str]]:
    """The formation-energy and band-gap models the ``filters`` need (``{"e_form": …,
    "band_gap": …}``; a given model wins, else :func:`find_property_model`), and notes for
    filters disabled because no model predicts their property."""
    notes: list[str] = []
    picked = {}
    for prop, given, label, needed in (
        ("e_form", eform_model, "formation-energy", filters is not None and filters.needs_e_form),
        ("band_gap", gap_model, "band-gap", filters is not None and filters.needs_band_gap),
    ):
        picked[prop] = given if given is not None or not needed else find_property_model(prop)
        if needed and picked[prop] is None:
            _add_note(notes, f"{label} filter disabled: no model predicts "
                             f"{' or '.join(PROPERTY_TARGETS[prop])}")
    return picked, notes


def screen(candidates, electrolyte, model, *, measured=None, filters: Filters | None = None,
           eform_model=None, gap_model=None, dataset: LabelledDataset | None = None,
           chunk_size: int = DEFAULT_CHUNK_SIZE, progress: Progress | None = None,
           batch_size: int = 64, device: str = "auto", disorder=None,
           limits: ReadLimits | None = None) -> ScreenResult:
    """Predict, filter and rank ``candidates`` by their linear-CTE mismatch to ``electrolyte``.

    Args:
        candidates: anything :func:`iter_candidates` reads (streamed in ``chunk_size`` chunks).
        electrolyte: a :class:`Reference`, or a spec for :func:`resolve_electrolyte` (formula,
            id, structure file, or typed linear CTE in 1/K).
        model: the volumetric-CTE model (loaded, directory or name).
        measured: measured linear CTEs (:func:`measured_table`), used where present.
        filters: element and predicted-property filters (:class:`Filters`).
        eform_model, gap_model: models for the formation-energy and band-gap filters; when a
            filter needs one and none is given, :func:`find_property_model` picks one, and when
            there is none the filter is disabled with a note.
        dataset: also searched for the electrolyte's formula.
        disorder: how disordered candidates and electrolyte are predicted
            (:class:`engine.materials.disorder.DisorderSettings`; default the virtual crystal).
        limits: bounds of reading candidates and an electrolyte file (:class:`ReadLimits`).
    """
    model = _load(model)
    measured = measured_table(measured)
    picked, notes = property_models(filters, eform_model, gap_model)
    if not isinstance(electrolyte, Reference):
        electrolyte = resolve_electrolyte(electrolyte, model, measured=measured, dataset=dataset,
                                          batch_size=batch_size, device=device,
                                          disorder=disorder, limits=limits)
    pred = predict_candidates(candidates, model, eform_model=picked["e_form"],
                              gap_model=picked["band_gap"], filters=filters,
                              chunk_size=chunk_size, progress=progress, batch_size=batch_size,
                              device=device, disorder=disorder, limits=limits)
    table, filter_notes = rank_candidates(pred.table, electrolyte, measured=measured,
                                          filters=filters)
    for note in [*pred.notes, *filter_notes]:
        _add_note(notes, note)
    return ScreenResult(table=table, electrolyte=electrolyte, errors=pred.errors, notes=notes,
                        model_name=pred.model_name, n_read=pred.n_read)


# ----------------------------------------------------------------------------------------------
# Mismatch matrix


@dataclass
class MismatchMatrix:
    """Δα = α_L(row) − α_L(column) and its σ = √(σ_r² + σ_c²), both in 1/K; rows are
    candidates (electrodes, interconnects, seals), columns electrolytes."""

    delta: pd.DataFrame
    sigma: pd.DataFrame

    def long(self) -> pd.DataFrame:
        """One row per pair: ``candidate``, ``electrolyte``, ``mismatch_per_K``,
        ``mismatch_std_per_K``."""
        rows, cols = list(self.delta.index), list(self.delta.columns)
        return pd.DataFrame({
            "candidate": np.repeat(np.array(rows, dtype=object), len(cols)),
            "electrolyte": np.tile(np.array(cols, dtype=object), len(rows)),
            "mismatch_per_K": self.delta.to_numpy(dtype=float).ravel(),
            "mismatch_std_per_K": self.sigma.to_numpy(dtype=float).ravel(),
        })


def mismatch_matrix(candidates: Sequence[Reference],
                    electrolytes: Sequence[Reference]) -> MismatchMatrix:
    """The mismatch of every candidate with every electrolyte (:class:`MismatchMatrix`)."""
    rows = pd.Index([c.name for c in candidates], name="candidate")
    cols = pd.Index([e.name for e in electrolytes], name="electrolyte")
    a = np.array([c.cte_lin for c in candidates], dtype=float).reshape(-1, 1)
    sa = np.array([c.cte_lin_std for c in candidates], dtype=float).reshape(-1, 1)
    b = np.array([e.cte_lin for e in electrolytes], dtype=float).reshape(1, -1)
    sb = np.array([e.cte_lin_std for e in electrolytes], dtype=float).reshape(1, -1)
    return MismatchMatrix(delta=pd.DataFrame(a - b, index=rows, columns=cols),
                          sigma=pd.DataFrame(np.sqrt(sa**2 + sb**2), index=rows, columns=cols))


def candidate_references(table: pd.DataFrame, top: int = 10) -> list[Reference]:
    """The ``top`` ranked rows of a ranked table as references (named by id, CTE used)."""
    ranked = table[table["passes"]].sort_values("rank").head(top)
    return [Reference(name=str(r.id), cte_lin=float(r.cte_lin_used_per_K),
                      cte_lin_std=float(r.cte_lin_used_std_per_K), source=str(r.cte_source),
                      formula=str(r.formula), cte_vol_pred=float(r.cte_vol_pred_per_K),
                      domain=str(r.domain))
            for r in ranked.itertuples(index=False)]
