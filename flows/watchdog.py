"""The morning check: fail when a night's predictions are not committed by the hour the watchdog is scheduled for.

Its schedule (deployments/prefect.yaml, 07:00 in the pipeline's timezone) is the deadline; a scheduled run checks the
date it was scheduled for, a manual run today (UTC) or the run_date it is given. Failing is the alert: the
automation "a run failed" in deployments/automations.yaml sends it to the notification block.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from bert_pipeline.config import load_config
from bert_pipeline.errors import LakeStateError
from bert_pipeline.lake.manifests import Lake
from bert_pipeline.schedule import missing_by_morning
from bert_pipeline.task import task_of
from flows.stages import Config, Overrides, run_name
from tasks.runtime import with_scheduled_run_date


@flow(name="bert-watchdog", flow_run_name=run_name("watchdog"), validate_parameters=True, retries=0)
def watchdog_flow(config: Config = None, overrides: Overrides = None) -> dict[str, Any]:
    """Fail, naming the first stage without output, when run_date's predictions are not committed."""
    cfg = load_config(config, with_scheduled_run_date(config, overrides))
    problem = missing_by_morning(Lake.of(cfg), cfg.run_date, task_of(cfg).output_area)
    if problem:
        raise LakeStateError(f"watchdog: {problem}; see the nightly run for run_date {cfg.run_date}")
    area = task_of(cfg).output_area
    get_run_logger().info("watchdog: %s for run_date %s are committed", area, cfg.run_date)
    return {"run_date": cfg.run_date, area: "committed"}
