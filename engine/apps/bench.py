"""Speed benchmarks: graph building, training and prediction throughput (structures/s).

Both graph builders are timed in the same run on the same structures, so their ratio is
meaningful even on a noisy machine. Graphs are always built here, never taken from the graph
cache (:mod:`engine.graphs.cache`). ``python -m engine bench`` prints the results as JSON.
"""

from __future__ import annotations

import gc
import os
import platform
import time
import warnings

import numpy as np
import torch

from engine.core.config import CGCNNConfig, GraphConfig, TrainConfig, data_dir
from engine.core.device import resolve_device
from engine.graphs.builder import GraphBuilder
from engine.graphs.cache import graph_cache_disabled
from engine.training.callbacks import Callback


def original_cgcnn_features(structure, config: GraphConfig):
    """The original CGCNN loader's route: per-site ``get_all_neighbors``, sort, pad to 12.

    Mirrors ``CIFData.__getitem__`` of github.com/txie-93/cgcnn, for timing only.

    Returns:
        Neighbour indices (N, M) and Gaussian-expanded distances (N, M, n_gaussians).
    """
    from cgcnn2.data import GaussianDistance

    m, r = config.max_neighbors, config.cutoff
    all_nbrs = structure.get_all_neighbors(r, include_index=True)
    all_nbrs = [sorted(nbrs, key=lambda x: x[1]) for nbrs in all_nbrs]
    idx, dist = [], []
    for nbr in all_nbrs:
        pad = max(0, m - len(nbr))
        idx.append([x[2] for x in nbr[:m]] + [0] * pad)
        dist.append([x[1] for x in nbr[:m]] + [r + 1.0] * pad)
    gaussians = GaussianDistance(dmin=config.gaussian_start, dmax=r, step=config.gaussian_step)
    return (
        torch.as_tensor(np.array(idx)),
        torch.as_tensor(gaussians.expand(np.array(dist)), dtype=torch.float32),
    )


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else float("inf")


def original_cgcnn_training(
    structures, targets, *, split: int, epochs: int, batch_size: int, lr: float = 3e-3
) -> list[float]:
    """Train the original CGCNN through the ``cgcnn2`` package, as its ``cgcnn-tr`` does.

    Its data pipeline (``CIFData``: CIF files, per-site ``get_all_neighbors``, LRU-cached
    items, ``collate_pool``) and its dense model (``CrystalGraphConvNet``: atom_fea_len 64,
    3 convolutions, h_fea_len 128), Adam on the MSE of the standardised target, a validation
    pass per epoch. The first ``split`` structures train, the rest validate.

    Returns:
        Seconds per epoch; the first epoch includes reading the CIFs and building the features.
    """
    import shutil
    import tempfile
    from pathlib import Path

    import cgcnn2
    from cgcnn2.data import CIFData, collate_pool
    from cgcnn2.model import CrystalGraphConvNet
    from cgcnn2.utils import Normalizer as OriginalNormalizer
    from torch.utils.data import DataLoader, Subset

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = []
        for k, (structure, y) in enumerate(zip(structures, targets)):
            structure.to(filename=str(root / f"{k}.cif"))
            rows.append(f"{k},{y}")
        (root / "id_prop.csv").write_text("\n".join(rows) + "\n")
        shutil.copy(Path(cgcnn2.__file__).parent / "asset" / "atom_init.json", root)
        dataset = CIFData(str(root), max_num_nbr=12, radius=8, dmin=0, step=0.2)
        dataset._raw_load_item = dataset._load_item  # the get_all_neighbors route
        dataset._configure_cache()
        generator = torch.Generator().manual_seed(0)
        train_loader = DataLoader(
            Subset(dataset, range(split)),
            batch_size=batch_size,
            shuffle=True,
            collate_fn=collate_pool,
            generator=generator,
        )
        val_loader = DataLoader(
            Subset(dataset, range(split, len(dataset))),
            batch_size=batch_size,
            collate_fn=collate_pool,
        )
        torch.manual_seed(0)
        model = CrystalGraphConvNet(92, 41, atom_fea_len=64, n_conv=3, h_fea_len=128, n_h=1)
        normalizer = OriginalNormalizer(torch.tensor(targets[:split], dtype=torch.float32))
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        seconds = []
        for _ in range(epochs):
            start = time.perf_counter()
            model.train()
            for (atom_fea, nbr_fea, nbr_idx, crystal_idx), target, _ in train_loader:
                out, _ = model(atom_fea, nbr_fea, nbr_idx, crystal_idx)
                loss = torch.nn.functional.mse_loss(out, normalizer.norm(target))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            model.eval()
            with torch.no_grad():
                for (atom_fea, nbr_fea, nbr_idx, crystal_idx), _target, _ in val_loader:
                    model(atom_fea, nbr_fea, nbr_idx, crystal_idx)
            seconds.append(time.perf_counter() - start)
    return seconds


