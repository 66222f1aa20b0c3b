"""Compare every model family on one dataset: MAE, R, training time and parameter count.

    python benchmarks/models.py --dataset aflow --epochs 60
    python benchmarks/models.py --dataset mp_elastic --epochs 60

Each run adds its rows to ``docs/results/models_<dataset>.json`` (a row is replaced when its model
is run again; every row keeps the command and time of its own run); ``docs/models.md`` is then
rebuilt from every results file present. All families of one run share the data, split, epochs, optimiser
settings and seed, so their differences come from the models. Selection (best epoch, late-fusion
α) uses the validation split only; the reported numbers are on the test split.

Datasets:
    aflow: ``aflow_agl/structures.jsonl.gz``, target ``agl_thermal_expansion_300K`` (1/K), rows
        with a validated or Materials Project structure; the published ``crabnet_split`` (train
        → fit, val → select) with a formula-grouped 10% of the train formulas as our test split.
    mp_elastic: ``mp_elastic/structures.jsonl.gz``, target ``log10_K_VRH`` (log10 GPa); a seeded
        80/10/10 split grouped by formula. The multitask family learns formation energy, band
        gap, log10 K and log10 G together and is reported on log10 K.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

from engine.core.config import MODEL_FAMILIES, SplitConfig, TrainConfig, data_dir
from engine.io.datasets import load_dataset
from engine.models import MODEL_REGISTRY
from engine.training import train

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"

DATASETS = {
    "aflow": {
        "path": "aflow_agl/structures.jsonl.gz",
        "target": "agl_thermal_expansion_300K",
        "query": "validated_against_mp != False",
        "split": SplitConfig(kind="column", column="crabnet_split", seed=0),
        "scale": 1e-6,
        "scale_label": "10⁻⁶ 1/K",
    },
    "mp_elastic": {
        "path": "mp_elastic/structures.jsonl.gz",
        "target": "log10_K_VRH",
        "query": None,
        "split": SplitConfig(kind="group", seed=0),
        "scale": 1.0,
        "scale_label": "log10(GPa)",
        "multitask_targets": [
            "formation_energy_per_atom",
            "band_gap",
            "log10_K_VRH",
            "log10_G_VRH",
        ],
    },
}

#: Variants beyond one-config-per-family: (label, family, config overrides).
VARIANTS = [("cgcnn (gate fixed at 1)", "cgcnn", {"gate": False})]


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.module.parameters())


def run_one(
    dataset, spec: dict, family: str, overrides: dict, epochs: int, threads: int | None
) -> dict:
    config_class = MODEL_REGISTRY[family].config_class
    targets = spec.get("multitask_targets") if family == "multitask" else None
    if family == "multitask" and not targets:
        return {"skipped": "multitask needs several targets; this dataset has one"}
    start = time.perf_counter()
    result = train(
        dataset,
        targets or spec["target"],
        model=config_class(**overrides),
        training=TrainConfig(
            epochs=epochs,
            batch_size=64,
            lr=3e-3,
            seed=0,
            device="auto",
            early_stopping_patience=None,
            num_threads=threads,
        ),
        split=spec["split"],
        query=spec["query"],
    )
    seconds = time.perf_counter() - start
    test, val = result.metrics["test"], result.metrics["val"]
    if family == "multitask":  # metrics of the reported task
        from engine.training.multitask import per_task_metrics

        test, val = (per_task_metrics(m, spec["target"]) for m in (test, val))
    return {
        "family": family,
        "test_mae": test["mae"],
        "test_r": test["r"],
        "val_mae": val.get("mae"),
        "n_test": test.get("n"),
        "train_seconds": round(seconds, 1),
        "parameters": parameter_count(result.model),
        "fitted": result.model.card.model_dump().get("fitted") or None,
    }


def write_markdown() -> None:
    lines = [
        "# Model families compared",
        "",
        "Written by `benchmarks/models.py` from `docs/results/models_*.json`; the command of each",
        "table is printed above it. Numbers are measured on this project's development machine",
        "(2 CPU cores); training times include building inputs and evaluation, and were taken in",
        "one run per table, so compare them within a table. Selection (best epoch, late-fusion α)",
        "used the validation split; the table reports the test split, which was never selected on.",
        "",
    ]
    for path in sorted(RESULTS.glob("models_*.json")):
        data = json.loads(path.read_text())
        spec = DATASETS[data["dataset"]]
        runs = sorted(
            {(r["command"], r["measured"]) for r in data["rows"].values()}, key=lambda run: run[1]
        )
        lines += [f"## {data['dataset']}: `{spec['target']}` ({data['n_rows']} rows)", ""]
        lines += [f"- run {i + 1}: `{cmd}` (measured {when})" for i, (cmd, when) in enumerate(runs)]
        lines += [f"- note: {note}" for note in data.get("notes", [])]
        lines += [
            "",
            f"| model | test MAE ({spec['scale_label']}) | test R | val MAE ({spec['scale_label']}) "
            "| train time (s) | parameters | run |",
            "|---|---|---|---|---|---|---|",
        ]
        for label, row in data["rows"].items():
            run = 1 + runs.index((row["command"], row["measured"]))
            if "skipped" in row or "error" in row:
                lines.append(
                    f"| {label} | {row.get('skipped') or row.get('error')} | | | | | {run} |"
                )
                continue
            scale = spec["scale"]
            params = f"{row['parameters']:,}" if row["parameters"] else ""
            if row["family"] in ("rf-magpie", "late-fusion"):
                params = f"{params} + forest".lstrip(" +")
            extra = ""
            if row.get("fitted") and "alpha" in row["fitted"]:
                extra = f" (α = {row['fitted']['alpha']:.2f})"
            val = "–" if row["val_mae"] is None else f"{row['val_mae'] / scale:.3f}"
            lines.append(
                f"| {label}{extra} | {row['test_mae'] / scale:.3f} | {row['test_r']:.3f} "
                f"| {val} | {row['train_seconds']:.0f} | {params} | {run} |"
            )
        lines.append("")
    if (RESULTS / "physics_fusion.json").is_file():  # benchmarks/physics_fusion.py
        from physics_fusion import markdown_section

        lines += markdown_section(json.loads((RESULTS / "physics_fusion.json").read_text()))
    (ROOT / "docs" / "models.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS))
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--families", nargs="*", default=list(MODEL_FAMILIES))
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch and forest threads (default: torch's choice); 1 keeps "
        "timings steady when something else shares the cores",
    )
    parser.add_argument(
        "--markdown-only",
        action="store_true",
        help="only rebuild docs/models.md from the results present",
    )
    args = parser.parse_args()
    if args.markdown_only:
        write_markdown()
        return
    if args.dataset is None:
        parser.error("--dataset is required unless --markdown-only")
    warnings.simplefilter("ignore")
    spec = DATASETS[args.dataset]
    root = data_dir()
    if root is None:
        sys.exit("error: no data directory (set CRYSTAL_SCREEN_DATA)")
    dataset = load_dataset(root / spec["path"])
    out = RESULTS / f"models_{args.dataset}.json"
    previous = json.loads(out.read_text()) if out.is_file() else {}
    rows, notes = previous.get("rows", {}), previous.get("notes", [])
    run_info = {
        "command": "python benchmarks/models.py " + " ".join(sys.argv[1:]),
        "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "epochs": args.epochs,
        "threads": args.threads,
    }
    runs = [(family, family, {}) for family in args.families]
    runs += [v for v in VARIANTS if v[1] in args.families]
    for label, family, overrides in runs:
        print(f"training {label} ...", flush=True)
        try:
            rows[label] = {
                **run_one(dataset, spec, family, overrides, args.epochs, args.threads),
                **run_info,
            }
        except Exception as exc:  # noqa: BLE001 - one failing family must not hide the others
            rows[label] = {"family": family, "error": f"{type(exc).__name__}: {exc}", **run_info}
        print(f"  {rows[label]}", flush=True)
        RESULTS.mkdir(parents=True, exist_ok=True)
        out.write_text(
            json.dumps(
                {
                    "dataset": args.dataset,
                    "n_rows": len(dataset.items),
                    "rows": rows,
                    "notes": notes,
                },
                indent=2,
            )
            + "\n"
        )
    write_markdown()


if __name__ == "__main__":
    main()
