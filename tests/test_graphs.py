"""Graph construction: distances, counts against pymatgen, invariances, isolated-atom policy."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Species, Structure

from engine.core.config import GraphConfig
from engine.graphs.builder import (
    GraphBuilder,
    GraphBuildError,
    IsolatedAtomWarning,
    gaussian_centers,
    gaussian_expand,
    is_ordered,
    site_species,
)
from engine.graphs.neighbors import GRID_SHIFT, nearest_edges, neighbor_list
from tests.conftest import nacl


def _per_atom_distances(graph) -> list[np.ndarray]:
    """Sorted neighbour distances (Å) of each atom, as float64 arrays."""
    centre = graph.edge_index[1].numpy()
    dist = graph.edge_dist.numpy().astype(np.float64)
    return [np.sort(dist[centre == i]) for i in range(graph.num_nodes)]


def test_nacl_first_shell_six_neighbours_at_2_82():
    graph = GraphBuilder()(nacl())
    assert graph.num_nodes == 2
    for dists in _per_atom_distances(graph):
        assert len(dists) == 12
        assert np.allclose(dists[:6], 2.82, atol=1e-3)
        assert dists[6] > 3.9  # the second shell (Na–Na, Cl–Cl) is at a/√2 = 3.99 Å


def test_graph_fields_and_shapes():
    config = GraphConfig()
    graph = GraphBuilder(config)(nacl())
    e = graph.edge_index.shape[1]
    assert sorted(graph.z.tolist()) == [11, 17]
    assert "edge_attr" not in graph  # the models expand edge_dist themselves
    assert gaussian_expand(graph.edge_dist, config).shape == (e, 41) and config.n_gaussians == 41
    assert graph.edge_offset.shape == (e, 3) and graph.edge_offset.dtype == torch.long
    assert graph.cell.shape == (1, 3, 3)
    # distance = |pos_j + offset·cell - pos_i| for every edge
    j, i = graph.edge_index
    vec = graph.pos[j] + graph.edge_offset.float() @ graph.cell[0] - graph.pos[i]
    assert torch.allclose(vec.norm(dim=1), graph.edge_dist, atol=1e-4)


@pytest.mark.parametrize("name", ["NaCl", "SrTiO3", "distorted"])
def test_edge_counts_equal_pymatgen(crystals, name):
    structure = crystals[name]
    cutoff = 5.0
    graph = GraphBuilder(cutoff=cutoff, max_neighbors=64)(structure)
    reference = structure.get_all_neighbors(cutoff)
    assert graph.edge_index.shape[1] == sum(len(n) for n in reference)
    for i, nbrs in enumerate(reference):
        expected = np.sort([n.nn_distance for n in nbrs])
        assert np.allclose(_per_atom_distances(graph)[i], expected, atol=1e-4)


@pytest.mark.parametrize("name", ["NaCl", "SrTiO3", "distorted"])
def test_supercell_gives_every_atom_the_same_neighbour_distances(crystals, name):
    structure = crystals[name]
    builder = GraphBuilder()
    base = _per_atom_distances(builder(structure))
    supercell = structure.copy()
    supercell.make_supercell([2, 2, 1])
    # pymatgen keeps each original site's images together: site k of the supercell is site k // 4
    for k, dists in enumerate(_per_atom_distances(builder(supercell))):
        assert np.allclose(dists, base[k // 4], atol=1e-4)


def test_one_atom_cell_has_edges_to_its_own_images():
    structure = Structure(Lattice.cubic(2.9), ["Fe"], [[0, 0, 0]])
    graph = GraphBuilder()(structure)
    assert graph.edge_index.shape[1] == 12
    assert (graph.edge_index == 0).all()
    assert (graph.edge_offset.abs().sum(dim=1) > 0).all()


def test_isolated_atom_policy_names_the_atoms():
    far = Structure(Lattice.cubic(12.0), ["Li", "F"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(GraphBuildError, match=r"Li0.*F1|2 atom"):
        GraphBuilder(cutoff=4.0, isolated_atoms="error")(far, structure_id="far-LiF")
    with pytest.warns(IsolatedAtomWarning, match="far-LiF"):
        graph = GraphBuilder(cutoff=4.0, isolated_atoms="warn")(far, structure_id="far-LiF")
    assert graph.edge_index.shape[1] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GraphBuilder(cutoff=4.0, isolated_atoms="ignore")(far)


def test_pad_like_original_fills_to_max_neighbours_with_atom_zero():
    structure = Structure(Lattice.cubic(3.0), ["Po"], [[0, 0, 0]])  # 6 neighbours at 3 Å
    graph = GraphBuilder(cutoff=3.5, pad_like_original=True)(structure)
    assert graph.edge_index.shape[1] == 12
    padded = graph.edge_dist > 3.5
    assert int(padded.sum()) == 6
    assert torch.allclose(graph.edge_dist[padded], torch.tensor(4.5))
    assert (graph.edge_index[:, padded] == 0).all()


def test_gaussian_expansion_peaks_at_its_centre():
    config = GraphConfig()
    u = gaussian_expand(torch.tensor([2.0]), config)[0]
    assert u.shape == (41,)
    assert int(u.argmax()) == 10 and torch.isclose(u[10], torch.tensor(1.0))
    assert torch.isclose(u[11], torch.exp(torch.tensor(-1.0)))  # (0.2/0.2)² = 1


def test_gaussian_expansion_equals_the_formula_except_below_1e_38():
    """u_k(r) is exp(-(r - μ_k)² / σ²) exactly, except that values below about 1.6e-38
    (subnormal ones are ~50× slower to compute on a CPU) become 0."""
    config = GraphConfig()
    distances = torch.linspace(0.0, 12.0, 5001)
    exact = torch.exp(-((distances[:, None] - gaussian_centers(config)) ** 2) / 0.2**2)
    ours = gaussian_expand(distances, config)
    assert torch.equal(ours[exact >= 1.7e-38], exact[exact >= 1.7e-38])
    assert ((ours == exact) | ((ours == 0) & (exact < 1.7e-38))).all()
    assert (ours[exact < torch.finfo(torch.float32).tiny] == 0).all()


def test_bad_graph_config_is_refused():
    with pytest.raises(ValueError, match="gaussian_stop"):
        GraphConfig(gaussian_start=5, gaussian_stop=2)
    with pytest.raises(ValueError):
        GraphBuilder(cutoff=-1)


def _pairs(center, neighbor, offset, distance):
    """Pairs as sorted integer rows (centre, neighbour, image) and their distances."""
    rows = np.column_stack([center, neighbor, np.rint(offset)]).astype(np.int64)
    order = np.lexsort(rows.T[::-1])
    return rows[order], np.asarray(distance)[order]


@pytest.mark.parametrize(
    "structure",
    [
        Structure(Lattice.cubic(2.5), ["Fe"], [[0, 0, 0]]),  # one atom: only self-images
        Structure(Lattice.hexagonal(2.5, 4.0), ["Mg"], [[1 / 3, 2 / 3, 0.25]]),  # d = cutoff
        Structure(
            Lattice.from_parameters(3, 4, 9, 80, 100, 115),
            ["Na", "Cl"],
            [[0, 0, 0], [0.3, 0.5, 0.6]],
        ),  # small triclinic cell
        Structure(
            Lattice.from_parameters(5.1, 6.2, 7.3, 90, 90, 90),
            ["La", "Co", "O", "O", "O"],
            np.random.default_rng(0).random((5, 3)),
        ),
    ],
    ids=["one-atom", "hexagonal", "triclinic", "random"],
)
@pytest.mark.parametrize("cutoff", [5.0, 8.0])
def test_neighbor_list_matches_pymatgen_exactly(structure, cutoff):
    ours = _pairs(*neighbor_list(structure, cutoff))
    reference = _pairs(*structure.get_neighbor_list(r=cutoff, exclude_self=True))
    assert np.array_equal(ours[0], reference[0])
    assert np.allclose(ours[1], reference[1], atol=1e-10)


def test_neighbor_list_keeps_pymatgens_search_order(crystals):
    """``pad_like_original`` relies on it: the original's ties at the cap keep this order."""
    structure = crystals["distorted"]
    ours = neighbor_list(structure, 8.0)
    reference = structure.get_neighbor_list(r=8.0, exclude_self=True)
    for a, b in zip(ours, reference):
        assert np.array_equal(a, b)


