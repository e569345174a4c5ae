"""Full demo training (all training rows) against TF-IDF + logistic regression on the same split.

Runs the pipeline's stages (ingest, curate, tokenize, train with train.max_train_samples empty) into --lake, then
fits TF-IDF (word 1-2-grams + character 2-5-grams) + logistic regression on the same curated train split and
compares test macro-F1. Prints the comparison last.

    .venv/bin/python -m benchmarks.bench_full_demo [--config configs/demo.yaml --lake /tmp/full-demo-lake]
"""

from __future__ import annotations

import argparse

from benchmarks._common import curated_split_tfidf
from bert_pipeline.config import load_config
from bert_pipeline.stages.curate import run_curate
from bert_pipeline.stages.ingest import run_ingest
from bert_pipeline.stages.tokenize import run_tokenize
from bert_pipeline.stages.train import run_train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--lake", default="/tmp/full-demo-lake")
    parser.add_argument("--run-date", default="2026-01-01")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    cfg = load_config(args.config, [f"data_root={args.lake}", f"run_date={args.run_date}",
                                    "train.max_train_samples=", *args.overrides])
    run_ingest(cfg), run_curate(cfg), run_tokenize(cfg)
    trained = run_train(cfg, progress=print)

    train_rows, test_rows, _, _, baseline = curated_split_tfidf(cfg.data_root, cfg.run_date)

    ours = trained["metrics"]["test"]
    print(f"same split: {train_rows} train / {test_rows} test rows (curated, no label conflicts)")
    print(f"  TF-IDF + logistic regression  test macro-F1 {baseline:.4f}")
    print(f"  bert-pipeline ({trained['model_version']}, {trained['metrics']['train']['rows']} rows, "
          f"{trained['metrics']['train']['epochs_run']} epoch(s))  test macro-F1 {ours['macro_f1']:.4f}  "
          f"accuracy {ours['accuracy']:.4f}")
    print(f"difference ours - TF-IDF: {ours['macro_f1'] - baseline:+.4f}")


if __name__ == "__main__":
    main()
