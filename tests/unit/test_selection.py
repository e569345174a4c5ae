"""The nested validation figure (bert_pipeline/evaluation/selection.py): the figure of a model whose epoch was chosen
on the validation rows, corrected for that choice, and the gates that hold it to the baselines."""

from __future__ import annotations

import numpy as np
import pytest

from bert_pipeline.evaluation.metrics import classification_report, multilabel_report
from bert_pipeline.evaluation.registry import Margin, gate
from bert_pipeline.evaluation.selection import by_fold, f1_of, label_counts, nested_figure, one_hot
from bert_pipeline.ner.metrics import entity_row_counts, entity_scores
from bert_pipeline.ner.spans import Span
from bert_pipeline.stages.train_entities import entity_gate


def _counts(true: np.ndarray, predicted: np.ndarray, labels: int) -> np.ndarray:
    return label_counts(one_hot(true, labels), one_hot(predicted, labels))


def test_the_counts_give_the_reports_macro_f1_including_a_label_predicted_but_absent() -> None:
    rng = np.random.default_rng(3)
    true = rng.integers(0, 4, 37)  # labels 0..3 occur; 4 is only ever predicted, 5 never appears
    predicted = np.where(rng.random(37) < 0.6, true, rng.integers(0, 5, 37))
    predicted[0] = 4
    names = [f"l{i}" for i in range(6)]
    counts = _counts(true, predicted, 6)
    assert counts.shape == (2, 6, 3) and counts[:, :, 0].sum() == (true == predicted).sum()
    assert f1_of(counts.sum(0), "macro") == pytest.approx(classification_report(true, predicted, names)["macro_f1"])
    multi_true = rng.random((23, 5)) < 0.4
    multi_pred = multi_true ^ (rng.random((23, 5)) < 0.25)
    report = multilabel_report(multi_true, multi_pred, list("abcde"))
    pooled = label_counts(multi_true, multi_pred).sum(0)
    assert f1_of(pooled, "macro") == pytest.approx(report["macro_f1"])
    assert f1_of(pooled, "micro") == pytest.approx(report["micro_f1"])
    assert f1_of(np.zeros((3, 3)), "macro") == 0.0  # nothing counted


def test_each_half_is_answered_at_the_epoch_the_other_half_chose() -> None:
    # rows 0 and 2 are fold 0, rows 1 and 3 fold 1. Epoch 1 is right on fold 0 only, epoch 2 on fold 1 only:
    # each fold chooses the epoch that suits it, so its rows are answered by the one that does not
    true = np.array([0, 1, 0, 1])
    epoch1 = _counts(true, np.array([0, 0, 0, 0]), 2)  # fold 0 right, fold 1 wrong
    epoch2 = _counts(true, np.array([1, 1, 1, 1]), 2)  # fold 0 wrong, fold 1 right
    nested = nested_figure([epoch1, epoch2], "macro")
    assert nested == {"figure": 0.0, "chosen_epochs": [1, 2], "epochs": 2}
    # the plain figure of either epoch (what choosing on all four rows reports) is 1/3: one label right on half
    assert f1_of(epoch1.sum(0), "macro") == pytest.approx(1 / 3)
    # one epoch: nothing was chosen, so the nested figure is the plain one
    assert nested_figure([epoch1], "macro") == {"figure": pytest.approx(1 / 3), "chosen_epochs": [1, 1], "epochs": 1}
    assert nested_figure([], "macro") is None


def test_choosing_the_best_of_many_noisy_epochs_overstates_and_the_nested_figure_does_not() -> None:
    """A hundred validation rows of 25 labels (the Russian word senses' shape) and 30 epochs that each answer at
    chance level: the best plain figure looks like learning; the nested figure stays at chance."""
    rng = np.random.default_rng(7)
    true = rng.integers(0, 25, 100)
    epochs = [_counts(true, np.where(rng.random(100) < 0.3, true, rng.integers(0, 25, 100)), 25) for _ in range(30)]
    plain = [f1_of(e.sum(0), "macro") for e in epochs]
    nested = nested_figure(epochs, "macro")
    assert nested is not None
    assert max(plain) - np.mean(plain) > 0.05  # the winner's curse
    assert abs(nested["figure"] - np.mean(plain)) < 0.05 < max(plain) - nested["figure"]


