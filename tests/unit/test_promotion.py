"""Promotion with a human say (bert_pipeline/evaluation/promotion.py): pending, approved, rejected, expired, superseded."""

from __future__ import annotations

from pathlib import Path

import pytest

from bert_pipeline.evaluation import promotion
from bert_pipeline.evaluation import registry
from bert_pipeline.errors import LakeStateError
from bert_pipeline.lake.manifests import Lake

GATE = {"promoted": True, "reason": "validation macro-F1 0.8000 beats or ties champion old at 0.7000",
        "new_validation_macro_f1": 0.8, "champion_validation_macro_f1": 0.7, "baseline_validation_macro_f1": 0.3,
        "validation_rows": 40, "previous_champion": None}


def commit(lake: Lake, version: str, decision: dict) -> None:
    registry.commit_model(lake, version, {
        "run_date": version[:10], "promoted": decision["promoted"], "champion_decision": decision,
        "metrics": {"model_version": version, "label_names": ["neg", "pos"], "test": {"macro_f1": 0.78, "accuracy": 0.81}},
        "training_set": {"run_dates": ["2026-11-26", version[:10]]},
    })


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(str(tmp_path / "lake"))


def test_auto_promotes_and_approve_holds_a_model_that_passed_the_gate() -> None:
    assert promotion.hold_for_approval(GATE, "auto") == GATE
    held = promotion.hold_for_approval(GATE, "approve")
    assert held["promoted"] is False and held["awaiting_approval"] is True and held["gate_promoted"] is True
    assert held["reason"].startswith("passed the gate, waits for a person's approval")
    assert GATE["reason"] in held["reason"]
    refused = GATE | {"promoted": False}
    assert promotion.hold_for_approval(refused, "approve") == refused  # the gate's no needs nobody


def test_an_approved_model_becomes_champion_and_the_decision_is_recorded(lake: Lake) -> None:
    commit(lake, "2026-11-27-aaaaaaaaaa", promotion.hold_for_approval(GATE, "approve"))
    assert registry.read_champion(lake) is None
    assert promotion.status(lake, "2026-11-27-aaaaaaaaaa")["state"] == "pending"
    facts = promotion.review(lake, "2026-11-27-aaaaaaaaaa")
    text = promotion.review_markdown(facts)
    assert "| this model | 0.8000 |" in text and "| champion `none` | 0.7000 |" in text and "0.3000" in text
    assert "Test macro-F1 0.7800" in text and "2 night(s) (2026-11-26 .. 2026-11-27)" in text
    record = promotion.approve(lake, "2026-11-27-aaaaaaaaaa", by="ana", note="looks right")
    assert record["state"] == "approved" and record["decided_by"] == "ana"
    champion = registry.read_champion(lake)
    assert champion["model_version"] == "2026-11-27-aaaaaaaaaa" and champion["label_names"] == ["neg", "pos"]
    assert champion["decision"]["promoted"] is True and champion["decision"]["approved_by"] == "ana"
    assert promotion.status(lake, "2026-11-27-aaaaaaaaaa")["state"] == "approved"
    with pytest.raises(LakeStateError, match="not waiting for approval \\(state: approved\\)"):
        promotion.approve(lake, "2026-11-27-aaaaaaaaaa")  # once


def test_a_rejected_or_unanswered_model_is_kept_and_marked(lake: Lake) -> None:
    for version in ("2026-11-27-bbbbbbbbbb", "2026-11-27-cccccccccc"):
        commit(lake, version, promotion.hold_for_approval(GATE, "approve"))
    assert promotion.reject(lake, "2026-11-27-bbbbbbbbbb", by="ana", note="too few rows")["state"] == "rejected"
    assert promotion.reject(lake, "2026-11-27-cccccccccc", expired=True)["state"] == "expired"
    assert registry.read_champion(lake) is None
    assert registry.model_manifest(lake, "2026-11-27-bbbbbbbbbb")  # kept in the registry


def test_approving_after_the_champion_changed_marks_the_model_superseded(lake: Lake) -> None:
    commit(lake, "2026-11-27-dddddddddd", promotion.hold_for_approval(GATE, "approve"))  # compared with no champion
    registry.promote(lake, "2026-11-28-eeeeeeeeee", ["neg", "pos"], GATE)  # meanwhile another model won
    record = promotion.approve(lake, "2026-11-27-dddddddddd", by="ana")
    assert record["state"] == "superseded" and "the champion changed" in record["reason"]
    assert registry.read_champion(lake)["model_version"] == "2026-11-28-eeeeeeeeee"


