"""``python -m engine train``: train a model of any family and save its model directory."""

from __future__ import annotations

import argparse
import sys

from engine.apps.cli.common import add_data_args, add_run_args, load_data, print_uncertainty

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

#: One line per model family in ``train --help``.
FAMILY_HELP = {
    "cgcnn": "crystal graph network (--no-gate: the gate-ablation variant)",
    "early-fusion": "Magpie ‖ pooled CGCNN vector → MLP 128→64→1",
    "attention-fusion": "softmax-weighted composition and graph vectors; predictions carry the "
    "weights",
    "late-fusion": "α·RF(Magpie) + (1−α)·CGCNN, α chosen on validation",
    "rf-magpie": "random forest on Magpie (composition-only baseline)",
    "alignn": "ALIGNN-style: atom graph + line graph of bond angles (--n-alignn, --n-gcn)",
    "multitask": "shared CGCNN trunk, one head per target (--target A B ...; --weighting)",
    "cgcnn-physics": "CGCNN with physics inputs (θ_D, B0, B′, γ, α_V) next to the pooled vector",
    "cgcnn-debye": "CGCNN heads for ln B, γ, ln θ_D → α = γ·C_V(θ_D)/(B·V) (--target α [θ_D])",
}


def _option(dest: str) -> str:
    """The command-line spelling of a :data:`MODEL_OPTIONS` dest."""
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
            usable = sorted(
                _option(d)
                for d, fs in MODEL_OPTIONS.items()
                if any(f in config_class.model_fields for f in fs)
            )
            raise ValueError(
                f"{_option(dest)} does not apply to --model {args.model}; its "
                f"options: {', '.join(usable)}"
            )
        values[field] = None if value == "none" else value
    return config_class(**values)


def _depth(text: str):
    """A random-forest depth: a positive integer, or ``"none"`` (also for 0)."""
    if text.strip().lower() in ("none", "0"):
        return "none"
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid depth {text!r}: a positive integer or 'none'")
    return value


