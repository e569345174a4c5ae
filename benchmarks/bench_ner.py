"""Entities (task: ner) on real annotated text: the pipeline's tagger against the anchors, on the same curated rows.

One night of a real CoNLL corpus (benchmarks/datasets.py: `wnut16`, 2,394 English tweets with 10 entity types, or
`msra`, Chinese newswire with PER/LOC/ORG, a seeded sample of --rows sentences) goes through the stages with the
default recipe (the packaged MiniLM unless --model). On the curated test rows (curate's hash split, the same rows
for every method), exact-match entity F1 (micro, seqeval strict IOB2 counting: bert_pipeline/ner/metrics.py) of:
- the champion, read from the entities table the score stage wrote (what an analyst reads);
- the memorising baseline the gate uses (every training entity string, its most frequent type);
- a CRF (sklearn-crfsuite 0.5, L-BFGS, c1=0.1, c2=0.1, 100 iterations; word, affixes, shape and +-1 neighbour
  features: the sklearn-crfsuite CoNLL tutorial's feature set) trained on the same curated training rows, on the
  same tokens (words; each Han/Kana character alone);
- the same fine-tuned model decoded by Hugging Face's `pipeline("token-classification", aggregation_strategy=
  "simple")`: the decoding a team would otherwise use (argmax per token; an I- without its B- starts an entity).
It prints the ratio of the pipeline's F1 to each anchor's, and the time of the night. Training with the HF Trainer
(run_ner.py) is not measured here.

    .venv/bin/python -m pip install -e '.[bench]' sklearn-crfsuite==0.5.0
    .venv/bin/python -m benchmarks.bench_ner [--corpus wnut16|msra] [--rows 3000] [--lake /tmp/ner-bench]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import polars as pl
import regex

from benchmarks._common import cpu_flags
from benchmarks.datasets import msra, wnut16
from bert_pipeline.config import build_config
from bert_pipeline.lake.manifests import Lake
from bert_pipeline.ner.metrics import MemorisingTagger, entity_scores
from bert_pipeline.ner.spans import Span
from bert_pipeline.ner.tagging import spans_from_tags, tags_from_spans
from bert_pipeline.stages.curate import run_curate
from bert_pipeline.stages.ingest import run_ingest, split_lines
from bert_pipeline.stages.score import run_score
from bert_pipeline.stages.tokenize import run_tokenize
from bert_pipeline.stages.train import run_train
from bert_pipeline.task.ner import decode_spans

TOKEN = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}]|[\w]+|[^\w\s]")


def sample_conll(text: str, rows: int, seed: int) -> str:
    """A seeded sample of `rows` sentences (blank-line blocks) of CoNLL text."""
    import random

    blocks, current = [], []
    for line in split_lines(text):
        if line.strip():
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
    blocks += [current] if current else []
    random.Random(seed).shuffle(blocks)
    return "\n\n".join("\n".join(block) for block in blocks[:rows]) + "\n"


def tokens_of(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in TOKEN.finditer(text)]


def features(text: str, offsets: list[tuple[int, int]], i: int) -> dict[str, Any]:
    """The sklearn-crfsuite tutorial's token features (word, lower, suffixes, shape, neighbours)."""
    def one(j: int, prefix: str) -> dict[str, Any]:
        word = text[offsets[j][0]:offsets[j][1]]
        return {f"{prefix}lower": word.lower(), f"{prefix}suffix3": word[-3:], f"{prefix}prefix2": word[:2],
                f"{prefix}istitle": word.istitle(), f"{prefix}isupper": word.isupper(),
                f"{prefix}isdigit": word.isdigit(), f"{prefix}at": word.startswith("@"),
                f"{prefix}hash": word.startswith("#")}
    found = {"bias": 1.0, **one(i, "")}
    found |= one(i - 1, "-1:") if i > 0 else {"BOS": True}
    found |= one(i + 1, "+1:") if i + 1 < len(offsets) else {"EOS": True}
    return found


def crf_predictions(train: list[tuple[str, list[Span]]], test_texts: list[str]) -> tuple[list[list[Span]], float]:
    import sklearn_crfsuite

    started = time.perf_counter()
    x, y = [], []
    for text, spans in train:
        offsets = tokens_of(text)
        x.append([features(text, offsets, i) for i in range(len(offsets))])
        y.append(tags_from_spans(offsets, spans))
    crf = sklearn_crfsuite.CRF(algorithm="lbfgs", c1=0.1, c2=0.1, max_iterations=100, all_possible_transitions=True)
    crf.fit(x, y)
    predicted = []
    for text in test_texts:
        offsets = tokens_of(text)
        tags = crf.predict_single([features(text, offsets, i) for i in range(len(offsets))]) if offsets else []
        predicted.append(spans_from_tags(offsets, tags, "IOB2")[0])
    return predicted, time.perf_counter() - started


