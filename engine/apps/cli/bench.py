"""``python -m engine bench``: speed benchmarks of :mod:`engine.apps.bench`."""

from __future__ import annotations

import json


def add_parser(sub) -> None:
    """Add ``bench`` to the subparsers ``sub``."""
    p = sub.add_parser("bench", help="speed benchmarks (graph building, training, prediction)")
    p.add_argument("--data", help="structures .jsonl.gz (default: aflow_agl/structures.jsonl.gz)")
    p.add_argument("--limit", type=int, default=None, help="use at most this many structures")
    p.add_argument(
        "--epochs",
        type=int,
        default=3,
        help="training epochs per side; epoch 1 is warm-up (at least 2)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads for both sides (default: torch's choice)",
    )
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")
    p.set_defaults(func=run)


def run(args) -> int:
    """Run the benchmarks and print them as JSON; the exit code."""
    from engine.apps.bench import run_benchmarks

    results = run_benchmarks(
        data=args.data, limit=args.limit, epochs=args.epochs, threads=args.threads
    )
    if args.json:  # one line: the last line of stdout is the whole result
        print(json.dumps(results))
    else:
        print(json.dumps(results, indent=2))
    return 0
