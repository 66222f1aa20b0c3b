"""σ and the applicability domain (engine.uq), calibration and ensembles (engine.training.ensembles),
and their CLI."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest

from engine.apps.cli.main import main
from engine.catalog.names import list_models, load_model
from engine.core.config import CGCNNConfig, SplitConfig, TrainConfig, user_model_dir
from engine.inference.prediction import embed, evaluate, nearest_training, predict
from engine.io import NamedStructure
from engine.io.datasets import load_dataset
from engine.store.card import ModelLoadError
from engine.store.directory import EnsembleModel, LoadedModel
from engine.training.ensembles import calibrate_model, train_ensemble
from engine.training.uq_fit import fit_uncertainty
from engine.uq.domain import Domain, domain_flags
from engine.uq.sigma import (
    EXPECTED_1SIGMA,
    EXPECTED_2SIGMA,
    MAD_TO_SIGMA,
    binned_sigma,
    calibration_curve,
    coverage,
    fit_scale,
    isotonic,
    sigma_at,
    split_calibration,
    within,
)
from tests.dashboard.helpers import perovskite, write_dataset

CTE = "agl_thermal_expansion_300K"
TINY = {
    "model": CGCNNConfig(atom_fea_len=8, n_conv=1, h_fea_len=8),
    "split": SplitConfig(kind="random", val_fraction=0.2, test_fraction=0.2),
}


# ----------------------------------------------------------------------------------------------
# Crafted cases: a stand-in model whose inputs are rows [pooled vector..., member predictions...]


class Stub:
    """Inputs are rows: the first ``dim`` entries are the pooled vector, the rest the
    predictions of ``n_members`` members (one target)."""

    name = "stub"
    targets = ["y"]
    pooled_description = "crafted vectors"

    def __init__(self, dim: int, n_members: int = 1):
        self.dim, self.n_members = dim, n_members

    def run(self, inputs, outputs, *, device="auto", batch_size=64):
        x = np.asarray(inputs, dtype=float).reshape(len(inputs), -1)
        members = x[:, self.dim :].T[:, :, None]  # (M, B, 1)
        out = {
            "pooled": x[:, : self.dim],
            "members": members,
            "tasks": members.mean(0),
            "prediction": members.mean(0)[:, 0],
        }
        return {k: out[k] for k in outputs}


def _fit(stub: Stub, train_x, val_x, test_x=None, *, values=None, predictions=None):
    """fit_uncertainty on crafted vectors; predictions default to the labels (zero error)."""
    parts_x = [train_x, val_x] + ([test_x] if test_x is not None else [])
    vectors = np.vstack(parts_x)
    n = len(vectors)
    values = np.zeros(n) if values is None else values
    predictions = values[:, None] if predictions is None else predictions.reshape(n, -1)
    inputs = list(np.hstack([vectors, predictions]))
    sizes = np.cumsum([0] + [len(p) for p in parts_x])
    parts = {
        name: np.arange(sizes[i], sizes[i + 1])
        for i, name in enumerate(["train", "val", "test"][: len(parts_x)])
    }
    parts.setdefault("test", np.arange(0))
    return fit_uncertainty(
        stub,
        inputs,
        parts,
        ids=[f"c{i}" for i in range(n)],
        formulas=["X"] * n,
        values=values[:, None],
    )


def _brute_distance(train, query, k=5):
    """Mean distance to the k nearest training rows after standardising with train mean/std."""
    mean, std = train.mean(0), train.std(0)
    a, b = (train - mean) / std, (query - mean) / std
    d = np.sqrt(((b[:, None, :] - a[None, :, :]) ** 2).sum(-1))
    return np.sort(d, axis=1)[:, :k].mean(1)


def test_domain_flags_on_crafted_clusters():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 5, (20, 3))
    train = np.repeat(centres, 10, axis=0) + rng.normal(0, 0.01, (200, 3))  # near-duplicates
    val = centres[rng.integers(0, 20, 100)] + rng.normal(0, 0.3, (100, 3))
    far = np.array([[100.0, -100.0, 100.0]])
    fitted = _fit(Stub(3), train, val, far)
    card = fitted.card

    expected = np.quantile(_brute_distance(train, val), [0.90, 0.99])
    assert (card.borderline, card.out_of_domain) == pytest.approx(expected, rel=1e-5)
    assert card.k == 5 and card.n_train == 200 and card.dim == 3
    unc = fitted.uncertainty
    assert set(unc.estimate(train).domain) == {"in-domain"}  # training crystals themselves
    assert unc.estimate(far).domain.tolist() == ["out-of-domain"]
    assert fitted.columns["test"]["domain"].tolist() == ["out-of-domain"]
    val_flags = unc.estimate(val).domain
    assert (val_flags == "in-domain").mean() == pytest.approx(0.90, abs=0.011)
    assert (val_flags == "out-of-domain").sum() == 1  # above the 99th percentile of 100
    # mean and std are stored as float32
    assert unc.estimate(val).distance == pytest.approx(_brute_distance(train, val), rel=1e-5)


def test_domain_flag_boundaries():
    flags = domain_flags(np.array([0.5, 1.0, 1.0001, 2.0, 2.5, np.nan]), 1.0, 2.0)
    assert flags.tolist() == [
        "in-domain",
        "in-domain",
        "borderline",
        "borderline",
        "out-of-domain",
        "unknown",
    ]


def test_sigma_grows_with_distance():
    rng = np.random.default_rng(1)
    train = rng.uniform(0, 1, (400, 1))
    val = rng.uniform(0, 4, (600, 1))
    noise = 0.05 + np.abs(val[:, 0] - 0.5)  # the true error scale grows away from the data
    errors = rng.normal(0, noise)
    values = np.zeros(1000)
    predictions = np.concatenate([np.zeros(400), errors])
    fitted = _fit(Stub(1), train, val, values=values, predictions=predictions)
    card = fitted.card
    sigma = np.array(card.bin_sigma[0])
    assert len(sigma) == 10 and np.all(np.diff(sigma) >= 0)
    assert sigma[-1] > 4 * sigma[0]
    unc = fitted.uncertainty
    near, mid, far, farther = unc.estimate(np.array([[0.5], [2.0], [4.0], [9.0]])).std[:, 0]
    assert near < mid < far < farther  # proportional growth beyond the last bin too
    # the fitted σ follows the true noise where the data is
    assert mid == pytest.approx(1.55, rel=0.35)


def test_binned_sigma_is_robust_and_non_decreasing():
    distance = np.arange(1.0, 10.0)
    errors = np.array([1, -1, 0.5, 3, -3, 2, 2, -2, 1])  # bin medians of |e|: 1, 3, 2
    centres, sigma, counts = binned_sigma(distance, errors, n_bins=3)
    assert centres.tolist() == [2.0, 5.0, 8.0] and counts.tolist() == [3, 3, 3]
    c = MAD_TO_SIGMA
    assert sigma == pytest.approx([c, c * np.sqrt(6.5), c * np.sqrt(6.5)])  # bins 2, 3 pooled
    assert sigma_at(np.array([0.0, 2.0, 3.5, 16.0]), centres, sigma) == pytest.approx(
        [c, c, c * (1 + np.sqrt(6.5)) / 2, 2 * c * np.sqrt(6.5)]
    )


def _pool_adjacent_violators(values, weights):
    """The hand-written weighted PAVA that :func:`engine.uq.sigma.isotonic` replaced (reference)."""
    blocks = []  # [mean, weight, count]
    for v, w in zip(values, weights):
        blocks.append([float(v), float(w), 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, n2 = blocks.pop()
            v1, w1, n1 = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return np.repeat([b[0] for b in blocks], [b[2] for b in blocks])


def test_isotonic_matches_pool_adjacent_violators_and_the_sigma_curve_is_unchanged():
    rng = np.random.default_rng(7)
    values = np.array([4.0, 1.0, 3.0, 2.0, 5.0, 0.5, 6.0, 6.0, 5.5, 9.0])
    weights = np.array([1, 3, 2, 2, 1, 4, 1, 2, 5, 1], dtype=float)
    fitted = isotonic(values, weights)
    assert fitted == pytest.approx(_pool_adjacent_violators(values, weights), abs=1e-12)
    assert np.all(np.diff(fitted) >= 0)  # monotone
    # every run of equal fitted values is the weighted mean of its values
    runs = np.split(np.arange(len(values)), np.flatnonzero(np.diff(fitted) > 1e-12) + 1)
    assert len(runs) < len(values)  # the example pools
    for run in runs:
        assert fitted[run] == pytest.approx(np.average(values[run], weights=weights[run]))
    # the σ curve of binned_sigma on a fixed noisy example, with the old fit of σ²
    distance = rng.uniform(0, 3, 700)
    errors = rng.normal(0, 0.2 + 0.3 * np.sin(3 * distance) ** 2, 700)
    centres, sigma, counts = binned_sigma(distance, errors)
    order = np.argsort(distance, kind="stable")
    variance = [
        (MAD_TO_SIGMA * np.median(np.abs(errors[g]))) ** 2
        for g in np.array_split(order, len(counts))
    ]
    assert sigma == pytest.approx(np.sqrt(_pool_adjacent_violators(variance, counts)), abs=1e-12)


def test_calibration_shares_by_hand():
    errors = np.array([-0.5, 0.9, 1.0, 1.5, -2.5, 3.0])
    sigma = np.ones(6)
    assert within(errors, sigma, 1) == pytest.approx(3 / 6)
    assert within(errors, sigma, 2) == pytest.approx(4 / 6)
    assert within(errors, 2 * sigma, 1) == pytest.approx(4 / 6)
    # level 0.5: ±0.674σ holds only -0.5; level 0.9: ±1.645σ holds four
    assert coverage(errors, sigma, [0.5, 0.9]).tolist() == pytest.approx([1 / 6, 4 / 6])
    curve = calibration_curve(errors, sigma, [0.5, 0.9])
    assert curve["expected"].tolist() == [0.5, 0.9]
    flags = np.array(["in-domain"] * 4 + ["out-of-domain"] * 2)
    report = split_calibration(errors, sigma, sigma / 2, flags)
    assert report.n == 6 and report.within_1sigma == pytest.approx(0.5)
    assert report.within_1sigma_unscaled == pytest.approx(1 / 6)  # |e| ≤ 0.5
    assert report.mae_by_domain == pytest.approx({"in-domain": 0.975, "out-of-domain": 2.75})
    assert report.n_by_domain == {"in-domain": 4, "out-of-domain": 2}


@pytest.mark.parametrize("claimed", [0.25, 3.0])
def test_scale_fixes_a_miscalibrated_sigma(claimed):
    rng = np.random.default_rng(2)
    true_sigma = rng.uniform(0.5, 2.0, 4000)
    errors = rng.normal(0, true_sigma)
    raw = claimed * true_sigma  # σ off by a constant factor
    before = within(errors, raw, 1)
    assert abs(before - EXPECTED_1SIGMA) > 0.25
    scale = fit_scale(errors, raw)
    assert scale == pytest.approx(1 / claimed, rel=0.05)
    assert within(errors, scale * raw, 1) == pytest.approx(EXPECTED_1SIGMA, abs=0.02)
    assert within(errors, scale * raw, 2) == pytest.approx(EXPECTED_2SIGMA, abs=0.015)


def test_ensemble_spread_is_scaled_on_validation():
    rng = np.random.default_rng(3)
    n_train, n_val = 50, 3000
    spread = rng.uniform(0.5, 2.0, n_val)
    # members scatter with std `spread / 2`; the truth is off by N(0, spread): raw σ is too small
    members = rng.normal(0, 1, (n_val, 3))
    members = (members - members.mean(1, keepdims=True)) / members.std(1, ddof=1, keepdims=True)
    members = members * (spread / 2)[:, None] + rng.normal(0, spread)[:, None]
    train = np.zeros((n_train, 3))
    vectors = rng.normal(0, 1, (n_train + n_val, 2))
    rows = np.vstack(
        [np.hstack([vectors[:n_train], train]), np.hstack([vectors[n_train:], members])]
    )
    stub = Stub(2, n_members=3)
    parts = {
        "train": np.arange(n_train),
        "val": np.arange(n_train, n_train + n_val),
        "test": np.arange(0),
    }
    fitted = fit_uncertainty(
        stub,
        list(rows),
        parts,
        ids=[str(i) for i in range(len(rows))],
        formulas=["X"] * len(rows),
        values=np.zeros((len(rows), 1)),
    )
    card = fitted.card
    assert card.sigma_source == "ensemble spread" and card.bin_sigma == []
    est = fitted.uncertainty.estimate(vectors[n_train:], members.T[:, :, None])
    assert est.raw[:, 0] == pytest.approx(np.std(members, axis=1, ddof=1))
    assert card.scale[0] == pytest.approx(2.0, rel=0.1)
    val = card.calibration["val"]
    assert val.within_1sigma_unscaled < 0.45
    assert val.within_1sigma == pytest.approx(EXPECTED_1SIGMA, abs=0.03)


# ----------------------------------------------------------------------------------------------
# Real models on the toy perovskites


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    return load_dataset(write_dataset(root / "perovskites.jsonl"))


@pytest.fixture(scope="module")
def tiny(toy, tmp_path_factory):
    """A CGCNN trained for 3 epochs; its directory."""
    from engine.training import train

    out = tmp_path_factory.mktemp("tiny") / "tiny-cte"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(toy, CTE, training=TrainConfig(epochs=3, batch_size=8), out=out, **TINY)
    return out


@pytest.fixture(scope="module")
def ensemble(toy, tmp_path_factory):
    """An ensemble of 3 tiny CGCNNs (seeds 4, 5, 6); its directory."""
    out = tmp_path_factory.mktemp("ens") / "tiny-ensemble"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_ensemble(
            toy, CTE, k=3, out=out, training=TrainConfig(epochs=3, batch_size=8, seed=4), **TINY
        )
    return out


def _items(*specs):
    return [
        NamedStructure(id=f"{a}{b}{lat}", structure=perovskite(a, b, lat), source="test")
        for a, b, lat in specs
    ]


def _without_uncertainty(src, dst):
    """A copy of a model directory as saved before σ and the domain existed."""
    shutil.copytree(src, dst)
    (dst / "domain.npz").unlink()
    card = json.loads((dst / "model.json").read_text())
    del card["uncertainty"]
    (dst / "model.json").write_text(json.dumps(card))
    predictions = pd.read_csv(dst / "predictions.csv")
    predictions.drop(columns=["prediction_std", "domain_distance", "domain"]).to_csv(
        dst / "predictions.csv", index=False
    )
    return dst


def test_training_saves_the_domain_and_predict_reproduces_it(tiny, toy):
    with np.load(tiny / "domain.npz", allow_pickle=False) as raw:
        assert set(raw.files) == {"vectors", "mean", "std", "ids", "formulas", "labels", "targets"}
        assert raw["vectors"].dtype == np.float32
        n_train = len(raw["ids"])
        labels = dict(zip(raw["ids"], raw["labels"][:, 0]))
    model = load_model(tiny)
    assert model.card.uncertainty.n_train == n_train == model.card.dataset.n_train
    table = dict(zip(toy.ids, toy.table[CTE]))
    assert all(labels[i] == pytest.approx(table[i]) for i in labels)
    saved = pd.read_csv(tiny / "predictions.csv")
    val = saved[saved["split"] == "val"]
    by_id = {it.id: it for it in toy.items}
    out = predict(model, [by_id[i] for i in val["id"]]).table
    for column in ("prediction_std", "domain_distance"):
        assert out[column].to_numpy() == pytest.approx(val[column].to_numpy(), rel=1e-4)
    assert out["domain"].tolist() == val["domain"].tolist()
    assert set(out["domain"]) <= {"in-domain", "borderline", "out-of-domain"}
    assert (out["prediction_std"] > 0).all()
    report = model.card.uncertainty.calibration["val"]
    assert report.n == len(val)
    assert report.within_1sigma == pytest.approx(within(val["error"], val["prediction_std"], 1))


def test_a_far_structure_is_out_of_domain_and_neighbours_are_listed(tiny, toy):
    model = load_model(tiny)
    train_item = next(it for it in toy.items if it.id in set(model.uncertainty.domain.ids))
    far = _items(("Cs", "Pb", 7.5))
    out = predict(model, [train_item, *far]).table
    assert out["domain"].tolist()[1] == "out-of-domain"
    assert out["domain_distance"].iloc[1] > model.card.uncertainty.out_of_domain
    near = nearest_training(model, [train_item], k=3)
    assert near["rank"].tolist() == [1, 2, 3] and near["distance"].is_monotonic_increasing
    first = near.iloc[0]
    assert first["id"] == train_item.id and first["distance"] == pytest.approx(0, abs=1e-5)
    assert first["label"] == pytest.approx(
        float(toy.table.loc[toy.table["id"] == train_item.id, CTE].iloc[0])
    )
    five = nearest_training(model, [train_item])  # the domain's k = 5
    assert five["distance"].mean() == pytest.approx(out["domain_distance"].iloc[0], rel=1e-6)


def test_ensemble_mean_and_std_are_the_members(ensemble, toy):
    shutil.copytree(ensemble, user_model_dir() / "tiny-ensemble")
    model = load_model("tiny-ensemble")  # by name
    assert isinstance(model, EnsembleModel) and isinstance(model, LoadedModel)
    assert model.n_members == 3 and model.card.ensemble.seeds == [4, 5, 6]
    assert model.card.uncertainty.sigma_source == "ensemble spread"
    members = [load_model(ensemble / "members" / str(i)) for i in range(3)]
    items = _items(("Sr", "Ti", 3.9), ("La", "Co", 4.1), ("Cs", "Pb", 7.5))
    table = predict(model, items).table
    each = np.array([predict(m, items).table["prediction"].to_numpy() for m in members])
    assert table["prediction"].to_numpy() == pytest.approx(each.mean(0), rel=1e-9)
    scale = model.card.uncertainty.scale[0]
    assert table["prediction_std"].to_numpy() == pytest.approx(
        scale * each.std(0, ddof=1), rel=1e-9
    )
    vectors, _ = embed(model, items)
    assert vectors == pytest.approx(embed(members[0], items)[0])  # member 0's space
    # the ensemble's validation predictions are the member mean too
    saved = pd.read_csv(ensemble / "predictions.csv").set_index("id")
    member_val = [
        pd.read_csv(ensemble / "members" / str(i) / "predictions.csv").set_index("id")["prediction"]
        for i in range(3)
    ]
    mean = pd.concat(member_val, axis=1).mean(axis=1)
    assert saved["prediction"].to_numpy() == pytest.approx(mean[saved.index].to_numpy())
    assert model.card.metrics["val"]["mae"] == pytest.approx(
        saved.loc[saved["split"] == "val", "error"].abs().mean()
    )
    summary = next(m for m in list_models() if m["name"] == "tiny-ensemble")
    assert summary["ensemble_size"] == 3 and summary["has_uncertainty"]


def test_ensemble_members_must_match(ensemble, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(ensemble, broken)
    card_path = broken / "members" / "1" / "model.json"
    card = json.loads(card_path.read_text())
    card["graph"]["cutoff"] = 6.0
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match="member 'members/1' differs .* graph config"):
        load_model(broken)


def _ensemble_of(out, member_dirs):
    """An ensemble directory made of copies of ``member_dirs`` (member 0 first), as
    ``benchmarks/ablation.py ship`` makes one; no σ fitted."""
    from engine.store.card import EnsembleInfo
    from engine.store.directory import read_card, write_card

    for i, member in enumerate(member_dirs):
        shutil.copytree(member, out / "members" / str(i))
    first = read_card(out / "members" / "0")
    members = [f"members/{i}" for i in range(len(member_dirs))]
    update = {"name": out.name, "metrics": {}, "uncertainty": None}
    write_card(out, first.model_copy(update={**update, "ensemble": EnsembleInfo(members=members)}))
    return out


def test_mixed_ensemble_of_alignn_and_cgcnn_is_the_member_mean(toy, ensemble, tmp_path):
    from engine.core.config import ALIGNNConfig
    from engine.training import train

    alignn = tmp_path / "alignn"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(
            toy,
            CTE,
            model=ALIGNNConfig(atom_fea_len=8, n_alignn=1, n_gcn=1, h_fea_len=8),
            training=TrainConfig(epochs=2, batch_size=8),
            split=TINY["split"],
            out=alignn,
        )
    cgcnn = [ensemble / "members" / str(i) for i in range(2)]
    mixed = load_model(_ensemble_of(tmp_path / "mixed", [alignn, *cgcnn]))
    assert isinstance(mixed, EnsembleModel) and mixed.families == ["alignn", "cgcnn", "cgcnn"]
    items = _items(("Sr", "Ti", 3.9), ("La", "Co", 4.1), ("Cs", "Pb", 7.5))
    each = [predict(load_model(m), items).table["prediction"].to_numpy() for m in [alignn, *cgcnn]]
    assert predict(mixed, items).table["prediction"].to_numpy() == pytest.approx(
        np.mean(each, axis=0), rel=1e-6
    )
    assert not mixed.has_fusion_weights
    # the line graph ALIGNN needs is not in a CGCNN member's inputs: ALIGNN cannot follow one
    with pytest.raises(ModelLoadError, match="member 'members/1' differs .* model config"):
        load_model(_ensemble_of(tmp_path / "wrong-order", [cgcnn[0], alignn]))


def test_old_model_without_domain_predicts_and_can_be_calibrated(tiny, toy, tmp_path):
    old = _without_uncertainty(tiny, tmp_path / "old")
    model = load_model(old)
    assert model.uncertainty is None
    result = predict(model, _items(("Sr", "Ti", 3.9), ("Ba", "Zr", 4.2)))
    assert result.table["prediction_std"].isna().all()
    assert result.table["domain_distance"].isna().all()
    assert result.table["domain"].tolist() == ["unknown", "unknown"]
    assert "calibrate" in result.notes[0]
    _, frame = evaluate(model, toy, CTE)
    assert set(frame["domain"]) == {"unknown"}
    with pytest.raises(ValueError, match="no fitted σ"):
        nearest_training(model, _items(("Sr", "Ti", 3.9)))

    calibrated = calibrate_model(old, toy)
    reference = load_model(tiny).card.uncertainty
    assert calibrated.card.uncertainty.borderline == pytest.approx(reference.borderline, rel=1e-5)
    assert calibrated.card.uncertainty.bin_sigma[0] == pytest.approx(
        reference.bin_sigma[0], rel=1e-5
    )
    reloaded = load_model(old)
    assert reloaded.uncertainty is not None
    saved = pd.read_csv(old / "predictions.csv")
    expected = pd.read_csv(tiny / "predictions.csv")
    assert saved["prediction_std"].to_numpy() == pytest.approx(
        expected["prediction_std"].to_numpy(), rel=1e-5
    )
    assert saved["domain"].tolist() == expected["domain"].tolist()
    # the predictions and metrics are rebuilt, and equal those recorded at training
    assert list(saved.columns) == list(expected.columns)
    assert saved["id"].tolist() == expected["id"].tolist()
    assert saved["prediction"].to_numpy() == pytest.approx(expected["prediction"], rel=1e-5)
    for split, metrics in load_model(tiny).card.metrics.items():
        assert reloaded.card.metrics[split]["mae"] == pytest.approx(metrics["mae"], rel=1e-5)


def test_calibrate_refuses_other_data(tiny, toy, tmp_path):
    old = _without_uncertainty(tiny, tmp_path / "old")
    with pytest.raises(ValueError, match="content hash differs"):
        calibrate_model(old, toy.subset(np.arange(30)))


def test_missing_domain_file_is_refused(tiny, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny, copy)
    (copy / "domain.npz").unlink()
    with pytest.raises(ModelLoadError, match="domain.npz is missing"):
        load_model(copy)


def test_domain_round_trip(tmp_path):
    rng = np.random.default_rng(4)
    domain = Domain.build(
        rng.normal(size=(30, 4)),
        [f"i{k}" for k in range(30)],
        ["X"] * 30,
        rng.normal(size=(30, 2)),
        ["a", "b"],
        k=5,
    )
    domain.save(tmp_path / "domain.npz")
    back = Domain.load(tmp_path / "domain.npz", k=5)
    query = rng.normal(size=(3, 4))
    assert back.distance(query) == pytest.approx(domain.distance(query))
    assert back.labels == pytest.approx(domain.labels) and back.targets == ["a", "b"]
    assert back.ids.tolist() == domain.ids.tolist()


# ----------------------------------------------------------------------------------------------
# Command line


@pytest.fixture
def cifs(tmp_path):
    from tests.dashboard.helpers import cif_bytes

    folder = tmp_path / "cifs"
    folder.mkdir()
    for a, b, lat in (("Sr", "Ti", 3.9), ("Cs", "Pb", 7.5)):
        (folder / f"{a}{b}.cif").write_bytes(cif_bytes(perovskite(a, b, lat), a + b))
    return folder


def test_cli_predict_csv_has_std_and_domain(tiny, cifs, tmp_path):
    out = tmp_path / "pred.csv"
    assert main(["predict", "--model", str(tiny), "--input", str(cifs), "--output", str(out)]) == 0
    table = pd.read_csv(out)
    std = [c for c in table.columns if "std" in c]
    assert std == [f"{CTE} std (1/K)"] and (table[std[0]] > 0).all()
    assert set(table["domain"]) <= {"in-domain", "borderline", "out-of-domain"}
    assert table.set_index("id").loc["CsPb", "domain"] == "out-of-domain"
    assert "domain_distance" in table


def test_cli_old_model_notes_and_calibrate(tiny, toy, cifs, tmp_path, capsys):
    old = _without_uncertainty(tiny, tmp_path / "old")
    out = tmp_path / "pred.csv"
    assert main(["predict", "--model", str(old), "--input", str(cifs), "--output", str(out)]) == 0
    assert "calibrate" in capsys.readouterr().err
    table = pd.read_csv(out)
    assert table[f"{CTE} std (1/K)"].isna().all() and set(table["domain"]) == {"unknown"}
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(old),
                "--data",
                toy.source,
                "--target",
                CTE,
                "--json",
                "--calibration",
            ]
        )
        == 2
    )
    assert "calibrate" in capsys.readouterr().err

    assert main(["calibrate", str(old), "--data", toy.source]) == 0
    printed = capsys.readouterr().out
    assert "within 1σ" in printed and "out-of-domain above" in printed
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(old),
                "--data",
                toy.source,
                "--target",
                CTE,
                "--json",
                "--calibration",
            ]
        )
        == 0
    )
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 <= metrics["within_1sigma"] <= metrics["within_2sigma"] <= 1
    assert sum(v for k, v in metrics.items() if k.startswith("n_")) == metrics["n"]


def test_cli_train_ensemble(toy, tmp_path, capsys):
    out = tmp_path / "ens"
    assert (
        main(
            [
                "train",
                "--data",
                toy.source,
                "--target",
                CTE,
                "--out",
                str(out),
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--atom-fea-len",
                "8",
                "--n-conv",
                "1",
                "--split",
                "random",
                "--val-fraction",
                "0.2",
                "--ensemble",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    assert "σ from ensemble spread" in capsys.readouterr().out
    card = json.loads((out / "model.json").read_text())
    assert card["ensemble"]["members"] == ["members/0", "members/1"]
    assert card["ensemble"]["seeds"] == [0, 1]
    assert isinstance(load_model(out), EnsembleModel)


def test_domain_neighbours_equal_scikit_learn():
    from sklearn.neighbors import NearestNeighbors

    from engine.uq.domain import Domain

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(300, 8)).astype(np.float32)
    domain = Domain(
        vectors=vectors,
        mean=vectors.mean(0),
        std=vectors.std(0),
        ids=np.arange(300).astype(str),
        formulas=np.full(300, "X"),
        labels=np.zeros((300, 1)),
        targets=["y"],
        k=5,
    )
    query = rng.normal(size=(2100, 8))
    distance, index = domain.neighbours(query)
    reference = NearestNeighbors().fit(domain._standardise(vectors))
    ref_distance, ref_index = reference.kneighbors(domain._standardise(query), n_neighbors=5)
    assert np.allclose(distance, ref_distance, atol=1e-9)
    assert np.array_equal(index, ref_index)
