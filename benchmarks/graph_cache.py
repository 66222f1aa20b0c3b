"""Graph cache: seconds to prepare model inputs cold, warm from memory, and warm from disk.

    python benchmarks/graph_cache.py --limit 1000 --repeats 3

``build_inputs`` (CGCNN) on the first ``--limit`` aflow_agl structures, in a temporary
``CRYSTAL_SCREEN_HOME`` so the cache starts empty:

* ``uncached``: ``use_cache=False``, the builder alone;
* ``cold``: empty caches (keys hashed, graphs built, stored in memory and written to disk);
* ``warm_memory``: the same call again in the same process;
* ``warm_disk``: a fresh process (empty memory cache) reading the file the cold run wrote.

Each figure is the median of ``--repeats`` runs (cold: caches emptied before each). Results go
to docs/results/graph_cache.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results" / "graph_cache.json"


def _inputs(limit: int):
    from engine.core.config import CGCNNConfig, GraphConfig, data_dir
    from engine.graphs.builder import GraphBuilder
    from engine.io.datasets import load_dataset
    from engine.models import build_inputs, build_model

    root = data_dir()
    if root is None:
        raise SystemExit("no data directory: set CRYSTAL_SCREEN_DATA")
    dataset = load_dataset(root / "aflow_agl" / "structures.jsonl.gz", limit=limit)
    structures = [it.structure for it in dataset.items]
    ids = [it.id for it in dataset.items]
    module = build_model(CGCNNConfig(), GraphConfig())

    def run(**kw) -> float:
        start = time.perf_counter()
        build_inputs(module, GraphBuilder(GraphConfig()), structures, ids, **kw)
        return time.perf_counter() - start

    return structures, run


def phase(name: str, limit: int, repeats: int) -> dict[str, list[float]]:
    """Time one phase in this process: ``first`` (uncached, cold, warm_memory) or ``disk``."""
    from engine.graphs import cache

    warnings.simplefilter("ignore")
    structures, run = _inputs(limit)
    times: dict[str, list[float]] = {"n": [len(structures)]}
    if name == "disk":
        times["warm_disk"] = []
        for _ in range(repeats):
            cache.memory_cache.clear()
            times["warm_disk"].append(run())
        return times
    times["uncached"] = [run(use_cache=False) for _ in range(repeats)]
    times["cold"] = []
    for _ in range(repeats):
        cache.memory_cache.clear()
        shutil.rmtree(cache.default_disk_cache().root, ignore_errors=True)
        times["cold"].append(run())
    times["warm_memory"] = [run() for _ in range(repeats)]
    from engine.graphs.builder import GraphBuilder

    head = cache.config_bytes(GraphBuilder())
    start = time.perf_counter()
    for s in structures:
        cache.structure_key(s, head)
    times["keys"] = [time.perf_counter() - start]
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--phase", choices=["first", "disk"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.limit, args.repeats)))
        return

    home = tempfile.mkdtemp(prefix="graph-cache-bench-")
    env = {**os.environ, "CRYSTAL_SCREEN_HOME": home, "CRYSTAL_SCREEN_GRAPH_CACHE": "1"}
    times: dict[str, list[float]] = {}
    try:
        for name in ("first", "disk"):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--phase",
                    name,
                    "--limit",
                    str(args.limit),
                    "--repeats",
                    str(args.repeats),
                ],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            times.update(json.loads(out.strip().splitlines()[-1]))
        disk_mb = sum(p.stat().st_size for p in Path(home).rglob("*.pt")) / 2**20
    finally:
        shutil.rmtree(home, ignore_errors=True)

    n = int(times.pop("n")[0])
    median = {k: round(statistics.median(v), 3) for k, v in times.items()}
    results = {
        "structures": n,
        "seconds": {k: median[k] for k in ("uncached", "cold", "warm_memory", "warm_disk")},
        "structures_per_s": {
            k: round(n / median[k], 1) for k in ("uncached", "cold", "warm_memory", "warm_disk")
        },
        "key_hashing_us_per_structure": round(1e6 * median["keys"] / n, 1),
        "speedup_vs_uncached": {
            k: round(median["uncached"] / median[k], 1) for k in ("warm_memory", "warm_disk")
        },
        "disk_file_mb": round(disk_mb, 1),
        "runs": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
        "command": "python " + " ".join(["benchmarks/graph_cache.py", *sys.argv[1:]]),
        "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
