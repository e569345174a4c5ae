"""`bert-pipeline`: run the nightly flow or one stage flow from a shell.

Without PREFECT_API_URL, Prefect runs embedded (a temporary local server for this process); with it, runs are
reported to that server.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from bert_pipeline.config import load_config, parse_override
from bert_pipeline.config_reference import cli_text
from bert_pipeline.errors import PipelineError
from bert_pipeline.evaluation.promotion import verdict
from bert_pipeline.lake.manifests import stage_outcome
from bert_pipeline.task import preflight

# The embedded server's start-up wait is 20 s by default: on a busy 2-core machine (a training job beside it) it took
# longer and the run failed before any stage started. Prefect reads its settings when first imported, below this.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

COMMANDS = {
    "run": "the nightly flow: ingest, curate, tokenize, train, score",
    "ingest": "read ingest.sources into <data_root>/raw/run_date=...",
    "curate": "clean, filter and deduplicate raw into curated/ and rejects/",
    "tokenize": "tokenize curated text into Arrow shards under tokens/",
    "train": "fine-tune a classifier (task: ner, an entity tagger) from the token shards into models/<model_version>/",
    "score": "score every curated row into predictions/ (task: ner, entities/) with the champion or score.model",
}

# The sections whose keys each command's --help lists (the top-level keys always): the settings it reads.
SECTIONS = {"run": None, "ingest": {"ingest", "ner", "timeouts"}, "curate": {"curate", "runner", "timeouts"},
            "tokenize": {"tokenize", "timeouts"}, "train": {"train", "timeouts"},
            "score": {"score", "runner", "timeouts"}}
EXAMPLES = """
examples:
  bert-pipeline run --config configs/demo.yaml
  bert-pipeline score --config configs/demo.yaml --set run_date=2026-11-28 --set score.model=./my-model