def test_entity_fold_counts_pool_to_the_micro_entity_f1() -> None:
    gold = [[Span(0, 2, "PER")], [Span(3, 5, "LOC"), Span(6, 8, "ORG")], [], [Span(0, 4, "PER")], [Span(1, 2, "LOC")]]
    pred = [[Span(0, 2, "PER")], [Span(3, 5, "ORG")], [Span(0, 1, "LOC")], [Span(0, 4, "PER")], []]
    counts = by_fold(entity_row_counts(gold, pred))
    assert counts.shape == (2, 1, 3)
    assert counts[0, 0].tolist() == [1, 1, 1]  # rows 0, 2, 4: one right, one spurious, one missed
    assert counts[1, 0].tolist() == [1, 1, 2]  # rows 1, 3
    assert f1_of(counts.sum(0), "micro") == pytest.approx(entity_scores(gold, pred)["micro"]["f1"])


TRUE = ["neg"] * 6 + ["pos"] * 4
NEW = ["neg"] * 5 + ["pos"] * 2 + ["neg", "pos", "pos"]  # 8 of 10 right: macro-F1 0.7917
LINEAR = ["neg"] * 5 + ["pos", "neg", "neg", "pos", "pos"]  # 7 of 10 right: 0.6703


def test_the_gate_holds_the_nested_figure_to_the_baselines_and_the_plain_one_to_the_champion() -> None:
    plain = gate(TRUE, NEW, "neg", ["neg", "pos"], None, None, 0.0, linear_predicted=LINEAR)
    assert plain["promoted"] is True and plain["new_validation_macro_f1_nested"] is None
    refused = gate(TRUE, NEW, "neg", ["neg", "pos"], None, None, 0.0, linear_predicted=LINEAR, nested=0.55)
    assert refused["promoted"] is False and refused["new_validation_macro_f1_nested"] == 0.55
    assert refused["reason"].startswith(
        "validation macro-F1 0.5500 (0.7917 at the epoch these rows chose; each half scored at the epoch the other "
        "half chose) does not beat the TF-IDF baseline 0.6703 on 10 validation rows")
    below_majority = gate(TRUE, NEW, "neg", ["neg", "pos"], None, None, 0.0, linear_predicted=None, nested=0.3)
    assert below_majority["promoted"] is False and "does not beat the majority-class baseline 0.3750" in \
        below_majority["reason"]
    same = gate(TRUE, NEW, "neg", ["neg", "pos"], None, None, 0.0, linear_predicted=LINEAR, nested=0.79166)
    assert same["promoted"] is True and same["reason"].startswith("validation macro-F1 0.7917 beats")
    # against a champion the plain figures are compared (the champion too was chosen on rows like these)
    champion = {"model_version": "2026-01-01-old", "label_names": ["neg", "pos"]}
    theirs = ["neg"] * 8 + ["pos"] * 2  # macro-F1 0.7619: between the new model's nested and plain figures
    kept = gate(TRUE, NEW, "neg", ["neg", "pos"], champion, theirs, 0.0, linear_predicted=LINEAR, nested=0.7)
    assert kept["promoted"] is True and "0.7917 beats or ties champion 2026-01-01-old at 0.7619" in kept["reason"]


def test_the_entity_gate_holds_the_nested_figure_to_the_crf() -> None:
    gold = [[Span(0, 3, "PER")], [Span(0, 5, "LOC")], [Span(2, 4, "ORG")], [Span(0, 2, "PER")]]
    new = [[Span(0, 3, "PER")], [Span(0, 5, "LOC")], [Span(2, 4, "ORG")], []]  # 3 of 4: F1 0.8571
    crf = [[Span(0, 3, "PER")], [Span(0, 5, "LOC")], [], []]  # 2 of 4: 0.6667
    assert entity_gate(gold, new, None, None, None, 0.0, crf)["promoted"] is True
    refused = entity_gate(gold, new, None, None, None, 0.0, crf, nested=0.6)
    assert refused["promoted"] is False and refused["new_validation_entity_f1_nested"] == 0.6
    assert refused["reason"].startswith("validation entity F1 0.6000 (0.8571 at the epoch these rows chose")
    assert "does not beat the CRF baseline 0.6667" in refused["reason"]


