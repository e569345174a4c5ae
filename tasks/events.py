"""Events the pipeline emits, for the deployment triggers in deployments/prefect.yaml (and anything else listening).

- `bert-pipeline.partition.committed` when ingest, curate, tokenize or score commits (or finds committed) a
  partition: resource `bert-pipeline.<table>.<run_date>`, labels `bert-pipeline.table`, `bert-pipeline.run-date`,
  `bert-pipeline.skipped`, `bert-pipeline.chain`; payload: counts, fingerprint, and the config and overrides (with
  the run_date pinned) the next stage runs with.
- `bert-pipeline.champion.promoted` when a model becomes champion: payload `rescore` holds the parameters that rescore
  the latest night with scored rows with it (`score.force`); that score run brings the `score.rescore_nights` nights
  before it up to the new champion too.
- `bert-pipeline.model.awaiting-approval` when a model passed the gate under `train.promotion: approve`.

`bert-pipeline.chain` is "true" only for a run that no other run started (the UI, `prefect deployment run`, a
schedule, a trigger): the nightly (and a backfill) start every stage themselves, so their stage runs must not start
the next stage a second time. The triggers match on it.
"""

from __future__ import annotations

from typing import Any

from prefect.events import emit_event

from bert_pipeline.config import PipelineConfig
from bert_pipeline.lake.manifests import Lake, root_of
from bert_pipeline.schedule import TABLE_OF, carried_overrides, commit_event, latest_night
from bert_pipeline.task import task_of
from tasks.runtime import started_alone

COMMITTED = "bert-pipeline.partition.committed"
PROMOTED = "bert-pipeline.champion.promoted"
AWAITING = "bert-pipeline.model.awaiting-approval"


def _flag(value: bool) -> str:
    return "true" if value else "false"


def announce_stage(stage: str, cfg: PipelineConfig, summary: dict[str, Any], config: str | None,
                   overrides: dict[str, Any]) -> None:
    """Emit what this stage run committed (see the module's docstring)."""
    overrides = carried_overrides(overrides)
    pinned = {**overrides, "run_date": cfg.run_date}
    chain = started_alone()
    if stage in TABLE_OF:
        event = commit_event(Lake.of(cfg), stage, cfg.run_date, summary, task_of(cfg).output_area)
        event["resource"] |= {"bert-pipeline.chain": _flag(chain), "bert-pipeline.lake": root_of(cfg)}
        emit_event(COMMITTED, event["resource"], payload=event["payload"] | {"config": config, "overrides": pinned})
        return
    decision = summary.get("champion_decision") or {}
    if stage != "train" or summary.get("skipped") or not summary.get("model_version"):
        return
    if decision.get("promoted"):
        announce_champion(cfg, summary["model_version"], decision.get("previous_champion"), config, overrides, chain)
    elif decision.get("awaiting_approval"):
        emit_event(AWAITING, {"prefect.resource.id": f"bert-pipeline.model.{summary['model_version']}",
                              "prefect.resource.name": summary["model_version"], "bert-pipeline.lake": root_of(cfg)},
                   payload={"model_version": summary["model_version"], "config": config, "overrides": pinned,
                            "new_validation_macro_f1": decision.get("new_validation_macro_f1"),
                            "champion_validation_macro_f1": decision.get("champion_validation_macro_f1")})


def announce_champion(cfg: PipelineConfig, model_version: str, previous: str | None, config: str | None,
                      overrides: dict[str, Any], chain: bool) -> None:
    """Emit champion.promoted; with `chain` and a night with scored rows, the score deployment's trigger rescores
    the latest such night with the new champion, once (and, through it, the score.rescore_nights nights before
    it)."""
    night = latest_night(Lake.of(cfg), task_of(cfg).output_area)
    rescore = None
    if night is not None:
        rescore = {"config": config,
                   "overrides": {**carried_overrides(overrides), "run_date": night, "score.force": True}}
    emit_event(PROMOTED, {"prefect.resource.id": f"bert-pipeline.champion.{model_version}",
                          "prefect.resource.name": model_version, "bert-pipeline.lake": root_of(cfg),
                          "bert-pipeline.chain": _flag(chain and rescore is not None)},
               payload={"model_version": model_version, "previous_champion": previous, "rescore": rescore})
