"""Fuel-cell materials: disordered crystals (virtual crystal, orderings), the SOFC library and
composition-on-prototype specs, the operating-range mode and calibration to measurements."""

from __future__ import annotations

import sys
import types

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import Lattice, Structure
from torch_geometric.data import Batch

from engine.apps.screening.electrolyte import Reference
from engine.apps.screening.operating_range import (
    mean_alpha_V,
    physics_note,
    range_column,
    range_ctes,
    rank_over_range,
)
from engine.apps.screening.ranking import REFERENCE_REASON, rank_candidates, screen
from engine.core.config import (
    ALIGNNConfig,
    AttentionFusionConfig,
    CGCNNConfig,
    EarlyFusionConfig,
    GraphConfig,
    LateFusionConfig,
    MultitaskConfig,
    RFMagpieConfig,
)
from engine.features.composition import magpie
from engine.features.elements import cgcnn_element_table
from engine.graphs.builder import GraphBuilder
from engine.inference.disorder import predict_structures
from engine.io import NamedStructure
from engine.materials.compositions import on_prototype, parse_spec
from engine.materials.disorder import DisorderSettings, OrderingError, orderings
from engine.materials.sofc import find_material, resolve_structure, sofc_batch
from engine.models import build_inputs, build_model
from engine.models.base import embed_atoms
from engine.uq.calibration import MIN_POINTS, apply_calibration, fit_calibration

CTE_MODEL = "cte-cgcnn-aflow"  # the fastest shipped thermal-expansion model


def _perovskite(a_site, b_site="Ti", o_occ=1.0, a=3.95) -> Structure:
    o = {"O": o_occ} if o_occ < 1 else "O"
    return Structure(
        Lattice.cubic(a),
        [a_site, b_site, o, o, o],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )


# ----------------------------------------------------------------------------------------------
# Virtual crystal


def test_graph_of_a_disordered_structure_carries_species_and_occupancies():
    graph = GraphBuilder(GraphConfig(cutoff=6.0))(_perovskite({"La": 0.6, "Sr": 0.4}, o_occ=0.95))
    assert graph.z[0].item() == 57  # the majority species
    assert graph.species_z[0, :2].tolist() == [57, 38]
    assert graph.species_w[0, :2].tolist() == pytest.approx([0.6, 0.4])
    assert graph.species_w[2].sum().item() == pytest.approx(0.95)  # O site with vacancies
    assert graph.edge_index.shape[1] == 5 * 12  # neighbour lists ignore what occupies the site


def test_virtual_crystal_features_are_occupancy_weighted_and_vacancies_scale_down():
    graph = GraphBuilder(GraphConfig(cutoff=6.0))(_perovskite({"La": 0.6, "Sr": 0.4}, o_occ=0.9))
    table = torch.from_numpy(cgcnn_element_table())
    x = embed_atoms(Batch.from_data_list([graph]), torch.nn.Identity(), table)
    assert torch.allclose(x[0], 0.6 * table[57] + 0.4 * table[38])
    assert torch.allclose(x[1], table[22])  # ordered Ti site: exactly Ti's row
    assert torch.allclose(x[2], 0.9 * table[8])  # the vacancy contributes a zero vector


FAMILIES = [
    CGCNNConfig(atom_fea_len=8, n_conv=1, h_fea_len=8),
    CGCNNConfig(atom_fea_len=8, n_conv=1, h_fea_len=8, atom_features="embedding"),
    EarlyFusionConfig(atom_fea_len=8, n_conv=1),
    AttentionFusionConfig(atom_fea_len=8, n_conv=1),
    MultitaskConfig(atom_fea_len=8, n_conv=1, n_tasks=2),
    ALIGNNConfig(atom_fea_len=8, n_alignn=1, n_gcn=1),
    RFMagpieConfig(n_estimators=5),
    LateFusionConfig(atom_fea_len=8, n_conv=1, rf_n_estimators=5),
]


