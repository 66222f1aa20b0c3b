"""Which candidates are ranked: element and predicted-property filters, and the models that
predict the filtered properties (formation energy in eV/atom, band gap in eV, CTE in 1/K)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pymatgen.core import Element

__all__ = [
    "PROPERTY_TARGETS",
    "PROPERTY_UNITS",
    "SOURCE_PREFERENCE",
    "Filters",
    "filter_reasons",
    "find_property_model",
    "property_column",
    "property_models",
]

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


# ----------------------------------------------------------------------------------------------
# Property models


def find_property_model(prop: str) -> str | None:
    """The model to use for ``prop`` (``"cte"``, ``"e_form"`` or ``"band_gap"``) when none is
    named: of the models that predict one of its :data:`PROPERTY_TARGETS` (as a primary or
    extra target) from the structure alone (not :data:`~engine.core.config.PHYSICS_INPUT_FAMILIES`),
    the first :data:`SOURCE_PREFERENCE` source, then the lowest validation MAE. Returns its
    directory or name, or None when no model predicts it."""
    from engine.catalog.names import list_models
    from engine.core.config import PHYSICS_INPUT_FAMILIES

    targets = PROPERTY_TARGETS[prop]
    found = [
        m
        for m in list_models()
        if any(t in (m.get("targets") or [m["target"]]) for t in targets)
        and m.get("family") not in PHYSICS_INPUT_FAMILIES
    ]
    rank = {s: k for k, s in enumerate(SOURCE_PREFERENCE)}
    found.sort(key=lambda m: (rank.get(m["source"], len(rank)), _val_mae(m)))
    return (found[0]["path"] or found[0]["name"]) if found else None


def _val_mae(summary: dict) -> float:
    """The validation MAE of a :func:`~engine.catalog.names.list_models` entry (inf if none)."""
    return ((summary.get("metrics") or {}).get("val") or {}).get("mae", float("inf"))


def property_column(model, prop: str) -> str:
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
            f"model {model.name!r} predicts "
            + ", ".join(f"{t} ({u or 'no unit'})" for t, u in units.items())
            + f"; screening needs {' or '.join(PROPERTY_TARGETS[prop])} in {wanted}"
        )
    return "prediction" if found[0] == model.targets[0] else task_column(found[0])


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
            notes.append(
                f"{label} filter disabled: no model predicts {' or '.join(PROPERTY_TARGETS[prop])}"
            )
    return picked, notes


# ----------------------------------------------------------------------------------------------
# Filters


def _symbols(values: Iterable[str], what: str) -> tuple[str, ...]:
    """``values`` as stripped element symbols; ValueError names ``what`` for one that is not."""
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
        """Whether a formation-energy prediction is filtered on."""
        return self.max_e_form is not None

    @property
    def needs_band_gap(self) -> bool:
        """Whether a band-gap prediction is filtered on."""
        return self.min_band_gap is not None or self.max_band_gap is not None

    def element_reason(self, elements: str) -> str:
        """Why a candidate with these (space-separated) elements fails; "" when it passes."""
        present = set(elements.split())
        missing = [e for e in self.include if e not in present]
        banned = [e for e in self.exclude if e in present]
        parts = ([f"lacks {', '.join(missing)}"] if missing else []) + (
            [f"contains excluded {', '.join(banned)}"] if banned else []
        )
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
