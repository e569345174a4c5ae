"""Text classification: a row's label is a class, or a set of classes (multi-label), read from ingest.label_column."""

from __future__ import annotations

import polars as pl

from bert_pipeline.config import PipelineConfig
from bert_pipeline.curation.labels import canonical_labels, label_set
from bert_pipeline.errors import InputDataError
from bert_pipeline.task.base import RowsRead, string_column


class ClassificationTask:
    name = "classification"
    stages = ("ingest", "curate", "tokenize", "train", "score")
    nested_records = False  # a label column may hold lists; polars reads them as typed lists

    def read_rows(self, frame: pl.DataFrame, cfg: PipelineConfig, url: str, lines: list[int] | None) -> RowsRead:
        """ingest.text_column as text; ingest.label_column in canonical form (1, 1.0 and "1" are the label "1"; a
        list or JSON array, or text split at ingest.label_delimiter, is a set), null where it is empty."""
        text = string_column(frame, cfg.ingest.text_column, url)
        assert text is not None
        column = cfg.ingest.label_column
        if column is None:
            return RowsRead(text, pl.Series([None] * frame.height, dtype=pl.String))
        try:
            return RowsRead(text, canonical_labels(frame[column], cfg.ingest.label_delimiter))
        except InputDataError as exc:
            raise InputDataError(f"{url}: ingest.label_column {column!r}: {exc}") from None

    def required_columns(self, cfg: PipelineConfig) -> dict[str, str | None]:
        return {"ingest.text_column": cfg.ingest.text_column, "ingest.label_column": cfg.ingest.label_column}

    def label_members(self, label: str) -> list[str]:
        return label_set(label)

    def label_setting(self, cfg: PipelineConfig) -> str:
        return "ingest.label_column"

    def relabel(self, raw: list[str | None], cleaned: list[str], labels: list[str | None]) -> tuple[
            list[str | None], list[str | None]]:
        return labels, [None] * len(labels)

    def require(self, stage: str) -> None:
        """Classification runs every stage."""
