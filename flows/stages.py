"""One Prefect flow per stage. Each validates its parameters before any work starts, then calls one task."""

from __future__ import annotations

from typing import Any, Callable

from prefect import flow, unmapped
from prefect.task_runners import ThreadPoolTaskRunner

from bert_pipeline.config import load_config
from bert_pipeline.models import preflight
from tasks.stages import (
    curate_begin_task, curate_cluster_task, curate_commit_task, curate_finish_task, curate_prepare_task,
    curate_skipped_task, ingest_task, score_commit_task, score_done_task, score_plan_task, score_shard_task,
    tokenize_task, train_task,
)


def run_name(stage: str) -> Callable[[], str]:
    """Flow runs are named <stage>-<run_date> so the UI list reads like the lake."""

    def name() -> str:
        from prefect.runtime import flow_run

        params = flow_run.parameters or {}
        try:
            run_date = load_config(params.get("config"), params.get("overrides")).run_date
        except Exception:  # noqa: BLE001 - the flow itself reports a bad config; the name must not fail
            run_date = "invalid-config"
        return f"{stage}-{run_date}"

    return name


def _stage(stage: str, task: Any) -> Callable[..., dict[str, Any]]:
    def run(config: str | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        cfg = load_config(config, overrides)  # fails here, naming the field, before any work
        preflight(cfg, [stage])
        return task(cfg.model_dump(mode="json"))

    run.__name__ = f"{stage}_flow"
    run.__doc__ = f"bert-pipeline {stage} stage for one run_date: `config` is a YAML path/URL, `overrides` dotted keys."
    return flow(name=f"bert-{stage}", flow_run_name=run_name(stage), validate_parameters=True)(run)


ingest_flow = _stage("ingest", ingest_task)
tokenize_flow = _stage("tokenize", tokenize_task)
train_flow = _stage("train", train_task)


@flow(name="bert-curate", flow_run_name=run_name("curate"), validate_parameters=True)
def curate_flow(config: str | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """bert-pipeline curate stage: clean and filter each shard, cluster duplicates, write each shard, commit."""
    data = load_config(config, overrides).model_dump(mode="json")
    plan = curate_begin_task(data)
    if plan["skipped"]:
        return curate_skipped_task(data)
    shards, fp = list(range(plan["shards"])), plan["fingerprint"]
    prepared = curate_prepare_task.map(unmapped(data), shards, unmapped(fp))
    clustered = curate_cluster_task.submit(data, fp, plan["shards"], wait_for=prepared)
    finished = curate_finish_task.map(unmapped(data), shards, unmapped(fp), wait_for=[clustered])
    return curate_commit_task(data, fp, plan["shards"], wait_for=finished)


# One shard at a time per process: the model is loaded once and uses every core; more parallelism comes from more
# workers (a Dask cluster), not from threads sharing one model.
@flow(name="bert-score", flow_run_name=run_name("score"), validate_parameters=True,
      task_runner=ThreadPoolTaskRunner(max_workers=1))
def score_flow(config: str | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """bert-pipeline score stage: plan, score each curated shard, commit (or swap in a replacement)."""
    cfg = load_config(config, overrides)
    preflight(cfg, ["score"])
    data = cfg.model_dump(mode="json")
    plan = score_plan_task(data)
    if plan["empty"] or plan["skipped"]:
        return score_done_task(data, plan)
    results = score_shard_task.map(unmapped(data), unmapped(plan), list(range(plan["shards"])))
    return score_commit_task(data, plan, results)
