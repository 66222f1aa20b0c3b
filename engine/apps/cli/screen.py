"""``python -m engine screen``: rank candidates by their thermal-expansion mismatch (1/K) to an
electrolyte, optionally over an operating range and as a mismatch matrix."""

from __future__ import annotations

import math
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
    """Add ``screen`` to the subparsers ``sub``."""
    p = sub.add_parser(
        "screen",
        help="rank candidates by their thermal-expansion mismatch to an electrolyte",
        description="Predict the volumetric CTE (± σ, domain flag) of every candidate, take the "
        "linear CTE as one third of it (or a measured value), filter, and rank by |Δα| to the "
        "electrolyte. CTE values are in 1/K.",
    )
    p.add_argument(
        "--model",
        default="auto",
        help="volumetric-CTE model (default auto: of the models that need only the structure, "
        "the shipped one with the lowest validation MAE)",
    )
    p.add_argument(
        "--candidates",
        required=True,
        nargs="+",
        metavar="PATH",
        help="files, folders, zips or JSON-lines datasets of structures; 'examples' "
        "(the SOFC examples), 'library[:FAMILY,...]' (the generated library), "
        "'sofc[:NAME,...]' (the named SOFC materials), an SOFC name (LSCF) or "
        "'FORMULA as perovskite|fluorite'",
    )
    p.add_argument(
        "--electrolyte",
        required=True,
        action="append",
        metavar="SPEC",
        help="SOFC name (8YSZ, GDC, LSGM, ...), 'FORMULA as PROTOTYPE', formula or id "
        "(measured table, SOFC examples, library), a structure file, or a measured "
        "linear CTE in 1/K (10.5e-6 or YSZ=10.5e-6); repeat for "
        "the mismatch matrix (the first one ranks)",
    )
    p.add_argument("--output", help="CSV of the ranked table (one row per candidate, 1/K)")
    p.add_argument(
        "--measured",
        help="CSV of measured linear CTEs: material, cte_lin_per_K and "
        "optionally cte_lin_std_per_K (1/K); used instead of predictions",
    )
    p.add_argument(
        "--include",
        nargs="+",
        default=[],
        metavar="EL",
        help="keep only candidates containing all of these elements",
    )
    p.add_argument(
        "--exclude",
        nargs="+",
        default=[],
        metavar="EL",
        help="drop candidates containing any of these elements",
    )
    p.add_argument("--max-eform", type=float, help="largest predicted formation energy (eV/atom)")
    p.add_argument("--min-gap", type=float, help="smallest predicted band gap (eV)")
    p.add_argument("--max-gap", type=float, help="largest predicted band gap (eV)")
    p.add_argument(
        "--eform-model",
        default="auto",
        help="formation-energy model (default auto: "
        "found by target e_form/formation_energy_per_atom, shipped first; used when "
        "--max-eform is given or a model is named)",
    )
    p.add_argument(
        "--gap-model",
        default="auto",
        help="band-gap model (default auto: found by "
        "target band_gap, shipped first; used with --min-gap/--max-gap or when named)",
    )
    p.add_argument(
        "--chunk-size",
        type=int,
        default=256,
        help="structures read and predicted at a time (bounds memory)",
    )
    p.add_argument("--top", type=int, default=20, help="ranked rows printed")
    p.add_argument(
        "--matrix",
        help="CSV of the mismatch matrix: the top --matrix-top candidates "
        "× every --electrolyte (1/K)",
    )
    p.add_argument("--matrix-top", type=int, default=10)
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument(
        "--range",
        nargs=2,
        type=float,
        metavar=("T1", "T2"),
        help="rank by the mean linear CTE over T1–T2 °C (e.g. 25 800), from the "
        "quasi-harmonic α(T) curve of engine.physics; disabled with a note without it",
    )
    p.add_argument(
        "--range-method",
        choices=["scaled", "physics"],
        default="scaled",
        help="scaled: the curve's shape × the learned 300 K value (default); "
        "physics: the curve's own values",
    )
    add_disorder_args(p)
    add_run_args(p)
    add_dask_args(p)
    p.add_argument(
        "--summary",
        help="with --dask: CSV of the --top ranked candidates (default: "
        "the --output name with -top.csv)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    """Screen, print the ranked table and write ``--output``/``--matrix``; the exit code."""
    import pandas as pd

    from engine.apps.screening.candidates import open_candidates
    from engine.apps.screening.electrolyte import candidate_references, resolve_electrolyte
    from engine.apps.screening.filters import Filters
    from engine.apps.screening.matrix import mismatch_matrix
    from engine.apps.screening.ranking import screen
    from engine.catalog.names import load_model
    from engine.io import check_output_path, write_csv

    for option, path in (("--output", args.output), ("--matrix", args.matrix)):
        check_output_path(path, what=option)  # before any work
    model_ref = _screen_model(args.model, "cte")
    if model_ref is None:
        raise ValueError("no thermal-expansion model found; give --model")
    model = load_model(model_ref)
    filters = Filters(
        include=args.include,
        exclude=args.exclude,
        max_e_form=args.max_eform,
        min_band_gap=args.min_gap,
        max_band_gap=args.max_gap,
    )
    sources = [open_candidates(spec) for spec in args.candidates]

    def report(done: int, total: int | None) -> None:
        print(f"screened {done} of {total} entries", file=sys.stderr, flush=True)

    options = dict(
        measured=args.measured,
        filters=filters,
        eform_model=None if args.eform_model == "auto" else args.eform_model,
        gap_model=None if args.gap_model == "auto" else args.gap_model,
        chunk_size=args.chunk_size,
        batch_size=args.batch_size,
        limits=read_limits(args),
        disorder=disorder_settings(args),
    )
    candidates = sources[0] if len(sources) == 1 else sources
    dask_rc = None
    if args.dask:
        from engine.apps.screening.dask import screen_dask

        result, dask_run = screen_dask(
            args.dask,
            candidates,
            args.electrolyte[0],
            model,
            output=args.output,
            partition_size=args.partition_size,
            retries=args.retries,
            memory_limit=args.worker_memory,
            progress=not args.quiet,
            **options,
        )
        dask_rc = report_dask(dask_run)
    else:
        result = screen(
            candidates,
            args.electrolyte[0],
            model,
            device=args.device,
            progress=None if args.quiet else report,
            **options,
        )
    if result.table.empty:
        raise nothing_usable("candidate", " ".join(args.candidates), result.errors)
    if not args.dask:
        print_errors(result.errors)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.range is not None:
        _screen_range(args, result, sources[0] if len(sources) == 1 else sources)
    e = result.electrolyte
    detail = ", ".join(x for x in (e.source, e.domain, e.note) if x)
    print(
        f"electrolyte {e.name}: linear CTE {_micro(e.cte_lin)} ± {_micro(e.cte_lin_std)} "
        f"10⁻⁶ K⁻¹ ({detail})"
    )
    table = result.table
    ranked = result.ranked
    print(
        f"{len(table)} candidates with {result.model_name}: {len(ranked)} ranked, "
        f"{len(table) - len(ranked)} filtered out; CTEs in 10⁻⁶ K⁻¹, linear = volumetric/3"
    )
    shown = pd.DataFrame(
        {
            "rank": ranked["rank"],
            "id": ranked["id"],
            "formula": ranked["formula"],
            "vol. CTE ± σ": [
                f"{_micro(v)} ± {_micro(s)}"
                for v, s in zip(ranked["cte_vol_pred_per_K"], ranked["cte_vol_std_per_K"])
            ],
            "lin. CTE used": [_micro(v) for v in ranked["cte_lin_used_per_K"]],
            "from": ranked["cte_source"],
            "domain": ranked["domain"],
            "Δα ± σ": [
                f"{v * 1e6:+.2f} ± {_micro(s)}"
                for v, s in zip(ranked["mismatch_per_K"], ranked["mismatch_std_per_K"])
            ],
        }
    )
    for column, label in (
        ("e_form_eV_per_atom", "E_form (eV/atom)"),
        ("band_gap_eV", "band gap (eV)"),
    ):
        if ranked[column].notna().any():
            shown[label] = ranked[column].round(3)
    for column in ranked.columns:
        if column.startswith(("cte_lin_mean_", "mismatch_mean_")) and "_std_" not in column:
            shown[column.removesuffix("_per_K") + " (10⁻⁶/K)"] = [_micro(v) for v in ranked[column]]
    with pd.option_context("display.max_rows", None, "display.width", 200):
        print(shown.head(args.top).to_string(index=False))
    if args.dask:
        from engine.apps.screening.parquet import write_ranked

        summary = args.summary or args.output.removesuffix(".parquet") + "-top.csv"
        write_ranked(table, args.output, summary, args.top)
        print(f"wrote {len(table)} rows to {args.output} and the top {args.top} to {summary}")
    elif args.output:
        result.to_csv(args.output)
        print(f"wrote {len(table)} rows to {args.output}")
    if len(args.electrolyte) > 1 or args.matrix:
        refs = [e] + [
            resolve_electrolyte(
                spec,
                model,
                measured=args.measured,
                batch_size=args.batch_size,
                device=args.device,
                limits=read_limits(args),
            )
            for spec in args.electrolyte[1:]
        ]
        matrix = mismatch_matrix(candidate_references(table, args.matrix_top), refs)
        print("\nmismatch Δα = candidate − electrolyte (10⁻⁶ K⁻¹):")
        print((matrix.delta * 1e6).round(2).to_string())
        if args.matrix:
            write_csv(matrix.long(), args.matrix)
            print(f"wrote the mismatch matrix (1/K) to {args.matrix}")
    return dask_rc or 0


def _screen_range(args, result, candidates) -> None:
    """Re-rank ``result`` by the mean linear CTE over ``--range`` (°C), or say why not."""
    from engine.apps.screening.operating_range import physics_note, range_column, screen_over_range
    from engine.materials.sofc import resolve_structure

    t1, t2 = args.range
    note = physics_note()
    if note is not None:
        print(f"note: {note}", file=sys.stderr)
        return
    spec = args.electrolyte[0]
    item = None if Path(spec).exists() else resolve_structure(spec)
    if item is None and Path(spec).is_file():
        from engine.io import read_structures

        item = next(iter(read_structures(spec, limits=read_limits(args)).items), None)
    result.table, reference = screen_over_range(
        result.table, candidates, result.electrolyte, item, t1, t2, method=args.range_method
    )
    print(
        f"ranked by the mean linear CTE over {t1:g}–{t2:g} °C ({args.range_method}); "
        f"electrolyte {_micro(reference[0])} ± {_micro(reference[1])} 10⁻⁶ K⁻¹; column "
        f"{range_column(t1, t2)}"
    )


def _screen_model(name: str, prop: str) -> str | None:
    """A ``screen`` model option: a model name or directory, or ``auto`` (found by target)."""
    from engine.apps.screening.filters import find_property_model

    return find_property_model(prop) if name == "auto" else name


def _micro(value: float) -> str:
    """A CTE in 1/K as a number of 10⁻⁶ K⁻¹ ("–" when missing)."""
    return "–" if not math.isfinite(value) else f"{value * 1e6:.2f}"
