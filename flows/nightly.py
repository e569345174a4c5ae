"""The nightly flow: every stage in order on one pinned run_date, then the report.

Run locally (CLI, tests), each stage is a sub-flow in this process. Run from a deployment, each stage is its own
flow run of the stage's deployment (`bert-train/train` ...), so train and score go to the `gpu` work pool under its
one-at-a-time limit, and any stage run can be retried alone from the UI.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.deployments import run_deployment
from prefect.runtime import deployment

from bert_pipeline.config import load_config
from bert_pipeline.errors import PipelineError
from bert_pipeline.task import preflight
from bert_pipeline.schedule import ordered_stages
from flows.stages import (
    Config, Overrides, Stages, curate_flow, ingest_flow, run_name, score_flow, tokenize_flow, train_flow,
)
from tasks.runtime import time_limit, with_scheduled_run_date
from tasks.stages import report_task

STAGE_FLOWS = {"ingest": ingest_flow, "curate": curate_flow, "tokenize": tokenize_flow, "train": train_flow,
               "score": score_flow}


def run_stage_deployment(stage: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """Run `bert-<stage>/<stage>` on its own work pool and wait; a stage that does not complete stops the night."""
    run = run_deployment(f"bert-{stage}/{stage}", parameters=parameters, timeout=None)
    if not run.state or not run.state.is_completed():
        raise PipelineError(f"stage {stage}: flow run {run.name} ended {run.state.name if run.state else 'unknown'}; "
                            "fix the cause and retry this nightly run (committed stages are skipped): a retry of that "
                            "stage run alone would not run the stages after it or the report")
    return {"stage": stage, "flow_run": run.name, "state": run.state.name}


@flow(name="bert-nightly", flow_run_name=run_name("nightly"), validate_parameters=True)
def nightly_flow(config: Config = None, overrides: Overrides = None, stages: Stages = None) -> dict[str, Any]:
    """Ingest -> curate -> tokenize -> train -> score (or the `stages` named) for one run_date, then the report in
    reports/run_date=.../. A scheduled run writes the date it was scheduled for (a late run or a replayed slot too)."""
    overrides = with_scheduled_run_date(config, overrides)
    cfg = load_config(config, overrides)
    picked = ordered_stages(stages)
    preflight(cfg, picked)
    # Pin the date so a run that crosses midnight writes one partition.
    pinned = {**overrides, "run_date": cfg.run_date}
    with time_limit("timeouts.nightly", cfg.timeouts.nightly):
        if deployment.id:
            results = {stage: run_stage_deployment(stage, {"config": config, "overrides": pinned}) for stage in picked}
        else:
            results = {stage: STAGE_FLOWS[stage](config=config, overrides=pinned) for stage in picked}
        results["report"] = report_task(cfg.model_dump(mode="json"))
    return results
