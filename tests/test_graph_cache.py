"""The graph cache: cached graphs equal fresh ones, keys miss when they must, damaged files are
misses, the memory cache is bounded, and a second training run builds no graphs."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from engine.core.config import ALIGNNConfig, CGCNNConfig, GraphConfig, SplitConfig, TrainConfig
from engine.graphs import cache as gc
from engine.graphs.builder import GraphBuilder, IsolatedAtomWarning
from engine.graphs.linegraph import LineGraphData
from engine.io.datasets import load_dataset
from engine.models import build_inputs, build_model
from tests.conftest import distorted, nacl, srtio3


@pytest.fixture(autouse=True)
def _fresh_memory():
    gc.memory_cache.clear()
    yield
    gc.memory_cache.clear()


@pytest.fixture
def builds(monkeypatch):
    """Counts the structures whose graphs ``GraphBuilder.build_many`` builds."""
    counted = []
    original = GraphBuilder.build_many

    def counting(self, structures, ids=None):
        structures = list(structures)
        counted.extend(structures)
        return original(self, structures, ids)

    monkeypatch.setattr(GraphBuilder, "build_many", counting)
    return counted


def _structures() -> list[Structure]:
    disordered = srtio3()
    disordered.replace(0, {"Sr": 0.6, "La": 0.4})
    disordered.replace(2, {"O": 0.95})
    return [nacl(), srtio3(), distorted(), disordered]


def assert_same_graphs(a_list, b_list):
    assert len(a_list) == len(b_list)
    for a, b in zip(a_list, b_list):
        assert type(a) is type(b)
        assert sorted(a.keys()) == sorted(b.keys())
        assert a.num_nodes == b.num_nodes
        for key in a.keys():
            va, vb = a[key], b[key]
            if isinstance(va, torch.Tensor):
                assert va.dtype == vb.dtype and torch.equal(va, vb), key
            else:
                assert va == vb, key


def test_cached_graphs_equal_fresh_ones_from_memory_and_from_disk(builds):
    structures, ids = _structures(), ["a", "b", "c", "d"]
    builder = GraphBuilder()
    fresh = builder.build_many(structures, ids)
    builds.clear()
    first = gc.build_many_cached(builder, structures, ids)
    assert len(builds) == len(structures)
    assert_same_graphs(fresh, first)
    from_memory = gc.build_many_cached(builder, structures, ids)
    gc.memory_cache.clear()
    from_disk = gc.build_many_cached(builder, structures, ids)
    assert len(builds) == len(structures)  # built once
    assert_same_graphs(fresh, from_memory)
    assert_same_graphs(fresh, from_disk)
    # every call gets its own Data: attributes attached by one caller never reach another
    from_memory[0].y = torch.ones(1)
    assert "y" not in gc.build_many_cached(builder, structures, ids)[0].keys()


def test_alignn_inputs_from_cached_graphs_equal_fresh_ones():
    graph = GraphConfig()
    module = build_model(ALIGNNConfig(), graph)
    structures = _structures()
    fresh = build_inputs(module, GraphBuilder(graph), structures, use_cache=False)
    build_inputs(module, GraphBuilder(graph), structures)  # fills the caches
    from_memory = build_inputs(module, GraphBuilder(graph), structures)
    gc.memory_cache.clear()
    from_disk = build_inputs(module, GraphBuilder(graph), structures)
    assert isinstance(from_disk[0], LineGraphData)
    assert "lg_cos" in from_disk[0].keys() and "lg_edge_index" in from_disk[0].keys()
    assert_same_graphs(fresh, from_memory)
    assert_same_graphs(fresh, from_disk)


def test_another_graph_config_or_a_changed_structure_misses(builds):
    structures = _structures()
    gc.build_many_cached(GraphBuilder(), structures)
    builds.clear()
    gc.build_many_cached(GraphBuilder(cutoff=6.0), structures)
    assert len(builds) == len(structures)
    builds.clear()
    gc.build_many_cached(GraphBuilder(max_neighbors=8), structures[:1])
    assert len(builds) == 1

    moved, swapped, strained, occupancy = (s.copy() for s in structures[:3] + structures[3:])
    moved.translate_sites([1], [1e-9, 0, 0])
    swapped.replace(0, "K")
    strained.scale_lattice(strained.volume * 1.0000001)
    occupancy.replace(2, {"O": 0.9})
    builds.clear()
    gc.build_many_cached(GraphBuilder(), [moved, swapped, strained, occupancy])
    assert len(builds) == 4
    builds.clear()
    gc.build_many_cached(GraphBuilder(), structures)  # the originals are still cached
    assert builds == []


def test_overlapping_lists_share_graphs_in_memory(builds):
    structures = _structures()
    gc.build_many_cached(GraphBuilder(), structures[:3])
    builds.clear()
    graphs = gc.build_many_cached(GraphBuilder(), structures[1:])
    assert len(builds) == 1  # only the one not built before
    assert_same_graphs(graphs, GraphBuilder().build_many(structures[1:]))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other_keys"])
def test_a_damaged_file_is_a_miss_with_a_warning(builds, damage):
    structures = _structures()
    builder = GraphBuilder()
    gc.build_many_cached(builder, structures)
    files = list(gc.default_disk_cache().root.glob("*.pt"))
    assert len(files) == 1
    path = files[0]
    if damage == "garbage":
        path.write_bytes(b"not a torch file")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:  # a valid file that holds other structures
        pack = torch.load(path, weights_only=True)
        pack["keys"] = pack["keys"][::-1]
        torch.save(pack, path)
    gc.memory_cache.clear()
    builds.clear()
    with pytest.warns(gc.GraphCacheWarning, match="rebuilding"):
        graphs = gc.build_many_cached(builder, structures)
    assert len(builds) == len(structures)
    assert_same_graphs(graphs, builder.build_many(structures))
    gc.memory_cache.clear()
    builds.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error", gc.GraphCacheWarning)
        gc.build_many_cached(builder, structures)  # the rewritten file is good
    assert builds == []


def test_memory_cache_is_bounded_least_recently_used_first():
    one = {name: torch.zeros(100) for name in gc.FIELDS}  # ~4.5 kB each
    size = sum(t.element_size() * t.numel() for t in one.values()) + 512
    memory = gc.GraphMemoryCache(max_bytes=3 * size)
    for key in "abc":
        memory.put(key, one)
    assert memory.get("a") is not None  # a is now the most recently used
    memory.put("d", one)
    assert len(memory) == 3 and memory.nbytes <= memory.max_bytes
    assert memory.get("b") is None and memory.get("a") is not None
    memory.put("huge", {"z": torch.zeros(10**6)})  # larger than the bound: not kept
    assert memory.get("huge") is None and len(memory) == 3
    # a slice of a large tensor is stored as a copy, so it cannot keep the large one alive
    stored = memory.put("view", {"z": torch.zeros(10**6)[:10]})
    assert stored["z"].untyped_storage().nbytes() == 10 * 4


def test_disk_cache_evicts_the_oldest_files_beyond_its_cap(tmp_path):
    graphs = GraphBuilder().build_many(_structures())
    fields = [{name: g[name] for name in gc.FIELDS} for g in graphs]
    disk = gc.GraphDiskCache(tmp_path / "graphs", max_bytes=10**9)
    for k, key in enumerate(["old", "middle", "new"]):
        path = disk.save(key, [str(k)], fields[:1])
        os.utime(path, ns=(10**18 + k, 10**18 + k))
    disk.load("old", ["0"])  # a hit: now the most recent
    size = disk.path("old").stat().st_size
    disk.max_bytes = 2 * size + 1
    disk.evict()
    assert sorted(p.stem for p in disk.root.glob("*.pt")) == ["new", "old"]
    left = disk.root / ".killed.pt.abc.tmp"  # a writer killed mid-write long ago
    left.write_bytes(b"partial")
    os.utime(left, ns=(10**18, 10**18))
    disk.evict()
    assert not left.exists()


def test_keys_hold_the_graph_config_and_the_builder_source():
    s = nacl()
    key = gc.structure_key(s, gc.config_bytes(GraphBuilder()))
    assert key == gc.structure_key(nacl(), gc.config_bytes(GraphBuilder()))
    assert key != gc.structure_key(s, gc.config_bytes(GraphBuilder(gaussian_width=0.3)))
    assert gc.builder_stamp().encode() in gc.config_bytes(GraphBuilder())


def test_isolated_atoms_are_rebuilt_and_warned_about_every_time(builds):
    lonely = Structure(Lattice.cubic(30.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    structures = [nacl(), lonely]
    for expected in (structures, [lonely]):
        builds.clear()
        with pytest.warns(IsolatedAtomWarning):
            gc.build_many_cached(GraphBuilder(), structures)
        assert builds == expected
    gc.memory_cache.clear()
    builds.clear()
    with pytest.warns(IsolatedAtomWarning):
        gc.build_many_cached(GraphBuilder(), structures)  # from disk, the lonely one rebuilt
    assert builds == [lonely]


def test_opt_out_builds_every_time(builds, monkeypatch):
    structures = _structures()
    gc.build_many_cached(GraphBuilder(), structures)
    builds.clear()
    gc.build_many_cached(GraphBuilder(), structures, use_cache=False)
    assert len(builds) == len(structures)
    with gc.graph_cache_disabled():
        assert not gc.cache_enabled()
        build_inputs(build_model(CGCNNConfig(), GraphConfig()), GraphBuilder(), structures)
    assert len(builds) == 2 * len(structures)
    assert gc.cache_enabled()
    monkeypatch.setenv("CRYSTAL_SCREEN_GRAPH_CACHE", "0")
    gc.build_many_cached(GraphBuilder(), structures)
    assert len(builds) == 3 * len(structures)


def test_bench_times_real_graph_building():
    """``python -m engine bench`` builds graphs itself and predicts with the cache off."""
    import inspect

    from engine.apps import bench

    source = inspect.getsource(bench.run_benchmarks)
    assert "builder.build_many(structures)" in source
    assert "with graph_cache_disabled():" in source


def test_a_second_training_run_on_the_same_data_builds_no_graphs(shared_data, builds):
    from engine.training import train

    dataset = load_dataset(shared_data / "aflow_agl" / "demo.jsonl.gz", limit=40)
    kwargs = dict(
        model=CGCNNConfig(atom_fea_len=8, n_conv=1, h_fea_len=8),
        split=SplitConfig(seed=1),
        training=TrainConfig(epochs=1, batch_size=16),
    )
    first = train(dataset, "agl_thermal_expansion_300K", **kwargs)
    assert 0 < len(builds) <= len(dataset.items)
    builds.clear()
    second = train(dataset, "agl_thermal_expansion_300K", **kwargs)  # memory cache
    gc.memory_cache.clear()
    third = train(dataset, "agl_thermal_expansion_300K", **kwargs)  # disk cache (new process)
    assert builds == []
    np.testing.assert_array_equal(second.predictions["prediction"], first.predictions["prediction"])
    np.testing.assert_array_equal(third.predictions["prediction"], first.predictions["prediction"])
