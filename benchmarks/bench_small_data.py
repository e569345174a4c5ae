"""Small labelled data: does the default recipe (`train.epochs: auto`) learn where a fixed 3 epochs collapses?

Builds a held-out-like set from the demo tweets: --train-rows training rows (default 470) with 3 imbalanced classes
(--majority share of the most frequent, default 0.65), plus validation and test rows in the same proportions, given
through a split column. Runs the pipeline's stages on it, trains twice on the same curated split (the default recipe,
and `train.epochs: 3` with early stopping as before), and fits TF-IDF (word 1-2-grams + character 2-5-grams) +
logistic regression on the same train rows. Prints test macro-F1 of each, and the ratio of ours to TF-IDF last.

    .venv/bin/python -m benchmarks.bench_small_data [--train-rows 470 --lake /tmp/small-data-lake --set key=value]
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import polars as pl

from benchmarks._common import DEMO, cpu_flags, curated_split_tfidf, run_parser
from bert_pipeline.config import load_config
from bert_pipeline.stages.curate import run_curate
from bert_pipeline.stages.ingest import decode_text, run_ingest
from bert_pipeline.lake.storage import resolve_package_url
from bert_pipeline.stages.tokenize import run_tokenize
from bert_pipeline.stages.train import run_train

SHARES = {"negative": 0.65, "neutral": 0.25, "positive": 0.10}


def imbalanced_split(rows: int, majority: float, seed: int) -> pl.DataFrame:
    """text, label, split: `rows` train rows and rows/4 validation and rows/2 test rows, each with the class shares
    (majority, then the rest split 5:2 between the other two classes), drawn without overlap from the demo."""
    text, _ = decode_text(Path(resolve_package_url(DEMO)).read_bytes())
    # maintain_order: polars' unique keeps no order by default, and a seeded shuffle of an unordered frame is not
    # the same sample twice
    demo = pl.read_csv(text.encode(), infer_schema=False).unique("text", maintain_order=True).sample(
        fraction=1.0, shuffle=True, seed=seed)
    shares = {"negative": majority, "neutral": (1 - majority) * 5 / 7, "positive": (1 - majority) * 2 / 7}
    parts, taken = [], {label: 0 for label in shares}
    for split, size in (("train", rows), ("validation", rows // 4), ("test", rows // 2)):
        for label, share in shares.items():
            n = round(size * share)
            pool = demo.filter(pl.col("sentiment") == label).slice(taken[label], n)
            taken[label] += n
            parts.append(pool.select("text", label=pl.col("sentiment"), split=pl.lit(split)))
    return pl.concat(parts)


def main() -> None:
    parser = run_parser(__doc__, "/tmp/small-data-lake")
    parser.add_argument("--train-rows", type=int, default=470)
    parser.add_argument("--majority", type=float, default=0.65)
    args = parser.parse_args()
    print(f"CPU flags: {cpu_flags()}")
    shutil.rmtree(args.lake, ignore_errors=True)
    Path(args.lake).mkdir(parents=True)
    source = Path(args.lake) / "small.csv"
    imbalanced_split(args.train_rows, args.majority, args.seed).write_csv(source)
    base = [f"data_root={args.lake}", "run_date=2026-01-01", f"ingest.sources=[{source}]", "ingest.label_column=label",
            "ingest.split_column=split", *args.overrides]
    cfg = load_config(None, base)
    run_ingest(cfg), run_curate(cfg), run_tokenize(cfg)
    results = {}
    for name, extra in (("epochs: 3 (the old default recipe)", ["train.epochs=3"]), ("epochs: auto (default)", [])):
        started = time.monotonic()
        trained = run_train(load_config(None, [*base, *extra]), progress=None)
        results[name] = (trained, time.monotonic() - started)

    train_rows, test_rows, majority, share, tfidf = curated_split_tfidf(cfg.data_root, cfg.run_date)
    print(f"same split: {train_rows} train / {test_rows} test rows; majority class {majority!r} {share:.0%} of train")
    print(f"  TF-IDF + logistic regression        test macro-F1 {tfidf:.4f}")
    for name, (trained, seconds) in results.items():
        run, test_metrics = trained["metrics"]["train"], trained["metrics"]["test"]
        decision = trained["champion_decision"]
        print(f"  {name:<36} test macro-F1 {test_metrics['macro_f1']:.4f}  ({run['epochs_run']} of "
              f"{run['epochs_planned']} epochs, {run['steps']} steps, best epoch {run['best_epoch']}, {seconds:.0f} s; "
              f"validation {decision['new_validation_macro_f1']:.4f} vs baseline "
              f"{decision['baseline_validation_macro_f1']:.4f}: {'promoted' if decision['promoted'] else 'refused'})")
    auto = results["epochs: auto (default)"][0]["metrics"]["test"]["macro_f1"]
    print(f"ratio epochs:auto / TF-IDF test macro-F1: {auto / tfidf:.3f} (difference {auto - tfidf:+.4f})")


if __name__ == "__main__":
    main()
