"""Nearest neighbours in periodic crystals: every pair within a radius (pymatgen's compiled
search), and each atom's ``max_neighbors`` nearest, selected for many structures at once.

:class:`engine.graphs.builder.GraphBuilder` turns the selected edges into graphs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from pymatgen.optimization.neighbors import find_points_in_spheres

from engine.core.config import GraphConfig

if TYPE_CHECKING:
    from pymatgen.core import Structure


def neighbor_list(
    structure: Structure, cutoff: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every pair within ``cutoff`` Å, periodic images included (self-images too), the atom
    itself excluded: the pairs of pymatgen's ``Structure.get_neighbor_list(r=cutoff,
    exclude_self=True)``, without its per-site Python work.

    Returns:
        ``center`` (E,), ``neighbor`` (E,), integer image ``offset`` of the neighbour (E, 3)
        and ``distance`` in Å (E,), in pymatgen's search order.
    """
    cells = structure.lattice.matrix[None]
    return pairs_within([structure.cart_coords], cells, np.zeros(1, np.int64), cutoff)


_TOLERANCE = 1e-8
_PERIODIC = np.ones(3, dtype=np.int64)


def _search(coords: np.ndarray, cell: np.ndarray, cutoff: float) -> tuple[np.ndarray, ...]:
    """pymatgen's pairs of Cartesian ``coords`` (N, 3) in the ``cell`` (3, 3) within ``cutoff``
    Å, as it returns them: ``center``, ``neighbor``, float image ``offset`` (E, 3) and
    ``distance``, each atom's pair with itself included (:func:`_joined` drops it)."""
    # as Structure.get_neighbor_list: pairs up to cutoff + 1e-8 Å, the atom itself at < 1e-8
    return find_points_in_spheres(
        coords, coords, r=cutoff, pbc=_PERIODIC, lattice=cell, tol=_TOLERANCE
    )


