"""Command line: ``python -m engine COMMAND``: train, search, calibrate, predict, screen,
thermal, evaluate, contributions, models, bench, fetch or dashboard.

Each command is a module of :mod:`engine.apps.cli` with ``add_parser(subparsers)``, which adds
its subparser and sets ``func=run``, and ``run(args) -> int``, which returns the exit code; the
shared options and reports are in :mod:`engine.apps.cli.common`. At module level the command
modules import only the standard library and ``common``, so ``--help`` stays cheap: the engine
(torch, training, Dask, physics, Streamlit) is imported inside ``run`` when needed.

Errors are reported as one ``error: ...`` line on stderr with exit code 2 (no traceback unless
``--debug`` is given).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from engine.apps.cli import (
    bench,
    calibrate,
    contributions,
    dashboard,
    evaluate,
    fetch,
    models,
    predict,
    screen,
    search,
    thermal,
    train,
)

#: The command modules, in the order ``--help`` lists them.
COMMANDS = (
    train,
    calibrate,
    predict,
    screen,
    thermal,
    evaluate,
    contributions,
    search,
    models,
    bench,
    fetch,
    dashboard,
)
#: Longest ``error:`` line printed, in characters.
MAX_MESSAGE = 600


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command; ``args.func(args)`` runs the chosen one."""
    prog = "crystal-screen" if Path(sys.argv[0]).name == "crystal-screen" else "python -m engine"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the command and return its exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "dashboard":  # everything after `dashboard` goes to Streamlit
        args.streamlit_args = extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
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
        message = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, KeyError):
            message = message.strip("'\"")
        if isinstance(exc, MemoryError):
            message = "out of memory; lower --max-bytes/--max-atoms or --chunk-size"
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 1] + "…"
        print(f"error: {message}", file=sys.stderr)
        return 2
