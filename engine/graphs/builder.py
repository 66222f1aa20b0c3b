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

from engine.core.config import GraphConfig
from engine.graphs.neighbors import candidate_pairs, nearest_edges, pairs_within

#: Most species one site may hold (e.g. a high-entropy cation site of five elements).
MAX_SITE_SPECIES = 6

#: Structures whose edges are selected together: the arrays of ~2,000 atoms stay in the CPU's
#: cache (10 % faster than 1,000 structures at once; 64 to 256 are equally good).
CHUNK = 128

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

    Built on pymatgen's compiled neighbour search (``find_points_in_spheres``, the search
    behind ``Structure.get_neighbor_list``; :mod:`engine.graphs.neighbors`), not the per-site
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
            (neighbours at the same distance were dropped, so which ones were kept is a
            convention). Distance-only models need not care; angle-based ones must
            (:mod:`engine.graphs.linegraph`).

    Edges of each centre atom are sorted by distance; distances equal to 1e-5 Å form a shell.
    Where the cap cuts a shell, its members are taken by atomic number, then distance to
    1e-8 Å, then index and image (:func:`engine.graphs.neighbors.nearest_edges`): float noise
    decides nothing, so a rotated crystal gives the same graph, and only which of several equal
    neighbours of one element are kept can follow the order of atoms in the file
    (``pad_like_original`` keeps the original code's tie order instead).

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
        z = site_species(structure)[0]
        cells = structure.lattice.matrix[None]
        return self._nearest([structure.cart_coords], cells, z, np.zeros(1, np.int64))

    def _nearest(
        self, coords: Sequence[np.ndarray], cells: np.ndarray, z: np.ndarray, starts: np.ndarray
    ) -> dict[str, np.ndarray]:
        """:func:`nearest_edges` of several structures at once, atoms numbered across them.

        Args:
            coords: Cartesian positions of each structure in Å, (N_k, 3).
            cells: lattice vectors as rows in Å, (S, 3, 3).
            z: atomic numbers of all atoms, (N,).
            starts: index of each structure's first atom, (S,).
        """
        c = self.config
        if c.pad_like_original:
            # every pair within the cutoff in pymatgen's search order (that of
            # Structure.get_neighbor_list): the original's tie order at the cap depends on it
            pairs = pairs_within(coords, cells, starts, c.cutoff)
        else:
            pairs = candidate_pairs(coords, cells, starts, c)
        return nearest_edges(*pairs, z, len(z), c)

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

        The nearest neighbours of :data:`CHUNK` structures at a time are selected in one
        vectorised pass: much faster than one call per structure, with the same graphs.

        Raises:
            GraphBuildError: as :meth:`__call__`, or a site the graph cannot hold
                (:func:`site_species`).
        """
        structures = list(structures)
        ids = list(ids) if ids is not None else [None] * len(structures)
        graphs: list[Data] = []
        for a in range(0, len(structures), CHUNK):
            graphs += self._build_chunk(structures[a : a + CHUNK], ids[a : a + CHUNK])
        return graphs

    def _build_chunk(self, structures: list[Structure], ids: list[str | None]) -> list[Data]:
        """:meth:`build_many` of a few structures, all at once."""
        c = self.config
        species = [site_species(s) for s in structures]
        sizes = np.array([len(z) for z, _, _ in species])
        starts = np.cumsum(sizes) - sizes
        n = int(sizes.sum())
        coords = [s.cart_coords for s in structures]
        cells = np.stack([s.lattice.matrix for s in structures])
        z = np.concatenate([zs for zs, _, _ in species])
        edges = self._nearest(coords, cells, z, starts)
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