def _mixed_structures(crystals) -> list[Structure]:
    """The example crystals, random cells, and a slab with a lone atom 8 Å above it whose
    first two searches (5.5 and 6.9 Å) fall short, so that it is searched a third time."""
    rng = np.random.default_rng(1)
    slab = Structure(
        Lattice.tetragonal(4.0, 20.0),
        ["Sr", "Ti", "O", "O", "O", "O", "Sr", "Ti", "Li"],
        [[0, 0, 0], [0.5, 0.5, 0.05], [0.5, 0, 0], [0, 0.5, 0], [0.5, 0, 0.1], [0, 0.5, 0.1]]
        + [[0, 0, 0.15], [0.5, 0.5, 0.2], [0.25, 0.25, 0.6]],
    )
    return [
        *crystals.values(),
        Structure(Lattice.cubic(7.0), ["Li", "F", "O"], rng.random((3, 3))),
        slab,
        Structure(Lattice.cubic(4.0), ["Sr", "Ti", "O", "O", "O"] * 8, rng.random((40, 3))),
    ]


@pytest.mark.parametrize("chunk", [2, 128])
@pytest.mark.parametrize("pad_like_original", [False, True])
def test_build_many_equals_one_by_one(crystals, monkeypatch, chunk, pad_like_original):
    """Structures built together (in chunks of 2, or all in one) give each one's own graph."""
    monkeypatch.setattr("engine.graphs.builder.CHUNK", chunk)
    structures = _mixed_structures(crystals)
    builder = GraphBuilder(pad_like_original=pad_like_original)
    graphs = builder.build_many(structures)
    assert len(graphs) == len(structures)
    for many, one in zip(graphs, map(builder, structures), strict=True):
        assert many.keys() == one.keys() and many.num_nodes == one.num_nodes
        for key in set(one.keys()) - {"num_nodes"}:
            assert torch.equal(many[key], one[key]), key


