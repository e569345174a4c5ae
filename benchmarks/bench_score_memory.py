"""Peak RSS of the score stage at N and 10 x N rows: it must not grow with the corpus (target: <= 1.2 x).

Builds two lakes from the demo tweets (N and 10 N rows, shards of --shard-rows, near-dedup off so the row counts hold),
then runs the score stage for each in a fresh process and reads that process's peak RSS. The model is the packaged
MiniLM with a 3-label head (untrained: the cost per text is the same). Prints the ratio last.

    .venv/bin/python -m benchmarks.bench_score_memory [--rows 3800 --shard-rows 1900]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl
import torch

from benchmarks._common import DEMO, cpu_flags, load_texts
from bert_pipeline.config import build_config
from bert_pipeline.stages.curate import run_curate
from bert_pipeline.stages.ingest import run_ingest
from bert_pipeline.modeling.models import load_classifier, load_tokenizer, resolve_model_dir

CHILD = """
import json, resource, sys
from bert_pipeline.config import build_config
from bert_pipeline.stages.score import run_score
summary = run_score(build_config(json.loads(sys.argv[1])))
print(json.dumps({"rows": summary["rows"], "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def build_lake(root: Path, texts: list[str], model: str, shard_rows: int) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    source = root / "texts.csv"
    pl.DataFrame({"text": texts}).write_csv(source)
    config = {"data_root": str(root / "lake"), "run_date": "2026-01-01",
              "ingest": {"sources": [str(source)], "shard_rows": shard_rows},
              "curate": {"near_dedup": False, "min_alpha_ratio": 0.0, "max_repetition": 1.0},
              "score": {"model": model, "precision": "fp32"}}
    cfg = build_config(config)
    run_ingest(cfg), run_curate(cfg)
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=3800)
    parser.add_argument("--shard-rows", type=int, default=1900, help="the same shard size for both runs")
    args = parser.parse_args()
    texts = list(dict.fromkeys(load_texts(DEMO, "text")))
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model"
        torch.manual_seed(0)
        base = resolve_model_dir("")
        names = ["negative", "neutral", "positive"]  # a folder of placeholder labels (LABEL_0...) is refused
        load_classifier(base, num_labels=3, ignore_mismatched_sizes=True, id2label=dict(enumerate(names)),
                        label2id={n: i for i, n in enumerate(names)}).save_pretrained(model)
        load_tokenizer(base).save_pretrained(model)
        results = {}
        for label, n in (("1x", args.rows), ("10x", args.rows * 10)):
            sample = [texts[i % len(texts)] + ("" if i < len(texts) else f" #{i}") for i in range(n)]
            config = build_lake(Path(tmp) / label, sample, str(model), args.shard_rows)
            out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(config)], capture_output=True, text=True,
                                 check=True)
            results[label] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"CPU flags: {cpu_flags()}")
    for label, result in results.items():
        print(f"  {label:<4} {result['rows']:>7} rows scored, peak RSS {result['peak_rss_mb']:8.1f} MB")
    print(f"ratio peak RSS 10x / 1x: {results['10x']['peak_rss_mb'] / results['1x']['peak_rss_mb']:.2f} "
          f"(target <= 1.2)")


if __name__ == "__main__":
    main()
