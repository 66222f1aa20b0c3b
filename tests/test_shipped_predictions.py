"""Regression: every shipped model (assets/models/*) reproduces its own ``predictions.csv``.

A sample of the listed validation and test rows (:data:`SAMPLE` per model, spread over the file)
is predicted again from the structures of the model's training dataset, read from the shared
data directory, and compared with the stored values. A change in graph building, featurisation,
weight loading or decoding shows up here as a drift of the predictions.
"""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest

from engine.catalog.names import load_model
from engine.core.config import PHYSICS_INPUT_FAMILIES, PROJECT_ROOT, shipped_model_dir
from engine.inference.prediction import predict
from engine.io import DEFAULT_LIMITS
from engine.io.datasets import resolve_source
from engine.io.entries import NamedStructure
from engine.io.formats import parse_jsonl_line, record_id
from engine.models.physics_inputs import PHYSICS_INPUTS, PHYSICS_PROPERTY
from engine.store.directory import read_card

#: The physics inputs the shipped physics-input models were trained and evaluated with (the
#: physics route on every aflow row, ``benchmarks/physics_validation.py``), by ``auid``.
PHYSICS_CSV = PROJECT_ROOT / "docs" / "results" / "physics_aflow.csv"

SHIPPED = sorted(p.name for p in shipped_model_dir().iterdir() if (p / "model.json").is_file())
#: Rows checked per model (a spread sample, to keep the test fast).
SAMPLE = 12
#: Tolerance relative to the spread (standard deviation) of the stored predictions: float32
#: networks evaluated in other batches differ by far less than this.
RTOL_SPREAD = 1e-4


def _attach_physics(items: dict[str, NamedStructure]) -> None:
    """Put the precomputed physics inputs (``ok`` rows of :data:`PHYSICS_CSV`) on the items, as
    ``benchmarks/ablation.py`` did when it wrote the model's ``predictions.csv``."""
    table = pd.read_csv(PHYSICS_CSV)
    table = table[table["status"] == "ok"].set_index("auid")
    for ident, item in items.items():
        if ident in table.index:
            row = table.loc[ident]
            item.structure.properties[PHYSICS_PROPERTY] = {k: float(row[k]) for k in PHYSICS_INPUTS}


def _structures(path, wanted: set[str]) -> dict[str, NamedStructure]:
    """The wanted records of a JSON-lines dataset, parsed as the engine's reader parses them
    (only the wanted lines are turned into structures)."""
    found: dict[str, NamedStructure] = {}
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as fh:
        for k, line in enumerate(fh):
            if not line.strip():
                continue
            ident = record_id(json.loads(line), f"#{k}")
            if ident not in wanted or ident in found:
                continue
            ident, structure, _, _ = parse_jsonl_line(line, ident, DEFAULT_LIMITS)
            assert not isinstance(structure, Exception), f"{ident}: {structure}"
            found[ident] = NamedStructure(id=ident, structure=structure, source=str(path))
            if len(found) == len(wanted):
                break
    return found


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_reproduces_its_predictions(name, shared_data):
    directory = shipped_model_dir() / name
    card = read_card(directory)
    stored = pd.read_csv(directory / "predictions.csv", dtype={"id": str})
    assert len(stored) and {"id", "prediction"} <= set(stored.columns)
    path = resolve_source(card.dataset.source)
    if path is None:
        pytest.skip(f"{name}: its dataset {card.dataset.source} is not in {shared_data}")
    rows = stored.iloc[np.unique(np.linspace(0, len(stored) - 1, SAMPLE).astype(int))]
    rows = rows.drop_duplicates("id")
    items = _structures(path, set(rows["id"]))
    assert set(items) == set(rows["id"]), f"ids missing from {path}"
    if card.model.get("name") in PHYSICS_INPUT_FAMILIES:
        _attach_physics(items)

    table = predict(load_model(directory), [items[i] for i in rows["id"]]).table
    assert list(table["id"]) == list(rows["id"])
    tol = RTOL_SPREAD * float(stored["prediction"].std()) + 1e-12
    np.testing.assert_allclose(
        table["prediction"],
        rows["prediction"],
        rtol=0,
        atol=tol,
        err_msg=f"{name} no longer reproduces predictions.csv",
    )
    if "prediction_std" in rows and "prediction_std" in table:
        np.testing.assert_allclose(
            table["prediction_std"],
            rows["prediction_std"],
            rtol=1e-3,
            err_msg=f"{name}: σ differs from predictions.csv",
        )
