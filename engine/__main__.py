"""Command line: ``python -m engine train | predict | evaluate | contributions | models | bench``.

Errors are reported as one ``error: ...`` line on stderr with exit code 2 (no traceback unless
``--debug`` is given).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings

MAX_LISTED_ERRORS = 20


def _print_errors(errors) -> None:
    if not errors:
        return
    stream = sys.stderr
    print(f"{len(errors)} entr{'y' if len(errors) == 1 else 'ies'} could not be used:", file=stream)
    for err in errors[:MAX_LISTED_ERRORS]:
        print(f"  {err.source}: {err.reason}", file=stream)
    if len(errors) > MAX_LISTED_ERRORS:
        print(f"  ... and {len(errors) - MAX_LISTED_ERRORS} more", file=stream)


def _load_data(args, *, apply_query: bool = True):
    from engine.datasets import load_dataset

    dataset = load_dataset(args.data, limit=args.limit)
    _print_errors(dataset.errors)
    if args.query and apply_query:
        dataset = dataset.query(args.query)
    for target in args.target if isinstance(args.target, list) else [args.target]:
        if target not in dataset.table.columns:
            raise ValueError(
                f"target column {target!r} is not in {args.data}; numeric columns: "
                f"{', '.join(dataset.numeric_columns()) or 'none'}"
            )
    return dataset


#: ``train`` options that set model-config fields: CLI dest → the config fields it may set, in
#: order (late fusion's forest half takes ``--n-estimators``/``--max-depth`` as ``rf_*``).
#: These options default to None, meaning "the family's default".
MODEL_OPTIONS: dict[str, tuple[str, ...]] = {
    "atom_fea_len": ("atom_fea_len",),
    "n_conv": ("n_conv",),
    "h_fea_len": ("h_fea_len",),
    "n_h": ("n_h",),
    "gate": ("gate",),
    "atom_features": ("atom_features",),
    "dropout": ("dropout",),
    "fc1_len": ("fc1_len",),
    "fc2_len": ("fc2_len",),
    "n_estimators": ("n_estimators", "rf_n_estimators"),
    "max_depth": ("max_depth", "rf_max_depth"),
    "min_samples_leaf": ("min_samples_leaf",),
    "max_features": ("max_features",),
    "alpha_step": ("alpha_step",),
    "n_alignn": ("n_alignn",),
    "n_gcn": ("n_gcn",),
    "angle_cutoff": ("angle_cutoff",),
    "weighting": ("weighting",),
}

FAMILY_HELP = {
    "cgcnn": "crystal graph network (--no-gate: the gate-ablation variant)",
    "early-fusion": "Magpie ‖ pooled CGCNN vector → MLP 128→64→1",
    "attention-fusion": "softmax-weighted composition and graph vectors; predictions carry the "
                        "weights",
    "late-fusion": "α·RF(Magpie) + (1−α)·CGCNN, α chosen on validation",
    "rf-magpie": "random forest on Magpie (composition-only baseline)",
    "alignn": "ALIGNN-style: atom graph + line graph of bond angles (--n-alignn, --n-gcn)",
    "multitask": "shared CGCNN trunk, one head per target (--target A B ...; --weighting)",
}


def _option(dest: str) -> str:
    return "--no-gate" if dest == "gate" else "--" + dest.replace("_", "-")


def model_config_from_args(args):
    """The model config of ``args.model`` from the ``train`` options that were given."""
    from engine.models import MODEL_REGISTRY

    if args.model not in MODEL_REGISTRY:
        raise ValueError(f"unknown --model {args.model!r}; available: {sorted(MODEL_REGISTRY)}")
    config_class = MODEL_REGISTRY[args.model].config_class
    values = {}
    for dest, fields in MODEL_OPTIONS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        field = next((f for f in fields if f in config_class.model_fields), None)
        if field is None:
            usable = sorted(_option(d) for d, fs in MODEL_OPTIONS.items()
                            if any(f in config_class.model_fields for f in fs))
            raise ValueError(f"{_option(dest)} does not apply to --model {args.model}; its "
                             f"options: {', '.join(usable)}")
        values[field] = None if value == "none" else value
    return config_class(**values)


def cmd_train(args) -> int:
    from engine.config import GraphConfig, SplitConfig, TrainConfig
    from engine.training import train
    from engine.training.run import resolve_targets

    model_cfg = model_config_from_args(args)
    resolve_targets(args.model, args.target, None)  # several targets need a multi-target family
    dataset = _load_data(args, apply_query=False)  # train() applies and records the query
    graph_cfg = GraphConfig(cutoff=args.cutoff, max_neighbors=args.max_neighbors)
    train_cfg = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        device=args.device, scheduler=args.scheduler, early_stopping_patience=args.patience,
    )
    split_cfg = SplitConfig(
        kind=args.split, column=args.split_column, seed=args.seed,
        val_fraction=args.val_fraction, test_fraction=args.test_fraction,
    )
    targets = args.target[0] if len(args.target) == 1 else args.target  # several: multi-target
    result = train(
        dataset, targets, model=model_cfg, graph=graph_cfg, training=train_cfg,
        split=split_cfg, query=args.query, out=args.out, name=args.name,
        progress=not args.quiet,
    )
    card = result.model.card
    if result.stop_reason:
        print(f"stopped: {result.stop_reason}")
    for target, unit in zip(card.task_targets, card.task_units):
        if len(card.task_targets) > 1:
            print(f"{target}:")
        for part, m in result.metrics.items():
            m = {k: m.get(f"{target}/{k}", m.get(k)) for k in ("n", "mae", "rmse", "r", "r2")}
            print(f"{part:>5}: n={m['n']:<5} MAE={m['mae']:.4g} {unit}  RMSE={m['rmse']:.4g} "
                  f"{unit}  R={m['r']:.4f}  R²={m['r2']:.4f}")
    if "task_weights" in card.fitted:
        print(f"{card.fitted['weighting']} weighting: task weights " + ", ".join(
            f"{t} {w:.3g}" for t, w in card.fitted["task_weights"].items()))
    if "alpha" in result.model.card.fitted:
        print(f"late fusion: alpha={result.model.card.fitted['alpha']:.2f} (chosen on val)")
    print(f"saved model directory: {result.path}")
    return 0


def cmd_predict(args) -> int:
    import pandas as pd

    from engine.prediction import predict

    result = predict(args.model, args.input, batch_size=args.batch_size, device=args.device)
    _print_errors(result.errors)
    if result.table.empty:
        print("error: no structure could be predicted", file=sys.stderr)
        return 1
    units = {result.target: result.unit, **dict(zip(result.targets, result.units))}
    names = {col: f"{t} ({units[t]})" if units.get(t) else t for col, t in result.columns.items()}
    table = result.table
    if "prediction" not in names:  # several targets: one column each, no primary duplicate
        table = table.drop(columns="prediction")
    table = table.rename(columns=names)
    if args.output:
        table.to_csv(args.output, index=False)
        print(f"wrote {len(table)} predictions to {args.output}")
    else:
        with pd.option_context("display.max_rows", None, "display.width", 200):
            print(table.to_string(index=False))
    return 0


def cmd_evaluate(args) -> int:
    from engine.prediction import evaluate

    dataset = _load_data(args)
    metrics, frame = evaluate(args.model, dataset, args.target, batch_size=args.batch_size,
                              device=args.device)
    if args.output:
        frame.to_csv(args.output, index=False)
    clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}
    if args.json:
        print(json.dumps(clean))
    else:
        for key, value in clean.items():
            print(f"{key}: {value}")
    return 0


def cmd_contributions(args) -> int:
    from engine.prediction import contribution_analysis

    dataset = _load_data(args)
    result = contribution_analysis(args.model, dataset, args.target, seed=args.seed,
                                   n_shuffles=args.shuffles, batch_size=args.batch_size,
                                   device=args.device)
    if args.json:
        print(json.dumps(result.as_dict(), default=lambda v: None))
        return 0
    print(f"{result.model_name} ({result.family}) on {result.n} materials: "
          f"MAE {result.mae:.4g} {result.unit}")
    for row in result.table.to_dict("records"):
        print(f"  {row['part']:<12} {row['perturbation']}: MAE {row['mae']:.4g} "
              f"({row['mae_increase']:+.3g}), relative contribution "
              f"{row['relative_contribution']:.2f}")
    if result.mean_weights:
        print("  mean attention weights: " + ", ".join(
            f"{k} {v:.2f}" for k, v in result.mean_weights.items()))
    return 0


def cmd_models(args) -> int:
    from engine.store import list_models

    models = list_models()
    if args.json:
        print(json.dumps(models))
        return 0
    for m in models:
        val = m["metrics"].get("val", {}).get("mae")
        mae = f"val MAE {val:.4g} {m['unit']}" if val is not None else ""
        print(f"{m['name']:<45} {m.get('family', ''):<17} {m['target']:<30} {m['unit']:<12} "
              f"{m['source']:<15} {mae}")
    return 0


def cmd_bench(args) -> int:
    from engine.bench import run_benchmarks

    results = run_benchmarks(data=args.data, limit=args.limit, epochs=args.epochs)
    print(json.dumps(results, indent=2))
    return 0


def _depth(text: str):
    if text.strip().lower() in ("none", "0"):
        return "none"
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid depth {text!r}: a positive integer or 'none'")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    def data_args(p, target_required=True, several=False):
        p.add_argument("--data", required=True, help="dataset: .jsonl(.gz), CIF folder with "
                       "id_prop.csv, or CSV joined to structure files")
        if several:
            p.add_argument("--target", required=target_required, nargs="+", metavar="TARGET",
                           help="target column; several for --model multitask (the first is "
                           "the primary target)")
        else:
            p.add_argument("--target", required=target_required, help="target column")
        p.add_argument("--query", help="pandas query to filter rows, e.g. "
                       "\"validated_against_mp != False\"")
        p.add_argument("--limit", type=int, help="read at most this many entries")

    def run_args(p):
        p.add_argument("--device", default="auto", help="auto (cuda → mps → cpu), cpu, cuda, mps")
        p.add_argument("--batch-size", type=int, default=64)

    from engine.config import MODEL_FAMILIES  # = MODEL_REGISTRY's keys, without importing torch

    families = sorted(MODEL_FAMILIES)
    p = sub.add_parser(
        "train", help="train a model and save its model directory",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="model families (--model):\n" + "\n".join(
            f"  {name:<18} {FAMILY_HELP.get(name, '')}" for name in families),
    )
    data_args(p, several=True)
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--model", default="cgcnn", metavar="{" + ",".join(families) + "}",
                   help="model family (default: cgcnn)")
    p.add_argument("--name", help="model name (default: the --out folder name)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--scheduler", choices=["cosine", "plateau", "none"], default="cosine")
    p.add_argument("--patience", type=int, default=30, help="early-stopping patience (epochs)")
    g = p.add_argument_group("model settings (default: the family's own; an option that does "
                             "not apply to the chosen family is an error)")
    g.add_argument("--atom-fea-len", type=int, help="graph width (64)")
    g.add_argument("--n-conv", type=int, help="graph convolutions (3)")
    g.add_argument("--h-fea-len", type=int, help="dense width after pooling (128)")
    g.add_argument("--n-h", type=int, help="dense layers after pooling (1)")
    g.add_argument("--no-gate", dest="gate", action="store_const", const=False,
                   help="fix the CGCNN gate at 1 (gate ablation; cgcnn and fusion families)")
    g.add_argument("--atom-features", choices=["cgcnn92", "embedding"],
                   help="fixed 92-dim element table or learned embedding")
    g.add_argument("--dropout", type=float, help="dropout (cgcnn 0, early-fusion 0.2)")
    g.add_argument("--fc1-len", type=int, help="early fusion: first MLP width (128)")
    g.add_argument("--fc2-len", type=int, help="early fusion: second MLP width (64)")
    g.add_argument("--n-estimators", type=int, help="random forest trees (100)")
    g.add_argument("--max-depth", type=_depth, help="random forest depth, or 'none' (30)")
    g.add_argument("--min-samples-leaf", type=int, help="rf-magpie: rows per leaf (1)")
    g.add_argument("--max-features", type=float, help="rf-magpie: share of features per split")
    g.add_argument("--alpha-step", type=float, help="late fusion: α grid step (0.05)")
    g.add_argument("--n-alignn", type=int, help="alignn: bond-graph + atom-graph layers (2)")
    g.add_argument("--n-gcn", type=int, help="alignn: atom-graph-only layers after them (2)")
    g.add_argument("--angle-cutoff", type=float,
                   help="alignn: only bonds up to this length (Å) form angles (0: all)")
    g.add_argument("--weighting", choices=["learned", "inverse-scale"],
                   help="multitask: task-loss weighting, learned log-variances or fixed "
                   "inverse-scale (learned)")
    p.add_argument("--cutoff", type=float, default=8.0, help="neighbour cutoff in Å")
    p.add_argument("--max-neighbors", type=int, default=12)
    p.add_argument("--split", choices=["group", "random", "column"], default="group")
    p.add_argument("--split-column", help="column holding train/val/test for --split column")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    run_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="predict for structure files")
    p.add_argument("--model", required=True, help="model directory or name (see `models`)")
    p.add_argument("--input", required=True, help="file, folder or zip of structures")
    p.add_argument("--output", help="CSV to write (default: print a table)")
    run_args(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="metrics of a model on a labelled dataset")
    p.add_argument("--model", required=True)
    data_args(p)
    p.add_argument("--json", action="store_true", help="last line: JSON with n, mae, rmse, r, r2")
    p.add_argument("--output", help="CSV of per-structure predictions")
    run_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("contributions", help="composition vs structure contributions of a "
                       "fusion model (error increase when each part is removed)")
    p.add_argument("--model", required=True)
    data_args(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the graph-vector shuffles")
    p.add_argument("--shuffles", type=int, default=5, help="number of shuffles averaged")
    p.add_argument("--json", action="store_true")
    run_args(p)
    p.set_defaults(func=cmd_contributions)

    p = sub.add_parser("models", help="list available models")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("bench", help="speed benchmarks (graph building, training, prediction)")
    p.add_argument("--data", help="structures .jsonl.gz (default: aflow_agl/structures.jsonl.gz)")
    p.add_argument("--limit", type=int, default=None, help="use at most this many structures")
    p.add_argument("--epochs", type=int, default=3, help="epochs timed for training throughput")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.debug:
        warnings.filterwarnings("ignore")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI reports, it never shows a traceback
        if args.debug:
            raise
        message = str(exc).strip() or type(exc).__name__
        if isinstance(exc, KeyError):
            message = message.strip("'\"")
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
