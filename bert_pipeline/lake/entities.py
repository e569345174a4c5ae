"""The entities table (task: ner): one row per curated row, its entities a list, one schema for every night whatever
entity types the scoring model has (the types are values, not columns), so polars, duckdb, pandas and pyarrow read
every night as one table.

Each entity is a struct: `start`, `end` (code points of the curated `text`, half-open: `text[start:end]` is the
entity in Python, polars `str.slice(start, end - start)` and duckdb `substring(text, start + 1, end - start)`),
`label` (its type), `text` (the entity's text, taken from the stored text, never from the tokenizer's lower-cased or
[UNK] pieces) and `score` (the mean probability of its tokens' tags).
"""

from __future__ import annotations

import datetime as dt
from typing import Sequence

import numpy as np
import pyarrow as pa

from bert_pipeline.lake.predictions import ScoredBy

ENTITY = pa.struct([("start", pa.int32()), ("end", pa.int32()), ("label", pa.string()), ("text", pa.string()),
                    ("score", pa.float32())])
ENTITIES_SCHEMA = pa.schema([
    ("doc_id", pa.string()),
    ("entities", pa.list_(ENTITY)),  # in text order; [] for a text without entities
    ("model_version", pa.string()),
    ("model_hash", pa.string()),
    ("run_id", pa.string()),
    ("scored_at", pa.timestamp("us", tz="UTC")),
    ("truncated", pa.bool_()),  # the model did not read every token of the text (tokenize.max_length)
    ("windows", pa.int32()),  # max_length windows of the text the model read (score.long_text: chunk)
])


def entity_table(doc_ids: pa.Array, texts: Sequence[str], entities: Sequence[Sequence[tuple[int, int, str, float]]],
                 truncated: np.ndarray, scored_by: ScoredBy, windows: np.ndarray | None = None) -> pa.Table:
    """Rows in ENTITIES_SCHEMA. entities: per row, (start, end, label, score) in code points of texts[row];
    windows: per row, the max_length windows read (1 each when None)."""
    rows = len(doc_ids)
    column = [[{"start": s, "end": e, "label": label, "text": text[s:e], "score": score}
               for s, e, label, score in found] for text, found in zip(texts, entities)]
    return pa.table({
        "doc_id": doc_ids,
        "entities": pa.array(column, pa.list_(ENTITY)),
        "model_version": pa.array([scored_by.model_version] * rows, pa.string()),
        "model_hash": pa.array([scored_by.model_hash] * rows, pa.string()),
        "run_id": pa.array([scored_by.run_id] * rows, pa.string()),
        "scored_at": pa.array([dt.datetime.now(dt.timezone.utc)] * rows, pa.timestamp("us", tz="UTC")),
        "truncated": pa.array(np.asarray(truncated, bool), pa.bool_()),
        "windows": pa.array(np.ones(rows, np.int32) if windows is None else np.asarray(windows, np.int32)),
    }, schema=ENTITIES_SCHEMA)
