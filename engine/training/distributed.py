"""Data-parallel training over several processes (GPUs or machines) with PyTorch DDP.

Launch with ``torchrun``; every process runs the same ``python -m engine train ...`` command, and
:func:`process_group` joins the group torchrun describes in the environment (``WORLD_SIZE``,
``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). The :class:`~engine.training.loop.Trainer`
turns data-parallel whenever a process group of two or more processes is initialised:

* **devices**: rank r uses ``cuda:LOCAL_RANK`` with the nccl backend when CUDA is available (and
  ``--device`` is not ``cpu``), else the CPU with the gloo backend;
* **batches**: every rank draws the same global batches as a one-process run with the same
  ``batch_size`` and seed, and trains on its shard of each (graphs r, r + W, r + 2W, … of a batch
  of W processes); each rank's loss is weighted by W × (its graphs / the batch's graphs), so
  DDP's gradient average is the gradient of the global batch's mean loss (for ``multitask``
  with missing labels only nearly: its per-task means are taken per shard);
* **batch norm**: on CUDA the batch-norm layers become :class:`torch.nn.SyncBatchNorm`
  (statistics over the global batch). Torch has no SyncBatchNorm on the CPU (neither the
  module nor its kernels), so with gloo each rank normalises with its shard's statistics, and
  the running statistics are rank 0's (DDP broadcasts rank 0's buffers);
* **bookkeeping**: the training loss and metrics of an epoch are gathered from every rank,
  every rank evaluates the validation split with rank 0's weights and buffers, and rank 0's
  stop decision is everyone's, so all ranks keep identical records and stop together. Only
  rank 0 runs the caller's callbacks and the progress bar and writes the model directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch_geometric.data import Batch, Data


def active() -> bool:
    """Whether this process is one of two or more in an initialised process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank in the process group (0 when there is none)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def rank_device(requested: str = "auto") -> torch.device:
    """This rank's device: ``cuda:LOCAL_RANK`` when CUDA is available and ``requested`` is not
    ``cpu``, else the CPU."""
    if requested != "cpu" and torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


@contextmanager
def process_group(device: str = "auto") -> Iterator[int]:
    """Join the process group torchrun set up in the environment for the block; yields the rank.

    Backend nccl when :func:`rank_device` is a GPU (made the current device), else gloo. Without
    torchrun (``WORLD_SIZE`` unset or 1), or with a group already initialised, does nothing.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        yield rank()
        return
    dev = rank_device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    try:
        yield dist.get_rank()
    finally:
        dist.destroy_process_group()


def data_parallel(model: nn.Module, device: torch.device) -> DistributedDataParallel:
    """``model`` (already on ``device``) wrapped in DDP, which starts every rank from rank 0's
    weights and averages gradients in ``backward``. On CUDA its batch-norm layers are replaced,
    in place, by SyncBatchNorm (same parameters, buffers and state-dict keys).

    ``static_graph``: the set of parameters that get no gradient (e.g. ALIGNN's last edge norms)
    is the same at every step, so DDP needs no search for unused parameters.
    """
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[device], static_graph=True)
    return DistributedDataParallel(model, static_graph=True)


class ShardLoader:
    """This rank's shards of the training batches of an epoch, one :class:`Batch` per step.

    The global batches are drawn like the one-process :class:`~engine.training.loop.Trainer`'s
    (:class:`engine.graphs.batching.GraphLoader`: one seeded permutation per epoch), so every rank, and a
    one-process run, sees the same batches in the same order. Rank r takes graphs r, r + W, … of each. A
    batch is left out on every rank when some shard has fewer than 2 atoms (per-rank batch norm
    needs two values per channel; only a final batch of fewer than 2W graphs can hit this).

    Each yielded batch carries ``loss_weight`` = W × (shard graphs) / (batch graphs), the factor
    of its mean loss that makes DDP's average over W ranks the global batch's mean.
    """

    def __init__(self, graphs: Sequence[Data], batch_size: int, *, seed: int):
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        if batch_size < self.world:
            raise ValueError(
                f"batch size {batch_size} is smaller than the {self.world} "
                "processes; each needs at least one graph of every batch"
            )
        self.graphs, self.batch_size = list(graphs), batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[Batch]:
        # the order of engine.graphs.batching.GraphLoader (the one-process Trainer's) with this seed
        order = torch.randperm(len(self.graphs), generator=self.generator).tolist()
        for start in range(0, len(order), self.batch_size):
            graphs = [self.graphs[i] for i in order[start : start + self.batch_size]]
            shards = [graphs[r :: self.world] for r in range(self.world)]
            if min(sum(g.num_nodes for g in shard) for shard in shards) < 2:
                continue
            batch = Batch.from_data_list(shards[self.rank])
            batch.loss_weight = self.world * batch.num_graphs / len(graphs)
            yield batch


def gather_epoch(
    total: float, count: int, ys: list[torch.Tensor], preds: list[torch.Tensor]
) -> tuple[float, int, list, list]:
    """An epoch's training bookkeeping summed and concatenated over all ranks (rank order), on
    every rank: ``total`` (sum of the recorded loss × graphs), ``count`` (graphs), and the
    targets and predictions seen (CPU tensors, first dimension = graphs)."""
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, (total, count, ys, preds))
    return (
        sum(p[0] for p in parts),
        sum(p[1] for p in parts),
        [t for p in parts for t in p[2]],
        [t for p in parts for t in p[3]],
    )


def sync_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (batch-norm running statistics) to every rank, in place, so all
    ranks evaluate the same model."""
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)


def from_rank0(value):
    """Rank 0's ``value`` (any picklable object) on every rank."""
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