def run_benchmarks(
    data=None,
    *,
    limit: int | None = None,
    epochs: int = 3,
    batch_size: int = 64,
    threads: int | None = None,
) -> dict:
    """Time graph building, training and prediction: ours and the original CGCNN's, same run.

    Both sides use the same structures, targets, threads, batch size, model size (CGCNN
    defaults) and 90/10 split. Training speed counts epochs 2 onwards (graphs ready on both
    sides: ours are built before training, the original's are cached by ``CIFData`` during
    epoch 1); ``end_to_end_seconds`` adds the graph building to it.

    Args:
        data: a structures ``.jsonl.gz``; defaults to ``aflow_agl/structures.jsonl.gz`` in the
            data directory.
        limit: use only the first ``limit`` structures.
        epochs: training epochs per side (at least 2).
        batch_size: structures per batch, both sides.
        threads: torch intra-op threads for both sides (default: torch's choice). One thread
            keeps the ratio meaningful when other processes load the cores.
    """
    from engine.io.datasets import load_dataset
    from engine.models import build_model
    from engine.store.card import ModelCard, Normalizer
    from engine.store.directory import LoadedModel
    from engine.training.loop import Trainer

    if threads:
        torch.set_num_threads(threads)
    if epochs < 2:
        raise ValueError("epochs must be at least 2 (epoch 1 is the original's warm-up)")
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
    targets = np.random.default_rng(0).normal(size=n)  # throughput does not depend on labels

    # Each side starts from a collected heap, so that neither pays for a full garbage
    # collection of what the data loading (or the other side) left: ~0.1 s here, a large
    # share of our time and none of the work compared.
    gc.collect()
    start = time.perf_counter()
    graphs = builder.build_many(structures)
    ours = time.perf_counter() - start
    gc.collect()
    start = time.perf_counter()
    for s in structures:
        original_cgcnn_features(s, config)
    original = time.perf_counter() - start

    split = max(1, int(0.9 * n))
    original_epochs = original_cgcnn_training(
        structures, targets, split=split, epochs=epochs, batch_size=batch_size
    )

    model_cfg = CGCNNConfig()
    module = build_model(model_cfg, config)
    for g, y in zip(graphs, targets):
        g.y = torch.tensor([y], dtype=torch.float32)
    history = []

    class _Timer(Callback):
        def on_epoch_end(self, trainer, record):
            history.append(record["seconds"])

    train_cfg = TrainConfig(
        epochs=epochs, batch_size=batch_size, early_stopping_patience=None, device="auto"
    )
    Trainer(module, train_cfg, target_std=1.0, callbacks=[_Timer()]).fit(
        graphs[:split], graphs[split:] or graphs[:1]
    )
    card = ModelCard(
        name="bench",
        target="y",
        model=model_cfg.model_dump(),
        graph=config,
        normalizer=Normalizer(mean=0.0, std=1.0),
    )
    loaded = LoadedModel(card=card, module=module)
    gc.collect()
    start = time.perf_counter()
    with graph_cache_disabled():  # prediction including real graph building, not the cache
        loaded.predict_structures(structures, batch_size=256)
    predict_seconds = time.perf_counter() - start

    ours_rate = _rate(split * (epochs - 1), sum(history[1:]))
    original_rate = _rate(split * (epochs - 1), sum(original_epochs[1:]))
    graph_speedup = round(original / ours, 1)
    return {
        "dataset": str(data),
        "structures": n,
        "mean_sites": round(float(np.mean([len(s) for s in structures])), 2),
        "graph_config": config.model_dump(),
        "graph_build": {
            "ours_per_s": _rate(n, ours),
            "original_get_all_neighbors_per_s": _rate(n, original),
            "speedup": graph_speedup,
        },
        "train": {
            "epochs": epochs,
            "batch_size": batch_size,
            "train_structures": split,
            "ours_per_epoch_seconds": [round(s, 3) for s in history],
            "original_per_epoch_seconds": [round(s, 3) for s in original_epochs],
            "ours_end_to_end_seconds": round(ours + sum(history), 2),
            "original_end_to_end_seconds": round(sum(original_epochs), 2),
        },
        "graph_speedup_vs_original": graph_speedup,
        "train_structures_per_s": ours_rate,
        "original_train_structures_per_s": original_rate,
        "train_speedup_vs_original": round(ours_rate / original_rate, 2),
        "predict_structures_per_s": _rate(n, predict_seconds),
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": str(resolve_device("auto")),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "load_average_1min": round(os.getloadavg()[0], 2),
        },
    }
