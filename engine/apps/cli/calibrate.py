"""``python -m engine calibrate``: fit σ and the applicability domain of an existing model, and
re-record its metrics and ``predictions.csv``."""

from __future__ import annotations

from engine.apps.cli.common import add_limit_args, print_uncertainty, read_limits


def add_parser(sub) -> None:
    """Add ``calibrate`` to the subparsers ``sub``."""
    p = sub.add_parser(
        "calibrate",
        help="fit σ and the applicability domain of an existing model from its recorded "
        "training data and split, and re-record its metrics and predictions",
    )
    p.add_argument("model", help="model directory or name")
    p.add_argument("--data", help="the training dataset, if it is not at the recorded path")
    p.add_argument("--json", action="store_true", help="print the card's uncertainty section")
    p.add_argument("--device", default="auto", help="auto (cuda → mps → cpu), cpu, cuda, mps")
    add_limit_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    """Calibrate the model in place and print its uncertainty section; the exit code."""
    from engine.io.datasets import load_dataset
    from engine.training.ensembles import calibrate_model

    dataset = load_dataset(args.data, limits=read_limits(args)) if args.data else None
    model = calibrate_model(args.model, dataset, device=args.device)
    if args.json:
        print(model.card.uncertainty.model_dump_json())
        return 0
    print_uncertainty(model.card)
    print(f"written to {model.path}")
    return 0
