"""Cost of the ALIGNN-style family against CGCNN: ``python benchmarks/alignn_cost.py``
→ docs/results/alignn_cost.json.

Both models train on the same structures (the first ``--limit`` rows of
``aflow_agl/demo.jsonl.gz``, target ``agl_thermal_expansion_300K``, the same random split and
seed, the families' default configs and the default graph) in the same run. Each model runs in a
fresh subprocess, so its peak resident memory (``ru_maxrss``) is its own; the resident memory
just before training is recorded too, so the growth caused by training can be read off.

Reported per model: seconds to build the inputs (graph, plus the line graph for alignn), time per
training epoch (the mean over epochs 2…N; epoch 1 includes warm-up; an epoch is the optimisation
pass plus the validation pass, as in ``history.csv``) as wall-clock and as process CPU seconds
(with one thread, CPU time is the less load-sensitive figure on a shared machine), peak RSS,
and the graph sizes. The figure
is the ratio alignn / cgcnn. ``alignn-angle3`` is the same ALIGNN with ``angle_cutoff=3`` Å (only
bonds up to 3 Å form angles: about the first coordination shell of the oxides), the cheap setting.

Run it on a quiet machine; ``--threads`` (default 1) fixes torch's thread count, since on two
shared cores two threads can wait on each other for milliseconds per op and swamp the figure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "docs" / "results" / "alignn_cost.json"
TARGET = "agl_thermal_expansion_300K"
MODELS = ("cgcnn", "alignn", "alignn-angle3")


def _config(name: str):
    from engine.core.config import ALIGNNConfig, CGCNNConfig

    return {
        "cgcnn": CGCNNConfig(),
        "alignn": ALIGNNConfig(),
        "alignn-angle3": ALIGNNConfig(angle_cutoff=3.0),
    }[name]


def _rss_mib() -> float:
    """Current resident memory of this process, MiB (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker(name: str, limit: int, epochs: int, batch_size: int, threads: int) -> dict:
    """Train one model in this process and measure it."""
    import numpy as np
    import torch

    from engine.core.config import GraphConfig, SplitConfig, TrainConfig, data_dir
    from engine.graphs.builder import GraphBuilder
    from engine.io.datasets import load_dataset
    from engine.models import build_inputs, build_model
    from engine.training import train
    from engine.training.callbacks import Callback

    class CPUClock(Callback):
        """Process CPU seconds at the start and at the end of every epoch."""

        def __init__(self):
            self.marks: list[float] = []

        def on_train_start(self, trainer):
            self.marks = [time.process_time()]

        def on_epoch_end(self, trainer, record):
            self.marks.append(time.process_time())

    torch.set_num_threads(threads)
    dataset = load_dataset(data_dir() / "aflow_agl" / "demo.jsonl.gz", limit=limit)
    config, graph = _config(name), GraphConfig()
    structures = [item.structure for item in dataset.items]
    module = build_model(config, graph)
    start = time.perf_counter()
    inputs = build_inputs(module, GraphBuilder(graph), structures, use_cache=False)  # time building
    prepare_s = time.perf_counter() - start
    sizes = {
        "atoms_per_structure": float(np.mean([d.num_nodes for d in inputs])),
        "edges_per_structure": float(np.mean([d.edge_index.shape[1] for d in inputs])),
    }
    if hasattr(inputs[0], "lg_cos"):
        sizes["angles_per_structure"] = float(np.mean([d.lg_cos.numel() for d in inputs]))
    del inputs
    rss_before = _rss_mib()
    clock = CPUClock()
    result = train(
        dataset,
        TARGET,
        model=config,
        graph=graph,
        training=TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            device="cpu",
            seed=0,
            num_threads=threads,
            early_stopping_patience=None,
        ),
        split=SplitConfig(kind="random", seed=0),
        callbacks=[clock],
    )
    seconds = result.history["seconds"].tolist()
    cpu = np.diff(clock.marks).tolist()
    return {
        "model": config.model_dump(),
        "parameters": sum(p.numel() for p in result.model.module.parameters()),
        "structures": len(structures),
        "train_structures": result.model.card.dataset.n_train,
        **sizes,
        "prepare_seconds": round(prepare_s, 3),
        "epoch_seconds": [round(s, 3) for s in seconds],
        "seconds_per_epoch": round(float(np.mean(seconds[1:] or seconds)), 3),
        "epoch_cpu_seconds": [round(s, 3) for s in cpu],
        "cpu_seconds_per_epoch": round(float(np.mean(cpu[1:] or cpu)), 3),
        "rss_before_training_mib": round(rss_before, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "val_mae_after_epochs": result.metrics["val"]["mae"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=500, help="structures (first rows of demo)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--worker", choices=MODELS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(
            json.dumps(worker(args.worker, args.limit, args.epochs, args.batch_size, args.threads))
        )
        return

    import torch

    results = {
        "dataset": "aflow_agl/demo.jsonl.gz",
        "target": TARGET,
        "limit": args.limit,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "torch_threads": args.threads,
        "load_average_before": os.getloadavg()[0],
        "models": {},
    }
    for name in args.models:
        command = [
            sys.executable,
            __file__,
            "--worker",
            name,
            "--limit",
            str(args.limit),
            "--epochs",
            str(args.epochs),
            "--batch-size",
            str(args.batch_size),
            "--threads",
            str(args.threads),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        results["models"][name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(name, json.dumps(results["models"][name]), file=sys.stderr)
    results["load_average_after"] = os.getloadavg()[0]
    base = results["models"].get("cgcnn")
    if base:
        results["ratio_to_cgcnn"] = {
            name: {
                "seconds_per_epoch": round(m["seconds_per_epoch"] / base["seconds_per_epoch"], 2),
                "cpu_seconds_per_epoch": round(
                    m["cpu_seconds_per_epoch"] / base["cpu_seconds_per_epoch"], 2
                ),
                "peak_rss": round(m["peak_rss_mib"] / base["peak_rss_mib"], 2),
                "training_memory_growth": round(
                    (m["peak_rss_mib"] - m["rss_before_training_mib"])
                    / max(base["peak_rss_mib"] - base["rss_before_training_mib"], 1e-9),
                    2,
                ),
                "prepare_seconds": round(m["prepare_seconds"] / base["prepare_seconds"], 2),
            }
            for name, m in results["models"].items()
            if name != "cgcnn"
        }
    results["machine"] = {
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
    }
    results["command"] = "python " + " ".join(["benchmarks/alignn_cost.py", *sys.argv[1:]])
    results["measured"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
