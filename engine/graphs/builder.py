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
    from pymatgen.core import Structure


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
        c = self.config
        if c.pad_like_original:
            # pymatgen's search order: the original's tie order at the cap depends on it
            center, neighbor, offset, distance = structure.get_neighbor_list(
                r=c.cutoff, exclude_self=True
            )
            offset = np.rint(offset)
        else:
            center, neighbor, offset, distance = _candidate_pairs(structure, c)
        z = atomic_numbers(structure)
        return nearest_edges(center, neighbor, offset, distance, z, len(structure), c)

    def __call__(self, structure: Structure, *, structure_id: str | None = None) -> Data:
        """Build the graph of one structure.

        Raises:
            GraphBuildError: an atom has no neighbour within the cutoff and the policy is
                ``error``.
        """
        c = self.config
        edges = self.neighbors(structure)
        counts = np.bincount(edges["center"], minlength=len(structure))
        self._check_isolated(structure, counts, structure_id)
        if c.pad_like_original:
            edges = _pad_like_original(edges, counts, c)
        return self._data(structure, edges, structure_id)

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

    def _data(
        self,
        structure: Structure,
        edges: dict,
        structure_id: str | None,
        z: np.ndarray | None = None,
        coords: np.ndarray | None = None,
    ) -> Data:
        distance = torch.as_tensor(edges["distance"], dtype=torch.float32)
        z, species_z, species_w = site_species(structure, z)
        data = Data(
            z=torch.as_tensor(z),
            species_z=torch.as_tensor(species_z),
            species_w=torch.as_tensor(species_w),
            pos=torch.tensor(
                structure.cart_coords if coords is None else coords, dtype=torch.float32
            ),
            cell=torch.tensor(structure.lattice.matrix, dtype=torch.float32).unsqueeze(0),
            edge_index=torch.as_tensor(np.stack([edges["neighbor"], edges["center"]])),
            edge_dist=distance,
            edge_offset=torch.as_tensor(edges["offset"]),
            edge_cut_shell=torch.as_tensor(edges["cut_shell"]),
            num_nodes=len(structure),
        )
        if structure_id is not None:
            data.structure_id = structure_id
        return data

    def build_many(
        self, structures: Iterable[Structure], ids: Sequence[str] | None = None
    ) -> list[Data]:
        """Build graphs for many structures; ``ids`` label them in warnings and errors.

        Gives the same graphs as calling the builder on each structure, but selects the nearest
        neighbours of all structures in one vectorised pass.
        """
        structures = list(structures)
        ids = list(ids) if ids is not None else [None] * len(structures)
        c = self.config
        if c.pad_like_original or not structures:
            return [self(s, structure_id=i) for s, i in zip(structures, ids)]
        sizes = np.array([len(s) for s in structures])
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        coords = [s.cart_coords for s in structures]
        parts = [_candidate_pairs(s, c, xyz) for s, xyz in zip(structures, coords)]
        center = np.concatenate([p[0] + k for p, k in zip(parts, starts)])
        neighbor = np.concatenate([p[1] + k for p, k in zip(parts, starts)])
        offset = np.concatenate([p[2] for p in parts])
        distance = np.concatenate([p[3] for p in parts])
        z = np.concatenate([atomic_numbers(s) for s in structures])
        edges = nearest_edges(center, neighbor, offset, distance, z, int(sizes.sum()), c)
        counts = np.bincount(edges["center"], minlength=int(sizes.sum()))
        bounds = np.searchsorted(edges["center"], np.concatenate([starts, [sizes.sum()]]))
        graphs = []
        for k, (s, i) in enumerate(zip(structures, ids)):
            lo, hi = bounds[k], bounds[k + 1]
            self._check_isolated(s, counts[starts[k] : starts[k] + sizes[k]], i)
            own = {key: value[lo:hi] for key, value in edges.items()}
            own["center"] = own["center"] - starts[k]
            own["neighbor"] = own["neighbor"] - starts[k]
            nodes = slice(starts[k], starts[k] + sizes[k])
            graphs.append(self._data(s, own, i, z[nodes], coords[k]))
        return graphs


def atomic_numbers(structure: Structure) -> np.ndarray:
    """Atomic numbers of the sites, int64 (N,); a disordered site's most abundant species."""
    if not structure.is_ordered:
        return site_species(structure)[0]
    return np.fromiter((sp.Z for sp in structure.species), dtype=np.int64, count=len(structure))