def test_only_a_pending_model_can_be_decided(lake: Lake) -> None:
    commit(lake, "2026-11-27-ffffffffff", GATE)  # promoted at once (auto)
    assert promotion.status(lake, "2026-11-27-ffffffffff")["state"] == "not-requested"
    with pytest.raises(LakeStateError, match="not waiting for approval"):
        promotion.reject(lake, "2026-11-27-ffffffffff")
    with pytest.raises(LakeStateError, match="no committed model"):
        promotion.status(lake, "2026-11-27-0000000000")


def test_the_verdict_says_what_scores_when_a_model_is_refused() -> None:
    from bert_pipeline.evaluation.promotion import verdict

    assert verdict({"promoted": True, "previous_champion": "v1"}) == "promoted to champion"
    assert verdict({"promoted": False, "previous_champion": "v1"}) == "not promoted: scoring keeps champion v1"
    refused_first = verdict({"promoted": False, "previous_champion": None})
    assert "no champion yet" in refused_first and "score.fallback" in refused_first and "keeps" not in refused_first
    waiting = verdict(promotion.hold_for_approval(GATE | {"previous_champion": "v1"}, "approve"))
    assert waiting == "waiting for a person's approval (train.promotion: approve); scoring keeps champion v1 until then"


def test_the_report_reads_a_person_s_answer_and_a_later_replacement(lake: Lake) -> None:
    """The manifest keeps the gate's `awaiting_approval`; the report of that night must say what was decided since:
    approved (and later replaced as champion), or rejected."""
    from bert_pipeline.stages.report import replaced_line, tonight_model

    approved, rejected, later = "2026-11-27-aaaaaaaaaa", "2026-11-28-bbbbbbbbbb", "2026-11-29-cccccccccc"
    for version in (approved, rejected):
        commit(lake, version, promotion.hold_for_approval(GATE, "approve"))
    assert promotion.verdict(tonight_model(lake, "2026-11-27")["champion_decision"]).startswith("waiting for")
    assert replaced_line(lake, tonight_model(lake, "2026-11-27")) == ""

    promotion.approve(lake, approved, by="ana")
    promotion.reject(lake, rejected, by="bo", note="too few rows")
    first, second = tonight_model(lake, "2026-11-27"), tonight_model(lake, "2026-11-28")
    assert promotion.verdict(first["champion_decision"]) == "promoted to champion"
    assert first["champion_decision"]["reason"].startswith("approved by ana at ")
    assert GATE["reason"] in first["champion_decision"]["reason"]
    assert replaced_line(lake, first) == ""  # still the champion
    # the champion named is the one now (night 27's, approved since), not "no champion" as when it was compared
    assert promotion.verdict(second["champion_decision"]) == f"not promoted (rejected): scoring keeps champion {approved}"
    assert second["champion_decision"]["reason"].startswith("rejected by bo at ")
    assert "(too few rows)" in second["champion_decision"]["reason"]  # the person's note reaches the report

    registry.promote(lake, later, ["neg", "pos"], GATE)
    assert replaced_line(lake, tonight_model(lake, "2026-11-27")) == \
        f"\nIt has since been replaced as champion by {later}.\n"
    assert replaced_line(lake, tonight_model(lake, "2026-11-28")) == ""  # never was champion


def test_a_report_names_the_champion_of_today_for_a_pending_or_superseded_model(lake: Lake) -> None:
    pending, superseded, winner = "2026-11-27-aaaaaaaaaa", "2026-11-27-bbbbbbbbbb", "2026-11-28-cccccccccc"
    from bert_pipeline.stages.report import tonight_model

    commit(lake, pending, promotion.hold_for_approval(GATE | {"previous_champion": "v1"}, "approve"))
    registry.promote(lake, "v1", ["neg", "pos"], GATE)
    assert promotion.verdict(tonight_model(lake, "2026-11-27")["champion_decision"]) == \
        "waiting for a person's approval (train.promotion: approve); scoring keeps champion v1 until then"
    registry.promote(lake, winner, ["neg", "pos"], GATE)  # another model won meanwhile
    assert promotion.verdict(tonight_model(lake, "2026-11-27")["champion_decision"]) == (
        f"waiting for a person's approval (train.promotion: approve); scoring keeps champion {winner} until then; "
        "it was compared with v1, so approving it now would mark it superseded")
    commit(lake, superseded, promotion.hold_for_approval(GATE | {"previous_champion": "v1"}, "approve"))
    assert promotion.approve(lake, superseded, by="ana")["state"] == "superseded"
    decided = promotion.as_decided(lake, registry.model_manifest(lake, superseded))
    assert promotion.verdict(decided) == f"not promoted (superseded): scoring keeps champion {winner}"
    assert decided["reason"].startswith("superseded by ana at ") and f"now {winner}" in decided["reason"]
    # the CLI right after training has no current_champion: it names the champion the model was compared with
    assert promotion.verdict({"promoted": False, "previous_champion": "v1"}) == "not promoted: scoring keeps champion v1"
