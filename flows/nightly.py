"""The nightly flow: every stage in order, each as its own sub-flow run, on one pinned run_date."""

from __future__ import annotations

from typing import Any

from prefect import flow

from bert_pipeline.config import load_config
from bert_pipeline.models import preflight
from flows.stages import Config, Overrides, curate_flow, ingest_flow, run_name, score_flow, tokenize_flow, train_flow
from tasks.stages import report_task

STAGE_FLOWS = {"ingest": ingest_flow, "curate": curate_flow, "tokenize": tokenize_flow, "train": train_flow,
               "score": score_flow}


@flow(name="bert-nightly", flow_run_name=run_name("nightly"), validate_parameters=True)
def nightly_flow(config: Config = None, overrides: Overrides = None) -> dict[str, Any]:
    """Ingest -> curate -> tokenize -> train -> score for one run_date, then the report in reports/run_date=.../."""
    cfg = load_config(config, overrides)
    preflight(cfg, list(STAGE_FLOWS))
    # Pin the date so a run that crosses midnight writes one partition.
    pinned = {**(overrides or {}), "run_date": cfg.run_date}
    results = {stage: stage_flow(config=config, overrides=pinned) for stage, stage_flow in STAGE_FLOWS.items()}
    results["report"] = report_task(load_config(config, pinned).model_dump(mode="json"))
    return results
