"""Resumable training: one checkpoint file per run, rewritten atomically after every epoch.

The file (``torch.save`` of a dict, read back with ``torch.load(..., weights_only=True)``) holds

* ``model``, ``optimizer``, ``scheduler``: their state dicts (``scheduler`` None without one);
* ``epoch``: the last completed epoch (1-based); ``done``: nothing is left to train (the last
  epoch ran, or a callback such as early stopping ended the run; a user's cancel is not done);
* ``stop_reason``: the trainer's, or None;
* ``callbacks``: each callback's :meth:`~engine.training.callbacks.Callback.state_dict`, keyed
  ``ClassName:k`` (the k-th callback of that class);
* ``rng``: Python, NumPy, torch (CPU, and CUDA when initialised) and the shuffling loader's
  generator states;
* ``fingerprint``: digests of the training configuration (device and thread count excepted;
  fields at their defaults left out, so a field added later does not invalidate a checkpoint),
  the model's parameter names and shapes, the training and validation inputs, and the caller's
  ``key`` (e.g. the dataset hash, query and split of :func:`engine.training.run.train`).

Resuming restores all of these, so an interrupted run continued from its checkpoint gives the same
history and weights as one uninterrupted run on the same device. A checkpoint whose fingerprint
differs from the run's is refused (:class:`CheckpointMismatch`).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel
from torch import nn
from torch_geometric.data import Data

from engine.core.config import TrainConfig
from engine.io.output import atomic_write

#: TrainConfig fields that do not change what is computed (a run may resume on another device).
_UNFINGERPRINTED = {"device", "num_threads"}


class CheckpointMismatch(ValueError):
    """The checkpoint was written by a run with another configuration, model or data."""


@dataclass(frozen=True)
class Checkpointing:
    """Where a :class:`~engine.training.loop.Trainer` keeps its checkpoint, and whether it resumes.

    Attributes:
        path: the checkpoint file (its folder must exist); written after every completed epoch.
        resume: continue from ``path`` when it exists (False: start afresh and overwrite it).
        key: text describing the run beyond the trainer's own view (dataset hash, query, split,
            model and graph configs); part of the fingerprint.
    """

    path: Path
    resume: bool = True
    key: str = ""


def _plain(value: object) -> object:
    """A config as JSON without the fields at their defaults (so a field added later with a
    default does not invalidate a checkpoint); anything else by its text."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_defaults=True)
    return str(value)


def run_key(*parts: object) -> str:
    """SHA-256 of ``parts`` (configs, text, numbers, lists): a :attr:`Checkpointing.key`."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=_plain).encode()).hexdigest()


def graphs_digest(graphs: Sequence[Data]) -> str:
    """SHA-256 of the inputs: every attribute of every graph (tensor bytes, dtypes, shapes; other
    values by their text), in order."""
    h = hashlib.sha256()
    h.update(str(len(graphs)).encode())
    for g in graphs:
        for key, value in sorted(g.items(), key=lambda kv: kv[0]):
            h.update(key.encode())
            if isinstance(value, torch.Tensor):
                array = value.detach().cpu().contiguous().numpy()
                h.update(f"{array.dtype}{array.shape}".encode())
                h.update(array.data)
            else:
                h.update(repr(value).encode())
    return h.hexdigest()


def fingerprint(
    config: TrainConfig,
    model: nn.Module,
    train_graphs: Sequence[Data],
    val_graphs: Sequence[Data],
    key: str = "",
) -> dict[str, str]:
    """Digests of what a resumed run must share with the one that wrote the checkpoint:
    ``config``, ``model`` (class, parameter and buffer names and shapes), ``data`` (training and
    validation inputs) and the caller's ``key``."""
    shapes = [(name, list(t.shape)) for name, t in model.state_dict().items()]
    return {
        "config": run_key(
            config.model_dump(mode="json", exclude=_UNFINGERPRINTED, exclude_defaults=True)
        ),
        "model": run_key(type(model).__qualname__, shapes),
        "data": run_key(graphs_digest(train_graphs), graphs_digest(val_graphs)),
        "key": run_key(key),
    }


def rng_state(generator: torch.Generator | None) -> dict:
    """The random states a run draws from: Python, NumPy, torch (and CUDA), and ``generator``."""
    version, internal, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": [torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
        "generator": generator.get_state() if generator is not None else None,
    }


def restore_rng(state: dict, generator: torch.Generator | None) -> None:
    """Put back the states of :func:`rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and state["generator"] is not None:
        generator.set_state(state["generator"])


def callback_keys(callbacks: Sequence) -> list[str]:
    """``ClassName:k`` of each callback: the k-th (from 0) of its class in the list."""
    seen: dict[str, int] = {}
    keys = []
    for cb in callbacks:
        name = type(cb).__name__
        keys.append(f"{name}:{seen.get(name, 0)}")
        seen[name] = seen.get(name, 0) + 1
    return keys


def save_checkpoint(path: Path, payload: dict) -> None:
    """Write ``payload`` to ``path`` atomically (a reader or a crash never leaves half a file)."""
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: Path, expected: dict[str, str]) -> dict:
    """The checkpoint at ``path``; raises :class:`CheckpointMismatch` when its fingerprint is not
    ``expected`` (naming the parts that differ)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    saved = payload.get("fingerprint", {})
    differ = sorted(k for k in expected if saved.get(k) != expected[k])
    if differ:
        raise CheckpointMismatch(
            f"checkpoint {path} was written by a run with a different {', '.join(differ)}; "
            "resume with the same settings and data, or give another checkpoint path (or "
            "resume=False) to start afresh"
        )
    return payload
