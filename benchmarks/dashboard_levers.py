"""Two levers of the dashboard's speed, measured side by side in one process:
``python benchmarks/dashboard_levers.py``.

* torch threads: one structure through the default model, and 300 aflow structures through
  ``cte-cgcnn-log-huber-aflow-ens5``, with 1 and 2 threads, alternating;
* t-SNE: openTSNE (what ``engine.reduce`` uses) against scikit-learn's, on 841 × 64 clustered
  vectors (the size of the default model's validation + test map).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _seconds(action, repeats: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        action()
    return (time.perf_counter() - start) / repeats


def threads() -> dict:
    import torch

    from engine import load_dataset, load_model, read_structures, resolve_source

    default = load_model("cte-alignn-cgcnn-log-huber-aflow-ens8").pin()
    one = default.prepare([next(iter(read_structures("assets/examples"))).structure])
    ens5 = load_model("cte-cgcnn-log-huber-aflow-ens5").pin()
    data = load_dataset(resolve_source("aflow_agl/structures.jsonl.gz"), limit=300)
    many = ens5.prepare([it.structure for it in data.items])
    default.run(one), ens5.run(many)  # warm
    out: dict[str, list[float]] = {}
    for n in (2, 1, 2, 1):
        torch.set_num_threads(n)
        out.setdefault(f"one structure, ens8, {n} thread(s), s", []).append(
            round(_seconds(lambda: default.run(one), repeats=10), 4)
        )
        out.setdefault(f"300 structures, ens5, {n} thread(s), s", []).append(
            round(_seconds(lambda: ens5.run(many)), 3)
        )
    return out


def tsne() -> dict:
    from openTSNE import TSNE as OpenTSNE
    from sklearn.manifold import TSNE

    rng = np.random.default_rng(0)
    centres = rng.normal(scale=3.0, size=(12, 64))
    x = centres[np.arange(841) % 12] + rng.normal(size=(841, 64))
    out: dict[str, list[float]] = {"scikit-learn, s": [], "openTSNE, s": []}
    sk = TSNE(2, perplexity=30, init="pca", random_state=0, learning_rate="auto")
    ot = OpenTSNE(perplexity=30, initialization="pca", random_state=0, n_jobs=1)
    for _ in range(2):
        out["scikit-learn, s"].append(round(_seconds(lambda: sk.fit_transform(x)), 2))
        out["openTSNE, s"].append(round(_seconds(lambda: ot.fit(x)), 2))
    return out


if __name__ == "__main__":
    result = {
        "command": "python benchmarks/dashboard_levers.py",
        "threads": threads(),
        "tsne_841x64": tsne(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
    }
    out = Path(__file__).resolve().parent.parent / "docs" / "results" / "dashboard_levers.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
