"""Helpers the command modules share: option groups, read limits, dataset loading and reports.

Only the standard library is imported at module level, so building the parser stays cheap; the
engine is imported inside the functions that need it.
"""

from __future__ import annotations

import argparse
import math
import sys

#: Unusable entries listed by :func:`print_errors` before "... and N more".
MAX_LISTED_ERRORS = 20


def print_errors(errors) -> None:
    """List entries that could not be used (objects with ``source`` and ``reason``) on stderr."""
    if not errors:
        return
    stream = sys.stderr
    print(f"{len(errors)} entr{'y' if len(errors) == 1 else 'ies'} could not be used:", file=stream)
    for err in errors[:MAX_LISTED_ERRORS]:
        print(f"  {err.source}: {err.reason}", file=stream)
    if len(errors) > MAX_LISTED_ERRORS:
        print(f"  ... and {len(errors) - MAX_LISTED_ERRORS} more", file=stream)


def _size(text: str) -> int:
    """A byte count such as ``512M``, ``2G``, ``100k`` or ``1000000`` (binary units)."""
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    t = text.strip().lower().removesuffix("b")
    try:
        value = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid size {text[:40]!r}: e.g. 512M, 2G or a byte count"
        ) from None
    if not (math.isfinite(value) and value >= 1):
        raise argparse.ArgumentTypeError(f"invalid size {text[:40]!r}: must be positive")
    return int(value)