def hf_pipeline_predictions(model_dir: str, texts: list[str]) -> list[list[Span]]:
    """HF's token-classification pipeline with aggregation_strategy="simple" on our fine-tuned model folder."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    tagger = pipeline("token-classification", model=AutoModelForTokenClassification.from_pretrained(model_dir),
                      tokenizer=AutoTokenizer.from_pretrained(model_dir), aggregation_strategy="simple", device=-1)
    return [[Span(int(e["start"]), int(e["end"]), e["entity_group"]) for e in found]
            for found in tagger(texts, batch_size=32)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=["wnut16", "msra"], default="wnut16")
    parser.add_argument("--rows", type=int, default=3000, help="sentences sampled (wnut16 has 2,394)")
    parser.add_argument("--model", default="", help="train.base_model (default: the packaged MiniLM)")
    parser.add_argument("--lake", default="/tmp/ner-bench")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"# bench_ner: corpus {args.corpus}, {args.rows} sentences, cpu {cpu_flags()}")
    root = Path(args.lake)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    text = wnut16() if args.corpus == "wnut16" else msra("train") + "\n" + msra("test")
    source = root / f"{args.corpus}.conll"
    source.write_text(sample_conll(text, args.rows, args.seed), encoding="utf-8")
    cfg = build_config({"data_root": str(root / "lake"), "run_date": "2026-03-01", "task": "ner",
                        "ingest": {"sources": [str(source)]}, "train": {"base_model": args.model}})
    started = time.perf_counter()
    for stage in (run_ingest, run_curate, run_tokenize):
        stage(cfg)
    trained = run_train(cfg, progress=lambda message, _: print(f"  {message}") if "validation" in message else None)
    run_score(cfg)
    night = time.perf_counter() - started
    lake = Lake(cfg.data_root)
    curated = pl.from_arrow(lake.dataset("curated").to_table(columns=["doc_id", "text", "label", "split",
                                                                        "label_conflict"]))
    assert isinstance(curated, pl.DataFrame)
    curated = curated.filter(pl.col("label").is_not_null() & ~pl.col("label_conflict"))
    entities = pl.from_arrow(lake.dataset("entities").to_table(columns=["doc_id", "entities"]))
    assert isinstance(entities, pl.DataFrame)
    test = curated.filter(pl.col("split") == "test").join(entities, on="doc_id")
    train = curated.filter(pl.col("split") == "train")
    gold = [decode_spans(label) for label in test["label"]]
    ours = [[Span(e["start"], e["end"], e["label"]) for e in row] for row in test["entities"].to_list()]
    memorising = MemorisingTagger().fit(train["text"].to_list(), [decode_spans(v) for v in train["label"]])
    crf, crf_seconds = crf_predictions(list(zip(train["text"], map(decode_spans, train["label"]))),
                                       test["text"].to_list())
    hf = hf_pipeline_predictions(trained["model_uri"], test["text"].to_list())
    figures = {"pipeline (constrained Viterbi, entities table)": entity_scores(gold, ours)["micro"]["f1"],
               "memorising baseline": entity_scores(gold, memorising.predict(test["text"].to_list()))["micro"]["f1"],
               "CRF (sklearn-crfsuite)": entity_scores(gold, crf)["micro"]["f1"],
               "same model, HF pipeline aggregation=simple": entity_scores(gold, hf)["micro"]["f1"]}
    print(f"test rows {test.height}, gold entities {sum(map(len, gold))}, training rows {train.height}; "
          f"champion decision: {trained['champion_decision']['reason']}")
    for name, f1 in figures.items():
        print(f"  {name:<46} entity F1 {f1:.4f}")
    ours_f1 = figures["pipeline (constrained Viterbi, entities table)"]
    for name, f1 in list(figures.items())[1:]:
        print(f"ratio pipeline / {name}: {ours_f1 / f1 if f1 else float('inf'):.3f}")
    print(f"CRF fit + predict {crf_seconds:.1f} s = {crf_seconds / night:.3f} of the pipeline's night ({night:.0f} s)")
    print(json.dumps({"corpus": args.corpus, "rows": args.rows, **figures}))


if __name__ == "__main__":
    main()