@pytest.mark.parametrize(
    "config", FAMILIES, ids=lambda c: f"{c.name}-{getattr(c, 'atom_features', '')}"
)
def test_every_family_accepts_disordered_input(config):
    torch.manual_seed(0)
    graph = GraphConfig(cutoff=6.0)
    module = build_model(config, graph)
    structures = [
        _perovskite({"La": 0.6, "Sr": 0.4}, {"Co": 0.2, "Fe": 0.8}, 0.95),
        _perovskite("Sr"),
        _perovskite("Ba", "Zr", a=4.19),
    ]
    inputs = build_inputs(module, GraphBuilder(graph), structures)
    if getattr(inputs[0], "comp", None) is not None:  # composition branch: fractional formula
        assert torch.allclose(
            inputs[0].comp[0], torch.tensor(magpie(structures[0].composition), dtype=torch.float32)
        )
    module.fit_statistics(inputs)
    forest = getattr(module, "rf", module)
    if hasattr(forest, "fit_forest"):
        forest.fit_forest(inputs, np.array([0.0, 1.0, 2.0]), seed=0)
    if hasattr(module, "alpha"):
        module.alpha.fill_(0.5)
    module.eval()
    with torch.no_grad():
        out = module(Batch.from_data_list(inputs))
    assert out.shape[0] == 3 and torch.isfinite(out).all()


def _monotone_cgcnn():
    """A CGCNN whose output increases along the Sr → Ba element direction: positive head
    weights, convolutions that pass atoms through, and an embedding onto that direction."""
    torch.manual_seed(0)
    module = build_model(CGCNNConfig(atom_fea_len=4, n_conv=1, h_fea_len=4), GraphConfig())
    table = torch.from_numpy(cgcnn_element_table())
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
        direction = table[56] - table[38]
        module.embedding.weight.copy_(direction.repeat(4, 1))
        module.conv_to_fc.weight.fill_(0.5)
        module.fc_out.weight.fill_(1.0)
        module.convs[0].bn2.weight.fill_(1.0)
        module.convs[0].bn1.weight.fill_(1.0)
    return module.eval()


def test_solid_solution_predicts_between_its_end_members_monotone_in_x():
    module = _monotone_cgcnn()
    builder = GraphBuilder(GraphConfig())
    xs = np.linspace(0, 1, 6)
    structures = [
        _perovskite({"Sr": 1 - x, "Ba": x} if 0 < x < 1 else ("Ba" if x else "Sr")) for x in xs
    ]
    with torch.no_grad():
        pred = module(Batch.from_data_list(build_inputs(module, builder, structures))).numpy()
    assert np.all(np.diff(pred) > 0)
    assert pred[0] < pred[2] < pred[-1]


# ----------------------------------------------------------------------------------------------
# Orderings


def test_orderings_honour_occupancies_and_are_seeded():
    structure = on_prototype("La0.6Sr0.4Co0.2Fe0.8O2.85", "perovskite").structure
    settings = DisorderSettings(mode="orderings", k=3, seed=7)
    cells = orderings(structure, settings)
    assert len(cells) == 3 and all(c.is_ordered for c in cells)
    for cell in cells:
        amounts = cell.composition.get_el_amt_dict()
        per_fu = amounts["La"] + amounts["Sr"]  # formula units in the supercell
        assert amounts["La"] / per_fu == pytest.approx(0.6, abs=0.02)
        assert amounts["Fe"] / per_fu == pytest.approx(0.8, abs=0.02)
        assert amounts["O"] / per_fu == pytest.approx(2.85, abs=0.06)  # vacancies removed
    again = orderings(structure, settings)
    assert [c.species for c in cells] == [c.species for c in again]
    assert cells[0].species != cells[1].species


def test_orderings_refuse_an_occupancy_they_cannot_reach():
    structure = _perovskite({"La": 0.5013, "Sr": 0.4987})
    with pytest.raises(OrderingError, match="no supercell of at most 40 sites"):
        orderings(structure, DisorderSettings(mode="orderings", tolerance=0.001, max_atoms=40))


def test_ordered_structure_predicts_identically_through_both_paths():
    item = [NamedStructure(id="SrTiO3", structure=_perovskite("Sr", a=3.905), source="test")]
    virtual = predict_structures(CTE_MODEL, item).table
    ordered = predict_structures(CTE_MODEL, item, DisorderSettings(mode="orderings")).table
    assert virtual["prediction"].iloc[0] == ordered["prediction"].iloc[0]
    assert virtual["prediction_std"].iloc[0] == ordered["prediction_std"].iloc[0]


def test_disordered_inputs_get_sigma_and_domain_in_both_modes():
    items = [resolve_structure("LSCF"), resolve_structure("8YSZ")]
    virtual = predict_structures(CTE_MODEL, items).table
    assert np.isfinite(virtual["prediction_std"]).all()
    assert set(virtual["domain"]) <= {"in-domain", "borderline", "out-of-domain"}
    settings = DisorderSettings(mode="orderings", k=3)
    ordered = predict_structures(CTE_MODEL, items, settings).table
    assert ordered["n_orderings"].tolist() == [3, 3]
    assert (ordered["ordering_std"] > 0).all()
    assert (ordered["prediction_std"] >= ordered["ordering_std"]).all()
    assert set(ordered["domain"]) <= {"in-domain", "borderline", "out-of-domain"}


