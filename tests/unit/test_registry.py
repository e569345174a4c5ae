"""The champion gate: beat the majority-class baseline and the champion on the same rows, by label name."""

from __future__ import annotations

import pytest

from bert_pipeline.evaluation.registry import gate, macro_f1_by_name, majority_label

CHAMPION = {"model_version": "2026-01-01-aaaa", "validation_macro_f1": 0.9, "label_names": ["neg", "pos"]}


def test_macro_f1_by_name_counts_a_label_the_model_lacks_as_wrong() -> None:
    true = ["neg", "neg", "new", "new"]
    # F1(neg) = 2 * 0.5 * 1 / 1.5, F1(new) = 0: the champion never predicts a label it does not have
    assert macro_f1_by_name(true, ["neg"] * 4) == pytest.approx((2 / 3 + 0) / 2)
    assert macro_f1_by_name(true, true) == 1.0
    assert macro_f1_by_name(["1", "1", "0"], ["1", "0", "0"]) == pytest.approx((2 / 3 + 2 / 3) / 2)


def test_majority_label_ties_break_by_name() -> None:
    assert majority_label(["b", "a", "b", "c"]) == "b"
    assert majority_label(["b", "a"]) == "a"


def test_a_one_class_model_is_refused_even_without_a_champion() -> None:
    true = ["neg"] * 13 + ["pos"] * 5 + ["neutral"] * 2
    decision = gate(true, ["neg"] * 20, "neg", ["neg", "neutral", "pos"], None, None, 0.0)
    assert decision["promoted"] is False
    assert decision["new_validation_macro_f1"] == decision["baseline_validation_macro_f1"] == pytest.approx(
        (2 * 0.65 / 1.65) / 3)
    assert "predicts 'neg' for 100% of them" in decision["reason"] and decision["new_top_predicted_share"] == 1.0
    # with a champion, the refusal still records the champion's score on the same rows
    with_champion = gate(true, ["neg"] * 20, "neg", ["neg", "neutral", "pos"], CHAMPION, true, 0.0)
    assert with_champion["promoted"] is False and with_champion["champion_validation_macro_f1"] == 1.0


def test_the_first_model_that_beats_the_baseline_becomes_champion() -> None:
    true = ["neg", "neg", "pos", "pos"]
    decision = gate(true, ["neg", "pos", "pos", "pos"], "neg", ["neg", "pos"], None, None, 0.0)
    assert decision["promoted"] is True and "no champion yet" in decision["reason"]
    assert decision["baseline_validation_macro_f1"] == pytest.approx(1 / 3)


def test_a_label_set_change_is_compared_not_waved_through() -> None:
    # tonight adds the label "mixed"; the new model collapses onto it and is worse than the 2-label champion
    true = ["neg"] * 4 + ["pos"] * 4 + ["mixed"] * 2
    new = ["neg"] * 4 + ["mixed"] * 6  # beats the baseline, but not the champion
    champion_predicted = ["neg"] * 4 + ["pos"] * 4 + ["neg", "pos"]  # right on neg/pos, wrong on what it lacks
    decision = gate(true, new, "neg", ["mixed", "neg", "pos"], CHAMPION, champion_predicted, 0.0)
    assert decision["promoted"] is False
    assert decision["baseline_validation_macro_f1"] < decision["new_validation_macro_f1"]
    assert decision["champion_validation_macro_f1"] == pytest.approx(macro_f1_by_name(true, champion_predicted))
    assert decision["champion_validation_macro_f1"] > decision["new_validation_macro_f1"]
    assert "is worse than champion" in decision["reason"] and "the champion's labels are ['neg', 'pos']" in decision["reason"]
    # a new model that also gets the new label right beats the champion on the same rows and is promoted
    better = gate(true, true, "neg", ["mixed", "neg", "pos"], CHAMPION, champion_predicted, 0.0)
    assert better["promoted"] is True and better["new_validation_macro_f1"] == 1.0


@pytest.mark.parametrize(("tolerance", "promoted"), [(0.0, False), (0.3, True)])
def test_tolerance_lets_a_slightly_worse_model_win(tolerance: float, promoted: bool) -> None:
    true = ["neg", "neg", "pos", "pos", "pos"]
    decision = gate(true, ["neg", "pos", "pos", "pos", "pos"], "pos", ["neg", "pos"], CHAMPION, true, tolerance)
    assert decision["promoted"] is promoted and decision["champion_validation_macro_f1"] == 1.0


def test_no_validation_rows_or_one_label_promotes_nothing() -> None:
    decision = gate([], [], "neg", ["neg", "pos"], None, None, 0.0)
    assert decision["promoted"] is False and "hold 0 label(s)" in decision["reason"]
    one = gate(["neg"] * 5, ["neg"] * 5, "neg", ["neg", "pos"], None, None, 0.0)  # a perfect model, and a guess
    assert one["promoted"] is False and "curate.validation_fraction" in one["reason"]


def test_a_champion_that_cannot_be_loaded_leaves_the_baseline_as_the_bar() -> None:
    true = ["neg", "pos", "pos", "neg"]
    decision = gate(true, ["neg", "pos", "neg", "neg"], "neg", ["neg", "pos"], CHAMPION, None, 0.0)
    assert decision["promoted"] is True and decision["champion_validation_macro_f1"] is None
    assert "could not be loaded" in decision["reason"] and decision["champion_run_on_these_rows"] is False
    worse = gate(true, ["neg"] * 4, "neg", ["neg", "pos"], CHAMPION, None, 0.0)
    assert worse["promoted"] is False
