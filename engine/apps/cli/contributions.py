"""``python -m engine contributions``: composition vs structure contributions of a fusion model
(the MAE increase when each part is removed)."""

from __future__ import annotations

from engine.apps.cli.common import add_data_args, add_run_args, load_data


def add_parser(sub) -> None:
    """Add ``contributions`` to the subparsers ``sub``."""
    p = sub.add_parser(
        "contributions",
        help="composition vs structure contributions of a "
        "fusion model (error increase when each part is removed)",
    )
    p.add_argument("--model", required=True)
    add_data_args(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the graph-vector shuffles")
    p.add_argument("--shuffles", type=int, default=5, help="number of shuffles averaged")
    p.add_argument("--json", action="store_true")
    add_run_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    """Run the analysis and print it (``--json``: one JSON line); the exit code."""
    from engine.inference.contributions import contribution_analysis

    dataset = load_data(args)
    result = contribution_analysis(
        args.model,
        dataset,
        args.target,
        seed=args.seed,
        n_shuffles=args.shuffles,
        batch_size=args.batch_size,
        device=args.device,
    )
    if args.json:
        from engine.io import strict_json

        print(strict_json(result.as_dict(), default=lambda v: None))
        return 0
    print(
        f"{result.model_name} ({result.family}) on {result.n} materials: "
        f"MAE {result.mae:.4g} {result.unit}"
    )
    for row in result.table.to_dict("records"):
        print(
            f"  {row['part']:<12} {row['perturbation']}: MAE {row['mae']:.4g} "
            f"({row['mae_increase']:+.3g}), relative contribution "
            f"{row['relative_contribution']:.2f}"
        )
    if result.mean_weights:
        print(
            "  mean attention weights: "
            + ", ".join(f"{k} {v:.2f}" for k, v in result.mean_weights.items())
        )
    return 0
