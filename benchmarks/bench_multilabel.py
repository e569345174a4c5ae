"""Multi-label on real data: bert-pipeline against TF-IDF + one-vs-rest logistic regression on the same split.

Data: the disaster-response messages (`benchmarks.datasets.disaster_messages`: 26,248 real messages, 35 topics that
occur, 3.2 per message on average, the source's own train/validation/test split). Runs the pipeline's stages
(ingest, curate, tokenize, train) into --lake, then fits TF-IDF (word 1-2-grams + character 2-5-grams) + one
logistic regression per label with balanced class weights (scikit-learn's OneVsRestClassifier) on the same curated
training rows, and compares test macro-F1, micro-F1 and subset accuracy computed by one function
(`metrics.multilabel_report`) for both. Prints the comparison last.

    .venv/bin/python -m benchmarks.bench_multilabel [--lake /tmp/bench-multilabel --set train.epochs=3]
"""

from __future__ import annotations

import os

import numpy as np
import polars as pl

from benchmarks._common import cpu_flags, run_parser
from benchmarks.datasets import disaster_messages
from bert_pipeline.lake import storage
from bert_pipeline.config import load_config
from bert_pipeline.stages.curate import run_curate
from bert_pipeline.stages.ingest import run_ingest
from bert_pipeline.lake.manifests import Lake
from bert_pipeline.evaluation.metrics import multilabel_report
from bert_pipeline.modeling.multilabel import multi_hot
from bert_pipeline.stages.tokenize import run_tokenize
from bert_pipeline.stages.train import run_train

CONFIG = "configs/multilabel.yaml"


def tfidf_one_vs_rest(train: pl.DataFrame, test: pl.DataFrame, labels: list[str]) -> np.ndarray:
    """0/1 test predictions [rows, labels] of TF-IDF + one-vs-rest logistic regression (balanced class weights)."""
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    words = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True)
    x_train = hstack([words.fit_transform(train["text"]), chars.fit_transform(train["text"])]).tocsr()
    x_test = hstack([words.transform(test["text"]), chars.transform(test["text"])]).tocsr()
    y_train = multi_hot(train["label"].to_list(), labels)
    classifier = OneVsRestClassifier(LogisticRegression(max_iter=2000, class_weight="balanced"), n_jobs=1)
    return classifier.fit(x_train, y_train).predict(x_test).astype(bool)


def main() -> None:
    parser = run_parser(__doc__, "/tmp/bench-multilabel")
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--keep-lake", action="store_true",
                        help="keep --lake: committed stages are skipped and an interrupted training resumes")
    args = parser.parse_args()
    data = f"{args.lake}-data/disaster_messages.jsonl"
    if not args.keep_lake:
        storage.remove([args.lake])
        os.makedirs(os.path.dirname(data), exist_ok=True)
        disaster_messages().write_ndjson(data)
    cfg = load_config(args.config, [f"data_root={args.lake}", "run_date=2026-01-01", f"ingest.sources=[{data}]",
                                    f"train.seed={args.seed}", *args.overrides])
    print(f"CPU flags: {cpu_flags()}")
    run_ingest(cfg), run_curate(cfg), run_tokenize(cfg)
    trained = run_train(cfg, progress=print)
    labels, ours = trained["metrics"]["label_names"], trained["metrics"]["test"]

    lake = Lake.of(cfg)
    curated = pl.from_arrow(lake.dataset("curated", [cfg.run_date]).to_table(
        columns=["text", "label", "label_conflict", "split"]))
    usable = curated.filter(pl.col("label").is_not_null() & ~pl.col("label_conflict"))  # type: ignore[union-attr]
    train, test = usable.filter(pl.col("split") == "train"), usable.filter(pl.col("split") == "test")
    predicted = tfidf_one_vs_rest(train, test, labels)
    baseline = multilabel_report(multi_hot(test["label"].to_list(), labels), predicted, labels)

    print(f"\nsame split: {train.height} train / {test.height} test messages, {len(labels)} labels "
          f"(curated, no label conflicts); ours trained on {trained['metrics']['train']['rows']} rows, "
          f"{trained['metrics']['train']['epochs_run']} epoch(s)")
    print("| model | test macro-F1 | micro-F1 | subset accuracy |")
    print("|---|---|---|---|")
    print(f"| TF-IDF + one-vs-rest LR (balanced) | {baseline['macro_f1']:.4f} | {baseline['micro_f1']:.4f} | "
          f"{baseline['accuracy']:.4f} |")
    print(f"| bert-pipeline {trained['model_version']} | {ours['macro_f1']:.4f} | {ours['micro_f1']:.4f} | "
          f"{ours['accuracy']:.4f} |")
    print(f"difference ours - TF-IDF macro-F1: {ours['macro_f1'] - baseline['macro_f1']:+.4f}")


if __name__ == "__main__":
    main()
