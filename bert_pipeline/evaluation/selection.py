"""How far a validation figure can be trusted: corrected for the epoch chosen on the same rows (`nested_figure`),
and how much of a difference between two models the rows can tell (`difference_interval`).

Training keeps the epoch with the best validation figure, so the model's validation figure is the best of several
looks at the same rows: on few rows it overstates what the model does on rows it never saw (thirty epochs answering
at chance on 100 rows of 25 labels: the best looks 0.05 and more above their mean, tests/unit/test_selection.py),
while a baseline that chose nothing on them (TF-IDF with a fixed C, the CRF, the best constant answer) is measured
fairly.

Two-fold nested selection (Cawley & Talbot, "On over-fitting in model selection and subsequent selection bias in
performance evaluation", JMLR 11, 2010; Varma & Simon, BMC Bioinformatics 7:91, 2006): the validation rows are
split in two folds (row i in fold i % 2); each fold's rows are scored at the epoch the *other* fold chose, and the
figure is computed over all rows from those answers. No row's answer comes from an epoch it helped choose. With one
epoch (nothing chosen) it equals the plain figure. The gate holds this figure, not the plain one, to the baselines.

A paired bootstrap (Koehn, EMNLP 2004; Berg-Kirkpatrick et al., EMNLP 2012) resamples the validation rows with
replacement, scores both models on each resample and reports the central interval of the difference: where it holds
0, these rows cannot tell the two apart, whatever the sign of the difference. Russian word senses (118 validation
rows, 25 classes): the model led TF-IDF by +0.056 macro-F1 on validation, interval -0.037 to +0.119, and trailed it
by 0.086 on test. The gate says the interval beside the figures, and under `train.baseline_margin: interval` (auto:
where the base model reads the text poorly) asks the model to lead by more than it.

Counts: per epoch, per fold and per label, (true positives, false positives, false negatives) of the answers; a
label's F1 is 2tp / (2tp + fp + fn). Macro averages the labels with a count (scikit-learn's default set: labels in
the truths or the answers, `metrics.classification_report`), micro pools the counts (entity F1).
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

FOLDS = 2
Average = Literal["macro", "micro"]


def folds_of(rows: int) -> np.ndarray:
    """The fold of each of `rows` validation rows: [rows] ints in 0..FOLDS-1 (row i in fold i % FOLDS)."""
    return np.arange(rows) % FOLDS


def row_counts(true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """(tp, fp, fn) per row and label of 0/1 answer matrices [rows, labels]: int64 [rows, labels, 3]. A single-label
    task passes one-hot rows (`one_hot`)."""
    true, predicted = np.asarray(true, bool), np.asarray(predicted, bool)
    return np.stack([true & predicted, ~true & predicted, true & ~predicted], axis=-1).astype(np.int64)


def by_fold(counts: np.ndarray) -> np.ndarray:
    """Per-row counts [rows, labels, 3] summed per fold: [FOLDS, labels, 3]."""
    folds = folds_of(len(counts))
    return np.stack([counts[folds == fold].sum(0) for fold in range(FOLDS)]) if len(counts) else \
        np.zeros((FOLDS, *counts.shape[1:]), np.int64)


def label_counts(true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """(tp, fp, fn) per fold and label of 0/1 answer matrices [rows, labels]: int64 [FOLDS, labels, 3]."""
    return by_fold(row_counts(true, predicted))


def one_hot(ids: np.ndarray, labels: int) -> np.ndarray:
    """[rows] label ids -> bool [rows, labels]."""
    out = np.zeros((len(ids), labels), bool)
    out[np.arange(len(ids)), np.asarray(ids, np.int64)] = True
    return out


def f1_of(counts: np.ndarray, average: Average) -> float:
    """F1 of (tp, fp, fn) counts [labels, 3]: macro over the labels with any count, or micro over their sum; 0.0
    when nothing was counted."""
    return float(f1_batch(np.asarray(counts).reshape(1, -1, 3), average)[0])


def f1_batch(counts: np.ndarray, average: Average) -> np.ndarray:
    """`f1_of` of each of a batch of counts [batch, labels, 3]: float64 [batch]."""
    counts = np.asarray(counts, np.float64)
    if average == "micro":
        counts = counts.sum(1, keepdims=True)
    denominator = 2 * counts[..., 0] + counts[..., 1] + counts[..., 2]
    present = denominator > 0
    f1 = np.divide(2 * counts[..., 0], denominator, out=np.zeros_like(denominator), where=present)
    return f1.sum(1) / np.maximum(present.sum(1), 1)


RESAMPLES = 1_000
LEVEL = 0.9  # the central share of the resampled differences the interval holds


def difference_interval(ours: np.ndarray, theirs: np.ndarray, average: Average, resamples: int = RESAMPLES,
                        level: float = LEVEL, seed: int = 0) -> tuple[float, float] | None:
    """The `level` central interval of F1(ours) - F1(theirs) over `resamples` paired bootstrap resamples of the rows
    (percentile method), from both models' per-row counts [rows, labels, 3] on the same rows (`row_counts`; labels
    in the same order); None without rows. Deterministic for a seed. Memory: blocks of 100 resamples x rows."""
    rows = len(ours)
    if not rows:
        return None
    shape = np.shape(ours)[1:]
    ours, theirs = (np.asarray(x, np.float64).reshape(rows, -1) for x in (ours, theirs))
    rng = np.random.default_rng(seed)
    differences = []
    for start in range(0, resamples, 100):
        weights = rng.multinomial(rows, np.full(rows, 1.0 / rows), size=min(100, resamples - start)).astype(np.float64)
        differences.append(f1_batch((weights @ ours).reshape(-1, *shape), average)
                           - f1_batch((weights @ theirs).reshape(-1, *shape), average))
    low, high = np.quantile(np.concatenate(differences), [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def nested_figure(per_epoch: Sequence[np.ndarray], average: Average) -> dict[str, object] | None:
    """The two-fold nested validation figure of the epochs' counts (each [FOLDS, labels, 3], in epoch order):
    {"figure": float in [0, 1], "chosen_epochs": [the epoch (1-based) each fold chose], "epochs": how many}, or None
    without epochs. Each fold chooses as training does: the first epoch with its best figure."""
    if not len(per_epoch):
        return None
    counts = np.asarray(per_epoch, np.int64)  # [epochs, FOLDS, labels, 3]
    chosen = [int(np.argmax([f1_of(epoch[fold], average) for epoch in counts])) for fold in range(FOLDS)]
    # fold f's rows are answered at the epoch the other fold chose
    pooled = sum(counts[chosen[(fold + 1) % FOLDS], fold] for fold in range(FOLDS))
    return {"figure": f1_of(pooled, average), "chosen_epochs": [c + 1 for c in chosen], "epochs": len(counts)}