def test_the_report_and_the_approval_form_show_the_nested_figure_where_it_differs() -> None:
    from bert_pipeline.evaluation import promotion
    from bert_pipeline.stages.report import training_section
    from bert_pipeline.stages.report_entities import EntityReport

    decision = {"promoted": False, "reason": "refused", "validation_rows": 118, "new_validation_macro_f1": 0.71,
                "new_validation_macro_f1_nested": 0.58, "baseline_validation_macro_f1": 0.02,
                "linear_baseline_validation_macro_f1": 0.6043, "previous_champion": None}
    section = training_section({"champion_decision": decision, "metrics": {"model_version": "v1"}})
    assert "| 118 rows | 0.7100 (nested 0.5800) |  | 0.0200 | 0.6043 |" in section
    same = training_section({"champion_decision": decision | {"new_validation_macro_f1_nested": 0.71},
                             "metrics": {"model_version": "v1"}})
    assert "| 118 rows | 0.7100 |  |" in same
    form = promotion.review_markdown({"model_version": "v1", **decision})
    assert "| this model | 0.7100 (nested 0.5800) |" in form
    # the interval paragraph: the plain difference its interval resamples, and the nested one the gate compared
    refused = gate(TRUE, NEW, "neg", ["neg", "pos"], None, None, 0.0, linear_predicted=LINEAR, nested=0.55)
    paragraph = training_section({"champion_decision": refused, "metrics": {"model_version": "v1"}})
    assert ("Validation macro-F1, new model minus TF-IDF baseline: +0.1213 (90 % paired bootstrap interval" in
            paragraph and "The gate compares the nested figure (each half scored at the epoch the other half "
            "chose): -0.1203." in paragraph)
    plain = gate(TRUE, NEW, "neg", ["neg", "pos"], None, None, 0.0, linear_predicted=LINEAR)
    assert "The gate compares" not in training_section({"champion_decision": plain, "metrics": {}})
    gold = [[Span(0, 3, "PER")], [Span(0, 5, "LOC")], [Span(2, 4, "ORG")], [Span(0, 2, "PER")]]
    ner = entity_gate(gold, [[Span(0, 3, "PER")], [Span(0, 5, "LOC")], [Span(2, 4, "ORG")], []], None, None, None,
                      0.0, [[Span(0, 3, "PER")], [Span(0, 5, "LOC")], [], []], nested=0.6)
    entities = EntityReport().training_section({"champion_decision": ner, "metrics": {"model_version": "v1"}})
    assert ("Validation entity F1, new model minus CRF baseline: +0.1905" in entities and
            "The gate compares the nested figure (each half scored at the epoch the other half chose): -0.0667." in
            entities)


def test_the_paired_bootstrap_says_when_the_rows_cannot_tell_two_models_apart() -> None:
    from bert_pipeline.evaluation.selection import difference_interval, row_counts

    rng = np.random.default_rng(11)

    def counts(true: np.ndarray, answers: np.ndarray) -> np.ndarray:
        return row_counts(one_hot(true, 4), one_hot(answers, 4))

    def answers(true: np.ndarray, right: float) -> np.ndarray:
        return np.where(rng.random(len(true)) < right, true, rng.integers(0, 4, len(true)))

    many = rng.integers(0, 4, 4000)
    low, high = difference_interval(counts(many, answers(many, 0.9)), counts(many, answers(many, 0.6)), "macro")
    assert 0.15 < low < high < 0.35  # 4,000 rows tell 90 % from 60 % right
    few = many[:40]
    low, high = difference_interval(counts(few, answers(few, 0.7)), counts(few, answers(few, 0.6)), "macro")
    assert low < 0 < high  # 40 rows cannot tell 70 % from 60 %
    same = counts(few, few)
    assert difference_interval(same, same, "macro") == (0.0, 0.0)
    assert difference_interval(same[:0], same[:0], "macro") is None
    again = difference_interval(counts(few, np.roll(few, 1)), same, "macro", seed=3)
    assert again == difference_interval(counts(few, np.roll(few, 1)), same, "macro", seed=3)  # seeded
    assert again[1] < 0  # every answer wrong against every answer right: the second is ahead in every resample


