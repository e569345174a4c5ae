"""What a new champion costs the night it arrives: `score.rescore_nights` rescores the nights before it.

Demo tweets split into --nights + 1 nights of --rows each (ingest, curate, tokenize by the library). Two champions
are the packaged MiniLM with seeded, untrained three-label heads (their answers do not matter here, only their
cost). Champion A scores the earlier nights; champion B is then crowned and the last night is scored by the
`bert-score` flow three times: once untimed (Prefect's temporary server starts), then forced with
`score.rescore_nights: 0` (tonight alone, the anchor), then forced with the window covering every earlier night
(tonight, then each earlier night rescored under its own lock, its report rewritten). Printed: the second run's
seconds over the first's, and each rescored night's cost as a fraction of scoring tonight's rows (what a night of
the same size costs); the ratio, not the seconds, is the figure.

    .venv/bin/python -m benchmarks.bench_rescore [--rows 2000 --nights 3 --lake /tmp/rescore-lake]
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import torch

from benchmarks._common import DEMO, cpu_flags, median_seconds, run_parser
from bert_pipeline.config import load_config
from bert_pipeline.evaluation import registry
from bert_pipeline.lake.manifests import Lake
from bert_pipeline.lake.storage import resolve_package_url
from bert_pipeline.modeling.models import DEFAULT_MODEL_URL
from bert_pipeline.stages.curate import run_curate
from bert_pipeline.stages.ingest import decode_text, run_ingest
from bert_pipeline.stages.report import write_report
from bert_pipeline.stages.score import run_score
from bert_pipeline.stages.tokenize import run_tokenize

LABELS = ["negative", "neutral", "positive"]


def champion(lake: Lake, version: str, seed: int) -> None:
    """The packaged MiniLM with a three-label head drawn from `seed`, saved as model `version` and crowned."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base = resolve_package_url(DEFAULT_MODEL_URL)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_pretrained(
            base, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
            label2id={label: i for i, label in enumerate(LABELS)})
    folder = lake.model_url(version)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    registry.promote(lake, version, LABELS, {"promoted": True})


def main() -> None:
    parser = run_parser(__doc__, "/tmp/rescore-lake")
    parser.add_argument("--rows", type=int, default=2000, help="tweets per night")
    parser.add_argument("--nights", type=int, default=3, help="earlier nights to rescore")
    args = parser.parse_args()
    shutil.rmtree(args.lake, ignore_errors=True)
    folder = Path(args.lake) / "_sources"
    folder.mkdir(parents=True)
    text, _ = decode_text(Path(resolve_package_url(DEMO)).read_bytes())
    tweets = pl.read_csv(text.encode(), infer_schema=False).select("text").unique("text", maintain_order=True)
    dates = [f"2026-06-{day:02d}" for day in range(1, args.nights + 2)]
    lake = Lake(args.lake)
    first, second = "2026-05-31-aaaaaaaaaa", "2026-06-01-bbbbbbbbbb"
    champion(lake, first, seed=1)

    def config(date: str, *extra: str):
        return load_config(None, [f"data_root={args.lake}", f"run_date={date}", "ingest.label_column=null",
                                  f"ingest.sources=[{folder / (date + '.parquet')}]", *extra, *args.overrides])

    for i, date in enumerate(dates):
        tweets.slice(i * args.rows, args.rows).write_parquet(folder / f"{date}.parquet")
        cfg = config(date)
        run_ingest(cfg)
        run_curate(cfg)
        run_tokenize(cfg)
        if date != dates[-1]:
            run_score(cfg)
            write_report(cfg)  # so that the rescore rewrites it, as a nightly's night would have one
    champion(lake, second, seed=2)

    from flows.stages import score_flow

    tonight = dates[-1]
    base = {"data_root": args.lake, "run_date": tonight, "ingest.label_column": None}
    alone = score_flow(overrides=base | {"score.rescore_nights": 0})  # untimed: Prefect's temporary server starts
    anchor = median_seconds(lambda: score_flow(overrides=base | {"score.force": True, "score.rescore_nights": 0}), 1)
    both: dict = {}
    whole = median_seconds(lambda: both.update(score_flow(overrides=base | {"score.force": True,
                                                                   "score.rescore_nights": args.nights})), 1)
    rescored = both.get("rescored") or {}
    versions = {date: pl.from_arrow(lake.dataset("predictions", [date]).to_table(columns=["model_version"]))
                ["model_version"].unique().to_list() for date in dates}
    assert len(rescored) == args.nights and all(v == [second] for v in versions.values()), (rescored, versions)
    print(f"cpu: {cpu_flags()}; {torch.get_num_threads()} threads; {args.rows} tweets a night, "
          f"{alone['rows']} scored tonight, {args.nights} earlier nights rescored "
          f"({sum(r['rows'] for r in rescored.values())} rows, every report rewritten: "
          f"{all('report' in r for r in rescored.values())})")
    print("| run | seconds / tonight alone |\n|---|---|")
    print("| bert-score, score.rescore_nights 0 (anchor) | 1.000 |")
    print(f"| bert-score forced, score.rescore_nights {args.nights} | {whole / anchor:.3f} |")
    print(f"| each rescored night (with its report), against scoring tonight | "
          f"{(whole - anchor) / args.nights / anchor:.3f} |")


if __name__ == "__main__":
    main()
