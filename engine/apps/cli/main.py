"""Command line: ``python -m engine COMMAND``: train, search, calibrate, predict, screen,
thermal, evaluate, contributions, models, bench, fetch or dashboard.

Errors are reported as one ``error: ...`` line on stderr with exit code 2 (no traceback unless
``--debug`` is given).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path

MAX_LISTED_ERRORS = 20
#: Longest ``error:`` line printed, in characters.
MAX_MESSAGE = 600


def _print_errors(errors) -> None:
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
        raise argparse.ArgumentTypeError(f"invalid size {text[:40]!r}: e.g. 512M, 2G or a byte "
                                         "count") from None
    if not (math.isfinite(value) and value >= 1):
        raise argparse.ArgumentTypeError(f"invalid size {text[:40]!r}: must be positive")
    return int(value)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count {text[:40]!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid count {text[:40]!r}: must be at least 1")
    return value


def _limits(args):
    """The read limits of the ``--max-atoms``/``--max-bytes`` options."""
    from engine.io import make_limits

    return make_limits(max_atoms=args.max_atoms, max_bytes=args.max_bytes)


def _nothing_usable(what: str, source: str, errors) -> ValueError:
    """The one-line error for an input of which nothing could be used."""
    from engine.io import display_name

    first = f": {errors[0].source}: {errors[0].reason}" if errors else ""
    last = f"; last: {errors[-1].source}: {errors[-1].reason}" if len(errors) > 1 else ""
    more = f" ({len(errors)} entries failed)" if len(errors) > 2 else ""
    return ValueError(f"no {what} in {display_name(source)} could be used{first}{last}{more}")


def _load_data(args, *, apply_query: bool = True):
    from engine.io.datasets import load_dataset

    dataset = load_dataset(args.data, limit=args.limit, limits=_limits(args))
    if len(dataset) == 0:
        raise _nothing_usable("structure", args.data, dataset.errors)
    _print_errors(dataset.errors)
    if args.query and apply_query:
        dataset = dataset.query(args.query)
    for target in args.target if isinstance(args.target, list) else [args.target]:
        if target not in dataset.table.columns:
            raise ValueError(
                f"target column {target!r} is not in {args.data}; numeric columns: "
                f"{', '.join(dataset.numeric_columns()) or 'none'}"
            )
    return dataset


#: ``train`` options that set model-config fields: CLI dest → the config fields it may set, in
#: order (late fusion's forest half takes ``--n-estimators``/``--max-depth`` as ``rf_*``).
#: These options default to None, meaning "the family's default".
MODEL_OPTIONS: dict[str, tuple[str, ...]] = {
    "atom_fea_len": ("atom_fea_len",),
    "n_conv": ("n_conv",),
    "h_fea_len": ("h_fea_len",),
    "n_h": ("n_h",),
    "gate": ("gate",),
    "atom_features": ("atom_features",),
    "dropout": ("dropout",),
    "fc1_len": ("fc1_len",),
    "fc2_len": ("fc2_len",),
    "n_estimators": ("n_estimators", "rf_n_estimators"),
    "max_depth": ("max_depth", "rf_max_depth"),
    "min_samples_leaf": ("min_samples_leaf",),
    "max_features": ("max_features",),
    "alpha_step": ("alpha_step",),
    "n_alignn": ("n_alignn",),
    "n_gcn": ("n_gcn",),
    "angle_cutoff": ("angle_cutoff",),
    "weighting": ("weighting",),
}

FAMILY_HELP = {
    "cgcnn": "crystal graph network (--no-gate: the gate-ablation variant)",
    "early-fusion": "Magpie ‖ pooled CGCNN vector → MLP 128→64→1",
    "attention-fusion": "softmax-weighted composition and graph vectors; predictions carry the "
                        "weights",
    "late-fusion": "α·RF(Magpie) + (1−α)·CGCNN, α chosen on validation",
    "rf-magpie": "random forest on Magpie (composition-only baseline)",
    "alignn": "ALIGNN-style: atom graph + line graph of bond angles (--n-alignn, --n-gcn)",
    "multitask": "shared CGCNN trunk, one head per target (--target A B ...; --weighting)",
    "cgcnn-physics": "CGCNN with physics inputs (θ_D, B0, B′, γ, α_V) next to the pooled "
                     "vector",
}


def _option(dest: str) -> str:
    return "--no-gate" if dest == "gate" else "--" + dest.replace("_", "-")


def model_config_from_args(args):
    """The model config of ``args.model`` from the ``train`` options that were given."""
    from engine.models import MODEL_REGISTRY

    if args.model not in MODEL_REGISTRY:
        raise ValueError(f"unknown --model {args.model!r}; available: {sorted(MODEL_REGISTRY)}")
    config_class = MODEL_REGISTRY[args.model].config_class
    values = {}
    for dest, fields in MODEL_OPTIONS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        field = next((f for f in fields if f in config_class.model_fields), None)
        if field is None:
            usable = sorted(_option(d) for d, fs in MODEL_OPTIONS.items()
                            if any(f in config_class.model_fields for f in fs))
            raise ValueError(f"{_option(dest)} does not apply to --model {args.model}; its "
                             f"options: {', '.join(usable)}")
        values[field] = None if value == "none" else value
    return config_class(**values)


def _print_uncertainty(card) -> None:
    """σ calibration and domain thresholds of a model card, if it has them."""
    unc = card.uncertainty
    if unc is None:
        return
    print(f"σ from {unc.sigma_source}, × {', '.join(f'{s:.3g}' for s in unc.scale)} "
          "(scale fitted on val); ideal: 68.3% within 1σ, 95.4% within 2σ")
    for part in ("val", "test"):
        c = unc.calibration.get(part)
        if c is not None:
            print(f"{part:>5}: within 1σ {c.within_1sigma:.1%} (unscaled "
                  f"{c.within_1sigma_unscaled:.1%}), within 2σ {c.within_2sigma:.1%} (unscaled "
                  f"{c.within_2sigma_unscaled:.1%}); MAE by domain: " + ", ".join(
                      f"{f} {v:.3g} (n={c.n_by_domain[f]})" for f, v in c.mae_by_domain.items()))
    print(f"domain: mean distance to the {unc.k} nearest training crystals; borderline above "
          f"{unc.borderline:.3g} (val {unc.borderline_quantile:.0%}), out-of-domain above "
          f"{unc.out_of_domain:.3g} (val {unc.out_of_domain_quantile:.0%})")


def cmd_train(args) -> int:
    from functools import partial

    from engine.core.config import GraphConfig, SplitConfig, TrainConfig
    from engine.io import check_output_path
    from engine.training import train
    from engine.training.distributed import process_group
    from engine.training.run import resolve_targets

    check_output_path(args.out, what="--out", folder=True)  # before any work
    model_cfg = model_config_from_args(args)
    resolve_targets(args.model, args.target, None)  # several targets need a multi-target family
    dataset = _load_data(args, apply_query=False)  # train() applies and records the query
    graph_cfg = GraphConfig(cutoff=args.cutoff, max_neighbors=args.max_neighbors)
    train_cfg = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        device=args.device, scheduler=args.scheduler, early_stopping_patience=args.patience,
        target_transform=args.target_transform, loss=args.loss, huber_delta=args.huber_delta,
    )
    split_cfg = SplitConfig(
        kind=args.split, column=args.split_column, seed=args.seed,
        val_fraction=args.val_fraction, test_fraction=args.test_fraction,
    )
    targets = args.target[0] if len(args.target) == 1 else args.target  # several: multi-target
    if args.ensemble > 1:  # K members, training seeds seed … seed + K − 1
        from engine.training.ensembles import train_ensemble

        train = partial(train_ensemble, k=args.ensemble)
    with process_group(args.device) as rank:  # under torchrun: data-parallel (DDP)
        result = train(
            dataset, targets, model=model_cfg, graph=graph_cfg, training=train_cfg,
            split=split_cfg, query=args.query, out=args.out, name=args.name,
            progress=not args.quiet,
        )
    if rank:  # rank 0 reports and saves
        return 0
    card = result.model.card
    if result.stop_reason:
        print(f"stopped: {result.stop_reason}")
    for target, unit in zip(card.task_targets, card.task_units):
        if len(card.task_targets) > 1:
            print(f"{target}:")
        for part, m in result.metrics.items():
            m = {k: m.get(f"{target}/{k}", m.get(k)) for k in ("n", "mae", "rmse", "r", "r2")}
            print(f"{part:>5}: n={m['n']:<5} MAE={m['mae']:.4g} {unit}  RMSE={m['rmse']:.4g} "
                  f"{unit}  R={m['r']:.4f}  R²={m['r2']:.4f}")
    if "task_weights" in card.fitted:
        print(f"{card.fitted['weighting']} weighting: task weights " + ", ".join(
            f"{t} {w:.3g}" for t, w in card.fitted["task_weights"].items()))
    if "alpha" in result.model.card.fitted:
        print(f"late fusion: alpha={result.model.card.fitted['alpha']:.2f} (chosen on val)")
    _print_uncertainty(card)
    print(f"saved model directory: {result.path}")
    return 0


def cmd_calibrate(args) -> int:
    from engine.io.datasets import load_dataset
    from engine.training.ensembles import calibrate_model

    dataset = load_dataset(args.data, limits=_limits(args)) if args.data else None
    model = calibrate_model(args.model, dataset, device=args.device)
    if args.json:
        print(model.card.uncertainty.model_dump_json())
        return 0
    _print_uncertainty(model.card)
    print(f"written to {model.path}")
    return 0


def cmd_predict(args) -> int:
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
            batch = read_structures(args.input, limits=_limits(args))
            _print_errors(batch.errors)
            source = batch.items
        print(f"physics inputs for {len(source)} structures (engine.physics) ...", file=sys.stderr)
        physics = {it.id: r for it, r in zip(source, attach_physics_inputs(source))}
    result = predict_structures(model, source, _disorder(args), batch_size=args.batch_size,
                                device=args.device, limits=_limits(args))
    if result.table.empty:
        raise _nothing_usable("structure", args.input, result.errors)
    _print_errors(result.errors)
    if physics is not None:  # which rows used physics, and why the others fell back
        result.table["physics_reason"] = [
            physics[i].reason if i in physics else "" for i in result.table["id"]
        ]
        failed = int((~result.table["physics_used"]).sum())
        if failed:
            print(f"note: {failed} structure(s) without physics inputs (the route failed): "
                  "predicted from the crystal graph alone (physics_used False)", file=sys.stderr)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    units = {result.target: result.unit, **dict(zip(result.targets, result.units))}
    names = {col: f"{t} ({units[t]})" if units.get(t) else t for col, t in result.columns.items()}
    names.update({STD_COLUMN if col == "prediction" else std_column(t):
                  f"{t} std ({units[t]})" if units.get(t) else f"{t} std"
                  for col, t in result.columns.items()})
    table = result.table
    if "prediction" not in names:  # several targets: one column each, no primary duplicate
        table = table.drop(columns=["prediction", STD_COLUMN])
    table = table.rename(columns=names)
    if args.output:
        write_csv(table, args.output)
        print(f"wrote {len(table)} prediction{'' if len(table) == 1 else 's'} to {args.output}")
    else:
        with pd.option_context("display.max_rows", None, "display.width", 200,
                               "display.float_format", "{:.4g}".format):
            print(table.to_string(index=False))
    return 0


def _report_dask(run) -> int:
    """Errors, notes and failed partitions of a Dask run; 1 when a partition failed."""
    _print_errors(run.errors)
    for note in run.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"{run.n_read} entries in {run.n_partitions} partitions on {len(run.worker_pids)} "
          f"worker processes", file=sys.stderr)
    for f in run.failures:
        print(f"error: partition {f.label} ({f.n_entries} entries) failed: {f.reason}",
              file=sys.stderr)
    return 1 if run.failures else 0


def _predict_dask(args) -> int:
    from engine.apps.screening.dask import predict_dask

    run = predict_dask(args.dask, args.input, args.model, output=args.output,
                       partition_size=args.partition_size, batch_size=args.batch_size,
                       retries=args.retries, memory_limit=args.worker_memory,
                       progress=not args.quiet, limits=_limits(args))
    rc = _report_dask(run)
    print(f"wrote the predictions to {args.output}")
    return rc


def _disorder(args):
    """The :class:`engine.materials.disorder.DisorderSettings` of ``--disorder``/``--orderings``."""
    from engine.materials.disorder import DisorderSettings

    return DisorderSettings(mode=args.disorder, k=args.orderings, seed=args.ordering_seed)


def _needs_physics(model) -> bool:
    """Whether a model takes physics inputs (family ``cgcnn-physics``)."""
    return model.card.model.get("name") == "cgcnn-physics"


def _screen_model(name: str, prop: str) -> str | None:
    """A ``screen`` model option: a model name or directory, or ``auto`` (found by target)."""
    from engine.apps.screening.screen import find_property_model

    return find_property_model(prop) if name == "auto" else name


def _micro(value: float) -> str:
    """A CTE in 1/K as a number of 10⁻⁶ K⁻¹ ("–" when missing)."""
    return "–" if not math.isfinite(value) else f"{value * 1e6:.2f}"


def cmd_screen(args) -> int:
    import pandas as pd

    from engine.apps.screening.screen import (
        Filters,
        candidate_references,
        mismatch_matrix,
        open_candidates,
        resolve_electrolyte,
        screen,
    )
    from engine.catalog.names import load_model
    from engine.io import check_output_path, write_csv

    for option, path in (("--output", args.output), ("--matrix", args.matrix)):
        check_output_path(path, what=option)  # before any work
    model_ref = _screen_model(args.model, "cte")
    if model_ref is None:
        raise ValueError("no thermal-expansion model found; give --model")
    model = load_model(model_ref)
    filters = Filters(include=args.include, exclude=args.exclude, max_e_form=args.max_eform,
                      min_band_gap=args.min_gap, max_band_gap=args.max_gap)
    sources = [open_candidates(spec) for spec in args.candidates]

    def report(done: int, total: int | None) -> None:
        print(f"screened {done} of {total} entries", file=sys.stderr, flush=True)

    options = dict(measured=args.measured, filters=filters,
                   eform_model=None if args.eform_model == "auto" else args.eform_model,
                   gap_model=None if args.gap_model == "auto" else args.gap_model,
                   chunk_size=args.chunk_size, batch_size=args.batch_size, limits=_limits(args),
                   disorder=_disorder(args))
    candidates = sources[0] if len(sources) == 1 else sources
    dask_rc = None
    if args.dask:
        from engine.apps.screening.dask import screen_dask

        result, run = screen_dask(args.dask, candidates, args.electrolyte[0], model,
                                  output=args.output, partition_size=args.partition_size,
                                  retries=args.retries, memory_limit=args.worker_memory,
                                  progress=not args.quiet, **options)
        dask_rc = _report_dask(run)
    else:
        result = screen(candidates, args.electrolyte[0], model, device=args.device,
                        progress=None if args.quiet else report, **options)
    if result.table.empty:
        raise _nothing_usable("candidate", " ".join(args.candidates), result.errors)
    if not args.dask:
        _print_errors(result.errors)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.range is not None:
        _screen_range(args, result, sources[0] if len(sources) == 1 else sources)
    e = result.electrolyte
    detail = ", ".join(x for x in (e.source, e.domain, e.note) if x)
    print(f"electrolyte {e.name}: linear CTE {_micro(e.cte_lin)} ± {_micro(e.cte_lin_std)} "
          f"10⁻⁶ K⁻¹ ({detail})")
    table = result.table
    ranked = result.ranked
    print(f"{len(table)} candidates with {result.model_name}: {len(ranked)} ranked, "
          f"{len(table) - len(ranked)} filtered out; CTEs in 10⁻⁶ K⁻¹, linear = volumetric/3")
    shown = pd.DataFrame({
        "rank": ranked["rank"],
        "id": ranked["id"],
        "formula": ranked["formula"],
        "vol. CTE ± σ": [f"{_micro(v)} ± {_micro(s)}" for v, s in
                         zip(ranked["cte_vol_pred_per_K"], ranked["cte_vol_std_per_K"])],
        "lin. CTE used": [_micro(v) for v in ranked["cte_lin_used_per_K"]],
        "from": ranked["cte_source"],
        "domain": ranked["domain"],
        "Δα ± σ": [f"{v * 1e6:+.2f} ± {_micro(s)}" for v, s in
                   zip(ranked["mismatch_per_K"], ranked["mismatch_std_per_K"])],
    })
    for column, label in (("e_form_eV_per_atom", "E_form (eV/atom)"),
                          ("band_gap_eV", "band gap (eV)")):
        if ranked[column].notna().any():
            shown[label] = ranked[column].round(3)
    for column in ranked.columns:
        if column.startswith(("cte_lin_mean_", "mismatch_mean_")) and "_std_" not in column:
            shown[column.removesuffix("_per_K") + " (10⁻⁶/K)"] = [_micro(v) for v in ranked[column]]
    with pd.option_context("display.max_rows", None, "display.width", 200):
        print(shown.head(args.top).to_string(index=False))
    if args.dask:
        from engine.apps.screening.dask import write_ranked

        summary = args.summary or args.output.removesuffix(".parquet") + "-top.csv"
        write_ranked(table, args.output, summary, args.top)
        print(f"wrote {len(table)} rows to {args.output} and the top {args.top} to {summary}")
    elif args.output:
        result.to_csv(args.output)
        print(f"wrote {len(table)} rows to {args.output}")
    if len(args.electrolyte) > 1 or args.matrix:
        refs = [e] + [resolve_electrolyte(spec, model, measured=args.measured,
                                          batch_size=args.batch_size, device=args.device,
                                          limits=_limits(args))
                      for spec in args.electrolyte[1:]]
        matrix = mismatch_matrix(candidate_references(table, args.matrix_top), refs)
        print("\nmismatch Δα = candidate − electrolyte (10⁻⁶ K⁻¹):")
        print((matrix.delta * 1e6).round(2).to_string())
        if args.matrix:
            write_csv(matrix.long(), args.matrix)
            print(f"wrote the mismatch matrix (1/K) to {args.matrix}")
    return dask_rc or 0


def cmd_thermal(args) -> int:
    from engine.apps.cli.thermal import run_thermal

    return run_thermal(args)


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

        item = next(iter(read_structures(spec, limits=_limits(args)).items), None)
    result.table, reference = screen_over_range(result.table, candidates, result.electrolyte,
                                                item, t1, t2, method=args.range_method)
    print(f"ranked by the mean linear CTE over {t1:g}–{t2:g} °C ({args.range_method}); "
          f"electrolyte {_micro(reference[0])} ± {_micro(reference[1])} 10⁻⁶ K⁻¹; column "
          f"{range_column(t1, t2)}")


def cmd_evaluate(args) -> int:
    from engine.inference.prediction import evaluate
    from engine.io import check_output_path, strict_json, write_csv

    check_output_path(args.output)
    dataset = _load_data(args)
    metrics, frame = evaluate(args.model, dataset, args.target, batch_size=args.batch_size,
                              device=args.device)
    if args.output:
        write_csv(frame, args.output)
    if args.calibration:
        from engine.uq.sigma import split_calibration
        from engine.uq.uncertainty import STD_COLUMN, no_uncertainty_note

        c = split_calibration(frame["error"], frame[STD_COLUMN], frame[STD_COLUMN],
                              frame["domain"].to_numpy())
        if c is None:
            raise ValueError(no_uncertainty_note(str(args.model)))
        metrics = {**metrics, "within_1sigma": c.within_1sigma, "within_2sigma": c.within_2sigma,
                   "miscalibration_area": c.miscalibration_area,
                   **{f"n_{f}": n for f, n in c.n_by_domain.items()},
                   **{f"mae_{f}": v for f, v in c.mae_by_domain.items()}}
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
             for k, v in metrics.items()}
    if args.json:
        print(strict_json(clean))
    else:
        for key, value in clean.items():
            print(f"{key}: {value}")
    return 0


def cmd_contributions(args) -> int:
    from engine.inference.prediction import contribution_analysis

    dataset = _load_data(args)
    result = contribution_analysis(args.model, dataset, args.target, seed=args.seed,
                                   n_shuffles=args.shuffles, batch_size=args.batch_size,
                                   device=args.device)
    if args.json:
        from engine.io import strict_json

        print(strict_json(result.as_dict(), default=lambda v: None))
        return 0
    print(f"{result.model_name} ({result.family}) on {result.n} materials: "
          f"MAE {result.mae:.4g} {result.unit}")
    for row in result.table.to_dict("records"):
        print(f"  {row['part']:<12} {row['perturbation']}: MAE {row['mae']:.4g} "
              f"({row['mae_increase']:+.3g}), relative contribution "
              f"{row['relative_contribution']:.2f}")
    if result.mean_weights:
        print("  mean attention weights: " + ", ".join(
            f"{k} {v:.2f}" for k, v in result.mean_weights.items()))
    return 0


def cmd_models(args) -> int:
    from engine.catalog.names import list_models

    models = list_models()
    if args.json:
        print(json.dumps(models))
        return 0
    for m in models:
        val = m["metrics"].get("val", {}).get("mae")
        mae = f"val MAE {val:.4g} {m['unit']}" if val is not None else ""
        print(f"{m['name']:<45} {m.get('family', ''):<17} {m['target']:<30} {m['unit']:<12} "
              f"{m['source']:<15} {mae}")
    return 0


def cmd_bench(args) -> int:
    from engine.apps.bench import run_benchmarks

    results = run_benchmarks(data=args.data, limit=args.limit, epochs=args.epochs,
                             threads=args.threads)
    if args.json:  # one line: the last line of stdout is the whole result
        print(json.dumps(results))
    else:
        print(json.dumps(results, indent=2))
    return 0


def cmd_search(args) -> int:
    from engine.core.config import GraphConfig, SplitConfig, TrainConfig
    from engine.io import check_output_path, write_csv
    from engine.training.search import SCIENCE_GRID, hyperparameter_search

    check_output_path(args.table, what="--table")
    check_output_path(args.out, what="--out", folder=True)
    grid = json.loads(args.grid) if args.grid else SCIENCE_GRID
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise ValueError("--grid must be a JSON object of non-empty lists, e.g. "
                         "'{\"n_conv\": [2, 3], \"lr\": [0.001, 0.003]}'")
    dataset = _load_data(args, apply_query=False)

    def report(done: int, total: int, row: dict) -> None:
        settings = ", ".join(f"{k}={row[k]}" for k in grid)
        print(f"trial {done}/{total}: {settings} -> val MAE {row['val_mae']:.4g} "
              f"({row['seconds']:.0f} s){'' if row['status'] == 'ok' else ' ' + row['status']}",
              flush=True)

    from engine.models import MODEL_REGISTRY

    if args.model not in MODEL_REGISTRY:
        raise ValueError(f"unknown --model {args.model!r}; available: {sorted(MODEL_REGISTRY)}")
    result = hyperparameter_search(
        dataset, args.target, model=MODEL_REGISTRY[args.model].config_class(), grid=grid, n_trials=args.trials or None,
        epochs=args.epochs, seed=args.seed,
        graph=GraphConfig(cutoff=args.cutoff, max_neighbors=args.max_neighbors),
        split=SplitConfig(kind=args.split, column=args.split_column, seed=args.seed),
        training=TrainConfig(batch_size=args.batch_size, device=args.device,
                             early_stopping_patience=None),
        query=args.query, out=args.out, name=args.name, on_trial=report,
    )
    print(f"\n{len(result.table)} of {result.n_settings} settings, best first "
          "(ranked by validation MAE; the test split was not used):")
    print(result.table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if args.table:
        write_csv(result.table, args.table)
        print(f"table written to {args.table}")
    if result.best_result.path:
        print(f"best model saved: {result.best_result.path}")
    return 0


def _depth(text: str):
    if text.strip().lower() in ("none", "0"):
        return "none"
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid depth {text!r}: a positive integer or 'none'")
    return value


def cmd_fetch(args) -> int:
    from engine.io.optimade import fetch_structures, write_jsonl

    def report(done: int, total: int | None) -> None:
        print(f"fetched {done} of {total if total is not None else '?'} entries", file=sys.stderr,
              flush=True)

    if args.provider == "mp-api":  # the key comes from $MP_API_KEY, never the command line
        from engine.io.materials_project import fetch_materials_project

        result = fetch_materials_project(args.filter, limit=args.limit,
                                         progress=None if args.quiet else report)
    else:
        result = fetch_structures(args.provider, args.filter, limit=args.limit,
                                  page_size=args.page_size, database=args.database,
                                  progress=None if args.quiet else report, timeout=args.timeout)
    _print_errors(result.errors)
    if result.items:
        n = write_jsonl(result.items, args.output)
        print(f"wrote {n} structures from {result.provider} ({result.base_url}) to {args.output}")
    if result.error:
        print(f"error: {result.error}" + (f" (kept the {len(result.items)} fetched before)"
                                           if result.items else ""), file=sys.stderr)
        return 2
    if not result.items:
        print(f"error: no structure matched on {result.provider} ({result.base_url})",
              file=sys.stderr)
        return 1
    return 0


def cmd_dashboard(args) -> int:
    from importlib.util import find_spec

    missing = [m for m in ("streamlit", "plotly", "py3Dmol") if find_spec(m) is None]
    if missing:
        raise RuntimeError(f"the dashboard needs {', '.join(missing)}: pip install "
                           "'crystal-screen[dashboard]'")
    from dashboard.launch import main as launch

    return launch(args.streamlit_args)


def build_parser() -> argparse.ArgumentParser:
    prog = "crystal-screen" if Path(sys.argv[0]).name == "crystal-screen" else "python -m engine"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    def data_args(p, target_required=True, several=False):
        p.add_argument("--data", required=True, help="dataset: .jsonl(.gz), CIF folder with "
                       "id_prop.csv, or CSV joined to structure files")
        if several:
            p.add_argument("--target", required=target_required, nargs="+", metavar="TARGET",
                           help="target column; several for --model multitask (the first is "
                           "the primary target)")
        else:
            p.add_argument("--target", required=target_required, help="target column")
        p.add_argument("--query", help="pandas query to filter rows, e.g. "
                       "\"validated_against_mp != False\"")
        p.add_argument("--limit", type=int, help="read at most this many entries")

    def disorder_args(p):
        p.add_argument("--disorder", choices=["virtual", "orderings"], default="virtual",
                       help="disordered structures: virtual crystal (occupancy-weighted "
                       "features) or the mean of seeded ordered supercells (spread added to σ)")
        p.add_argument("--orderings", type=int, default=5, help="orderings per disordered "
                       "structure with --disorder orderings")
        p.add_argument("--ordering-seed", type=int, default=0)

    def run_args(p):
        p.add_argument("--device", default="auto", help="auto (cuda → mps → cpu), cpu, cuda, mps")
        p.add_argument("--batch-size", type=int, default=64)
        limit_args(p)

    def limit_args(p):
        from engine.io import DEFAULT_LIMITS

        g = p.add_argument_group("input limits")
        g.add_argument("--max-atoms", type=_positive, default=None, metavar="N",
                       help="largest cell read, in sites; larger ones are refused before "
                       f"parsing (default {DEFAULT_LIMITS.max_atoms})")
        g.add_argument("--max-bytes", type=_size, default=None, metavar="SIZE",
                       help="most bytes expanded from the inputs in total, zips and .gz "
                       f"included, e.g. 2G (default {DEFAULT_LIMITS.max_bytes // 1024**2}M)")

    def dask_args(p):
        g = p.add_argument_group("Dask (pip install 'crystal-screen[dask]')")
        g.add_argument("--dask", metavar="CLUSTER", help="run on Dask: local:N (N worker "
                       "processes here) or a scheduler address tcp://HOST:PORT; results stream "
                       "to --output NAME.parquet")
        g.add_argument("--partition-size", type=int, default=1000,
                       help="candidates per Dask task (default 1000)")
        g.add_argument("--retries", type=int, default=2, help="retries of a failed partition")
        g.add_argument("--worker-memory", default="3GiB",
                       help="memory limit per local:N worker (default 3GiB)")

    from engine.core.config import (
        MODEL_FAMILIES,  # = MODEL_REGISTRY's keys, without importing torch
    )

    families = sorted(MODEL_FAMILIES)
    p = sub.add_parser(
        "train", help="train a model and save its model directory",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="model families (--model):\n" + "\n".join(
            f"  {name:<18} {FAMILY_HELP.get(name, '')}" for name in families),
    )
    data_args(p, several=True)
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--model", default="cgcnn", metavar="{" + ",".join(families) + "}",
                   help="model family (default: cgcnn)")
    p.add_argument("--name", help="model name (default: the --out folder name)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--scheduler", choices=["cosine", "plateau", "none"], default="cosine")
    p.add_argument("--patience", type=int, default=30, help="early-stopping patience (epochs)")
    p.add_argument("--target-transform", choices=["none", "log"], default="none",
                   help="train on ln(target) (strictly positive targets); predictions and MAE "
                   "are back in the target unit")
    p.add_argument("--loss", choices=["mse", "l1", "huber"], default="mse",
                   help="loss on the standardised target (mse)")
    p.add_argument("--huber-delta", type=float, default=0.1,
                   help="Huber: quadratic below this many standardised units (0.1)")
    g = p.add_argument_group("model settings (default: the family's own; an option that does "
                             "not apply to the chosen family is an error)")
    g.add_argument("--atom-fea-len", type=int, help="graph width (64)")
    g.add_argument("--n-conv", type=int, help="graph convolutions (3)")
    g.add_argument("--h-fea-len", type=int, help="dense width after pooling (128)")
    g.add_argument("--n-h", type=int, help="dense layers after pooling (1)")
    g.add_argument("--no-gate", dest="gate", action="store_const", const=False,
                   help="fix the CGCNN gate at 1 (gate ablation; cgcnn and fusion families)")
    g.add_argument("--atom-features", choices=["cgcnn92", "embedding"],
                   help="fixed 92-dim element table or learned embedding")
    g.add_argument("--dropout", type=float, help="dropout (cgcnn 0, early-fusion 0.2)")
    g.add_argument("--fc1-len", type=int, help="early fusion: first MLP width (128)")
    g.add_argument("--fc2-len", type=int, help="early fusion: second MLP width (64)")
    g.add_argument("--n-estimators", type=int, help="random forest trees (100)")
    g.add_argument("--max-depth", type=_depth, help="random forest depth, or 'none' (30)")
    g.add_argument("--min-samples-leaf", type=int, help="rf-magpie: rows per leaf (1)")
    g.add_argument("--max-features", type=float, help="rf-magpie: share of features per split")
    g.add_argument("--alpha-step", type=float, help="late fusion: α grid step (0.05)")
    g.add_argument("--n-alignn", type=int, help="alignn: bond-graph + atom-graph layers (2)")
    g.add_argument("--n-gcn", type=int, help="alignn: atom-graph-only layers after them (2)")
    g.add_argument("--angle-cutoff", type=float,
                   help="alignn: only bonds up to this length (Å) form angles (0: all)")
    g.add_argument("--weighting", choices=["learned", "inverse-scale"],
                   help="multitask: task-loss weighting, learned log-variances or fixed "
                   "inverse-scale (learned)")
    p.add_argument("--cutoff", type=float, default=8.0, help="neighbour cutoff in Å")
    p.add_argument("--max-neighbors", type=int, default=12)
    p.add_argument("--split", choices=["group", "random", "column"], default="group")
    p.add_argument("--split-column", help="column holding train/val/test for --split column")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--ensemble", type=int, default=1, metavar="K",
                   help="train K models with seeds seed … seed+K−1 and save them as one "
                        "ensemble (mean ± calibrated member spread); default 1")
    run_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("calibrate", help="fit σ and the applicability domain of an existing "
                       "model from its recorded training data and split")
    p.add_argument("model", help="model directory or name")
    p.add_argument("--data", help="the training dataset, if it is not at the recorded path")
    p.add_argument("--json", action="store_true", help="print the card's uncertainty section")
    p.add_argument("--device", default="auto", help="auto (cuda → mps → cpu), cpu, cuda, mps")
    limit_args(p)
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("predict", help="predict for structure files")
    p.add_argument("--model", required=True, help="model directory or name (see `models`)")
    p.add_argument("--input", required=True, help="file, folder or zip of structures; an SOFC "
                   "material name (8YSZ, LSCF, ...); or 'FORMULA as perovskite|fluorite'")
    p.add_argument("--output", help="CSV to write (default: print a table); Parquet with --dask")
    p.add_argument("--quiet", action="store_true", help="with --dask: no progress bar")
    disorder_args(p)
    run_args(p)
    dask_args(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "screen", help="rank candidates by their thermal-expansion mismatch to an electrolyte",
        description="Predict the volumetric CTE (± σ, domain flag) of every candidate, take the "
        "linear CTE as one third of it (or a measured value), filter, and rank by |Δα| to the "
        "electrolyte. CTE values are in 1/K.")
    p.add_argument("--model", default="auto",
                   help="volumetric-CTE model (default auto: the shipped thermal-expansion model)")
    p.add_argument("--candidates", required=True, nargs="+", metavar="PATH",
                   help="files, folders, zips or JSON-lines datasets of structures; 'examples' "
                   "(the SOFC examples), 'library[:FAMILY,...]' (the generated library), "
                   "'sofc[:NAME,...]' (the named SOFC materials), an SOFC name (LSCF) or "
                   "'FORMULA as perovskite|fluorite'")
    p.add_argument("--electrolyte", required=True, action="append", metavar="SPEC",
                   help="SOFC name (8YSZ, GDC, LSGM, ...), 'FORMULA as PROTOTYPE', formula or id "
                   "(measured table, SOFC examples, library), a structure file, or a measured "
                   "linear CTE in 1/K (10.5e-6 or YSZ=10.5e-6); repeat for "
                   "the mismatch matrix (the first one ranks)")
    p.add_argument("--output", help="CSV of the ranked table (one row per candidate, 1/K)")
    p.add_argument("--measured", help="CSV of measured linear CTEs: material, cte_lin_per_K and "
                   "optionally cte_lin_std_per_K (1/K); used instead of predictions")
    p.add_argument("--include", nargs="+", default=[], metavar="EL",
                   help="keep only candidates containing all of these elements")
    p.add_argument("--exclude", nargs="+", default=[], metavar="EL",
                   help="drop candidates containing any of these elements")
    p.add_argument("--max-eform", type=float, help="largest predicted formation energy (eV/atom)")
    p.add_argument("--min-gap", type=float, help="smallest predicted band gap (eV)")
    p.add_argument("--max-gap", type=float, help="largest predicted band gap (eV)")
    p.add_argument("--eform-model", default="auto", help="formation-energy model (default auto: "
                   "found by target e_form/formation_energy_per_atom, shipped first; used when "
                   "--max-eform is given or a model is named)")
    p.add_argument("--gap-model", default="auto", help="band-gap model (default auto: found by "
                   "target band_gap, shipped first; used with --min-gap/--max-gap or when named)")
    p.add_argument("--chunk-size", type=int, default=256, help="structures read and predicted "
                   "at a time (bounds memory)")
    p.add_argument("--top", type=int, default=20, help="ranked rows printed")
    p.add_argument("--matrix", help="CSV of the mismatch matrix: the top --matrix-top candidates "
                   "× every --electrolyte (1/K)")
    p.add_argument("--matrix-top", type=int, default=10)
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--range", nargs=2, type=float, metavar=("T1", "T2"),
                   help="rank by the mean linear CTE over T1–T2 °C (e.g. 25 800), from the "
                   "quasi-harmonic α(T) curve of engine.physics; disabled with a note without it")
    p.add_argument("--range-method", choices=["scaled", "physics"], default="scaled",
                   help="scaled: the curve's shape × the learned 300 K value (default); "
                   "physics: the curve's own values")
    disorder_args(p)
    run_args(p)
    dask_args(p)
    p.add_argument("--summary", help="with --dask: CSV of the --top ranked candidates (default: "
                   "the --output name with -top.csv)")
    p.set_defaults(func=cmd_screen)

    p = sub.add_parser(
        "thermal", help="physics estimate of thermal expansion: universal potential (CHGNet) "
        "E(V) + quasi-harmonic Debye model",
        description="One row per structure (α_V at 300 K in 1/K, θ_D in K, B0 in GPa, B′, γ, "
        "status, reason); with --output the α_V(T) curves go to <stem>_curves.csv.")
    p.add_argument("--input", required=True, help="file, folder, zip or JSON-lines dataset")
    p.add_argument("--relax", action=argparse.BooleanOptionalAction, default=False,
                   help="relax positions and cell with the potential first (default: no)")
    p.add_argument("--relax-ions", action=argparse.BooleanOptionalAction, default=False,
                   help="relax the atomic positions at fixed cell at each sampled volume (FIRE, "
                   "fmax 0.05 eV/Å, at most 100 steps each; about 10-100x slower; default: no, "
                   "see docs/physics.md)")
    p.add_argument("--tmin", type=float, default=100.0, help="lowest temperature in K")
    p.add_argument("--tmax", type=float, default=1300.0, help="highest temperature in K")
    p.add_argument("--tstep", type=float, default=10.0, help="temperature step in K")
    p.add_argument("--poisson-ratio", type=float, default=0.25, help="σ of the Debye model")
    p.add_argument("--output", help="CSV of the per-structure results (default: print a table)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_thermal)

    p = sub.add_parser("evaluate", help="metrics of a model on a labelled dataset")
    p.add_argument("--model", required=True)
    data_args(p)
    p.add_argument("--json", action="store_true", help="last line: JSON with n, mae, rmse, r, r2")
    p.add_argument("--calibration", action="store_true",
                   help="add the calibration of σ: within_1sigma, within_2sigma, "
                        "miscalibration_area, n_<domain> and mae_<domain>")
    p.add_argument("--output", help="CSV of per-structure predictions (with σ and domain)")
    run_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("contributions", help="composition vs structure contributions of a "
                       "fusion model (error increase when each part is removed)")
    p.add_argument("--model", required=True)
    data_args(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the graph-vector shuffles")
    p.add_argument("--shuffles", type=int, default=5, help="number of shuffles averaged")
    p.add_argument("--json", action="store_true")
    run_args(p)
    p.set_defaults(func=cmd_contributions)

    p = sub.add_parser(
        "search", help="hyperparameter search (grid of SCIENCE.md or a seeded sample of it), "
        "ranked by validation MAE")
    data_args(p)
    p.add_argument("--model", default="cgcnn", metavar="{" + ",".join(families) + "}",
                   help="model family (default: cgcnn)")
    p.add_argument("--grid", help="JSON object: setting → list of values (default: the CGCNN "
                   "grid atom_fea_len, n_conv, h_fea_len, lr of SCIENCE.md)")
    p.add_argument("--trials", type=int, default=10,
                   help="settings sampled from the grid without replacement (0: all)")
    p.add_argument("--epochs", type=int, default=30, help="epochs per trial")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling, split and training")
    p.add_argument("--split", choices=["group", "random", "column"], default="group")
    p.add_argument("--split-column", help="column holding train/val/test for --split column")
    p.add_argument("--cutoff", type=float, default=8.0, help="neighbour cutoff in Å")
    p.add_argument("--max-neighbors", type=int, default=12)
    p.add_argument("--table", help="write the results table to this CSV")
    p.add_argument("--out", help="save the best trial's model directory here")
    p.add_argument("--name", help="name of the saved best model (default: the --out folder)")
    run_args(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("models", help="list available models")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("bench", help="speed benchmarks (graph building, training, prediction)")
    p.add_argument("--data", help="structures .jsonl.gz (default: aflow_agl/structures.jsonl.gz)")
    p.add_argument("--limit", type=int, default=None, help="use at most this many structures")
    p.add_argument("--epochs", type=int, default=3,
                   help="training epochs per side; epoch 1 is warm-up (at least 2)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads for both sides (default: torch's choice)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("fetch", help="search an OPTIMADE database and save the structures as "
                       "JSON lines")
    p.add_argument("--provider", required=True, help="provider id from the optimade package's "
                   "providers.json (mp, oqmd, cod, alexandria, jarvis, aflow, …), the base URL "
                   "of an OPTIMADE database, or mp-api (the Materials Project's own API with "
                   "the key in $MP_API_KEY; --filter is then a JSON object of summary-search "
                   "arguments, e.g. '{\"chemsys\": \"La-Co-O\"}')")
    p.add_argument("--filter", default="", help="OPTIMADE filter, e.g. 'elements HAS ALL "
                   "\"La\",\"Co\",\"O\" AND nsites<=20' (default: everything)")
    p.add_argument("--limit", type=int, default=100, help="most structures fetched")
    p.add_argument("--output", required=True, help="JSON-lines file to write (.jsonl or "
                   ".jsonl.gz); ids are PROVIDER:ID")
    p.add_argument("--database", help="which of the provider's databases (default: the first)")
    p.add_argument("--page-size", type=int, default=50, help="entries per request")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait per request")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("dashboard", help="start the Streamlit dashboard (needs the [dashboard] "
                       "extra)", description="Start the dashboard on http://localhost:8501; "
                       "further arguments go to Streamlit, e.g. --server.port 8600.")
    p.set_defaults(func=cmd_dashboard)
    return parser


def main(argv: list[str] | None = None) -> int:
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

