"""Speed benchmark: ``python benchmarks/speed.py [--limit N]`` → docs/results/speed.json.

The same measurements as ``python -m engine bench``, saved with the command and a timestamp.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from engine.apps.bench import run_benchmarks

OUT = Path(__file__).resolve().parent.parent / "docs" / "results" / "speed.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    results = run_benchmarks(limit=args.limit, epochs=args.epochs, threads=args.threads)
    results["command"] = "python " + " ".join(["benchmarks/speed.py", *sys.argv[1:]])
    results["measured"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
