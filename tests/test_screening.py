"""Thermal-expansion screening: ranking by |Δα|, filters, measured values, streaming in chunks,
bad candidate files, the CSV round trip, the mismatch matrix and the ``screen`` command."""

from __future__ import annotations

import gc
import gzip
import io
import json
import tracemalloc
import warnings
import zipfile

import numpy as np
import pandas as pd
import pytest

from engine.apps.screening.candidates import count_candidates, iter_candidates
from engine.apps.screening.electrolyte import (
    Reference,
    candidate_references,
    example_electrolytes,
    resolve_electrolyte,
)
from engine.apps.screening.filters import Filters, find_property_model
from engine.apps.screening.matrix import mismatch_matrix
from engine.apps.screening.measured import measured_table
from engine.apps.screening.predict import predict_candidates
from engine.apps.screening.ranking import (
    OUTPUT_COLUMNS,
    REFERENCE_REASON,
    ScreenResult,
    rank_candidates,
    read_screen_csv,
    screen,
)
from engine.inference.prediction import predict
from engine.io import read_structures
from engine.materials.examples import EXAMPLES_DIR
from tests.dashboard.helpers import PEROVSKITES

CTE = "agl_thermal_expansion_300K"
FRAC = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]


def record(k: int, rng) -> dict:
    a_el, b_el = PEROVSKITES[k % len(PEROVSKITES)]
    a = 3.8 + 0.5 * rng.random()
    return {
        "id": f"p{k}",
        "lattice": [[a, 0, 0], [0, a, 0], [0, 0, a]],
        "species": [a_el, b_el, "O", "O", "O"],
        "frac_coords": FRAC,
        "e_form": -2.0 - 0.1 * (k % 7),
        "band_gap": 0.3 * (k % 9),
    }


def write_jsonl(path, n: int, *, bad_lines=(), gz: bool = False):
    """``n`` cubic perovskites, one per line; line numbers in ``bad_lines`` are broken."""
    rng = np.random.default_rng(0)
    lines = []
    for k in range(n):
        lines.append(json.dumps(record(k, rng)))
        if k in bad_lines:
            lines.append('{"id": "broken", "lattice": [[1, 0, 0]]')
    text = "\n".join(lines) + "\n"
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def cif_text(a_el: str, b_el: str, a: float, name: str) -> str:
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.cif import CifWriter

    s = Structure(Lattice.cubic(a), [a_el, b_el, "O", "O", "O"], FRAC)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return str(CifWriter(s)).replace("data_", f"data_{name}_", 1)


@pytest.fixture(scope="module")
def cte_model():
    from engine.catalog.names import load_model

    return load_model("cte-cgcnn-aflow")


