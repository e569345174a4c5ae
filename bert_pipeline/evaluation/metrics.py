"""Classification metrics in numpy (no scikit-learn at run time): single-label from integer label ids, multi-label
from 0/1 matrices."""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_labels: int) -> np.ndarray:
    matrix = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, label_names: list[str]) -> dict[str, Any]:
    """accuracy, macro-F1 and per-class precision/recall/F1/support.

    Macro-F1 averages over the classes that occur in the labels or the predictions (scikit-learn's default), so a
    class that is predicted but absent counts as F1 0 instead of being ignored.
    """
    matrix = confusion_matrix(np.asarray(y_true), np.asarray(y_pred), len(label_names))
    true_positive = np.diag(matrix).astype(float)
    predicted = matrix.sum(axis=0).astype(float)
    actual = matrix.sum(axis=1).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, true_positive / predicted, 0.0)
        recall = np.where(actual > 0, true_positive / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    total = int(matrix.sum())
    present = (actual > 0) | (predicted > 0)
    return {
        "rows": total,
        "accuracy": float(true_positive.sum() / total) if total else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(actual[i])}
            for i, name in enumerate(label_names)
        },
        "confusion_matrix": matrix.tolist(),
    }


def multilabel_report(y_true: np.ndarray, y_pred: np.ndarray, label_names: list[str]) -> dict[str, Any]:
    """Multi-label metrics of 0/1 matrices [rows, labels]: micro- and macro-F1, subset accuracy (`accuracy`: every
    label of the row right), Hamming loss and per-label precision/recall/F1/support.

    Macro-F1 averages over the labels that occur in the truths or the predictions (the single-label rule above), so
    a label that is predicted but absent counts as F1 0; micro-F1 pools every label's counts.
    """
    true, pred = np.asarray(y_true, bool), np.asarray(y_pred, bool)
    tp = (true & pred).sum(axis=0).astype(float)
    predicted, actual = pred.sum(axis=0).astype(float), true.sum(axis=0).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = (actual > 0) | (predicted > 0)
    pooled = predicted.sum() + actual.sum()
    rows = len(true)
    return {
        "rows": rows,
        "accuracy": float((true == pred).all(axis=1).mean()) if rows else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "micro_f1": float(2 * tp.sum() / pooled) if pooled else 0.0,
        "hamming_loss": float((true != pred).mean()) if rows else 0.0,
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(actual[i])}
            for i, name in enumerate(label_names)
        },
    }
