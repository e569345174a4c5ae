"""Several nights on real tweets: the accumulating training set, label identity, corrections and the champion gate.

Night 1 sends --rows demo tweets with int labels (0/1/2) as parquet; night 2 new tweets whose labels are float64 with
NaN gaps (what pandas writes when labels are missing); night 3 new tweets as CSV, plus 60 texts of night 1 sent again,
15 of them with a corrected label; night 4 new tweets trained with a recipe that cannot learn (learning rate 1e-9):
its model must be refused and scoring must keep the champion. Every night runs all five stages.

Per night it prints the labelled rows to date (counted from the curated partitions and the corrections, not from the
trainer), the rows the model was trained and evaluated on, the corrections, the gate's numbers and decision, and
the train stage's seconds against the number of nights, so the cost of the growing history is visible.

    .venv/bin/python -m benchmarks.bench_nights [--rows 600 --lake /tmp/nights-lake --set train.min_steps=150]
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import polars as pl

from benchmarks._common import DEMO, cpu_flags, run_parser
from bert_pipeline.config import load_config
from bert_pipeline.stages.curate import run_curate
from bert_pipeline.stages.ingest import decode_text, run_ingest
from bert_pipeline.curation.labels import read_corrections
from bert_pipeline.lake.manifests import Lake
from bert_pipeline.stages.score import run_score
from bert_pipeline.lake.storage import read_parquet, resolve_package_url
from bert_pipeline.stages.tokenize import run_tokenize
from bert_pipeline.stages.train import run_train

CODES = {"negative": 0, "neutral": 1, "positive": 2}
DATES = ["2026-05-01", "2026-05-02", "2026-05-03", "2026-05-04"]


def demo_tweets(seed: int) -> pl.DataFrame:
    text, _ = decode_text(Path(resolve_package_url(DEMO)).read_bytes())
    frame = pl.read_csv(text.encode(), infer_schema=False).filter(pl.col("text").str.len_chars() > 40)
    return frame.unique("text", maintain_order=True).sample(fraction=1.0, shuffle=True, seed=seed).select(
        "text", label=pl.col("sentiment").replace_strict(CODES, return_dtype=pl.Int64))


def write_nights(folder: Path, tweets: pl.DataFrame, rows: int) -> list[Path]:
    """The four nights' source files (see the module docstring)."""
    nights = [tweets.slice(i * rows, rows) for i in range(4)]
    paths = [folder / "night1.parquet", folder / "night2.parquet", folder / "night3.csv", folder / "night4.parquet"]
    nights[0].write_parquet(paths[0])
    gaps = nights[1].with_columns(label=pl.when(pl.int_range(pl.len()) % 5 == 0).then(None)
                                  .otherwise(pl.col("label")).cast(pl.Float64).fill_null(float("nan")))
    gaps.write_parquet(paths[1])
    resent = nights[0].head(60).with_columns(
        label=pl.when(pl.int_range(pl.len()) < 15).then((pl.col("label") + 1) % 3).otherwise(pl.col("label")))
    pl.concat([nights[2], resent]).with_columns(pl.col("label").cast(pl.String)).write_csv(paths[2])
    nights[3].write_parquet(paths[3])
    return paths


def labelled_to_date(lake: Lake, run_date: str) -> int:
    """Labelled, conflict-free curated rows of every night up to run_date, with the newest corrections applied."""
    labels: dict[str, str | None] = {}
    for date in [d for d in lake.run_dates("curated") if d <= run_date]:
        for url in lake.shard_urls("curated", date, lake.read_manifest("curated", date)):
            frame = pl.from_arrow(read_parquet(url, ["doc_id", "label", "label_conflict"]))
            labels.update((doc, None if conflict else label) for doc, label, conflict in frame.iter_rows())
    corrections = read_corrections(lake, [d for d in lake.run_dates("rejects") if d <= run_date])
    labels.update((doc, label) for doc, label in corrections.select("doc_id", "label").iter_rows() if doc in labels)
    return sum(label is not None for label in labels.values())


def main() -> None:
    parser = run_parser(__doc__, "/tmp/nights-lake")
    parser.add_argument("--rows", type=int, default=600, help="new tweets per night")
    args = parser.parse_args()
    print(f"CPU flags: {cpu_flags()}")
    shutil.rmtree(args.lake, ignore_errors=True)
    folder = Path(args.lake) / "sources"
    folder.mkdir(parents=True)
    paths = write_nights(folder, demo_tweets(args.seed), args.rows)
    lake = Lake(args.lake)
    print("| night | run_date | labelled rows to date | trained on (train/val/test) | corrections | train s | "
          "steps | validation macro-F1 new / champion / baseline | decision | scored with |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for night, (date, path) in enumerate(zip(DATES, paths), start=1):
        extra = ["train.learning_rate=1e-9"] if night == 4 else []
        cfg = load_config(None, [f"data_root={args.lake}", f"run_date={date}", f"ingest.sources=[{path}]",
                                 "ingest.label_column=label", "tokenize.max_length=64", *args.overrides, *extra])
        run_ingest(cfg)
        curated = run_curate(cfg)
        run_tokenize(cfg)
        started = time.monotonic()
        trained = run_train(cfg)
        seconds = time.monotonic() - started
        scored = run_score(cfg)
        rows, decision = trained["training_set"]["rows"], trained["champion_decision"]
        champion = decision["champion_validation_macro_f1"]
        print(f"| {night} | {date} | {labelled_to_date(lake, date)} | {sum(rows.values())} ({rows['train']}/"
              f"{rows['validation']}/{rows['test']}) | {curated['label_corrections']} | {seconds:.0f} | "
              f"{trained['metrics']['train']['steps']} | {decision['new_validation_macro_f1']:.3f} / "
              f"{'-' if champion is None else f'{champion:.3f}'} / {decision['baseline_validation_macro_f1']:.3f} | "
              f"{'promoted' if decision['promoted'] else 'refused'} | {scored['model_version']} |")
    print(f"labels seen: {sorted(trained['metrics']['label_names'])}; last decision: {decision['reason']}")


if __name__ == "__main__":
    main()
