"""Fitting a trained model's σ and applicability domain (:mod:`engine.uq.uncertainty`): runs the
model on its training, validation and test rows, then the pure numerics of :mod:`engine.uq`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from engine.uq.domain import BORDERLINE_QUANTILE, DEFAULT_K, OUT_OF_DOMAIN_QUANTILE, Domain
from engine.uq.sigma import binned_sigma, fit_scale, split_calibration
from engine.uq.uncertainty import Fitted, Uncertainty, UncertaintyCard, uncertainty_columns


def fit_uncertainty(
    model,
    inputs: Sequence,
    parts: dict[str, np.ndarray],
    *,
    ids: Sequence[str],
    formulas: Sequence[str],
    values: np.ndarray,
    k: int = DEFAULT_K,
    quantiles: tuple[float, float] = (BORDERLINE_QUANTILE, OUT_OF_DOMAIN_QUANTILE),
    device: str = "auto",
    predict_train: bool = False,
) -> Fitted:
    """Fit the domain (training vectors), the thresholds and σ (validation), and report the
    calibration on validation and test.

    Args:
        model: a loaded model or ensemble (``model.run`` with ``pooled``, ``tasks``, and
            ``members`` for an ensemble).
        inputs: prepared inputs of every row; parts: ``train``/``val``/``test`` row positions.
        ids, formulas: per row; values: labels (N, K) in the targets' units, NaN where missing.
        predict_train: also give the training rows' predictions (from the pass that gives their
            vectors).

    Raises:
        ValueError: the training or validation split is empty.
    """
    values = np.asarray(values, dtype=np.float64).reshape(len(inputs), -1)
    ids, formulas = np.asarray(ids, dtype=str), np.asarray(formulas, dtype=str)
    ensemble = model.n_members > 1
    if len(parts["train"]) == 0 or len(parts["val"]) == 0:
        raise ValueError("fitting σ and the domain needs training and validation crystals")
    wanted = ("tasks", "pooled", "members") if ensemble else ("tasks", "pooled")
    train_wanted = ("tasks", "pooled") if predict_train else ("pooled",)
    outs = {
        part: model.run(
            [inputs[i] for i in idx], train_wanted if part == "train" else wanted, device=device
        )
        for part, idx in parts.items()
        if len(idx)
    }
    train = parts["train"]
    domain = Domain.build(
        outs["train"]["pooled"], ids[train], formulas[train], values[train], model.targets, k=k
    )
    distance = {
        part: domain.distance(out["pooled"]) for part, out in outs.items() if part != "train"
    }
    borderline, out_of_domain = (float(q) for q in np.quantile(distance["val"], quantiles))
    errors = {part: outs[part]["tasks"] - values[parts[part]] for part in distance}
    n_tasks = values.shape[1]
    bins: dict[str, list] = {"bin_distance": [], "bin_sigma": [], "bin_count": []}
    if not ensemble:
        for t in range(n_tasks):
            centres, sigma, counts = binned_sigma(distance["val"], errors["val"][:, t])
            bins["bin_distance"].append(centres.tolist())
            bins["bin_sigma"].append(sigma.tolist())
            bins["bin_count"].append(counts.tolist())
    card = UncertaintyCard(
        sigma_source="ensemble spread" if ensemble else "validation residuals by domain distance",
        vectors=model.pooled_description,
        k=domain.k,
        n_train=len(train),
        dim=int(domain.vectors.shape[1]),
        borderline=borderline,
        out_of_domain=out_of_domain,
        borderline_quantile=quantiles[0],
        out_of_domain_quantile=quantiles[1],
        scale=[1.0] * n_tasks,
        **bins,
    )
    unc = Uncertainty(card=card, domain=domain)
    raw_val = unc.estimate(outs["val"]["pooled"], outs["val"].get("members")).raw
    card.scale = [fit_scale(errors["val"][:, t], raw_val[:, t]) for t in range(n_tasks)]
    columns, report = {}, {}
    for part in distance:
        est = unc.estimate(outs[part]["pooled"], outs[part].get("members"))
        for t, target in enumerate(model.targets):
            result = split_calibration(errors[part][:, t], est.std[:, t], est.raw[:, t], est.domain)
            if result is None:
                continue
            if t == 0:
                report[part] = result
            if n_tasks > 1:
                report[f"{part}/{target}"] = result
        columns[part] = pd.DataFrame(
            {"id": ids[parts[part]], **uncertainty_columns(est, model.targets)}
        )
    card.calibration = report
    return Fitted(
        card=card,
        domain=domain,
        predictions={p: out["tasks"] for p, out in outs.items() if "tasks" in out},
        columns=columns,
    )