def _positive(text: str) -> int:
    """A count of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count {text[:40]!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid count {text[:40]!r}: must be at least 1")
    return value


def add_data_args(p, target_required: bool = True, several: bool = False) -> None:
    """``--data``, ``--target`` (one, or several with ``several``), ``--query`` and ``--limit``."""
    p.add_argument(
        "--data",
        required=True,
        help="dataset: .jsonl(.gz), CIF folder with id_prop.csv, or CSV joined to structure files",
    )
    if several:
        p.add_argument(
            "--target",
            required=target_required,
            nargs="+",
            metavar="TARGET",
            help="target column; several for --model multitask (the first is the primary target)",
        )
    else:
        p.add_argument("--target", required=target_required, help="target column")
    p.add_argument(
        "--query", help='pandas query to filter rows, e.g. "validated_against_mp != False"'
    )
    p.add_argument("--limit", type=int, help="read at most this many entries")


def add_disorder_args(p) -> None:
    """``--disorder``, ``--orderings`` and ``--ordering-seed`` (see :func:`disorder_settings`)."""
    p.add_argument(
        "--disorder",
        choices=["virtual", "orderings"],
        default="virtual",
        help="disordered structures: virtual crystal (occupancy-weighted "
        "features) or the mean of seeded ordered supercells (spread added to σ)",
    )
    p.add_argument(
        "--orderings",
        type=int,
        default=5,
        help="orderings per disordered structure with --disorder orderings",
    )
    p.add_argument("--ordering-seed", type=int, default=0)


def add_run_args(p) -> None:
    """``--device``, ``--batch-size`` and the input limits of :func:`add_limit_args`."""
    p.add_argument("--device", default="auto", help="auto (cuda → mps → cpu), cpu, cuda, mps")
    p.add_argument("--batch-size", type=int, default=64)
    add_limit_args(p)


def add_limit_args(p) -> None:
    """The ``input limits`` group: ``--max-atoms`` (sites) and ``--max-bytes`` (bytes)."""
    from engine.io import DEFAULT_LIMITS

    g = p.add_argument_group("input limits")
    g.add_argument(
        "--max-atoms",
        type=_positive,
        default=None,
        metavar="N",
        help="largest cell read, in sites; larger ones are refused before "
        f"parsing (default {DEFAULT_LIMITS.max_atoms})",
    )
    g.add_argument(
        "--max-bytes",
        type=_size,
        default=None,
        metavar="SIZE",
        help="most bytes expanded from the inputs in total, zips and .gz "
        f"included, e.g. 2G (default {DEFAULT_LIMITS.max_bytes // 1024**2}M)",
    )


def add_dask_args(p) -> None:
    """The Dask group: ``--dask``, ``--partition-size``, ``--retries``, ``--worker-memory``."""
    g = p.add_argument_group("Dask (pip install 'crystal-screen[dask]')")
    g.add_argument(
        "--dask",
        metavar="CLUSTER",
        help="run on Dask: local:N (N worker "
        "processes here) or a scheduler address tcp://HOST:PORT; results stream "
        "to --output NAME.parquet",
    )
    g.add_argument(
        "--partition-size", type=int, default=1000, help="candidates per Dask task (default 1000)"
    )
    g.add_argument("--retries", type=int, default=2, help="retries of a failed partition")
    g.add_argument(
        "--worker-memory", default="3GiB", help="memory limit per local:N worker (default 3GiB)"
    )


def read_limits(args):
    """The :class:`engine.io.ReadLimits` of the ``--max-atoms``/``--max-bytes`` options."""
    from engine.io import make_limits

    return make_limits(max_atoms=args.max_atoms, max_bytes=args.max_bytes)


def nothing_usable(what: str, source: str, errors) -> ValueError:
    """The one-line error for an input of which nothing could be used."""
    from engine.io import display_name

    first = f": {errors[0].source}: {errors[0].reason}" if errors else ""
    last = f"; last: {errors[-1].source}: {errors[-1].reason}" if len(errors) > 1 else ""
    more = f" ({len(errors)} entries failed)" if len(errors) > 2 else ""
    return ValueError(f"no {what} in {display_name(source)} could be used{first}{last}{more}")


def load_data(args, *, apply_query: bool = True):
    """The dataset of ``--data``/``--limit`` (``--query`` applied unless ``apply_query`` is
    False), with the unusable entries listed; raises if a ``--target`` column is missing."""
    from engine.io.datasets import load_dataset

    dataset = load_dataset(args.data, limit=args.limit, limits=read_limits(args))
    if len(dataset) == 0:
        raise nothing_usable("structure", args.data, dataset.errors)
    print_errors(dataset.errors)
    if args.query and apply_query:
        dataset = dataset.query(args.query)
    for target in args.target if isinstance(args.target, list) else [args.target]:
        if target not in dataset.table.columns:
            raise ValueError(
                f"target column {target!r} is not in {args.data}; numeric columns: "
                f"{', '.join(dataset.numeric_columns()) or 'none'}"
            )
    return dataset


def disorder_settings(args):
    """The :class:`engine.materials.disorder.DisorderSettings` of ``--disorder``/``--orderings``."""
    from engine.materials.disorder import DisorderSettings

    return DisorderSettings(mode=args.disorder, k=args.orderings, seed=args.ordering_seed)


def print_uncertainty(card) -> None:
    """σ calibration and domain thresholds of a model card, if it has them."""
    unc = card.uncertainty
    if unc is None:
        return
    print(
        f"σ from {unc.sigma_source}, × {', '.join(f'{s:.3g}' for s in unc.scale)} "
        "(scale fitted on val); ideal: 68.3% within 1σ, 95.4% within 2σ"
    )
    for part in ("val", "test"):
        c = unc.calibration.get(part)
        if c is not None:
            print(
                f"{part:>5}: within 1σ {c.within_1sigma:.1%} (unscaled "
                f"{c.within_1sigma_unscaled:.1%}), within 2σ {c.within_2sigma:.1%} (unscaled "
                f"{c.within_2sigma_unscaled:.1%}); MAE by domain: "
                + ", ".join(
                    f"{f} {v:.3g} (n={c.n_by_domain[f]})" for f, v in c.mae_by_domain.items()
                )
            )
    print(
        f"domain: mean distance to the {unc.k} nearest training crystals; borderline above "
        f"{unc.borderline:.3g} (val {unc.borderline_quantile:.0%}), out-of-domain above "
        f"{unc.out_of_domain:.3g} (val {unc.out_of_domain_quantile:.0%})"
    )


def report_dask(run) -> int:
    """Errors, notes and failed partitions of a Dask run; 1 when a partition failed."""
    print_errors(run.errors)
    for note in run.notes:
        print(f"note: {note}", file=sys.stderr)
    print(
        f"{run.n_read} entries in {run.n_partitions} partitions on {len(run.worker_pids)} "
        f"worker processes",
        file=sys.stderr,
    )
    for f in run.failures:
        print(
            f"error: partition {f.label} ({f.n_entries} entries) failed: {f.reason}",
            file=sys.stderr,
        )
    return 1 if run.failures else 0
