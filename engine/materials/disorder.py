"""Disordered crystals (partial occupancies, vacancies): the two ways they are predicted, and the
ordered supercells of the second (:func:`orderings`). The prediction itself is
:func:`engine.inference.disorder.predict_structures`.

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
from pymatgen.core import Structure

__all__ = ["DisorderSettings", "OrderingError", "orderings", "supercell_size"]


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
