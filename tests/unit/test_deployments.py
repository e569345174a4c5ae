"""deployments/: every flow deployed with its schedules and triggers, the alerts file, the Kubernetes GPU template."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType, SimpleNamespace
from uuid import uuid4

import pytest
import yaml

from bert_pipeline.config import load_config

DEPLOYMENTS = Path(__file__).resolve().parents[2] / "deployments"


def deployments() -> dict[str, dict]:
    spec = yaml.safe_load((DEPLOYMENTS / "prefect.yaml").read_text())
    return {d["name"]: d for d in spec["deployments"]}


def test_every_flow_has_a_deployment_and_gpu_stages_run_one_at_a_time() -> None:
    by_name = deployments()
    assert set(by_name) == {"nightly", "nightly-entities", "ingest", "curate", "tokenize", "train", "score",
                            "backfill", "promote", "watchdog"}
    for name, deployment in by_name.items():
        module, _, function = deployment["entrypoint"].partition(":")
        assert function in (DEPLOYMENTS.parent / module).read_text(), name
        assert "bert-pipeline" in deployment["tags"], name  # what the failure alert matches on
        if name not in ("promote", "nightly-entities"):  # promote's parameters come from the event that starts it
            assert deployment["parameters"] == {"config": "configs/demo.yaml", "overrides": {}}
    assert by_name["nightly-entities"]["parameters"] == {"config": "configs/ner.yaml", "overrides": {}}
    assert load_config(str(DEPLOYMENTS.parent / "configs" / "ner.yaml")).task == "ner"  # the entity task's config
    for gpu_stage in ("train", "score"):
        assert by_name[gpu_stage]["work_pool"]["name"] == "gpu"
        assert by_name[gpu_stage]["concurrency_limit"]["limit"] == 1
    for cpu_flow in ("nightly", "nightly-entities", "ingest", "curate", "tokenize", "backfill", "promote", "watchdog"):
        assert by_name[cpu_flow]["work_pool"]["name"] == "cpu", cpu_flow  # a paused promotion never holds the GPU


def test_every_schedule_has_a_timezone_and_the_nightly_stays_the_default() -> None:
    by_name = deployments()
    schedules = {(name, s["slug"]): s for name, d in by_name.items() for s in d.get("schedules") or []}
    assert set(schedules) == {("nightly", "nightly"), ("nightly", "nightly-without-train"), ("train", "weekly"),
                              ("ingest", "hourly"), ("watchdog", "morning-check"),
                              ("nightly-entities", "nightly-entities")}
    for key, schedule in schedules.items():
        assert schedule["timezone"] == "{{ $BERT_PIPELINE_TIMEZONE }}", key
        assert isinstance(schedule["active"], bool), key  # on or off by a choice written here
    active = {key for key, s in schedules.items() if s["active"]}
    assert active == {("nightly", "nightly"), ("watchdog", "morning-check")}
    assert schedules[("nightly", "nightly")]["cron"] == "0 2 * * *"
    # train weekly, score nightly with the champion: the two inactive schedules that go together
    assert schedules[("nightly", "nightly-without-train")]["parameters"] == {
        "stages": ["ingest", "curate", "tokenize", "score"]}
    assert schedules[("train", "weekly")]["cron"] == "0 4 * * 0"
    assert schedules[("ingest", "hourly")]["parameters"] == {"overrides": {"ingest.on_existing": "append"}}
    assert schedules[("watchdog", "morning-check")]["cron"] == "0 7 * * *"


def test_triggers_chain_the_stages_only_on_runs_started_alone_and_rescore_on_a_new_champion() -> None:
    from prefect.events.schemas.deployment_triggers import DeploymentTriggerTypes
    from pydantic import TypeAdapter

    by_name = deployments()
    adapter = TypeAdapter(DeploymentTriggerTypes)
    follows = {}
    for name, deployment in by_name.items():
        for trigger in deployment.get("triggers") or []:
            adapter.validate_python(trigger)  # as `prefect deploy` reads it
            follows.setdefault(name, []).append(trigger)
    assert set(follows) == {"curate", "tokenize", "score", "promote"}  # never train, never the nightly
    from_event = {"config": "{{ event.payload.config }}", "overrides": "{{ event.payload.overrides }}"}
    for stage, table in (("curate", "raw"), ("tokenize", "curated"), ("score", "tokens")):
        chained = follows[stage][0]
        assert chained["expect"] == ["bert-pipeline.partition.committed"]
        assert chained["match"] == {"prefect.resource.id": f"bert-pipeline.{table}.*", "bert-pipeline.chain": "true",
                                    "bert-pipeline.skipped": "false"}
        assert chained["parameters"] == from_event and chained["enabled"] is True
    (_, rescore) = follows["score"]
    assert rescore["expect"] == ["bert-pipeline.champion.promoted"]
    assert rescore["match"]["bert-pipeline.chain"] == "true"
    assert rescore["parameters"]["overrides"] == "{{ event.payload.rescore.overrides }}"
    (approval,) = follows["promote"]
    assert approval["expect"] == ["bert-pipeline.model.awaiting-approval"]
    assert approval["parameters"]["model_version"] == "{{ event.payload.model_version }}"


def test_events_the_flows_emit_are_the_ones_the_triggers_expect() -> None:
    from tasks import events

    expected = {e for d in deployments().values() for t in d.get("triggers") or [] for e in t["expect"]}
    assert expected == {events.COMMITTED, events.PROMOTED, events.AWAITING}


def test_a_new_champion_rescores_the_newest_scored_night_without_a_backfill_s_rescore_nights(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The champion event's rescore parameters: the newest night with scored rows (not one committed empty), forced,
    and without the score.rescore_nights 0 a backfill gave the night that trained the model."""
    from bert_pipeline.config import build_config
    from bert_pipeline.lake import storage
    from bert_pipeline.lake.manifests import Lake
    from tasks import events

    lake = Lake(str(tmp_path / "lake"))
    for night, manifest in (("2026-11-27", {"model_hash": "aaa", "counts": {"rows": 280}}),
                            ("2026-11-28", {"counts": {"rows": 0}})):  # a night of duplicates: committed empty
        storage.write_json_atomic(lake.manifest_url("predictions", night), {"fingerprint": night, **manifest})
    sent: list[tuple] = []
    monkeypatch.setattr(events, "emit_event", lambda event, resource, payload=None: sent.append((event, payload)))
    cfg = build_config({"data_root": lake.root, "run_date": "2026-11-28"})
    events.announce_champion(cfg, "2026-11-28-bbbbbbbbbb", "2026-11-27-aaaaaaaaaa", "night.yaml",
                             {"score.rescore_nights": 0, "train.epochs": 2, "run_date": "2026-11-28"}, chain=True)
    ((event, payload),) = sent
    assert event == events.PROMOTED and payload["previous_champion"] == "2026-11-27-aaaaaaaaaa"
    assert payload["rescore"] == {"config": "night.yaml", "overrides": {
        "train.epochs": 2, "run_date": "2026-11-27", "score.force": True}}


