"""The nightly report compares tonight's predicted-label shares with the newest EARLIER night that has predictions:
empty nights in between are skipped and named, and a backfilled night compares with the night before it, not with
the newest night committed."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from bert_pipeline.lake import storage
from bert_pipeline.config import build_config
from bert_pipeline.lake.manifests import Lake, shard_name
from bert_pipeline.lake.predictions import PREDICTIONS_SCHEMA
from bert_pipeline.stages.report import comparison_note, previous_night, write_report


def commit_predictions(lake: Lake, run_date: str, labels: list[str]) -> None:
    """A committed predictions partition of one row per label given (none: an empty night, as score commits it)."""
    writer = lake.writer("predictions", run_date, f"fp-{run_date}").begin()
    if labels:
        rows = len(labels)
        table = pa.Table.from_pydict({
            "doc_id": [f"{run_date}-{i}" for i in range(rows)], "predicted_label": labels,
            "predicted_labels": [[label] for label in labels], "confidence": [0.9] * rows,
            "probabilities": [[(label, 0.9)] for label in labels], "model_version": ["m1"] * rows,
            "model_hash": ["h"] * rows, "run_id": ["r"] * rows, "scored_at": [None] * rows,
            "truncated": [False] * rows, "windows": [1] * rows}, schema=PREDICTIONS_SCHEMA)
        storage.write_parquet_atomic(writer.add(shard_name(0)), table)
    writer.commit(stage="score", run_date=run_date, model_version="m1",
                  counts={"rows": len(labels), "scored_this_run": len(labels), "labels": ["a", "b"]})


def report(root: Path, run_date: str) -> tuple[dict, str]:
    summary = write_report(build_config({"data_root": str(root), "run_date": run_date}))
    return summary, Path(summary["report"]).read_text()


def test_the_report_skips_empty_nights_and_a_backfill_compares_with_the_night_before_it(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    lake = Lake(str(root))
    commit_predictions(lake, "2026-02-28", [])  # empty
    commit_predictions(lake, "2026-03-01", ["a", "a", "a", "b"])  # a 75%, b 25%
    commit_predictions(lake, "2026-03-02", [])  # empty
    commit_predictions(lake, "2026-03-04", ["a", "b", "b", "b"])  # a 25%, b 75%

    summary, text = report(root, "2026-03-04")  # after an empty night: the night before it that has rows
    assert not (root / "_tmp" / "reports" / "run_date=2026-03-04").exists()  # its staging folder went with it
    assert summary["previous_run_date"] == "2026-03-01" and summary["skipped_empty_nights"] == ["2026-03-02"]
    assert ("4 rows scored with model m1. Compared with run_date 2026-03-01, the newest earlier night with "
            "predictions (skipped 1 empty night(s) with no predictions: 2026-03-02).") in text
    assert "| label | rows | share | share on 2026-03-01 | change |" in text
    assert "| a | 1 | 25.00% | 75.00% | -50.00% |" in text and "| b | 3 | 75.00% | 25.00% | +50.00% |" in text
    assert (root / "reports" / "run_date=2026-03-04" / "score_change.png").read_bytes().startswith(b"\x89PNG")

    commit_predictions(lake, "2026-03-03", ["a", "a", "b", "b"])  # backfilled after 03-04: a 50%, b 50%
    summary, text = report(root, "2026-03-03")  # not 03-04, the newest night and the newest committed
    assert summary["previous_run_date"] == "2026-03-01" and summary["skipped_empty_nights"] == ["2026-03-02"]
    assert "| a | 2 | 50.00% | 75.00% | -25.00% |" in text and "| b | 2 | 50.00% | 25.00% | +25.00% |" in text
    summary, text = report(root, "2026-03-04")  # rebuilt after the backfill: the backfilled night is the previous
    assert summary["previous_run_date"] == "2026-03-03" and summary["skipped_empty_nights"] == []
    assert "Compared with run_date 2026-03-03, the newest earlier night with predictions." in text
    assert "| a | 1 | 25.00% | 50.00% | -25.00% |" in text

    summary, text = report(root, "2026-03-01")  # only an empty night before it
    assert summary["previous_run_date"] is None and summary["skipped_empty_nights"] == ["2026-02-28"]
    assert ("No earlier night with predictions to compare with (skipped 1 empty night(s) with no predictions: "
            "2026-02-28).") in text
    assert "| label | rows | share | share on (no earlier night) | change |" in text
    assert "| a | 3 | 75.00% |  |  |" in text

    summary, text = report(root, "2026-03-02")  # tonight empty: says so, and has nothing to plot
    assert "No rows scored for run_date 2026-03-02: an empty night" in text
    assert summary["plots"] == [] and summary["previous_run_date"] == "2026-03-01"


def test_previous_night_by_date_before_run_date_whatever_the_commit_order(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    for date, labels in [("2026-05-03", ["a"]), ("2026-05-05", []), ("2026-05-01", ["b"]), ("2026-05-04", []),
                         ("2026-05-02", [])]:
        commit_predictions(lake, date, labels)
    assert previous_night(lake, "predictions", "2026-05-06") == ("2026-05-03", ["2026-05-05", "2026-05-04"])
    assert previous_night(lake, "predictions", "2026-05-03") == ("2026-05-01", ["2026-05-02"])
    assert previous_night(lake, "predictions", "2026-05-01") == (None, [])
    assert comparison_note(None, [], "predictions") == "No earlier night with predictions to compare with."


def test_the_scores_section_names_the_nights_each_model_scored_reading_only_the_newest_nights(
        tmp_path: Path, monkeypatch) -> None:
    from bert_pipeline.stages import report

    lake = Lake(str(tmp_path / "lake"))
    hashes = ["old"] * 4 + ["other"] * 3 + ["new"] * 5  # twelve nights, 2026-11-01 .. 11-12; tonight is 11-12
    nights = [f"2026-11-{day:02d}" for day in range(1, len(hashes) + 1)]
    for night, model_hash in zip(nights, hashes):  # 11-10 and 11-11 rescored after tonight's score
        committed = "2026-11-12T03:05:00Z" if night in ("2026-11-10", "2026-11-11") else f"{night}T03:00:00Z"
        storage.write_json_atomic(lake.manifest_url("predictions", night), {
            "model_hash": model_hash, "model_version": f"v-{model_hash}", "counts": {"rows": 10},
            "committed_at": committed})
    read: list[str] = []
    original = Lake.read_manifest
    monkeypatch.setattr(Lake, "read_manifest", lambda self, area, night: read.append(night) or original(
        self, area, night))
    monkeypatch.setattr(report, "REPORT_NIGHTS", 6)
    line = report.same_model_line(lake, "predictions", "2026-11-12", 2)
    assert read == ["2026-11-12", *nights[5:11]]  # tonight, then the six nights before it: not the older five
    assert "The same model's rows also fill 4 earlier night(s): 2026-11-08 (10 rows), 2026-11-09 (10 rows), " \
           "2026-11-10 (10 rows, rescored after this night's score), 2026-11-11 (10 rows, rescored after this " \
           "night's score)." in line
    assert "2 earlier night(s) were scored by other models: 2026-11-06 (v-other), 2026-11-07 (v-other) " \
           "(`score.rescore_nights`: 2 nights" in line
    assert "the newest 6 were read; 5 older night(s) were not (each night's manifest names the model that scored it)." in line
    read.clear()
    assert "older night(s)" not in report.same_model_line(lake, "predictions", "2026-11-12", 20)  # the window's 11
    assert len(read) == 12


def test_the_vocabulary_line_says_why_an_extension_ran_where_no_token_was_unknown() -> None:
    """Arabic through the packaged MiniLM: no [UNK], but 4.2 tokens a word, so `auto` extended the vocabulary. The
    report gives the figure that moved, not only the unknown share that stayed 0.00%."""
    from bert_pipeline.stages.report import vocabulary_line

    tokens = {"vocabulary": {"extended": True, "extend_vocabulary": "auto", "unknown_token_share_before": 0.0,
                             "unknown_token_share_after": 0.0, "added_total": 819,
                             "added_tonight": {"added": 819, "by_script": {"Arabic": 819}, "top": [["الله", 40]]},
                             "coverage_before": {"by_script": {"Arabic": {"tokens_per_word": 4.197, "chars": 900},
                                                               "Common": {"chars": 40}}}},
              "coverage": {"by_script": {"Arabic": {"tokens_per_word": 2.457, "chars": 900}}}}
    line = vocabulary_line(tokens)
    assert ("the unknown token share went from 0.00% (the tokenizer it started from) to 0.00%; tokens per word of "
            "Arabic went from 4.20 to 2.46; 819 tokens added tonight (Arabic 819; most frequent: الله)") in line
    tokens["vocabulary"]["coverage_before"]["by_script"]["Arabic"]["tokens_per_word"] = 1.9  # read whole before
    assert "tokens per word" not in vocabulary_line(tokens)
