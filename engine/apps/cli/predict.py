"""``python -m engine predict``: predictions (± σ, domain) for structure files or SOFC names."""

from __future__ import annotations

import sys
from pathlib import Path

from engine.apps.cli.common import (
    add_dask_args,
    add_disorder_args,
    add_run_args,
    disorder_settings,
    nothing_usable,
    print_errors,
    read_limits,
    report_dask,
)


def add_parser(sub) -> None:
    """Add ``predict`` to the subparsers ``sub``."""
    p = sub.add_parser("predict", help="predict for structure files")
    p.add_argument("--model", required=True, help="model directory or name (see `models`)")
    p.add_argument(
        "--input",
        required=True,
        help="file, folder or zip of structures; an SOFC "
        "material name (8YSZ, LSCF, ...); or 'FORMULA as perovskite|fluorite'",
    )
    p.add_argument("--output", help="CSV to write (default: print a table); Parquet with --dask")
    p.add_argument("--quiet", action="store_true", help="with --dask: no progress bar")
    add_disorder_args(p)
    add_run_args(p)
    add_dask_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    """Predict and print a table or write ``--output``; the exit code."""
    import pandas as pd

    from engine.catalog.names import load_model
    from engine.inference.disorder import predict_structures
    from engine.io import check_output_path, read_structures, write_csv
    from engine.materials.sofc import resolve_structure
    from engine.uq.uncertainty import STD_COLUMN, std_column

    check_output_path(args.output)
    if args.dask:
        return _predict_dask(args)
    model = load_model(args.model)
    named = None if Path(args.input).exists() else resolve_structure(args.input)
    source, physics = [named] if named else args.input, None
    if _needs_physics(model):  # cgcnn-physics: θ_D, B0, B′, γ, α_V from the physics route
        from engine.inference.physics_inputs import attach_physics_inputs

        if named is None:
            batch = read_structures(args.input, limits=read_limits(args))
            print_errors(batch.errors)
            source = batch.items
        print(f"physics inputs for {len(source)} structures (engine.physics) ...", file=sys.stderr)
        physics = {it.id: r for it, r in zip(source, attach_physics_inputs(source))}
    result = predict_structures(
        model,
        source,
        disorder_settings(args),
        batch_size=args.batch_size,
        device=args.device,
        limits=read_limits(args),
    )
    if result.table.empty:
        raise nothing_usable("structure", args.input, result.errors)
    print_errors(result.errors)
    if physics is not None:  # which rows used physics, and why the others fell back
        result.table["physics_reason"] = [
            physics[i].reason if i in physics else "" for i in result.table["id"]
        ]
        failed = int((~result.table["physics_used"]).sum())
        if failed:
            print(
                f"note: {failed} structure(s) without physics inputs (the route failed): "
                "predicted from the crystal graph alone (physics_used False)",
                file=sys.stderr,
            )
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    units = {result.target: result.unit, **dict(zip(result.targets, result.units))}
    names = {col: f"{t} ({units[t]})" if units.get(t) else t for col, t in result.columns.items()}
    names.update(
        {
            STD_COLUMN if col == "prediction" else std_column(t): f"{t} std ({units[t]})"
            if units.get(t)
            else f"{t} std"
            for col, t in result.columns.items()
        }
    )
    table = result.table
    if "prediction" not in names:  # several targets: one column each, no primary duplicate
        table = table.drop(columns=["prediction", STD_COLUMN])
    table = table.rename(columns=names)
    if args.output:
        write_csv(table, args.output)
        print(f"wrote {len(table)} prediction{'' if len(table) == 1 else 's'} to {args.output}")
    else:
        with pd.option_context(
            "display.max_rows", None, "display.width", 200, "display.float_format", "{:.4g}".format
        ):
            print(table.to_string(index=False))
    return 0


def _predict_dask(args) -> int:
    """``predict --dask``: predictions streamed to the ``--output`` Parquet; the exit code."""
    from engine.apps.screening.dask import predict_dask

    dask_run = predict_dask(
        args.dask,
        args.input,
        args.model,
        output=args.output,
        partition_size=args.partition_size,
        batch_size=args.batch_size,
        retries=args.retries,
        memory_limit=args.worker_memory,
        progress=not args.quiet,
        limits=read_limits(args),
    )
    rc = report_dask(dask_run)
    print(f"wrote the predictions to {args.output}")
    return rc


def _needs_physics(model) -> bool:
    """Whether a model takes physics inputs (family ``cgcnn-physics``)."""
    return model.card.model.get("name") == "cgcnn-physics"
