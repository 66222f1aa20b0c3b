"""Fast mini-batches of graphs: concatenate once, then slice with a few index operations.

torch_geometric's ``DataLoader`` collates every batch from the per-graph ``Data`` objects, a
Python loop over graphs and attributes each time. :class:`PackedGraphs` collates the whole
list once (with torch_geometric's own rules, so any family's inputs work: edge indices, line
graphs, per-graph rows such as ``comp`` or ``y``) and then cuts any subset out of the big
tensors, re-offsetting the index attributes, in vectorised torch code.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch_geometric.data import Batch, Data


def _segments(starts: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Concatenated ranges ``starts[k] .. starts[k] + counts[k]``, as one index tensor."""
    total = int(counts.sum())
    first = torch.cumsum(counts, 0) - counts
    return torch.arange(total) + torch.repeat_interleave(starts - first, counts, output_size=total)


class PackedGraphs:
    """A list of ``Data`` collated once; :meth:`batch` gives the ``Batch`` of any subset.

    ``packed.batch(index)`` equals ``Batch.from_data_list([graphs[i] for i in index])`` in every
    attribute (the graphs' order follows ``index``).

    Example:
        >>> packed = PackedGraphs(graphs)
        >>> for batch in packed.batches(64, shuffle=True, generator=g): ...
    """

    def __init__(self, graphs: Sequence[Data]):
        graphs = list(graphs)
        if not graphs:
            raise ValueError("no graphs to pack")
        big = Batch.from_data_list(graphs)
        self.n = len(graphs)
        self._batch_class = type(big)  # e.g. a LineGraphData batch, which models check for
        self._tensors: dict[str, tuple[torch.Tensor, int, torch.Tensor, torch.Tensor | None]] = {}
        self._lists: dict[str, list] = {}
        for key, slices in big._slice_dict.items():
            value = big[key]
            if not isinstance(value, torch.Tensor):
                self._lists[key] = list(value)
                continue
            dim = big.__cat_dim__(key, value)
            incs = torch.as_tensor([int(g.__inc__(key, g[key])) for g in graphs], dtype=value.dtype)
            # undo torch_geometric's cumulative increments: store each graph's own values
            if bool(incs.any()):
                counts = slices[1:] - slices[:-1]
                shift = torch.repeat_interleave(torch.cumsum(incs, 0) - incs, counts)
                value = value - _along(shift, value.dim(), dim)
            self._tensors[key] = (value, dim, slices, incs if bool(incs.any()) else None)
        self._nodes = torch.as_tensor([g.num_nodes for g in graphs], dtype=torch.long)

    def __len__(self) -> int:
        return self.n

    def batch(self, index: torch.Tensor) -> Batch:
        """The ``Batch`` of the graphs at ``index`` (long tensor), in that order."""
        index = torch.as_tensor(index, dtype=torch.long)
        out = self._batch_class()
        # torch_geometric's bookkeeping, so that ``to_data_list()`` works on the batch too
        slice_dict: dict[str, torch.Tensor] = {}
        inc_dict: dict[str, torch.Tensor | None] = {}
        for key, (value, dim, slices, incs) in self._tensors.items():
            starts = slices[index]
            counts = slices[index + 1] - starts
            part = value.index_select(dim, _segments(starts, counts))
            offsets = torch.zeros(len(index), dtype=value.dtype)
            if incs is not None:
                own = incs[index]
                offsets = torch.cumsum(own, 0) - own
                part = part + _along(torch.repeat_interleave(offsets, counts), part.dim(), dim)
            out[key] = part
            slice_dict[key] = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
            inc_dict[key] = offsets
        for key, values in self._lists.items():
            out[key] = [values[i] for i in index.tolist()]
            slice_dict[key], inc_dict[key] = torch.arange(len(index) + 1), None
        out._slice_dict, out._inc_dict = slice_dict, inc_dict
        nodes = self._nodes[index]
        out.batch = torch.repeat_interleave(torch.arange(len(index)), nodes)
        out.ptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(nodes, 0)])
        out.num_nodes = int(out.ptr[-1])
        out._num_graphs = len(index)
        return out

    def batches(
        self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[Batch]:
        """Consecutive batches of ``batch_size`` graphs (the last may be smaller), in a random
        order drawn from ``generator`` when ``shuffle``."""
        order = torch.randperm(self.n, generator=generator) if shuffle else torch.arange(self.n)
        for start in range(0, self.n, batch_size):
            yield self.batch(order[start : start + batch_size])


def _along(values: torch.Tensor, ndim: int, dim: int) -> torch.Tensor:
    """``values`` (L,) shaped to broadcast along dimension ``dim`` of an ``ndim`` tensor."""
    shape = [1] * ndim
    shape[dim] = -1
    return values.view(shape)


class GraphLoader:
    """Re-iterable mini-batches of packed graphs: a drop-in for torch_geometric's
    ``DataLoader(graphs, batch_size, shuffle, generator)``, collating once instead of per batch."""

    def __init__(
        self,
        graphs: Sequence[Data],
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
    ):
        self.packed = PackedGraphs(graphs) if len(graphs) else None
        self.batch_size, self.shuffle, self.generator = batch_size, shuffle, generator

    def __len__(self) -> int:
        n = len(self.packed) if self.packed else 0
        return -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        if self.packed is None:
            return iter(())
        return self.packed.batches(self.batch_size, shuffle=self.shuffle, generator=self.generator)