"""


def keys_help(command: str = "run") -> str:
    """The configuration keys a command reads, generated from the config models' descriptions
    (`config_reference.cli_text`), then examples."""
    return ("configuration keys (YAML file and/or --set dotted.key=value; --set wins; values are read as YAML 1.2):\n"
            + cli_text(SECTIONS.get(command)) + "\n" + EXAMPLES)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bert-pipeline", description="Nightly BERT pipeline on Prefect: text classification and named-entity recognition.",
        epilog=keys_help(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text, epilog=keys_help(name),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        command.add_argument("--config", "-c", metavar="FILE", help="YAML config file (path or URL)")
        command.add_argument("--set", "-s", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                             help="override one key, e.g. --set train.epochs=2 (repeatable; value parsed as YAML 1.2: "
                                  "yes/no/1:30/dates stay text until the key's type reads them; a leading-zero number "
                                  "such as 012 is refused: write 12, or quote it, --set \"key='012'\")")
    migrate = sub.add_parser(
        "migrate-lake", help=MIGRATE_HELP, description=MIGRATE_HELP + " Safe to rerun; does nothing on a current lake.")
    migrate.add_argument("--config", "-c", metavar="FILE", help="YAML config file naming data_root (path or URL)")
    migrate.add_argument("--set", "-s", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="e.g. --set data_root=s3://bucket/lake")
    return parser


MIGRATE_HELP = ("convert a lake written by bert-pipeline before 0.2: manifests to _manifests/, no run_date column in "
                "the files, predictions with one probabilities map column")


def _migrate(cfg: Any) -> int:
    from bert_pipeline.lake.migrate import migrate_lake
    from tasks.stages import load

    cfg = load(cfg.model_dump(mode="json"))  # the lake's options from its storage_block, as every task loads them
    summary = migrate_lake(cfg.data_root, progress=lambda message, _fraction: print(f"  {message}"))
    print(f"bert-pipeline migrate-lake: {summary['partitions_migrated']} partition(s) migrated, "
          f"{summary['shards_rewritten']} shard(s) rewritten under {cfg.data_root}")
    return 0


def _print_summary(command: str, result: dict[str, Any]) -> None:
    stages = result if command == "run" else {command: result}
    print("\nbert-pipeline finished:")
    for stage, summary in stages.items():
        where = summary.get("partition") or summary.get("model_uri") or ""
        if stage == "report":
            where = summary.get("report") or ""
        print(f"  {stage:<9} {stage_outcome(summary):<28} {where}")
        if stage == "curate" and where:
            for area in ("rejects", "dedup_index"):
                print(f"  {'':<9} {'':<28} {where.replace('/curated/', f'/{area}/')}")
        for warning in summary.get("warnings") or []:
            print(f"  {'':<9} warning: {warning}")
        if stage != "report" and summary.get("report"):  # a train or score run alone rewrote the night's report
            print(f"  {'report':<9} {'written':<28} {summary['report']}")
    train = stages.get("train") or {}
    metrics = train.get("metrics")
    if metrics:
        test = metrics.get("test", {})
        decision = train.get("champion_decision") or {}
        then = "trained by an earlier run, which decided: " if train.get("skipped") else ""
        print(f"\nmodel {train['model_version']}: {then}{verdict(decision)}: {decision.get('reason', 'unchanged')}")
        scored = (stages.get("score") or {}).get("model_version")
        if scored and scored != train["model_version"]:  # e.g. a rerun of an older night, since outranked
            print(f"  this night is scored by model_version {scored}")
        training = train.get("training_set") or {}
        if training:
            rows = training["rows"]
            print(f"  trained on: {rows['train']} train / {rows['validation']} validation / {rows['test']} test rows "
                  f"of {len(training['run_dates'])} night(s) ({training['run_dates'][0]} .. "
                  f"{training['run_dates'][-1]}), {training['corrections_applied']} label correction(s) applied")
        for name, split in (("validation", metrics["validation"]), ("test", test)):
            print(f"  {name + ':':<11} {split_figures(split, metrics.get('problem_type'))}")
        for line in baseline_lines(metrics, scored or ""):
            print(f"  {'baseline:':<11} {line}")
        print(f"  metrics:    {train['model_uri']}/metrics.json")


def baseline_lines(metrics: dict[str, Any], scored_by: str = "") -> list[str]:
    """'tfidf-logistic-regression: validation macro-F1 0.6565, test macro-F1 0.5894' for each baseline that
    metrics.json holds (an entity tagger's memorising baseline and CRF; a classifier's TF-IDF), so that the figures
    of what scored a night under score.fallback stand beside the refused model's; the one whose model_version is
    `scored_by` (the night's, e.g. <version>+crf-baseline) says so."""
    found = [b for b in (metrics.get("baseline"), (metrics.get("baseline") or {}).get("crf")) if b]
    lines = []
    for base in found:
        figures = [f"{name} {headline(base[name])}" for name in ("validation", "test") if base.get(name)]
        own = base.get("model_version") or f"{metrics.get('model_version')}+{base.get('kind')}-baseline"
        scored = " (it scored this night: score.fallback)" if scored_by and scored_by == own else ""
        lines.append(f"{base.get('kind', 'baseline')}: {', '.join(figures)}{scored}")
    return lines


def headline(split: dict[str, Any]) -> str:
    """A split's one figure: entity F1 where it has one, else macro-F1."""
    return (f"entity F1 {split['entity_f1']:.4f}" if "entity_f1" in split
            else f"macro-F1 {split.get('macro_f1', 0):.4f}")


def split_figures(split: dict[str, Any], problem_type: str | None) -> str:
    """One split's headline figures: entity F1 for an entity tagger, else accuracy and macro-F1 (and micro-F1 for
    multi-label)."""
    rows = f"({split.get('rows', 0)} rows)"
    if problem_type == "token_classification":
        return (f"entity F1 {split.get('entity_f1', 0):.4f}  precision {split.get('precision', 0):.4f}  recall "
                f"{split.get('recall', 0):.4f}  ({split.get('entities', 0)} entities in {split.get('rows', 0)} rows)")
    multi = problem_type == "multi_label"
    micro = f"  micro-F1 {split.get('micro_f1', 0):.4f}" if multi else ""
    return (f"{'subset accuracy' if multi else 'accuracy'} {split.get('accuracy', 0):.4f}  macro-F1 "
            f"{split.get('macro_f1', 0):.4f}{micro}  {rows}")


def typed_overrides(cfg: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    """Each --set value as the validated config holds it (`yes` -> true for a boolean key, `1_000` -> 1000 for a
    number): the flow's parameters are the values the config check accepted, and fit the deployments' schema."""
    data = cfg.model_dump(mode="json")
    typed = {}
    for dotted in overrides:
        node = data
        for part in dotted.split("."):
            node = node[part]
        typed[dotted] = node
    return typed


def exit_on_sigterm() -> None:
    """SIGTERM (a scheduler's timeout, systemd, Kubernetes, `kill`) ends a run as Ctrl-C does: Python unwinds, so the
    stage's lock is released and the temporary Prefect server the run started is stopped by its atexit hook. Python's
    default for SIGTERM exits at once, which left that server running, orphaned, after every killed run. The exit
    status is 143 (128 + SIGTERM), as a shell reports it."""
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        overrides = dict(parse_override(item) for item in args.overrides)
        config_path = str(Path(args.config).expanduser().resolve()) if args.config and "://" not in args.config else args.config
        cfg = load_config(config_path, overrides)  # refuse a bad config before Prefect starts anything
        overrides = typed_overrides(cfg, overrides)
        if args.command == "migrate-lake":
            return _migrate(cfg)
        preflight(cfg, list(COMMANDS)[1:] if args.command == "run" else [args.command])
    except PipelineError as exc:
        print(f"bert-pipeline: {exc}", file=sys.stderr)
        return 2
    exit_on_sigterm()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from flows.nightly import STAGE_FLOWS, nightly_flow

    flow = nightly_flow if args.command == "run" else STAGE_FLOWS[args.command]
    try:
        result = flow(config=config_path, overrides=overrides)
    except PipelineError as exc:
        print(f"bert-pipeline {args.command} failed: {exc}", file=sys.stderr)
        return 1
    _print_summary(args.command, result)
    if os.environ.get("BERT_PIPELINE_JSON"):
        print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