# ----------------------------------------------------------------------------------------------
# Names and prototypes


@pytest.mark.parametrize(
    "alias,name",
    [
        ("YSZ", "8YSZ"),
        ("8ysz", "8YSZ"),
        ("8-YSZ", "8YSZ"),
        ("GDC10", "10GDC"),
        ("GDC", "10GDC"),
        ("CGO", "10GDC"),
        ("SDC", "20SDC"),
        ("lscf", "LSCF6428"),
        ("BSCF", "BSCF5582"),
        ("LSCr", "LSCr"),
        ("NiO", "NiO"),
    ],
)
def test_abbreviations_resolve(alias, name):
    assert find_material(alias).name == name


def test_unknown_name_is_none():
    assert find_material("unobtainium") is None
    assert resolve_structure("unobtainium") is None


def test_every_library_material_builds_with_its_composition():
    batch = sofc_batch()
    assert len(batch.items) == 13
    lsgm = next(it for it in batch.items if it.id == "LSGM")
    amounts = lsgm.structure.composition.get_el_amt_dict()
    assert amounts == pytest.approx({"La": 0.9, "Sr": 0.1, "Ga": 0.8, "Mg": 0.2, "O": 2.85})


def test_composition_on_a_prototype_splits_sites_by_radius():
    bzy = on_prototype("BaZr0.8Y0.2O2.9", "perovskite")
    assert bzy.sites["A"] == {"Ba": 1.0}
    assert bzy.sites["B"] == pytest.approx({"Zr": 0.8, "Y": 0.2})
    assert bzy.sites["O"]["O"] == pytest.approx(2.9 / 3)
    gdc = on_prototype("Ce0.9Gd0.1O1.95", "fluorite")
    assert len(gdc.structure) == 12 and gdc.sites["O"]["O"] == pytest.approx(0.975)
    # occupancy-weighted radii: between the CeO2 and "GdO2" estimates
    ceo2 = on_prototype("CeO2", "fluorite").a
    assert ceo2 < gdc.a < ceo2 + 0.1 * (on_prototype("GdO2", "fluorite").a - ceo2) + 1e-9


@pytest.mark.parametrize(
    "spec,message",
    [
        ("CeO2.2 as fluorite", "more oxygen"),
        ("Sr1.2TiO3 as perovskite", "at most 1 fits"),
        ("LaCoO3 as spinel", "unknown prototype"),
    ],
)
def test_composition_specs_that_cannot_be_placed_say_why(spec, message):
    with pytest.raises(ValueError, match=message):
        resolve_structure(spec)


def test_parse_spec():
    assert parse_spec("La0.6Sr0.4Co0.2Fe0.8O3 as perovskite") == (
        "La0.6Sr0.4Co0.2Fe0.8O3",
        "perovskite",
    )
    assert parse_spec("Ce0.9Gd0.1O1.95 as a fluorite") == ("Ce0.9Gd0.1O1.95", "fluorite")
    assert parse_spec("LaCoO3") is None


def test_screen_names_and_the_electrolyte_is_not_its_own_candidate():
    result = screen(sofc_batch(["GDC", "LSCF", "8YSZ"]), "GDC", CTE_MODEL)
    table = result.table.set_index("id")
    assert table.loc["10GDC", "filter_reason"] == REFERENCE_REASON
    assert pd.isna(table.loc["10GDC", "rank"])
    assert set(result.ranked["id"]) == {"LSCF6428", "8YSZ"}


