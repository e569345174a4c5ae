"""Real torch training must learn: a tiny BERT on a separable task reaches high validation accuracy."""

from __future__ import annotations

import random
from pathlib import Path

import polars as pl

from bert_pipeline.config import build_config
from bert_pipeline.stages.curate import run_curate
from bert_pipeline.stages.ingest import run_ingest
from bert_pipeline.stages.tokenize import run_tokenize
from bert_pipeline.stages.train import run_train
from tests.helpers import build_tiny_model

GOOD = ["great", "lovely", "excellent", "wonderful", "superb", "amazing"]
BAD = ["awful", "terrible", "horrible", "dreadful", "poor", "nasty"]
FILLER = ["the", "food", "was", "service", "today", "really", "place", "our", "visit", "staff"]


def test_tiny_bert_learns_a_separable_task(tmp_path: Path) -> None:
    rng = random.Random(0)
    rows = []
    for i in range(600):
        label = "good" if i % 2 else "bad"
        words = rng.sample(FILLER, 5) + [rng.choice(GOOD if label == "good" else BAD)]
        rng.shuffle(words)
        rows.append({"text": " ".join(words) + f" #{i}", "label": label})
    pl.DataFrame(rows).write_csv(tmp_path / "reviews.csv")
    model = build_tiny_model(tmp_path / "tiny", [r["text"] for r in rows], vocab_size=200)
    cfg = build_config({
        "data_root": str(tmp_path / "lake"), "run_date": "2026-01-01",
        "ingest": {"sources": [str(tmp_path / "reviews.csv")], "label_column": "label"},
        # the synthetic reviews share most words by design: near-dedup would (rightly) collapse them
        "curate": {"validation_fraction": 0.2, "test_fraction": 0.2, "near_dedup": False},
        "train": {"base_model": str(model), "epochs": 4, "batch_size": 16, "learning_rate": 3e-3},
    })
    run_ingest(cfg), run_curate(cfg), run_tokenize(cfg)
    result = run_train(cfg)
    assert result["metrics"]["validation"]["accuracy"] >= 0.9, result["metrics"]["validation"]
    assert result["metrics"]["test"]["macro_f1"] >= 0.9, result["metrics"]["test"]
