"""The TF-IDF + logistic regression baseline: it learns, picks character n-grams for text without spaces, survives a
save/load round trip without pickle, holds the champion gate to its score, and scores a night when no model has
passed the gate (score.fallback: baseline)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from bert_pipeline.evaluation import baseline
from bert_pipeline.config import build_config
from bert_pipeline.stages.curate import run_curate
from bert_pipeline.stages.ingest import run_ingest
from bert_pipeline.lake.manifests import Lake
from bert_pipeline.evaluation.metrics import classification_report, multilabel_report
from bert_pipeline.modeling.multilabel import multi_hot, predicted_sets
from bert_pipeline.evaluation.registry import gate, macro_f1_by_name
from bert_pipeline.stages.report import write_report
from bert_pipeline.stages.score import plan_score, run_score, score_shard
from bert_pipeline.stages.tokenize import run_tokenize
from bert_pipeline.stages.train import run_train
from tests.helpers import read_partition

GOOD_ZH = ["质量很好", "非常满意", "物流很快", "推荐购买", "性价比高", "包装精美", "五星好评", "用着很舒服"]
BAD_ZH = ["质量太差", "非常失望", "物流太慢", "不推荐", "做工粗糙", "已经退货", "客服态度差", "用了两天就坏了"]
FILLER_ZH = ["这个手机", "昨天收到", "给老妈买的", "第二次购买", "屏幕", "电池", "尺寸合适", "颜色", "快递小哥", "总体来说"]
GOOD_EN = ["great", "lovely", "excellent", "wonderful", "superb", "amazing"]
BAD_EN = ["awful", "terrible", "horrible", "dreadful", "poor", "nasty"]
FILLER_EN = ["the", "food", "was", "service", "today", "really", "place", "our", "visit", "staff", "honestly", "lol"]


def chinese_review(rng: random.Random, good: bool, i: int) -> str:
    """A short, messy Chinese product review: filler, one or two phrases of its sentiment, punctuation, noise."""
    parts = rng.sample(FILLER_ZH, 2) + rng.sample(GOOD_ZH if good else BAD_ZH, rng.choice([1, 2]))
    rng.shuffle(parts)
    text = rng.choice(["，", "。", "！", " "]).join(parts) + rng.choice(["！！！", "。", "~", " 😀" if good else " 😡", ""])
    return f"{text} 订单{i:04d}" if i % 3 == 0 else text


def english_review(rng: random.Random, good: bool, i: int) -> str:
    words = rng.sample(FILLER_EN, 5) + [rng.choice(GOOD_EN if good else BAD_EN)]
    rng.shuffle(words)
    text = " ".join(words)
    return (text.upper() if i % 7 == 0 else text.capitalize()) + rng.choice(["!!", ".", " :)", "...", ""]) + f" #{i}"


def split(n: int) -> list[str]:
    return ["train" if i % 5 < 3 else ("validation" if i % 5 == 3 else "test") for i in range(n)]


@pytest.mark.parametrize("language", ["chinese", "english"])
def test_the_baseline_learns_clearly_separable_reviews(language: str) -> None:
    rng = random.Random(0)
    make = chinese_review if language == "chinese" else english_review
    labels = np.asarray([i % 2 for i in range(400)])
    texts = [make(rng, bool(y), i) for i, y in enumerate(labels)]
    parts = np.asarray(split(400))
    by = {s: ([t for t, p in zip(texts, parts) if p == s], labels[parts == s]) for s in ("train", "validation", "test")}
    evaluated = baseline.fit_and_evaluate({s: t for s, (t, _) in by.items()}, {s: y for s, (_, y) in by.items()},
                                          ["bad", "good"], seed=0)
    assert evaluated.metrics["test"]["macro_f1"] >= 0.9, evaluated.metrics["test"]
    assert evaluated.metrics["validation"]["rows"] == 80 and evaluated.metrics["train_rows"] == 240
    assert evaluated.metrics["features"] == ("char" if language == "chinese" else "word+char")
    # the metrics are the model's own report on the same predictions
    probabilities = evaluated.model.probabilities(by["test"][0])
    assert evaluated.metrics["test"] == classification_report(by["test"][1], probabilities.argmax(axis=1),
                                                              ["bad", "good"])
    assert len(evaluated.validation_answers) == 80 and set(evaluated.validation_answers) <= {"bad", "good"}
    # deterministic: the same rows and seed give the same coefficients
    again = baseline.fit(by["train"][0], by["train"][1], ["bad", "good"], seed=0)
    assert np.array_equal(again.coef, evaluated.model.coef)


def test_character_ngrams_for_scripts_without_spaces_words_and_characters_otherwise() -> None:
    rng = random.Random(1)
    chinese = [chinese_review(rng, i % 2 == 0, i) for i in range(50)]
    english = [english_review(rng, i % 2 == 0, i) for i in range(50)]
    japanese = ["配送が早くてとても満足しています", "サイズが合わなかったので返品しました", "コスパ最高！また買います"]
    thai = ["สินค้าดีมาก ส่งเร็ว", "คุณภาพแย่มาก ไม่แนะนำ"]
    brands = ["iPhone 手机壳质量很好，颜色也喜欢", "华为 Mate 电池不耐用，失望"]  # Latin brand names in Chinese text
    english_with_a_chinese_word = ["The dumplings (饺子) were great and the staff friendly, would come again"]
    for texts, chosen in ((chinese, "char"), (japanese, "char"), (thai, "char"), (brands, "char"),
                          (english, "word+char"), (english_with_a_chinese_word, "word+char"), ([], "word+char")):
        assert baseline.choose_features(texts).features == chosen, texts[:1]
    labels = np.asarray([i % 2 for i in range(50)])
    char_only = baseline.fit(chinese, labels, ["neg", "pos"])
    assert [s["analyzer"] for _, s in char_only.settings] == ["char"]
    assert char_only.describe()["vectorizers"]["char"]["ngram_range"] == [1, 3]
    both = baseline.fit(english, labels, ["neg", "pos"])
    assert [(name, s["analyzer"], s["ngram_range"]) for name, s in both.settings] == [
        ("word", "word", [1, 2]), ("char", "char_wb", [1, 3])]
    assert all(s["sublinear_tf"] and s["max_features"] == baseline.MAX_FEATURES for _, s in both.settings)


def word_order_review(rng: random.Random, good: bool, i: int) -> str:
    """Every review says 'not' with both 'good' and 'bad': only the word pair 'not bad' / 'not good' tells them
    apart, which character n-grams within words cannot see."""
    first, second = ("bad", "good") if good else ("good", "bad")
    filler = rng.sample(FILLER_EN, 4)
    return f"{filler[0]} {filler[1]} not {first} {filler[2]} {second} {filler[3]}{'!' * (i % 3)} #{i // 2}"


def test_for_spaced_scripts_cross_validation_on_the_training_rows_chooses_the_features() -> None:
    rng = random.Random(3)
    labels = np.asarray([i % 2 for i in range(240)])
    texts = [word_order_review(rng, bool(y), i) for i, y in enumerate(labels)]
    choice = baseline.choose_features(texts, labels, seed=0)
    assert choice.features == "word+char" and choice.rows == 240
    assert choice.why == "3-fold cross-validation on 240 training rows"
    assert choice.cross_validated["word+char"] >= 0.95 > 0.7 > choice.cross_validated["char_wb"]
    # each figure is the macro-F1 of out-of-fold answers: the same folds and classifier, refitted here by hand
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold

    x = TfidfVectorizer(**{**baseline.vectorizer_settings("char_wb")[0][1], "ngram_range": (1, 3)}).fit_transform(texts)
    answers = np.zeros(len(texts), dtype=np.int64)
    for train, held_out in StratifiedKFold(3, shuffle=True, random_state=0).split(x, labels):
        answers[held_out] = baseline._logistic(0).fit(x[train], labels[train]).predict(x[held_out])
    assert choice.cross_validated["char_wb"] == pytest.approx(f1_score(labels, answers, average="macro"))
    # fitted with the choice, the baseline reads it; a tie (both perfect) keeps the default, word+char
    fitted = baseline.fit(texts, labels, ["bad", "good"], choice=choice)
    assert [s["analyzer"] for _, s in fitted.settings] == ["word", "char_wb"]
    assert fitted.describe()["feature_choice"]["cross_validated_macro_f1"]["word+char"] >= 0.95
    easy = [english_review(rng, bool(y), i) for i, y in enumerate(labels)]
    tie = baseline.choose_features(easy, labels, seed=0)
    assert tie.cross_validated == {"word+char": 1.0, "char_wb": 1.0, "char_wb 1-5": 1.0, "word+char unweighted": 1.0}
    assert tie.features == "word+char" and tie.class_weight == "balanced"  # ties keep the defaults


def test_the_class_weights_are_chosen_by_the_same_folds_and_the_fit_uses_them(tmp_path: Path) -> None:
    """Balanced class weights help macro-F1 where a rare class needs them and hurt where they push the boundary into
    the common class (Quranic verses: 0.760 against 0.783 on test): the folds that chose the features score the
    chosen features without class weights as well, and the better figure decides (ties: balanced)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold

    rng = random.Random(5)
    labels = np.asarray([1 if rng.random() < 0.25 else 0 for _ in range(240)])  # 3 to 1, as Meccan to Medinan
    texts = [english_review(rng, bool(y) if rng.random() < 0.8 else not y, i) for i, y in enumerate(labels)]
    choice = baseline.choose_features(texts, labels, seed=0)
    unweighted = f"{choice.features} unweighted"
    assert set(choice.cross_validated) == {"word+char", "char_wb", "char_wb 1-5", unweighted}
    x = baseline.features_matrix(texts, choice.features)
    answers = np.zeros(len(texts), dtype=np.int64)
    for train, held_out in StratifiedKFold(3, shuffle=True, random_state=0).split(x, labels):
        plain = LogisticRegression(C=baseline.C, class_weight=None, max_iter=baseline.MAX_ITER, random_state=0)
        answers[held_out] = plain.fit(x[train], labels[train]).predict(x[held_out])
    assert choice.cross_validated[unweighted] == pytest.approx(f1_score(labels, answers, average="macro"))
    better = None if choice.cross_validated[unweighted] > choice.cross_validated[choice.features] else "balanced"
    assert choice.class_weight == better
    # the fit uses the weights it is given, and the stored baseline says which
    for weight in ("balanced", None):
        given = baseline.FeatureChoice(choice.features, 0.0, "chosen by hand", {}, class_weight=weight)
        fitted = baseline.fit(texts, labels, ["neg", "pos"], choice=given)
        by_hand = LogisticRegression(C=baseline.C, class_weight=weight, max_iter=baseline.MAX_ITER, random_state=0)
        assert np.allclose(fitted.coef, by_hand.fit(fitted.union.transform(texts), labels).coef_)
        fitted.save(str(tmp_path / str(weight)))
        loaded = baseline.load(str(tmp_path / str(weight)))
        assert loaded.describe()["classifier"] == f"LogisticRegression(C=4.0, class_weight={weight or 'none'}, lbfgs)"
    words = baseline.feature_choice_words(baseline.FeatureChoice(
        "char_wb", 0.0, "3-fold cross-validation on 240 training rows",
        {"word+char": 0.79, "char_wb": 0.8, "char_wb unweighted": 0.81}, 240, None).describe())
    assert words == (", without class weights, chosen by 3-fold cross-validation on 240 training rows: word+char "
                     "0.7900, char_wb 0.8000, char_wb unweighted 0.8100 macro-F1")


