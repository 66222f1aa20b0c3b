"""``python -m engine search``: hyperparameter search, ranked by validation MAE."""

from __future__ import annotations

import json

from engine.apps.cli.common import add_data_args, add_run_args, load_data


def add_parser(sub) -> None:
    """Add ``search`` to the subparsers ``sub``."""
    from engine.core.config import MODEL_FAMILIES  # without importing torch

    families = sorted(MODEL_FAMILIES)
    p = sub.add_parser(
        "search",
        help="hyperparameter search (CGCNN teaching grid or a seeded sample of it), "
        "ranked by validation MAE",
    )
    add_data_args(p)
    p.add_argument(
        "--model",
        default="cgcnn",
        metavar="{" + ",".join(families) + "}",
        help="model family (default: cgcnn)",
    )
    p.add_argument(
        "--grid",
        help="JSON object: setting → list of values (default: the CGCNN "
        "grid atom_fea_len, n_conv, h_fea_len, lr around the CGCNN defaults)",
    )
    p.add_argument(
        "--trials",
        type=int,
        default=10,
        help="settings sampled from the grid without replacement (0: all)",
    )
    p.add_argument("--epochs", type=int, default=30, help="epochs per trial")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling, split and training")
    p.add_argument("--split", choices=["group", "random", "column"], default="group")
    p.add_argument("--split-column", help="column holding train/val/test for --split column")
    p.add_argument("--cutoff", type=float, default=8.0, help="neighbour cutoff in Å")
    p.add_argument("--max-neighbors", type=int, default=12)
    p.add_argument("--table", help="write the results table to this CSV")
    p.add_argument("--out", help="save the best trial's model directory here")
    p.add_argument("--name", help="name of the saved best model (default: the --out folder)")
    add_run_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    """Search, print the ranked table and save the best model; the exit code."""
    from engine.core.config import GraphConfig, SplitConfig, TrainConfig
    from engine.io import check_output_path, write_csv
    from engine.training.search import CGCNN_GRID, hyperparameter_search

    check_output_path(args.table, what="--table")
    check_output_path(args.out, what="--out", folder=True)
    grid = json.loads(args.grid) if args.grid else CGCNN_GRID
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise ValueError(
            "--grid must be a JSON object of non-empty lists, e.g. "
            '\'{"n_conv": [2, 3], "lr": [0.001, 0.003]}\''
        )
    dataset = load_data(args, apply_query=False)

    def report(done: int, total: int, row: dict) -> None:
        settings = ", ".join(f"{k}={row[k]}" for k in grid)
        print(
            f"trial {done}/{total}: {settings} -> val MAE {row['val_mae']:.4g} "
            f"({row['seconds']:.0f} s){'' if row['status'] == 'ok' else ' ' + row['status']}",
            flush=True,
        )

    from engine.models import MODEL_REGISTRY

    if args.model not in MODEL_REGISTRY:
        raise ValueError(f"unknown --model {args.model!r}; available: {sorted(MODEL_REGISTRY)}")
    result = hyperparameter_search(
        dataset,
        args.target,
        model=MODEL_REGISTRY[args.model].config_class(),
        grid=grid,
        n_trials=args.trials or None,
        epochs=args.epochs,
        seed=args.seed,
        graph=GraphConfig(cutoff=args.cutoff, max_neighbors=args.max_neighbors),
        split=SplitConfig(kind=args.split, column=args.split_column, seed=args.seed),
        training=TrainConfig(
            batch_size=args.batch_size, device=args.device, early_stopping_patience=None
        ),
        query=args.query,
        out=args.out,
        name=args.name,
        on_trial=report,
    )
    print(
        f"\n{len(result.table)} of {result.n_settings} settings, best first "
        "(ranked by validation MAE; the test split was not used):"
    )
    print(result.table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if args.table:
        write_csv(result.table, args.table)
        print(f"table written to {args.table}")
    if result.best_result.path:
        print(f"best model saved: {result.best_result.path}")
    return 0
