"""The summary `bert-pipeline run` prints: a rerun of an older night names the model that scores it, not only the
decision its own model got when it was trained (which was true then and may be outranked since)."""

from __future__ import annotations

import pytest

from flows.cli import _print_summary

DECISION = {"promoted": True, "reason": "validation macro-F1 0.8100 beats the majority-class baseline 0.3300; no "
            "champion yet", "previous_champion": None}
METRICS = {"validation": {"rows": 40, "accuracy": 0.8, "macro_f1": 0.81}, "test": {"rows": 30, "accuracy": 0.77,
                                                                                  "macro_f1": 0.75}}


def summary(train_skipped: bool, scored_by: str) -> dict:
    return {"train": {"stage": "train", "skipped": train_skipped, "model_version": "2026-11-27-132b37607a",
                      "model_uri": "lake/models/2026-11-27-132b37607a", "metrics": METRICS,
                      "champion_decision": DECISION, "reason": "already committed" if train_skipped else None},
            "score": {"stage": "score", "skipped": False, "partition": "lake/predictions/run_date=2026-11-27",
                      "model_version": scored_by, "rows": 150}}


def test_a_rerun_says_the_decision_is_an_earlier_runs_and_which_model_scored_the_night(
        capsys: pytest.CaptureFixture[str]) -> None:
    _print_summary("run", summary(True, "2026-11-28-65c4bce0ba"))
    out = capsys.readouterr().out
    assert ("model 2026-11-27-132b37607a: trained by an earlier run, which decided: promoted to champion: "
            "validation macro-F1 0.8100") in out
    assert "  this night is scored by model_version 2026-11-28-65c4bce0ba\n" in out


def test_a_fresh_model_that_scored_its_own_night_gets_neither_line(capsys: pytest.CaptureFixture[str]) -> None:
    _print_summary("run", summary(False, "2026-11-27-132b37607a"))
    out = capsys.readouterr().out
    assert "model 2026-11-27-132b37607a: promoted to champion: validation macro-F1 0.8100" in out
    assert "earlier run" not in out and "scored by model_version" not in out


def test_the_report_line_names_where_the_report_went(capsys: pytest.CaptureFixture[str]) -> None:
    night = summary(False, "2026-11-27-132b37607a")
    report = "lake/reports/run_date=2026-11-27/report.md"
    _print_summary("run", night | {"report": {"stage": "report", "report": report, "plots": []}})
    assert f"  report    done                         {report}\n" in capsys.readouterr().out
    _print_summary("score", night["score"] | {"report": report})  # a score run alone rewrote it
    out = capsys.readouterr().out
    assert f"  score     done                         lake/predictions/run_date=2026-11-27\n" in out
    assert f"  report    written                      {report}\n" in out


def test_a_night_the_fallback_scored_prints_the_baselines_figures_beside_the_refused_models(
        capsys: pytest.CaptureFixture[str]) -> None:
    tfidf = {"kind": "tfidf-logistic-regression", "validation": {"rows": 40, "macro_f1": 0.6565},
             "test": {"rows": 30, "macro_f1": 0.5894}, "model_version": "2026-11-27-132b37607a+tfidf-baseline"}
    night = summary(False, "2026-11-27-132b37607a+tfidf-baseline")
    night["train"]["metrics"] = METRICS | {"baseline": tfidf}
    _print_summary("run", night)
    out = capsys.readouterr().out
    assert ("  baseline:   tfidf-logistic-regression: validation macro-F1 0.6565, test macro-F1 0.5894 (it scored "
            "this night: score.fallback)\n") in out
    # an entity tagger: its memorising baseline, then the CRF that a fallback uses; the model scored its own night
    entities = {"kind": "memorising", "validation": {"entity_f1": 0.25}, "test": {"entity_f1": 0.22},
                "crf": {"kind": "crf", "validation": {"entity_f1": 0.37}, "test": {"entity_f1": 0.30}}}
    night = summary(False, "2026-11-27-132b37607a")
    night["train"]["metrics"] = METRICS | {"baseline": entities, "problem_type": "token_classification",
                                           "model_version": "2026-11-27-132b37607a"}
    _print_summary("run", night)
    out = capsys.readouterr().out
    assert "  baseline:   memorising: validation entity F1 0.2500, test entity F1 0.2200\n" in out
    assert "  baseline:   crf: validation entity F1 0.3700, test entity F1 0.3000\n" in out
    night["score"]["model_version"] = "2026-11-27-132b37607a+crf-baseline"  # the CRF scored it
    _print_summary("run", night)
    out = capsys.readouterr().out
    assert "  baseline:   crf: validation entity F1 0.3700, test entity F1 0.3000 (it scored this night" in out
    assert "memorising: validation entity F1 0.2500, test entity F1 0.2200\n" in out
