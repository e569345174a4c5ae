"""Thin Prefect tasks: validate the config dict, call the library, publish a summary, return small dicts of URIs and
counts (never data: Prefect keeps task results in memory). Retries happen on transient I/O only."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.runtime import flow_run
from prefect.tasks import exponential_backoff

from bert_pipeline.config import PipelineConfig
from bert_pipeline import curate
from bert_pipeline.errors import is_transient
from bert_pipeline.ingest import run_ingest
from bert_pipeline import score
from bert_pipeline.tokenize import run_tokenize
from bert_pipeline.train import run_train
from tasks.reporting import publish_summary


def retry_on_transient_io(_task: Any, _task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - we only classify it
        return is_transient(exc)
    return False


RETRIES = dict(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=5), retry_jitter_factor=0.5,
               retry_condition_fn=retry_on_transient_io)


@task(name="ingest", **RETRIES)
def ingest_task(config: dict[str, Any]) -> dict[str, Any]:
    return publish_summary(run_ingest(PipelineConfig.model_validate(config)))


# curate is four steps so that the per-shard ones map over shards (threads here, a Dask cluster with prefect-dask)
@task(name="curate-begin", **RETRIES)
def curate_begin_task(config: dict[str, Any]) -> dict[str, Any]:
    return curate.begin(PipelineConfig.model_validate(config)).as_dict()


@task(name="curate-prepare", **RETRIES)
def curate_prepare_task(config: dict[str, Any], shard: int, fingerprint: str) -> int:
    return curate.prepare_shard(PipelineConfig.model_validate(config), shard, fingerprint)


@task(name="curate-cluster", **RETRIES)
def curate_cluster_task(config: dict[str, Any], fingerprint: str, shards: int) -> int:
    return curate.cluster(PipelineConfig.model_validate(config), fingerprint, shards)


@task(name="curate-finish", **RETRIES)
def curate_finish_task(config: dict[str, Any], shard: int, fingerprint: str) -> int:
    return curate.finish_shard(PipelineConfig.model_validate(config), shard, fingerprint)


@task(name="curate-commit", **RETRIES)
def curate_commit_task(config: dict[str, Any], fingerprint: str, shards: int) -> dict[str, Any]:
    return publish_summary(curate.commit(PipelineConfig.model_validate(config), fingerprint, shards))


@task(name="curate-skipped")
def curate_skipped_task(config: dict[str, Any]) -> dict[str, Any]:
    return publish_summary(curate.skipped_summary(PipelineConfig.model_validate(config)))


@task(name="tokenize", **RETRIES)
def tokenize_task(config: dict[str, Any]) -> dict[str, Any]:
    return publish_summary(run_tokenize(PipelineConfig.model_validate(config)))


@task(name="train", tags=["gpu"], **RETRIES)
def train_task(config: dict[str, Any]) -> dict[str, Any]:
    log = get_run_logger()
    return publish_summary(run_train(PipelineConfig.model_validate(config), progress=log.info))


# score is planned once, mapped over shards (one model load per worker process), then committed
@task(name="score-plan", **RETRIES)
def score_plan_task(config: dict[str, Any]) -> dict[str, Any]:
    return score.plan_score(PipelineConfig.model_validate(config), run_id=str(flow_run.id or "") or None)


@task(name="score-shard", tags=["gpu"], **RETRIES)
def score_shard_task(config: dict[str, Any], plan: dict[str, Any], shard: int) -> dict[str, int]:
    result = score.score_shard(PipelineConfig.model_validate(config), plan, shard)
    get_run_logger().info("shard %d/%d: %d rows (%d scored now)", shard + 1, plan["shards"], result["rows"],
                          result["scored"])
    return result


@task(name="score-commit", **RETRIES)
def score_commit_task(config: dict[str, Any], plan: dict[str, Any], results: list[dict[str, int]]) -> dict[str, Any]:
    return publish_summary(score.commit_score(PipelineConfig.model_validate(config), plan, results))


@task(name="score-done")
def score_done_task(config: dict[str, Any], plan: dict[str, Any]) -> dict[str, Any]:
    """A run_date with nothing to do: no curated rows, or predictions already committed for this model."""
    cfg = PipelineConfig.model_validate(config)
    if plan["empty"]:
        return publish_summary(score.commit_empty(cfg, plan))
    return publish_summary({"stage": "score", "skipped": True, "partition": plan["folder"], **plan["counts"]})
