"""runner.kind: dask sends the per-shard tasks of curate and score to an existing Dask cluster (prefect-dask).

The cluster is a real distributed.LocalCluster on loopback with worker processes, started by the test: the shard
tasks run in other processes than the flow, which load the model themselves.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from bert_pipeline.lake.manifests import Lake
from flows.stages import curate_flow, ingest_flow, score_flow, tokenize_flow, train_flow
from tests.helpers import read_partition
from tests.integration.test_flows import write_config

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def dask_address():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def test_curate_and_score_shards_run_on_a_dask_cluster(tmp_path: Path, sample_config: dict, dask_address: str) -> None:
    sample_config["run_date"] = "2026-11-25"
    sample_config["ingest"]["shard_rows"] = 100
    sample_config["runner"] = {"kind": "dask", "address": dask_address}
    config = write_config(tmp_path, sample_config)
    for stage_flow in (ingest_flow, curate_flow, tokenize_flow, train_flow, score_flow):
        assert stage_flow(config=config)["skipped"] is False
    lake = Lake(sample_config["data_root"])
    curated = lake.read_manifest("curated", "2026-11-25")
    predictions = read_partition(lake, "predictions", "2026-11-25")
    assert predictions.height == curated["counts"]["curated_rows"] == predictions["doc_id"].n_unique()
    with get_client(sync_client=True) as client:  # the shard task runs were reported from the Dask workers
        names = [r.name for r in client.read_task_runs() if r.state and r.state.is_completed()]
    assert sum(name.startswith("score-shard") for name in names) >= 4
    assert sum(name.startswith("curate-prepare") for name in names) >= 4
    with distributed.Client(dask_address) as client:  # the scoring code ran inside the worker processes
        loaded = client.run(lambda: __import__("sys").modules.get("bert_pipeline.stages.score") is not None)
    assert len(loaded) == 2 and any(loaded.values())