@pytest.fixture(scope="module")
def examples_screen(cte_model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return screen(EXAMPLES_DIR, "CeO2", cte_model)


@pytest.fixture(scope="module")
def property_models(tmp_path_factory):
    """Tiny CGCNNs for the formation energy (``e_form``, eV/atom) and band gap (eV), trained
    one epoch on 36 perovskites."""
    from engine.core.config import CGCNNConfig, SplitConfig, TrainConfig
    from engine.io.datasets import load_dataset
    from engine.training import train

    root = tmp_path_factory.mktemp("property-models")
    ds = load_dataset(write_jsonl(root / "toy.jsonl", 36))
    paths = {}
    for target in ("e_form", "band_gap"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = train(
                ds,
                target,
                model=CGCNNConfig(atom_fea_len=8, n_conv=1, h_fea_len=8),
                training=TrainConfig(epochs=1, batch_size=8),
                split=SplitConfig(kind="random", val_fraction=0.2, test_fraction=0.2),
                out=root / target,
                name=f"tiny-{target}",
            )
        paths[target] = result.path
    return paths


# ----------------------------------------------------------------------------------------------
# Ranking


def test_ranking_by_linear_mismatch_computed_by_hand(cte_model, examples_screen):
    own = predict(cte_model, str(EXAMPLES_DIR)).table.set_index("id")
    electrolyte = own.loc[own["formula"] == "CeO2"].iloc[0]
    e_lin, e_std = electrolyte["prediction"] / 3, electrolyte["prediction_std"] / 3
    result = examples_screen
    assert result.electrolyte.source == "predicted"
    assert result.electrolyte.cte_lin == pytest.approx(e_lin, rel=1e-5)
    assert result.electrolyte.cte_lin_std == pytest.approx(e_std, rel=1e-5)
    assert "CeO2_fluorite" in result.electrolyte.note

    by_hand = (own["prediction"] / 3 - e_lin).abs().sort_values(kind="stable")
    table = result.table
    assert list(table.columns) == list(OUTPUT_COLUMNS)
    # the electrolyte itself is the reference: listed last, not ranked
    reference = table.iloc[-1]
    assert reference["formula"] == "CeO2" and not reference["passes"]
    assert reference["filter_reason"] == REFERENCE_REASON and pd.isna(reference["rank"])
    table = table.iloc[:-1]
    by_hand = by_hand.drop(reference["id"])
    assert table["passes"].all() and list(table["rank"]) == list(range(1, 15))
    assert list(table["id"]) == list(by_hand.index)
    # atol: one float32 ulp of α_V/3 (the electrolyte is predicted alone, `own` in a batch)
    assert np.allclose(table["abs_mismatch_per_K"], by_hand.to_numpy(), rtol=1e-5, atol=1e-11)
    row = table.set_index("id").loc["SrFeO3_perovskite"]
    pred = own.loc["SrFeO3_perovskite"]
    assert row["cte_vol_pred_per_K"] == pytest.approx(pred["prediction"], rel=1e-6)
    assert row["cte_lin_pred_per_K"] == pytest.approx(pred["prediction"] / 3, rel=1e-6)
    assert row["cte_lin_std_per_K"] == pytest.approx(pred["prediction_std"] / 3, rel=1e-6)
    assert row["mismatch_per_K"] == pytest.approx(pred["prediction"] / 3 - e_lin, rel=1e-5)
    assert row["mismatch_std_per_K"] == pytest.approx(
        np.hypot(pred["prediction_std"] / 3, e_std), rel=1e-5
    )
    assert row["domain"] == pred["domain"] and row["cte_source"] == "predicted"
    assert set(table["domain"]) <= {"in-domain", "borderline", "out-of-domain"}


def test_measured_values_override_predictions_in_the_mismatch(cte_model, examples_screen):
    predicted = examples_screen.table.set_index("id")
    measured = measured_table(
        {"SrTiO3": (11.0e-6, 0.3e-6), "LaNiO3_pseudocubic": 13.0e-6, "YSZ": (10.5e-6, 0.2e-6)}
    )
    electrolyte = resolve_electrolyte("YSZ", cte_model, measured=measured)
    assert (electrolyte.source, electrolyte.cte_lin, electrolyte.cte_lin_std) == (
        "measured",
        10.5e-6,
        0.2e-6,
    )
    table, _ = rank_candidates(predicted.reset_index(), electrolyte, measured=measured)
    rows = table.set_index("id")
    sto = rows.loc["SrTiO3_perovskite"]  # matched by formula
    assert sto["cte_source"] == "measured" and sto["cte_lin_used_per_K"] == 11.0e-6
    assert sto["cte_lin_pred_per_K"] == pytest.approx(
        predicted.loc["SrTiO3_perovskite", "cte_lin_pred_per_K"]
    )
    assert sto["mismatch_per_K"] == pytest.approx(0.5e-6)
    assert sto["mismatch_std_per_K"] == pytest.approx(np.hypot(0.3e-6, 0.2e-6))
    lno = rows.loc["LaNiO3_pseudocubic"]  # matched by id, σ 0
    assert lno["cte_lin_used_per_K"] == 13.0e-6 and lno["cte_lin_used_std_per_K"] == 0.0
    assert lno["mismatch_per_K"] == pytest.approx(2.5e-6)
    other = rows.loc["CeO2_fluorite"]
    assert other["cte_source"] == "predicted" and np.isnan(other["cte_lin_measured_per_K"])
    assert other["mismatch_per_K"] == pytest.approx(other["cte_lin_pred_per_K"] - 10.5e-6)
    assert table["abs_mismatch_per_K"].is_monotonic_increasing

    # a measured electrolyte with a structure keeps its prediction beside the measured value
    ceo2 = resolve_electrolyte("CeO2", cte_model, measured={"CeO2": 12.3e-6})
    assert ceo2.source == "measured" and ceo2.cte_lin == 12.3e-6
    assert ceo2.cte_vol_pred == pytest.approx(
        predicted.loc["CeO2_fluorite", "cte_vol_pred_per_K"], rel=1e-5
    )


def test_electrolyte_specs(cte_model, tmp_path):
    typed = resolve_electrolyte("YSZ=10.5e-6", cte_model)
    assert (typed.name, typed.cte_lin, typed.cte_lin_std, typed.source) == (
        "YSZ",
        10.5e-6,
        0.0,
        "measured",
    )
    assert resolve_electrolyte(10.5e-6, cte_model).cte_lin == 10.5e-6
    with pytest.raises(ValueError, match="1/K"):
        resolve_electrolyte("10.5", cte_model)  # 10⁻⁶ K⁻¹ typed as 1/K
    with pytest.raises(ValueError, match="no measured value and no structure"):
        resolve_electrolyte("Unobtainium", cte_model)
    path = tmp_path / "mine.cif"
    path.write_text(cif_text("Ba", "Zr", 4.193, "mine"))
    from_file = resolve_electrolyte(str(path), cte_model)
    from_examples = resolve_electrolyte("BaZrO3", cte_model)
    assert from_file.name == "mine" and from_file.formula == "BaZrO3"
    assert from_file.cte_lin == pytest.approx(from_examples.cte_lin, rel=1e-4)
    library = resolve_electrolyte("Gd2Zr2O7", cte_model)  # only in the generated library
    assert library.source == "predicted" and "library" in library.note
    assert set(example_electrolytes()) >= {"CeO2", "ZrO2", "LaGaO3"}


def test_measured_table_checks():
    table = measured_table(
        pd.DataFrame({"material": ["CeO2", None, "LSM"], "cte_lin_per_K": [12.3e-6, None, 11.7e-6]})
    )
    assert list(table["material"]) == ["CeO2", "LSM"]  # the empty editor row is dropped
    assert list(table["cte_lin_std_per_K"]) == [0.0, 0.0]
    with pytest.raises(ValueError, match="not a plausible"):
        measured_table({"CeO2": 12.3})
    with pytest.raises(ValueError, match="twice"):
        measured_table({"CeO2": 12e-6, "Ce2O4": 13e-6})
    with pytest.raises(ValueError, match="has no material"):
        measured_table(pd.DataFrame({"material": [""], "cte_lin_per_K": [1e-5]}))
    with pytest.raises(ValueError, match="missing"):
        measured_table(pd.DataFrame({"material": ["CeO2"], "value": [1e-5]}))


# ----------------------------------------------------------------------------------------------
# Filters


def test_element_filters(cte_model, examples_screen):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = screen(
            EXAMPLES_DIR, "CeO2", cte_model, filters=Filters(include=["La"], exclude=["Co", "Mn"])
        )
    table = result.table.set_index("id")
    ranked = result.ranked
    assert set(ranked["formula"]) == {"LaFeO3", "LaNiO3", "LaGaO3", "LaCrO3"}
    assert list(ranked["rank"]) == [1, 2, 3, 4]
    assert ranked["abs_mismatch_per_K"].is_monotonic_increasing
    assert table.loc["LaCoO3_pseudocubic", "filter_reason"] == "contains excluded Co"
    assert table.loc["SrTiO3_perovskite", "filter_reason"] == "lacks La"
    assert table.loc["SrCoO3_perovskite", "filter_reason"] == "lacks La; contains excluded Co"
    # element-filtered candidates are not predicted, the rest exactly as without filters
    assert table.loc[~table["passes"], "cte_vol_pred_per_K"].isna().all()
    assert pd.isna(table.loc[~table["passes"], "rank"]).all()
    full = examples_screen.table.set_index("id")
    assert np.allclose(
        table.loc[ranked["id"], "cte_vol_pred_per_K"],
        full.loc[ranked["id"], "cte_vol_pred_per_K"],
        rtol=1e-6,
    )
    # the same filters applied to an unfiltered table give the same flags
    again, _ = rank_candidates(
        examples_screen.table,
        result.electrolyte,
        filters=Filters(include=["La"], exclude=["Co", "Mn"]),
    )
    assert list(again.loc[again["passes"], "id"]) == list(ranked["id"])
    with pytest.raises(ValueError, match="not an element"):
        Filters(include=["Xx"])
    with pytest.raises(ValueError, match="both included and excluded"):
        Filters(include=["La"], exclude=["La"])


def test_formation_energy_and_band_gap_filters(cte_model, property_models):
    eform, gap = property_models["e_form"], property_models["band_gap"]
    e_pred = predict(eform, str(EXAMPLES_DIR)).table.set_index("id")["prediction"]
    g_pred = predict(gap, str(EXAMPLES_DIR)).table.set_index("id")["prediction"]
    e_cut, g_cut = float(e_pred.median()), float(g_pred.median())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = screen(
            EXAMPLES_DIR,
            "ZrO2",
            cte_model,
            eform_model=eform,
            gap_model=gap,
            filters=Filters(max_e_form=e_cut, min_band_gap=g_cut),
        )
    table = result.table.set_index("id")
    assert np.allclose(table["e_form_eV_per_atom"], e_pred[table.index], rtol=1e-5)
    assert np.allclose(table["band_gap_eV"], g_pred[table.index], rtol=1e-5)
    want = (e_pred <= e_cut) & (g_pred >= g_cut)
    itself = "ZrO2_cubic_fluorite"  # the electrolyte: the reference, never ranked
    assert table.loc[itself, "filter_reason"] == REFERENCE_REASON
    want[itself] = False
    e_pred, g_pred = e_pred.drop(itself), g_pred.drop(itself)
    assert 0 < want.sum() < len(want)
    assert (table["passes"] == want[table.index]).all()
    high = table.loc[e_pred[e_pred > e_cut].index, "filter_reason"]
    assert high.str.contains("formation energy .* eV/atom above", regex=True).all()
    low = table.loc[g_pred[g_pred < g_cut].index, "filter_reason"]
    assert low.str.contains("band gap .* eV below", regex=True).all()
    assert list(result.ranked["rank"]) == list(range(1, want.sum() + 1))
    with pytest.raises(ValueError, match="band_gap"):
        predict_candidates(EXAMPLES_DIR, cte_model, gap_model=eform)  # wrong target


def test_property_models_found_by_target_and_filters_disabled_without_one(cte_model, monkeypatch):
    import engine.catalog.names

    found = find_property_model("band_gap")
    names = {m["name"]: m for m in engine.catalog.names.list_models()}
    if found is not None:  # shipped first, then the original CGCNN weights, then the user's
        assert found in {
            m["path"] or m["name"]
            for m in names.values()
            if "band_gap" in (m.get("targets") or [m["target"]])
        }
    only_cte = [m for m in engine.catalog.names.list_models() if m["target"] == CTE]
    monkeypatch.setattr(engine.catalog.names, "list_models", lambda: only_cte)
    assert find_property_model("e_form") is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = screen(
            EXAMPLES_DIR, "CeO2", cte_model, filters=Filters(max_e_form=-3.0, max_band_gap=1.0)
        )
    assert any("formation-energy filter disabled" in n for n in result.notes)
    assert any("band-gap filter disabled" in n for n in result.notes)
    others = result.table[result.table["formula"] != "CeO2"]  # CeO2 is the reference
    assert others["passes"].all() and result.table["e_form_eV_per_atom"].isna().all()


# ----------------------------------------------------------------------------------------------
# Streaming


def test_chunks_respect_the_size_and_keep_reading_order(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", 23, bad_lines=(4, 15))
    chunks = list(iter_candidates(str(path), chunk_size=5))
    assert [len(c.items) for c in chunks] == [5, 5, 5, 5, 3]
    assert [it.id for c in chunks for it in c.items] == [f"p{k}" for k in range(23)]
    errors = [e for c in chunks for e in c.errors]
    assert [e.source for e in errors] == ["c.jsonl line 6", "c.jsonl line 18"]  # no server path
    one_shot = read_structures(str(path))
    assert [it.id for c in chunks for it in c.items] == one_shot.ids
    assert [e.source for e in errors] == [e.source for e in one_shot.errors]
    assert count_candidates(str(path)) == 25
    exact = list(iter_candidates(str(write_jsonl(tmp_path / "d.jsonl", 10)), chunk_size=5))
    assert [len(c.items) for c in exact] == [5, 5]  # a boundary at the end: no empty chunk
    with pytest.raises(ValueError, match="chunk_size"):
        next(iter_candidates(str(path), chunk_size=0))


def test_streaming_memory_stays_bounded(tmp_path):
    small = write_jsonl(tmp_path / "small.jsonl", 150)
    big = write_jsonl(tmp_path / "big.jsonl", 600)

    def peak(run) -> int:
        gc.collect()
        tracemalloc.start()
        try:
            run()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    def stream(path, n):
        def run():
            sizes = [len(chunk.items) for chunk in iter_candidates(str(path), chunk_size=20)]
            assert max(sizes) == 20 and sum(sizes) == n

        return run

    def whole():
        assert len(read_structures(str(big)).items) == 600

    streamed = peak(stream(big, 600))
    assert streamed < 2 * peak(stream(small, 150))  # does not grow with the number of rows
    assert 4 * streamed < peak(whole)


def test_streamed_screen_equals_one_shot(cte_model, tmp_path):
    path = write_jsonl(tmp_path / "cands.jsonl", 40, bad_lines=(3,))
    calls = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small = screen(
            str(path),
            "CeO2",
            cte_model,
            chunk_size=7,
            progress=lambda done, total: calls.append((done, total)),
        )
        big = screen(str(path), "CeO2", cte_model, chunk_size=1000)
    pd.testing.assert_frame_equal(small.table, big.table, rtol=1e-5)
    assert len(small.table) == 40 and small.n_read == big.n_read == 41
    assert [str(e) for e in small.errors] == [str(e) for e in big.errors]
    assert len(calls) == 6 and calls[-1] == (41, 41)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    direct = predict(cte_model, read_structures(str(path)).items).table.set_index("id")
    rows = small.table.set_index("id")
    assert np.allclose(rows["cte_vol_pred_per_K"], direct.loc[rows.index, "prediction"], rtol=1e-5)

    # a folder of CIF files and a zip of them stream the same way
    folder = tmp_path / "cifs"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for k in range(11):
        a_el, b_el = PEROVSKITES[k]
        (folder / f"c{k:02d}.cif").write_text(
            cif_text(a_el, b_el, 3.8 + 0.4 * rng.random(), f"c{k}")
        )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(folder.iterdir()):
            zf.writestr(f"set/{p.name}", p.read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chunked = screen(str(folder), "CeO2", cte_model, chunk_size=3)
        whole = screen(str(folder), "CeO2", cte_model, chunk_size=100)
        zipped = screen(("set.zip", buf.getvalue()), "CeO2", cte_model, chunk_size=4)
    pd.testing.assert_frame_equal(chunked.table, whole.table, rtol=1e-5)
    assert list(zipped.table["id"]) == list(whole.table["id"])
    assert np.allclose(zipped.table["mismatch_per_K"], whole.table["mismatch_per_K"], rtol=1e-5)


def test_bad_candidate_files_are_listed_and_the_rest_screened(cte_model, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.cif").write_text(cif_text("Sr", "Ti", 3.905, "good"))
    (folder / "broken.cif").write_text("data_broken\n_cell_length_a 4\nnot a cif\n")
    (folder / "empty.vasp").write_text("")
    (folder / "notes.txt").write_text("not a structure")  # skipped, not an error
    write_jsonl(folder / "more.jsonl", 3, bad_lines=(1,))
    (folder / "squashed.jsonl").write_text(
        json.dumps(
            {
                "id": "squashed",
                "lattice": [[4, 0, 0], [0, 4, 0], [0, 0, 4]],
                "species": ["Sr", "Ti"],
                "frac_coords": [[0, 0, 0], [0.01, 0, 0]],
            }
        )
        + "\n"
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("z/ok.cif", cif_text("Ba", "Zr", 4.193, "ok"))
        zf.writestr("z/bad.cif", "garbage")
    (folder / "pack.zip").write_bytes(buf.getvalue())
    (folder / "corrupt.zip").write_bytes(b"PK\x03\x04 not really a zip")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = screen(
            [str(folder), str(tmp_path / "missing.cif")], "CeO2", cte_model, chunk_size=2
        )
    assert sorted(result.table["id"]) == ["good", "ok", "p0", "p1", "p2"]
    reasons = {e.source: e.reason for e in result.errors}  # file names, never server paths
    assert set(reasons) == {
        "mixed/broken.cif",
        "mixed/empty.vasp",
        "mixed/more.jsonl line 3",
        "mixed/squashed.jsonl line 1",
        "mixed/pack.zip/z/bad.cif",
        "mixed/corrupt.zip",
        "missing.cif",
    }
    assert "CIF" in reasons["mixed/broken.cif"]
    assert "empty" in reasons["mixed/empty.vasp"]
    assert "invalid JSON" in reasons["mixed/more.jsonl line 3"]
    assert "apart" in reasons["mixed/squashed.jsonl line 1"]
    assert "not found" in reasons["missing.cif"]
    assert result.n_read == 5 + 7


# ----------------------------------------------------------------------------------------------
# Export, reload, matrix, command line


def test_csv_export_reload_round_trip(cte_model, examples_screen, tmp_path):
    measured = {"SrTiO3": (11e-6, 0.3e-6)}
    table, _ = rank_candidates(
        examples_screen.table,
        examples_screen.electrolyte,
        measured=measured,
        filters=Filters(exclude=["Ni"]),
    )
    result = ScreenResult(table=table, electrolyte=examples_screen.electrolyte)
    path = tmp_path / "ranked.csv"
    result.to_csv(path)
    loaded = read_screen_csv(path)
    pd.testing.assert_frame_equal(loaded, table)
    again, _ = rank_candidates(
        loaded, examples_screen.electrolyte, measured=measured, filters=Filters(exclude=["Ni"])
    )
    pd.testing.assert_frame_equal(again, table)
    with pytest.raises(ValueError, match="not a screening table"):
        read_screen_csv(io.StringIO("id,formula\nx,NaCl\n"))


def test_mismatch_matrix_with_sigma(examples_screen):
    electrolytes = [
        Reference("YSZ", 10.5e-6, 0.2e-6, "measured"),
        Reference("GDC", 12.5e-6, 0.0, "measured"),
    ]
    rows = candidate_references(examples_screen.table, top=3)
    assert [r.name for r in rows] == list(examples_screen.table["id"][:3])
    matrix = mismatch_matrix(rows, electrolytes)
    assert matrix.delta.shape == (3, 2) and list(matrix.delta.columns) == ["YSZ", "GDC"]
    first = rows[0]
    assert matrix.delta.iloc[0, 0] == pytest.approx(first.cte_lin - 10.5e-6)
    assert matrix.sigma.iloc[0, 0] == pytest.approx(np.hypot(first.cte_lin_std, 0.2e-6))
    assert matrix.sigma.iloc[0, 1] == pytest.approx(first.cte_lin_std)
    long = matrix.long()
    assert list(long.columns) == [
        "candidate",
        "electrolyte",
        "mismatch_per_K",
        "mismatch_std_per_K",
    ]
    assert len(long) == 6 and long["mismatch_per_K"].iloc[1] == matrix.delta.iloc[0, 1]
    assert long["mismatch_std_per_K"].iloc[1] == matrix.sigma.iloc[0, 1]
    twice = mismatch_matrix(rows, [*electrolytes, electrolytes[0]]).long()  # repeated names
    assert len(twice) == 9 and list(twice["electrolyte"][:3]) == ["YSZ", "GDC", "YSZ"]


def test_cli_screen_end_to_end(tmp_path, capsys):
    from engine.apps.cli.main import main

    measured = tmp_path / "measured.csv"
    measured.write_text(
        "material,cte_lin_per_K,cte_lin_std_per_K\nYSZ,10.5e-6,0.2e-6\nLaCrO3,9.5e-6,0.3e-6\n"
    )
    out, matrix = tmp_path / "ranked.csv", tmp_path / "matrix.csv"
    code = main(
        [
            "screen",
            "--model",
            "cte-cgcnn-aflow",
            "--candidates",
            str(EXAMPLES_DIR),
            "--electrolyte",
            "YSZ",
            "--electrolyte",
            "CeO2",
            "--measured",
            str(measured),
            "--exclude",
            "Ni",
            "--output",
            str(out),
            "--matrix",
            str(matrix),
            "--matrix-top",
            "4",
            "--chunk-size",
            "4",
            "--quiet",
        ]
    )
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "electrolyte YSZ: linear CTE 10.50 ± 0.20 10⁻⁶ K⁻¹ (measured" in printed.out
    table = read_screen_csv(out)
    assert len(table) == 15 and table["passes"].sum() == 12
    ranked = table[table["passes"]]
    assert list(ranked["rank"]) == list(range(1, 13))
    assert ranked["abs_mismatch_per_K"].is_monotonic_increasing
    lco = table.set_index("formula").loc["LaCrO3"]
    assert lco["cte_source"] == "measured" and lco["mismatch_per_K"] == pytest.approx(-1e-6)
    assert (table["electrolyte_cte_lin_per_K"] == 10.5e-6).all()
    assert set(table.loc[~table["passes"], "formula"]) == {"Ni", "NiO", "LaNiO3"}
    m = pd.read_csv(matrix)
    assert len(m) == 8 and set(m["electrolyte"]) == {"YSZ", "CeO2"}
    assert list(m["candidate"].unique()) == list(ranked["id"][:4])

    code = main(["screen", "--candidates", str(EXAMPLES_DIR), "--electrolyte", "Unobtainium"])
    assert code == 2 and "no measured value and no structure" in capsys.readouterr().err
    code = main(["screen", "--candidates", str(tmp_path / "nothing"), "--electrolyte", "1e-5"])
    assert code == 2 and "neither a file" in capsys.readouterr().err


def test_the_automatic_cte_model_needs_only_the_structure_and_has_the_lowest_val_mae():
    """``--model auto``: a physics-input family (CHGNet inputs, ~0.5 s per structure) is never
    the automatic choice, even with the lowest validation MAE; among the others, the lowest."""
    from engine.apps.screening.filters import PROPERTY_TARGETS, find_property_model
    from engine.catalog.names import list_models
    from engine.core.config import PHYSICS_INPUT_FAMILIES

    shipped = [
        m
        for m in list_models()
        if m["source"] == "shipped" and m["target"] in PROPERTY_TARGETS["cte"]
    ]
    assert any(m["family"] in PHYSICS_INPUT_FAMILIES for m in shipped)  # the rule is exercised
    eligible = [m for m in shipped if m["family"] not in PHYSICS_INPUT_FAMILIES]
    best = min(eligible, key=lambda m: m["metrics"]["val"]["mae"])
    assert find_property_model("cte") == best["path"]
