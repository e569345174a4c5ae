"""Stage summaries as Prefect table artifacts, so the UI shows counts, reject reasons and metrics per run."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_table_artifact


def _flatten(prefix: str, value: Any, rows: list[dict[str, str]]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, rows)
    elif not isinstance(value, list) or len(value) <= 10:
        rows.append({"field": prefix, "value": str(value)})


def summary_rows(summary: dict[str, Any]) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for key, value in summary.items():
        if key in ("per_class", "confusion_matrix"):
            continue
        _flatten(key, value, rows)
    return [r for r in rows if ".per_class." not in r["field"] and "confusion_matrix" not in r["field"]]


def publish_summary(summary: dict[str, Any]) -> dict[str, Any]:
    stage = summary.get("stage", "stage")
    get_run_logger().info("%s: %s", stage, "skipped (already committed)" if summary.get("skipped") else "done")
    create_table_artifact(table=summary_rows(summary), key=f"bert-{stage}-summary",
                          description=f"bert-pipeline {stage} stage summary")
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
