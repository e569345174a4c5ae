"""Backfill: run the nightly for every date from start to end, oldest first, one night at a time.

Deployed, each night is a run of `bert-nightly/nightly` (so its one-at-a-time limit, the GPU pool's limit and every
stage's lock apply as on a scheduled night) and the backfill waits for it before starting the next; locally it is a
sub-flow. The range is checked before any night starts: reversed, ending in the future, or longer than
bert_pipeline.schedule.MAX_BACKFILL_DAYS nights is refused, naming the parameter. Nights whose requested stages and
report are all committed are skipped until the first one that is not; from there every night runs (its stages skip
what is still up to date), so curate's cross-night dedup, the accumulating training set and the report's comparison
with the previous night come out as if the nights had run in order. One difference: only the last night's score
rescores the nights before it (score.rescore_nights), since every earlier night would rescore them with a model the
next night replaces; nights outside the last night's window keep their own night's model (run in order, each would
have been rescored by a night within the window after it).
"""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.deployments import run_deployment
from prefect.runtime import deployment
from pydantic import Field

from bert_pipeline.config import load_config
from bert_pipeline.errors import PipelineError
from bert_pipeline.lake.manifests import Lake
from bert_pipeline.task import preflight, task_of
from bert_pipeline.schedule import (
    backfill_dates, backfill_overrides, night_status, ordered_stages, plan_backfill, today,
)
from flows.nightly import nightly_flow
from flows.stages import Config, Overrides, Stages
from tasks.runtime import pipeline_timezone

Day = Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$", description="YYYY-MM-DD")]


@flow(name="bert-backfill", flow_run_name="backfill-{start}-to-{end}", validate_parameters=True)
def backfill_flow(start: Day, end: Day, stages: Stages = None, config: Config = None,
                  overrides: Overrides = None) -> dict[str, Any]:
    """Run the nightly (or the `stages` named) for each night from start to end, oldest first, skipping done nights."""
    dates = backfill_dates(start, end, today(pipeline_timezone()))  # refused here, before any night runs
    picked = ordered_stages(stages)
    cfg = load_config(config, {**(overrides or {}), "run_date": dates[0]})
    preflight(cfg, picked)
    lake = Lake.of(cfg)
    skipped, to_run = plan_backfill(dates, {d: all(night_status(lake, d, picked, task_of(cfg).output_area).values())
                                               for d in dates})
    log = get_run_logger()
    log.info("backfill %s .. %s: %d night(s) already done, %d to run: %s", start, end, len(skipped), len(to_run),
             ", ".join(to_run) or "none")
    results: dict[str, Any] = {"skipped": skipped, "ran": {}}
    for night in to_run:
        params = {"config": config, "overrides": backfill_overrides(overrides, night, to_run), "stages": picked}
        if deployment.id:
            run = run_deployment("bert-nightly/nightly", parameters=params, timeout=None)
            if not run.state or not run.state.is_completed():
                raise PipelineError(f"backfill stopped at run_date {night}: nightly run {run.name} ended "
                                    f"{run.state.name if run.state else 'unknown'}; later nights read this one, so "
                                    f"fix it and run the backfill again from {night}")
            results["ran"][night] = run.name
        else:
            nightly_flow(**params)
            results["ran"][night] = "done"
    return results
