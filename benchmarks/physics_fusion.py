"""Physics features (CHGNet + quasi-harmonic Debye) as inputs to learned thermal-expansion models,
on the split of the shipped models, with and without them.

    python benchmarks/physics_fusion.py [--threads 1]

Data: ``aflow_agl/structures.jsonl.gz`` with query ``validated_against_mp != False`` and the
``crabnet_split`` column (train/val; test carved from train by formula, seed 0): the split of
``cte-cgcnn-aflow`` and the other shipped CTE models. Physics features come from the physics
cache (``benchmarks/physics_validation.py run`` fills it); rows whose physics failed or is not
computed fall back to the model without physics (column ``physics_used``).

(b) rf-magpie (100 trees, depth 30) on Magpie vs Magpie ‖ physics.
(a) the pooled graph vector of the shipped ``cte-cgcnn-aflow`` (trained on the same train rows)
    with a random-forest head, vs the same head on the pooled vector ‖ physics; plus a Δ-model
    (rf-magpie on label − physics α_V(300 K)).

Writes ``docs/results/physics_fusion.json``, the val/test predictions with ``physics_used`` to
``docs/results/physics_fusion.csv``, and rebuilds ``docs/models.md`` (``benchmarks/models.py``
appends the section of :func:`markdown_section`).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "docs" / "results"
CTE = "agl_thermal_expansion_300K"
QUERY = "validated_against_mp != False"
#: Physics inputs: α_V(300 K) (1/K), θ_D (K), B0 (GPa), B′, γ, V0 per atom (Å³).
PHYSICS_FEATURES = (
    "cte_vol_300K_per_K",
    "debye_temperature_K",
    "bulk_modulus_GPa",
    "bulk_modulus_derivative",
    "gruneisen",
    "volume_per_atom_A3",
)


def physics_table(dataset) -> pd.DataFrame:
    """Cached physics results per dataset row (NaN and ``ok`` False where missing or failed)."""
    from engine.physics import ThermalSettings
    from engine.physics.cache import cached_result

    settings = ThermalSettings()
    rows = []
    for structure in dataset.structures:
        r = cached_result(structure, settings)
        ok = r is not None and r.status == "ok"
        row = {"ok": ok}
        for name in PHYSICS_FEATURES[:-1]:
            row[name] = getattr(r, name) if ok else np.nan
        row["volume_per_atom_A3"] = r.volume_A3 / r.n_atoms if ok else np.nan
        row["computed"] = r is not None
        rows.append(row)
    return pd.DataFrame(rows)


def metrics(pred: np.ndarray, y: np.ndarray) -> dict:
    return {
        "n": int(len(y)),
        "mae": float(np.mean(np.abs(pred - y))),
        "r": float(np.corrcoef(pred, y)[0, 1]) if len(y) > 2 else None,
    }


def forest(threads: int | None):
    from engine.core.config import RFMagpieConfig
    from engine.models.forest import make_forest

    return make_forest(RFMagpieConfig(), seed=0, n_jobs=threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    from engine.core.config import SplitConfig, data_dir
    from engine.features.composition import magpie_many
    from engine.io.datasets import load_dataset
    from engine.io.splits import split_dataset
    from engine.physics.potential import potential_name

    dataset = load_dataset(data_dir() / "aflow_agl" / "structures.jsonl.gz").query(QUERY)
    split = split_dataset(
        dataset,
        SplitConfig(
            kind="column", column="crabnet_split", seed=0, val_fraction=0.1, test_fraction=0.1
        ),
    )
    y = dataset.targets(CTE)
    phys = physics_table(dataset)
    ok = phys["ok"].to_numpy()
    magpie = magpie_many(s.composition for s in dataset.structures)
    pfeat = phys[list(PHYSICS_FEATURES)].to_numpy(dtype=float)
    tr, va, te = split["train"], split["val"], split["test"]
    print(
        f"rows: train {len(tr)}, val {len(va)}, test {len(te)}; physics ok on "
        f"{ok.mean():.1%} (computed {phys['computed'].mean():.1%})",
        flush=True,
    )

    out: dict = {
        "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/physics_fusion.py " + " ".join(sys.argv[1:]),
        "potential": potential_name(),
        "query": QUERY,
        "split": {"train": len(tr), "val": len(va), "test": len(te)},
        "physics_ok": {
            p: int(ok[idx].sum()) for p, idx in (("train", tr), ("val", va), ("test", te))
        },
        "physics_computed": {
            p: int(phys["computed"].to_numpy()[idx].sum())
            for p, idx in (("train", tr), ("val", va), ("test", te))
        },
        "models": {},
    }
    preds = {}

    def record(name: str, pred: np.ndarray, used: np.ndarray) -> None:
        preds[name] = (pred, used)
        out["models"][name] = {
            part: {
                "all": metrics(pred[idx], y[idx]),
                "physics_ok_rows": metrics(pred[idx][ok[idx]], y[idx][ok[idx]]),
                "physics_used": int(used[idx].sum()),
            }
            for part, idx in (("val", va), ("test", te))
        }
        m = out["models"][name]
        print(
            f"{name:38s} val MAE {m['val']['all']['mae']:.4g} R {m['val']['all']['r']:.4f} | "
            f"test MAE {m['test']['all']['mae']:.4g} R {m['test']['all']['r']:.4f} | "
            f"test (physics ok) MAE {m['test']['physics_ok_rows']['mae']:.4g}",
            flush=True,
        )

    none = np.zeros(len(y), dtype=bool)
    base = forest(args.threads).fit(magpie[tr], y[tr])
    base_pred = base.predict(magpie)
    record("rf-magpie", base_pred, none)

    # the physics estimate alone (rows where it failed: rf-magpie)
    record("physics α_V(300 K) alone", np.where(ok, np.nan_to_num(pfeat[:, 0]), base_pred), ok)

    # (b) rf-magpie with physics: trained on train rows with physics, fallback without
    both = np.hstack([magpie, pfeat])
    fused = forest(args.threads).fit(both[tr][ok[tr]], y[tr][ok[tr]])
    fused_pred = base_pred.copy()
    fused_pred[ok] = fused.predict(both[ok])
    record("rf-magpie + physics (fallback rf-magpie)", fused_pred, ok)

    # Δ-model: rf-magpie ‖ physics on label − physics α_V(300 K)
    delta = forest(args.threads).fit(both[tr][ok[tr]], (y - np.nan_to_num(pfeat[:, 0]))[tr][ok[tr]])
    delta_pred = base_pred.copy()
    delta_pred[ok] = pfeat[ok, 0] + delta.predict(both[ok])
    record("Δ-model: physics + rf(magpie ‖ physics)", delta_pred, ok)

    # (a) pooled graph vector of the shipped CGCNN (same train rows) with and without physics
    from engine.core.config import shipped_model_dir
    from engine.inference.prediction import embed
    from engine.io import NamedStructure

    items = [NamedStructure(i, s, "aflow_agl") for i, s in zip(dataset.ids, dataset.structures)]
    pooled, used_items = embed(shipped_model_dir() / "cte-cgcnn-aflow", items, device="cpu")
    if len(used_items) == len(items):
        head = forest(args.threads).fit(pooled[tr], y[tr])
        head_pred = head.predict(pooled)
        record("CGCNN pooled vector → RF", head_pred, none)
        gp = np.hstack([pooled, pfeat])
        ghead = forest(args.threads).fit(gp[tr][ok[tr]], y[tr][ok[tr]])
        g_pred = head_pred.copy()
        g_pred[ok] = ghead.predict(gp[ok])
        record("CGCNN pooled vector ‖ physics → RF", g_pred, ok)
    else:
        out["graph_note"] = f"{len(items) - len(used_items)} structures had no graph"

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "physics_fusion.json").write_text(json.dumps(out, indent=2))
    keep = np.concatenate([va, te])
    frame = pd.DataFrame(
        {
            "id": np.array(dataset.ids)[keep],
            "part": ["val"] * len(va) + ["test"] * len(te),
        }
    )  # predictions only: the AFLOW labels stay in the shared data, never in the project
    for name, (pred, _used) in preds.items():
        frame[name] = pred[keep]
    frame["physics_used"] = ok[keep]
    frame.to_csv(RESULTS / "physics_fusion.csv", index=False, float_format="%.5g")
    from models import write_markdown

    write_markdown()


def markdown_section(data: dict) -> list[str]:
    """The "with and without physics inputs" section of ``docs/models.md`` (lines)."""
    ok, computed = data["physics_ok"], data["physics_computed"]
    lines = [
        "## aflow: physics inputs (CHGNet + quasi-harmonic Debye) with and without",
        "",
        f"- `{data['command']}` (measured {data['measured']}); {data['potential']}; "
        f"query `{data['query']}`, `crabnet_split` train/val, test carved from train by formula "
        f"(seed 0): the split of the shipped thermal-expansion models "
        f"({data['split']['train']}/{data['split']['val']}/{data['split']['test']} rows).",
        f"- Physics features: α_V(300 K), θ_D, B0, B′, γ, V0 per atom "
        "(`docs/physics.md`). Physics ok on train/val/test: "
        f"{ok['train']}/{ok['val']}/{ok['test']} rows (computed: "
        f"{computed['train']}/{computed['val']}/{computed['test']}); rows without it fall "
        "back to the same model without physics (`physics_used` in "
        "`docs/results/physics_fusion.csv`).",
        "- The pooled-vector rows use the shipped `cte-cgcnn-aflow` (trained on the same train "
        "rows) as a frozen featuriser with a random-forest head (100 trees, depth 30), the same "
        "head as rf-magpie.",
        "",
        "| model | val MAE (10⁻⁶ 1/K) | val R | test MAE (10⁻⁶ 1/K) | test R | test MAE, physics-ok "
        "rows | rows using physics (val/test) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in data["models"].items():
        v, t = m["val"]["all"], m["test"]["all"]
        tp = m["test"]["physics_ok_rows"]
        lines.append(
            f"| {name} | {v['mae'] * 1e6:.3f} | {v['r']:.3f} | {t['mae'] * 1e6:.3f} | "
            f"{t['r']:.3f} | {tp['mae'] * 1e6:.3f} (n={tp['n']}) | "
            f"{m['val']['physics_used']}/{m['test']['physics_used']} |"
        )
    lines += ["", *[f"- {note}" for note in data.get("notes", [])], *verdict(data), ""]
    return lines


def verdict(data: dict) -> list[str]:
    """Ship or not: the best physics model against the shipped CTE model with the lowest
    validation MAE (the dashboard default), on validation only."""
    shipped = []
    for card_path in (ROOT / "assets" / "models").glob("*/model.json"):
        card = json.loads(card_path.read_text())
        val = card.get("metrics", {}).get("val", {})
        if card.get("target") == CTE and "mae" in val:
            shipped.append((val["mae"], card["name"]))
    with_physics = {k: m for k, m in data["models"].items() if m["val"]["physics_used"]}
    name, best = min(with_physics.items(), key=lambda kv: kv[1]["val"]["all"]["mae"])
    lines = []
    for base, physics in (
        ("rf-magpie", "rf-magpie + physics (fallback rf-magpie)"),
        ("CGCNN pooled vector → RF", "CGCNN pooled vector ‖ physics → RF"),
    ):
        if base in data["models"] and physics in data["models"]:
            b, p = data["models"][base], data["models"][physics]
            lines.append(
                f"- {physics} against {base}: validation MAE "
                f"{(p['val']['all']['mae'] / b['val']['all']['mae'] - 1):+.1%}, test MAE "
                f"{(p['test']['all']['mae'] / b['test']['all']['mae'] - 1):+.1%}."
            )
    if shipped:
        mae, default = min(shipped)
        won = best["val"]["all"]["mae"] < mae
        lines.append(
            f"- Best model with physics inputs on validation: {name} "
            f"({best['val']['all']['mae'] * 1e6:.3f} × 10⁻⁶ 1/K) against the shipped "
            f"`{default}` ({mae * 1e6:.3f}): "
            + (
                "it wins on validation."
                if won
                else "it does not win, so nothing is shipped and "
                "the dashboard default is unchanged."
            )
        )
    return lines


if __name__ == "__main__":
    main()
