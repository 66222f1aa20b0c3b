"""``python -m engine evaluate``: metrics of a model on a labelled dataset (MAE, RMSE in the
target unit; R, R²), optionally with the calibration of σ."""

from __future__ import annotations

import math

from engine.apps.cli.common import add_data_args, add_run_args, load_data


def add_parser(sub) -> None:
    """Add ``evaluate`` to the subparsers ``sub``."""
    p = sub.add_parser("evaluate", help="metrics of a model on a labelled dataset")
    p.add_argument("--model", required=True)
    add_data_args(p)
    p.add_argument("--json", action="store_true", help="last line: JSON with n, mae, rmse, r, r2")
    p.add_argument(
        "--calibration",
        action="store_true",
        help="add the calibration of σ: within_1sigma, within_2sigma, "
        "miscalibration_area, n_<domain> and mae_<domain>",
    )
    p.add_argument("--output", help="CSV of per-structure predictions (with σ and domain)")
    add_run_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    """Evaluate and print the metrics (``--json``: one JSON line); the exit code."""
    from engine.inference.prediction import evaluate
    from engine.io import check_output_path, strict_json, write_csv

    check_output_path(args.output)
    dataset = load_data(args)
    metrics, frame = evaluate(
        args.model, dataset, args.target, batch_size=args.batch_size, device=args.device
    )
    if args.output:
        write_csv(frame, args.output)
    if args.calibration:
        from engine.uq.sigma import split_calibration
        from engine.uq.uncertainty import STD_COLUMN, no_uncertainty_note

        c = split_calibration(
            frame["error"], frame[STD_COLUMN], frame[STD_COLUMN], frame["domain"].to_numpy()
        )
        if c is None:
            raise ValueError(no_uncertainty_note(str(args.model)))
        metrics = {
            **metrics,
            "within_1sigma": c.within_1sigma,
            "within_2sigma": c.within_2sigma,
            "miscalibration_area": c.miscalibration_area,
            **{f"n_{f}": n for f, n in c.n_by_domain.items()},
            **{f"mae_{f}": v for f, v in c.mae_by_domain.items()},
        }
    clean = {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v)
        for k, v in metrics.items()
    }
    if args.json:
        print(strict_json(clean))
    else:
        for key, value in clean.items():
            print(f"{key}: {value}")
    return 0
