"""The pipeline's calendar, without an orchestrator: which run_date a scheduled run writes, which nights a backfill
runs, what a stage's commit announces, and whether a night is done by morning.

Prefect does the scheduling (`deployments/prefect.yaml`); this module only answers questions about dates and the
lake, so it can be tested on dates made up for the test (DST changes, a run at 23:30 local time the day before the
date changes in UTC) and never imports prefect.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterable, Mapping, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bert_pipeline.lake import storage
from bert_pipeline.errors import ConfigError
from bert_pipeline.lake.manifests import Lake

STAGES = ("ingest", "curate", "tokenize", "train", "score")
TABLE_OF = {"ingest": "raw", "curate": "curated", "tokenize": "tokens", "score": "predictions"}  # train: models/


def table_of(stage: str, score_table: str = "predictions") -> str:
    """The lake table a stage commits; score's is its task's output area (`task.output_area`: predictions, or
    entities for task: ner)."""
    return score_table if stage == "score" else TABLE_OF[stage]
MAX_BACKFILL_DAYS = 366  # a year (leap or not) at most; a longer range is a typo, not a plan


def zone(name: str, what: str = "timezone") -> ZoneInfo:
    """The IANA timezone `name` (e.g. Europe/Berlin), or ConfigError naming `what`."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{what}: {name!r} is not an IANA timezone name such as UTC or Europe/Berlin") from None


def scheduled_run_date(scheduled_start: dt.datetime, timezone: str) -> str:
    """The date a run scheduled for `scheduled_start` (an aware datetime, as Prefect's expected start time) writes:
    its calendar date in the schedule's timezone, whenever the run actually starts. A naive datetime is read as UTC."""
    if scheduled_start.tzinfo is None:
        scheduled_start = scheduled_start.replace(tzinfo=dt.timezone.utc)
    return scheduled_start.astimezone(zone(timezone)).date().isoformat()


def today(timezone: str, now: dt.datetime | None = None) -> str:
    """Today's date in `timezone` (at `now`, default the current time)."""
    moment = now or dt.datetime.now(dt.timezone.utc)
    return scheduled_run_date(moment, timezone)


