"""task: ner through the Prefect flows: the nightly flow on a temporary Prefect backend, then score's shard tasks on
a real Dask LocalCluster (the entity scorer loaded in the worker processes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from bert_pipeline.evaluation.registry import read_champion
from bert_pipeline.lake.manifests import Lake
from flows.nightly import nightly_flow
from flows.stages import score_flow
from tests.helpers import build_tiny_model, ner_corpus, read_partition, write_sample_csv
from tests.integration.test_flows import write_config


@pytest.fixture(scope="module")
def ner_config(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("ner-flows")
    records = ner_corpus(300, seed=3)
    source = root / "annotated.jsonl"
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    model = build_tiny_model(root / "tiny", [r["text"] for r in records], vocab_size=700)
    return {"data_root": str(root / "lake"), "run_date": "2026-03-01", "task": "ner",
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
    lake = Lake(str(Path(ner_config["data_root"]) / "ner"))
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
    lake = Lake(str(Path(ner_config["data_root"]) / "ner"))
    entities = read_partition(lake, "entities", "2026-03-01")
    assert entities.height == lake.read_manifest("curated", "2026-03-01")["counts"]["curated_rows"]
    assert entities["doc_id"].n_unique() == entities.height


def test_a_classifier_night_runs_beside_the_entity_lake_in_one_data_root(ner_night: dict, ner_config: dict,
                                                                        tmp_path: Path, tiny_model: Path) -> None:
    """Two configs, one data_root, the same night: each task keeps its own lake, champion and report, and neither
    run touches the other's partitions."""
    entity_lake = Lake(str(Path(ner_config["data_root"]) / "ner"))
    before = entity_lake.read_manifest("entities", "2026-03-01")
    csv = tmp_path / "tweets.csv"
    write_sample_csv(csv)
    classes = {"data_root": ner_config["data_root"], "run_date": "2026-03-01", "tokenize": {"max_length": 64},
               "ingest": {"sources": [str(csv)], "text_column": "text", "label_column": "sentiment"},
               "train": {"base_model": str(tiny_model), "epochs": "auto", "min_steps": 300, "batch_size": 16,
                         "learning_rate": 1e-3, "linear_baseline": False}}
    night = nightly_flow(config=write_config(tmp_path, classes))
    assert night["train"]["champion_decision"]["promoted"], night["train"]["champion_decision"]["reason"]
    top = Lake(ner_config["data_root"])
    predictions, curated = read_partition(top, "predictions", "2026-03-01"), read_partition(top, "curated", "2026-03-01")
    assert sorted(predictions["doc_id"]) == sorted(curated["doc_id"]) and curated.height > 200
    assert set(predictions["predicted_label"]) <= {"negative", "neutral", "positive"}
    champions = read_champion(top)["model_version"], read_champion(entity_lake)["model_version"]
    assert champions[0] != champions[1] and champions[1] == ner_night["train"]["model_version"]
    assert entity_lake.read_manifest("entities", "2026-03-01") == before  # untouched
    assert top.read_manifest("entities", "2026-03-01") is None
    assert entity_lake.read_manifest("predictions", "2026-03-01") is None
    reports = [Path(top.root, "reports", "run_date=2026-03-01", "report.md"),
               Path(entity_lake.root, "reports", "run_date=2026-03-01", "report.md")]
    assert "## Entities" not in reports[0].read_text() and "## Entities" in reports[1].read_text()
    (tmp_path / "ner").mkdir()
    again = nightly_flow(config=write_config(tmp_path / "ner", ner_config))  # the entity night, retried: all skipped
    assert all(summary["skipped"] for stage, summary in again.items() if stage != "report")