@pytest.mark.slow
def test_cli_screen_with_a_composition_on_a_prototype(tmp_path, capsys):
    from engine.apps.cli.main import main

    out = tmp_path / "out.csv"
    assert (
        main(
            [
                "screen",
                "--candidates",
                "La0.6Sr0.4Co0.2Fe0.8O3 as perovskite",
                "--electrolyte",
                "8YSZ",
                "--model",
                CTE_MODEL,
                "--output",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    table = pd.read_csv(out)
    assert table["id"].tolist() == ["La0.6Sr0.4Co0.2Fe0.8O3 as perovskite"]
    assert table["rank"].tolist() == [1] and table["electrolyte"].tolist() == ["8YSZ"]


def test_disordered_cif_through_predict(tmp_path):
    from pymatgen.io.cif import CifWriter

    from engine.apps.cli.main import main

    path, out = tmp_path / "lscf.cif", tmp_path / "out.csv"
    CifWriter(resolve_structure("LSCF").structure).write_file(path)
    assert main(["predict", "--model", CTE_MODEL, "--input", str(path), "--output", str(out)]) == 0
    table = pd.read_csv(out)
    assert len(table) == 1 and table["n_sites"].iloc[0] == 5
    assert np.isfinite(table.filter(like="agl_thermal_expansion_300K").to_numpy()).all()


def test_cli_predict_takes_a_composition_on_a_prototype(capsys):
    from engine.apps.cli.main import main

    assert main(["predict", "--model", CTE_MODEL, "--input", "Ce0.9Gd0.1O1.95 as fluorite"]) == 0
    assert "Ce0.9Gd0.1O1.95 as fluorite" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------
# Operating range


def test_range_mode_is_disabled_without_physics(monkeypatch):
    import importlib

    real = importlib.import_module

    def refuse(name, *args):
        if name == "engine.physics":
            raise ImportError("No module named 'engine.physics'")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", refuse)
    assert "disabled" in physics_note()
    with pytest.raises(RuntimeError, match="engine.physics"):
        range_ctes(
            [], pd.DataFrame({"id": [], "cte_vol_pred_per_K": [], "cte_vol_std_per_K": []}), 25, 800
        )


def _fake_physics(monkeypatch, a0=2e-5, a1=2e-8):
    """engine.physics with a linear α_V(T) = a0 + a1·T curve (1/K) for every structure."""
    fake = types.ModuleType("engine.physics")

    class ThermalSettings:
        def __init__(self, tmin=100.0, tmax=1300.0, tstep=10.0, **_):
            self.tmin, self.tmax, self.tstep = tmin, tmax, tstep

    def thermal_properties(structures, settings=None, *, progress=None):
        for s in structures:
            t = np.arange(settings.tmin, settings.tmax + 1e-9, settings.tstep)
            yield types.SimpleNamespace(
                id=s.id, status="ok", reason="", temperatures_K=t, alpha_V_per_K=a0 + a1 * t
            )

    fake.ThermalSettings, fake.thermal_properties = ThermalSettings, thermal_properties
    monkeypatch.setitem(sys.modules, "engine.physics", fake)
    return a0, a1


def test_range_mode_scales_the_curve_shape_to_the_learned_value(monkeypatch):
    a0, a1 = _fake_physics(monkeypatch)
    assert physics_note() is None
    item = NamedStructure(id="x", structure=_perovskite("Sr"), source="test")
    learned = pd.DataFrame({"id": ["x"], "cte_vol_pred_per_K": [3e-5], "cte_vol_std_per_K": [3e-6]})
    mean_t = (25 + 800) / 2 + 273.15  # the mean of a linear curve is its value at the mid-point
    ratio = (a0 + a1 * mean_t) / (a0 + a1 * 300)
    scaled = range_ctes([item], learned, 25, 800).iloc[0]
    assert scaled["cte_lin_mean_per_K"] == pytest.approx(1e-5 * ratio, rel=1e-9)
    assert scaled["cte_lin_mean_std_per_K"] == pytest.approx(1e-6 * ratio, rel=1e-9)
    raw = range_ctes([item], learned, 25, 800, method="physics").iloc[0]
    assert raw["cte_lin_mean_per_K"] == pytest.approx((a0 + a1 * mean_t) / 3, rel=1e-9)
    assert range_column(25, 800) == "cte_lin_mean_25_800C_per_K"


def test_mean_alpha_refuses_a_curve_that_does_not_cover_the_range():
    with pytest.raises(ValueError, match="covers"):
        mean_alpha_V(np.array([100.0, 900.0]), np.array([1e-5, 2e-5]), 25, 800)


def test_rank_over_range_reranks_by_the_range_mismatch():
    table = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "cte_source": ["predicted"] * 3,
            "cte_lin_used_per_K": [10e-6, 11e-6, 12e-6],
            "cte_lin_used_std_per_K": [0.0] * 3,
            "passes": [True] * 3,
            "filter_reason": [""] * 3,
            "rank": [1, 2, 3],
        }
    )
    ctes = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "reason": ["", "", "SCF failed"],
            "cte_lin_mean_per_K": [14e-6, 12.2e-6, np.nan],
            "cte_lin_mean_std_per_K": [1e-6, 1e-6, np.nan],
        }
    )
    out = rank_over_range(table, ctes, (12e-6, 0.0), 25, 800)
    assert out["id"].tolist() == ["b", "a", "c"]
    assert out["rank"].tolist()[:2] == [1, 2] and pd.isna(out["rank"].iloc[2])
    assert "SCF failed" in out["filter_reason"].iloc[2]
    assert out["mismatch_mean_25_800C_per_K"].iloc[0] == pytest.approx(0.2e-6)


