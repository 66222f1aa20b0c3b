"""Accuracy of the shipped models against the published anchors, with a random forest on Magpie
trained on exactly the same split as the baseline.

    python benchmarks/accuracy.py [--threads 1]

For every model in ``assets/models`` this reads the test metrics from its card (the test split
was never used for selection: best epoch, σ scale and domain thresholds come from validation),
retrains ``rf-magpie`` on the model's recorded dataset, query and split, and writes
``docs/results/accuracy.json`` and ``docs/accuracy.md``. The shipped models themselves are
trained by ``benchmarks/shipped_models.sh``.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from datetime import datetime, timezone
from pathlib import Path

from engine.catalog.anchors import ANCHORS

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results" / "accuracy.json"


def rf_baseline(card, threads: int | None) -> dict:
    """Test metrics of rf-magpie trained on the model's dataset, query and split."""
    from engine.core.config import RFMagpieConfig, TrainConfig
    from engine.io.datasets import load_dataset, resolve_source
    from engine.training import train

    path = resolve_source(card.dataset.source)
    if path is None:
        return {"error": f"training data {card.dataset.source} not found"}
    dataset = load_dataset(path)
    result = train(
        dataset,
        card.target,
        model=RFMagpieConfig(),
        split=card.dataset.split,
        query=card.dataset.query,
        training=TrainConfig(seed=0, num_threads=threads),
    )
    if result.model.card.dataset.content_hash != card.dataset.content_hash:
        return {"error": "the baseline did not see the same rows as the model"}
    return {k: result.metrics["test"][k] for k in ("n", "mae", "r")}


def measure(threads: int | None) -> dict:
    from engine.core.config import shipped_model_dir
    from engine.store.card import read_card

    rows = []
    for directory in sorted(
        p for p in shipped_model_dir().iterdir() if (p / "model.json").is_file()
    ):
        card = read_card(directory)
        test = card.metrics.get("test", {})
        print(f"{card.name}: rf-magpie baseline on the same split ...", flush=True)
        rows.append(
            {
                "model": card.name,
                "family": card.model.get("name"),
                "members": len(card.ensemble.members) if card.ensemble else 1,
                "target": card.target,
                "unit": card.unit,
                "dataset": card.dataset.name if card.dataset else "",
                "n_train": card.dataset.n_train if card.dataset else None,
                "test": {k: test.get(k) for k in ("n", "mae", "r")},
                "val": {k: card.metrics.get("val", {}).get(k) for k in ("n", "mae", "r")},
                "rf_magpie": rf_baseline(card, threads),
            }
        )
    return {
        "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python benchmarks/accuracy.py", *sys.argv[1:]]),
        "rows": rows,
    }


def verdict(goal: dict, test: dict) -> str:
    checks = []
    if "mae" in goal:
        checks.append(test["mae"] <= goal["mae"])
    if "r" in goal:
        checks.append(test["r"] >= goal["r"])
    return "met" if all(checks) else "**not met**"


def write_markdown(data: dict) -> None:
    lines = [
        "# Accuracy of the shipped models",
        "",
        f"Measured {data['measured']} by `{data['command']}`; the shipped models are trained by "
        "`bash benchmarks/shipped_models.sh`. Every number of ours is on a test split that no "
        "choice was made on (best epoch, σ scale and domain thresholds come from the validation "
        "split). The random forest on Magpie (`rf-magpie`, 100 trees, depth 30) is trained on "
        "exactly the same rows and split as the model in its row. Published anchors were measured "
        "on other splits and data; they set the level, they are not a head-to-head comparison.",
        "",
    ]
    if "rerecorded" in data:  # set by hand when the model rows were re-read from new cards
        lines += [f"Re-recorded {data['rerecorded']}", ""]
    for row in data["rows"]:
        spec = ANCHORS.get(row["target"], {"anchors": [], "scale": 1.0, "scale_label": row["unit"]})
        scale, label = spec["scale"], spec["scale_label"]
        test, rf = row["test"], row["rf_magpie"]
        members = f", ensemble of {row['members']}" if row["members"] > 1 else ""
        lines += [
            f"## `{row['model']}`: {row['target']} ({row['family']}{members}; "
            f"{row['dataset']}, {row['n_train']} training structures)",
            "",
            f"| model | split | n | MAE ({label}) | R |",
            "|---|---|---|---|---|",
            f"| **{row['model']}** | our test | {test['n']} | {test['mae'] / scale:.3f} "
            f"| {test['r']:.3f} |",
        ]
        if "error" in rf:
            lines.append(f"| rf-magpie | our test | | {rf['error']} | |")
        else:
            lines.append(
                f"| rf-magpie (same split) | our test | {rf['n']} | "
                f"{rf['mae'] / scale:.3f} | {rf['r']:.3f} |"
            )
        for name, values, where in spec["anchors"]:
            mae = f"{values['mae'] / scale:.3f}" if "mae" in values else ""
            lines.append(f"| {name} (published) | {where} | | {mae} | {values.get('r', '')} |")
        if "goal" in spec:
            goal = spec["goal"]
            wanted = " and ".join(
                ([f"MAE ≤ {goal['mae'] / scale:.3g} {label}"] if "mae" in goal else [])
                + ([f"R ≥ {goal['r']}"] if "r" in goal else [])
            )
            lines += ["", f"Goal: {wanted}: {verdict(goal, test)}."]
        lines.append("")
    notes = data.get("notes", {})
    for model, note in notes.items():
        lines += [f"**{model}.** {note}", ""]
    path = ROOT / "docs" / "accuracy.md"
    marker = "<!-- ablation: "  # the section of benchmarks/ablation.py survives a rebuild
    kept = path.read_text().partition(marker) if path.exists() else ("", "", "")
    path.write_text("\n".join(lines) + ("\n" + marker + kept[2] if kept[1] else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch and forest threads")
    parser.add_argument(
        "--markdown-only",
        action="store_true",
        help="rebuild docs/accuracy.md from docs/results/accuracy.json",
    )
    args = parser.parse_args()
    if args.markdown_only:
        write_markdown(json.loads(RESULTS.read_text()))
        return
    warnings.simplefilter("ignore")
    previous = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    data = {**measure(args.threads), "notes": previous.get("notes", {})}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")
    write_markdown(data)


if __name__ == "__main__":
    main()