def pairs_within(
    coords: Sequence[np.ndarray], cells: np.ndarray, starts: np.ndarray, cutoff: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`neighbor_list` of several structures (Cartesian ``coords`` (N_k, 3) in Å in
    ``cells`` (S, 3, 3)), atoms numbered from each structure's ``starts`` (S,); each
    structure's pairs in pymatgen's search order."""
    return _joined([_search(xyz, cell, cutoff) for xyz, cell in zip(coords, cells)], starts)


def _joined(
    pairs: Sequence[Sequence[np.ndarray]], starts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_search` results of several structures as one list of pairs, atoms numbered from
    each structure's ``starts`` (S,), every atom's pair with itself dropped."""
    shift = np.repeat(starts, [len(p[0]) for p in pairs])
    center, neighbor = (np.concatenate([p[i] for p in pairs]).astype(np.int64) for i in (0, 1))
    offset = np.concatenate([p[2] for p in pairs]).reshape(-1, 3)
    distance = np.concatenate([p[3] for p in pairs])
    keep = distance > _TOLERANCE
    center += shift
    neighbor += shift
    return center[keep], neighbor[keep], np.rint(offset[keep]).astype(np.int64), distance[keep]


def candidate_pairs(
    coords: Sequence[np.ndarray], cells: np.ndarray, starts: np.ndarray, config: GraphConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Enough pairs to pick every atom's ``max_neighbors`` nearest and the first one dropped,
    for several structures (Cartesian ``coords`` (N_k, 3) in Å in ``cells`` (S, 3, 3)), atoms
    numbered from each structure's ``starts`` (S,).

    Searches first within a radius holding about 1.5 × (max_neighbors + 1) atoms at each
    crystal's density, far fewer pairs than the cutoff's. Where every atom has
    max_neighbors + 1 pairs clearly inside that radius, the nearest ones (ties included) are
    all among them; otherwise the search is redone with a radius 25 % larger, and at last at
    the cutoff. Only the searches go structure by structure; the checks are vectorised.
    """
    need = config.max_neighbors + 1
    sizes = np.array([len(xyz) for xyz in coords])
    volumes = np.abs(np.linalg.det(cells))
    radius = (3 * volumes / sizes * 1.5 * need / (4 * np.pi)) ** (1 / 3)
    owner = np.repeat(np.arange(len(coords)), sizes)  # structure of each atom
    found = []  # pairs of the structures done, round by round
    todo = np.arange(len(coords))
    while len(todo):
        radius[todo] = np.minimum(radius[todo], config.cutoff)
        pairs = _joined([_search(coords[k], cells[k], radius[k]) for k in todo], starts[todo])
        # structures searched below the cutoff where some atom has too few pairs inside
        center, distance = pairs[0], pairs[3]
        inside = distance < radius[owner[center]] - 1e-4
        per_atom = np.bincount(center[inside], minlength=len(owner))
        short = np.minimum.reduceat(per_atom, starts) < need
        todo = todo[short[todo] & (radius[todo] < config.cutoff)]
        if len(todo):
            again = np.zeros(len(coords), dtype=bool)
            again[todo] = True
            keep = ~again[owner[center]]
            pairs = tuple(column[keep] for column in pairs)
        found.append(pairs)
        radius[todo] *= 1.25
    if len(found) == 1:
        return found[0]
    return tuple(np.concatenate(column) for column in zip(*found))


def _pack(*columns: np.ndarray) -> list[np.ndarray]:
    """Integer columns (E,), most significant first, packed into as few int64 keys as fit: each
    key orders its rows as its columns do lexicographically. Most significant key first."""
    keys: list[np.ndarray] = []
    span = 2**63  # how many values the last key takes; none yet
    for column in columns:
        low, high = int(column.min(initial=0)), int(column.max(initial=0))
        width = high - low + 1
        values = column.astype(np.int64, copy=False) - low
        if span * width < 2**63:
            keys[-1] = keys[-1] * width + values
            span *= width
        else:
            keys.append(values)
            span = width
    return keys


#: Where the grids of :func:`distance_steps` are shifted, in steps.
GRID_SHIFT = 0.2371


def distance_steps(distance: np.ndarray, step: float = 1e-5) -> np.ndarray:
    """Distances in Å (E,) as integer steps of ``step`` Å, so that float noise cannot tell
    equal distances apart, int64 (E,).

    The grid is shifted by :data:`GRID_SHIFT` steps: its boundaries (…x.xxxxx2629 Å for
    1e-5 Å) lie between the multiples of 1e-6 Å, the distances that lattice constants written
    to 6 decimals give. Unshifted, a cube edge of 4.156715 Å sits on a boundary and float
    noise splits its shell.
    """
    return np.rint(distance / step + GRID_SHIFT).astype(np.int64)


def _argsort(keys: list[np.ndarray]) -> np.ndarray:
    """Order of the rows by packed ``keys`` (:func:`_pack`); rows with equal keys in any order."""
    return np.argsort(keys[0]) if len(keys) == 1 else np.lexsort(keys[::-1])


def nearest_edges(
    center: np.ndarray,
    neighbor: np.ndarray,
    offset: np.ndarray,
    distance: np.ndarray,
    z: np.ndarray,
    n_atoms: int,
    config: GraphConfig,
) -> dict[str, np.ndarray]:
    """The ``max_neighbors`` nearest edges of every centre, sorted by centre then distance
    (see :meth:`engine.graphs.builder.GraphBuilder.neighbors`).

    Distances equal on the 1e-5 Å grid of :func:`distance_steps` form a shell. Within a shell
    the neighbours come in order of Z, distance on a 1e-8 Å grid, index and image: the result
    depends neither on the search order nor on float noise, and a rotation of the crystal keeps
    the same edges.
    """
    rounded = distance_steps(distance)
    if config.pad_like_original:
        # The original CGCNN: stable sort on the exact distance, ties left in search order.
        order = np.lexsort((distance, center))
    else:
        # The keys, packed into as few int64 as fit: the last four as each row's rank by them.
        # (centre, neighbour, image) is unique, so any sort gives one order, and one key is
        # sorted by numpy's vectorised unstable sort (five times faster than a stable one).
        fine = distance_steps(distance, 1e-8) - 1000 * rounded
        last = np.empty(len(center), dtype=np.int64)
        last[_argsort(_pack(fine, neighbor, *offset.T))] = np.arange(len(center))
        order = _argsort(_pack(center, rounded, z[neighbor], last))
    counts = np.bincount(center, minlength=n_atoms)
    starts = np.cumsum(counts) - counts
    rank = np.arange(len(center)) - np.repeat(starts, counts)
    kept, dropped = order[rank < config.max_neighbors], order[rank == config.max_neighbors]
    # a kept edge whose (rounded) distance equals that of the first dropped one: cut shell
    boundary = np.full(n_atoms, -1)
    boundary[center[dropped]] = rounded[dropped]
    return {
        "center": center[kept].astype(np.int64, copy=False),
        "neighbor": neighbor[kept].astype(np.int64, copy=False),
        "offset": offset[kept].astype(np.int64, copy=False),
        "distance": distance[kept].astype(np.float64, copy=False),
        "cut_shell": rounded[kept] == boundary[center[kept]],
    }
