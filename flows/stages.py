"""One Prefect flow per stage. Each validates its parameters before any work starts, then calls one task."""

from __future__ import annotations

from typing import Annotated, Any, Callable, Literal

from prefect import flow, get_run_logger, unmapped
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from pydantic import Field, WithJsonSchema

from bert_pipeline.config import PipelineConfig, load_config, overrides_schema
from bert_pipeline.lake import storage
from bert_pipeline.lake.manifests import Lake, root_of, stage_lock
from bert_pipeline.schedule import nights_to_rescore, report_url
from bert_pipeline.task import preflight, task_of
from tasks.events import announce_stage
from tasks.reporting import ProgressReporter
from tasks.runtime import started_alone, time_limit, with_scheduled_run_date
from tasks.stages import (
    curate_begin_task, curate_cluster_task, curate_commit_task, curate_finish_task, curate_prepare_task,
    curate_skipped_task, ingest_task, report_task, score_commit_task, score_done_task, score_plan_task,
    score_shard_task, tokenize_task, train_task,
)

# The parameters every flow takes. Their JSON schema is what the Prefect UI draws as a form and what the server
# checks at submission: overrides lists every dotted key with its type and limits, and refuses unknown keys.
Config = Annotated[str | None, Field(description="path or URL of a YAML config; empty = defaults + overrides")]
Overrides = Annotated[dict[str, Any] | None, WithJsonSchema(overrides_schema() | {"default": None})]
Stages = Annotated[list[Literal["ingest", "curate", "tokenize", "train", "score"]] | None,
                   Field(description="the stages to run, in pipeline order whatever the order given; empty = all")]

# Stages after which a run started alone rewrites its night's report: score ends the chain (ingest -> ... -> score,
# and the rescore a new champion triggers), train is never chained. The nightly writes the report after its own.
ENDS_A_NIGHT = ("train", "score")


def run_name(stage: str) -> Callable[[], str]:
    """Flow runs are named <stage>-<run_date> so the UI list reads like the lake."""

    def name() -> str:
        from prefect.runtime import flow_run

        params = flow_run.parameters or {}
        try:
            overrides = with_scheduled_run_date(params.get("config"), params.get("overrides"))
            run_date = load_config(params.get("config"), overrides).run_date
        except Exception:  # noqa: BLE001 - the flow itself reports a bad config; the name must not fail
            run_date = "invalid-config"
        return f"{stage}-{run_date}"

    return name


def shard_runner(cfg: PipelineConfig, threads: int | None = None) -> TaskRunner:
    """Where per-shard tasks run: threads in this process, or the Dask cluster at runner.address (prefect-dask)."""
    if cfg.runner.kind == "dask":
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=cfg.runner.address or None)
    return ThreadPoolTaskRunner(max_workers=threads)


def _curate(cfg: PipelineConfig) -> dict[str, Any]:
    data = cfg.model_dump(mode="json")
    plan = curate_begin_task(data)
    if plan["skipped"]:
        return curate_skipped_task(data)
    shards, fp = list(range(plan["shards"])), plan["fingerprint"]
    with shard_runner(cfg) as runner:
        args = {"config": unmapped(data), "fingerprint": unmapped(fp)}
        runner.map(curate_prepare_task, args | {"shard": shards}).result()
        curate_cluster_task(data, fp, plan["shards"])
        runner.map(curate_finish_task, args | {"shard": shards}).result()
    return curate_commit_task(data, fp, plan["shards"])


def _score(cfg: PipelineConfig) -> dict[str, Any]:
    data = cfg.model_dump(mode="json")
    plan = score_plan_task(data)
    if plan.action != "score":
        return score_done_task(data, plan)
    progress = ProgressReporter("score", every_seconds=0)
    # Threads: one shard at a time, since the model already uses every core; a Dask cluster runs one per worker,
    # each worker process loading the model once.
    with shard_runner(cfg, threads=1) as runner:
        futures = runner.map(score_shard_task, {"config": unmapped(data), "plan": unmapped(plan),
                                                "shard": list(range(plan.shards))})
        results = []
        for future in futures:  # in shard order; the commit needs them all anyway
            results.append(future.result())
            progress(f"{len(results)}/{plan.shards} shards scored", len(results) / plan.shards)
    return score_commit_task(data, plan, results)


