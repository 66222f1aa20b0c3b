"""``python -m engine models``: list the available models with family, target, unit, source
and validation MAE."""

from __future__ import annotations

import json


def add_parser(sub) -> None:
    """Add ``models`` to the subparsers ``sub``."""
    p = sub.add_parser("models", help="list available models")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    """Print one line per model (``--json``: a JSON list); the exit code."""
    from engine.catalog.names import list_models

    models = list_models()
    if args.json:
        print(json.dumps(models))
        return 0
    for m in models:
        val = m["metrics"].get("val", {}).get("mae")
        mae = f"val MAE {val:.4g} {m['unit']}" if val is not None else ""
        print(
            f"{m['name']:<45} {m.get('family', ''):<17} {m['target']:<30} {m['unit']:<12} "
            f"{m['source']:<15} {mae}"
        )
    return 0
