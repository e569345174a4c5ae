"""The stages against a real S3-protocol server (moto_server, the way s3fs tests itself), through s3fs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bert_pipeline.modeling import models
from bert_pipeline.lake import storage
from bert_pipeline.config import build_config
from bert_pipeline.stages.curate import run_curate
from bert_pipeline.stages.ingest import run_ingest
from bert_pipeline.lake.manifests import Lake
from bert_pipeline.stages.score import run_score
from bert_pipeline.stages.tokenize import run_tokenize
from bert_pipeline.stages.train import run_train
from tests.helpers import free_port, read_partition


@pytest.fixture(scope="module")
def s3_endpoint():
    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError("moto_server did not start")
            time.sleep(0.2)
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                                             "AWS_ENDPOINT_URL")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=endpoint)
    try:
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_every_stage_reads_and_writes_s3(s3_endpoint: str, sample_config: dict, sample_csv: Path,
                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.mkdir("bert-lake")
    fs.put_file(str(sample_csv), "bert-lake/input/tweets.csv")
    monkeypatch.setattr(models, "CACHE_DIR", tmp_path / "cache")
    cfg = build_config(sample_config, {"data_root": "s3://bert-lake/nightly", "ingest.sources": ["s3://bert-lake/input/*.csv"]})

    run_ingest(cfg), run_curate(cfg), run_tokenize(cfg)
    trained = run_train(cfg)
    scored = run_score(cfg, run_id="s3-run")
    assert trained["model_uri"].startswith("s3://bert-lake/nightly/models/")
    assert storage.exists(storage.join(trained["model_uri"], "model.safetensors"))

    lake = Lake.of(cfg)
    curated = lake.read_manifest("curated", cfg.run_date)
    predictions = read_partition(lake, "predictions", cfg.run_date)
    assert predictions.height == curated["counts"]["curated_rows"] == scored["rows"]
    assert predictions["doc_id"].n_unique() == predictions.height
    assert fs.exists("bert-lake/nightly/_manifests/raw/run_date=2026-11-27.json")
    assert not fs.glob("bert-lake/nightly/raw/**/*.json")  # the partition folders hold nothing but parquet
    assert run_score(cfg, run_id="again")["skipped"]
    forced = run_score(build_config(cfg.model_dump(), {"score.force": True}), run_id="forced")  # copy-over on S3
    assert forced["scored_this_run"] == scored["rows"]
    again = read_partition(lake, "predictions", cfg.run_date)
    assert again.height == scored["rows"] and set(again["run_id"]) == {"forced"}
    assert not fs.exists("bert-lake/nightly/_staging") or not fs.find("bert-lake/nightly/_staging")


def test_flows_take_s3_options_from_a_prefect_secret_block_and_never_log_them(
        s3_endpoint: str, sample_config: dict, sample_csv: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import fsspec.config
    import s3fs
    from prefect.blocks.system import Secret
    from prefect.client.orchestration import get_client

    from flows.stages import curate_flow, ingest_flow

    secret = "s3cr3t-value-that-must-not-leak"
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.mkdir("block-lake")
    fs.put_file(str(sample_csv), "block-lake/input/tweets.csv")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):  # only the block knows them now
        monkeypatch.delenv(key)
    Secret(value={"key": "block-key-id", "secret": secret,
                  "client_kwargs": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"}}).save("lake-s3",
                                                                                                     overwrite=True)
    monkeypatch.setitem(fsspec.config.conf, "s3", {})  # the block's options land here; dropped after the test
    overrides = {"data_root": "s3://block-lake/nightly", "ingest.sources": ["s3://block-lake/input/*.csv"],
                 "storage_block": "lake-s3", "run_date": "2026-11-20"}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(sample_config))
    assert ingest_flow(config=str(config), overrides=overrides)["skipped"] is False
    summary = curate_flow(config=str(config), overrides=overrides)
    assert summary["raw_rows"] == summary["curated_rows"] + summary["rejected_rows"] == 303
    assert fs.exists("block-lake/nightly/_manifests/curated/run_date=2026-11-20.json")

    with get_client(sync_client=True) as client:
        logged = " ".join(log.message for log in client.read_logs())
        shown = " ".join(str(a.data) + str(a.description) for a in client.read_artifacts())
    manifests = " ".join(fs.cat(p).decode() for p in fs.glob("block-lake/nightly/_manifests/**/*.json"))
    assert "curate" in logged and "raw_rows" in shown and manifests
    for text in (logged, shown, manifests):
        assert secret not in text and "block-key-id" not in text


def test_an_entity_night_reads_and_writes_s3(s3_endpoint: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """task: ner on S3: annotated JSONL in, the tagger, its memorising baseline and the entities table out, each
    entity's text its stored text's slice; the same night again does nothing."""
    import json

    import s3fs

    from tests.helpers import build_tiny_model, ner_corpus

    records = ner_corpus(240, seed=4) + [{"id": "unlabelled-1", "text": "Zoë Saldaña visited Kraków 😀"}]
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.mkdir("ner-lake")
    with fs.open("ner-lake/input/annotated.jsonl", "w") as handle:
        handle.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    model = build_tiny_model(tmp_path / "tiny", [r["text"] for r in records], vocab_size=700)
    monkeypatch.setattr(models, "CACHE_DIR", tmp_path / "cache")
    cfg = build_config({"data_root": "s3://ner-lake/nightly", "run_date": "2026-03-01", "task": "ner",
                        "ingest": {"sources": ["s3://ner-lake/input/*.jsonl"], "id_column": "id"},
                        "tokenize": {"max_length": 64},
                        # no CRF: it tags these template sentences perfectly, and this test is about S3
                        "train": {"base_model": str(model), "learning_rate": 1e-3, "min_steps": 150,
                                  "batch_size": 16, "linear_baseline": False}})
    run_ingest(cfg), run_curate(cfg), run_tokenize(cfg)
    trained = run_train(cfg)
    assert trained["champion_decision"]["promoted"], trained["champion_decision"]["reason"]
    assert fs.exists(trained["model_uri"].removeprefix("s3://") + "/baseline/lexicon.json")
    scored = run_score(cfg, run_id="s3-entities")
    lake = Lake.of(cfg)
    entities = read_partition(lake, "entities", cfg.run_date)
    curated = read_partition(lake, "curated", cfg.run_date)
    assert entities.height == curated.height == scored["rows"] and entities["doc_id"].n_unique() == entities.height
    rows = curated.join(entities, on="doc_id").to_dicts()
    found = [(r["text"], e) for r in rows for e in r["entities"]]
    assert len(found) > 100 and all(text[e["start"]:e["end"]] == e["text"] for text, e in found)
    assert set(entities["run_id"]) == {"s3-entities"}
    assert run_score(cfg, run_id="again")["skipped"]
