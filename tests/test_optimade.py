"""OPTIMADE client against the ``optimade`` package's own reference server on 127.0.0.1."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import requests

from engine.apps.cli.main import main
from engine.io import NamedStructure, read_structures
from engine.io.optimade import (
    entry_structure,
    fetch_structures,
    providers,
    structure_record,
    write_jsonl,
)
from engine.materials.examples import EXAMPLES_DIR
from tests.optimade_server import free_port, optimade_jsonl, reference_server

#: La0.6Sr0.4CoO3 with the A site shared and 5 % oxygen vacancies, as a provider serves it.
LSC = {
    "lattice_vectors": [[3.85, 0, 0], [0, 3.85, 0], [0, 0, 3.85]],
    "cartesian_site_positions": [
        [0, 0, 0],
        [1.925, 1.925, 1.925],
        [1.925, 1.925, 0],
        [1.925, 0, 1.925],
        [0, 1.925, 1.925],
    ],
    "species": [
        {"name": "LaSr", "chemical_symbols": ["La", "Sr"], "concentration": [0.6, 0.4]},
        {"name": "Co", "chemical_symbols": ["Co"], "concentration": [1.0]},
        {"name": "O", "chemical_symbols": ["O", "vacancy"], "concentration": [0.95, 0.05]},
    ],
    "species_at_sites": ["LaSr", "Co", "O", "O", "O"],
    "nsites": 5,
    "elements": ["Co", "La", "O", "Sr"],
    "nelements": 4,
    "elements_ratios": [0.2, 0.12, 0.6, 0.08],
    "chemical_formula_reduced": "CoLa3O15Sr2",
    "chemical_formula_anonymous": "A15B3C2D",
    "chemical_formula_descriptive": "La0.6Sr0.4CoO2.85",
    "dimension_types": [1, 1, 1],
    "nperiodic_dimensions": 3,
    "structure_features": ["disorder"],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The reference server (mongomock backend, the wheel's example structures)."""
    with reference_server(tmp_path_factory.mktemp("optimade")) as url:
        yield url


@pytest.fixture(scope="module")
def sofc_server(tmp_path_factory):
    """The reference server holding the SOFC examples and one partially occupied perovskite."""
    tmp = tmp_path_factory.mktemp("optimade_sofc")
    entries = {it.id: it.structure for it in read_structures(EXAMPLES_DIR).items}
    entries["LSC-disordered"] = LSC
    with reference_server(tmp, optimade_jsonl(tmp / "sofc.jsonl", entries)) as url:
        yield url


@pytest.fixture(scope="module")
def reference_data() -> dict[str, dict]:
    """The reference server's structures by id, straight from the wheel."""
    from optimade.server import data

    raw = json.loads((Path(data.__file__).parent / "test_structures.json").read_text())
    return {d["task_id"]: d for d in raw}


def test_providers_come_from_the_bundled_list():
    ids = {p.id: p for p in providers()}
    assert {"mp", "oqmd", "cod", "alexandria", "jarvis"} <= set(ids)
    assert ids["mp"].index_url.startswith("https://")