def test_the_feature_choice_says_why_it_kept_the_default(tmp_path: Path) -> None:
    rng = random.Random(4)
    few = baseline.choose_features([english_review(rng, i % 2 == 0, i) for i in range(40)],
                                   np.asarray([i % 2 for i in range(40)]))
    assert few.features == "word+char" and few.cross_validated == {}
    assert few.why == "default: 40 training rows are too few to cross-validate (at least 60)"
    lone = np.asarray([0] * 99 + [1])  # one row of the second label: the fold that holds it out trains on one label
    unsplittable = baseline.choose_features([english_review(rng, True, i) for i in range(100)], lone)
    assert unsplittable.features == "word+char" and unsplittable.why.startswith(
        "default: the labels cannot be split into 3 folds (")
    chinese = baseline.choose_features([chinese_review(rng, True, i) for i in range(100)], lone)
    assert chinese.features == "char" and chinese.why.startswith(
        "script (100% of the letters are of scripts written without spaces); default class weights: the labels "
        "cannot be split into 3 folds (")
    # a stored baseline fitted on character n-grams alone (1-3 or 1-5) reads the same after a round trip
    labels = np.asarray([i % 2 for i in range(120)])
    texts = [word_order_review(rng, bool(y), i) for i, y in enumerate(labels)]
    for features, longest in (("char_wb", 3), ("char_wb 1-5", 5)):
        choice = baseline.FeatureChoice(features, 0.0, "chosen by hand", {})
        fitted = baseline.fit(texts, labels, ["bad", "good"], choice=choice)
        assert [(name, s["analyzer"], s["ngram_range"]) for name, s in fitted.settings] == [
            ("char", "char_wb", [1, longest])]
        assert max(len(term) for term in fitted.vectorizer("char").vocabulary_) == longest
        fitted.save(str(tmp_path / features))
        loaded = baseline.load(str(tmp_path / features))
        assert loaded.features == features and loaded.settings == fitted.settings
        assert np.array_equal(loaded.probabilities(texts[:30] + ["не видел", ""]),
                              fitted.probabilities(texts[:30] + ["не видел", ""]))


