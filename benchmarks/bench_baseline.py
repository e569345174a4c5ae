"""The nightly TF-IDF baseline (train.linear_baseline): its cost as a share of a training night, and its test
macro-F1 against the fine-tuned model on the same rows.

Runs one night of --config (default: the demo, 8,000 training rows of tweets, one epoch of MiniLM) into --lake:
ingest, curate, tokenize, train (which fits the baseline on the same training rows after the model), score. Prints
each stage's wall time, the baseline's own time (reading its texts back, fitting, scoring validation and test), the
ratios, and test macro-F1 of both last. Then times the baseline alone again on the same rows, outside the stage.

    .venv/bin/python -m benchmarks.bench_baseline [--config configs/demo.yaml --lake /tmp/baseline-lake --set k=v]
"""

from __future__ import annotations

import argparse
import os
import shutil
import time

from benchmarks._common import cpu_flags
from bert_pipeline.evaluation import baseline
from bert_pipeline.config import load_config
from bert_pipeline.stages.curate import run_curate
from bert_pipeline.stages.ingest import run_ingest
from bert_pipeline.lake.manifests import Lake
from bert_pipeline.stages.score import run_score
from bert_pipeline.stages.tokenize import run_tokenize
from bert_pipeline.stages.train import TrainRun, run_train
from bert_pipeline.training.trainset import load_training_set, texts_of
from bert_pipeline.modeling.models import fast_encoder, load_tokenizer, resolve_model_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--lake", default="/tmp/baseline-lake", help="a scratch lake; it is emptied first")
    parser.add_argument("--run-date", default="2026-01-01")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    print(f"CPU flags: {cpu_flags()}; {os.cpu_count()} CPUs")
    shutil.rmtree(args.lake, ignore_errors=True)
    cfg = load_config(args.config, [f"data_root={args.lake}", f"run_date={args.run_date}",
                                    "score.fallback=baseline", *args.overrides])
    seconds, results = {}, {}
    for name, stage in (("ingest", run_ingest), ("curate", run_curate), ("tokenize", run_tokenize),
                        ("train", run_train), ("score", run_score)):
        started = time.perf_counter()
        results[name] = stage(cfg)
        seconds[name] = time.perf_counter() - started
    metrics = results["train"]["metrics"]
    linear = metrics["baseline"]
    night = sum(seconds.values())
    print("stage wall times: " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()) + f"; night {night:.1f} s")
    print(f"model: {metrics['train']['rows']} training rows, {metrics['train']['epochs_run']} epoch(s), "
          f"{metrics['train']['steps']} steps in {metrics['train']['seconds']:.1f} s, precision "
          f"{metrics['train']['precision']}; scored by {results['score'].get('model_version')}")
    times = linear["seconds"]
    print(f"baseline ({linear['features']} features, {linear['vectorizers']}): read texts {times['read_texts']:.2f} s, "
          f"fit {times['fit']:.2f} s, score validation+test {times['score']:.2f} s, total {times['total']:.2f} s")

    # the same rows again, outside the stage: the fit alone, timed twice (the first run warms caches)
    run = TrainRun.plan(cfg)
    encoder = fast_encoder(load_tokenizer(resolve_model_dir(cfg.train.base_model)), run.tokens["max_length"])
    data = load_training_set(cfg, run.nights, encoder)
    texts = {split: texts_of(Lake.of(cfg), rows) for split, rows in data.splits.items()}
    labels = {split: rows.labels for split, rows in data.splits.items()}
    again = []
    for _ in range(2):
        started = time.perf_counter()
        baseline.fit_and_evaluate(texts, labels, data.label_names, cfg.train.seed)
        again.append(time.perf_counter() - started)
    print(f"baseline alone on the same {len(texts['train'])} training rows: {again[0]:.2f} s, {again[1]:.2f} s")

    print(f"\nbaseline time / train stage: {times['total'] / seconds['train']:.3f}")
    print(f"baseline time / night (ingest..score): {times['total'] / night:.3f}")
    print(f"test macro-F1: model {metrics['test']['macro_f1']:.4f}, TF-IDF baseline {linear['test']['macro_f1']:.4f} "
          f"(model - baseline {metrics['test']['macro_f1'] - linear['test']['macro_f1']:+.4f}); validation: model "
          f"{metrics['validation']['macro_f1']:.4f}, baseline {linear['validation']['macro_f1']:.4f}")
    decision = results["train"]["champion_decision"]
    print(f"gate: {'promoted' if decision['promoted'] else 'refused'}: {decision['reason']}")


if __name__ == "__main__":
    main()
