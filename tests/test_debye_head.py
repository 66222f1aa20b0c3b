"""The Debye-shaped head (``cgcnn-debye``, issue 16 lever 2b): the Debye heat capacity, α from
γ, θ_D, B and V, and a 2-epoch model on ``aflow_agl/demo`` that saves, loads and predicts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.integrate import quad
from torch_geometric.data import Batch

from engine.catalog.names import load_model
from engine.core.config import CGCNNDebyeConfig, GraphConfig, SplitConfig, TrainConfig
from engine.graphs.builder import GraphBuilder
from engine.io.datasets import load_dataset
from engine.models import MissingInputError, build_inputs, build_model, model_config_from_dict
from engine.models.debye import K_B, debye_heat_capacity, log_thermal_expansion
from engine.models.multitask import MaskedTaskLosses
from engine.store.card import Normalizer
from engine.training import train
from tests.conftest import equivalent_cells

CTE, DEBYE = "agl_thermal_expansion_300K", "agl_debye"
TINY = dict(atom_fea_len=16, n_conv=2, h_fea_len=32)
T = 300.0


def _quad_cv(theta: float, temperature: float = T) -> float:
    """C_V/k_B per atom by scipy's adaptive quadrature of the Debye integral."""
    x_d = theta / temperature
    integral, _ = quad(lambda x: x**4 * math.exp(-x) / math.expm1(-x) ** 2, 0, x_d, limit=200)
    return 9.0 * integral / x_d**3


# ---------------------------------------------------------------------------------------------
# The physics


@pytest.mark.parametrize("theta", [5.0, 60.0, 300.0, 1000.0, 2200.0, 6000.0])
def test_debye_heat_capacity_matches_quadrature(theta):
    got = debye_heat_capacity(torch.tensor([theta], dtype=torch.float64), T)
    assert float(got[0]) == pytest.approx(_quad_cv(theta), rel=1e-10)
    single = debye_heat_capacity(torch.tensor([theta]), T)  # float32, as in the model
    assert float(single[0]) == pytest.approx(_quad_cv(theta), rel=1e-5)


