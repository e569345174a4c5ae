"""The validation figure of a model whose epoch was chosen on those same validation rows, corrected for the choice.

Training keeps the epoch with the best validation figure, so the model's validation figure is the best of several
looks at the same rows: on few rows (a hundred rows of 25 word senses) it overstates what the model does on rows it
never saw, while a baseline that chose nothing on them (TF-IDF with a fixed C, the CRF, the best constant answer) is
measured fairly. Russian word senses, two nights: the model beat the TF-IDF baseline on validation by +0.11 and
+0.04 macro-F1 and lost to it on test by 0.06 and 0.09.

Two-fold nested selection (Cawley & Talbot, "On over-fitting in model selection and subsequent selection bias in
performance evaluation", JMLR 11, 2010; Varma & Simon, BMC Bioinformatics 7:91, 2006): the validation rows are
split in two folds (row i in fold i % 2); each fold's rows are scored at the epoch the *other* fold chose, and the
figure is computed over all rows from those answers. No row's answer comes from an epoch it helped choose. With one
epoch (nothing chosen) it equals the plain figure. The gate holds this figure, not the plain one, to the baselines.

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


def label_counts(true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """(tp, fp, fn) per fold and label of 0/1 answer matrices [rows, labels]: int64 [FOLDS, labels, 3]. A single-label
    task passes one-hot rows (`one_hot`)."""
    true, predicted = np.asarray(true, bool), np.asarray(predicted, bool)
    folds = folds_of(len(true))
    counts = np.zeros((FOLDS, true.shape[1] if true.ndim == 2 else 0, 3), np.int64)
    for fold in range(FOLDS):
        t, p = true[folds == fold], predicted[folds == fold]
        counts[fold] = np.stack([(t & p).sum(0), (~t & p).sum(0), (t & ~p).sum(0)], axis=1)
    return counts


def one_hot(ids: np.ndarray, labels: int) -> np.ndarray:
    """[rows] label ids -> bool [rows, labels]."""
    out = np.zeros((len(ids), labels), bool)
    out[np.arange(len(ids)), np.asarray(ids, np.int64)] = True
    return out


def f1_of(counts: np.ndarray, average: Average) -> float:
    """F1 of (tp, fp, fn) counts [labels, 3]: macro over the labels with any count, or micro over their sum; 0.0
    when nothing was counted."""
    counts = np.asarray(counts, np.float64).reshape(-1, 3)
    if average == "micro":
        counts = counts.sum(0, keepdims=True)
    denominator = 2 * counts[:, 0] + counts[:, 1] + counts[:, 2]
    present = denominator > 0
    return float((2 * counts[present, 0] / denominator[present]).mean()) if present.any() else 0.0


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
