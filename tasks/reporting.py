"""Stage summaries as Prefect table artifacts, so the UI shows counts, reject reasons and metrics per run."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_table_artifact


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