def neighbor_list(
    structure: Structure, cutoff: float, coords: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every pair within ``cutoff`` Å, periodic images included (self-images too), the atom
    itself excluded: the pairs of pymatgen's ``Structure.get_neighbor_list(r=cutoff,
    exclude_self=True)``, computed with vesin's cell list (several times faster).

    Returns:
        ``center`` (E,), ``neighbor`` (E,), integer image ``offset`` of the neighbour (E, 3)
        and ``distance`` in Å (E,), in no particular order. ``coords``: the Cartesian
        positions, if already at hand.
    """
    # pymatgen keeps pairs up to cutoff + 1e-8 and drops those closer than 1e-8 (the atom itself)
    search = NeighborList(cutoff=cutoff + _TOLERANCE, full_list=True)
    center, neighbor, offset, distance = search.compute(
        points=structure.cart_coords if coords is None else coords,
        box=structure.lattice.matrix,
        periodic=True,
        quantities="ijSd",
    )
    keep = distance > _TOLERANCE
    return (
        center[keep].astype(np.int64),
        neighbor[keep].astype(np.int64),
        offset[keep].astype(np.int64),
        distance[keep],
    )


_TOLERANCE = 1e-8


def _candidate_pairs(
    structure: Structure, config: GraphConfig, coords: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Enough pairs to pick every atom's ``max_neighbors`` nearest and the first one dropped.

    Searches first within a radius holding about 2.5 × (max_neighbors + 1) atoms at the
    crystal's density, far fewer pairs than the cutoff's. Where every atom has max_neighbors + 1
    pairs clearly inside that radius, the nearest ones (ties included) are all among them;
    otherwise the search is redone at the cutoff.
    """
    need = config.max_neighbors + 1
    radius = (3 * structure.volume / len(structure) * 2.5 * need / (4 * np.pi)) ** (1 / 3)
    if radius < config.cutoff:
        pairs = neighbor_list(structure, radius, coords)
        inside = np.bincount(pairs[0][pairs[3] < radius - 1e-4], minlength=len(structure))
        if inside.min() >= need:
            return pairs
    return neighbor_list(structure, config.cutoff, coords)


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
    rounded = np.round(distance, 5)
    if config.pad_like_original:
        # The original CGCNN: stable sort on the exact distance, ties left in search order.
        order = np.lexsort((distance, center))
    else:
        # Centre, then distance (rounded so float noise after a rotation cannot reorder equal
        # distances), then the neighbour's Z, the exact distance, and last the neighbour and its
        # image, so that the result does not depend on the search order.
        order = np.lexsort(
            (
                offset[:, 2],
                offset[:, 1],
                offset[:, 0],
                neighbor,
                distance,
                z[neighbor],
                rounded,
                center,
            )
        )
    center, neighbor, offset, distance, rounded = (
        center[order],
        neighbor[order],
        offset[order],
        distance[order],
        rounded[order],
    )
    counts = np.bincount(center, minlength=n_atoms)
    starts = np.cumsum(counts) - counts
    rank = np.arange(len(center)) - np.repeat(starts, counts)
    keep = rank < config.max_neighbors
    # a kept edge whose (rounded) distance equals that of the first dropped one: cut shell
    boundary = np.full(n_atoms, np.nan)
    first_dropped = rank == config.max_neighbors
    boundary[center[first_dropped]] = rounded[first_dropped]
    cut_shell = rounded == boundary[center]
    return {
        "center": center[keep].astype(np.int64),
        "neighbor": neighbor[keep].astype(np.int64),
        "offset": offset[keep].astype(np.int64),
        "distance": distance[keep].astype(np.float64),
        "cut_shell": cut_shell[keep],
    }


def site_species(
    structure: Structure, z: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Species of every site: the majority Z (N,), and Z and occupancy per species, each
    (N, :data:`MAX_SITE_SPECIES`) padded with 0, species in descending occupancy (ties: lower Z).
    ``z``: the atomic numbers of an ordered structure, if already at hand.

    Raises:
        GraphBuildError: a site holds more than :data:`MAX_SITE_SPECIES` species, or a species
            that is not an element (e.g. a dummy species).
    """
    n = len(structure)
    zs = np.zeros((n, MAX_SITE_SPECIES), dtype=np.int64)
    ws = np.zeros((n, MAX_SITE_SPECIES), dtype=np.float32)
    if structure.is_ordered:
        zs[:, 0] = atomic_numbers(structure) if z is None else z
        ws[:, 0] = 1.0
        return zs[:, 0].copy(), zs, ws
    for i, site in enumerate(structure):
        items = sorted(site.species.items(), key=lambda kv: (-kv[1], getattr(kv[0], "Z", 0)))
        if len(items) > MAX_SITE_SPECIES:
            raise GraphBuildError(
                f"site {i} holds {len(items)} species ({site.species_string}); at most "
                f"{MAX_SITE_SPECIES} per site are supported"
            )
        for k, (sp, occ) in enumerate(items):
            z = getattr(sp, "Z", None)
            if z is None:
                raise GraphBuildError(f"site {i} holds {sp}, which is not an element")
            zs[i, k], ws[i, k] = z, occ
    return zs[:, 0].copy(), zs, ws


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
    edges: dict[str, np.ndarray], counts: np.ndarray, config: GraphConfig
) -> dict[str, np.ndarray]:
    """Add the original CGCNN's fake neighbours: atom 0 at ``cutoff + 1`` Å, no image offset."""
    missing = np.clip(config.max_neighbors - counts, 0, None)
    if not missing.any():
        return edges
    pad_center = np.repeat(np.arange(len(counts)), missing)
    merged = {
        "center": np.concatenate([edges["center"], pad_center]),
        "neighbor": np.concatenate([edges["neighbor"], np.zeros_like(pad_center)]),
        "offset": np.concatenate([edges["offset"], np.zeros((len(pad_center), 3), np.int64)]),
        "distance": np.concatenate(
            [edges["distance"], np.full(len(pad_center), config.cutoff + 1.0)]
        ),
        "cut_shell": np.concatenate([edges["cut_shell"], np.zeros(len(pad_center), bool)]),
    }
    order = np.argsort(merged["center"], kind="stable")
    return {k: v[order] for k, v in merged.items()}
