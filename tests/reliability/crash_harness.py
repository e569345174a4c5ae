"""kill -9 trials: SIGKILL a stage process at a seeded random moment, rerun it, compare with an uninterrupted run.

For each stage (curate, tokenize, train, score) the harness builds the lake up to that stage once, runs the stage
uninterrupted on a copy (the reference), then for every trial: copies the lake again, starts the stage in a fresh
process, kills it with SIGKILL at a random moment of its work (seeded), reruns the stage to completion and compares:

- rows lost / duplicated: doc_ids of the reference partition missing from the trial's, and doc_ids seen twice;
- mismatches: rows whose content differs (curated text/label/split, token ids, prediction probabilities; for train,
  weight tensors of the committed model that differ);
- manifests: each listed file exists and the counts add up (raw = curated + rejects).

    .venv/bin/python -m tests.reliability.crash_harness --trials 10      # what `make reliability` runs
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import polars as pl

from bert_pipeline.config import build_config
from bert_pipeline.lake.manifests import Lake
from tests.helpers import read_partition

STAGES = ("ingest", "curate", "tokenize", "train", "score")
CRASHED = ("curate", "tokenize", "train", "score")

# The child: import everything first, say READY, then run one stage (the harness kills it during the work).
CHILD = """
import json, sys, time
from bert_pipeline.config import build_config
from tests.reliability.crash_harness import stage_runner
run, cfg = stage_runner(sys.argv[1]), build_config(json.loads(sys.argv[2]))
print("READY", flush=True)
started = time.monotonic()
run(cfg)
print("WORK", time.monotonic() - started, flush=True)
"""


@dataclass
class Outcome:
    stage: str
    trials: int = 0
    killed: int = 0
    rows_lost: int = 0
    rows_duplicated: int = 0
    mismatches: int = 0
    manifest_errors: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.rows_lost or self.rows_duplicated or self.mismatches or self.manifest_errors)


def stage_config(base: dict[str, Any], lake: Path) -> dict[str, Any]:
    return {**base, "data_root": str(lake)}


def stage_runner(stage: str) -> Callable[[Any], dict[str, Any]]:
    """The library entry point of a stage (imported here, so a child process pays the imports before READY)."""
    from bert_pipeline.stages.curate import run_curate
    from bert_pipeline.stages.ingest import run_ingest
    from bert_pipeline.stages.score import run_score
    from bert_pipeline.stages.tokenize import run_tokenize
    from bert_pipeline.stages.train import run_train

    return {"ingest": run_ingest, "curate": run_curate, "tokenize": run_tokenize, "train": run_train,
            "score": run_score}[stage]


def run_in_process(stage: str, config: dict[str, Any]) -> None:
    stage_runner(stage)(build_config(config))


def run_child(stage: str, config: dict[str, Any], kill_after: float | None = None) -> tuple[bool, float]:
    """Run the stage in a fresh process; with kill_after, SIGKILL it that many seconds into its work.

    Returns (killed, seconds of work the child reported; 0 when killed)."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error",
           "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, stage, json.dumps(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env,
                            cwd=Path(__file__).resolve().parents[2])  # the child imports this module
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        proc.wait()
        raise RuntimeError(f"{stage} child failed before starting: {proc.stderr.read()[-2000:] if proc.stderr else ''}")
    if kill_after is not None:
        try:
            proc.wait(kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True, 0.0
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{stage} child exited {proc.returncode}: {err[-3000:]}")
    work = next((float(l.split()[1]) for l in out.splitlines() if l.startswith("WORK")), 0.0)
    return False, work


# What must be identical between a crashed-and-rerun stage and the reference, per area.
COMPARED = {
    "curated": ["doc_id", "text", "label", "split", "cluster_id", "duplicate_of"],
    "rejects": ["doc_id", "reason"],
    "tokens": ["doc_id", "input_ids", "label_id", "tag_ids", "split"],
    "predictions": ["doc_id", "predicted_label", "confidence", "probabilities"],
    "entities": ["doc_id", "entities"],
}
AREAS = {"curate": ["curated", "rejects"], "tokenize": ["tokens"], "score": ["predictions", "entities"]}


def compare_rows(reference: pl.DataFrame, trial: pl.DataFrame, columns: list[str], outcome: Outcome) -> None:
    ref_ids, trial_ids = set(reference["doc_id"].to_list()), trial["doc_id"].to_list() if trial.height else []
    outcome.rows_lost += len(ref_ids - set(trial_ids))
    outcome.rows_duplicated += len(trial_ids) - len(set(trial_ids))
    columns = [c for c in columns if c in reference.columns]
    if not trial.height:
        return
    joined = reference.select(columns).join(trial.select(columns).unique("doc_id"), on="doc_id", how="inner",
                                            suffix="_trial")
    differs = pl.lit(False)
    for column in columns[1:]:
        differs = differs | (pl.col(column).ne_missing(pl.col(f"{column}_trial")))
    outcome.mismatches += joined.filter(differs).height


def check_manifests(lake: Lake, run_date: str, outcome: Outcome) -> None:
    for area in ("raw", "curated", "rejects", "tokens", "predictions", "entities"):
        manifest = lake.read_manifest(area, run_date)
        if manifest is None:
            continue
        folder = Path(lake.partition(area, run_date))
        missing = [name for name in manifest["outputs"] if not (folder / name).exists()]
        extra = [p.name for p in folder.glob("part-*") if p.name not in manifest["outputs"]]
        if missing or extra:
            outcome.manifest_errors.append(f"{area}: missing {missing}, unlisted {extra}")
    curated = lake.read_manifest("curated", run_date)
    if curated:
        c = curated["counts"]
        if c["raw_rows"] != c["curated_rows"] + c["rejected_rows"]:
            outcome.manifest_errors.append(f"curated counts do not add up: {c}")
    for area in ("predictions", "entities"):
        scored = lake.read_manifest(area, run_date)
        if scored and curated and scored["counts"]["rows"] != curated["counts"]["curated_rows"]:
            outcome.manifest_errors.append(f"{area} rows != curated rows")
    leftovers = [str(p.relative_to(lake.root)) for p in Path(lake.root).glob("**/*.tmp-*")]
    if leftovers:
        outcome.manifest_errors.append(f"temporary files left behind: {leftovers[:3]}")


def check_folder_readers(lake: Lake, outcome: Outcome) -> None:
    """Right after a kill, before any rerun: polars, the strictest folder reader (it refuses a folder holding any
    file that is not parquet), still reads every parquet table folder."""
    for area in ("raw", "curated", "rejects", "dedup_index", "predictions", "entities"):
        folder = Path(lake.root) / area
        if not any(p.is_file() for p in folder.rglob("*")):
            continue
        try:
            pl.scan_parquet(folder).collect()
        except Exception as error:  # noqa: BLE001 -- any reader error is the finding
            outcome.manifest_errors.append(f"{area}: polars cannot read the folder after the kill: {error}")


def model_tensors(lake: Lake) -> dict[str, Any]:
    from safetensors.numpy import load_file

    champion = json.loads(Path(lake.champion_url).read_text())
    return load_file(str(Path(lake.model_url(champion["model_version"])) / "model.safetensors"))


def compare_models(reference: Lake, trial: Lake, outcome: Outcome) -> None:
    ref, got = model_tensors(reference), model_tensors(trial)
    import numpy as np

    outcome.mismatches += sum(1 for name in ref if name not in got or not np.array_equal(ref[name], got[name]))


def crash_stage(stage: str, base_config: dict[str, Any], workdir: Path, trials: int, rng: random.Random) -> Outcome:
    run_date = base_config["run_date"]
    before = workdir / f"{stage}-before"
    if not before.exists():
        for earlier in STAGES[:STAGES.index(stage)]:
            run_in_process(earlier, stage_config(base_config, before))
    reference = workdir / f"{stage}-reference"
    shutil.rmtree(reference, ignore_errors=True)
    shutil.copytree(before, reference)
    _, work = run_child(stage, stage_config(base_config, reference))
    outcome = Outcome(stage)
    for trial in range(trials):
        lake_dir = workdir / f"{stage}-trial-{trial}"
        shutil.rmtree(lake_dir, ignore_errors=True)
        shutil.copytree(before, lake_dir)
        config = stage_config(base_config, lake_dir)
        # stratified: trial t dies in the t-th slice of the stage's work, so early and late kills are both tried and
        # the first trial dies well before the end even when a trial runs faster than the reference did
        low, high = 0.05 + 0.95 * trial / trials, 0.05 + 0.95 * (trial + 1) / trials
        killed, _ = run_child(stage, config, kill_after=rng.uniform(low, high) * max(work, 0.2))
        check_folder_readers(Lake.of(build_config(config)), outcome)
        run_child(stage, config)  # the rerun after the crash
        outcome.trials += 1
        outcome.killed += killed
        ref_lake = Lake.of(build_config(stage_config(base_config, reference)))
        trial_lake = Lake.of(build_config(config))
        for area in [a for a in AREAS.get(stage, []) if ref_lake.read_manifest(a, run_date) is not None]:
            compare_rows(read_partition(ref_lake, area, run_date), read_partition(trial_lake, area, run_date),
                         COMPARED[area], outcome)
        if stage == "train":
            compare_models(ref_lake, trial_lake, outcome)
        check_manifests(trial_lake, run_date, outcome)
        shutil.rmtree(lake_dir, ignore_errors=True)
    return outcome


def format_table(outcomes: list[Outcome]) -> str:
    lines = [f"{'stage':<10} {'trials':>6} {'killed':>6} {'rows lost':>9} {'duplicated':>10} {'mismatches':>10} "
             "manifests"]
    for o in outcomes:
        lines.append(f"{o.stage:<10} {o.trials:>6} {o.killed:>6} {o.rows_lost:>9} {o.rows_duplicated:>10} "
                     f"{o.mismatches:>10} {'ok' if not o.manifest_errors else '; '.join(o.manifest_errors)}")
    return "\n".join(lines)


def harness_config(workdir: Path, task: str = "classification") -> dict[str, Any]:
    """A few hundred real tweets in shards of 100, the tiny test BERT, checkpoints every few steps; task: ner,
    annotated sentences (tests.helpers.ner_corpus: accents, emoji, CJK) through the same stages."""
    from tests.helpers import build_tiny_model, demo_frame, write_sample_csv

    if task == "ner":
        return ner_harness_config(workdir)

    source = workdir / "tweets.csv"
    write_sample_csv(source, rows=400)
    model = workdir / "tiny-bert"
    if not (model / "config.json").exists():
        build_tiny_model(model, demo_frame()["text"].head(3000).to_list())
    return {"run_date": "2026-11-27",
            "ingest": {"sources": [str(source)], "label_column": "sentiment", "shard_rows": 100},
            "tokenize": {"max_length": 64, "shard_rows": 60},
            # enough steps to beat the majority-class baseline: the champion gate refuses a model that did not
            "train": {"base_model": str(model), "epochs": "auto", "min_steps": 120, "batch_size": 16,
                      "learning_rate": 1e-3, "checkpoint_every_steps": 3, "early_stopping_patience": 0,
                      "linear_baseline": False},  # the tiny BERT does not beat TF-IDF on these tweets
            "score": {"batch_tokens": 512}}


def ner_harness_config(workdir: Path) -> dict[str, Any]:
    from tests.helpers import build_tiny_model, ner_corpus

    workdir.mkdir(parents=True, exist_ok=True)
    records = ner_corpus(360, seed=0) + [{"id": f"u{i}", "text": r["text"]} for i, r in enumerate(ner_corpus(40, 9))]
    source = workdir / "annotated.jsonl"
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                      encoding="utf-8")
    model = workdir / "tiny-ner-bert"
    if not (model / "config.json").exists():
        build_tiny_model(model, [r["text"] for r in records], vocab_size=700)
    return {"run_date": "2026-03-01", "task": "ner",
            "ingest": {"sources": [str(source)], "id_column": "id", "shard_rows": 100},
            "tokenize": {"max_length": 64, "shard_rows": 60},
            "train": {"base_model": str(model), "epochs": "auto", "min_steps": 150, "batch_size": 16,
                      "learning_rate": 1e-3, "checkpoint_every_steps": 3, "early_stopping_patience": 0},
            "score": {"batch_tokens": 512}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10, help="trials per stage")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stages", nargs="*", default=list(CRASHED), choices=CRASHED)
    parser.add_argument("--workdir", default="", help="default: a temporary folder, removed at the end")
    parser.add_argument("--task", default="classification", choices=["classification", "ner"])
    args = parser.parse_args()
    workdir = Path(args.workdir) if args.workdir else Path(__import__("tempfile").mkdtemp(prefix="bert-crash-"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        config = harness_config(workdir, args.task)
        rng = random.Random(args.seed)
        outcomes = []
        for stage in args.stages:
            started = time.monotonic()
            outcomes.append(crash_stage(stage, config, workdir, args.trials, rng))
            print(f"{stage}: {args.trials} trials in {time.monotonic() - started:.0f} s", flush=True)
        print(format_table(outcomes))
        return 0 if all(o.clean for o in outcomes) else 1
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
