"""Long documents (`score.long_text`/`train.long_text: chunk`) on documents made here whose evidence sits past the
model's window: chunked training and scoring read it, truncation cannot; the token budget holds for a document of
100,000 tokens; every curated row is scored exactly once and records its windows."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from bert_pipeline.config import load_config
from bert_pipeline.stages.curate import run_curate
from bert_pipeline.stages.ingest import run_ingest
from bert_pipeline.lake.manifests import Lake
from bert_pipeline.stages.score import Scorer, run_score
from bert_pipeline.stages.tokenize import run_tokenize
from bert_pipeline.stages.train import run_train
from bert_pipeline.modeling.windows import Windowing
from tests.helpers import build_tiny_model, read_partition

FILLER = ("the parcel came on tuesday and the box was the usual size with a paper insert about the shop the courier "
          "left it at the door my neighbour took it in we opened it after dinner it smelled of cardboard "
          "la boîte était grande 包装 普通").split()


def review(rng: random.Random, verdict: str) -> str:
    """~40 words of neutral text, then the only word that tells the label, at the end."""
    return " ".join(rng.choice(FILLER) for _ in range(rng.randint(34, 44))) + f" overall {verdict}"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    rng = random.Random(7)
    rows = [{"text": review(rng, verdict), "label": label}
            for label, verdict in [("positive", "excellent"), ("negative", "terrible")] * 180]
    folder = tmp_path_factory.mktemp("long-reviews")
    pl.DataFrame(rows).sample(fraction=1.0, shuffle=True, seed=1).write_ndjson(folder / "reviews.jsonl")
    model = build_tiny_model(folder / "model", [r["text"] for r in rows], vocab_size=300,
                             labels=["negative", "positive"])
    return folder / "reviews.jsonl", model


def run_pipeline(root: Path, source: Path, model: Path, long_text: str) -> tuple[dict, Lake]:
    cfg = load_config(overrides={
        "data_root": str(root), "run_date": "2026-11-10", "ingest.sources": [str(source)],
        "ingest.label_column": "label", "tokenize.max_length": 16, "curate.near_dedup": False,
        "train.base_model": str(model), "train.min_steps": 200, "train.batch_size": 16, "train.learning_rate": 2e-3,
        "train.long_text": long_text, "score.long_text": long_text, "score.batch_tokens": 512,
        "train.linear_baseline": False})
    run_ingest(cfg), run_curate(cfg), run_tokenize(cfg)
    trained = run_train(cfg)
    run_score(cfg)
    return trained, Lake.of(cfg)


def test_chunking_reads_what_truncation_cannot(tmp_path: Path, corpus: tuple[Path, Path]) -> None:
    source, model = corpus
    chunked, lake = run_pipeline(tmp_path / "chunk", source, model, "chunk")
    truncated, other = run_pipeline(tmp_path / "truncate", source, model, "truncate")
    # the verdict is ~40 tokens in; a 16-token window never reaches it when truncating
    assert chunked["metrics"]["test"]["macro_f1"] >= 0.9, chunked["metrics"]["test"]
    assert truncated["metrics"]["test"]["macro_f1"] <= 0.75, truncated["metrics"]["test"]
    assert chunked["metrics"]["train"]["long_text"] == "chunk"
    assert chunked["metrics"]["train"]["training_rows"] > 3 * chunked["metrics"]["train"]["rows"]  # windows

    curated = read_partition(lake, "curated", "2026-11-10")
    predictions = read_partition(lake, "predictions", "2026-11-10")
    assert sorted(predictions["doc_id"].to_list()) == sorted(curated["doc_id"].to_list())  # each row exactly once
    windowing = Windowing(16, (2,), (3,))  # [CLS]=2, [SEP]=3 in the tiny tokenizer
    assert predictions["windows"].min() >= windowing.count(14 + 20) and not predictions["truncated"].any()
    scored = predictions.join(curated.select("doc_id", "label"), on="doc_id")
    assert (scored["predicted_label"] == scored["label"]).mean() >= 0.9

    plain = read_partition(other, "predictions", "2026-11-10")
    assert plain["truncated"].all() and (plain["windows"] == 1).all()


def test_the_token_budget_holds_for_a_document_of_100000_tokens(corpus: tuple[Path, Path]) -> None:
    _, model = corpus
    chunked = Scorer(str(model), 32, 256, "fp32", "cpu", long_text="chunk")
    passes: list[tuple[int, int]] = []
    chunked.model.register_forward_pre_hook(lambda _, args, kwargs: passes.append(tuple(kwargs["input_ids"].shape)),
                                            with_kwargs=True)
    texts = ["overall excellent", " ".join(["parcel"] * 100_000), review(random.Random(3), "terrible")]
    scored = chunked.probabilities(texts)
    assert max(rows * width for rows, width in passes) <= 256  # never one huge pass
    assert scored.windows.tolist() == [1, chunked.windowing.count(100_000), chunked.windowing.count(
        len(chunked.encoder.encode(texts[2]).ids) - 2)]
    assert sum(rows for rows, _ in passes) == int(scored.windows.sum())
    assert np.allclose(scored.probabilities.sum(axis=1), 1.0, atol=1e-5) and not scored.truncated.any()
    # a text that fits the window is scored exactly as truncation scores it
    plain = Scorer(str(model), 32, 256, "fp32", "cpu").probabilities(texts[:1])
    assert np.allclose(plain.probabilities, scored.probabilities[:1], atol=1e-6)
