"""The physics route: quasi-harmonic Debye model, EOS failures, cache, CHGNet relaxation, CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.apps.cli.main import main
from engine.physics import ThermalSettings, thermal_properties
from engine.physics.qha import (
    EV_PER_A3_TO_GPA,
    QHAFailure,
    debye_function,
    debye_temperature,
    fit_eos,
    poisson_factor,
    quasi_harmonic,
)
from tests.conftest import nacl, srtio3

ROOT = Path(__file__).resolve().parent.parent
V0, B0, B1, N, MASS = 40.0, 100.0, 4.5, 2, 58.44  # Å³, GPa, –, atoms, amu (NaCl-like)


def vinet_energy(volumes: np.ndarray, v0=V0, b0=B0, b1=B1) -> np.ndarray:
    """Vinet E(V) in eV per cell with E(V0) = 0 (volumes in Å³, B0 in GPa)."""
    x = (np.asarray(volumes) / v0) ** (1 / 3)
    eta = 1.5 * (b1 - 1)
    b = b0 / EV_PER_A3_TO_GPA
    return 9 * b * v0 / eta**2 * (1 + (eta * (1 - x) - 1) * np.exp(eta * (1 - x)))


def test_debye_temperature_by_hand():
    # σ = 0.25: f = (3 / (2·(5/3)^1.5 + (5/9)^1.5))^(1/3) = 0.85995
    assert poisson_factor(0.25) == pytest.approx(0.859949, rel=1e-5)
    # (ħ/k_B)(6π² √V n)^(1/3) f √(B/M), V = 40e-30 m³, n = 2, B = 1e11 Pa, M = 58.44 amu → 605.6 K
    assert float(debye_temperature(V0, B0, N, MASS)) == pytest.approx(605.56, abs=0.05)
    assert float(debye_function(0.0)) == pytest.approx(1.0)
    assert float(debye_function(1.0)) == pytest.approx(0.674416, rel=1e-4)  # tabulated value
    assert float(debye_function(300.0)) == pytest.approx(np.pi**4 / (5 * 300.0**3), rel=1e-6)


def test_quasi_harmonic_on_a_synthetic_vinet_curve():
    volumes = V0 * np.linspace(0.88, 1.15, 11)
    fit = fit_eos(volumes, vinet_energy(volumes), N, "vinet")
    assert fit.b0_GPa == pytest.approx(B0, rel=1e-3) and fit.b1 == pytest.approx(B1, rel=1e-3)
    assert fit.v0_A3 == pytest.approx(V0, rel=1e-5)
    q = quasi_harmonic(fit, N, MASS, np.arange(100.0, 1301.0, 10.0))
    assert q.debye_temperature_K == pytest.approx(605.56, rel=1e-3)
    # γ = −d ln θ_D / d ln V ≈ B′/2 − 1/6 for θ_D ∝ V^(1/6) B_S^(1/2) near V0
    assert q.gruneisen == pytest.approx(B1 / 2 - 1 / 6, rel=0.05)
    alpha = q.alpha_V_per_K
    assert np.all(np.isfinite(alpha)) and np.all(alpha > 0) and q.truncated_at_K is None
    assert alpha[0] < alpha[20] < alpha[-1]  # rises with T
    # high-T limit of α = γ C_V / (B V) with C_V = 3 n k_B: 4.3e-5 1/K; QHA softening adds to it
    classical = (B1 / 2 - 1 / 6) * 3 * N * 1.380649e-23 / (B0 * 1e9 * V0 * 1e-30)
    at_1000 = float(np.interp(1000.0, q.temperatures_K, alpha))
    assert classical < at_1000 < 1.5 * classical


def test_eos_failure_paths():
    volumes = V0 * np.linspace(0.88, 1.15, 11)
    with pytest.raises(QHAFailure, match="lowest energy at the largest sampled volume"):
        fit_eos(volumes, -0.1 * volumes, N, "vinet")  # no minimum at all
    with pytest.raises(QHAFailure, match="non-finite"):
        fit_eos(volumes, np.full(11, np.nan), N, "vinet")
    # very soft, very anharmonic: G(V; T) loses its minimum below 300 K
    soft = fit_eos(volumes, vinet_energy(volumes, b0=2.0, b1=12.0), N, "vinet")
    with pytest.raises(QHAFailure, match="no minimum inside the stable volume range"):
        quasi_harmonic(soft, N, MASS, np.arange(100.0, 1301.0, 10.0))


@pytest.fixture
def fake_potential(monkeypatch):
    """CHGNet replaced by the synthetic Vinet curve (per-atom volume scaled); counts calls."""
    import engine.physics.potential as potential

    calls = []

    def energies(structures, batch_size=16):
        calls.append(len(structures))
        out = []
        for s in structures:
            if "Cl" not in s.composition:
                out.append(-0.01 * s.volume)  # no minimum: the failure path
            else:
                out.append(float(vinet_energy(s.volume / len(s) * N)) * len(s) / N)
        return np.array(out)

    monkeypatch.setattr(potential, "static_energies", energies)
    return calls


def test_thermal_properties_cache_and_failures(fake_potential):
    structures = [nacl(), srtio3()]
    first = list(thermal_properties(structures))
    assert [r.status for r in first] == ["ok", "failed"]
    ok, bad = first
    assert ok.bulk_modulus_GPa == pytest.approx(B0, rel=1e-3)
    assert ok.cte_vol_300K_per_K > 0 and ok.temperatures_K[0] == 100 and ok.reason == ""
    assert ok.potential.startswith("CHGNet 0.3.0 (chgnet ")
    assert "lowest energy" in bad.reason and bad.alpha_V_per_K.size == 0
    n_calls = len(fake_potential)
    second = list(thermal_properties(structures))
    assert len(fake_potential) == n_calls  # nothing recomputed
    assert all(r.from_cache for r in second)
    assert second[0].cte_vol_300K_per_K == ok.cte_vol_300K_per_K
    # a result-changing setting is a new cache key
    list(thermal_properties(structures[:1], ThermalSettings(poisson_ratio=0.3)))
    assert len(fake_potential) > n_calls


def test_import_does_not_load_chgnet():
    code = "import sys, engine.physics; print('chgnet' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "False"]


def test_relax_small_cell_with_chgnet():
    pytest.importorskip("chgnet")
    from engine.physics.potential import relax

    strained = nacl()
    strained.scale_lattice(strained.volume * 1.15)
    result = relax(strained, fmax=0.05, steps=200)
    assert result.converged and result.max_force_eV_per_A < 0.05
    assert result.volume_change < -0.05  # the 15 % stretched cell shrinks back
    assert 40.0 < result.structure.volume < 50.0  # CHGNet's NaCl: about 45 Å³ per 2 atoms


def test_cli_thermal_on_examples(tmp_path, capsys):
    pytest.importorskip("chgnet")
    out = tmp_path / "thermal.csv"
    code = main(
        ["thermal", "--input", str(ROOT / "assets" / "examples"), "--output", str(out), "--quiet"]
    )
    assert code == 0
    table = pd.read_csv(out)
    assert len(table) == 15
    for column in (
        "cte_vol_300K_per_K",
        "debye_temperature_K",
        "bulk_modulus_GPa",
        "bulk_modulus_derivative",
        "gruneisen",
        "status",
        "reason",
        "potential",
    ):
        assert column in table.columns
    ok = table[table["status"] == "ok"]
    assert len(ok) >= 13 and ok["cte_vol_300K_per_K"].between(5e-6, 3e-4).all()
    curves = pd.read_csv(tmp_path / "thermal_curves.csv")
    assert set(curves["id"]) == set(ok["id"])
    assert curves["temperature_K"].min() == 100 and curves["temperature_K"].max() <= 1300
    assert (
        curves["alpha_V_per_K"].notna().all() and curves["potential"].str.startswith("CHGNet").all()
    )


def test_cli_thermal_missing_input(capsys):
    assert main(["thermal", "--input", "no/such/folder"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: no/such/folder: no such file or folder"]


def test_background_job_reports_progress_and_results():
    pytest.importorskip("chgnet")
    import time

    from engine.apps.jobs.physics import start_thermal_job, thermal_job
    from engine.io import NamedStructure

    job = start_thermal_job([NamedStructure("NaCl", nacl(), "test")])
    deadline = time.time() + 120
    while thermal_job(job)[0]["status"] == "running" and time.time() < deadline:
        time.sleep(0.5)
    status, results = thermal_job(job)
    assert status["status"] == "done" and status["done"] == status["total"] == 1, status
    assert [r.id for r in results] == ["NaCl"] and results[0].status == "ok"
    assert thermal_job("no-such-job")[0]["status"] == "failed"


def test_relax_ions_is_a_separate_setting_and_cache_key():
    from engine.physics.cache import cache_key

    plain, ions = ThermalSettings(), ThermalSettings(relax_ions=True)
    assert "relax_ions" not in plain.cache_fields()  # keys computed before the option stay valid
    assert ions.cache_fields()["relax_ions"] is True and "relax_ions_steps" in ions.cache_fields()
    name = "CHGNet 0.3.0 (chgnet test)"
    assert cache_key(nacl(), plain, name) != cache_key(nacl(), ions, name)
    assert cache_key(nacl(), plain, name) == cache_key(nacl(), ThermalSettings(tstep=10.0), name)


def test_relax_ions_unconverged_volumes_are_reported(monkeypatch):
    """A fixed-cell relaxation that hits its step cap still gives its energy, and says so."""
    import engine.physics.potential as potential

    def fake_relax(structure, *, fmax, steps, relax_cell=True, optimizer="FIRE"):
        assert relax_cell is False and steps == 7
        energy = float(vinet_energy(structure.volume / len(structure) * N)) * len(structure) / N
        converged = structure.volume < 45.0
        return potential.RelaxResult(structure, converged, steps, 0.2, 0.0, energy)

    monkeypatch.setattr(potential, "relax", fake_relax)
    settings = ThermalSettings(relax_ions=True, relax_ions_steps=7, use_cache=False)
    (result,) = thermal_properties([nacl()], settings)
    assert result.status == "ok" and result.relax_ions
    assert result.bulk_modulus_GPa == pytest.approx(B0, rel=1e-3)
    assert result.ion_relax_unconverged > 0
    assert f"ions not converged at {result.ion_relax_unconverged} of " in result.reason
    assert result.summary()["ion_relax_unconverged"] == result.ion_relax_unconverged


def test_relax_ions_lowers_energies_with_chgnet():
    pytest.importorskip("chgnet")
    from engine.physics.thermal import energy_volume

    displaced = srtio3()
    displaced.translate_sites([1], [0.0, 0.0, 0.12], frac_coords=False)  # Ti off centre
    settings = dict(n_volumes=5, volume_min=0.9, volume_max=1.1, relax_ions_steps=60)
    v0, e0, _ = energy_volume(displaced, ThermalSettings(**settings))
    v1, e1, _ = energy_volume(displaced, ThermalSettings(relax_ions=True, **settings))
    np.testing.assert_allclose(v0, v1)
    assert np.all(e1 <= e0 + 1e-6), (e0, e1)  # relaxing the ions can only lower the energy
    assert np.all(e1 < e0 - 1e-3)  # and the off-centre Ti does relax
