"""Periodic neighbour graphs of crystals, as in CGCNN (Xie & Grossman, PRL 120, 145301, 2018).

A crystal becomes an undirected multigraph: every atom of the unit cell is a node, and each atom
gets an edge to each of its ``max_neighbors`` nearest neighbours within ``cutoff`` Å, periodic
images included. Atoms i and j can be joined by several edges through different images, and a
one-atom cell has edges to itself.

Disordered sites (partial occupancy, e.g. ``{"La": 0.6, "Sr": 0.4}`` or ``{"O": 0.95}``) are
nodes like any other: neighbour lists work on sites regardless of what occupies them. Each node
carries its species and occupancies (``species_z``, ``species_w``, padded to
:data:`MAX_SITE_SPECIES`), from which the models take the occupancy-weighted element features
(the *virtual crystal*, :mod:`engine.materials.disorder`); an ordered site is species 1 with weight 1.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch_geometric.data import Data
from vesin import NeighborList

from engine.core.config import GraphConfig

#: Most species one site may hold (e.g. a high-entropy cation site of five elements).
MAX_SITE_SPECIES = 6

if TYPE_CHECKING:
    from pymatgen.core import Composition, Structure


class GraphBuildError(ValueError):
    """A structure could not be turned into a graph under the chosen policy."""


class IsolatedAtomWarning(UserWarning):
    """Some atoms have no neighbour within the cutoff."""


def gaussian_centers(config: GraphConfig, device: torch.device | str | None = None) -> torch.Tensor:
    """Centres μ_k of the distance expansion in Å, shape (n_gaussians,)."""
    return config.gaussian_start + config.gaussian_step * torch.arange(
        config.n_gaussians, dtype=torch.float32, device=device
    )


#: Exponents below this give subnormal Gaussians (exp(-87) ≈ 1.6e-38, just above the smallest
#: normal float32), which the CPU computes about 50× slower than normal ones.
_MIN_EXPONENT = -87.0


def gaussian_expand(distances: torch.Tensor, config: GraphConfig) -> torch.Tensor:
    """Expand distances in Gaussians, u_k(r) = exp(-(r - μ_k)² / σ²).

    The models call it on ``edge_dist`` in their forward: graphs do not store the expansion.
    Features below about 1.6e-38 are set to exactly 0 (they vanish next to any other term of
    a layer's sum, so no output changes; computing them would dominate the cost on a CPU).

    Args:
        distances: edge lengths in Å, shape (E,).
        config: gives μ_k and σ.

    Returns:
        Edge features, shape (E, n_gaussians).
    """
    mu = gaussian_centers(config, distances.device)
    exponent = -((distances.unsqueeze(-1) - mu) ** 2) / config.gaussian_width**2
    tiny = exponent < _MIN_EXPONENT
    return exponent.masked_fill(tiny, 0.0).exp().masked_fill(tiny, 0.0)


class GraphBuilder:
    """Turns a pymatgen ``Structure`` into a torch_geometric ``Data`` graph.

    Built on vesin's cell-list neighbour search (the pairs of pymatgen's
    ``Structure.get_neighbor_list``, :func:`neighbor_list`), not the per-site
    ``get_all_neighbors`` loop of the original CGCNN code.

    The returned ``Data`` holds, for N atoms and E edges:
        z: atomic numbers, long (N,); a disordered site's most abundant species (ties: the
            lower Z).
        species_z: atomic numbers of each site's species, long (N, MAX_SITE_SPECIES), padded
            with 0.
        species_w: their occupancies, float (N, MAX_SITE_SPECIES), padded with 0; a row sums to
            1 on a fully occupied site and to less on a site with vacancies.
        pos: Cartesian positions in Å, float (N, 3).
        cell: lattice vectors as rows in Å, float (1, 3, 3).
        edge_index: long (2, E); row 0 is the neighbour j (message source), row 1 the centre i.
        edge_dist: |r_j + offset·cell - r_i| in Å, float (E,). The models expand it in
            Gaussians themselves (:func:`gaussian_expand`, (E, n_gaussians)).
        edge_offset: periodic image of j as integer cell translations, long (E, 3).
        edge_cut_shell: bool (E,); True where the ``max_neighbors`` cap cut this edge's shell
            (neighbours at the same distance were dropped, so which ones were kept is arbitrary).
            Distance-only models need not care; angle-based ones must (:mod:`engine.graphs.linegraph`).

    Edges of each centre atom are sorted by distance. Ties at the neighbour cap are broken by
    the neighbour's atomic number, so the graph does not depend on the order of atoms in the file
    (except with ``pad_like_original``, which keeps the original code's arbitrary tie order).

    Example:
        >>> builder = GraphBuilder(GraphConfig(cutoff=6.0))
        >>> graph = builder(structure)
    """

    def __init__(self, config: GraphConfig | None = None, **overrides):
        base = config or GraphConfig()
        self.config = GraphConfig(**{**base.model_dump(), **overrides}) if overrides else base

    def __repr__(self) -> str:
        c = self.config
        return (
            f"GraphBuilder(cutoff={c.cutoff} Å, max_neighbors={c.max_neighbors}, "
            f"gaussians={c.n_gaussians} from {c.gaussian_start} to {c.gaussian_stop} Å "
            f"σ={c.gaussian_width} Å, isolated_atoms={c.isolated_atoms!r}"
            + (", pad_like_original=True" if c.pad_like_original else "")
            + ")"
        )

    def neighbors(self, structure: Structure) -> dict[str, np.ndarray]:
        """Nearest-neighbour edges of every atom, before any policy or padding is applied.

        Returns:
            Dict of numpy arrays: ``center`` (E,), ``neighbor`` (E,), ``offset`` (E, 3),
            ``distance`` (E,) in Å and ``cut_shell`` (E,), sorted by centre then distance.
        """
        coords, cell = structure.cart_coords, structure.lattice.matrix
        pairs = self._pairs(structure, coords, cell, float(abs(np.linalg.det(cell))))
        z = site_species(structure)[0]
        return nearest_edges(*pairs, z, len(structure), self.config)

    def _pairs(
        self, structure: Structure, coords: np.ndarray, cell: np.ndarray, volume: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Candidate pairs of one structure (see :func:`neighbor_list`); volume in Å³."""
        c = self.config
        if c.pad_like_original:
            # pymatgen's search order: the original's tie order at the cap depends on it
            center, neighbor, offset, distance = structure.get_neighbor_list(
                r=c.cutoff, exclude_self=True
            )
            return center, neighbor, np.rint(offset), distance
        return _candidate_pairs(coords, cell, volume, c)

    def __call__(self, structure: Structure, *, structure_id: str | None = None) -> Data:
        """Build the graph of one structure.

        Raises:
            GraphBuildError: an atom has no neighbour within the cutoff and the policy is
                ``error``.
        """
        return self.build_many([structure], [structure_id])[0]

    def build_many(
        self, structures: Iterable[Structure], ids: Sequence[str | None] | None = None
    ) -> list[Data]:
        """Build graphs for many structures; ``ids`` label them in warnings and errors.

        The nearest neighbours of all structures are selected in one vectorised pass: much
        faster than one call per structure, with the same graphs.

        Raises:
            GraphBuildError: as :meth:`__call__`, or a site the graph cannot hold
                (:func:`site_species`).
        """
        structures = list(structures)
        ids = list(ids) if ids is not None else [None] * len(structures)
        if not structures:
            return []
        c = self.config
        species = [site_species(s) for s in structures]
        sizes = np.array([len(z) for z, _, _ in species])
        starts = np.cumsum(sizes) - sizes
        n = int(sizes.sum())
        coords = [s.cart_coords for s in structures]
        cells = np.stack([s.lattice.matrix for s in structures])
        volumes = np.abs(np.linalg.det(cells)).tolist()
        parts = [
            self._pairs(s, xyz, cell, vol)
            for s, xyz, cell, vol in zip(structures, coords, cells, volumes)
        ]
        shift = np.repeat(starts, [len(p[0]) for p in parts])
        center = np.concatenate([p[0] for p in parts]) + shift
        neighbor = np.concatenate([p[1] for p in parts]) + shift
        offset = np.concatenate([p[2] for p in parts]).reshape(-1, 3)
        distance = np.concatenate([p[3] for p in parts])
        z = np.concatenate([zs for zs, _, _ in species])
        edges = nearest_edges(center, neighbor, offset, distance, z, n, c)
        counts = np.bincount(edges["center"], minlength=n)
        first_atom = np.repeat(starts, sizes)  # of each atom's structure
        if c.isolated_atoms != "ignore":
            owner = np.repeat(np.arange(len(structures)), sizes)
            for k in np.flatnonzero(np.bincount(owner[counts == 0], minlength=len(structures))):
                own = counts[starts[k] : starts[k] + sizes[k]]
                self._check_isolated(structures[k], own, ids[k])
        if c.pad_like_original:
            edges = _pad_like_original(edges, counts, first_atom, c)
        # atom indices within each structure, and each structure's slice of the edges
        first = first_atom[edges["center"]]
        edge_index = np.stack([edges["neighbor"] - first, edges["center"] - first])
        bounds = np.searchsorted(edges["center"], np.append(starts, n))
        pos = np.concatenate(coords).astype(np.float32)
        species_z = np.concatenate([sz for _, sz, _ in species])
        species_w = np.concatenate([sw for _, _, sw in species])
        cells = cells.astype(np.float32)
        distance = edges["distance"].astype(np.float32)
        graphs = []
        for k, structure_id in enumerate(ids):
            a, b = starts[k], starts[k] + sizes[k]
            lo, hi = bounds[k], bounds[k + 1]
            # update(): a quarter cheaper than Data(**fields), which sets attributes one by one
            data = Data(num_nodes=int(sizes[k])).update(
                {
                    "z": torch.from_numpy(z[a:b]),
                    "species_z": torch.from_numpy(species_z[a:b]),
                    "species_w": torch.from_numpy(species_w[a:b]),
                    "pos": torch.from_numpy(pos[a:b]),
                    "cell": torch.from_numpy(cells[k : k + 1]),
                    "edge_index": torch.from_numpy(edge_index[:, lo:hi].copy()),
                    "edge_dist": torch.from_numpy(distance[lo:hi]),
                    "edge_offset": torch.from_numpy(edges["offset"][lo:hi]),
                    "edge_cut_shell": torch.from_numpy(edges["cut_shell"][lo:hi]),
                }
            )
            if structure_id is not None:
                data.structure_id = structure_id
            graphs.append(data)
        return graphs

    def _check_isolated(
        self, structure: Structure, counts: np.ndarray, structure_id: str | None
    ) -> None:
        c = self.config
        isolated = np.flatnonzero(counts == 0)
        if len(isolated) and c.isolated_atoms != "ignore":
            message = _isolated_message(structure, isolated, c.cutoff, structure_id)
            if c.isolated_atoms == "error":
                raise GraphBuildError(message)
            warnings.warn(message, IsolatedAtomWarning, stacklevel=3)


def atomic_numbers(structure: Structure) -> np.ndarray:
    """Atomic numbers of the sites, int64 (N,); a disordered site's most abundant species."""
    return site_species(structure)[0]


def neighbor_list(
    structure: Structure, cutoff: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every pair within ``cutoff`` Å, periodic images included (self-images too), the atom
    itself excluded: the pairs of pymatgen's ``Structure.get_neighbor_list(r=cutoff,
    exclude_self=True)``, computed with vesin's cell list (several times faster).

    Returns:
        ``center`` (E,), ``neighbor`` (E,), integer image ``offset`` of the neighbour (E, 3)
        and ``distance`` in Å (E,), in no particular order.
    """
    return _search(structure.cart_coords, structure.lattice.matrix, cutoff)


_TOLERANCE = 1e-8


def _search(
    coords: np.ndarray, cell: np.ndarray, cutoff: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`neighbor_list` of Cartesian ``coords`` (N, 3) in the ``cell`` (3, 3), in Å."""
    # pymatgen keeps pairs up to cutoff + 1e-8 and drops those closer than 1e-8 (the atom itself).
    # One thread: the structures are small, and threads cost more than they save.
    search = NeighborList(cutoff=cutoff + _TOLERANCE, full_list=True, n_threads=1)
    center, neighbor, offset, distance = search.compute(
        points=coords, box=cell, periodic=True, quantities="ijSd"
    )
    keep = distance > _TOLERANCE
    return (
        center[keep].astype(np.int64),
        neighbor[keep].astype(np.int64),
        offset[keep].astype(np.int64),
        distance[keep],
    )


def _candidate_pairs(
    coords: np.ndarray, cell: np.ndarray, volume: float, config: GraphConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Enough pairs to pick every atom's ``max_neighbors`` nearest and the first one dropped.

    Searches first within a radius holding about 1.5 × (max_neighbors + 1) atoms at the
    crystal's density (``volume`` in Å³), far fewer pairs than the cutoff's. Where every atom
    has max_neighbors + 1 pairs clearly inside that radius, the nearest ones (ties included)
    are all among them; otherwise the search is redone with a radius 25 % larger, and at last
    at the cutoff.
    """
    need = config.max_neighbors + 1
    radius = (3 * volume / len(coords) * 1.5 * need / (4 * np.pi)) ** (1 / 3)
    while radius < config.cutoff:
        pairs = _search(coords, cell, radius)
        inside = np.bincount(pairs[0][pairs[3] < radius - 1e-4], minlength=len(coords))
        if inside.min() >= need:
            return pairs
        radius *= 1.25
    return _search(coords, cell, config.cutoff)


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
    (see :meth:`GraphBuilder.neighbors`)."""
    # distance rounded to 1e-5 Å, as an integer: the order and ties of np.round(distance, 5)
    rounded = np.rint(distance * 1e5).astype(np.int64)
    if config.pad_like_original:
        # The original CGCNN: stable sort on the exact distance, ties left in search order.
        order = np.lexsort((distance, center))
    else:
        # Centre, then distance (rounded so float noise after a rotation cannot reorder equal
        # distances), then the neighbour's Z, the exact distance, and last the neighbour and its
        # image, so that the result does not depend on the search order. The integer keys are
        # packed into few int64 keys: fewer passes of the sort.
        first = _pack(center, rounded, z[neighbor])
        last = _pack(neighbor, offset[:, 0], offset[:, 1], offset[:, 2])
        order = np.lexsort((*last[::-1], distance, *first[::-1]))
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


def site_species(structure: Structure) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Species of every site: the majority Z (N,), and Z and occupancy per species, each
    (N, :data:`MAX_SITE_SPECIES`) padded with 0, species in descending occupancy (ties: lower Z).

    Raises:
        GraphBuildError: a site holds more than :data:`MAX_SITE_SPECIES` species, or a species
            that is not an element (e.g. a dummy species).
    """
    compositions = [site.species for site in structure]
    n = len(compositions)
    zs = np.zeros((n, MAX_SITE_SPECIES), dtype=np.int64)
    ws = np.zeros((n, MAX_SITE_SPECIES), dtype=np.float32)
    if is_ordered(compositions):
        zs[:, 0] = [next(iter(species)).Z for species in compositions]
        ws[:, 0] = 1.0
        return zs[:, 0].copy(), zs, ws
    for i, species in enumerate(compositions):
        items = sorted(species.items(), key=lambda kv: (-kv[1], getattr(kv[0], "Z", 0)))
        if len(items) > MAX_SITE_SPECIES:
            raise GraphBuildError(
                f"site {i} holds {len(items)} species ({structure[i].species_string}); at most "
                f"{MAX_SITE_SPECIES} per site are supported"
            )
        for k, (sp, occ) in enumerate(items):
            z = getattr(sp, "Z", None)
            if z is None:
                raise GraphBuildError(f"site {i} holds {sp}, which is not an element")
            zs[i, k], ws[i, k] = z, occ
    return zs[:, 0].copy(), zs, ws


def is_ordered(compositions: Sequence[Composition]) -> bool:
    """pymatgen's ``Structure.is_ordered`` (every site holds one species at occupancy 1: no
    vacancy, no partial occupancy), from the sites' ``species`` already at hand."""
    return all(species.num_atoms == len(species) == 1 for species in compositions)


def _isolated_message(
    structure: Structure, isolated: np.ndarray, cutoff: float, structure_id: str | None
) -> str:
    atoms = ", ".join(f"{structure[i].species_string}{i}" for i in isolated[:10])
    more = f" and {len(isolated) - 10} more" if len(isolated) > 10 else ""
    name = (
        f"{structure_id} ({structure.composition.reduced_formula})"
        if structure_id
        else (structure.composition.reduced_formula)
    )
    return (
        f"{name}: {len(isolated)} atom(s) have no neighbour within {cutoff} Å: {atoms}{more}. "
        "They receive no messages; raise the cutoff if this is not intended."
    )


def _pad_like_original(
    edges: dict[str, np.ndarray], counts: np.ndarray, first_atom: np.ndarray, config: GraphConfig
) -> dict[str, np.ndarray]:
    """Add the original CGCNN's fake neighbours: atom 0 of the structure (``first_atom`` of
    each atom, (N,)) at ``cutoff + 1`` Å, no image offset."""
    missing = np.clip(config.max_neighbors - counts, 0, None)
    if not missing.any():
        return edges
    pad_center = np.repeat(np.arange(len(counts)), missing)
    merged = {
        "center": np.concatenate([edges["center"], pad_center]),
        "neighbor": np.concatenate([edges["neighbor"], first_atom[pad_center]]),
        "offset": np.concatenate([edges["offset"], np.zeros((len(pad_center), 3), np.int64)]),
        "distance": np.concatenate(
            [edges["distance"], np.full(len(pad_center), config.cutoff + 1.0)]
        ),
        "cut_shell": np.concatenate([edges["cut_shell"], np.zeros(len(pad_center), bool)]),
    }
    order = np.argsort(merged["center"], kind="stable")
    return {k: v[order] for k, v in merged.items()}
