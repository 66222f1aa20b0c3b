"""``python -m engine thermal``: the physics route on structure files, streamed."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from engine.apps.cli.common import print_errors

#: Columns of the per-structure CSV, in order.
COLUMNS = (
    "id",
    "formula",
    "n_atoms",
    "status",
    "reason",
    "cte_vol_300K_per_K",
    "debye_temperature_K",
    "bulk_modulus_GPa",
    "bulk_modulus_derivative",
    "gruneisen",
    "volume_A3",
    "relaxed_volume_change",
    "relax_converged",
    "relax_ions",
    "ion_relax_unconverged",
    "eos",
    "fit_rms_meV_per_atom",
    "minimum_in_sampled_range",
    "t_max_reached_K",
    "potential",
    "seconds",
)


def curves_path(output: str | Path) -> Path:
    """Where the long-format α_V(T) curves go: ``<output stem>_curves.csv`` beside ``output``."""
    output = Path(output)
    return output.with_name(f"{output.stem}_curves.csv")


def curves_frame(results):
    """Long format (a ``pandas.DataFrame``): one row per (id, temperature_K) with alpha_V_per_K
    (1/K) and the potential."""
    import pandas as pd

    columns = ["id", "temperature_K", "alpha_V_per_K", "potential"]
    parts = [
        pd.DataFrame(
            {
                "id": r.id,
                "temperature_K": r.temperatures_K,
                "alpha_V_per_K": r.alpha_V_per_K,
                "potential": r.potential,
            }
        )
        for r in results
        if r.status == "ok"
    ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def add_parser(sub) -> None:
    """Add ``thermal`` to the subparsers ``sub``."""
    p = sub.add_parser(
        "thermal",
        help="physics estimate of thermal expansion: universal potential (CHGNet) "
        "E(V) + quasi-harmonic Debye model",
        description="One row per structure (α_V at 300 K in 1/K, θ_D in K, B0 in GPa, B′, γ, "
        "status, reason); with --output the α_V(T) curves go to <stem>_curves.csv.",
    )
    p.add_argument("--input", required=True, help="file, folder, zip or JSON-lines dataset")
    p.add_argument(
        "--relax",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="relax positions and cell with the potential first (default: no)",
    )
    p.add_argument(
        "--relax-ions",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="relax the atomic positions at fixed cell at each sampled volume (FIRE, "
        "fmax 0.05 eV/Å, at most 100 steps each; about 10-100x slower; default: no, "
        "see docs/physics.md)",
    )
    p.add_argument("--tmin", type=float, default=100.0, help="lowest temperature in K")
    p.add_argument("--tmax", type=float, default=1300.0, help="highest temperature in K")
    p.add_argument("--tstep", type=float, default=10.0, help="temperature step in K")
    p.add_argument("--poisson-ratio", type=float, default=0.25, help="σ of the Debye model")
    p.add_argument("--output", help="CSV of the per-structure results (default: print a table)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    """Run the ``thermal`` subcommand; returns the exit code."""
    import pandas as pd
    from tqdm import tqdm

    from engine.apps.screening.candidates import iter_candidates
    from engine.physics import ThermalSettings, thermal_properties

    if not Path(args.input).exists():
        raise ValueError(f"{args.input}: no such file or folder")
    settings = ThermalSettings(
        relax=args.relax,
        relax_ions=args.relax_ions,
        tmin=args.tmin,
        tmax=args.tmax,
        tstep=args.tstep,
        poisson_ratio=args.poisson_ratio,
        use_cache=not args.no_cache,
    )
    errors = []
    bar = tqdm(desc="thermal", unit="structure", file=sys.stderr, disable=args.quiet)

    def structures() -> Iterator:
        for batch in iter_candidates(args.input, chunk_size=settings.batch_structures):
            errors.extend(batch.errors)
            yield from batch.items

    results = []
    for result in thermal_properties(structures(), settings):
        results.append(result)
        bar.update(1)
    bar.close()
    print_errors(errors)
    if not results:
        print("error: no structure could be read from " + str(args.input), file=sys.stderr)
        return 1
    table = pd.DataFrame([r.summary() for r in results], columns=list(COLUMNS))
    failed = int((table["status"] != "ok").sum())
    potential = results[0].potential
    print(
        f"{len(table)} structures with {potential}: {len(table) - failed} ok, {failed} failed; "
        "α_V in 1/K (volumetric), θ_D in K, B0 in GPa",
        file=sys.stderr,
    )
    if args.output:
        table.to_csv(args.output, index=False)
        curves = curves_frame(results)
        curves.to_csv(curves_path(args.output), index=False)
        print(
            f"wrote {len(table)} rows to {args.output} and {len(curves)} curve points to "
            f"{curves_path(args.output)}"
        )
    else:
        shown = table[
            [
                "id",
                "status",
                "cte_vol_300K_per_K",
                "debye_temperature_K",
                "bulk_modulus_GPa",
                "bulk_modulus_derivative",
                "gruneisen",
                *(["relaxed_volume_change"] if args.relax else []),
                *(["ion_relax_unconverged"] if args.relax_ions else []),
                "reason",
            ]
        ]
        with pd.option_context(
            "display.max_rows",
            None,
            "display.width",
            200,
            "display.max_colwidth",
            80,
            "display.float_format",
            "{:.4g}".format,
        ):
            print(shown.to_string(index=False))
    return 0