def test_debye_heat_capacity_limits_and_gradient():
    low = debye_heat_capacity(torch.tensor([0.3, 3.0], dtype=torch.float64), T)
    assert low.tolist() == pytest.approx([3.0, 3.0], abs=1e-4)  # Dulong–Petit, θ_D ≪ T
    theta = torch.tensor([3e4, 1e5], dtype=torch.float64)
    high = debye_heat_capacity(theta, T)
    expected = 12 * math.pi**4 / 5 * (T / theta) ** 3  # Debye T³ law, θ_D ≫ T
    assert torch.allclose(high, expected, rtol=1e-9)
    # differentiable in θ_D, decreasing: dC_V/dθ_D < 0, and equal to a finite difference
    theta = torch.tensor([400.0], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(debye_heat_capacity(theta, T).sum(), theta)
    numeric = (_quad_cv(400.0 + 1e-3) - _quad_cv(400.0 - 1e-3)) / 2e-3
    assert float(grad) < 0 and float(grad) == pytest.approx(numeric, rel=1e-6)


def test_alpha_is_the_hand_formula():
    gamma, theta, bulk_gpa, volume = 1.8, 400.0, 120.0, 15.0
    cv = _quad_cv(theta)
    by_hand = gamma * cv * K_B / (bulk_gpa * 1e9 * volume * 1e-30)  # 1/K
    t = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
    heat = debye_heat_capacity(t(theta), T)
    ln_alpha = log_thermal_expansion(torch.log(t(bulk_gpa)), t(gamma), heat, t(volume))
    assert float(torch.exp(ln_alpha)[0]) == pytest.approx(by_hand, rel=1e-9)
    assert 1e-5 < by_hand < 1e-4  # an ordinary solid's volumetric α


# ---------------------------------------------------------------------------------------------
# The module


@pytest.fixture(scope="module")
def demo(shared_data):
    ds = load_dataset(shared_data / "aflow_agl" / "demo.jsonl.gz", limit=80)
    ds.table.loc[ds.table.index[:10], DEBYE] = np.nan  # some rows lack θ_D: masked
    return ds


def _module(demo, n=16, n_tasks=2):
    ds = demo.subset(range(20, 20 + n))
    module = build_model(CGCNNDebyeConfig(**TINY, n_tasks=n_tasks), GraphConfig())
    inputs = build_inputs(module, GraphBuilder(GraphConfig()), ds.structures, ds.ids)
    module.fit_statistics(inputs)
    norms = [Normalizer.fit(ds.targets(t), "log") for t in (CTE, DEBYE)[:n_tasks]]
    module.fit_target_scale(norms)
    return module.eval(), inputs, ds, norms


def test_physics_of_the_module_gives_alpha_by_the_formula(demo):
    module, inputs, ds, norms = _module(demo)
    with torch.no_grad():
        p = module.physics(Batch.from_data_list(inputs))
        z = module(Batch.from_data_list(inputs))
    volume = np.array([s.volume / len(s) for s in ds.structures])
    assert np.allclose(p["volume_atom_A3"].numpy(), volume, rtol=1e-6)
    for i in range(len(inputs)):
        g, th, b = (
            float(p[k][i]) for k in ("gruneisen", "debye_temperature_K", "bulk_modulus_GPa")
        )
        by_hand = g * _quad_cv(th) * K_B / (b * 1e9 * volume[i] * 1e-30)
        assert math.exp(float(p["log_thermal_expansion"][i])) == pytest.approx(by_hand, rel=1e-4)
        assert g > 0 and float(p["heat_capacity_kB"][i]) <= 3.0 + 1e-6
    # the outputs are the standardised ln α and ln θ_D of the two normalisers
    alpha = norms[0].decode(z[:, 0].double()).numpy()
    assert np.allclose(alpha, np.exp(p["log_thermal_expansion"].double().numpy()), rtol=1e-5)
    theta = norms[1].decode(z[:, 1].double()).numpy()
    assert np.allclose(theta, p["debye_temperature_K"].double().numpy(), rtol=1e-5)
    # the heads start where ln α and ln θ_D are their training means (over the same rows)
    assert abs(float(z[:, 0].mean())) < 1e-4 and z[:, 1].abs().max() < 1e-5
    assert p["gruneisen"].numpy() == pytest.approx(2.0)


def test_refuses_inputs_without_volume_and_plain_normalisers(demo):
    module, inputs, _, norms = _module(demo, n=4)
    bare = [d.clone() for d in inputs]
    for d in bare:
        del d.volume_atom
    with pytest.raises(MissingInputError, match="volume"):
        module(Batch.from_data_list(bare))
    with pytest.raises(ValueError, match="log"):
        module.fit_target_scale([Normalizer(mean=0.0, std=1.0), norms[1]])


def test_masked_huber_task_losses():
    pred = torch.tensor([[0.0, 1.0], [2.0, 5.0], [0.5, -3.0]])
    y = torch.tensor([[0.05, 0.0], [0.0, 0.0], [0.0, 9.0]])
    mask = torch.tensor([[True, True], [True, False], [True, False]])
    losses, present = MaskedTaskLosses.task_losses(pred, y, mask, loss="huber", delta=0.1)
    expected0 = torch.nn.functional.huber_loss(pred[:, 0], y[:, 0], delta=0.1)
    expected1 = torch.nn.functional.huber_loss(pred[:1, 1], y[:1, 1], delta=0.1)
    assert torch.allclose(losses, torch.stack([expected0, expected1]))
    assert present.tolist() == [True, True]


# ---------------------------------------------------------------------------------------------
# Training, saving, loading, predicting


@pytest.fixture(scope="module")
def trained(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("debye") / "debye"
    result = train(
        demo,
        [CTE, DEBYE],
        model=CGCNNDebyeConfig(**TINY),
        training=TrainConfig(epochs=2, batch_size=16, device="cpu", seed=3, loss="huber"),
        split=SplitConfig(seed=1),
        out=out,
    )
    return result, out


def test_trains_and_records_both_targets(trained, demo):
    result, path = trained
    card = result.model.card
    assert card.target == CTE and card.targets == [CTE, DEBYE]
    assert card.training.target_transform == "log" and card.training.loss == "huber"
    assert [n.transform for n in card.normalizers] == ["log", "log"]
    assert card.model["name"] == "cgcnn-debye" and card.model["n_tasks"] == 2
    assert len(result.history) == 2 and np.isfinite(result.history["val_loss"]).all()
    assert result.history["train_mae"].iloc[-1] < 1e-3  # in 1/K, not in ln units
    for part in ("train", "val"):
        m = card.metrics[part]
        assert np.isfinite(m["mae"]) and m["mae"] < 1e-3
        assert m[f"{DEBYE}/n"] <= m[f"{CTE}/n"]
    masked = card.metrics["train"][f"{DEBYE}/n"] + card.metrics["val"][f"{DEBYE}/n"]
    assert masked < card.metrics["train"]["n"] + card.metrics["val"]["n"] + card.metrics.get(
        "test", {}
    ).get("n", 0)
    assert model_config_from_dict(card.model) == CGCNNDebyeConfig(**TINY, n_tasks=2)


def test_round_trip_batched_and_one_at_a_time(trained, demo):
    result, path = trained
    reloaded = load_model(path)
    inputs = reloaded.prepare(demo.structures[:9])
    before = result.model.predict_tasks_graphs(inputs, device="cpu")
    after = reloaded.predict_tasks_graphs(inputs, batch_size=4, device="cpu")
    assert before.shape == (9, 2) and (before > 0).all()
    np.testing.assert_allclose(after, before, rtol=1e-6)
    single = np.vstack([reloaded.predict_tasks_graphs([x], batch_size=1) for x in inputs])
    np.testing.assert_allclose(single, after, rtol=1e-5)
    np.testing.assert_allclose(reloaded.predict_graphs(inputs), after[:, 0], rtol=1e-6)
    # the α predicted is the head's own α = γ·C_V/(B·V)
    with torch.no_grad():
        p = reloaded.module.physics(Batch.from_data_list(inputs))
    np.testing.assert_allclose(
        after[:, 0], np.exp(p["log_thermal_expansion"].double().numpy()), rtol=1e-5
    )
    saved = pd.read_csv(path / "predictions.csv")
    row = saved.iloc[0]
    i = demo.ids.index(str(row["id"]))
    again = reloaded.predict_structures([demo.structures[i]])[0]
    assert again == pytest.approx(row["prediction"], rel=1e-5)


@pytest.mark.parametrize("name", ["NaCl", "SrTiO3", "distorted"])
def test_invariant_to_rotation_translation_supercell_and_atom_order(trained, crystals, name):
    model = load_model(trained[1])
    structure = crystals[name]
    variants = equivalent_cells(structure)
    inputs = model.prepare([structure, *variants])
    base, *others = model.predict_tasks_graphs(inputs, device="cpu")
    for other in others:
        np.testing.assert_allclose(other, base, rtol=1e-5)


@pytest.mark.parametrize(
    "targets",
    [
        ["agl_debye"],  # θ_D alone would be trained as if it were α
        ["agl_debye", "agl_thermal_expansion_300K"],  # wrong order
        ["agl_thermal_expansion_300K", "agl_debye", "agl_heat_capacity_Cv_300K"],  # too many
    ],
)
def test_refuses_targets_that_are_not_alpha_then_theta(targets):
    from engine.training.run import resolve_targets

    with pytest.raises(ValueError, match="cgcnn-debye.*1/K, K"):
        resolve_targets("cgcnn-debye", targets, None)
    alpha_theta = ["agl_thermal_expansion_300K", "agl_debye"]
    assert resolve_targets("cgcnn-debye", alpha_theta, None)[1] == ["1/K", "K"]
    assert resolve_targets("cgcnn-debye", alpha_theta[:1], None)[1] == ["1/K"]
