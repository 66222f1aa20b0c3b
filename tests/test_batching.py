"""Packed batches equal torch_geometric's collation, for plain graphs and line graphs."""

from __future__ import annotations

import torch
from torch_geometric.data import Batch

from engine.graphs.batching import PackedGraphs
from engine.graphs.builder import GraphBuilder
from engine.graphs.linegraph import attach_line_graph


def _graphs(crystals):
    builder = GraphBuilder(cutoff=5.0, max_neighbors=8)
    graphs = []
    for k, name in enumerate(["NaCl", "SrTiO3", "distorted"] * 2):
        graph = builder(crystals[name], structure_id=f"{name}-{k}")
        graph.y = torch.tensor([float(k)])
        graph.comp = torch.full((1, 4), float(k))
        graphs.append(graph)
    return graphs


def _assert_same(ours: Batch, reference: Batch):
    assert isinstance(ours, Batch) and type(reference).__mro__[2] in type(ours).__mro__
    assert set(ours.keys()) >= set(reference.keys()) - {"num_nodes"}
    for key in reference.keys():
        if isinstance(reference[key], torch.Tensor):
            assert torch.equal(ours[key], reference[key]), key
        else:
            assert ours[key] == reference[key], key
    assert ours.num_graphs == reference.num_graphs and ours.num_nodes == reference.num_nodes


def test_any_subset_equals_from_data_list(crystals):
    graphs = _graphs(crystals)
    packed = PackedGraphs(graphs)
    for index in ([0, 1, 2, 3, 4, 5], [4, 1], [5, 0, 3], [2]):
        reference = Batch.from_data_list([graphs[i] for i in index])
        _assert_same(packed.batch(torch.tensor(index)), reference)


def test_line_graph_indices_are_offset_like_torch_geometric(crystals):
    graphs = _graphs(crystals)
    for graph in graphs:
        attach_line_graph(graph, cutoff=5.0)
    packed = PackedGraphs(graphs)
    index = [3, 0, 5]
    _assert_same(
        packed.batch(torch.tensor(index)), Batch.from_data_list([graphs[i] for i in index])
    )


def test_batches_cover_every_graph_once_in_a_seeded_order(crystals):
    packed = PackedGraphs(_graphs(crystals))
    seen = [
        b.y for b in packed.batches(4, shuffle=True, generator=torch.Generator().manual_seed(0))
    ]
    assert [len(y) for y in seen] == [4, 2]
    assert sorted(torch.cat(seen).tolist()) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    again = packed.batches(4, shuffle=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.cat([b.y for b in again]), torch.cat(seen))


def test_a_packed_batch_splits_back_into_its_graphs(crystals):
    graphs = _graphs(crystals)
    index = [4, 1, 3]
    parts = PackedGraphs(graphs).batch(torch.tensor(index)).to_data_list()
    assert len(parts) == len(index)
    for part, i in zip(parts, index):
        assert part.num_nodes == graphs[i].num_nodes
        for key in set(graphs[i].keys()) - {"num_nodes"}:
            if isinstance(graphs[i][key], torch.Tensor):
                assert torch.equal(part[key], graphs[i][key]), key
            else:
                assert part[key] == graphs[i][key], key
