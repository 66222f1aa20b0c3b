"""Dask screening, 1 → 2 workers: wall time end to end, structures/s and peak memory per worker.

    python benchmarks/dask_scaling.py --sizes 2000 10000 100000 --workers 1 2

Candidates are the aflow_agl structures repeated (with new ids) up to each size, written as
JSON lines under --work. Each run is ``screen_dask`` end to end: cluster start, workers loading
the model, prediction, ranking against YSZ (10.5e-6 1/K) and the Parquet + CSV outputs.
Results go to docs/results/dask_scaling.json and a section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import platform
import resource
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results" / "dask_scaling.json"
DOC = ROOT / "docs" / "benchmarks.md"
HEADING = "## Dask screening: 1 → 2 workers"


def make_candidates(source: Path, n: int, out: Path) -> Path:
    """``n`` records cycled from ``source``, each with a unique id (``<id>~<copy>``)."""
    if out.is_file():
        return out
    with gzip.open(source, "rt") as fh:
        records = [json.loads(line) for line in fh if line.strip()]
    tmp = out.with_suffix(".tmp")
    with gzip.open(tmp, "wt", compresslevel=1) as fh:
        for k, rec in enumerate(itertools.islice(itertools.cycle(records), n)):
            fh.write(
                json.dumps(
                    {
                        "id": f"{rec['auid']}~{k // len(records)}",
                        "lattice": rec["lattice"],
                        "species": rec["species"],
                        "frac_coords": rec["frac_coords"],
                    }
                )
                + "\n"
            )
    tmp.rename(out)
    return out


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(path: Path, workers: int, model: str, partition_size: int, work: Path) -> dict:
    from engine.apps.screening.dask import dask_client, screen_dask
    from engine.apps.screening.parquet import write_ranked

    out = work / f"ranked-{path.stem}-{workers}w.parquet"
    start = time.perf_counter()
    with dask_client(f"local:{workers}") as client:
        result, dask_run = screen_dask(
            client,
            str(path),
            "YSZ=10.5e-6",
            model,
            output=out,
            partition_size=partition_size,
            progress=False,
        )
        worker_peaks = sorted(client.run(_peak_rss_mb).values())
    write_ranked(result.table, out, out.with_suffix(".top.csv"), 100)
    seconds = time.perf_counter() - start
    n = len(result.table)
    return {
        "candidates": dask_run.n_read,
        "screened": n,
        "workers": workers,
        "partitions": dask_run.n_partitions,
        "failed_partitions": len(dask_run.failures),
        "seconds": round(seconds, 1),
        "structures_per_s": round(n / seconds, 1),
        "peak_worker_rss_mb": [round(p) for p in worker_peaks],
        "peak_driver_rss_mb": round(_peak_rss_mb()),
    }


def write_doc(rows: list[dict], meta: dict) -> None:
    lines = [
        HEADING,
        "",
        f"Command: `{meta['command']}` ({meta['date']}; raw: `docs/results/dask_scaling.json`).",
        "",
        f"- Model `{meta['model']}`, partitions of {meta['partition_size']} candidates, "
        "one single-threaded worker process per worker (`--dask local:N`); candidates are "
        "the aflow_agl structures repeated with new ids (JSON lines, read by the workers "
        "by line range). Times are end to end: cluster start, model loading on each "
        "worker, prediction, ranking against YSZ, Parquet and CSV outputs.",
        f"- Machine: {meta['cpus']} CPU cores, **shared with other jobs while this ran** "
        "(the load average is recorded per run), so absolute speeds are pessimistic and "
        "the 1 → 2 worker ratio is bounded by the 2 cores.",
        "",
        "| candidates | workers | partitions | wall (s) | structures/s | peak RSS per worker "
        "(MB) | driver peak so far (MB) | load avg (1 min) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['candidates']:,} | {r['workers']} | {r['partitions']} | "
            f"{r['seconds']:.0f} | {r['structures_per_s']:.0f} | "
            f"{', '.join(str(p) for p in r['peak_worker_rss_mb'])} | "
            f"{r['peak_driver_rss_mb']} | {r['load_avg']:.1f} |"
        )
    section = "\n".join(lines) + "\n"
    text = DOC.read_text(encoding="utf-8")
    if HEADING in text:
        head, _, rest = text.partition(HEADING)
        nxt = rest.find("\n## ")
        text = head + section + (rest[nxt + 1 :] if nxt >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOC.write_text(text, encoding="utf-8")


def main() -> None:
    from engine.core.config import data_dir

    # the candidates repeat aflow_agl: time building their graphs, not the graph cache
    os.environ.setdefault("CRYSTAL_SCREEN_GRAPH_CACHE", "0")

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000, 100000])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--model", default="cte-cgcnn-aflow")
    p.add_argument("--partition-size", type=int, default=1000)
    p.add_argument("--work", default="/tmp/crystal-screen-dask-bench")
    args = p.parse_args()
    root = data_dir()
    if root is None:
        raise SystemExit("error: the shared data directory is needed (set CRYSTAL_SCREEN_DATA)")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        path = make_candidates(
            root / "aflow_agl" / "structures.jsonl.gz", size, work / f"cands-{size}.jsonl.gz"
        )
        for workers in args.workers:
            row = {
                **run(path, workers, args.model, args.partition_size, work),
                "load_avg": os.getloadavg()[0],
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
            meta = {
                "command": "python benchmarks/dask_scaling.py "
                + " ".join(
                    [
                        f"--sizes {' '.join(map(str, args.sizes))}",
                        f"--workers {' '.join(map(str, args.workers))}",
                    ]
                ),
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "model": args.model,
                "partition_size": args.partition_size,
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
            }
            RESULTS.write_text(json.dumps({"meta": meta, "runs": rows}, indent=1) + "\n")
            write_doc(rows, meta)


if __name__ == "__main__":
    main()