def add_parser(sub) -> None:
    """Add ``train`` to the subparsers ``sub``."""
    from engine.core.config import (
        MODEL_FAMILIES,  # = MODEL_REGISTRY's keys, without importing torch
    )

    families = sorted(MODEL_FAMILIES)
    p = sub.add_parser(
        "train",
        help="train a model and save its model directory",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="model families (--model):\n"
        + "\n".join(f"  {name:<18} {FAMILY_HELP.get(name, '')}" for name in families),
    )
    add_data_args(p, several=True)
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument(
        "--model",
        default="cgcnn",
        metavar="{" + ",".join(families) + "}",
        help="model family (default: cgcnn)",
    )
    p.add_argument("--name", help="model name (default: the --out folder name)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--scheduler", choices=["cosine", "plateau", "none"], default="cosine")
    p.add_argument("--patience", type=int, default=30, help="early-stopping patience (epochs)")
    p.add_argument(
        "--target-transform",
        choices=["none", "log"],
        default="none",
        help="train on ln(target) (strictly positive targets; with several targets, the "
        "first); predictions and MAE are back in the target unit",
    )
    p.add_argument(
        "--loss",
        choices=["mse", "l1", "huber"],
        default="mse",
        help="loss on the standardised target (mse)",
    )
    p.add_argument(
        "--huber-delta",
        type=float,
        default=0.1,
        help="Huber: quadratic below this many standardised units (0.1)",
    )
    g = p.add_argument_group(
        "model settings (default: the family's own; an option that does "
        "not apply to the chosen family is an error)"
    )
    g.add_argument("--atom-fea-len", type=int, help="graph width (64)")
    g.add_argument("--n-conv", type=int, help="graph convolutions (3)")
    g.add_argument("--h-fea-len", type=int, help="dense width after pooling (128)")
    g.add_argument("--n-h", type=int, help="dense layers after pooling (1)")
    g.add_argument(
        "--no-gate",
        dest="gate",
        action="store_const",
        const=False,
        help="fix the CGCNN gate at 1 (gate ablation; cgcnn and fusion families)",
    )
    g.add_argument(
        "--atom-features",
        choices=["cgcnn92", "embedding"],
        help="fixed 92-dim element table or learned embedding",
    )
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
    g.add_argument(
        "--angle-cutoff",
        type=float,
        help="alignn: only bonds up to this length (Å) form angles (0: all)",
    )
    g.add_argument(
        "--weighting",
        choices=["learned", "inverse-scale"],
        help="multitask: task-loss weighting, learned log-variances or fixed "
        "inverse-scale (learned)",
    )
    p.add_argument("--cutoff", type=float, default=8.0, help="neighbour cutoff in Å")
    p.add_argument("--max-neighbors", type=int, default=12)
    p.add_argument("--split", choices=["group", "random", "column"], default="group")
    p.add_argument("--split-column", help="column holding train/val/test for --split column")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--ensemble",
        type=int,
        default=1,
        metavar="K",
        help="train K models with seeds seed … seed+K−1 and save them as one "
        "ensemble (mean ± calibrated member spread); default 1",
    )
    p.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="write a checkpoint after every epoch; if PATH exists, resume from it (a long run "
        "that was stopped continues where it was; other settings or data are refused)",
    )
    p.add_argument("--fresh", action="store_true", help="with --checkpoint: start afresh")
    add_run_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    """Train (``--ensemble K``: K seeded members) and print the metrics; the exit code."""
    from functools import partial

    from engine.core.config import GraphConfig, SplitConfig, TrainConfig
    from engine.io import check_output_path
    from engine.training import train
    from engine.training.distributed import process_group
    from engine.training.run import resolve_targets

    check_output_path(args.out, what="--out", folder=True)  # before any work
    model_cfg = model_config_from_args(args)
    resolve_targets(args.model, args.target, None)  # several targets need a multi-target family
    dataset = load_data(args, apply_query=False)  # train() applies and records the query
    graph_cfg = GraphConfig(cutoff=args.cutoff, max_neighbors=args.max_neighbors)
    train_cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        scheduler=args.scheduler,
        early_stopping_patience=args.patience,
        target_transform=args.target_transform,
        loss=args.loss,
        huber_delta=args.huber_delta,
    )
    split_cfg = SplitConfig(
        kind=args.split,
        column=args.split_column,
        seed=args.seed,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
    )
    targets = args.target[0] if len(args.target) == 1 else args.target  # several: multi-target
    if args.ensemble > 1:  # K members, training seeds seed … seed + K − 1
        if args.checkpoint:
            print("error: --checkpoint trains one model; not with --ensemble", file=sys.stderr)
            return 2
        from engine.training.ensembles import train_ensemble

        train = partial(train_ensemble, k=args.ensemble)
    elif args.checkpoint:
        train = partial(train, checkpoint=args.checkpoint, resume=not args.fresh)
    with process_group(args.device) as rank:  # under torchrun: data-parallel (DDP)
        result = train(
            dataset,
            targets,
            model=model_cfg,
            graph=graph_cfg,
            training=train_cfg,
            split=split_cfg,
            query=args.query,
            out=args.out,
            name=args.name,
            progress=not args.quiet,
        )
    if rank:  # rank 0 reports and saves
        return 0
    card = result.model.card
    if result.stop_reason:
        print(f"stopped: {result.stop_reason}")
    for target, unit in zip(card.task_targets, card.task_units):
        if len(card.task_targets) > 1:
            print(f"{target}:")
        for part, m in result.metrics.items():
            m = {k: m.get(f"{target}/{k}", m.get(k)) for k in ("n", "mae", "rmse", "r", "r2")}
            print(
                f"{part:>5}: n={m['n']:<5} MAE={m['mae']:.4g} {unit}  RMSE={m['rmse']:.4g} "
                f"{unit}  R={m['r']:.4f}  R²={m['r2']:.4f}"
            )
    if "task_weights" in card.fitted:
        print(
            f"{card.fitted['weighting']} weighting: task weights "
            + ", ".join(f"{t} {w:.3g}" for t, w in card.fitted["task_weights"].items())
        )
    if "alpha" in result.model.card.fitted:
        print(f"late fusion: alpha={result.model.card.fitted['alpha']:.2f} (chosen on val)")
    print_uncertainty(card)
    print(f"saved model directory: {result.path}")
    return 0