def rescore_earlier(cfg: PipelineConfig, summary: dict[str, Any]) -> dict[str, Any]:
    """After run_date's score is committed and announced: score each earlier night `schedule.nights_to_rescore`
    names (score.rescore_nights) with the lake's serving model, oldest first, each under its own lock and its own
    timeouts.score, never forced; a rescored night whose report exists gets it rewritten. A night that fails (another
    run holds its score, it ran past its limit, storage failed) keeps the rows it had and becomes a warning: tonight's
    commit stands. A run with score.model set rescores nothing: that model was picked for run_date alone."""
    if cfg.score.model:
        return summary
    nights = nights_to_rescore(Lake.of(cfg), cfg.run_date, cfg.score.rescore_nights, task_of(cfg).output_area)
    rescored: dict[str, Any] = {}
    warnings = list(summary.get("warnings") or [])
    for night in nights:
        earlier = cfg.model_copy(update={"run_date": night, "score": cfg.score.model_copy(update={"force": False})})
        try:
            with time_limit("timeouts.score", cfg.timeouts.score):
                with stage_lock(root_of(cfg), "score", night):
                    result = _score(earlier)
        except Exception as exc:  # noqa: BLE001 - the night keeps its rows (a replacement is swapped in whole)
            warnings.append(f"score: run_date={night} was not rescored ({type(exc).__name__}: {exc}); it keeps the "
                            "rows it had until a later score rescores it")
            get_run_logger().warning("%s", warnings[-1])
            continue
        rescored[night] = {"rows": result.get("rows", 0), "model_version": result.get("model_version")}
        get_run_logger().info("score: rescored run_date=%s (%s rows) with %s (score.rescore_nights: %d)", night,
                              rescored[night]["rows"], rescored[night]["model_version"], cfg.score.rescore_nights)
        if storage.exists(report_url(root_of(cfg), night)):
            written = with_report({}, earlier)
            rescored[night]["report"] = written.get("report")
            warnings += written.get("warnings") or []
    return summary | ({"rescored": rescored} if rescored else {}) | ({"warnings": warnings} if warnings else {})


def _stage(stage: str, body: Callable[[PipelineConfig], dict[str, Any]], doc: str,
           after: Callable[[PipelineConfig, dict[str, Any]], dict[str, Any]] | None = None
           ) -> Callable[..., dict[str, Any]]:
    """The flow of one stage: validate the parameters (a scheduled run writes its scheduled date), check the models,
    take the stage's lock, run the body within timeouts.<stage>, announce the commit (tasks/events.py), then run
    `after` (outside the lock and the limit: what it does cannot undo the commit); a train or score run that no other
    run started then rewrites the night's report (its URI under "report")."""

    def run(config: Config = None, overrides: Overrides = None) -> dict[str, Any]:
        overrides = with_scheduled_run_date(config, overrides)
        cfg = load_config(config, overrides)  # fails here, naming the field, before any work
        preflight(cfg, [stage])
        with time_limit(f"timeouts.{stage}", getattr(cfg.timeouts, stage)):
            with stage_lock(root_of(cfg), stage, cfg.run_date):  # a second run of this stage and date is refused
                summary = body(cfg)
        announce_stage(stage, cfg, summary, config, overrides)
        if after is not None:
            summary = after(cfg, summary)
        return with_report(summary, cfg) if stage in ENDS_A_NIGHT and started_alone() else summary

    run.__name__ = f"{stage}_flow"
    run.__doc__ = f"bert-pipeline {stage} stage for one run_date: {doc}"
    return flow(name=f"bert-{stage}", flow_run_name=run_name(stage), validate_parameters=True)(run)


def with_report(summary: dict[str, Any], cfg: PipelineConfig) -> dict[str, Any]:
    """summary plus "report": the URI of cfg.run_date's report, written again after a commit outside the nightly.
    A report that cannot be written does not fail what was committed: the summary gets a warning naming why, and the
    next run of the night (or of its train or score stage) writes it."""
    try:
        return summary | {"report": report_task(cfg.model_dump(mode="json"))["report"]}
    except Exception as exc:  # noqa: BLE001 - the stage's commit (or a person's answer) stands either way
        message = (f"the report of run_date={cfg.run_date} was not rewritten ({type(exc).__name__}: {exc}); what was "
                   "committed stands, and the next run of this night writes the report")
        get_run_logger().error("%s", message)
        return summary | {"warnings": [*(summary.get("warnings") or []), message]}


def _one_task(task: Any) -> Callable[[PipelineConfig], dict[str, Any]]:
    return lambda cfg: task(cfg.model_dump(mode="json"))


ingest_flow = _stage("ingest", _one_task(ingest_task), "read the sources into raw/.")
curate_flow = _stage("curate", _curate, "clean and filter each shard, cluster duplicates, write each shard, commit.")
tokenize_flow = _stage("tokenize", _one_task(tokenize_task), "tokenize curated rows into Arrow shards.")
train_flow = _stage("train", _one_task(train_task), "fine-tune on the labelled rows; commit the model and champion.")
score_flow = _stage("score", _score, "plan, score each curated shard, commit (or swap in a replacement); then "
                    "bring the nights before it that another model scored up to the lake's serving model "
                    "(score.rescore_nights).", after=rescore_earlier)
