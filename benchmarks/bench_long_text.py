"""Long documents: chunked against truncated training and scoring, on real reviews longer than the model's window.

Data: the Amazon fine-food reviews (`benchmarks.datasets.fine_food_reviews`, labels great / other), keeping only
the reviews with more content tokens than a window of --max-length (64 by default) holds, so every document loses
text when truncated. The pipeline's stages (ingest, curate, tokenize, train, score) run twice into two lakes, once
with `train.long_text` and `score.long_text` at truncate and once at chunk, on the same curated split; TF-IDF + logistic
regression (balanced class weights) on the same split is the plain anchor. Prints document-level test macro-F1 and
accuracy, and training and scoring throughput of chunk as a ratio of truncate's (same machine, same process).

    .venv/bin/python -m benchmarks.bench_long_text [--lake /tmp/bench-long-text --max-length 64]
"""

from __future__ import annotations

import os
import time

import numpy as np

from benchmarks._common import cpu_flags, curated_split_tfidf, run_parser
from benchmarks.datasets import fine_food_reviews
from bert_pipeline.lake import storage
from bert_pipeline.config import load_config
from bert_pipeline.stages.curate import run_curate
from bert_pipeline.stages.ingest import run_ingest
from bert_pipeline.modeling.models import fast_encoder, load_tokenizer, resolve_model_dir
from bert_pipeline.stages.score import run_score
from bert_pipeline.stages.tokenize import run_tokenize
from bert_pipeline.stages.train import run_train
from bert_pipeline.modeling.windows import Windowing


def main() -> None:
    parser = run_parser(__doc__, "/tmp/bench-long-text")
    parser.add_argument("--max-length", type=int, default=64)
    args = parser.parse_args()
    storage.remove([args.lake])
    os.makedirs(args.lake, exist_ok=True)
    reviews = fine_food_reviews()
    encoder = fast_encoder(load_tokenizer(resolve_model_dir("")), None)
    windowing = Windowing.of(encoder, args.max_length)
    tokens = np.asarray([len(e.ids) - 2 for e in encoder.encode_batch(reviews["text"].to_list())])
    long = reviews.filter(tokens > windowing.content)
    long_tokens = tokens[tokens > windowing.content]
    data = f"{args.lake}/long_reviews.jsonl"
    long.write_ndjson(data)
    print(f"CPU flags: {cpu_flags()}")
    print(f"{long.height} of {reviews.height} reviews are longer than a {args.max_length}-token window "
          f"(content tokens: median {int(np.median(long_tokens))}, 90th percentile "
          f"{int(np.percentile(long_tokens, 90))}); windows per review at chunk: median "
          f"{int(np.median([windowing.count(n) for n in long_tokens]))}")

    results = {}
    for mode in ("truncate", "chunk"):
        cfg = load_config(overrides=[
            f"data_root={args.lake}/{mode}", "run_date=2026-01-01", f"ingest.sources=[{data}]",
            "ingest.label_column=label", f"tokenize.max_length={args.max_length}", f"train.seed={args.seed}",
            "train.min_steps=200", f"train.long_text={mode}", f"score.long_text={mode}", *args.overrides])
        run_ingest(cfg), run_curate(cfg), run_tokenize(cfg)
        started = time.perf_counter()
        trained = run_train(cfg, progress=print)
        train_seconds = time.perf_counter() - started
        started = time.perf_counter()
        scored = run_score(cfg)
        results[mode] = (trained["metrics"], train_seconds, scored["rows"] / (time.perf_counter() - started))
    rows, test_rows, _, _, tfidf = curated_split_tfidf(f"{args.lake}/truncate", "2026-01-01")

    print(f"\nsame split: {rows} train / {test_rows} test reviews, all longer than the window")
    print("| model | test macro-F1 | test accuracy | training documents/s vs truncate | scoring documents/s vs "
          "truncate |")
    print("|---|---|---|---|---|")
    print(f"| TF-IDF + logistic regression | {tfidf:.4f} | | | |")
    base = results["truncate"]
    for mode, (metrics, train_seconds, per_second) in results.items():
        docs = metrics["train"]["rows"] * metrics["train"]["epochs_run"]
        base_docs = base[0]["train"]["rows"] * base[0]["train"]["epochs_run"]
        print(f"| MiniLM, long_text: {mode} ({metrics['train']['epochs_run']} epochs, "
              f"{metrics['train']['training_rows']} training rows) | {metrics['test']['macro_f1']:.4f} | "
              f"{metrics['test']['accuracy']:.4f} | {(docs / train_seconds) / (base_docs / base[1]):.2f} | "
              f"{per_second / base[2]:.2f} |")
    gain = results["chunk"][0]["test"]["macro_f1"] - base[0]["test"]["macro_f1"]
    print(f"chunk - truncate test macro-F1: {gain:+.4f}")


if __name__ == "__main__":
    main()
