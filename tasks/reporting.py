"""Stage summaries as Prefect table artifacts, so the UI shows counts, reject reasons and metrics per run."""

from __future__ import annotations

import os
import time
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import (
    create_link_artifact, create_markdown_artifact, create_progress_artifact, create_table_artifact,
    update_progress_artifact,
)

from bert_pipeline.lake import storage
from bert_pipeline.lake.manifests import stage_outcome
from bert_pipeline.stages.report import comparison_note


# Too detailed for a summary table: the full metrics are in the model's metrics.json.
_DETAIL = {"per_class", "confusion_matrix"}


def summary_rows(summary: dict[str, Any], prefix: str = "") -> list[dict[str, str]]:
    """Nested summary dict -> rows of dotted field and value, leaving out per-class detail and long lists."""
    rows: list[dict[str, str]] = []
    for key, value in summary.items():
        field = f"{prefix}.{key}" if prefix else str(key)
        if key in _DETAIL:
            continue
        if isinstance(value, dict):
            rows += summary_rows(value, field)
        elif not isinstance(value, list) or len(value) <= 10:
            rows.append({"field": field, "value": str(value)})
    return rows


class ProgressReporter:
    """The library's progress callback as log lines plus a progress artifact the UI updates while a stage runs."""

    def __init__(self, stage: str, every_seconds: float = 5.0) -> None:
        self.stage, self.every, self.last = stage, every_seconds, 0.0
        self.artifact_id = create_progress_artifact(0.0, key=f"bert-{stage}-progress",
                                                    description=f"bert-pipeline {stage}: starting")

    def __call__(self, message: str, fraction: float) -> None:
        get_run_logger().info("%s: %s", self.stage, message)
        now = time.monotonic()
        if now - self.last >= self.every or fraction >= 1.0:  # at most one API call per interval
            self.last = now
            update_progress_artifact(self.artifact_id, round(100 * min(max(fraction, 0.0), 1.0), 1),
                                     description=f"bert-pipeline {self.stage}: {message}")


def output_link(url: str) -> str:
    """A clickable link for a lake location: file:// for local folders, the URL itself otherwise."""
    return url if "://" in url else "file://" + os.path.abspath(url)


def publish_summary(summary: dict[str, Any]) -> dict[str, Any]:
    stage = summary.get("stage", "stage")
    get_run_logger().info("%s: %s", stage, stage_outcome(summary))
    for warning in summary.get("warnings") or []:  # what the user must act on, said where they look
        named = warning.startswith(f"{stage}: ")  # some name their stage already ("tokenize: 755 of 1,177 ...")
        get_run_logger().warning("%s%s", "" if named else f"{stage}: ", warning)
    create_table_artifact(table=summary_rows(summary), key=f"bert-{stage}-summary",
                          description=f"bert-pipeline {stage} stage summary")
    if summary.get("partition"):
        create_link_artifact(output_link(summary["partition"]), link_text=f"{stage} output: {summary['partition']}",
                             key=f"bert-{stage}-output", description=f"bert-pipeline {stage} output partition")
    reasons = summary.get("rejected_by_reason")
    if reasons and not summary.get("skipped"):
        raw = max(1, int(summary.get("raw_rows", 0)))
        create_table_artifact(
            table=[{"reason": r, "rows": n, "share_of_raw": f"{n / raw:.2%}"} for r, n in reasons.items()]
            + [{"reason": "(curated)", "rows": summary.get("curated_rows", 0),
                "share_of_raw": f"{summary.get('curated_rows', 0) / raw:.2%}"}],
            key="bert-curate-reject-reasons",
            description=f"run_date rows by outcome: raw {summary.get('raw_rows')} = curated + rejected",
        )
    return summary


def publish_report(summary: dict[str, Any]) -> dict[str, Any]:
    """The nightly report as a markdown artifact (the PNGs stay next to report.md in the lake) and a link to it."""
    text = storage.read_text(summary["report"])
    create_markdown_artifact(text, key="bert-nightly-report", description="bert-pipeline nightly report")
    create_link_artifact(output_link(summary["report"]), link_text="report.md and plots", key="bert-report-output")
    get_run_logger().info("report: %s (%s); %s", summary["report"], ", ".join(summary["plots"]),
                          comparison_note(summary.get("previous_run_date"), summary.get("skipped_empty_nights") or [],
                                          summary.get("compared", "predictions")))
    return summary
