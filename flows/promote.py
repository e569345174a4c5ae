"""Promotion with a human say: a model that passed the gate under `train.promotion: approve` waits here for a person.

The train run commits the model and ends (the GPU is free); its `bert-pipeline.model.awaiting-approval` event starts
this flow on the cpu pool (the trigger in deployments/prefect.yaml). The run pauses with a form in the Prefect UI
(the flow run's Resume button) that shows the model's scores against the champion's on the same validation rows;
approved, the model becomes champion and the latest night is rescored with it (once, by the score deployment's
trigger, whose run rewrites that night's report and brings the score.rescore_nights nights before it up to the new
champion too); rejected, or unanswered after `timeouts.approval` seconds, it is kept
in the registry and marked. Whatever the answer, the report of the night the model was trained for is rewritten at
once, so it no longer reads "waiting for a person's approval".
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.flow_runs import pause_flow_run
from prefect.exceptions import FlowPauseTimeout
from prefect.input import RunInput
from pydantic import Field

from bert_pipeline.evaluation import promotion
from bert_pipeline.config import load_config
from bert_pipeline.lake.manifests import Lake
from flows.stages import Config, Overrides, with_report
from tasks.events import announce_champion
from tasks.runtime import started_alone


class Approval(RunInput):
    """The person's answer."""

    approve: bool = Field(False, description="make this model the champion (the latest night, and the "
                          "score.rescore_nights nights before it, are then rescored)")
    reviewer: str = Field("", description="who decided (kept in models/<version>/_promotion.json)")
    note: str = Field("", description="why, for the record")


@flow(name="bert-promote", flow_run_name="promote-{model_version}", validate_parameters=True)
def promote_flow(model_version: str, config: Config = None, overrides: Overrides = None) -> dict[str, Any]:
    """Wait for a person to approve or reject a model that passed the gate; record it, promote it if approved."""
    cfg = load_config(config, overrides)
    lake, log = Lake.of(cfg), get_run_logger()
    current = promotion.status(lake, model_version)
    if current["state"] != "pending":  # decided already (a retry after the answer was recorded): the report again
        log.info("model %s is not waiting for approval (%s): nothing to decide", model_version, current["state"])
        return with_night_report(current, lake, model_version, config, overrides)
    facts = promotion.review(lake, model_version)
    form = Approval.with_initial_data(description=promotion.review_markdown(facts))  # keeps the fields as declared
    try:
        answer = pause_flow_run(wait_for_input=form, timeout=cfg.timeouts.approval, key=f"approve-{model_version}")
    except FlowPauseTimeout:
        answer = None
    return record_answer(model_version, answer, config, overrides)


def record_answer(model_version: str, answer: Approval | None, config: Config = None,
                  overrides: Overrides = None) -> dict[str, Any]:
    """Record a person's answer (None: nobody answered within timeouts.approval) in models/<version>/_promotion.json,
    make an approved model champion (its event rescores the newest night and the nights before it), and rewrite the report of the night the
    model was trained for. Returns the promotion record (`promotion.status`'s shape) with "report": its URI."""
    cfg = load_config(config, overrides)
    lake, log = Lake.of(cfg), get_run_logger()
    if answer is None:
        log.warning("nobody answered within timeouts.approval = %d s: model %s is kept, marked expired",
                    cfg.timeouts.approval, model_version)
        record = promotion.reject(lake, model_version, note=f"no answer within {cfg.timeouts.approval} s",
                                  expired=True)
    elif not answer.approve:
        log.info("model %s rejected by %s: kept, not promoted", model_version, answer.reviewer or "a person")
        record = promotion.reject(lake, model_version, answer.reviewer, answer.note)
    else:
        record = promotion.approve(lake, model_version, answer.reviewer, answer.note)
        if record["state"] == "approved":
            log.info("model %s approved by %s: it is the champion", model_version, answer.reviewer or "a person")
            announce_champion(cfg, model_version, record.get("previous_champion"), config, dict(overrides or {}),
                              chain=started_alone())
        else:
            log.warning("model %s not promoted: %s", model_version, record.get("reason"))
    return with_night_report(record, lake, model_version, config, overrides)


def with_night_report(record: dict[str, Any], lake: Lake, model_version: str, config: Config,
                      overrides: Overrides) -> dict[str, Any]:
    """record plus "report": the report of the night the model was trained for, rewritten (it said "waiting for a
    person's approval"); a warning instead when it cannot be written (flows.stages.with_report)."""
    night = promotion.review(lake, model_version)["run_date"]
    if not night:
        return record
    return with_report(record, load_config(config, {**(overrides or {}), "run_date": night}))
