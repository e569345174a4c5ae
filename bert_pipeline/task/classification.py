"""Text classification: a row's label is a class, or a set of classes (multi-label), read from ingest.label_column."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from bert_pipeline.config import PipelineConfig
from bert_pipeline.curation.labels import canonical_labels, label_set, mapped_labels
from bert_pipeline.errors import InputDataError, RowError
from bert_pipeline.lake.manifests import Lake
from bert_pipeline.task.base import RowsRead, string_column
from bert_pipeline.text import coverage as cov
from bert_pipeline.text.encoding import encode_texts


def trainable_label_values(lake: Lake, run_date: str, curated_manifest: dict[str, Any]) -> list[str]:
    """Sorted label values of the trainable curated rows (a multi-label row's value is its whole set, e.g.
    '["billing","refund"]'): a shard's label_id is the position of the row's value here."""
    rows = lake.dataset("curated", {run_date: curated_manifest}).to_table(
        columns=["label"], filter=~pc.field("label_conflict") & pc.field("label").is_valid())
    return sorted(pc.unique(rows["label"]).to_pylist())


def token_table(curated: pl.DataFrame, encoder: Any, labels: list[str], batch_size: int,
                coverage: cov.CoverageCounter | None = None) -> pa.Table:
    flat, offsets, truncated = encode_texts(encoder, curated["text"].to_list(), batch_size, coverage)
    id_type = pa.uint16() if encoder.get_vocab_size() <= np.iinfo(np.uint16).max + 1 else pa.uint32()
    input_ids = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat).cast(id_type))
    label_index = {name: i for i, name in enumerate(labels)}
    label_ids = [
        -1 if (label is None or conflict) else label_index[label]
        for label, conflict in zip(curated["label"].to_list(), curated["label_conflict"].to_list())
    ]
    return pa.table({
        "doc_id": curated["doc_id"].to_arrow(),
        "input_ids": input_ids,
        "length": pa.array(np.diff(offsets), pa.int32()),
        # a multi-label night may hold many distinct label sets: int32 when int16 cannot index them all
        "label_id": pa.array(label_ids, pa.int16() if len(labels) <= np.iinfo(np.int16).max else pa.int32()),
        "split": curated["split"].to_arrow(),
        "truncated": pa.array(truncated),
    })


class ClassificationTask:
    name = "classification"
    label_map_setting = "ingest.label_map"  # the mapping that merges spellings of one label
    model_kind = "sequence-classification"  # the Hugging Face head score.model must have
    output_area = "predictions"  # the lake area score writes
    nested_records = False  # a label column may hold lists; polars reads them as typed lists
    read_rule = None  # label columns are read as they always were (ids have their own rule: ingest.ID_RULE)

    def read_rows(self, frame: pl.DataFrame, cfg: PipelineConfig, url: str, lines: list[int] | None) -> RowsRead:
        """ingest.text_column as text; ingest.label_column in canonical form (1, 1.0 and "1" are the label "1"; a
        list or JSON array, or text split at ingest.label_delimiter, is a set) and rewritten by ingest.label_map, null
        where it is empty."""
        text = string_column(frame, cfg.ingest.text_column, url)
        assert text is not None
        column = cfg.ingest.label_column
        if column is None:
            return RowsRead(text, pl.Series([None] * frame.height, dtype=pl.String))
        try:
            labels = canonical_labels(frame[column], cfg.ingest.label_delimiter)
            return RowsRead(text, mapped_labels(labels, cfg.ingest.label_map))
        except RowError as exc:
            raise InputDataError(f"{url}: ingest.label_column {column!r}: {exc.at(lines)}") from None
        except InputDataError as exc:
            raise InputDataError(f"{url}: ingest.label_column {column!r}: {exc}") from None

    def required_columns(self, cfg: PipelineConfig) -> dict[str, str | None]:
        return {"ingest.text_column": cfg.ingest.text_column, "ingest.label_column": cfg.ingest.label_column}

    def label_members(self, label: str) -> list[str]:
        return label_set(label)

    def agreement_key(self, label: str) -> str:
        return label

    def label_setting(self, cfg: PipelineConfig) -> str:
        return "ingest.label_column"

    def token_label_names(self, lake: Lake, run_date: str, curated_manifest: dict[str, Any]) -> list[str]:
        """The night's trainable label values, sorted: a token shard's label_id indexes them."""
        return trainable_label_values(lake, run_date, curated_manifest)

    def token_table(self, curated: pl.DataFrame, encoder: Any, labels: list[str], batch_size: int,
                    coverage: cov.CoverageCounter | None = None) -> pa.Table:
        return token_table(curated, encoder, labels, batch_size, coverage)

    def token_warnings(self, counts: dict[str, Any], cfg: PipelineConfig, texts_cut_warned: bool = False) -> list[str]:
        """Nothing beyond the shared coverage warning."""
        return []

    def relabel(self, raw: list[str | None], cleaned: list[str], labels: list[str | None]) -> tuple[
            list[str | None], list[str | None]]:
        return labels, [None] * len(labels)

    def require(self, cfg: PipelineConfig, stage: str) -> None:
        """Classification supports every setting."""
