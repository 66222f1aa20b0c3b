"""``python -m engine fetch``: structures from an OPTIMADE database (or the Materials Project
API) saved as JSON lines."""

from __future__ import annotations

import sys

from engine.apps.cli.common import print_errors


def add_parser(sub) -> None:
    """Add ``fetch`` to the subparsers ``sub``."""
    p = sub.add_parser(
        "fetch", help="search an OPTIMADE database and save the structures as JSON lines"
    )
    p.add_argument(
        "--provider",
        required=True,
        help="provider id from the optimade package's "
        "providers.json (mp, oqmd, cod, alexandria, jarvis, aflow, …), the base URL "
        "of an OPTIMADE database, or mp-api (the Materials Project's own API with "
        "the key in $MP_API_KEY; --filter is then a JSON object of summary-search "
        'arguments, e.g. \'{"chemsys": "La-Co-O"}\')',
    )
    p.add_argument(
        "--filter",
        default="",
        help="OPTIMADE filter, e.g. 'elements HAS ALL "
        '"La","Co","O" AND nsites<=20\' (default: everything)',
    )
    p.add_argument("--limit", type=int, default=100, help="most structures fetched")
    p.add_argument(
        "--output",
        required=True,
        help="JSON-lines file to write (.jsonl or .jsonl.gz); ids are PROVIDER:ID",
    )
    p.add_argument("--database", help="which of the provider's databases (default: the first)")
    p.add_argument("--page-size", type=int, default=50, help="entries per request")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait per request")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)


def run(args) -> int:
    """Fetch and write ``--output``; the exit code (1: nothing matched, 2: an error)."""
    from engine.io.optimade import fetch_structures, write_jsonl

    def report(done: int, total: int | None) -> None:
        print(
            f"fetched {done} of {total if total is not None else '?'} entries",
            file=sys.stderr,
            flush=True,
        )

    if args.provider == "mp-api":  # the key comes from $MP_API_KEY, never the command line
        from engine.io.materials_project import fetch_materials_project

        result = fetch_materials_project(
            args.filter, limit=args.limit, progress=None if args.quiet else report
        )
    else:
        result = fetch_structures(
            args.provider,
            args.filter,
            limit=args.limit,
            page_size=args.page_size,
            database=args.database,
            progress=None if args.quiet else report,
            timeout=args.timeout,
        )
    print_errors(result.errors)
    if result.items:
        n = write_jsonl(result.items, args.output)
        print(f"wrote {n} structures from {result.provider} ({result.base_url}) to {args.output}")
    if result.error:
        print(
            f"error: {result.error}"
            + (f" (kept the {len(result.items)} fetched before)" if result.items else ""),
            file=sys.stderr,
        )
        return 2
    if not result.items:
        print(
            f"error: no structure matched on {result.provider} ({result.base_url})", file=sys.stderr
        )
        return 1
    return 0
