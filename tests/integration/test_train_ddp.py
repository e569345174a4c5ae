"""train.devices > 1 runs the train stage under torchrun DDP; proven here with 2 CPU processes on gloo."""

from __future__ import annotations

import math
from pathlib import Path


from bert_pipeline.config import build_config
from bert_pipeline.stages.curate import run_curate
from bert_pipeline.stages.ingest import run_ingest
from bert_pipeline.lake.manifests import Lake
from bert_pipeline.stages.score import run_score
from bert_pipeline.stages.tokenize import run_tokenize
from bert_pipeline.stages.train import run_train
from tests.helpers import read_partition


def test_two_process_ddp_training_commits_one_model(sample_config: dict) -> None:
    sample_config["train"].update({"devices": 2, "device": "cpu", "early_stopping_patience": 0})
    cfg = build_config(sample_config)
    run_ingest(cfg), run_curate(cfg), run_tokenize(cfg)
    trained = run_train(cfg)

    train = trained["metrics"]["train"]
    assert train["world_size"] == 2
    batches = math.ceil(train["rows"] / cfg.train.batch_size)
    assert train["epochs_run"] == train["epochs_planned"] > 1  # no early stopping: every planned epoch ran
    assert train["steps"] == train["epochs_run"] * (batches // 2)  # each rank took every other step
    assert Path(trained["model_uri"], "model.safetensors").exists()
    assert not Path(cfg.data_root, "_work").exists()
    scored = run_score(cfg)
    lake = Lake.of(cfg)
    predictions = read_partition(lake, "predictions", cfg.run_date)
    assert predictions.height == scored["rows"] and set(predictions["model_version"]) == {trained["model_version"]}
    assert run_train(cfg)["skipped"]  # committed once, by rank 0