def explicit_run_date(config_data: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> bool:
    """Whether the user named the run_date (in the overrides or the config file): then it wins over the schedule.
    An empty value does not count; `today` does (it is a choice)."""
    for source in (overrides or {}, config_data):
        if source.get("run_date") not in (None, ""):
            return True
    return False


def _date(value: str, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"backfill {name}: {value!r} is not a date written YYYY-MM-DD") from None


def backfill_dates(start: str, end: str, today_: str, max_days: int = MAX_BACKFILL_DAYS) -> list[str]:
    """Every date from `start` to `end` (both included), oldest first; refused, naming the parameter, when the range
    is reversed, ends after `today_` (the pipeline timezone's today), or holds more than `max_days` nights."""
    first, last, now = _date(start, "start"), _date(end, "end"), _date(today_, "today")
    if last < first:
        raise ConfigError(f"backfill end {last} is before start {first}: the range is reversed (start is the oldest "
                          "night)")
    if last > now:
        raise ConfigError(f"backfill end {last} is in the future (today is {now} in the pipeline's timezone): a "
                          "backfill fills past nights; the schedules run the coming ones")
    days = (last - first).days + 1
    if days > max_days:
        raise ConfigError(f"backfill start {first} .. end {last} is {days} nights, more than {max_days}: split it "
                          "into shorter ranges (or check the dates for a typo)")
    return [(first + dt.timedelta(days=i)).isoformat() for i in range(days)]


def ordered_stages(stages: Iterable[str] | None) -> list[str]:
    """The named stages in pipeline order (all when None or empty); an unknown name is a ConfigError."""
    picked = list(stages or STAGES)
    unknown = sorted(set(picked) - set(STAGES))
    if unknown:
        raise ConfigError(f"stages: unknown stage(s) {unknown}; stages are {', '.join(STAGES)}")
    return [stage for stage in STAGES if stage in picked]


def report_url(root: str, run_date: str) -> str:
    return storage.join(root, "reports", f"run_date={run_date}", "report.md")


def night_status(lake: Lake, run_date: str, stages: Sequence[str] = STAGES,
                 score_table: str = "predictions") -> dict[str, bool]:
    """For one night: whether each stage's output is committed (train: a model committed for that run_date) and
    whether its report is written."""
    status = {}
    for stage in stages:
        if stage == "train":
            status[stage] = bool(storage.glob(storage.join(lake.models, f"{run_date}-*", "_manifest.json")))
        else:
            status[stage] = lake.read_manifest(table_of(stage, score_table), run_date) is not None
    status["report"] = storage.exists(report_url(lake.root, run_date))
    return status


def plan_backfill(dates: Sequence[str], done: Mapping[str, bool]) -> tuple[list[str], list[str]]:
    """(nights skipped, nights to run), oldest first: the leading nights already done are skipped; from the first
    night that is not, every later night runs too, since curate's cross-night dedup and the training set read the
    nights before (their stages skip what is still up to date by fingerprint)."""
    for index, date in enumerate(dates):
        if not done.get(date, False):
            return list(dates[:index]), list(dates[index:])
    return list(dates), []


RESCORE_NIGHTS = "score.rescore_nights"  # the override a backfill sets on its nights but the last


def backfill_overrides(overrides: Mapping[str, Any] | None, night: str, to_run: Sequence[str]) -> dict[str, Any]:
    """The overrides a backfill runs `night` with: run_date pinned and, on every night but the last, no rescoring of
    earlier nights (score.rescore_nights 0): the next night's model replaces each night's, so within the last
    night's window only its rescoring would last."""
    once = {} if night == to_run[-1] else {RESCORE_NIGHTS: 0}
    return {**(overrides or {}), "run_date": night, **once}


def carried_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The overrides a run's events hand to the runs they start: all but score.rescore_nights, which a backfill sets
    to 0 on its nights (`backfill_overrides`) and which must not stop the rescore a later champion starts."""
    return {key: value for key, value in overrides.items() if key != RESCORE_NIGHTS}


def latest_night(lake: Lake, table: str = "predictions") -> str | None:
    """The newest run_date with a committed `table` partition of scored rows (not one committed empty): the night a
    new champion rescores, and from which it rescores the nights before (score.rescore_nights)."""
    return next((d for d in reversed(lake.run_dates(table)) if (lake.read_manifest(table, d) or {}).get("model_hash")),
                None)  # newest first: one manifest read on a lake whose newest night was scored


def nights_to_rescore(lake: Lake, run_date: str, window: int, table: str = "predictions") -> list[str]:
    """Of the `window` newest curated nights before run_date, oldest first, those whose `table` partition another
    model scored than run_date's (by model_hash; each baseline has its own) or that have none yet (no model had
    passed the gate and score.fallback was none): what score.rescore_nights brings up to tonight's model. Nights
    committed empty (no curated rows) are left alone. [] when run_date's partition is not committed or holds no
    scored rows, or window is 0."""
    tonight = lake.read_manifest(table, run_date)
    if not window or not tonight or not tonight.get("model_hash"):
        return []
    stale = []
    for night in [d for d in lake.run_dates("curated") if d < run_date][-window:]:
        manifest = lake.read_manifest(table, night)
        if manifest is None or (manifest.get("model_hash") and manifest["model_hash"] != tonight["model_hash"]):
            stale.append(night)
    return stale


def commit_event(lake: Lake, stage: str, run_date: str, summary: Mapping[str, Any],
                 score_table: str = "predictions") -> dict[str, Any]:
    """What a stage's commit of (table, run_date) announces: the resource id and labels a trigger matches on, and a
    payload with the manifest's counts and fingerprint. `skipped`: nothing new was committed (already up to date)."""
    table = table_of(stage, score_table)
    manifest = lake.read_manifest(table, run_date) or {}
    counts = manifest.get("counts") or {k: v for k, v in summary.items() if isinstance(v, int) and k != "skipped"}
    skipped = bool(summary.get("skipped"))
    return {
        "resource": {"prefect.resource.id": f"bert-pipeline.{table}.{run_date}",
                     "prefect.resource.name": f"{table} run_date={run_date}",
                     "bert-pipeline.table": table, "bert-pipeline.run-date": run_date,
                     "bert-pipeline.skipped": str(skipped).lower()},
        "payload": {"stage": stage, "table": table, "run_date": run_date, "skipped": skipped,
                    "fingerprint": manifest.get("fingerprint"), "counts": counts,
                    "partition": summary.get("partition") or lake.partition(table, run_date)},
    }


def missing_by_morning(lake: Lake, run_date: str, score_table: str = "predictions") -> str | None:
    """Why run_date's night is not done (predictions not committed, naming the first stage whose output is missing),
    or None when its predictions are committed."""
    status = night_status(lake, run_date, ("ingest", "curate", "tokenize", "score"), score_table)
    if status["score"]:
        return None
    first = next(stage for stage in ("ingest", "curate", "tokenize", "score") if not status[stage])
    return (f"{score_table} for run_date={run_date} are not committed under {lake.root}: the first stage without "
            f"output is {first} ({table_of(first, score_table)}/run_date={run_date} has no manifest)")
