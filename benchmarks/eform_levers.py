"""Formation-energy levers (issue 16): the loss, and ensembles of training seeds.

    python benchmarks/eform_long.py --epochs 10 --patience 100 --threads 1 \\
        --loss LOSS --seed S --out RUNS/LOSS-sS --name eform-LOSS-sS
    python benchmarks/eform_levers.py RUNS

Each run is the shipped ``eform-cgcnn-mp`` setup (CGCNN defaults, ``e_form > -5``,
formula-grouped 80/10/10 split, seed 0) on a short cosine schedule of its own. This collects
the runs' ``summary.json`` into ``docs/results/eform_levers.json`` and prints a table: each
loss (mean ± standard deviation over seeds) and, for each loss with several seeds, the ensemble
(mean of the members' predictions). Test is never used to choose.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "docs" / "results" / "eform_levers.json"


def collect(runs: Path) -> dict[str, list[dict]]:
    """Finished runs by loss: ``{loss: [{seed, epochs, best_epoch, seconds_per_epoch, val,
    test, folder}]}``, seeds ascending."""
    out: dict[str, list[dict]] = {}
    for path in sorted(runs.glob("*-s*/summary.json")):
        loss, seed = path.parent.name.rsplit("-s", 1)
        s = json.loads(path.read_text())
        out.setdefault(loss, []).append(
            {
                "seed": int(seed),
                "epochs": s["epochs_run"],
                "best_epoch": s["best_epoch"],
                "seconds_per_epoch": round(s["seconds_per_epoch"], 1),
                **{p: {k: s["metrics"][p][k] for k in ("n", "mae", "r")} for p in ("val", "test")},
                "folder": str(path.parent),
            }
        )
    return {k: sorted(v, key=lambda r: r["seed"]) for k, v in out.items()}


def ensemble(records: list[dict]) -> dict:
    """Val/test MAE and R of the mean of the members' predictions."""
    from ablation import member_mean

    from engine.uq.metrics import regression_metrics

    merged = member_mean([Path(r["folder"]) / "model" / "predictions.csv" for r in records])
    out = {}
    for part in ("val", "test"):
        rows = merged[merged["split"] == part]
        m = regression_metrics(rows["target"].to_numpy(), rows["prediction"].to_numpy())
        out[part] = {k: m[k] for k in ("n", "mae", "r")}
    return out


def main() -> None:
    runs = Path(sys.argv[1])
    levers = collect(runs)
    data = {"runs": str(runs), "levers": levers, "ensembles": {}}
    lines = [
        "| loss | seeds | epochs | val MAE (eV/atom) | val R | test MAE (eV/atom) | test R | s/epoch |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def pm(values: list[float]) -> str:
        v = np.array(values)
        return f"{v.mean():.4f}" + (f" ± {v.std(ddof=1):.4f}" if len(v) > 1 else "")

    for loss, rs in levers.items():
        lines.append(
            f"| {loss} | {', '.join(str(r['seed']) for r in rs)} | {rs[0]['epochs']} | "
            f"{pm([r['val']['mae'] for r in rs])} | {pm([r['val']['r'] for r in rs])} | "
            f"{pm([r['test']['mae'] for r in rs])} | {pm([r['test']['r'] for r in rs])} | "
            f"{np.mean([r['seconds_per_epoch'] for r in rs]):.0f} |"
        )
    for loss, rs in levers.items():
        if len(rs) > 1:
            e = data["ensembles"][f"{loss}, ensemble of {len(rs)}"] = ensemble(rs)
            lines.append(
                f"| {loss}, ensemble of {len(rs)} | (mean) | {rs[0]['epochs']} | "
                f"{e['val']['mae']:.4f} | {e['val']['r']:.4f} | {e['test']['mae']:.4f} | "
                f"{e['test']['r']:.4f} | |"
            )
    OUT.write_text(json.dumps(data, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
