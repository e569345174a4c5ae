"""The linear baseline: TF-IDF + logistic regression, fitted every night on exactly the model's training rows.

A fine-tuned model that loses to a bag of n-grams on the same rows is not worth promoting (Chinese reviews: the
fine-tuned MiniLM reached test macro-F1 0.60, this baseline 0.82, and nothing said so). The train stage fits it on
the training split of the `TrainingSet` (after newest_versions and max_train_samples: the same rows, by doc_id, read
back as curated text), scores validation and test with the metrics the model gets (`metrics`), and stores it in the
model folder under `baseline/`; the champion gate asks the model to beat its validation macro-F1
(`registry.gate`), and `score.fallback: baseline` scores a night with it while no model has passed the gate.

Features, chosen from the training rows (`choose_features`):
- texts mostly in scripts written without spaces between words (Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar:
  at least `NO_SPACE_SHARE` of their letters): character 1-3-grams (`analyzer="char"`) only; a word tokenizer would
  make a whole Chinese sentence one token;
- otherwise one of `SPACED_FEATURES`, chosen by `SELECTION_FOLDS`-fold cross-validation on the training rows (at
  most `SELECTION_ROWS` of them, a seeded sample): word 1-2-grams + character 1-3-grams within word boundaries
  (`char_wb`) side by side ("word+char"), the character 1-3-grams alone ("char_wb"), or character 1-5-grams within
  word boundaries alone ("char_wb 1-5"). None wins everywhere (benchmarks/bench_baseline_features.py, test
  macro-F1: fine-food reviews 0.777 with words against 0.743 and 0.751; on Russian word senses, where inflection
  scatters a word's forms over many word features, the folds prefer the 1-3-grams by 0.03 to 0.06; on vowelled
  Arabic verses, whose words are long, the 1-5-grams read 0.804 against 0.791 and 0.784 on 2,000 rows). Ties go to
  the first. Fewer than `MIN_SELECTION_ROWS` rows, or labels the folds cannot split, keep word+char and say why.
Sublinear tf, l2-normalised rows, at most `MAX_FEATURES` columns per vectorizer (the most frequent n-grams), so
memory stays bounded whatever the corpus.

Classifier: single-label, one multinomial LogisticRegression (lbfgs); multi-label, one binary LogisticRegression per
label (one-vs-rest) with a decision threshold per label tuned on validation (`multilabel.tune_thresholds`, the
model's rule). Class weights (`CLASS_WEIGHTS`): balanced, each class weighing as much as any other in the fit (the
default), or none, each row weighing the same, whichever the same folds score higher on the chosen features, ties
to balanced (for text in scripts without spaces too). Neither wins everywhere (benchmarks/bench_baseline_features.py,
4,000 training rows): on 25 imbalanced Russian word senses balanced weights read 0.457 out of fold against 0.364
without (test 0.601 against 0.503); on two-class Quranic verses (3 Meccan to 1 Medinan) 0.798 against 0.799 (test
0.811 against 0.827). The folds' margin can be that small: on fewer rows the choice is close to a coin.
Deterministic: same rows and seed, same coefficients.

Stored without pickle (the project loads nothing that can run code): `baseline/baseline.json` holds the settings,
labels, thresholds and each vectorizer's vocabulary (terms in column order); `baseline/baseline.safetensors` holds
each vectorizer's idf and the coefficients and intercepts. `load` rebuilds the scikit-learn objects from them.
scikit-learn is imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from bert_pipeline.text.coverage import NO_SPACE_SCRIPTS, char_script
from bert_pipeline.evaluation.metrics import classification_report, multilabel_report
from bert_pipeline.modeling.multilabel import names_of, predicted_sets, tune_thresholds

FOLDER = "baseline"  # inside the model folder
SETTINGS_FILE = "baseline.json"
TENSORS_FILE = "baseline.safetensors"
KIND = "tfidf-logistic-regression"
SUFFIX = "+tfidf-baseline"  # model_version of predictions the baseline wrote (score.fallback: baseline)
MEMORISING_SUFFIX = "+memorising-baseline"  # of entities an entity model's memorising baseline wrote (task: ner)
CRF_SUFFIX = "+crf-baseline"  # of entities an entity model's CRF baseline wrote (task: ner, train.linear_baseline)
BASELINE_NAMES = {SUFFIX: "TF-IDF baseline", MEMORISING_SUFFIX: "memorising baseline",
                  CRF_SUFFIX: "CRF baseline"}  # suffix -> what it is
FORMAT = 1

MAX_FEATURES = 100_000  # per vectorizer: word+char together at most 200k columns
NO_SPACE_SHARE = 0.3
SAMPLE_TEXTS = 5_000  # texts read to decide the script (the first ones: deterministic)
SPACED_FEATURES = ("word+char", "char_wb", "char_wb 1-5")  # the candidates for spaced scripts, the default first
CLASS_WEIGHTS = ("balanced", None)  # the candidates for the chosen features, the default first
SELECTION_FOLDS = 3
# Rows the choice is cross-validated on: a seeded sample bounds its cost (two vectorizer fits and nine logistic
# regressions on at most this many rows: 2.3 to 11 times the chosen baseline's own fit on 1,900-4,000 rows,
# benchmarks/bench_baseline_features.py).
SELECTION_ROWS = 6_000
MIN_SELECTION_ROWS = 60  # fewer: folds of 20 rows cannot tell two feature sets apart
# Inverse regularisation strength. With class_weight="balanced", C=4 gave the best macro-F1 of C in {1, 4, 10} on
# imbalanced demo tweets (470 train rows, 65/25/10 %: 0.596 and 0.576 on two draws, vs 0.538 and 0.449 without
# class weights at C=1) and is within 0.004 of the best on 8,000 balanced-ish rows (0.719 vs 0.722). Macro-F1 counts
# a rare class as much as a common one, which balanced weights do too.
C = 4.0
MAX_ITER = 2_000
CONSTANT_LOGIT = 30.0  # a multi-label label present in every (or no) training row: a constant answer


def no_space_share(texts: Sequence[str]) -> float:
    """The share of letters (str.isalpha) that belong to a script written without spaces, over the first
    SAMPLE_TEXTS texts (scripts from `coverage.char_script`: Unicode's Scripts.txt)."""
    letters = no_space = 0
    for text in texts[:SAMPLE_TEXTS]:
        for char in text:
            if char.isalpha():
                letters += 1
                no_space += char_script(char) in NO_SPACE_SCRIPTS
    return no_space / letters if letters else 0.0


@dataclass(frozen=True)
class FeatureChoice:
    """Which n-grams the baseline reads (`features`: "char", "word+char", "char_wb" or "char_wb 1-5"), how its
    logistic regression weighs the classes (`class_weight`: "balanced" or None) and why."""

    features: str
    script_share: float  # share of letters in scripts written without spaces (`no_space_share`)
    why: str  # one phrase, for metrics.json and the report
    cross_validated: dict[str, float]  # candidate -> out-of-fold macro-F1; empty when not cross-validated
    rows: int = 0  # training rows the candidates were cross-validated on
    class_weight: str | None = CLASS_WEIGHTS[0]

    def describe(self) -> dict[str, Any]:
        return {"features": self.features, "class_weight": self.class_weight or "none", "why": self.why,
                "rows": self.rows,
                "cross_validated_macro_f1": {k: round(v, 4) for k, v in self.cross_validated.items()}}


def candidate_name(features: str, class_weight: str | None) -> str:
    """'char_wb' for the features with balanced class weights (the default), 'char_wb unweighted' without."""
    return features if class_weight == CLASS_WEIGHTS[0] else f"{features} unweighted"


def choose_features(texts: Sequence[str], labels: np.ndarray | None = None, seed: int = 0) -> FeatureChoice:
    """The baseline's features and class weights for these training texts and labels (label ids [rows], or 0/1
    targets [rows, labels]); see the module docstring. Without labels, or with too few to cross-validate, the
    defaults: word+char for spaced scripts (char by rule for the others), balanced class weights."""
    share = no_space_share(texts)
    by_script = share >= NO_SPACE_SHARE
    features = ("char",) if by_script else SPACED_FEATURES
    script = f"script ({share:.0%} of the letters are of scripts written without spaces)" if by_script else ""
    default = f"{script}; default class weights: " if by_script else "default: "
    if labels is None:
        return FeatureChoice(features[0], share, f"{default}no labels to choose by", {})
    sample = np.sort(np.random.default_rng(seed).permutation(len(texts))[:SELECTION_ROWS])
    if len(sample) < MIN_SELECTION_ROWS:
        return FeatureChoice(features[0], share, f"{default}{len(sample)} training rows are too few to "
                             f"cross-validate (at least {MIN_SELECTION_ROWS})", {}, len(sample))
    chosen_texts, chosen_labels = [texts[i] for i in sample], np.asarray(labels)[sample]
    try:
        matrices = {name: features_matrix(chosen_texts, name) for name in features}
        figures = {name: pooled_f1(x, chosen_labels, seed) for name, x in matrices.items()}
        best = max(features, key=figures.__getitem__)  # ties: the first, the default
        unweighted = candidate_name(best, None)
        figures[unweighted] = pooled_f1(matrices[best], chosen_labels, seed, None)
    except ValueError as error:  # a fold's training rows hold one label only: nothing to compare
        return FeatureChoice(features[0], share, f"{default}the labels cannot be split into "
                             f"{SELECTION_FOLDS} folds ({error})", {}, len(sample))
    weight = None if figures[unweighted] > figures[best] else CLASS_WEIGHTS[0]  # ties: balanced, the default
    folds = f"{SELECTION_FOLDS}-fold cross-validation on {len(sample)} training rows"
    return FeatureChoice(best, share, f"{script}, class weights by {folds}" if by_script else folds, figures,
                         len(sample), weight)


def feature_choice_words(choice: dict[str, Any] | None) -> str:
    """", without class weights, chosen by <why>: word+char 0.4151, char_wb 0.4727, char_wb unweighted 0.4803"
    (out-of-fold macro-F1; balanced class weights unless a candidate says unweighted), or ": <why>"; "" for a
    baseline stored before the choice was recorded."""
    if not choice:
        return ""
    weights = ", without class weights" if choice.get("class_weight") == "none" else ""
    figures = ", ".join(f"{name} {figure:.4f}" for name, figure in choice.get("cross_validated_macro_f1", {}).items())
    return f"{weights}, chosen by {choice['why']}: {figures} macro-F1" if figures else f"{weights}: {choice['why']}"


def cross_validated_f1(texts: list[str], labels: np.ndarray, features: str, seed: int,
                       class_weight: str | None = CLASS_WEIGHTS[0]) -> float:
    """Macro-F1 of the baseline's classifier with these features and class weights over out-of-fold answers pooled
    across SELECTION_FOLDS folds (`features_matrix`, then `pooled_f1`). Raises ValueError when a fold's training rows
    hold one label only."""
    return pooled_f1(features_matrix(texts, features), labels, seed, class_weight)


def features_matrix(texts: list[str], features: str) -> Any:
    """[rows, n-grams] sparse TF-IDF of the texts for a feature choice. The vocabulary and idf are fitted once on all
    the rows the folds then split: they read no label, so no answer leaks, and refitting them per fold would double
    the cost."""
    from sklearn.pipeline import FeatureUnion

    return FeatureUnion([(name, _vectorizer(s)) for name, s in vectorizer_settings(features)]).fit_transform(texts)


def pooled_f1(x: Any, labels: np.ndarray, seed: int, class_weight: str | None = CLASS_WEIGHTS[0]) -> float:
    """Macro-F1 of out-of-fold answers pooled across SELECTION_FOLDS folds of x's rows (stratified for
    single-label; multi-label: one model per label at threshold 0.5). Raises ValueError when a fold's training rows
    hold one label only."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict
    from sklearn.multiclass import OneVsRestClassifier

    with warnings.catch_warnings():  # few members of a class, a label constant in a fold: expected on small sets
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        if labels.ndim == 2:
            predicted = cross_val_predict(OneVsRestClassifier(_logistic(seed, class_weight)), x, labels,
                                          cv=KFold(SELECTION_FOLDS, shuffle=True, random_state=seed))
            return multilabel_report(labels, predicted, [str(j) for j in range(labels.shape[1])])["macro_f1"]
        predicted = cross_val_predict(_logistic(seed, class_weight), x, labels,
                                      cv=StratifiedKFold(SELECTION_FOLDS, shuffle=True, random_state=seed))
    return classification_report(labels, predicted, [str(j) for j in range(int(labels.max()) + 1)])["macro_f1"]


def vectorizer_settings(features: str) -> list[tuple[str, dict[str, Any]]]:
    """[(name, TfidfVectorizer keyword arguments)] for a feature choice: JSON-able, stored with the baseline."""
    common = {"sublinear_tf": True, "lowercase": True, "max_features": MAX_FEATURES, "min_df": 1, "norm": "l2",
              "smooth_idf": True, "use_idf": True}
    char_wb = ("char", {"analyzer": "char_wb", "ngram_range": [1, 3], **common})
    if features == "char_wb 1-5":
        return [("char", {"analyzer": "char_wb", "ngram_range": [1, 5], **common})]
    if features == "char":
        return [("char", {"analyzer": "char", "ngram_range": [1, 3], **common})]
    if features == "char_wb":
        return [char_wb]
    return [("word", {"analyzer": "word", "ngram_range": [1, 2], "token_pattern": r"(?u)\b\w\w+\b", **common}),
            char_wb]


def _logistic(seed: int, class_weight: str | None = CLASS_WEIGHTS[0]) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, class_weight=class_weight, solver="lbfgs", max_iter=MAX_ITER, random_state=seed)


def _vectorizer(settings: dict[str, Any], vocabulary: list[str] | None = None) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(**{**settings, "ngram_range": tuple(settings["ngram_range"])}, vocabulary=vocabulary,
                           dtype=np.float64)


def _classifier(coef: np.ndarray, intercept: np.ndarray, classes: np.ndarray) -> Any:
    """A LogisticRegression with the given parameters, ready to predict (what `load` rebuilds)."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=C, max_iter=MAX_ITER)
    model.coef_, model.intercept_, model.classes_ = coef, intercept, classes
    model.n_features_in_ = coef.shape[1]
    return model


@dataclass
class LinearBaseline:
    """A fitted (or loaded) baseline: `features` feeds `classifiers` (one multinomial model, or one binary model per
    label), whose outputs index `label_names`."""

    label_names: list[str]
    multi_label: bool
    features: str
    script_share: float
    settings: list[tuple[str, dict[str, Any]]]
    union: Any  # sklearn FeatureUnion of fitted TfidfVectorizers
    coef: np.ndarray  # [outputs, features]; single-label with 2 labels: [1, features] (scikit-learn's binary form)
    intercept: np.ndarray  # [outputs]
    thresholds: np.ndarray | None = None  # multi-label: per label, tuned on validation
    seed: int = 0
    choice: FeatureChoice | None = None  # how the features were chosen (None when loaded)
    class_weight: str | None = CLASS_WEIGHTS[0]  # how the fit weighed the classes (`FeatureChoice.class_weight`)

    def __post_init__(self) -> None:
        if self.multi_label:
            self.classifiers = [_classifier(self.coef[j:j + 1], self.intercept[j:j + 1], np.arange(2))
                                for j in range(len(self.label_names))]
        else:
            self.classifiers = [_classifier(self.coef, self.intercept, np.arange(len(self.label_names)))]

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """[rows, labels] float64: softmax rows (single-label), or one probability per label (multi-label)."""
        if not len(texts):
            return np.zeros((0, len(self.label_names)))
        x = self.union.transform(list(texts))
        if self.multi_label:
            return np.stack([model.predict_proba(x)[:, 1] for model in self.classifiers], axis=1)
        return self.classifiers[0].predict_proba(x)

    def answers(self, probabilities: np.ndarray) -> list[Any]:
        """Predicted labels by name: one per row, or (multi-label) the tuple of those at or above their threshold."""
        if self.multi_label:
            return names_of(predicted_sets(probabilities.astype(np.float32), self.threshold_array()),
                            self.label_names)
        return [self.label_names[i] for i in probabilities.argmax(axis=1).tolist()]

    def vectorizer(self, name: str) -> Any:
        return dict(self.union.transformer_list)[name]

    def threshold_array(self) -> np.ndarray:
        return (np.full(len(self.label_names), 0.5, np.float32) if self.thresholds is None
                else np.asarray(self.thresholds, np.float32))

    def report(self, probabilities: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
        """The model's metrics (`metrics.classification_report` / `multilabel_report`) for label ids or 0/1 targets."""
        if not len(labels):
            return {"rows": 0}
        if self.multi_label:
            return multilabel_report(labels, predicted_sets(probabilities.astype(np.float32), self.threshold_array()),
                                     self.label_names)
        return classification_report(labels, probabilities.argmax(axis=1), self.label_names)

    def describe(self) -> dict[str, Any]:
        return {"kind": KIND, "features": self.features, "no_space_script_share": round(self.script_share, 4),
                "vectorizers": {name: {"analyzer": s["analyzer"], "ngram_range": s["ngram_range"],
                                       "vocabulary": len(self.vectorizer(name).vocabulary_)}
                                for name, s in self.settings},
                "classifier": f"LogisticRegression(C={C}, class_weight={self.class_weight or 'none'}, lbfgs)"
                              + (", one per label, thresholds tuned on validation" if self.multi_label else ""),
                "folder": FOLDER, **({"feature_choice": self.choice.describe()} if self.choice else {})}

    def save(self, folder: str) -> None:
        """Write baseline.json and baseline.safetensors into a local folder (created)."""
        from safetensors.numpy import save_file

        os.makedirs(folder, exist_ok=True)
        tensors = {"coef": np.ascontiguousarray(self.coef, np.float64),
                   "intercept": np.ascontiguousarray(self.intercept, np.float64)}
        vectorizers = []
        for name, settings in self.settings:
            fitted = self.vectorizer(name)
            vocabulary = sorted(fitted.vocabulary_, key=fitted.vocabulary_.__getitem__)
            vectorizers.append({"name": name, "settings": settings, "vocabulary": vocabulary})
            tensors[f"idf.{name}"] = np.ascontiguousarray(fitted.idf_, np.float64)
        save_file(tensors, os.path.join(folder, TENSORS_FILE))
        settings_json = {
            "format": FORMAT, "kind": KIND, "label_names": self.label_names,
            "problem_type": "multi_label" if self.multi_label else "single_label", "features": self.features,
            "no_space_script_share": self.script_share, "seed": self.seed, "C": C,
            "class_weight": self.class_weight or "none",
            "thresholds": (None if self.thresholds is None else
                           {n: round(float(t), 2) for n, t in zip(self.label_names, self.thresholds)}),
            "vectorizers": vectorizers,
        }
        with open(os.path.join(folder, SETTINGS_FILE), "w", encoding="utf-8") as handle:
            json.dump(settings_json, handle, ensure_ascii=False)


def fit(texts: Sequence[str], labels: np.ndarray, label_names: list[str], seed: int = 0,
        choice: FeatureChoice | None = None) -> LinearBaseline:
    """Fit on training texts and their labels (label ids [rows], or 0/1 targets [rows, labels] for multi-label),
    with the features `choice` names (default: `choose_features` on these rows)."""
    from sklearn.pipeline import FeatureUnion

    choice = choice or choose_features(texts, labels, seed)
    settings = vectorizer_settings(choice.features)
    union = FeatureUnion([(name, _vectorizer(s)) for name, s in settings])
    x = union.fit_transform(list(texts))
    multi = labels.ndim == 2
    if not multi:
        model = _logistic(seed, choice.class_weight).fit(x, labels)
        # label ids 0..k-1 all occur in training rows (the training set's labels are those of its training rows)
        coef, intercept = model.coef_, model.intercept_
    else:
        coefs, intercepts = [], []
        for j in range(labels.shape[1]):
            column = labels[:, j].astype(np.int64)
            if column.min() == column.max():  # every training row has the label, or none: a constant answer
                coefs.append(np.zeros(x.shape[1]))
                intercepts.append(CONSTANT_LOGIT if column.max() else -CONSTANT_LOGIT)
                continue
            model = _logistic(seed, choice.class_weight).fit(x, column)
            coefs.append(model.coef_[0])
            intercepts.append(float(model.intercept_[0]))
        coef, intercept = np.stack(coefs), np.asarray(intercepts)
    return LinearBaseline(list(label_names), multi, choice.features, choice.script_share, settings, union,
                          np.asarray(coef, np.float64), np.asarray(intercept, np.float64), None, seed, choice,
                          choice.class_weight)


def load(folder: str) -> LinearBaseline:
    """Rebuild a stored baseline from a local folder (see `save`); no pickle involved."""
    from safetensors.numpy import load_file
    from sklearn.pipeline import FeatureUnion

    with open(os.path.join(folder, SETTINGS_FILE), encoding="utf-8") as handle:
        stored = json.load(handle)
    if stored.get("format") != FORMAT or stored.get("kind") != KIND:
        raise ValueError(f"{folder}: not a {KIND} baseline of format {FORMAT} (format {stored.get('format')!r})")
    tensors = load_file(os.path.join(folder, TENSORS_FILE))
    parts, settings = [], []
    for entry in stored["vectorizers"]:
        vectorizer = _vectorizer(entry["settings"], entry["vocabulary"])
        vectorizer.idf_ = tensors[f"idf.{entry['name']}"]
        parts.append((entry["name"], vectorizer))
        settings.append((entry["name"], entry["settings"]))
    names = stored["label_names"]
    thresholds = stored.get("thresholds")
    return LinearBaseline(names, stored["problem_type"] == "multi_label", stored["features"],
                          float(stored["no_space_script_share"]), settings, FeatureUnion(parts), tensors["coef"],
                          tensors["intercept"],
                          None if thresholds is None else np.asarray([thresholds[n] for n in names], np.float32),
                          int(stored.get("seed", 0)), None,
                          None if stored.get("class_weight", "balanced") == "none" else stored.get("class_weight"))


@dataclass
class Evaluated:
    """A fitted baseline, its metrics (what metrics.json holds under `baseline`) and its validation answers by
    name (what the champion gate compares)."""

    model: LinearBaseline
    metrics: dict[str, Any]
    validation_answers: list[Any]


def fit_and_evaluate(texts: dict[str, Sequence[str]], labels: dict[str, np.ndarray], label_names: list[str],
                     seed: int = 0) -> Evaluated:
    """Fit on texts["train"], tune multi-label thresholds on validation, report validation and test.

    `texts` and `labels` are keyed by split (train, validation, test), rows in the training set's order."""
    started = time.perf_counter()
    choice = choose_features(texts["train"], labels["train"], seed)
    chosen = time.perf_counter()
    model = fit(texts["train"], labels["train"], label_names, seed, choice)
    fitted = time.perf_counter()
    val = model.probabilities(texts["validation"])
    if model.multi_label and len(val):
        model.thresholds = tune_thresholds(val.astype(np.float32), labels["validation"])
    test = model.probabilities(texts["test"])
    done = time.perf_counter()
    metrics = {**model.describe(), "train_rows": len(texts["train"]),
               "validation": model.report(val, labels["validation"]), "test": model.report(test, labels["test"]),
               "seconds": {"choose_features": round(chosen - started, 3), "fit": round(fitted - chosen, 3),
                           "score": round(done - fitted, 3),
                           "total": round(done - started, 3)}}
    if model.multi_label:
        metrics["thresholds"] = {n: round(float(t), 2) for n, t in zip(label_names, model.threshold_array())}
    return Evaluated(model, metrics, model.answers(val) if len(val) else [])


def model_version_of(baseline_version: str) -> str:
    """The model version whose stored baseline scored rows of this model_version ("<version>+tfidf-baseline" or,
    for entities, "<version>+crf-baseline" or "+memorising-baseline" -> "<version>"); any other version is returned
    as it is."""
    for suffix in BASELINE_NAMES:
        if baseline_version.endswith(suffix):
            return baseline_version.removesuffix(suffix)
    return baseline_version
