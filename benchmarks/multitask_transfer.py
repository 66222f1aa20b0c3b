"""Negative-transfer check of the multitask family (SCIENCE.md §3) on ``mp_elastic``.

    python benchmarks/multitask_transfer.py                 # 30 epochs, width 64
    python benchmarks/multitask_transfer.py --epochs 2 --limit 300   # smoke run

Trains multitask models on formation energy, band gap, log10 K and log10 G together (one per
loss weighting, ``learned`` and ``inverse-scale`` by default) and one single-task CGCNN per
target with the same trunk (atom_fea_len, n_conv, gate, element
features), the same head width, the same epochs, optimiser settings and seed. Every model uses
one split, made once on all rows by reduced formula (seeded, 80/10/10) and handed to every run
as a split column, so a structure is in the same part for every model and each task's test rows
are the same for the multitask model and its single-task model. The best epoch is selected on
the validation split (multitask: mean validation MSE over tasks on the standardised scales);
test MAEs are reported. A task where a multitask model's test MAE is higher than its
single-task model's shows negative transfer (one seed: differences of a few per cent are within
run-to-run noise).

Writes ``docs/results/multitask_transfer.json`` (with the command) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from engine.core.config import CGCNNConfig, MultitaskConfig, SplitConfig, TrainConfig, data_dir
from engine.core.units import unit_of
from engine.io.datasets import load_dataset
from engine.io.splits import split_dataset
from engine.training import train

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "results" / "multitask_transfer.json"
TARGETS = ["formation_energy_per_atom", "band_gap", "log10_K_VRH", "log10_G_VRH"]
SPLIT_COLUMN = "transfer_split"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--atom-fea-len", type=int, default=64, help="trunk width")
    p.add_argument("--n-conv", type=int, default=3)
    p.add_argument("--h-fea-len", type=int, default=64, help="head width (every model)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0, help="seed of the split and of training")
    p.add_argument(
        "--weighting",
        choices=["learned", "inverse-scale"],
        nargs="+",
        default=["learned", "inverse-scale"],
        help="one multitask model per weighting",
    )
    p.add_argument("--limit", type=int, help="use only the first rows (smoke runs)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument(
        "--cache",
        type=Path,
        help="JSON file keeping each finished run's metrics, "
        "so that an interrupted benchmark resumes where it stopped",
    )
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    root = data_dir()
    if root is None:
        print("error: shared data directory not found (set CRYSTAL_SCREEN_DATA)", file=sys.stderr)
        return 2
    dataset = load_dataset(root / "mp_elastic" / "structures.jsonl.gz", limit=args.limit)
    labelled = dataset.table[TARGETS].notna().any(axis=1).to_numpy()
    dataset = dataset.subset(labelled)
    parts = split_dataset(dataset, SplitConfig(kind="group", seed=args.seed))
    column = np.empty(len(dataset), dtype=object)
    for part, idx in parts.items():
        column[idx] = part
    dataset.table[SPLIT_COLUMN] = column
    split = SplitConfig(kind="column", column=SPLIT_COLUMN, seed=args.seed)

    training = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device="cpu",
        early_stopping_patience=None,
        num_threads=args.threads,
    )
    trunk = {"atom_fea_len": args.atom_fea_len, "n_conv": args.n_conv, "h_fea_len": args.h_fea_len}

    settings = {
        "epochs": args.epochs,
        **trunk,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "limit": args.limit,
    }
    cache = _read_cache(args.cache, settings)

    def run(label: str, target, model) -> dict:
        """Train (or take from the cache) one model: its metrics, fitted values, time."""
        if label not in cache["runs"]:
            start = time.perf_counter()
            result = train(dataset, target, model=model, training=training, split=split)
            cache["runs"][label] = {
                "metrics": result.metrics,
                "fitted": result.model.card.fitted,
                "seconds": round(time.perf_counter() - start, 1),
                "best_epoch": _best_epoch(result.history),
            }
            if args.cache:
                args.cache.write_text(json.dumps(cache))
        summary = cache["runs"][label]
        print(f"{label}: {summary['seconds']} s, best epoch {summary['best_epoch']}", flush=True)
        return summary

    multis = {
        w: run(f"multitask ({w})", TARGETS, MultitaskConfig(**trunk, weighting=w))
        for w in args.weighting
    }
    singles = {t: run(f"single {t}", t, CGCNNConfig(**trunk)) for t in TARGETS}
    runs = {
        label: {k: v for k, v in summary.items() if k in ("seconds", "best_epoch")}
        for label, summary in cache["runs"].items()
    }

    rows = []
    for target in TARGETS:
        s_test, s_val = singles[target]["metrics"]["test"], singles[target]["metrics"]["val"]
        row = {
            "task": target,
            "unit": unit_of(target),
            "n_test": s_test["n"],
            "single": {"test_mae": s_test["mae"], "val_mae": s_val["mae"], "test_r": s_test["r"]},
            "multitask": {},
        }
        for weighting, multi in multis.items():
            m_test, m_val = multi["metrics"]["test"], multi["metrics"]["val"]
            assert m_test[f"{target}/n"] == s_test["n"], "the test rows must be the same"
            mae = m_test[f"{target}/mae"]
            row["multitask"][weighting] = {
                "test_mae": mae,
                "val_mae": m_val[f"{target}/mae"],
                "test_r": m_test[f"{target}/r"],
                "relative_change": mae / s_test["mae"] - 1.0,
                "negative_transfer": bool(mae > s_test["mae"]),
            }
        rows.append(row)
    result = {
        "command": "python benchmarks/multitask_transfer.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": "mp_elastic/structures.jsonl.gz",
        "rows": len(dataset),
        "split": {
            "kind": "group by reduced formula, 80/10/10, made once on all rows",
            "seed": args.seed,
            **{p: len(i) for p, i in parts.items()},
        },
        "settings": {
            "epochs": args.epochs,
            **trunk,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "scheduler": training.scheduler,
            "weightings": args.weighting,
            "selection": "best validation epoch",
        },
        "task_weights": {w: m["fitted"].get("task_weights") for w, m in multis.items()},
        "tasks": rows,
        "negative_transfer": {
            w: [r["task"] for r in rows if r["multitask"][w]["negative_transfer"]] for w in multis
        },
        "runs": runs,
        "machine": {
            "cpu_count": _cpus(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"wrote {args.out}")
    return 0


def _read_cache(path: Path | None, settings: dict) -> dict:
    """The runs cached under the same settings (an empty cache otherwise)."""
    if path is not None and path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("settings") == settings:
            return cached
    return {"settings": settings, "runs": {}}


def _best_epoch(history) -> int:
    return int(history.loc[history["val_loss"].idxmin(), "epoch"])


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


def print_table(result: dict) -> None:
    weightings = result["settings"]["weightings"]
    print(
        f"\nmultitask vs single-task CGCNN, test MAE ({result['settings']['epochs']} epochs; "
        "change = multitask / single − 1)"
    )
    head = "".join(f" {'multi ' + w:>22} {'change':>7}" for w in weightings)
    print(f"{'task':<26} {'unit':<11} {'n':>4} {'single':>8}{head}  negative transfer")
    for r in result["tasks"]:
        cells = "".join(
            f" {r['multitask'][w]['test_mae']:>22.4f} "
            f"{100 * r['multitask'][w]['relative_change']:>+6.1f}%"
            for w in weightings
        )
        worse = [w for w in weightings if r["multitask"][w]["negative_transfer"]]
        verdict = ("yes (" + ", ".join(worse) + ")") if worse else "no"
        print(
            f"{r['task']:<26} {r['unit']:<11} {r['n_test']:>4} {r['single']['test_mae']:>8.4f}"
            f"{cells}  {verdict}"
        )
    for w, worse in result["negative_transfer"].items():
        print(f"negative transfer ({w}): " + (", ".join(worse) if worse else "none"))


if __name__ == "__main__":
    sys.exit(main())
