"""The interface each task module implements (see bert_pipeline/task/__init__.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import polars as pl

from bert_pipeline.config import PipelineConfig
from bert_pipeline.errors import InputDataError


@dataclass
class RowsRead:
    """One source file's rows as the task reads them: `text` (String, the text to store), `label` (String canonical
    labels, null = unlabelled), what reading found worth counting in the manifest (e.g. trimmed_spans) and `notes`:
    what the user must hear about how the file was read (ingest logs them and returns them among its warnings) and
    `member_lines`."""

    text: pl.Series
    label: pl.Series
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # per row, the line each of its label members first appears on where a row spans lines (a CoNLL sentence: the
    # line of an entity's first token), for messages; None: a row's members are on the line it starts on
    member_lines: list[dict[str, int]] | None = None


class Task(Protocol):
    name: str
    nested_records: bool  # json(l) lists and objects are read as Python objects, not unified by polars
    read_rule: int | None  # the version of how read_rows turns records into rows, in ingest's fingerprint; None: none
    output_area: str  # the lake area the score stage writes: predictions (classification), entities (ner)
    model_kind: str  # the Hugging Face head of its models: sequence-classification, token-classification
    label_map_setting: str  # the mapping that merges spellings of one label: ingest.label_map, ner.label_map
    stages: tuple[str, ...]  # the stages this task runs; the others refuse it before writing (require)

    def read_rows(self, frame: pl.DataFrame, cfg: PipelineConfig, url: str, lines: list[int] | None) -> RowsRead:
        """The text and canonical label of each row of `frame` (a source file's columns, in file order). lines:
        the 1-based line each row starts on (csv, tsv, jsonl, txt, CoNLL), None where rows are not lines (parquet,
        a JSON array). Raises InputDataError naming url, the line (else the record or row), and the setting that
        would help."""
        ...

    def required_columns(self, cfg: PipelineConfig) -> dict[str, str | None]:
        """{setting: column} of the columns every source file must have for this task (ingest refuses it naming
        the setting)."""
        ...

    def label_members(self, label: str) -> list[str]:
        """The names a canonical label counts for (per-label counts, spelling checks): classes or entity types."""
        ...

    def agreement_key(self, label: str) -> str:
        """What two copies of a text (exact or near duplicates) must share for their labels to agree: classes
        compare as they are; entity spans by types, lengths and the gaps between them, so near duplicates whose
        spans are the same entities shifted by an edit before them (a prefix, a trailing URL) agree."""
        ...

    def label_setting(self, cfg: PipelineConfig) -> str:
        """The setting a label-spelling clash message names."""
        ...

    def token_warnings(self, counts: dict[str, Any], cfg: PipelineConfig, texts_cut_warned: bool = False) -> list[str]:
        """Tokenize's warnings about the night's token counts that are the task's own (logged and in the summary).
        texts_cut_warned: the shared warning about truncated texts was given (it names what they cut, so a task does
        not warn of the same cause twice)."""
        ...

    def relabel(self, raw: list[str | None], cleaned: list[str], labels: list[str | None]) -> tuple[
            list[str | None], list[str | None]]:
        """(labels of the cleaned texts, a rejects reason or None per row): curate's cleaning rewrote raw into
        cleaned. Classification labels do not change; entity spans follow the text."""
        ...

    def require(self, cfg: PipelineConfig, stage: str) -> None:
        """Before `stage` writes anything: raise ConfigError naming each setting of cfg this task does not support
        in that stage."""
        ...


def string_column(frame: pl.DataFrame, column: str | None, url: str) -> pl.Series | None:
    """`frame[column]` as text (numbers and booleans written out), None for no column. Raises InputDataError for a
    nested column (a list or a struct is not text)."""
    if column is None:
        return None
    series = frame[column]
    if series.dtype != pl.String:
        if series.dtype.is_nested():
            raise InputDataError(f"{url}: column {column!r} holds {series.dtype}, not text")
        series = series.cast(pl.String)
    return series
