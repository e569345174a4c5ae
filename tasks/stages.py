"""Thin Prefect tasks: validate the config dict, call the library, publish a summary, return small dicts of URIs and
counts (never data: Prefect keeps task results in memory). Retries happen on transient I/O only."""

from __future__ import annotations

import json
from typing import Any

from prefect import get_run_logger, task
from prefect.runtime import flow_run
from prefect.tasks import exponential_backoff

from bert_pipeline.stages import curate
from bert_pipeline.lake import storage
from bert_pipeline.config import PipelineConfig
from bert_pipeline.errors import is_transient
from bert_pipeline.stages.ingest import run_ingest
from bert_pipeline.stages import score
from bert_pipeline.stages.tokenize import run_tokenize
from bert_pipeline.stages.train import run_train
from bert_pipeline.stages.report import write_report
from tasks.reporting import ProgressReporter, publish_report, publish_summary


def retry_on_transient_io(_task: Any, _task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - we only classify it
        return is_transient(exc)
    return False


def load(config: dict[str, Any]) -> PipelineConfig:
    """The validated config, with the lake's storage options loaded from its Prefect Secret block when it names one
    (in this process: a Dask worker needs them as much as the flow does)."""
    cfg = PipelineConfig.model_validate(config)
    if cfg.storage_block:
        storage.set_options(cfg.data_root, storage_block_options(cfg.storage_block))
    return cfg


def storage_block_options(name: str) -> dict[str, Any]:
    from prefect.blocks.system import Secret

    value = Secret.load(name).get()
    options = json.loads(value) if isinstance(value, str) else value
    if not isinstance(options, dict):
        raise ValueError(f"storage_block {name!r} must hold a JSON object of fsspec options, e.g. "
                         '{"key": ..., "secret": ..., "client_kwargs": {"endpoint_url": ...}}')
    return options


RETRIES = dict(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=5), retry_jitter_factor=0.5,
               retry_condition_fn=retry_on_transient_io)


@task(name="ingest", **RETRIES)
def ingest_task(config: dict[str, Any]) -> dict[str, Any]:
    return publish_summary(run_ingest(load(config)))


# curate is four steps so that the per-shard ones map over shards (threads here, a Dask cluster with prefect-dask)
@task(name="curate-begin", **RETRIES)
def curate_begin_task(config: dict[str, Any]) -> dict[str, Any]:
    return curate.begin(load(config)).as_dict()


@task(name="curate-prepare", **RETRIES)
def curate_prepare_task(config: dict[str, Any], shard: int, fingerprint: str) -> int:
    return curate.prepare_shard(load(config), shard, fingerprint)


@task(name="curate-cluster", **RETRIES)
def curate_cluster_task(config: dict[str, Any], fingerprint: str, shards: int) -> int:
    return curate.cluster(load(config), fingerprint, shards)


@task(name="curate-finish", **RETRIES)
def curate_finish_task(config: dict[str, Any], shard: int, fingerprint: str) -> int:
    return curate.finish_shard(load(config), shard, fingerprint)


@task(name="curate-commit", **RETRIES)
def curate_commit_task(config: dict[str, Any], fingerprint: str, shards: int) -> dict[str, Any]:
    return publish_summary(curate.commit(load(config), fingerprint, shards))


@task(name="curate-skipped")
def curate_skipped_task(config: dict[str, Any]) -> dict[str, Any]:
    return publish_summary(curate.skipped_summary(load(config)))


@task(name="tokenize", **RETRIES)
def tokenize_task(config: dict[str, Any]) -> dict[str, Any]:
    return publish_summary(run_tokenize(load(config), progress=ProgressReporter("tokenize")))


@task(name="train", tags=["gpu"], **RETRIES)
def train_task(config: dict[str, Any]) -> dict[str, Any]:
    return publish_summary(run_train(load(config), progress=ProgressReporter("train")))


# score is planned once, mapped over shards (one model load per worker process), then committed
@task(name="score-plan", **RETRIES)
def score_plan_task(config: dict[str, Any]) -> score.ScorePlan:
    return score.plan_score(load(config), run_id=str(flow_run.id or "") or None)


@task(name="score-shard", tags=["gpu"], **RETRIES)
def score_shard_task(config: dict[str, Any], plan: score.ScorePlan, shard: int) -> dict[str, int]:
    result = score.score_shard(load(config), plan, shard)
    get_run_logger().info("shard %d/%d: %d rows (%d scored now)", shard + 1, plan.shards, result["rows"],
                          result["scored"])
    return result


@task(name="score-commit", **RETRIES)
def score_commit_task(config: dict[str, Any], plan: score.ScorePlan, results: list[dict[str, int]]) -> dict[str, Any]:
    return publish_summary(score.commit_score(load(config), plan, results))


@task(name="score-done")
def score_done_task(config: dict[str, Any], plan: score.ScorePlan) -> dict[str, Any]:
    """A run_date with nothing to do: no curated rows, or predictions already committed for this model."""
    return publish_summary(score.finish_without_scoring(load(config), plan))


@task(name="report", **RETRIES)
def report_task(config: dict[str, Any]) -> dict[str, Any]:
    return publish_report(write_report(load(config)))