def assert_no_pickle(folder: Path) -> None:
    names = sorted(p.name for p in folder.rglob("*") if p.is_file())
    assert names == [baseline.SETTINGS_FILE, baseline.TENSORS_FILE]
    for path in folder.rglob("*"):
        head = path.read_bytes()[:2]
        assert not (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")), path  # pickle protocols
    json.loads((folder / baseline.SETTINGS_FILE).read_text())  # plain JSON


def test_save_and_load_give_identical_probabilities_and_no_pickle(tmp_path: Path) -> None:
    rng = random.Random(2)
    texts = [chinese_review(rng, i % 3 == 0, i) for i in range(90)] + ["", "   ", "😀😀", "订单0001"]
    labels = np.asarray([i % 3 for i in range(len(texts))])  # three labels, one of them on messy non-reviews
    fitted = baseline.fit(texts, labels, ["0", "1", "2"], seed=3)
    fitted.save(str(tmp_path / "single"))
    assert_no_pickle(tmp_path / "single")
    loaded = baseline.load(str(tmp_path / "single"))
    unseen = ["完全没见过的字：龘靐齉", "great phone", ""] + texts[:20]
    assert np.array_equal(loaded.probabilities(unseen), fitted.probabilities(unseen))
    assert loaded.label_names == ["0", "1", "2"] and loaded.features == fitted.features == "char"
    with pytest.raises(ValueError, match="not a tfidf-logistic-regression baseline of format 1"):
        (tmp_path / "single" / baseline.SETTINGS_FILE).write_text(json.dumps({"format": 99}))
        baseline.load(str(tmp_path / "single"))


def test_multi_label_sets_one_model_per_label_with_thresholds_tuned_on_validation(tmp_path: Path) -> None:
    rng = random.Random(4)
    words = {"billing": ["invoice", "charged twice", "bill"], "refund": ["refund", "money back"],
             "shipping": ["parcel", "delivery", "courier"]}
    rows = []
    for i in range(300):
        chosen = sorted(rng.sample(sorted(words), rng.choice([1, 1, 2])))
        text = " ".join(rng.choice(words[label]) for label in chosen) + " " + " ".join(rng.sample(FILLER_EN, 4))
        rows.append((text + f" ticket {i}", tuple(chosen) + ("support",)))  # "support": on every row
    names = ["billing", "refund", "shipping", "support"]
    parts = np.asarray(split(len(rows)))
    texts = {s: [t for (t, _), p in zip(rows, parts) if p == s] for s in ("train", "validation", "test")}
    targets = {s: multi_hot([y for (_, y), p in zip(rows, parts) if p == s], names) for s in texts}
    evaluated = baseline.fit_and_evaluate(texts, targets, names, seed=0)
    assert evaluated.model.multi_label and evaluated.metrics["test"]["macro_f1"] >= 0.9, evaluated.metrics["test"]
    assert set(evaluated.metrics["thresholds"]) == set(names)
    chosen = evaluated.metrics["feature_choice"]  # cross-validated with one model per label
    assert chosen["rows"] == 180 and set(chosen["cross_validated_macro_f1"]) == {
        "word+char", "char_wb", "char_wb 1-5", f"{chosen['features']} unweighted"}
    assert max(chosen["cross_validated_macro_f1"].values()) >= 0.9
    assert all(answer[-1] == "support" for answer in evaluated.validation_answers)  # the constant label
    probabilities = evaluated.model.probabilities(texts["test"])
    assert evaluated.metrics["test"] == multilabel_report(
        targets["test"], predicted_sets(probabilities.astype(np.float32), evaluated.model.threshold_array()), names)
    evaluated.model.save(str(tmp_path / "multi"))
    assert_no_pickle(tmp_path / "multi")
    loaded = baseline.load(str(tmp_path / "multi"))
    assert np.array_equal(loaded.probabilities(texts["test"]), probabilities)
    assert np.array_equal(loaded.threshold_array(), np.round(evaluated.model.threshold_array(), 2))


# --- the champion gate ---------------------------------------------------------------------------------------------

TRUE = ["neg"] * 6 + ["pos"] * 4
NEW = ["neg"] * 5 + ["pos"] * 2 + ["neg", "pos", "pos"]  # 7 of 10 right
PERFECT = list(TRUE)


def test_the_gate_refuses_a_model_below_the_tfidf_baseline_naming_both_figures() -> None:
    decision = gate(TRUE, NEW, "neg", ["neg", "pos"], None, None, 0.0, linear_predicted=PERFECT)
    assert decision["promoted"] is False
    assert decision["new_validation_macro_f1"] > decision["baseline_validation_macro_f1"]  # it did learn something
    assert decision["linear_baseline_validation_macro_f1"] == 1.0
    reason = decision["reason"]
    assert reason.startswith(f"validation macro-F1 {decision['new_validation_macro_f1']:.4f} does not beat the TF-IDF "
                             "baseline 1.0000 on 10 validation rows")
    assert "train.linear_baseline: false" in reason and "\n" not in reason
    # a tie does not beat it either
    assert gate(TRUE, NEW, "neg", ["neg", "pos"], None, None, 0.0, linear_predicted=NEW)["promoted"] is False
    # except a tie at a perfect 1.0, which nothing can beat: promoted, saying the rows cannot tell the two apart
    perfect = gate(TRUE, PERFECT, "neg", ["neg", "pos"], None, None, 0.0, linear_predicted=PERFECT)
    assert perfect["promoted"] is True and "learned too little" not in perfect["reason"]
    assert perfect["reason"] == (
        "validation macro-F1 1.0000 beats the majority-class baseline 0.3750 and ties the TF-IDF baseline at a perfect "
        "1.0000 (these validation rows cannot tell the model from it; more varied labelled rows, or a larger "
        "curate.validation_fraction, would); no champion yet")
    champion = {"model_version": "2026-01-01-old", "label_names": ["neg", "pos"]}
    kept = gate(TRUE, PERFECT, "neg", ["neg", "pos"], champion, PERFECT, 0.0, linear_predicted=PERFECT)
    assert kept["promoted"] is True and kept["reason"].endswith(
        "(a tie at a perfect 1.0 with the TF-IDF baseline: these validation rows cannot tell the model from it; more "
        "varied labelled rows, or a larger curate.validation_fraction, would)")


def test_the_gate_promotes_a_model_above_the_baseline_and_without_the_check_ignores_it() -> None:
    above = gate(TRUE, PERFECT, "neg", ["neg", "pos"], None, None, 0.0, linear_predicted=NEW)
    assert above["promoted"] is True and "and beats the TF-IDF baseline" in above["reason"]
    assert above["linear_baseline_validation_macro_f1"] == macro_f1_by_name(TRUE, NEW) < 1.0
    off = gate(TRUE, NEW, "neg", ["neg", "pos"], None, None, 0.0, linear_predicted=None)  # linear_baseline: false
    assert off["promoted"] is True and off["linear_baseline_validation_macro_f1"] is None
    assert "TF-IDF" not in off["reason"]
    champion = {"model_version": "2026-01-01-old", "label_names": ["neg", "pos"]}
    with_champion = gate(TRUE, PERFECT, "neg", ["neg", "pos"], champion, NEW, 0.0, linear_predicted=NEW)
    assert with_champion["promoted"] is True
    assert f"(baseline 0.3750 and the TF-IDF baseline {macro_f1_by_name(TRUE, NEW):.4f})" in with_champion["reason"]
    multi_true = [("a",), ("a", "b"), ("b",), ("a",)]
    multi = gate(multi_true, [("a",), ("a",), ("b",), ("a",)], ("a", "b"), ["a", "b"], None, None, 0.0,
                 linear_predicted=multi_true)  # multi-label: the same macro-F1 over sets
    assert multi["promoted"] is False and multi["linear_baseline_validation_macro_f1"] == 1.0
    assert "does not beat the TF-IDF baseline 1.0000" in multi["reason"]


# --- through the stages ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chinese_night(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> dict:
    """One night of Chinese reviews (labels as 0/1 integers) trained with the tiny English BERT, whose vocabulary
    reads the Chinese as [UNK] (tokenize.extend_vocabulary: off): what the issue saw. A weak English hint
    ('good'/'bad', right 3 times in 4) lets the model learn something, the Chinese words tell the baseline
    everything. `extended` is the same night trained with the vocabulary extended (the default, auto)."""
    root = tmp_path_factory.mktemp("baseline-night")
    rng = random.Random(5)
    rows = []
    for i in range(360):
        good = i % 2 == 0
        hint = ("good" if good else "bad") if rng.random() < 0.75 else ("bad" if good else "good")
        rows.append({"text": f"{hint}: {chinese_review(rng, good, i)}", "label": int(good)})  # read before truncation
    pl.DataFrame(rows).write_csv(root / "reviews.csv")
    config = {"data_root": str(root / "lake"), "run_date": "2026-12-01",
              "ingest": {"sources": [str(root / "reviews.csv")], "label_column": "label", "shard_rows": 150},
              "curate": {"validation_fraction": 0.25, "test_fraction": 0.2, "near_dedup": False},
              "tokenize": {"max_length": 32, "extend_vocabulary": "off"},
              "train": {"base_model": str(tiny_model), "epochs": "auto", "min_steps": 120, "batch_size": 16,
                        "learning_rate": 1e-3}}
    cfg = build_config(config)
    run_ingest(cfg), run_curate(cfg), run_tokenize(cfg)
    night = {"root": root, "config": config, "cfg": cfg, "lake": Lake.of(cfg), "trained": run_train(cfg)}
    extended = build_config(config, {"data_root": str(root / "lake-extended"), "tokenize.extend_vocabulary": "auto"})
    run_ingest(extended), run_curate(extended), run_tokenize(extended)
    return night | {"extended": run_train(extended)}


def test_with_the_vocabulary_extended_the_same_model_reads_the_chinese_and_passes_the_gate(
        chinese_night: dict) -> None:
    """Extended, the model reads the Chinese and matches the baseline. Under train.baseline_margin: auto the base
    model reads this text poorly, so it must also lead by more than the 89 validation rows' noise, which a lead of a
    row or two is not: refused, the baseline scores. Under figure, the figures decide and it passes."""
    plain, extended = chinese_night["trained"], chinese_night["extended"]
    assert not plain["champion_decision"]["promoted"]
    decision = extended["champion_decision"]
    assert decision["new_validation_macro_f1"] >= decision["linear_baseline_validation_macro_f1"] >= 0.9
    assert extended["metrics"]["test"]["macro_f1"] >= extended["metrics"]["baseline"]["test"]["macro_f1"] - 0.05
    assert decision["baseline_margin"] == "interval: auto: tonight's tokenizer is the lake's extended vocabulary"
    low, high = decision["linear_baseline_difference_interval"]
    assert low <= 0 <= high and decision["promoted"] is False
    assert "by more than these 89 validation rows can tell" in decision["reason"]
    config = chinese_night["config"]
    figure = run_train(build_config(config, {"data_root": str(chinese_night["root"] / "lake-extended"),
                                             "tokenize.extend_vocabulary": "auto", "train.baseline_margin": "figure"}))
    assert figure["champion_decision"]["baseline_margin"] == "figure"
    assert figure["champion_decision"]["promoted"], figure["champion_decision"]["reason"]


def test_the_train_stage_fits_the_baseline_on_the_same_rows_and_the_gate_holds_the_model_to_it(
        chinese_night: dict) -> None:
    trained, lake = chinese_night["trained"], chinese_night["lake"]
    metrics, decision = trained["metrics"], trained["champion_decision"]
    linear = metrics["baseline"]
    assert linear["features"] == "char" and linear["train_rows"] == metrics["train"]["rows"]
    assert linear["validation"]["rows"] == metrics["validation"]["rows"] == decision["validation_rows"]
    assert linear["test"]["rows"] == metrics["test"]["rows"]
    assert linear["model_version"] == trained["model_version"] + "+tfidf-baseline"
    assert linear["validation"]["macro_f1"] >= 0.9 and linear["test"]["macro_f1"] >= 0.9
    assert decision["linear_baseline_validation_macro_f1"] == pytest.approx(linear["validation"]["macro_f1"])
    # the model learned something (it beats the constant answer) but reads [UNK] where the reviews say everything
    assert decision["baseline_validation_macro_f1"] < decision["new_validation_macro_f1"] < 0.9
    assert decision["promoted"] is False and lake.champion_url and not Path(lake.champion_url).exists()
    assert (f"validation macro-F1 {decision['new_validation_macro_f1']:.4f} does not beat the TF-IDF baseline "
            f"{linear['validation']['macro_f1']:.4f} on {decision['validation_rows']} validation rows") in \
        decision["reason"]
    assert trained["baseline"] == {"features": "char", "validation_macro_f1": linear["validation"]["macro_f1"],
                                   "test_macro_f1": linear["test"]["macro_f1"], "seconds": linear["seconds"]["total"]}
    folder = Path(trained["model_uri"])
    assert json.loads((folder / "metrics.json").read_text())["baseline"] == linear
    assert json.loads((folder / "_manifest.json").read_text())["metrics"]["baseline"] == linear
    assert "TF-IDF + logistic regression on the same training rows (char n-grams" in (folder / "README.md").read_text()
    assert_no_pickle(folder / "baseline")
    assert not [p for p in folder.rglob("*") if p.suffix in (".pkl", ".pickle", ".joblib", ".bin")]
    # exactly the training rows: the stored baseline, refitted on the curated train rows, is the same model
    curated = read_partition(lake, "curated", "2026-12-01").filter(pl.col("label").is_not_null()
                                                                 & ~pl.col("label_conflict"))
    stored = baseline.load(str(folder / "baseline"))
    train = curated.filter(pl.col("split") == "train")
    assert train.height == linear["train_rows"]
    refit = baseline.fit(train["text"].to_list(), np.asarray([int(x) for x in train["label"]]), ["0", "1"])
    assert refit.vectorizer("char").vocabulary_ == stored.vectorizer("char").vocabulary_
    np.testing.assert_allclose(refit.coef, stored.coef, atol=1e-6)  # the row order may differ: the optimum does not


def test_without_the_linear_baseline_there_is_no_baseline_and_no_check(chinese_night: dict) -> None:
    config = {**chinese_night["config"], "train": {**chinese_night["config"]["train"], "linear_baseline": False}}
    trained = run_train(build_config(config))
    assert "baseline" not in trained["metrics"] and trained["baseline"] is None
    decision = trained["champion_decision"]
    assert decision["linear_baseline_validation_macro_f1"] is None and "TF-IDF" not in decision["reason"]
    assert decision["new_validation_macro_f1"] > decision["baseline_validation_macro_f1"]
    assert decision["promoted"] is True  # the same kind of model, held to the constant answer only
    assert not (Path(trained["model_uri"]) / "baseline").exists()
    Path(chinese_night["lake"].champion_url).unlink()  # leave the lake without a champion for the tests below


def test_no_champion_scores_nothing_and_says_why_or_scores_with_the_baseline(chinese_night: dict) -> None:
    lake, config = chinese_night["lake"], chinese_night["config"]
    cfg = build_config(config)
    assert not Path(lake.champion_url).exists()
    nothing = run_score(build_config(config | {"score": {"fallback": "none"}}), run_id="none")
    assert nothing["skipped"] is True and nothing["model_version"] is None
    assert "none passed the champion gate" in nothing["reason"] and "does not beat the TF-IDF baseline" in \
        nothing["reason"] and "score.fallback: baseline" in nothing["reason"]
    assert lake.read_manifest("predictions", cfg.run_date) is None
    report = Path(write_report(build_config(config | {"score": {"fallback": "none"}}))["report"]).read_text()
    assert "Not scored for run_date 2026-12-01: nothing scored:" in report and "none passed the champion gate" in report

    fallback = build_config(config)  # score.fallback: baseline is the default
    newest = chinese_night["trained"]  # the newest model that stores a baseline (the one trained without has none)
    version = newest["model_version"] + "+tfidf-baseline"
    plan = plan_score(fallback, run_id="first")
    assert plan.fallback and plan.model_version == version and plan.shards >= 2
    first = score_shard(fallback, plan, 0)  # then the process dies (kill -9): the shard is committed, nothing else
    assert lake.read_manifest("predictions", cfg.run_date) is None
    scored = run_score(fallback, run_id="second")
    curated = read_partition(lake, "curated", cfg.run_date)
    assert scored["rows"] == curated.height and scored["scored_this_run"] == curated.height - first["rows"]
    assert scored["model_version"] == version
    predictions = read_partition(lake, "predictions", cfg.run_date)
    assert predictions.height == curated.height == predictions["doc_id"].n_unique()
    assert sorted(predictions["doc_id"]) == sorted(curated["doc_id"])
    assert set(predictions["model_version"]) == {version} and set(predictions["truncated"]) == {False}
    stored = baseline.load(str(Path(newest["model_uri"]) / "baseline"))
    joined = predictions.join(curated.select("doc_id", "text"), on="doc_id")
    assert joined["predicted_label"].to_list() == stored.answers(stored.probabilities(joined["text"].to_list()))
    third = run_score(fallback, run_id="third")
    assert third["skipped"] is True and third["model_version"] == version  # committed: exactly once
    # a newer model whose baseline is byte-identical skips too: the summary names the version the rows carry
    manifest_url = Path(cfg.data_root) / "_manifests" / "predictions" / f"run_date={cfg.run_date}.json"
    committed = json.loads(manifest_url.read_text())
    manifest_url.write_text(json.dumps(committed | {"model_version": "2026-11-30-older+tfidf-baseline"}))
    assert run_score(fallback, run_id="fourth")["model_version"] == "2026-11-30-older+tfidf-baseline"
    manifest_url.write_text(json.dumps(committed))
    manifest = lake.read_manifest("predictions", cfg.run_date)
    assert manifest["model_version"] == version and manifest["counts"]["rows"] == curated.height
    report = Path(write_report(fallback)["report"]).read_text()
    assert f"rows scored with the TF-IDF baseline stored with model {newest['model_version']}" in report
    tokens = lake.read_manifest("tokens", cfg.run_date)["counts"]
    assert tokens["truncated"] > 0  # reviews past tokenize.max_length 32: the report counts them
    assert ("tokens (train.long_text: truncate). The night was scored by a baseline, which reads whole texts."
            in report)
    assert "score.long_text" not in report  # the baseline read every character: only training cut them
    assert "| validation | " in report and "TF-IDF baseline macro-F1" in report  # the model section, both figures
    share = newest["metrics"]["baseline"]["feature_choice"]["why"]  # the features, and why: Chinese text
    assert share.startswith("script (") and share.endswith(
        "% of the letters are of scripts written without spaces), class weights by 3-fold cross-validation on "
        f"{newest['metrics']['baseline']['feature_choice']['rows']} training rows")
    assert int(share.removeprefix("script (").split("%")[0]) > 50
    assert f"fitted on the same training rows (char n-grams, chosen by {share}: char 0." in report
