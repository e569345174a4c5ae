"""The predictions table: one schema for every night, whatever labels the scoring model has.

Each label's probability lives in one map column (`probabilities`, label -> probability), not in a column per label,
so a night scored by a model with another label set has the same columns as every other night: polars, duckdb,
pyarrow.dataset and pandas read all nights as one table, and no reader drops or refuses a column. `predicted_labels`
(a list) and `windows` are there so that multi-label models and long documents fit the same schema.

Schema version 1 (bert-pipeline before 0.2) had one `prob_<label>` column per label and a `run_date` column;
`from_probability_columns` turns such a table into this one (bert-pipeline migrate-lake).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

SCHEMA_VERSION = "2"
SCHEMA_VERSION_KEY = "bert_pipeline.predictions_schema"  # parquet file metadata: which schema a shard follows

PREDICTIONS_SCHEMA = pa.schema([
    ("doc_id", pa.string()),
    ("predicted_label", pa.string()),  # the most probable label (multi-label: of those predicted; null for none)
    ("predicted_labels", pa.list_(pa.string())),  # the labels predicted (one for a single-label model; multi-label:
    # those at or above their threshold, most probable first)
    ("confidence", pa.float32()),  # the highest probability of any label (single-label: of predicted_label)
    ("probabilities", pa.map_(pa.string(), pa.float32())),  # every label of the model -> its probability
    ("model_version", pa.string()),
    ("model_hash", pa.string()),
    ("run_id", pa.string()),
    ("scored_at", pa.timestamp("us", tz="UTC")),
    ("truncated", pa.bool_()),  # the model did not read every token (score.long_text: truncate, a longer text)
    ("windows", pa.int32()),  # how many max_length windows of the text the model read (score.long_text: chunk)
])


@dataclass(frozen=True)
class ScoredBy:
    """What every row of a shard shares: the model that scored it and the run that did."""

    model_version: str
    model_hash: str
    run_id: str


def label_map(labels: list[str], probabilities: np.ndarray) -> pa.MapArray:
    """probabilities [rows, len(labels)] as one map per row, label -> probability, in the model's label order."""
    rows, classes = len(probabilities), len(labels)
    offsets = pa.array(np.arange(rows + 1, dtype=np.int64) * classes, pa.int32())
    return pa.MapArray.from_arrays(offsets, pa.array(labels * rows, pa.string()),
                                   pa.array(np.asarray(probabilities, np.float32).reshape(-1), pa.float32()))


def singletons(values: pa.Array) -> pa.ListArray:
    """Each value as a one-element list (a single-label model's predicted_labels)."""
    return pa.ListArray.from_arrays(pa.array(np.arange(len(values) + 1), pa.int32()), values)


def above_thresholds(labels: list[str], probabilities: np.ndarray,
                     thresholds: np.ndarray) -> tuple[pa.Array, pa.ListArray]:
    """(most probable label at or above its threshold, or null; every such label, most probable first, ties in model
    order) per row. probabilities: [rows, len(labels)]; thresholds: [len(labels)]."""
    order = np.argsort(-probabilities, axis=1, kind="stable")
    passing = np.take_along_axis(probabilities >= np.asarray(thresholds)[None, :], order, axis=1)
    offsets = np.zeros(len(probabilities) + 1, dtype=np.int32)
    np.cumsum(passing.sum(axis=1), out=offsets[1:])
    names = np.asarray(labels, dtype=object)
    first = names[order[np.arange(len(order)), passing.argmax(axis=1)]] if len(order) else names[:0]
    best = pa.array(np.where(passing.any(axis=1), first, None).tolist(), pa.string())
    return best, pa.ListArray.from_arrays(pa.array(offsets, pa.int32()),
                                          pa.array(names[order[passing]].tolist(), pa.string()))


def prediction_table(doc_ids: pa.Array, probabilities: np.ndarray, labels: list[str], truncated: np.ndarray,
                     scored_by: ScoredBy, thresholds: np.ndarray | None = None,
                     windows: np.ndarray | None = None) -> pa.Table:
    """Predictions in PREDICTIONS_SCHEMA.

    probabilities: float [rows, len(labels)], rows in doc_ids order: softmax rows summing to 1 (single-label), or
    one sigmoid per label (multi-label, with `thresholds` [len(labels)]). truncated: bool [rows]; windows: int
    [rows] (1 each when None). Single-label: the predicted label is the argmax, ties to the first label in model
    order. Multi-label: predicted_labels are the labels at or above their threshold, most probable first, and
    predicted_label the first of them (null when none is).
    """
    rows = len(doc_ids)
    probabilities = np.asarray(probabilities, np.float32).reshape(rows, len(labels))
    if thresholds is None:
        best = probabilities.argmax(axis=1) if rows else np.zeros(0, dtype=np.int64)
        predicted = pa.array([labels[i] for i in best], pa.string())
        predicted_labels = singletons(predicted)
    else:
        predicted, predicted_labels = above_thresholds(labels, probabilities, thresholds)
    return pa.table({
        "doc_id": doc_ids,
        "predicted_label": predicted,
        "predicted_labels": predicted_labels,
        "confidence": pa.array(probabilities.max(axis=1) if rows else [], pa.float32()),
        "probabilities": label_map(labels, probabilities),
        "model_version": pa.array([scored_by.model_version] * rows, pa.string()),
        "model_hash": pa.array([scored_by.model_hash] * rows, pa.string()),
        "run_id": pa.array([scored_by.run_id] * rows, pa.string()),
        "scored_at": pa.array([dt.datetime.now(dt.timezone.utc)] * rows, pa.timestamp("us", tz="UTC")),
        "truncated": pa.array(truncated, pa.bool_()),
        "windows": pa.array(np.ones(rows, dtype=np.int32) if windows is None else np.asarray(windows, np.int32)),
    }, schema=PREDICTIONS_SCHEMA)


def from_probability_columns(table: pa.Table, labels: list[str], columns: list[str]) -> pa.Table:
    """A schema-1 predictions table (one probability column per label, `columns[i]` holding `labels[i]`, and a
    run_date column) as PREDICTIONS_SCHEMA. Rows, labels, probabilities and the other columns are kept as they were.
    Raises KeyError naming a column the table lacks."""
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise KeyError(f"predictions shard has no column {missing[0]!r} (its manifest lists labels {labels})")
    probabilities = np.stack([table[c].to_numpy() for c in columns], axis=1) if columns else \
        np.zeros((table.num_rows, 0), np.float32)
    converted = {
        "predicted_labels": singletons(table["predicted_label"].combine_chunks()),
        "probabilities": label_map(labels, probabilities),
        "windows": pa.array(np.ones(table.num_rows, dtype=np.int32)),
    }
    return pa.table({name: converted[name] if name in converted else table.column(name)
                     for name in PREDICTIONS_SCHEMA.names}, schema=PREDICTIONS_SCHEMA)