def test_search_pages_and_converts(server, reference_data):
    seen = []
    result = fetch_structures(
        server,
        'elements HAS "Ag"',
        limit=100,
        page_size=3,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert result.complete and result.error is None
    assert result.provider == "exmpl" and result.available == 11
    assert seen == [(3, 11), (6, 11), (9, 11), (11, 11)]  # one call per page of 3
    ids = [it.id for it in result.items]
    assert len(ids) == len(set(ids)) == 11 and all(i.startswith("exmpl:mpf_") for i in ids)
    for item in result.items:
        raw = reference_data[item.id.split(":", 1)[1]]
        assert "Ag" in item.structure.composition.as_dict()
        np.testing.assert_allclose(item.structure.lattice.matrix, raw["lattice_vectors"], atol=1e-9)
        np.testing.assert_allclose(
            item.structure.cart_coords, raw["cartesian_site_positions"], atol=1e-9
        )
        symbol = {sp["name"]: sp["chemical_symbols"][0] for sp in raw["species"]}
        assert [s.symbol for s in item.structure.species] == [
            symbol[name] for name in raw["species_at_sites"]
        ]


def test_limit_stops_mid_page(server):
    seen = []
    result = fetch_structures(
        server,
        "nsites >= 1",
        limit=5,
        page_size=3,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert len(result.items) + len(result.errors) == 5
    assert seen == [(3, 5), (5, 5)]


def test_bad_filter_is_one_clear_message(server):
    result = fetch_structures(server, 'elements HAS ""Ag', limit=5)
    assert not result.items and not result.complete
    assert result.error == (
        f"the {server} database rejected the query (HTTP 400): Unable to "
        'parse filter elements HAS ""Ag'
    )
    assert "\n" not in result.error


def test_unreachable_provider(tmp_path):
    result = fetch_structures(f"http://127.0.0.1:{free_port()}", "nsites<3", timeout=5)
    assert not result.items
    assert result.error.startswith("cannot reach") and "no network" in result.error


def test_unknown_provider_names_the_known_ones():
    result = fetch_structures("nosuchdb", "")
    assert "unknown OPTIMADE provider 'nosuchdb'" in result.error and "mp" in result.error


class _DropsAfter(requests.Session):
    """A session whose network goes away after ``n`` requests."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.left = n

    def get(self, *args, **kwargs):
        if self.left == 0:
            raise requests.ConnectionError("network is unreachable")
        self.left -= 1
        return super().get(*args, **kwargs)


def test_failure_midway_keeps_what_was_fetched(server):
    result = fetch_structures(server, "", limit=10, page_size=4, session=_DropsAfter(1))
    assert len(result.items) + len(result.errors) == 4
    assert result.error.startswith("cannot reach the exmpl database")


def test_partial_occupancy_stays_disordered():
    entry = {
        "id": "x1",
        "type": "structures",
        "attributes": {
            "lattice_vectors": [[4, 0, 0], [0, 4, 0], [0, 0, 4]],
            "cartesian_site_positions": [[0, 0, 0], [2, 2, 2]],
            "species": [
                {"name": "LaSr", "chemical_symbols": ["La", "Sr"], "concentration": [0.7, 0.3]},
                {"name": "Co", "chemical_symbols": ["Co", "vacancy"], "concentration": [0.9, 0.1]},
            ],
            "species_at_sites": ["LaSr", "Co"],
            "nsites": 2,
            "dimension_types": [1, 1, 1],
            "nperiodic_dimensions": 3,
            "structure_features": ["disorder"],
        },
    }
    item = entry_structure(entry, "prov:x1", "test")
    assert isinstance(item, NamedStructure) and item.id == "prov:x1"
    s = item.structure
    assert not s[0].is_ordered and s[0].species.as_dict() == {"La": 0.7, "Sr": 0.3}
    assert s[1].species.as_dict() == {"Co": 0.9}  # the vacancy lowers the occupancy
    assert structure_record(item)["species"] == [{"La": 0.7, "Sr": 0.3}, {"Co": 0.9}]


def test_molecule_is_an_entry_error():
    entry = {
        "id": "m",
        "attributes": {
            "cartesian_site_positions": [[0, 0, 0]],
            "species": [{"name": "He", "chemical_symbols": ["He"], "concentration": [1.0]}],
            "species_at_sites": ["He"],
            "nsites": 1,
            "dimension_types": [0, 0, 0],
            "nperiodic_dimensions": 0,
            "lattice_vectors": None,
        },
    }
    err = entry_structure(entry, "p:m", "test")
    assert err.source == "p:m" and "molecule" in err.reason


def test_written_jsonl_reads_back(server, tmp_path):
    result = fetch_structures(server, 'elements HAS "Ac"', limit=20)
    path = tmp_path / "s.jsonl.gz"
    assert write_jsonl(result.items, path) == len(result.items) > 0
    # the reference data stack atoms on one point: read without the distance check
    back = read_structures(path, min_distance=0)
    assert [b.id for b in back.items] == [it.id for it in result.items]
    for a, b in zip(result.items, back.items):
        assert a.structure.matches(b.structure) or np.allclose(
            a.structure.frac_coords % 1, b.structure.frac_coords % 1
        )


def test_cli_fetch(server, tmp_path, capsys):
    out = tmp_path / "fetched.jsonl.gz"
    rc = main(
        [
            "fetch",
            "--provider",
            server,
            "--filter",
            'elements HAS ALL "Ag","Br"',
            "--limit",
            "5",
            "--output",
            str(out),
            "--quiet",
        ]
    )
    assert rc == 0
    lines = gzip.open(out, "rt").read().splitlines()
    assert [json.loads(x)["id"] for x in lines] == ["exmpl:mpf_220", "exmpl:mpf_446"]
    assert "wrote 2 structures from exmpl" in capsys.readouterr().out


def test_cli_fetch_bad_filter(server, tmp_path, capsys):
    rc = main(
        [
            "fetch",
            "--provider",
            server,
            "--filter",
            "nsites <<< 3",
            "--output",
            str(tmp_path / "x.jsonl"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        rc == 2
        and len(err) == 1
        and err[0].startswith(f"error: the {server} database rejected the query (HTTP 400)")
    )
    assert not (tmp_path / "x.jsonl").exists()


def test_real_structures_round_trip_through_a_server(sofc_server):
    local = {it.id: it.structure for it in read_structures(EXAMPLES_DIR).items}
    result = fetch_structures(sofc_server, 'NOT elements HAS "Sr" OR nelements<4', limit=100)
    got = {it.id.split(":", 1)[1]: it.structure for it in result.items}
    assert result.complete and not result.errors and set(got) == set(local)
    for ident, structure in got.items():
        assert structure.matches(local[ident]), ident
        assert len(structure) == len(local[ident])


def test_partial_occupancy_from_a_server(sofc_server, tmp_path):
    result = fetch_structures(sofc_server, 'elements HAS ALL "La","Sr","Co"', limit=10)
    assert [it.id for it in result.items] == ["exmpl:LSC-disordered"]
    s = result.items[0].structure
    assert s[0].species.as_dict() == {"La": 0.6, "Sr": 0.4}
    assert s[2].species.as_dict() == {"O": 0.95}
    assert (
        s.composition.reduced_formula == "La3Sr2Co5O14.25" or abs(s.composition["O"] - 2.85) < 1e-9
    )