def automations_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("automations", DEPLOYMENTS / "automations.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_alerts_file_holds_valid_automations_that_notify() -> None:
    module = automations_module()
    specs = module.load_specs(DEPLOYMENTS / "automations.yaml")
    block = uuid4()
    built = module.automations(specs, block)
    assert [a.name for a in built] == ["bert-pipeline: a run failed, crashed or timed out",
                                       "bert-pipeline: nightly late", "bert-pipeline: nightly overrunning"]
    for automation in built:
        assert [a.type for a in automation.actions] == ["send-notification"]
        assert automation.actions[0].block_document_id == block
    failed, late, overrun = built
    assert {"prefect.flow-run.Failed", "prefect.flow-run.Crashed", "prefect.flow-run.TimedOut"} <= failed.trigger.expect
    assert late.trigger.expect == {"prefect.flow-run.Late"}
    assert overrun.trigger.posture == "Proactive" and overrun.trigger.within.total_seconds() == 21600


def test_an_unknown_notification_block_is_refused_naming_the_ones_there_are() -> None:
    module = automations_module()

    def block(slug: str, name: str, capabilities: list[str]) -> SimpleNamespace:
        return SimpleNamespace(id=uuid4(), name=name, is_anonymous=False, block_type=SimpleNamespace(slug=slug),
                               block_schema=SimpleNamespace(capabilities=capabilities))

    blocks = [block("slack-webhook", "night-shift", ["notify"]), block("secret", "lake-keys", []),
              block("custom-webhook", "night-shift", ["notify"])]
    client = SimpleNamespace(read_block_documents=lambda include_secrets=False: blocks)
    assert module.resolve_block(client, "slack-webhook/night-shift") == (blocks[0].id, "slack-webhook/night-shift")
    with pytest.raises(module.Refused, match="no block named 'nightshift'.*custom-webhook/night-shift, "
                                             "slack-webhook/night-shift"):
        module.resolve_block(client, "nightshift")
    with pytest.raises(module.Refused, match="2 blocks are named 'night-shift'"):
        module.resolve_block(client, "night-shift")
    with pytest.raises(module.Refused, match="cannot send notifications"):
        module.resolve_block(client, "lake-keys")


def test_kubernetes_job_template_defines_every_variable_it_uses() -> None:
    template = json.loads((DEPLOYMENTS / "kubernetes" / "gpu-base-job-template.json").read_text())
    used = set(re.findall(r"\{\{ (\w+) \}\}", json.dumps(template["job_configuration"])))
    assert used <= set(template["variables"]["properties"])
    container = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "{{ gpus }}"
