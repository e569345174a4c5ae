"""Multi-label classification: a text carries a set of labels; the model has one sigmoid output per label.

- Problem type (`train.problem_type`): `auto` is multi-label when some labelled row holds a set of other than one
  label (`labels.is_label_set`: two or more, or `[]` for "none applies"), else single-label. A single-label row in a
  multi-label training set is the set of that one label.
- Loss: binary cross-entropy on each label's logit (`torch.nn.BCEWithLogitsLoss`), each label's positives weighted
  by negatives / positives (the balanced rule; `train.class_weights: auto` turns it on for multi-label: without it
  the rare labels' few positives barely move the model).
- Decision thresholds, one per label, tuned on the validation rows (the SCut strategy of Yang, "A study of
  thresholding strategies for text categorization", SIGIR 2001): the threshold among 0.01, 0.02, ..., 0.99 that
  gives that label the best validation F1 (a rare label's probabilities often stay far below 0.5); ties go to the
  one closest to 0.5; a label without positive validation rows keeps 0.5. They are stored with the model
  (`calibration.json`: `thresholds`) and used for every metric and prediction; a multi-label folder without them
  uses 0.5.
- The champion gate's baseline: the best constant answer. For macro-F1 that is every label for every row (a label
  always predicted scores F1 2p/(1+p) > 0 for a label of prevalence p; never predicted, 0).

The folder's `config.json` says `problem_type: multi_label_classification` (the Hugging Face convention), which is
how scoring and the registry know to apply sigmoid and thresholds to any model folder.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from bert_pipeline.errors import InputDataError
from bert_pipeline.curation.labels import is_label_set, label_set

HF_MULTI_LABEL = "multi_label_classification"
THRESHOLD_GRID = np.round(np.arange(0.01, 0.995, 0.01), 2)
DEFAULT_THRESHOLD = 0.5


def problem_type(values: Iterable[str], requested: str) -> str:
    """"single_label" or "multi_label" for the training set's canonical label values and `train.problem_type`.

    Errors: InputDataError when single_label is asked for but some row holds a set of labels."""
    sets = [value for value in values if is_label_set(value)]
    if requested == "single_label" and sets:
        raise InputDataError(
            f"train.problem_type is single_label but {len(sets)} labelled row(s) hold a set of labels, such as "
            f"{sets[0]}; set train.problem_type: multi_label (or auto), or give one label per row")
    if requested == "multi_label" or (requested == "auto" and sets):
        return "multi_label"
    return "single_label"


def is_multi_label(model_config: Any) -> bool:
    """Whether a Hugging Face model config describes a multi-label classifier."""
    return getattr(model_config, "problem_type", None) == HF_MULTI_LABEL


def multi_hot(values: Sequence[str | tuple[str, ...] | None], label_names: Sequence[str]) -> np.ndarray:
    """Canonical label values (or tuples of label names) as a 0/1 float32 matrix [rows, len(label_names)]; labels
    not in the names are left out (the caller refuses or drops them first)."""
    index = {name: i for i, name in enumerate(label_names)}
    matrix = np.zeros((len(values), len(label_names)), dtype=np.float32)
    for row, value in enumerate(values):
        for label in value if isinstance(value, tuple) else label_set(value):
            if label in index:
                matrix[row, index[label]] = 1.0
    return matrix


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))).astype(np.float32)


def tune_thresholds(probabilities: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-label thresholds [labels] from validation probabilities and 0/1 targets [rows, labels] (see the module
    docstring for the rule)."""
    targets = np.asarray(targets, bool)
    chosen = np.full(probabilities.shape[1], DEFAULT_THRESHOLD, dtype=np.float32)
    closeness = -np.abs(THRESHOLD_GRID - DEFAULT_THRESHOLD)
    for label in range(probabilities.shape[1]):
        positive = targets[:, label]
        if not positive.any():
            continue
        # in the probabilities' own precision, as predicted_sets compares: 0.29 in float32 is below 0.29 in float64
        predicted = probabilities[:, label][:, None] >= THRESHOLD_GRID.astype(probabilities.dtype)[None, :]
        tp = (predicted & positive[:, None]).sum(axis=0)
        f1 = 2 * tp / (predicted.sum(axis=0) + positive.sum())
        best = np.lexsort((closeness, f1))[-1]  # highest F1, then closest to 0.5
        chosen[label] = THRESHOLD_GRID[best]
    return chosen


def predicted_sets(probabilities: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """0/1 predictions [rows, labels]: each label's probability at or above its threshold."""
    return probabilities >= np.asarray(thresholds, np.float32)[None, :]


def names_of(rows: np.ndarray, label_names: Sequence[str]) -> list[tuple[str, ...]]:
    """0/1 rows [rows, labels] as tuples of label names, in label order."""
    return [tuple(label_names[j] for j in np.flatnonzero(row)) for row in np.asarray(rows, bool)]


def thresholds_of(calibration: dict[str, Any] | None, label_names: Sequence[str]) -> np.ndarray:
    """A model folder's per-label thresholds from its calibration.json (0.5 for a label it does not name)."""
    stored = (calibration or {}).get("thresholds") or {}
    return np.asarray([float(stored.get(name, DEFAULT_THRESHOLD)) for name in label_names], np.float32)
