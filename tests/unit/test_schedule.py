"""The pipeline's calendar (bert_pipeline/schedule.py) and how a flow run reads its schedule (tasks/runtime.py), on
dates made up for the test: DST changes, a run late in the local evening whose UTC date is already the next day,
backfill ranges that must be refused before any night runs."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from types import SimpleNamespace
from uuid import uuid4

import pytest

from bert_pipeline.lake import storage
from bert_pipeline.config import build_config
from bert_pipeline.errors import ConfigError
from bert_pipeline.lake.manifests import Lake
from bert_pipeline.schedule import (
    MAX_BACKFILL_DAYS, backfill_dates, backfill_overrides, commit_event, explicit_run_date, latest_night,
    missing_by_morning, night_status, nights_to_rescore, ordered_stages, plan_backfill, scheduled_run_date, today,
)

UTC = dt.timezone.utc


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize("utc, timezone, expected", [
    # Europe/Berlin, spring forward on 2026-03-29 (02:00 CET -> 03:00 CEST)
    ("2026-03-28T23:30:00", "Europe/Berlin", "2026-03-29"),  # 00:30 CET on the 29th: UTC is still the 28th
    ("2026-03-29T01:00:00", "Europe/Berlin", "2026-03-29"),  # 03:00 CEST: the 02:00 slot that does not exist
    ("2026-03-29T22:30:00", "Europe/Berlin", "2026-03-30"),  # 00:30 CEST on the 30th
    # Europe/Berlin, fall back on 2026-10-25 (03:00 CEST -> 02:00 CET): 02:30 happens twice
    ("2026-10-25T00:30:00", "Europe/Berlin", "2026-10-25"),
    ("2026-10-25T01:30:00", "Europe/Berlin", "2026-10-25"),
    ("2026-10-24T21:59:00", "Europe/Berlin", "2026-10-24"),  # 23:59 CEST
    # America/New_York: 23:30 local is already tomorrow in UTC; the run writes the local date
    ("2026-03-09T03:30:00", "America/New_York", "2026-03-08"),  # 23:30 EDT on the 8th (DST began that morning)
    ("2026-03-08T04:30:00", "America/New_York", "2026-03-07"),  # 23:30 EST on the 7th
    ("2026-11-02T04:30:00", "America/New_York", "2026-11-01"),  # 23:30 EST on the 1st (DST ended that morning)
    ("2026-11-01T05:30:00", "America/New_York", "2026-11-01"),  # 01:30 EST, the second 01:30 of the night
    ("2026-06-30T23:30:00", "UTC", "2026-06-30"),
])
def test_a_scheduled_run_writes_its_local_calendar_date(utc: str, timezone: str, expected: str) -> None:
    assert scheduled_run_date(at(utc), timezone) == expected


def test_the_scheduled_date_does_not_depend_on_when_the_run_starts_or_how_the_time_is_written() -> None:
    slot = dt.datetime(2026, 11, 27, 2, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))  # 02:00 CET as an offset
    assert scheduled_run_date(slot, "Europe/Berlin") == "2026-11-27"
    assert scheduled_run_date(slot.astimezone(UTC), "Europe/Berlin") == "2026-11-27"  # 01:00 UTC
    assert scheduled_run_date(slot.astimezone(UTC), "UTC") == "2026-11-27"
    assert scheduled_run_date(dt.datetime(2026, 11, 27, 23, 30), "Asia/Tokyo") == "2026-11-28"  # naive = UTC
    assert today("Pacific/Kiritimati", at("2026-12-31T11:00:00")) == "2027-01-01"


def test_an_unknown_timezone_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="'Europe/Berlinn' is not an IANA timezone"):
        scheduled_run_date(at("2026-01-01T00:00:00"), "Europe/Berlinn")


def test_an_explicit_run_date_wins_over_the_schedule() -> None:
    assert explicit_run_date({}, {"run_date": "2026-11-01"})
    assert explicit_run_date({"run_date": "2026-11-01"}, {})
    assert explicit_run_date({}, {"run_date": "today"})  # a choice, kept
    assert not explicit_run_date({}, {}) and not explicit_run_date({"run_date": None}, {"run_date": ""})
    assert not explicit_run_date({"data_root": "x"}, None)


def test_a_backfill_range_is_every_night_oldest_first() -> None:
    assert backfill_dates("2026-02-27", "2026-03-01", "2026-12-01") == ["2026-02-27", "2026-02-28", "2026-03-01"]
    assert backfill_dates("2028-02-28", "2028-03-01", "2028-03-01") == ["2028-02-28", "2028-02-29", "2028-03-01"]
    assert backfill_dates("2026-11-30", "2026-11-30", "2026-11-30") == ["2026-11-30"]  # today is allowed
    assert len(backfill_dates("2025-12-01", "2026-11-30", "2026-12-01")) == 365


@pytest.mark.parametrize("start, end, message", [
    ("2026-11-05", "2026-11-01", r"backfill end 2026-11-01 is before start 2026-11-05: the range is reversed"),
    ("2026-11-28", "2026-12-02", r"backfill end 2026-12-02 is in the future \(today is 2026-12-01"),
    ("1999-05-15", "2026-09-29", r"backfill start 1999-05-15 \.\. end 2026-09-29 is 10000 nights, more than 366"),
    ("2026-13-01", "2026-11-01", r"backfill start: '2026-13-01' is not a date"),
    ("2026-11-01", "yesterday", r"backfill end: 'yesterday' is not a date"),
])
def test_a_bad_backfill_range_is_refused_naming_the_parameter(start: str, end: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        backfill_dates(start, end, "2026-12-01")


def test_the_longest_backfill_is_a_year() -> None:
    assert MAX_BACKFILL_DAYS == 366
    assert len(backfill_dates("2027-12-01", "2028-11-30", "2028-12-01")) == 366  # a leap year
    with pytest.raises(ConfigError, match="367 nights"):
        backfill_dates("2027-11-30", "2028-11-30", "2028-12-01")


def test_stages_run_in_pipeline_order_and_an_unknown_one_is_refused() -> None:
    assert ordered_stages(["score", "ingest"]) == ["ingest", "score"]
    assert ordered_stages(None) == ordered_stages([]) == ["ingest", "curate", "tokenize", "train", "score"]
    with pytest.raises(ConfigError, match=r"stages: unknown stage\(s\) \['report'\]"):
        ordered_stages(["report"])


def test_a_backfill_skips_done_nights_only_until_the_first_one_that_is_not() -> None:
    dates = ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]
    done = {"2026-11-01": True, "2026-11-02": False, "2026-11-03": True, "2026-11-04": False}
    # 11-03 is committed, but its curate compared with the nights before it, and 11-02 is about to change
    assert plan_backfill(dates, done) == (["2026-11-01"], ["2026-11-02", "2026-11-03", "2026-11-04"])
    assert plan_backfill(dates, dict.fromkeys(dates, True)) == (dates, [])
    assert plan_backfill(dates, {}) == ([], dates)


def commit(lake: Lake, table: str, run_date: str, **fields) -> None:
    storage.write_json_atomic(lake.manifest_url(table, run_date), {"fingerprint": f"fp-{table}-{run_date}", **fields})


def test_the_nights_to_rescore_are_those_within_the_window_that_another_model_scored(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    nights = {"2026-11-20": "aaa", "2026-11-21": "bbb", "2026-11-22": None, "2026-11-23": "ccc", "2026-11-24": "ccc",
              "2026-11-25": "unscored", "2026-11-26": "ccc"}  # model_hash per night; None: committed empty
    for night, model_hash in nights.items():
        commit(lake, "curated", night)
        if model_hash == "unscored":  # curated, never scored (no model had passed the gate, fallback none)
            continue
        commit(lake, "predictions", night, **({"model_hash": model_hash} if model_hash else {"counts": {"rows": 0}}))
    commit(lake, "curated", "2026-11-27")  # a later night: never rescored by an earlier one
    commit(lake, "predictions", "2026-11-27", model_hash="zzz")
    assert nights_to_rescore(lake, "2026-11-26", 7) == ["2026-11-20", "2026-11-21", "2026-11-25"]
    assert nights_to_rescore(lake, "2026-11-26", 3) == ["2026-11-25"]  # 11-23 .. 11-25: 11-23, 11-24 are ccc's
    assert nights_to_rescore(lake, "2026-11-26", 0) == []
    assert nights_to_rescore(lake, "2026-11-25", 7) == []  # tonight not scored: nothing to bring the others up to
    assert nights_to_rescore(lake, "2026-11-22", 7) == []  # tonight committed empty
    assert nights_to_rescore(lake, "2026-11-26", 7, table="entities") == []  # no entity model scored tonight
    commit(lake, "entities", "2026-11-24", model_hash="crf-1")  # an entity model's table, beside the classifier's
    commit(lake, "entities", "2026-11-26", model_hash="ner-2")
    assert nights_to_rescore(lake, "2026-11-26", 7, table="entities") == [
        "2026-11-20", "2026-11-21", "2026-11-22", "2026-11-23", "2026-11-24", "2026-11-25"]


def test_a_backfill_rescores_earlier_nights_only_on_its_last_night() -> None:
    to_run = ["2026-11-01", "2026-11-02", "2026-11-03"]
    given = {"score.rescore_nights": 30, "train.epochs": 2}
    assert backfill_overrides(given, "2026-11-01", to_run) == {"score.rescore_nights": 0, "train.epochs": 2,
                                                              "run_date": "2026-11-01"}
    assert backfill_overrides(given, "2026-11-03", to_run) == {**given, "run_date": "2026-11-03"}
    assert backfill_overrides(None, "2026-11-03", to_run) == {"run_date": "2026-11-03"}
    assert given == {"score.rescore_nights": 30, "train.epochs": 2}  # the caller's overrides are not changed


def test_night_status_and_the_watchdog_read_the_manifests(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    for table in ("raw", "curated", "tokens"):
        commit(lake, table, "2026-11-27")
    status = night_status(lake, "2026-11-27")
    assert status == {"ingest": True, "curate": True, "tokenize": True, "train": False, "score": False,
                      "report": False}
    assert "first stage without output is score" in missing_by_morning(lake, "2026-11-27")
    assert "first stage without output is ingest (raw/run_date=2026-11-28" in missing_by_morning(lake, "2026-11-28")
    commit(lake, "predictions", "2026-11-27", model_hash="aaa")
    storage.write_json_atomic(storage.join(lake.models, "2026-11-27-abcdef0123", "_manifest.json"), {})
    storage.write_bytes_atomic(storage.join(lake.root, "reports", "run_date=2026-11-27", "report.md"), b"# r")
    assert all(night_status(lake, "2026-11-27").values())
    assert missing_by_morning(lake, "2026-11-27") is None
    assert latest_night(lake) == "2026-11-27" and latest_night(Lake(str(tmp_path / "empty"))) is None
    commit(lake, "predictions", "2026-11-28", counts={"rows": 0})  # a night of duplicates, committed empty
    assert latest_night(lake) == "2026-11-27"  # what a new champion rescores, and rescores the nights before from


def test_a_commit_event_names_the_table_and_night_and_carries_counts(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    commit(lake, "curated", "2026-11-27", counts={"curated_rows": 280, "raw_rows": 300})
    event = commit_event(lake, "curate", "2026-11-27", {"stage": "curate", "skipped": False})
    assert event["resource"]["prefect.resource.id"] == "bert-pipeline.curated.2026-11-27"
    assert event["resource"]["bert-pipeline.skipped"] == "false"
    assert event["resource"]["bert-pipeline.table"] == "curated"
    assert event["payload"]["counts"] == {"curated_rows": 280, "raw_rows": 300}
    assert event["payload"]["fingerprint"] == "fp-curated-2026-11-27"
    skipped = commit_event(lake, "curate", "2026-11-27", {"skipped": True})
    assert skipped["resource"]["bert-pipeline.skipped"] == "true" and skipped["payload"]["skipped"] is True
    assert all(isinstance(v, str) for v in event["resource"].values())  # event labels are strings


def test_orchestration_settings_are_not_part_of_any_fingerprint() -> None:
    """train.promotion and timeouts say how runs are orchestrated: changing them, or adding them to the config
    model, must not make committed work look out of date."""
    plain = build_config({"run_date": "2026-11-27"})
    other = build_config({"run_date": "2026-11-27", "train": {"promotion": "approve"},
                          "timeouts": {"train": 60, "nightly": None}})
    assert plain.fingerprint("train") == other.fingerprint("train") and plain.fingerprint() == other.fingerprint()
    train = plain.model_dump(mode="json")["train"]
    train.pop("promotion")  # the hash the train section had before the key existed
    before = hashlib.sha256(json.dumps({"train": train}, sort_keys=True).encode()).hexdigest()[:16]
    assert plain.fingerprint("train") == before


def test_promotion_and_timeouts_are_checked_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"train.promotion: must be one of 'auto' or 'approve', got 'manual'"):
        build_config({"train": {"promotion": "manual"}})
    with pytest.raises(ConfigError, match=r"timeouts.score: Input should be greater than or equal to 1"):
        build_config({"timeouts": {"score": 0}})
    cfg = build_config({}, {"timeouts.train": "", "timeouts.approval": 600})
    assert cfg.timeouts.train is None and cfg.timeouts.approval == 600 and cfg.timeouts.nightly == 72_000


# --- tasks/runtime.py: a flow run reading its schedule --------------------------------------------------------------

def fake_run(**fields) -> SimpleNamespace:
    base = {"auto_scheduled": False, "created_by": None, "expected_start_time": at("2026-11-27T01:00:00"),
            "deployment_id": uuid4(), "parent_task_run_id": None}
    return SimpleNamespace(**(base | fields))


@pytest.fixture
def in_run(monkeypatch: pytest.MonkeyPatch):
    import tasks.runtime as runtime

    def enter(run: SimpleNamespace, schedule_timezone: str = "Europe/Berlin") -> None:
        monkeypatch.setattr(runtime.FlowRunContext, "get", classmethod(lambda cls: SimpleNamespace(flow_run=run)))
        monkeypatch.setattr(runtime, "_schedule_timezone", lambda _run: schedule_timezone)

    return enter


def test_a_scheduled_or_replayed_run_writes_its_slot_date(in_run, tmp_path: Path) -> None:
    from tasks.runtime import with_scheduled_run_date

    schedule = SimpleNamespace(type="SCHEDULE", id=uuid4())
    # a replayed slot from three nights ago, 02:00 in Berlin (01:00 UTC), started now
    in_run(fake_run(auto_scheduled=True, created_by=schedule, expected_start_time=at("2026-11-24T01:00:00")))
    assert with_scheduled_run_date(None, None) == {"run_date": "2026-11-24"}
    assert with_scheduled_run_date(None, {"train.epochs": 2}) == {"train.epochs": 2, "run_date": "2026-11-24"}
    assert with_scheduled_run_date(None, {"run_date": "2026-01-01"}) == {"run_date": "2026-01-01"}  # explicit wins
    config = tmp_path / "pinned.yaml"
    config.write_text("run_date: '2026-02-02'\n")
    assert with_scheduled_run_date(str(config), {}) == {}  # the config file's run_date wins too
    # a run at 23:30 local time in New York is already the next day in UTC
    in_run(fake_run(auto_scheduled=True, created_by=schedule, expected_start_time=at("2026-11-28T04:30:00")),
           "America/New_York")
    assert with_scheduled_run_date(None, {}) == {"run_date": "2026-11-27"}


def test_a_manual_or_triggered_run_keeps_what_it_was_given(in_run) -> None:
    from tasks.runtime import started_alone, with_scheduled_run_date

    in_run(fake_run(expected_start_time=at("2026-11-24T01:00:00")))  # `prefect deployment run`, the UI
    assert with_scheduled_run_date(None, None) == {}  # run_date: today in UTC, as before
    in_run(fake_run(created_by=SimpleNamespace(type="AUTOMATION", id=uuid4())))
    assert with_scheduled_run_date(None, {"run_date": "2026-11-20"}) == {"run_date": "2026-11-20"}
    assert started_alone()
    in_run(fake_run(parent_task_run_id=uuid4()))  # a stage run the nightly started
    assert not started_alone()


def test_outside_a_flow_run_nothing_changes() -> None:
    from tasks.runtime import started_alone, with_scheduled_run_date

    assert with_scheduled_run_date(None, {"run_date": "2026-11-20"}) == {"run_date": "2026-11-20"}
    assert started_alone()