def test_the_gates_and_the_report_say_when_the_validation_rows_cannot_tell_the_model_from_its_baseline() -> None:
    from bert_pipeline.stages.report import training_section

    close = gate(TRUE, NEW, "neg", ["neg", "pos"], None, None, 0.0, linear_predicted=LINEAR)
    low, high = close["linear_baseline_difference_interval"]
    # they differ on one row of ten (row 6, which the model gets right): a resample leaves it out a third of the time
    assert close["promoted"] is True and low == 0.0 < high
    assert f"; these 10 validation rows cannot tell it from the TF-IDF baseline (the difference's 90 % paired " \
           f"bootstrap interval is {low:+.4f} to {high:+.4f}); no champion yet" in close["reason"]
    section = training_section({"champion_decision": close, "metrics": {"model_version": "v1"}})
    assert (f"Validation macro-F1, new model minus TF-IDF baseline: +0.1213 (90 % paired bootstrap interval "
            f"{low:+.4f} to {high:+.4f}, 1000 resamples of these rows): these rows cannot tell the two apart.") \
        in section
    wide_true, wide_new, wide_linear = TRUE * 40, PERFECT_ROWS * 40, LINEAR * 40
    apart = gate(wide_true, wide_new, "neg", ["neg", "pos"], None, None, 0.0, linear_predicted=wide_linear)
    assert apart["linear_baseline_difference_interval"][0] > 0 and "cannot tell" not in apart["reason"]
    assert "the new model is ahead in at least 95 % of the resamples" in training_section(
        {"champion_decision": apart, "metrics": {"model_version": "v1"}})
    gold = [[Span(0, 3, "PER")], [Span(0, 5, "LOC")], [Span(2, 4, "ORG")], [Span(0, 2, "PER")]]
    crf = [[Span(0, 3, "PER")], [Span(0, 5, "LOC")], [], []]
    ner = entity_gate(gold, gold, None, None, None, 0.0, crf)
    assert ner["promoted"] is True and ner["crf_difference_interval"][1] > 0
    assert "these 4 validation entities cannot tell it from the CRF baseline" in ner["reason"]


PERFECT_ROWS = list(TRUE)


def test_under_the_interval_margin_a_model_must_lead_its_baseline_by_more_than_the_rows_noise() -> None:
    close = gate(TRUE, NEW, "neg", ["neg", "pos"], None, None, 0.0, linear_predicted=LINEAR,
                 margin=Margin("interval", "auto: tonight's vocabulary coverage is poor"))
    low, high = close["linear_baseline_difference_interval"]
    assert close["promoted"] is False and close["baseline_margin"].startswith("interval")
    assert close["reason"] == (
        f"validation macro-F1 0.7917 is not ahead of the TF-IDF baseline 0.6703 by more than these 10 validation rows "
        f"can tell: the difference's 90 % paired bootstrap interval is {low:+.4f} to {high:+.4f} "
        "(train.baseline_margin: interval, auto: tonight's vocabulary coverage is poor); while the lake has no "
        "champion, score.fallback: baseline scores with the baseline. More labelled rows, or "
        "train.baseline_margin: figure, would let a model ahead on the figures through")
    # the same rows forty times over tell the two apart: promoted under the interval margin too
    apart = gate(TRUE * 40, NEW * 40, "neg", ["neg", "pos"], None, None, 0.0, linear_predicted=LINEAR * 40,
                 margin=Margin("interval"))
    assert apart["promoted"] is True and apart["linear_baseline_difference_interval"][0] > 0
    # figure: the point figures decide, as before
    assert gate(TRUE, NEW, "neg", ["neg", "pos"], None, None, 0.0, linear_predicted=LINEAR)["promoted"] is True
    gold = [[Span(0, 3, "PER")], [Span(0, 5, "LOC")], [Span(2, 4, "ORG")], [Span(0, 2, "PER")]]
    crf = [[Span(0, 3, "PER")], [Span(0, 5, "LOC")], [], []]
    ner = entity_gate(gold, gold, None, None, None, 0.0, crf, margin=Margin("interval"))
    assert ner["promoted"] is False and "is not ahead of the CRF baseline 0.6667 by more than these 4 validation " \
        "entities can tell" in ner["reason"] and "(train.baseline_margin: interval);" in ner["reason"]
