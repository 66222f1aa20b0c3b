"""Widgets generated from the engine's pydantic config classes.

A model family added to ``engine.models.MODEL_REGISTRY`` brings its ``config_class``; the Train
page draws one widget per field of that class (numbers, switches, choices), with the field's
default and description, so new families and new hyperparameters appear without page changes.
"""

from __future__ import annotations

import math
import typing
from typing import Any, Literal

import streamlit as st

#: Fields never shown (set by the page or meaningless in a browser).
# n_tasks: set from the targets; stop_after: for a refit on train + val (benchmarks/ablation.py)
HIDDEN = {"name", "device", "num_threads", "n_tasks", "stop_after"}

#: Help texts for fields whose class docstring does not say enough.
HELP: dict[str, str] = {
    "cutoff": "Neighbour search radius in Å (8 Å: general default; 6 Å metals; 4 Å first shell).",
    "max_neighbors": "Keep at most this many nearest neighbours per atom (12 in CGCNN).",
    "epochs": "Passes over the training set. Early stopping may end training sooner.",
    "batch_size": "Structures per optimisation step.",
    "lr": "Adam learning rate (1e-3 in the paper; 3e-3 with the cosine schedule works well).",
    "weight_decay": "L2 penalty on the weights (0 = none).",
    "scheduler": "cosine: smooth decay to 0; plateau: halve when validation stalls; none.",
    "early_stopping_patience": "Stop after this many epochs without validation improvement "
    "(0 = never stop early).",
    "seed": "Random seed: the same seed gives the same run.",
    "kind": "group: split by reduced formula (polymorphs stay together; recommended); "
    "random: split rows; column: take the split from a dataset column.",
    "val_fraction": "Share of rows in the validation set (picks the best epoch).",
    "test_fraction": "Share of rows in the test set (scored once, at the end).",
    "atom_fea_len": "Width of the atom vectors v_i and of the pooled crystal vector.",
    "n_conv": "Number of gated graph convolutions (K layers see K bonds away).",
    "h_fea_len": "Width of the dense layers after pooling.",
    "n_h": "Number of dense layers after pooling.",
    "gate": "Use the sigmoid gate of eq. 1 (switching it off is an ablation: far neighbours "
    "then weigh as much as near ones).",
    "atom_features": "cgcnn92: the fixed 92-number element table; embedding: learn a vector per "
    "element.",
    "dropout": "Dropout before the output layer.",
    "plateau_factor": "Learning-rate factor when validation stalls (plateau scheduler).",
    "plateau_patience": "Epochs without improvement before the plateau scheduler acts.",
    "gaussian_start": "First Gaussian centre μ_0 in Å.",
    "gaussian_stop": "Last Gaussian centre in Å.",
    "gaussian_step": "Spacing of the Gaussian centres in Å.",
    "gaussian_width": "σ of the Gaussians in Å.",
    "isolated_atoms": "What to do with an atom that has no neighbour within the cutoff.",
    "pad_like_original": "Pad atoms with fewer neighbours than the cap like the original code "
    "(only to reproduce the original pretrained models).",
    "column": "Dataset column holding train/val/test.",
}


def _unwrap_optional(annotation) -> tuple[Any, bool]:
    args = typing.get_args(annotation)
    if args and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0], True
    return annotation, False


def _number_step(default: float) -> float:
    d = abs(default)
    if d == 0:
        return 0.01
    if d >= 1:
        return 0.5 if d < 20 else 1.0
    return 10.0 ** math.floor(math.log10(d))


def config_widgets(
    config_class,
    *,
    key: str,
    skip: set[str] | None = None,
    overrides: dict[str, Any] | None = None,
    choices: dict[str, list] | None = None,
    columns: int = 3,
) -> dict[str, Any]:
    """Draw one widget per field of ``config_class``; return the values as a dict.

    Args:
        config_class: a pydantic model class (e.g. ``CGCNNConfig``).
        key: prefix of the widget keys.
        skip: field names not to draw (their defaults apply).
        overrides: default values to use instead of the class's.
        choices: a list of allowed values for a free field (drawn as a select box).
        columns: widgets per row.
    """
    skip = (skip or set()) | HIDDEN
    overrides = overrides or {}
    choices = choices or {}
    values: dict[str, Any] = {}
    fields = [(n, f) for n, f in config_class.model_fields.items() if n not in skip]
    cols = st.columns(columns) if fields else []
    for idx, (name, field) in enumerate(fields):
        where = cols[idx % columns]
        default = overrides.get(name, field.default)
        annotation, optional = _unwrap_optional(field.annotation)
        label = name.replace("_", " ")
        help_text = HELP.get(name) or field.description
        wkey = f"{key}.{name}"
        origin = typing.get_origin(annotation)
        if name in choices:
            opts = list(choices[name])
            index = opts.index(default) if default in opts else 0
            values[name] = where.selectbox(label, opts, index=index, key=wkey, help=help_text)
        elif origin is Literal:
            opts = list(typing.get_args(annotation))
            values[name] = where.selectbox(
                label,
                opts,
                index=opts.index(default) if default in opts else 0,
                key=wkey,
                help=help_text,
            )
        elif annotation is bool:
            values[name] = where.checkbox(label, value=bool(default), key=wkey, help=help_text)
        elif annotation is int:
            value = where.number_input(
                label, value=int(default or 0), step=1, key=wkey, help=help_text
            )
            values[name] = None if optional and value == 0 else int(value)
        elif annotation is float:
            d = float(default or 0.0)
            fmt = "%.0e" if 0 < abs(d) < 1e-2 else "%g"
            value = where.number_input(
                label, value=d, step=_number_step(d), format=fmt, key=wkey, help=help_text
            )
            values[name] = float(value)
        elif annotation is str:
            text = where.text_input(label, value=str(default or ""), key=wkey, help=help_text)
            values[name] = (text or None) if optional else text
        else:  # anything exotic keeps its default
            values[name] = default
    return values


def validation_message(exc: Exception) -> str:
    """A readable one-paragraph message from a pydantic ValidationError (or any error)."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            parts = []
            for err in errors():
                loc = ".".join(str(x) for x in err.get("loc", ()) if x != "__root__")
                parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
            return "; ".join(parts)
        except Exception:  # noqa: BLE001, S110 - fall back to the plain message
            pass
    return str(exc)
