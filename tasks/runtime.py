"""What a flow run knows about how it was started, for the flows: the date its schedule meant, whether another run
started it, and a hard time limit from the config. The date arithmetic is bert_pipeline/schedule.py."""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

from prefect.context import FlowRunContext
from prefect.utilities.timeout import timeout

from bert_pipeline.config import read_config_file
from bert_pipeline.errors import PipelineError
from bert_pipeline.schedule import explicit_run_date, scheduled_run_date


def pipeline_timezone() -> str:
    """The timezone `make deploy` gave the schedules (BERT_PIPELINE_TIMEZONE; `make worker` exports it too)."""
    return os.environ.get("BERT_PIPELINE_TIMEZONE") or "UTC"


def _schedule_timezone(run: Any) -> str:
    """The timezone of the schedule that created `run` (the deployment's own schedule, read from the API), else the
    pipeline's."""
    created_by = getattr(run, "created_by", None)
    if created_by is not None and created_by.type == "SCHEDULE" and created_by.id and run.deployment_id:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            for item in client.read_deployment_schedules(run.deployment_id):
                if item.id == created_by.id:
                    return getattr(item.schedule, "timezone", None) or pipeline_timezone()
    return pipeline_timezone()


def with_scheduled_run_date(config: str | None, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The overrides this run works with: a run a schedule created (on time, late, or a replayed slot) writes the
    date it was scheduled for, in the schedule's timezone, unless the overrides or the config file name a run_date;
    every other run keeps what it was given (no run_date: today in UTC)."""
    overrides = dict(overrides or {})
    context = FlowRunContext.get()
    run = context.flow_run if context else None
    if run is None or not (run.auto_scheduled or (run.created_by and run.created_by.type == "SCHEDULE")):
        return overrides
    try:
        data = read_config_file(config) if config else {}
    except PipelineError:
        return overrides  # the flow reports the bad config itself
    if explicit_run_date(data, overrides) or run.expected_start_time is None:
        return overrides
    return overrides | {"run_date": scheduled_run_date(run.expected_start_time, _schedule_timezone(run))}


def started_alone() -> bool:
    """True when no other flow run started this one (the UI, `prefect deployment run`, a schedule, a trigger): its
    commits carry the chain forward. The nightly's, a backfill's and the promote flow's child runs return False."""
    context = FlowRunContext.get()
    return context is None or context.flow_run is None or context.flow_run.parent_task_run_id is None


class StageTimedOut(TimeoutError):
    """A flow run ran past its `timeouts.<name>`: Prefect ends it TimedOut (a Failed state)."""


class _Expired(TimeoutError):
    pass


@contextlib.contextmanager
def time_limit(key: str, seconds: int | None) -> Iterator[None]:
    """Stop the body after `seconds` (None: no limit) with StageTimedOut naming the config key. An alarm in the main
    thread interrupts waits and sleeps; a call inside C code (a forward pass) ends first."""
    try:
        with timeout(seconds=seconds, timeout_exc_type=_Expired):
            yield
    except _Expired:
        raise StageTimedOut(f"ran past {key} = {seconds} s and was stopped; raise {key} (or leave it empty for no "
                            "limit) if the work is really that long, or find what it waited on") from None
