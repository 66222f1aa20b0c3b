"""Predictions on disordered crystals (partial occupancies, vacancies): two modes.

**Virtual crystal** (``mode="virtual"``, the default). The disordered cell is used as it is: each
site is one graph node whose element features are the occupancy-weighted mean of its species'
features (:func:`engine.models.base.embed_atoms`; a vacancy's share contributes a zero vector),
and the composition branch of the fusion families and the Magpie forests use the fractional
composition. One prediction per material, as cheap as an ordered one.
Trade-off: no model was trained on mixed sites, so the input lies *between* the training
crystals; local effects of the real arrangement (relaxations around a dopant, vacancy
ordering, clustering) are averaged away before the model sees them.

**Ordered supercells** (``mode="orderings"``). The cell is repeated into the smallest supercell
(diagonal, as near-cubic as possible, at most ``max_atoms`` sites) in which every group of
equivalent disordered sites can hold whole numbers of each species with every occupancy
reproduced within ``tolerance``; ``k`` orderings are drawn by seeded random assignment of the
species (and vacancies, which remove the site) over each group's copies, each ordering is
predicted as an ordinary crystal, and the prediction is their mean. The spread across orderings
(standard deviation, ddof 1) is added to the model's σ in quadrature:
σ² = mean_i(σ_i²) + sd_i(ŷ_i)². The domain distance is the orderings' mean and the domain flag
their worst. Trade-off: each ordering is a real crystal of the kind the models were trained on,
and the spread shows how much the arrangement matters; but it costs k predictions of an
m-times larger cell, random orderings are not the thermodynamically likely ones (no
short-range order, no energy model), the occupancies are only reproduced to ``tolerance``,
and ``k`` orderings estimate the spread roughly.

An ordered structure goes through both modes unchanged (one ordering, the cell itself), so it
predicts identically either way.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from engine.io import NamedStructure

__all__ = ["DisorderSettings", "OrderingError", "orderings", "predict_structures", "supercell_size"]

#: Domain flags from best to worst (an ordering-averaged prediction takes the worst).
_FLAG_ORDER = ("in-domain", "borderline", "out-of-domain")


class OrderingError(ValueError):
    """No supercell within the atom limit reproduces the occupancies to the tolerance."""


@dataclass(frozen=True)
class DisorderSettings:
    """How disordered structures are predicted.

    Attributes:
        mode: ``"virtual"`` (virtual crystal) or ``"orderings"`` (ordered supercells).
        k: orderings drawn per structure (orderings mode).
        seed: seed of the random assignment.
        tolerance: largest |occupancy reproduced − occupancy asked| per species (unitless).
        max_atoms: largest supercell, in sites.
    """

    mode: Literal["virtual", "orderings"] = "virtual"
    k: int = 5
    seed: int = 0
    tolerance: float = 0.02
    max_atoms: int = 400

    def __post_init__(self) -> None:
        if self.mode not in ("virtual", "orderings"):
            raise ValueError(f"disorder mode {self.mode!r} is not 'virtual' or 'orderings'")
        if self.k < 1:
            raise ValueError(f"orderings k must be at least 1, got {self.k}")
        if not 0 < self.tolerance < 0.5:
            raise ValueError(f"ordering tolerance {self.tolerance} is not in (0, 0.5)")


def _groups(structure: Structure) -> dict[tuple, list[int]]:
    """Indices of the disordered sites, grouped by identical species and occupancies."""
    groups: dict[tuple, list[int]] = {}
    for i, site in enumerate(structure):
        if not site.is_ordered:
            key = tuple(sorted((sp.symbol, round(occ, 8)) for sp, occ in site.species.items()))
            groups.setdefault(key, []).append(i)
    return groups


def _error(key: tuple, copies: int) -> float:
    """Largest occupancy error when ``copies`` sites of group ``key`` are filled by rounding."""
    counts = _counts(key, copies)
    return max(abs(n / copies - occ) for (_, occ), n in zip(key, counts))


def _counts(key: tuple, copies: int) -> list[int]:
    """Whole numbers of each species over ``copies`` sites (largest-remainder rounding)."""
    exact = [occ * copies for _, occ in key]
    counts = [math.floor(x) for x in exact]
    total = min(copies, round(sum(exact)))
    order = sorted(range(len(key)), key=lambda j: exact[j] - counts[j], reverse=True)
    for j in order[: max(0, total - sum(counts))]:
        counts[j] += 1
    return counts


def _shapes(m: int, lengths: np.ndarray) -> tuple[int, int, int]:
    """The diagonal supercell (n1, n2, n3) with n1·n2·n3 = m whose edges are most nearly equal."""
    best, score = (m, 1, 1), math.inf
    for n1 in range(1, m + 1):
        if m % n1:
            continue
        for n2 in range(1, m // n1 + 1):
            if (m // n1) % n2:
                continue
            n = np.array([n1, n2, m // n1 // n2])
            edges = n * lengths
            if edges.max() / edges.min() < score:
                best, score = tuple(int(x) for x in n), edges.max() / edges.min()
    return best


def supercell_size(structure: Structure, settings: DisorderSettings) -> tuple[int, int, int]:
    """The supercell (n1, n2, n3) used for orderings (see the module docstring).

    Raises:
        OrderingError: no multiple within ``settings.max_atoms`` sites reaches the tolerance.
    """
    groups = _groups(structure)
    n = len(structure)
    for m in itertools.count(1):
        if m * n > settings.max_atoms:
            worst = {key: _error(key, len(idx) * (m - 1)) for key, idx in groups.items()}
            raise OrderingError(
                f"{structure.composition.reduced_formula}: no supercell of at most "
                f"{settings.max_atoms} sites reproduces every occupancy within "
                f"{settings.tolerance:g} (at {(m - 1) * n} sites the worst error is "
                f"{max(worst.values()):.4f}); raise max_atoms or the tolerance, or use the "
                "virtual crystal"
            )
        if all(
            _error(key, len(idx) * m) <= settings.tolerance + 1e-12 for key, idx in groups.items()
        ):
            return _shapes(m, np.array(structure.lattice.abc))
    raise AssertionError("unreachable")  # pragma: no cover


def orderings(structure: Structure, settings: DisorderSettings | None = None) -> list[Structure]:
    """``settings.k`` seeded ordered versions of ``structure`` in one supercell.

    Each group of equivalent disordered sites gets, over its copies in the supercell, the
    whole-number species counts nearest its occupancies (largest remainder); a random permutation
    (``numpy.random.default_rng(seed)``) decides which copy gets which species; vacant copies
    are removed. An ordered structure returns ``[structure]``.

    Raises:
        OrderingError: see :func:`supercell_size`.
    """
    settings = settings or DisorderSettings(mode="orderings")
    if structure.is_ordered:
        return [structure]
    shape = supercell_size(structure, settings)
    m = int(np.prod(shape))
    big = structure.copy()
    big.add_site_property("parent", list(range(len(structure))))
    big.make_supercell(np.diag(shape))
    parents = np.array(big.site_properties["parent"])
    rng = np.random.default_rng(settings.seed)
    out = []
    for _ in range(settings.k):
        species: list = [None] * len(big)
        for i, site in enumerate(big):
            if site.is_ordered:
                species[i] = site.specie.symbol
        for key, idx in _groups(structure).items():
            copies = np.flatnonzero(np.isin(parents, idx))
            counts = _counts(key, len(idx) * m)
            labels = [el for (el, _), n in zip(key, counts) for _ in range(n)]
            labels += [None] * (len(copies) - len(labels))  # vacancies
            for i, label in zip(rng.permutation(copies), labels):
                species[i] = label
        keep = [i for i, sp in enumerate(species) if sp is not None]
        out.append(Structure(big.lattice, [species[i] for i in keep], big.frac_coords[keep]))
    return out


def _aggregate(
    table: pd.DataFrame, groups: list[tuple[int, list[int]]], items: list[NamedStructure]
) -> pd.DataFrame:
    """One row per original structure from the rows of its orderings (see module docstring)."""
    rows = []
    by_id = {str(i): k for k, i in enumerate(table["id"])}
    pred_cols = [
        c
        for c in table.columns
        if c.startswith("prediction") and not c.startswith("prediction_std")
    ]
    for position, ids in groups:
        sub = table.iloc[[by_id[i] for i in ids if i in by_id]]
        if sub.empty:
            continue
        item = items[position]
        row = {
            "id": item.id,
            "formula": item.structure.composition.reduced_formula,
            "n_sites": len(item.structure),
        }
        for column in table.columns:
            if column in row or column in ("domain",):
                continue
            values = sub[column]
            if pd.api.types.is_numeric_dtype(values):
                row[column] = float(values.mean())
        spreads = {}
        for column in pred_cols:
            spread = float(sub[column].std(ddof=1)) if len(sub) > 1 else 0.0
            spreads[column] = spread
            std_col = column.replace("prediction", "prediction_std", 1)
            if std_col in sub:
                row[std_col] = float(np.sqrt(np.mean(sub[std_col] ** 2) + spread**2))
        row["ordering_std"] = spreads.get("prediction", 0.0)
        row["n_orderings"] = len(sub)
        if "domain" in sub:
            flags = [f for f in sub["domain"].astype(str)]
            known = [f for f in flags if f in _FLAG_ORDER]
            row["domain"] = (
                max(known, key=_FLAG_ORDER.index) if len(known) == len(flags) else flags[0]
            )
        rows.append(row)
    columns = list(table.columns) + ["ordering_std", "n_orderings"]
    return pd.DataFrame(rows, columns=columns)


def predict_structures(
    model,
    items,
    settings: DisorderSettings | None = None,
    *,
    batch_size: int = 64,
    device: str = "auto",
    limits=None,
):
    """:func:`engine.inference.prediction.predict` on ``items``, disordered ones by ``settings.mode``.

    ``items`` is a list of :class:`NamedStructure` or anything :func:`engine.io.read_structures`
    reads (under ``limits``, an :class:`engine.io.ReadLimits`).

    In orderings mode every disordered item is predicted through :func:`orderings` and its row
    aggregated (mean; σ with the ordering spread in quadrature; ``ordering_std`` and
    ``n_orderings`` columns, target unit and count); ordered items give one ordering with
    spread 0. Items whose orderings fail (:class:`OrderingError`) become errors.

    Returns:
        :class:`engine.inference.prediction.Predictions`, one row per usable item.
    """
    from engine.inference.prediction import predict
    from engine.io import ReadError, read_structures

    settings = settings or DisorderSettings()
    if settings.mode == "virtual":
        return predict(model, items, batch_size=batch_size, device=device, limits=limits)
    errors: list[ReadError] = []
    if not isinstance(items, list):
        batch = read_structures(items, limits=limits)
        items, errors = batch.items, list(batch.errors)
    if all(it.structure.is_ordered for it in items):
        result = predict(model, items, batch_size=batch_size, device=device)
        result.errors = errors + result.errors
        return result
    expanded, groups = [], []
    for position, item in enumerate(items):
        try:
            cells = orderings(item.structure, settings)
        except OrderingError as exc:
            errors.append(ReadError(source=item.source, reason=str(exc)))
            continue
        ids = [f"{position}#{j}" for j in range(len(cells))]
        expanded += [
            NamedStructure(id=i, structure=s, source=item.source) for i, s in zip(ids, cells)
        ]
        groups.append((position, ids))
    result = predict(model, expanded, batch_size=batch_size, device=device)
    result.table = _aggregate(result.table, groups, items)
    result.errors = errors + result.errors
    result.notes.append(
        f"disordered structures: mean of {settings.k} seeded orderings (seed "
        f"{settings.seed}, occupancies within {settings.tolerance:g}); their "
        "spread is added to σ in quadrature"
    )
    return result