@pytest.mark.parametrize("max_neighbors", [4, 12, 30])
def test_nearest_neighbours_from_a_short_search_equal_those_of_the_full_cutoff(
    crystals, max_neighbors
):
    """The builder's first, shorter search radius never changes which edges are kept."""
    from engine.graphs.builder import atomic_numbers

    config = GraphConfig(max_neighbors=max_neighbors)
    for structure in _mixed_structures(crystals):
        full = nearest_edges(
            *neighbor_list(structure, config.cutoff),
            atomic_numbers(structure),
            len(structure),
            config,
        )
        ours = GraphBuilder(config).neighbors(structure)
        for key in full:
            assert np.array_equal(ours[key], full[key]), key


def _lexsorted_nearest_edges(center, neighbor, offset, distance, z, n_atoms, max_neighbors):
    """:func:`nearest_edges` as a plain lexsort over its eight keys."""
    rounded = np.round(distance * 1e5 + GRID_SHIFT)
    fine = np.round(distance * 1e8 + GRID_SHIFT)
    keys = (offset[:, 2], offset[:, 1], offset[:, 0], neighbor, fine, z[neighbor], rounded, center)
    order = np.lexsort(keys)
    center, neighbor, offset, distance, rounded = (
        a[order] for a in (center, neighbor, offset, distance, rounded)
    )
    counts = np.bincount(center, minlength=n_atoms)
    rank = np.arange(len(center)) - np.repeat(np.cumsum(counts) - counts, counts)
    boundary = np.full(n_atoms, np.nan)
    boundary[center[rank == max_neighbors]] = rounded[rank == max_neighbors]
    keep = rank < max_neighbors
    return {
        "center": center[keep],
        "neighbor": neighbor[keep],
        "offset": offset[keep],
        "distance": distance[keep],
        "cut_shell": (rounded == boundary[center])[keep],
    }


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("max_neighbors", [1, 3, 12])
def test_packed_sort_keys_give_the_order_of_the_eight_key_lexsort(seed, max_neighbors):
    """Random pairs (each centre, neighbour and image once) with many ties: equal distances,
    distances 1e-7 Å apart (equal once rounded), equal Z, several images of one neighbour; with
    seed 3, image offsets of ±10⁶ cells, too wide to pack into one int64 key."""
    rng = np.random.default_rng(seed)
    e, n_atoms = 4000, 40
    images = np.array([-1, 0, 2] if seed < 3 else [-(10**6), 0, 10**6])
    pair = rng.choice(n_atoms * n_atoms * 27, e, replace=False)
    center, neighbor = pair // (27 * n_atoms), pair // 27 % n_atoms
    offset = images[np.column_stack([pair // 9 % 3, pair // 3 % 3, pair % 3])]
    distance = rng.choice([2.0, 2.0 + 1e-7, 2.5, 2.50001, 3.0], e) + rng.choice([0, 1e-12], e)
    z = rng.choice([8, 26, 38], n_atoms)
    config = GraphConfig(max_neighbors=max_neighbors)
    ours = nearest_edges(center, neighbor, offset, distance, z, n_atoms, config)
    reference = _lexsorted_nearest_edges(
        center, neighbor, offset, distance, z, n_atoms, max_neighbors
    )
    for key in reference:
        assert np.array_equal(ours[key], reference[key]), key
    assert ours["cut_shell"].any()  # ties at the cap were cut


def test_a_shell_on_a_rounding_boundary_stays_one_shell():
    """CsCl-type RbAu from AFLOW, a = 4.156715 Å: 8 Au at 3.60 Å, then 6 Rb images at exactly
    a, of which the 12-neighbour cap keeps 4. On an unshifted 1e-5 Å grid a·1e5 ends in .5 and
    float noise split that shell, so some of its kept edges were not marked as cut (ALIGNN then
    formed angles from noise-chosen bonds). All 4 are marked, for either atom and after a
    rotation, and the rotated crystal keeps the same edges."""
    from scipy.spatial.transform import Rotation

    cubic = Structure(Lattice.cubic(4.156715), ["Rb", "Au"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    matrix = (
        cubic.lattice.matrix @ Rotation.from_euler("xyz", [17, 41, 73], degrees=True).as_matrix().T
    )
    rotated = Structure(Lattice(matrix), cubic.species, cubic.frac_coords)
    graphs = [GraphBuilder()(s) for s in (cubic, rotated)]
    for graph in graphs:
        second = torch.isclose(graph.edge_dist, torch.tensor(4.156715), atol=1e-5)
        assert second.sum() == 8 and torch.equal(graph.edge_cut_shell, second)
    for key in ("edge_index", "edge_offset", "edge_cut_shell"):
        assert torch.equal(graphs[0][key], graphs[1][key]), key


def _site(species):
    return {"species": species, "xyz": [0, 0, 0]}


@pytest.mark.parametrize(
    "species",
    [
        ["Na", "Cl"],
        [Species("Fe", 2), Species("O", -2)],  # oxidation states
        [{"La": 0.6, "Sr": 0.4}, "O"],  # partial occupancy, summing to 1
        ["Sr", {"O": 0.95}],  # a vacancy
        [{"Fe": 1.0}, {"O": 1.0}],  # occupancy 1 written as a dict: ordered
        [{"Ba": 0.25, "Sr": 0.25, "La": 0.25, "Ca": 0.25}, "O"],
    ],
)
def test_ordered_check_and_site_species_agree_with_pymatgen(species):
    structure = Structure(Lattice.cubic(4.0), species, [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert is_ordered([site.species for site in structure]) == structure.is_ordered
    z, species_z, species_w = site_species(structure)
    for i, site in enumerate(structure):
        stored = {int(a): float(w) for a, w in zip(species_z[i], species_w[i]) if w > 0}
        assert stored == pytest.approx({sp.Z: occ for sp, occ in site.species.items()})
        assert z[i] == species_z[i, 0]
    if structure.is_ordered:
        assert z.tolist() == [sp.Z for sp in structure.species]