# ----------------------------------------------------------------------------------------------
# Calibration


def test_calibration_recovers_a_known_line_despite_an_outlier():
    x = np.linspace(5e-6, 20e-6, 10)
    y = 1e-6 + 1.2 * x
    y[4] += 6e-6  # one gross outlier
    cal = fit_calibration(x, y)
    assert cal.intercept == pytest.approx(1e-6, abs=2e-8)
    assert cal.slope == pytest.approx(1.2, abs=2e-3)
    assert cal.loo_mae == pytest.approx(6e-6 / 10, rel=0.05)  # only the outlier's LOO error
    value, sigma = cal([10e-6], [0.0])
    assert value[0] == pytest.approx(13e-6, rel=1e-3) and sigma[0] >= 0


def test_calibration_needs_three_points():
    with pytest.raises(ValueError, match=f"at least {MIN_POINTS}"):
        fit_calibration([1e-5, 2e-5], [1e-5, 2e-5])


def test_applied_calibration_marks_values_and_reranks():
    table = rank_candidates(
        pd.DataFrame(
            {
                "id": ["a", "b"],
                "formula": ["A", "B"],
                "source": ["", ""],
                "elements": ["", ""],
                "n_sites": [1, 1],
                "cte_vol_pred_per_K": [30e-6, 36e-6],
                "cte_vol_std_per_K": [0.0, 0.0],
                "domain": ["in-domain"] * 2,
                "domain_distance": [0.1, 0.1],
                "e_form_eV_per_atom": [np.nan] * 2,
                "band_gap_eV": [np.nan] * 2,
                "model": ["m"] * 2,
            }
        ),
        Reference(name="E", cte_lin=12.9e-6, cte_lin_std=0.0, source="measured"),
    )[0]
    assert table["id"].tolist() == ["b", "a"]
    cal = fit_calibration([5e-6, 10e-6, 15e-6], [7e-6, 14e-6, 21e-6])  # measured = 1.4 × pred
    out, electrolyte = apply_calibration(table, cal, Reference("E", 12.9e-6, 0.0, "measured"))
    assert set(out["cte_source"]) == {"calibrated"} and electrolyte.source == "measured"
    assert out.set_index("id").loc["a", "cte_lin_used_per_K"] == pytest.approx(14e-6, rel=1e-3)
    assert out["id"].tolist() == ["a", "b"]  # 14.0 is now nearer 12.9 than 16.8


def test_cli_screen_range_disabled_and_enabled(tmp_path, capsys, monkeypatch):
    import importlib

    from engine.apps.cli.main import main

    args = [
        "screen",
        "--candidates",
        "sofc:LSCF,LSM,Ni",
        "--electrolyte",
        "GDC",
        "--model",
        CTE_MODEL,
        "--range",
        "25",
        "800",
        "--quiet",
    ]
    real = importlib.import_module

    def refuse(name, *rest):
        if name == "engine.physics":
            raise ImportError("No module named 'engine.physics'")
        return real(name, *rest)

    with monkeypatch.context() as m:
        m.setattr(importlib, "import_module", refuse)
        assert main([*args, "--output", str(tmp_path / "plain.csv")]) == 0
    assert "operating-range CTE disabled" in capsys.readouterr().err
    assert range_column(25, 800) not in pd.read_csv(tmp_path / "plain.csv").columns

    _fake_physics(monkeypatch)
    assert main([*args, "--output", str(tmp_path / "range.csv")]) == 0
    assert "ranked by the mean linear CTE over 25–800 °C" in capsys.readouterr().out
    table = pd.read_csv(tmp_path / "range.csv")
    assert np.isfinite(table[range_column(25, 800)]).all()
    mismatch = table["mismatch_mean_25_800C_per_K"].abs()
    assert mismatch.is_monotonic_increasing and table["rank"].tolist() == [1, 2, 3]
    # one curve shape for all: the range value is the 300 K value times one ratio
    ratio = table[range_column(25, 800)] / table["cte_lin_pred_per_K"]
    assert np.allclose(ratio, ratio.iloc[0])


def test_measured_value_found_under_the_library_name_of_an_abbreviation():
    from engine.apps.screening.electrolyte import resolve_electrolyte

    ref = resolve_electrolyte("GDC", CTE_MODEL, measured={"10GDC": 12.0e-6})
    assert ref.source == "measured" and ref.cte_lin == 12.0e-6
    assert ref.formula == resolve_structure("10GDC").structure.composition.reduced_formula
