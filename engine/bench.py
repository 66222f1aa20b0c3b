"""Speed benchmarks: graph building, training and prediction throughput (structures/s).

Both graph builders are timed in the same run on the same structures, so their ratio is
meaningful even on a noisy machine. ``python -m engine bench`` prints the results as JSON.
"""

from __future__ import annotations

import os
import platform
import time
import warnings

import numpy as np
import torch

from engine.config import CGCNNConfig, GraphConfig, TrainConfig, data_dir
from engine.device import resolve_device
from engine.graphs import GraphBuilder, gaussian_expand
from engine.training.callbacks import Callback


def original_cgcnn_features(structure, config: GraphConfig):
    """The original CGCNN loader's route: per-site ``get_all_neighbors``, sort, pad to 12.

    Mirrors ``CIFData.__getitem__`` of github.com/txie-93/cgcnn, for timing only.

    Returns:
        Neighbour indices (N, M) and Gaussian-expanded distances (N, M, n_gaussians).
    """
    m, r = config.max_neighbors, config.cutoff
    all_nbrs = structure.get_all_neighbors(r, include_index=True)
    all_nbrs = [sorted(nbrs, key=lambda x: x[1]) for nbrs in all_nbrs]
    idx, dist = [], []
    for nbr in all_nbrs:
        pad = max(0, m - len(nbr))
        idx.append([x[2] for x in nbr[:m]] + [0] * pad)
        dist.append([x[1] for x in nbr[:m]] + [r + 1.0] * pad)
    dist_t = torch.tensor(np.array(dist), dtype=torch.float32)
    return torch.tensor(idx), gaussian_expand(dist_t.view(-1), config).view(*dist_t.shape, -1)


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else float("inf")


def run_benchmarks(data=None, *, limit: int | None = None, epochs: int = 3) -> dict:
    """Time graph building (ours vs the original route), training and prediction.

    Args:
        data: a structures ``.jsonl.gz``; defaults to ``aflow_agl/structures.jsonl.gz`` in the
            data directory.
        limit: use only the first ``limit`` structures.
        epochs: training epochs to time (the first is included: no warm-up is excluded).
    """
    from engine.datasets import load_dataset
    from engine.models import build_model
    from engine.store import LoadedModel, ModelCard, Normalizer
    from engine.training.loop import Trainer

    if data is None:
        root = data_dir()
        if root is None:
            raise ValueError("no data directory: set CRYSTAL_SCREEN_DATA or pass --data")
        data = root / "aflow_agl" / "structures.jsonl.gz"
    dataset = load_dataset(data, limit=limit)
    structures = [it.structure for it in dataset.items]
    n = len(structures)
    config = GraphConfig()
    builder = GraphBuilder(config)
    warnings.simplefilter("ignore")

    start = time.perf_counter()
    graphs = builder.build_many(structures)
    ours = time.perf_counter() - start
    start = time.perf_counter()
    for s in structures:
        original_cgcnn_features(s, config)
    original = time.perf_counter() - start

    model_cfg = CGCNNConfig()
    module = build_model(model_cfg, config)
    for g in graphs:
        g.y = torch.zeros(1)
    split = max(1, int(0.9 * n))
    history = []

    class _Timer(Callback):
        def on_epoch_end(self, trainer, record):
            history.append(record["seconds"])

    train_cfg = TrainConfig(epochs=epochs, batch_size=64, early_stopping_patience=None,
                            device="auto")
    Trainer(module, train_cfg, target_std=1.0, callbacks=[_Timer()]).fit(
        graphs[:split], graphs[split:] or graphs[:1]
    )
    card = ModelCard(name="bench", target="y", model=model_cfg.model_dump(), graph=config,
                     normalizer=Normalizer(mean=0.0, std=1.0))
    loaded = LoadedModel(card=card, module=module)
    start = time.perf_counter()
    loaded.predict_structures(structures, batch_size=256)
    predict_seconds = time.perf_counter() - start

    return {
        "dataset": str(data),
        "structures": n,
        "mean_sites": round(float(np.mean([len(s) for s in structures])), 2),
        "graph_config": config.model_dump(),
        "graph_build": {
            "ours_get_neighbor_list_per_s": _rate(n, ours),
            "original_get_all_neighbors_per_s": _rate(n, original),
            "speedup": round(original / ours, 1),
        },
        "train": {
            "epochs": epochs,
            "train_structures": split,
            "per_epoch_seconds": [round(s, 3) for s in history],
            "structures_per_s": _rate(split * len(history), sum(history)),
        },
        "predict_including_graphs_per_s": _rate(n, predict_seconds),
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": str(resolve_device("auto")),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
    }
