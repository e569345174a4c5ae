"""task: ner through the Prefect flows: the nightly flow on a temporary Prefect backend, then score's shard tasks on
a real Dask LocalCluster (the entity scorer loaded in the worker processes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from bert_pipeline.lake.manifests import Lake
from flows.nightly import nightly_flow
from flows.stages import score_flow
from tests.helpers import build_tiny_model, ner_corpus, read_partition
from tests.integration.test_flows import write_config


@pytest.fixture(scope="module")
def ner_config(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("ner-flows")
    records = ner_corpus(300, seed=3)
    source = root / "annotated.jsonl"
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    model = build_tiny_model(root / "tiny", [r["text"] for r in records], vocab_size=700)
    return {"data_root": str(root / "lake-entities"), "run_date": "2026-03-01", "task": "ner",
            "ingest": {"sources": [str(source)], "id_column": "id", "shard_rows": 100},
            "tokenize": {"max_length": 64},
            "train": {"base_model": str(model), "learning_rate": 1e-3, "min_steps": 150, "batch_size": 16}}


@pytest.fixture(scope="module")
def ner_night(ner_config: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return nightly_flow(config=write_config(tmp_path_factory.mktemp("config"), ner_config))


def test_the_nightly_flow_runs_an_entity_night(ner_night: dict, ner_config: dict) -> None:
    result = ner_night
    assert list(result) == ["ingest", "curate", "tokenize", "train", "score", "report"]
    assert result["train"]["champion_decision"]["promoted"], result["train"]["champion_decision"]["reason"]
    lake = Lake(ner_config["data_root"])
    entities, curated = read_partition(lake, "entities", "2026-03-01"), read_partition(lake, "curated", "2026-03-01")
    assert sorted(entities["doc_id"]) == sorted(curated["doc_id"])
    assert entities["entities"].list.len().sum() > curated.height  # most template rows hold 2-3 entities
    assert lake.read_manifest("predictions", "2026-03-01") is None  # an entity lake writes no predictions table
    assert "## Entities" in Path(result["report"]["report"]).read_text()
    with get_client(sync_client=True) as client:
        artifacts = {a.key: a for a in sorted(client.read_artifacts(), key=lambda a: a.created) if a.key}
    assert artifacts["bert-score-output"].data.endswith("entities/run_date=2026-03-01)")


def test_entity_score_shards_run_on_a_dask_cluster(tmp_path: Path, ner_config: dict, ner_night: dict) -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        config = write_config(tmp_path, {**ner_config, "runner": {"kind": "dask", "address": cluster.scheduler_address},
                                         "score": {"force": True}})
        summary = score_flow(config=config)
        with distributed.Client(cluster.scheduler_address) as client:
            loaded = client.run(lambda: __import__("sys").modules.get("bert_pipeline.stages.score_entities") is not None)
    assert summary["skipped"] is False and any(loaded.values())  # the entity scorer ran inside the workers
    lake = Lake(ner_config["data_root"])
    entities = read_partition(lake, "entities", "2026-03-01")
    assert entities.height == lake.read_manifest("curated", "2026-03-01")["counts"]["curated_rows"]
    assert entities["doc_id"].n_unique() == entities.height
