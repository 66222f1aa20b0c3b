"""Dask screening on a 2-worker LocalCluster equals the one-process run row for row."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import pandas as pd
import pytest

distributed = pytest.importorskip("distributed", reason="needs the [dask] extra")

from engine.apps.cli.main import main  # noqa: E402
from engine.apps.screening.dask import (  # noqa: E402
    predict_dask,
    run_partitions,
    screen_predictions_dask,
)
from engine.apps.screening.partitions import WORKER_MODELS, Partition  # noqa: E402
from engine.apps.screening.predict import predict_candidates  # noqa: E402
from engine.apps.screening.ranking import read_screen_csv  # noqa: E402
from engine.catalog.names import load_model  # noqa: E402
from engine.io import record_id  # noqa: E402
from engine.materials.examples import EXAMPLES_DIR  # noqa: E402

MODEL = "cte-cgcnn-aflow"
N = 300

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def candidates(shared_data, tmp_path_factory) -> Path:
    """The first 300 records of the aflow demo set."""
    demo = shared_data / "aflow_agl" / "demo.jsonl.gz"
    if not demo.is_file():
        pytest.skip(f"{demo} not found")
    path = tmp_path_factory.mktemp("dask") / "cands.jsonl.gz"
    with gzip.open(demo, "rt") as src, gzip.open(path, "wt") as dst:
        dst.writelines(itertools.islice(src, N))
    return path


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            memory_limit="3GiB",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def model():
    return load_model(MODEL)


def _loaded_models() -> list[str]:
    return sorted(WORKER_MODELS)


def test_screen_equals_one_process(client, candidates, model, tmp_path):
    single = predict_candidates(str(candidates), model, chunk_size=256, batch_size=64, device="cpu")
    run = screen_predictions_dask(
        client,
        str(candidates),
        MODEL,
        output=tmp_path / "x.parquet",
        partition_size=64,
        batch_size=64,
        progress=False,
    )
    assert run.n_partitions == 5 and not run.failures and run.n_read == N
    assert len(run.worker_pids) == 2
    assert len(single.table) == len(run.table) > 250
    pd.testing.assert_frame_equal(run.table, single.table, check_exact=False, rtol=1e-6)
    assert [(e.source, e.reason) for e in run.errors] == [
        (e.source, e.reason) for e in single.errors
    ]
    # each worker loaded the model once and kept it
    assert list(client.run(_loaded_models).values()) == [[MODEL], [MODEL]]
    assert not (tmp_path / "x.parquet.parts").exists()


def test_driver_read_sources_equal_one_process(client, model, tmp_path):
    single = predict_candidates(str(EXAMPLES_DIR), model, batch_size=4, device="cpu")
    run = screen_predictions_dask(
        client,
        str(EXAMPLES_DIR),
        model,
        output=tmp_path / "e.parquet",
        partition_size=4,
        batch_size=4,
        progress=False,
    )
    assert run.n_partitions == 4  # 15 examples in partitions of 4
    pd.testing.assert_frame_equal(run.table, single.table, check_exact=False, rtol=1e-6)


def test_predict_streams_parquet_in_reading_order(client, candidates, tmp_path):
    out = tmp_path / "p.parquet"
    run = predict_dask(
        client, str(candidates), MODEL, output=out, partition_size=50, progress=False
    )
    table = pd.read_parquet(out)
    assert run.n_partitions == 6 and not run.failures
    assert len(table) + len(run.errors) == N and table["id"].is_unique
    ids = [record_id(json.loads(line), "") for line in gzip.open(candidates, "rt")]
    assert set(table["id"]) <= set(ids)
    assert list(table["id"]) == [i for i in ids if i in set(table["id"])]


def _flaky(part: Partition, marker_dir: str) -> int:
    """Fails the first attempt of every partition, and every attempt of partition 2."""
    marker = Path(marker_dir) / f"seen-{part.index}"
    if part.index == 2 or not marker.exists():
        marker.touch()
        raise RuntimeError(f"transient failure of partition {part.index}")
    return part.index


def test_failed_partitions_are_retried_and_reported(client, tmp_path):
    parts = (Partition(index=k, label=f"part {k}", n_entries=10) for k in range(6))
    out = list(run_partitions(client, parts, _flaky, str(tmp_path), retries=2, max_in_flight=3))
    indices = sorted(p.index for p, _, _ in out)
    assert indices == list(range(6))  # each partition exactly once
    results = {p.index: (r, why) for p, r, why in out}
    assert all(results[k] == (k, None) for k in (0, 1, 3, 4, 5))
    assert results[2][0] is None and "transient failure of partition 2" in results[2][1]


def test_cli_screen_on_a_scheduler_address(client, candidates, tmp_path, capsys):
    address = client.scheduler.address
    out = tmp_path / "ranked.parquet"
    rc = main(
        [
            "screen",
            "--candidates",
            str(candidates),
            "--electrolyte",
            "YSZ=10.5e-6",
            "--model",
            MODEL,
            "--dask",
            address,
            "--partition-size",
            "100",
            "--output",
            str(out),
            "--top",
            "7",
            "--quiet",
        ]
    )
    assert rc == 0
    ranked = pd.read_parquet(out)
    top = read_screen_csv(tmp_path / "ranked-top.csv")
    assert len(top) == 7 and list(top["id"]) == list(ranked["id"][:7])
    assert list(ranked["rank"][:7]) == list(range(1, 8))
    assert "in 3 partitions on 2 worker processes" in capsys.readouterr().err


def test_cli_dask_needs_parquet_output(candidates, capsys):
    rc = main(
        [
            "predict",
            "--model",
            MODEL,
            "--input",
            str(candidates),
            "--dask",
            "local:1",
            "--output",
            "x.csv",
        ]
    )
    assert rc == 2
    assert capsys.readouterr().err.strip() == (
        "error: --dask streams results to Parquet: give --output NAME.parquet (got x.csv)"
    )
