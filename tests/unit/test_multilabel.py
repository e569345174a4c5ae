"""Multi-label parts on inputs made here: label sets from every input form, the problem type, per-label thresholds,
multi-label metrics, the gate's constant baseline, and multi-label predictions in the one predictions schema."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from bert_pipeline.config import IngestConfig, PipelineConfig, load_config
from bert_pipeline.errors import ConfigError, InputDataError
from bert_pipeline.stages.ingest import expand_sources, read_source
from bert_pipeline.curation.labels import (
    canonical_label, canonical_labels, check_label_spellings, label_set, mapped_labels, member_labels,
)
from bert_pipeline.evaluation.metrics import multilabel_report
from bert_pipeline.modeling.multilabel import multi_hot, problem_type, tune_thresholds
from bert_pipeline.lake.predictions import PREDICTIONS_SCHEMA, ScoredBy, prediction_table
from bert_pipeline.evaluation.registry import constant_baseline, gate, macro_f1_by_name


def test_label_sets_have_one_canonical_form_whatever_the_input() -> None:
    column = pl.Series("labels", [["refund", "billing"], ["billing", "refund", "billing"], [" billing "], [], None,
                                  ["1", "2.0"], ["账单", "退款"]])
    assert canonical_labels(column).to_list() == [
        '["billing","refund"]', '["billing","refund"]', "billing", "[]", None, '["1","2"]', '["账单","退款"]']
    # a JSON array in a text column (csv, or jsonl rows that mix strings and lists) is the same set
    assert canonical_label('["refund", "billing"]') == '["billing","refund"]'
    assert canonical_label('["billing"]') == "billing"  # a set of one label is that label
    assert canonical_label("[draft]") == "[draft]"  # not JSON: a label that happens to use brackets
    # ingest.label_delimiter splits text, strips each label, drops repeats and empty pieces
    text = pl.Series("labels", ["refund| billing |refund", "billing", "", None, "a||b"])
    assert canonical_labels(text, "|").to_list() == ['["billing","refund"]', "billing", None, None, '["a","b"]']
    assert label_set('["billing","refund"]') == ["billing", "refund"]
    assert label_set("[]") == [] and label_set(None) == [] and label_set("positive") == ["positive"]
    assert member_labels(['["b","a"]', "c", None, "[]"]) == ["a", "b", "c"]


def test_a_label_spelled_two_ways_inside_sets_is_refused() -> None:
    with pytest.raises(InputDataError, match=r"'Billing'.*'billing'"):
        check_label_spellings(['["Billing","refund"]', "billing"])


@pytest.mark.parametrize("spellings", [("N/A", "NA"), ("Very good", "very-good", "very_good"), ("n.a.", "NA"),
                                       ("ポジ・ネガ", "ポジネガ"), ("(none)", "None"), ("don't know", "dont know"),
                                       ("Ｎ／Ａ", "N/A"), ("covid-19", "COVID19")])
def test_spellings_apart_only_by_separators_are_one_label_and_refused(spellings: tuple[str, ...]) -> None:
    with pytest.raises(InputDataError, match="different spellings of what would be one label"):
        check_label_spellings(spellings)


def test_labels_made_of_symbols_or_apart_by_a_symbol_stay_apart() -> None:
    # an emoji-prediction label set, sentiment as signs, emoticons, programming languages, Chinese sentiment
    check_label_spellings(["😂", "❤", "😍", "🔥", "+", "-", ":)", ":(", "C", "C#", "C++", "F#", "正面", "负面",
                           "good!", "good"])
    # signs at either end and marks between digits are part of the label: sentiment as -1/0/1, grades, versions,
    # fractions, ranges
    check_label_spellings(["-1", "0", "1", "A-", "A", "A+", "B-", "1.1", "11", "3/4", "34", "v1.2", "v12", "1-2", "12",
                           "10:30", "1030"])


def test_ingest_reads_sets_from_jsonl_parquet_and_delimited_csv(tmp_path: Path) -> None:
    jsonl = tmp_path / "tickets.jsonl"
    jsonl.write_text("\n".join(json.dumps(row, ensure_ascii=False) for row in [
        {"text": "refund please, charged twice", "labels": ["refund", "billing"]},
        {"text": "密码忘了", "labels": "account"},  # a string among lists: one label
        {"text": "just saying thanks", "labels": []},  # labelled: no label applies
        {"text": "unlabelled", "labels": None},
    ]) + "\n")
    cfg = IngestConfig(sources=[str(jsonl)], label_column="labels")
    frame, _ = read_source(expand_sources(cfg.sources)[0], PipelineConfig(ingest=cfg))
    assert frame["label"].to_list() == ['["billing","refund"]', "account", "[]", None]

    parquet = tmp_path / "tickets.parquet"
    pl.DataFrame({"text": ["a b c", "d e f"], "tags": [["x", "y"], None]}).write_parquet(parquet)
    cfg = IngestConfig(sources=[str(parquet)], label_column="tags")
    assert read_source(expand_sources(cfg.sources)[0], PipelineConfig(ingest=cfg))[0]["label"].to_list() == ['["x","y"]', None]

    csv = tmp_path / "tickets.csv"
    csv.write_text('text,tags\n"login fails, refund?",account|billing\nok,\n')
    cfg = IngestConfig(sources=[str(csv)], label_column="tags", label_delimiter="|")
    assert read_source(expand_sources(cfg.sources)[0], PipelineConfig(ingest=cfg))[0]["label"].to_list() == ['["account","billing"]', None]


def test_config_validates_the_new_keys_by_name() -> None:
    cfg = load_config(overrides=["train.problem_type=multi_label", "score.long_text=chunk", "train.long_text=chunk",
                                 "ingest.label_delimiter=|"])
    assert (cfg.train.problem_type, cfg.score.long_text, cfg.ingest.label_delimiter) == ("multi_label", "chunk", "|")
    with pytest.raises(ConfigError, match=r"train.problem_type: must be one of"):
        load_config(overrides=["train.problem_type=multilabel"])
    with pytest.raises(ConfigError, match=r"score.long_text: must be one of"):
        load_config(overrides=["score.long_text=split"])
    with pytest.raises(ConfigError, match=r"ingest.label_delimiter"):
        load_config(overrides=["ingest.label_delimiter=' '"])


def test_problem_type_follows_the_data_unless_set() -> None:
    assert problem_type(["a", "b"], "auto") == "single_label"
    assert problem_type(["a", '["a","b"]'], "auto") == "multi_label"
    assert problem_type(["a", "[]"], "auto") == "multi_label"
    assert problem_type(["a", "b"], "multi_label") == "multi_label"
    with pytest.raises(InputDataError, match=r"train.problem_type is single_label but 1 labelled row"):
        problem_type(["a", '["a","b"]'], "single_label")
    assert multi_hot(['["a","c"]', "b", "[]", "z"], ["a", "b", "c"]).tolist() == [
        [1, 0, 1], [0, 1, 0], [0, 0, 0], [0, 0, 0]]


def test_thresholds_are_tuned_per_label_on_validation() -> None:
    probabilities = np.array([[0.31, 0.9, 0.2], [0.29, 0.8, 0.6], [0.05, 0.7, 0.1], [0.33, 0.1, 0.55]], np.float32)
    targets = np.array([[1, 1, 0], [1, 1, 0], [0, 1, 0], [1, 0, 0]])
    thresholds = tune_thresholds(probabilities, targets)
    # label 0: positives at 0.29-0.33, negative at 0.05 -> any threshold in (0.05, 0.29] is perfect; closest to 0.5
    # is 0.29. label 1: positives >= 0.7, negative 0.1 -> perfect from 0.11 to 0.7: 0.5. label 2: no positives: 0.5
    assert thresholds.tolist() == pytest.approx([0.29, 0.5, 0.5])
    # a rare label whose probabilities stay low still gets a threshold that finds it
    rare = tune_thresholds(np.array([[0.03], [0.02], [0.004], [0.001]]), np.array([[1], [1], [0], [0]]))
    assert rare.tolist() == pytest.approx([0.02])


def test_multilabel_metrics_by_hand() -> None:
    true = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]], bool)
    pred = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1]], bool)
    report = multilabel_report(true, pred, ["a", "b", "c"])
    # a: tp 2 fp 0 fn 0 -> F1 1; b: tp 1 fn 1 -> 2/3; c: tp 0 fp 1 fn 1 -> 0
    assert report["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert report["micro_f1"] == pytest.approx(2 * 3 / (4 + 5))
    assert report["accuracy"] == pytest.approx(0.25)  # only row 1 is all right (row 3: c predicted, none true)
    assert report["per_class"]["b"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}


def test_gate_holds_a_multilabel_model_to_the_best_constant_answer() -> None:
    true = [("billing", "refund"), ("account",), (), ("billing",), ("account", "billing")]
    everything = constant_baseline(true, multi_label=True)
    assert everything == ("account", "billing", "refund")
    # answering every label for every row is the constant to beat; a model doing just that is refused
    copycat = gate(true, [everything] * len(true), everything, list(everything), None, None, 0.0)
    assert not copycat["promoted"] and "best constant answer" in copycat["reason"]
    good = gate(true, [("billing", "refund"), ("account",), (), ("billing",), ("billing",)], everything,
                list(everything), None, None, 0.0)
    assert good["promoted"], good["reason"]
    # a single-label champion's answers are read as sets of one label when the truth holds sets
    # account: 2 of 2 right (F1 1); billing: 2 of 3 predicted, 2 of 3 true (2/3); refund: never predicted (0)
    assert macro_f1_by_name(true, ["billing", "account", "billing", "billing", "account"]) == pytest.approx(
        (1 + 2 / 3 + 0) / 3)


def test_multilabel_predictions_fit_the_one_schema() -> None:
    probabilities = np.array([[0.9, 0.2, 0.7], [0.1, 0.2, 0.3], [0.45, 0.6, 0.44]], np.float32)
    table = prediction_table(pa.array(["d1", "d2", "d3"]), probabilities, ["a", "b", "c"], np.zeros(3, bool),
                             ScoredBy("v", "h", "r"), thresholds=np.array([0.5, 0.5, 0.4]), windows=np.array([1, 3, 2]))
    assert table.schema == PREDICTIONS_SCHEMA
    rows = table.to_pylist()
    assert [r["predicted_labels"] for r in rows] == [["a", "c"], [], ["b", "c"]]  # most probable first
    assert [r["predicted_label"] for r in rows] == ["a", None, "b"]
    assert [r["confidence"] for r in rows] == pytest.approx([0.9, 0.3, 0.6])
    assert [r["windows"] for r in rows] == [1, 3, 2]
    assert dict(rows[2]["probabilities"]) == pytest.approx({"a": 0.45, "b": 0.6, "c": 0.44})


def test_a_list_column_written_to_csv_by_pandas_or_numpy_is_read_as_sets(tmp_path: Path) -> None:
    import pandas as pd

    csv = tmp_path / "tickets.csv"  # pandas prints each list as Python does: "['billing', 'refund']"
    pd.DataFrame({"text": ["refund not received", "app crashes, 登录失败", "charged twice, app slow", "fine", "?",
                           "ids"],
                  "topics": [["refund", "billing"], ["bug"], ["billing", "bug", "billing"], [], None,
                             list(np.array([3, 4]))]}).to_csv(csv, index=False)
    cfg = IngestConfig(sources=[str(csv)], label_column="topics")
    labels = read_source(expand_sources(cfg.sources)[0], PipelineConfig(ingest=cfg))[0]["label"].to_list()
    assert labels == ['["billing","refund"]', "bug", '["billing","bug"]', "[]", None, '["3","4"]']
    assert problem_type(labels, "auto") == "multi_label"
    assert canonical_label("['a', \"b's\", 3, 4.0]") == '["3","4","a","b\'s"]'
    # numpy's prints (numpy 2 scalars, nan gaps, arrays without commas, as groupby().unique() writes them)
    assert canonical_label("[np.int64(1), np.int64(2)]") == '["1","2"]'
    assert canonical_label("[np.str_('账单'), np.str_('退款')]") == '["账单","退款"]'
    assert canonical_label("[nan, 'billing']") == "billing" and canonical_label("[None]") == "[]"
    assert canonical_label("[3 4]") == '["3","4"]' and canonical_label("[ 1.  -2.5]") == '["-2.5","1"]'
    assert canonical_label("['billing' 'refund']") == '["billing","refund"]'  # not the one label 'billingrefund'
    # sklearn's MultiLabelBinarizer.inverse_transform gives tuples; byte strings; Windows line ends inside a cell
    assert canonical_label("('billing', 'refund')") == '["billing","refund"]' == canonical_label("{'refund', 'billing'}")
    assert canonical_label("('billing',)") == "billing" and canonical_label("[b'billing' b'refund']") == '["billing","refund"]'
    assert canonical_label("['a'\r'b']") == '["a","b"]'
    # neither JSON nor a printed list of values: labels as written (and no parser error escapes)
    for label in ("[draft, final]", "[draft]", "[18 - 25]", "[1+2]", "[[1, 2]]", "[f(1)]", "(none)", "('a')",
                  "(see note)", "{x}", "[Loading...]", "[TODO: ...]", "['unclosed]", "[" + "-" * 3000 + "1]"):
        assert canonical_label(label) == label
    # numpy shortens long arrays with '...': the members are lost, so the file is refused, naming the line
    csv.write_text("text,topics\nrefund not received,billing\nmany,[1 2 3 ... 998 999]\n")
    with pytest.raises(InputDataError, match=r"tickets.csv: ingest.label_column 'topics': line 3: label "
                                             r"'\[1 2 3 ... 998 999\]' is an array that numpy shortened with '...'"):
        read_source(expand_sources(cfg.sources)[0], PipelineConfig(ingest=cfg))


def test_jsonl_mixing_numbers_booleans_and_arrays_in_one_field_is_read(tmp_path: Path) -> None:
    rows = [{"text": "refund please", "labels": 1}, {"text": "login broken", "labels": [1, 2.0]},
            {"text": "真的吗", "labels": True}, {"text": "ok", "labels": [True, "b"]}, {"text": "5", "labels": 1.0},
            {"text": "no label", "labels": None}, {"text": 7, "labels": []}, {"text": "x", "labels": "+1"}]
    jsonl = tmp_path / "mixed.jsonl"  # polars refuses it: no one type for "labels" (nor for "text")
    jsonl.write_text("\n".join(json.dumps(row, ensure_ascii=False) for row in rows) + "\n")
    cfg = IngestConfig(sources=[str(jsonl)], label_column="labels")
    frame = read_source(expand_sources(cfg.sources)[0], PipelineConfig(ingest=cfg))[0]
    assert frame.select("text", "label").rows() == [
        ("refund please", "1"), ("login broken", '["1","2"]'), ("真的吗", "true"), ("ok", '["b","true"]'), ("5", "1"),
        ("no label", None), ("7", "[]"), ("x", "1")]


def test_text_that_only_looks_like_a_set_stays_a_label() -> None:
    assert problem_type(["[draft]", "[final]"], "auto") == "single_label"  # brackets, not a JSON array
    assert problem_type(["[draft]", "[final]"], "single_label") == "single_label"
    # with a delimiter: numbers are labels, a JSON array is still a set, a cell of delimiters only is missing
    assert canonical_labels(pl.Series([1.0, float("nan"), 2.0]), ",").to_list() == ["1", None, "2"]
    assert canonical_labels(pl.Series(['["a", "b"]', "a, b", " | ", "c|"]), ",").to_list() == [
        '["a","b"]', '["a","b"]', "|", "c|"]
    assert canonical_labels(pl.Series([" | ", "c|", "|a|"]), "|").to_list() == [None, "c", "a"]


def test_a_delimiter_written_as_a_bare_yaml_block_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("ingest:\n  label_column: tags\n  label_delimiter: |\n  text_column: body\n")
    with pytest.raises(ConfigError, match=r"line 3: `label_delimiter: \|` is an empty YAML block.*label_delimiter: '\|'"):
        load_config(config)
    config.write_text("ingest:\n  label_column: tags\n  label_delimiter: '|'\n")
    assert load_config(config).ingest.label_delimiter == "|"
    config.write_text("run_date: 2026-01-01\ningest: {label_column: tags, label_delimiter: >}\n")  # flow style
    with pytest.raises(ConfigError, match=r"(?s)not valid YAML.*\(line 2: to mean the character >, quote it: '>'\)"):
        load_config(config)


def test_a_single_label_model_from_a_multilabel_base_is_single_label(tmp_path: Path) -> None:
    import torch
    from transformers import AutoConfig

    from bert_pipeline.config import TrainConfig
    from bert_pipeline.modeling.multilabel import is_multi_label
    from bert_pipeline.stages.train import new_classifier
    from tests.helpers import build_tiny_model

    base = build_tiny_model(tmp_path / "base", ["refund please", "login broken"], vocab_size=60)
    config = AutoConfig.from_pretrained(base)
    config.problem_type = "multi_label_classification"
    config.save_pretrained(base)
    single = new_classifier(str(base), TrainConfig(), ["a", "b"], torch.device("cpu"))
    multi = new_classifier(str(base), TrainConfig(), ["a", "b", "c"], torch.device("cpu"), multi_label=True)
    assert not is_multi_label(single.config) and is_multi_label(multi.config)


def test_class_weights_auto_is_on_for_multilabel_only() -> None:
    from bert_pipeline.config import TrainConfig
    from bert_pipeline.stages.train import class_weight_tensor, weighted_loss
    from bert_pipeline.training.trainset import SplitData

    multi = SplitData([np.zeros(3)] * 4, np.array([[1, 0], [0, 0], [0, 0], [1, 1]], np.float32))
    single = SplitData([np.zeros(3)] * 4, np.array([0, 1, 1, 1]))
    assert weighted_loss(TrainConfig(), multi) and not weighted_loss(TrainConfig(), single)
    assert weighted_loss(TrainConfig(class_weights=True), single)
    assert not weighted_loss(TrainConfig(class_weights=False), multi)
    # each label's positives weigh negatives / positives: label 0 has 2 of 4, label 1 has 1 of 4
    import torch
    assert class_weight_tensor(multi.labels, 2, torch.device("cpu")).tolist() == [1.0, 3.0]


def test_labels_without_training_rows_are_counted_and_left_out_of_the_sets() -> None:
    from bert_pipeline.training.trainset import unseen_labels, without_labels_outside

    known = ["billing", "refund", "账单"]
    by_split = {
        "train": pl.DataFrame({"label": ['["billing","refund"]', "账单"]}),
        "validation": pl.DataFrame({"label": ['["billing","offer"]', "offer", '["offer","账单"]', "[]", "offer"]}),
        "test": pl.DataFrame({"label": ['["refund","urgent"]', "billing", '["offer","urgent"]']}),
    }
    with pytest.raises(InputDataError, match=r"'offer': \{'train': 0, 'validation': 4, 'test': 1\}.*drop_unseen"):
        unseen_labels(by_split, known, drop=False)
    assert unseen_labels(by_split, known, drop=True) == {"offer": {"train": 0, "validation": 4, "test": 1},
                                                         "urgent": {"train": 0, "validation": 0, "test": 2}}
    # multi-label: only the unseen labels go; a set left with one label is that label, with none `[]`
    assert without_labels_outside(by_split["validation"], known, True)["label"].to_list() == [
        "billing", "[]", "账单", "[]", "[]"]
    assert without_labels_outside(by_split["test"], known, True)["label"].to_list() == ["refund", "billing", "[]"]
    # single-label: the row goes
    single = pl.DataFrame({"label": ["billing", "offer", None, "账单"]})
    assert without_labels_outside(single, known, False)["label"].to_list() == ["billing", "账单"]


def test_ingest_label_map_rewrites_each_member_of_a_label_set() -> None:
    labels = canonical_labels(pl.Series(["[0, 'billing']", "1", None, "[]", "[0, 'refund']", "retour ↩"]))
    mapped = mapped_labels(labels, {"0": "refund", "1": "billing", "retour ↩": "refund"})
    # a set whose members merge is one label; the empty set stays empty; a label outside the map stays
    assert mapped.to_list() == ['["billing","refund"]', "billing", None, "[]", "refund", "refund"]


def test_look_alike_labels_are_named_with_where_each_was_seen() -> None:
    from bert_pipeline.curation.labels import look_alike_warnings

    where = {"sport": "a.csv row 1", "sports": "b.csv row 9", "Sport-News": "run_date=2026-03-01", "art": "a.csv row 2",
             "Arts": "a.csv row 5", "12": "a.csv row 3", "体育": "c.csv row 1", "体育新闻": "c.csv row 2",
             "ok": "a.csv row 4", "okay": "x", "Music": "m", "Musical": "m", "LABEL_1": "l", "LABEL_10": "l",
             "cancel": "i", "cancel_reservation": "i"}
    numbers, alike = look_alike_warnings(where, "ingest.label_column", "ingest.label_map")
    assert numbers.startswith("ingest.label_column: the labels '12' (a.csv row 3) are numbers while 'Arts'")
    # a plural, compared case-folded; 'ok' is too short to say, and longer labels with other endings are distinct
    assert alike.startswith("ingest.label_column: 'art' (a.csv row 2) and 'Arts' (a.csv row 5); 'sport' (a.csv row "
                            "1) and 'sports' (b.csv row 9) look like one label spelt two ways")
    assert alike.count(" and '") == 2 and '{"art": "Arts"}' in alike
    for distinct in ("'Sport-News'", "'体育新闻'", "'okay'", "'Musical'", "'LABEL_10'", "'cancel_reservation'"):
        assert distinct not in alike
    assert look_alike_warnings({"neg": "x", "pos": "y", "neutral": "z"}, "s", "m") == []
    # GermEval's types: an upper-case type with a lower-case qualifier is another type; 'NEG'/'NEGATIVE' is not
    germeval = {"LOC": "g row 1", "LOCderiv": "g row 2", "ORG": "g row 3", "ORGpart": "g row 4", "NEG": "h row 1",
                "NEGATIVE": "h row 2", "Pos": "h row 3", "Positive": "h row 4"}
    [told] = look_alike_warnings(germeval, "ner.tags_key", "ner.label_map")
    assert "'NEG' (h row 1) and 'NEGATIVE' (h row 2); 'Pos' (h row 3) and 'Positive' (h row 4)" in told
    assert "LOC" not in told and "ORG" not in told
    # an upper-case label's plural is still one label spelt two ways
    [plural] = look_alike_warnings({"FAQ": "a row 1", "FAQs": "a row 2"}, "s", "m")
    assert "'FAQ' (a row 1) and 'FAQs' (a row 2)" in plural
    # a pair that other nights already held is not told again; one with a label new tonight is
    held = {"neg": "run_date=2026-03-01", "negative": "run_date=2026-03-02", "pos": "a.csv row 1"}
    assert look_alike_warnings(held, "s", "m", new={"pos"}) == []
    assert look_alike_warnings(held, "s", "m", new={"negative"})[0].startswith("s: 'neg' (run_date=2026-03-01) and")
