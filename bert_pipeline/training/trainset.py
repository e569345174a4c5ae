"""The accumulating training set: the labelled rows of every committed night up to tonight, with corrections applied.

A night's rows come from its token shards when they were made by tonight's tokenizer at tonight's max_length, and
are tokenized again from its curated text otherwise. Splits come from curate (a hash of the duplicate cluster's key,
or the split the source gave), so a text keeps its split across nights. The newest label correction of a row wins
(`labels.read_corrections`); a row whose label is in conflict, within a night or within a night's corrections, is
not trained or evaluated on. `train.window_days` bounds the nights read, `train.max_train_samples` the training rows.

Multi-label rows (sets of labels, `labels.label_set`) make a multi-label training set (`multilabel.problem_type`): its
labels are the members of the training rows' sets and each row's targets a 0/1 vector. `train.long_text: chunk`
tokenizes every night's text again without truncation (the token shards hold the first max_length tokens only).

An id is a document: when a doc_id (the source's id, `ingest.id_column`) holds labelled rows on several nights (a
text edited and sent again), only the newest night's version is read (`newest_versions`), counted in the model card.

Every label the model gets must have training rows: a label seen only in validation or test is refused, naming it
and its count per split, unless `train.drop_unseen_labels` drops those rows (multi-label: that label from their
sets), reported in the model's manifest.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from bert_pipeline.config import PipelineConfig
from bert_pipeline.errors import InputDataError
from bert_pipeline.curation.labels import (
    apply_corrections, canonical_label, canonical_labels, encode_label_set, label_set, member_labels, read_corrections,
    spelling_clashes, spelling_message,
)
from bert_pipeline.modeling.multilabel import multi_hot, problem_type
from bert_pipeline.modeling.windows import Windowing
from bert_pipeline.lake.manifests import Lake
from bert_pipeline.text.encoding import encode_texts

SPLITS = ("train", "validation", "test")
ROWS_SCHEMA = pa.schema([("doc_id", pa.string()), ("input_ids", pa.list_(pa.uint32())), ("label", pa.string()),
                         ("split", pa.string())])


@dataclass
class SplitData:
    """One split's trainable rows: token-id sequences (1-D int arrays), labels (single-label: label ids [rows] int64;
    multi-label: 0/1 targets [rows, labels] float32), and where each row came from (doc_id, run_date), so the
    registry can re-tokenize them for a champion with another tokenizer."""

    sequences: list[np.ndarray]
    labels: np.ndarray
    doc_ids: list[str] = field(default_factory=list)
    run_dates: list[str] = field(default_factory=list)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(s) for s in self.sequences), dtype=np.int64, count=len(self.sequences))

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def multi_label(self) -> bool:
        return self.labels.ndim == 2

    def label_names_of(self, row: int, names: list[str]) -> tuple[str, ...]:
        """The labels of one row by name (one for single-label, the set in label order for multi-label)."""
        if self.multi_label:
            return tuple(names[j] for j in np.flatnonzero(self.labels[row]))
        return (names[int(self.labels[row])],)

    def take(self, index: np.ndarray) -> "SplitData":
        return SplitData([self.sequences[i] for i in index], self.labels[index],
                         [self.doc_ids[i] for i in index] if self.doc_ids else [],
                         [self.run_dates[i] for i in index] if self.run_dates else [])

    def windows(self, windowing: Windowing) -> "SplitData":
        """Training on chunks: one row per window of these whole documents, each with its document's labels and
        doc_id."""
        windows, document = windowing.split(self.sequences)
        return SplitData(windows, self.labels[document], [self.doc_ids[i] for i in document] if self.doc_ids else [],
                         [self.run_dates[i] for i in document] if self.run_dates else [])


@dataclass(frozen=True)
class Night:
    """One committed night that goes into the training set, and whether its token shards can be reused."""

    run_date: str
    curated: dict[str, Any]
    tokens: dict[str, Any] | None  # the token manifest when made by tonight's tokenizer and max_length

    def identity(self) -> list[Any]:
        return [self.run_date, self.curated["fingerprint"], self.tokens["fingerprint"] if self.tokens else None]


@dataclass(frozen=True)
class TrainingSetPlan:
    """Which nights go in (oldest first) and with which tokenizer: cheap to build, and what the model's
    fingerprint is made of."""

    run_date: str
    nights: list[Night]
    tokenizer_hash: str
    max_length: int

    def identity(self) -> list[Any]:
        return [self.tokenizer_hash, self.max_length, [night.identity() for night in self.nights]]


def window_start(run_date: str, window_days: int | None) -> str:
    """The first run_date inside a window of `window_days` nights ending with run_date ('' = no bound)."""
    if window_days is None:
        return ""
    return (dt.date.fromisoformat(run_date) - dt.timedelta(days=window_days - 1)).isoformat()


def plan_training_set(cfg: PipelineConfig, tonight_tokens: dict[str, Any]) -> TrainingSetPlan:
    """The committed nights from `train.window_days` ago up to and including cfg.run_date."""
    lake = Lake.of(cfg)
    tok_hash, max_length = tonight_tokens["tokenizer"]["hash"], tonight_tokens["max_length"]
    first = window_start(cfg.run_date, cfg.train.window_days)
    nights = []
    for date in lake.run_dates("curated"):
        if not first <= date <= cfg.run_date:
            continue
        curated = lake.read_manifest("curated", date)
        tokens = tonight_tokens if date == cfg.run_date else lake.read_manifest("tokens", date)
        # chunked training reads every token: the shards hold the first max_length only
        reusable = (cfg.train.long_text == "truncate" and tokens is not None
                    and tokens.get("tokenizer", {}).get("hash") == tok_hash
                    and tokens.get("max_length") == max_length and curated is not None
                    and curated["fingerprint"] in tokens.get("inputs", []))
        if curated is not None:
            nights.append(Night(date, curated, tokens if reusable else None))
    return TrainingSetPlan(cfg.run_date, nights, tok_hash, max_length)


@dataclass
class TrainingSet:
    """The splits (label ids or target columns index `label_names`) and what the model card reports about them."""

    splits: dict[str, SplitData]
    label_names: list[str]
    rows_by_night: dict[str, dict[str, int]]
    token_source: dict[str, str]
    corrections_applied: int
    dropped_unseen: dict[str, dict[str, int]]
    problem_type: str = "single_label"
    superseded_versions: int = 0  # older versions of ids sent again with edited text, not trained on

    @property
    def multi_label(self) -> bool:
        return self.problem_type == "multi_label"

    def describe(self) -> dict[str, Any]:
        return {"problem_type": self.problem_type, "run_dates": sorted(self.rows_by_night),
                "rows_by_night": self.rows_by_night,
                "rows": {split: len(data) for split, data in self.splits.items()},
                "token_source": self.token_source, "corrections_applied": self.corrections_applied,
                "superseded_versions": self.superseded_versions,
                "dropped_unseen_labels": self.dropped_unseen}


def _night_rows(lake: Lake, night: Night, encoder: Any, batch_size: int, wanted: set[str]) -> pa.Table:
    """doc_id, input_ids, label (null = not trainable), split of one night; `wanted` doc_ids are kept even
    unlabelled (a later correction labels them)."""
    if night.tokens is not None:
        names = [canonical_label(name) for name in night.tokens["label_names"]]  # lakes written before labels.py
        table = lake.dataset("tokens", {night.run_date: night.tokens}).to_table(
            columns=["doc_id", "input_ids", "label_id", "split"])
        if table.num_rows == 0:
            return _empty_rows()
        # only what can be trained on: labelled rows, and rows a later night labelled by a correction
        keep = pc.or_(pc.greater_equal(table["label_id"], 0), pc.is_in(table["doc_id"], pa.array(sorted(wanted),
                                                                                                 pa.string())))
        table = table.filter(keep)
        label_ids = table["label_id"].to_numpy()
        labels = [names[i] if i >= 0 else None for i in label_ids.tolist()]
        return pa.table({"doc_id": table["doc_id"], "input_ids": table["input_ids"].cast(pa.list_(pa.uint32())),
                         "label": pa.array(labels, pa.string()), "split": table["split"]})
    curated = pl.from_arrow(lake.dataset("curated", {night.run_date: night.curated}).to_table(
        columns=["doc_id", "text", "label", "label_conflict", "split"]))
    if curated.is_empty():  # type: ignore[union-attr]
        return _empty_rows()
    curated = curated.with_columns(label=pl.when(pl.col("label_conflict")).then(None)
                                   .otherwise(canonical_labels(curated["label"])))
    curated = curated.filter(pl.col("label").is_not_null() | pl.col("doc_id").is_in(list(wanted)))
    flat, offsets, _ = encode_texts(encoder, curated["text"].to_list(), batch_size)
    ids = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(flat, pa.uint32()))
    return pa.table({"doc_id": curated["doc_id"].to_arrow(), "input_ids": ids,
                     "label": curated["label"].to_arrow(), "split": curated["split"].to_arrow()})


def _empty_rows() -> pa.Table:
    return ROWS_SCHEMA.empty_table()


def _sequences(column: pa.ChunkedArray) -> list[np.ndarray]:
    """A list<uint32> column as one numpy view per row (no per-token Python objects)."""
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    offsets, values = array.offsets.to_numpy(), array.values.to_numpy()
    return [values[offsets[i]:offsets[i + 1]] for i in range(len(array))]


def load_training_set(cfg: PipelineConfig, plan: TrainingSetPlan, encoder: Any) -> TrainingSet:
    """Read every night of the plan, apply the newest corrections, cap training rows, fix the label set.

    `encoder` is a `tokenizers.Tokenizer` (tonight's, truncating at max_length) for nights whose token shards cannot
    be reused. Errors: InputDataError for labels without training rows (unless train.drop_unseen_labels), for
    spellings that collide, and for fewer than 2 labels.
    """
    lake = Lake.of(cfg)
    # the nights of the plan only: a night whose curate did not commit (rejects written, curated not) is not one
    corrections = read_corrections(lake, [night.run_date for night in plan.nights])
    wanted = set(corrections["doc_id"].to_list())
    tables, token_source = [], {}
    for night in plan.nights:
        rows = _night_rows(lake, night, encoder, cfg.tokenize.batch_size, wanted)
        rows = rows.select(ROWS_SCHEMA.names).cast(ROWS_SCHEMA)
        tables.append(rows.append_column("run_date", pa.array([night.run_date] * rows.num_rows, pa.string())))
        token_source[night.run_date] = "token shards" if night.tokens is not None else "re-tokenized"
    table = pa.concat_tables(tables) if tables else _empty_rows().append_column("run_date", pa.array([], pa.string()))
    frame = pl.from_arrow(table.drop_columns(["input_ids"])).with_row_index("row")  # type: ignore[union-attr]
    before = frame["label"].to_list()
    frame = apply_corrections(frame, corrections)
    corrected = sum(1 for old, new, doc in zip(before, frame["label"].to_list(), frame["doc_id"].to_list())
                    if doc in wanted and old != new)
    frame = frame.filter(pl.col("label").is_not_null())
    frame, superseded = newest_versions(frame)
    sequences = _sequences(table["input_ids"])
    by_split = {split: frame.filter(pl.col("split") == split) for split in SPLITS}
    by_split["train"] = subsample(by_split["train"], cfg.train.max_train_samples, cfg.train.seed)
    problem = problem_type(frame["label"].to_list(), cfg.train.problem_type)
    train_labels = by_split["train"]["label"].to_list()
    label_names = member_labels(train_labels) if problem == "multi_label" else sorted(set(train_labels))
    if not train_labels:  # nothing labelled to train on (yet): the train stage skips, scoring keeps the champion
        return TrainingSet({s: SplitData([], np.zeros(0, np.int64)) for s in SPLITS}, [], {}, token_source, 0, {})
    dropped = unseen_labels(by_split, label_names, cfg.train.drop_unseen_labels)
    if dropped:
        by_split = {s: without_labels_outside(f, label_names, problem == "multi_label") for s, f in by_split.items()}
    if clashes := spelling_clashes(label_names):  # only nights ingested before label_key joined these spellings
        raise InputDataError(spelling_message(clashes, {}, f"labels of the training set up to run_date={plan.run_date}",
                                              "ingest.label_map", {}) + ", and run the nights that hold the other "
                             "spellings again from ingest (their ingest summaries name them)")
    if problem == "multi_label" and not label_names:
        raise InputDataError(
            f"train: every labelled training row of run_dates {[n.run_date for n in plan.nights]} holds the empty "
            "label set [] (no label applies): there is no label to learn; check ingest.label_column and "
            "ingest.label_delimiter")
    if len(label_names) < (1 if problem == "multi_label" else 2):  # multi-label: one label is a yes/no question
        raise InputDataError(
            f"train: the labelled training rows of run_dates {[n.run_date for n in plan.nights]} hold "
            f"{len(label_names)} distinct label(s) {label_names}; a classifier needs at least 2 "
            "(check ingest.label_column, or widen train.window_days)")
    index = {name: i for i, name in enumerate(label_names)}

    def targets(values: list[str]) -> np.ndarray:
        if problem == "multi_label":
            return multi_hot(values, label_names)
        return np.asarray([index[x] for x in values], dtype=np.int64)

    splits = {split: SplitData([sequences[i] for i in f["row"].to_list()], targets(f["label"].to_list()),
                               f["doc_id"].to_list(), f["run_date"].to_list())
              for split, f in by_split.items()}
    rows_by_night: dict[str, dict[str, int]] = {n.run_date: {s: 0 for s in SPLITS} for n in plan.nights}
    for split, f in by_split.items():
        for date, n in f["run_date"].value_counts().iter_rows():
            rows_by_night[date][split] = int(n)
    return TrainingSet(splits, label_names, rows_by_night, token_source, corrected, dropped, problem, superseded)


def newest_versions(frame: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """(frame with one row per doc_id: the newest run_date's, in the original row order; how many older versions
    were left out). An id sent again on a later night with edited text is one document: its newest labelled
    version is trained on, whatever order the nights were curated in, and its older ones stay in the lake."""
    newest = frame.filter(pl.col("run_date") == pl.col("run_date").max().over("doc_id"))
    return newest, frame.height - newest.height


def subsample(frame: pl.DataFrame, limit: int | None, seed: int) -> pl.DataFrame:
    """A seeded sample of at most `limit` rows, in their original order."""
    if limit is None or frame.height <= limit:
        return frame
    keep = np.random.default_rng(seed).permutation(frame.height)[:limit]
    return frame.with_row_index("_i").filter(pl.col("_i").is_in(keep.tolist())).drop("_i")


def unseen_labels(by_split: dict[str, pl.DataFrame], label_names: list[str], drop: bool) -> dict[str, dict[str, int]]:
    """{label: rows per split} of labels (members of a multi-label row's set) that have no training rows.
    Errors: InputDataError unless `drop`."""
    unseen: dict[str, dict[str, int]] = {}
    known = set(label_names)
    for split in ("validation", "test"):
        for value, n in by_split[split]["label"].drop_nulls().value_counts().iter_rows():  # once per distinct value
            for label in set(label_set(value)) - known:
                unseen.setdefault(label, {s: 0 for s in SPLITS})[split] += int(n)
    if unseen and not drop:
        described = "; ".join(f"{label!r}: {counts}" for label, counts in sorted(unseen.items()))
        raise InputDataError(
            f"train: label(s) with no training rows would get an output the model never learned: {described}. "
            "Add labelled training rows for them (or raise train.max_train_samples if its sample left them out), or "
            "set train.drop_unseen_labels: true to leave those validation and test rows out (the model manifest "
            "then lists them)")
    return unseen


def without_labels_outside(frame: pl.DataFrame, label_names: list[str], multi_label: bool) -> pl.DataFrame:
    """`frame` (a `label` column of canonical labels) without the labels that are not in `label_names`: a
    single-label row with such a label goes; a multi-label row keeps its other labels (a set left empty is `[]`)."""
    if not multi_label:
        return frame.filter(pl.col("label").is_in(label_names))
    known = set(label_names)
    kept = {value: encode_label_set(m for m in label_set(value) if m in known)  # once per distinct set, not per row
            for value in frame["label"].drop_nulls().unique().to_list()}
    return frame.with_columns(label=pl.col("label").replace(kept))


def texts_of(lake: Lake, data: SplitData) -> list[str]:
    """The curated texts of a split's rows, in its order (read from each night's curated shards: doc_id, text).
    A row's text is its own night's: an id sent again with edited text on another night keeps each version apart."""
    texts: dict[tuple[str, str], str] = {}
    wanted: dict[str, set[str]] = {}
    for date, doc_id in zip(data.run_dates, data.doc_ids):
        wanted.setdefault(date, set()).add(doc_id)
    for date, doc_ids in sorted(wanted.items()):
        rows = lake.dataset("curated", [date]).to_table(columns=["doc_id", "text"],
                                                        filter=pc.field("doc_id").isin(sorted(doc_ids)))
        texts.update(((date, d), t) for d, t in zip(rows["doc_id"].to_pylist(), rows["text"].to_pylist()))
    return [texts[(date, d)] for date, d in zip(data.run_dates, data.doc_ids)]
