"""Named-entity recognition: a row's label is its entity spans, read from annotation exports and CoNLL files.

A labelled row's canonical label is the sorted JSON array `[[start, end, "TYPE"], ...]` in code points of the stored
text (`[]`: annotated, no entities; null: not annotated, scored only). Records are read by `ner.annotations`
(bert_pipeline/ner/readers.py for each export style); every span is checked (bert_pipeline/ner/spans.py) and a bad one
refuses the file before anything is written, naming the file, the record or line, and the setting that would help.
Curation rewrites text; `relabel` moves each span with it (bert_pipeline/ner/offsets.py) or rejects the row as
`span_unmappable`.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Mapping

import numpy as np
import polars as pl
import regex
import pyarrow as pa
import pyarrow.compute as pc

from bert_pipeline.config import NerConfig, PipelineConfig
from bert_pipeline.errors import line_or_row
from bert_pipeline.curation.clean import clean_text
from bert_pipeline.ner.offsets import UNMAPPABLE, map_spans
from bert_pipeline.ner.readers import Annotated, read_doccano, read_label_studio, read_span_dicts, read_token_tags
from bert_pipeline.ner.spans import LABEL_MAP_SETTING, Span, SpanError
from bert_pipeline.lake.manifests import Lake
from bert_pipeline.ner.tagging import (
    TOKEN_LINES, detect_scheme, join_tokens, parse_tag, scheme_name, tag_names, token_labels_for_spans,
)
from bert_pipeline.text import coverage as cov
from bert_pipeline.task.base import RowsRead

MISMATCH_WARNING = 0.02  # share of a night's entities that may be unreproducible before tokenize warns
DOCCANO_KEYS = ("label", "labels")
SPAN_KEYS = ("spans", "entities", "ents")


def encode_spans(spans: list[Span]) -> str:
    """The canonical label of a row's spans: compact JSON `[[start,end,"TYPE"],...]`, sorted (spans come sorted)."""
    return json.dumps([[s.start, s.end, s.label] for s in spans], ensure_ascii=False, separators=(",", ":"))


def decode_spans(label: str) -> list[Span]:
    """The spans of a canonical NER label (encode_spans' inverse)."""
    return [Span(int(start), int(end), str(kind)) for start, end, kind in json.loads(label)]


def style_of(record: Mapping[str, Any], n: NerConfig) -> str | None:
    """The annotation style of one record under ner.annotations: auto looks at its keys (None: no annotation, the
    row is unlabelled and only scored)."""
    if n.annotations != "auto":
        return n.annotations
    if "annotations" in record and isinstance(record.get("data"), Mapping):
        return "label_studio"
    if record.get(n.tokens_key) is not None and record.get(n.tags_key) is not None:
        return "token_tags"
    if n.spans_key is not None:
        return "spans" if record.get(n.spans_key) is not None else None
    if any(isinstance(record.get(k), list) for k in DOCCANO_KEYS):
        return "doccano"
    if any(record.get(k) is not None for k in SPAN_KEYS):
        return "spans"
    return None


def file_scheme(records: list[dict[str, Any]], n: NerConfig, where: str) -> str:
    """ner.tag_scheme, or under auto the scheme detected over every string-tagged record of the file (IOB2 when no
    record has tags)."""
    if n.tag_scheme != "auto":
        return scheme_name(n.tag_scheme)
    names = n.tag_names
    sentences = [[names[t] if isinstance(t, int) and 0 <= t < len(names) else t for t in record[n.tags_key]]
                 for record in records if isinstance(record.get(n.tags_key), list)]
    sentences = [[t for t in s if isinstance(t, str)] for s in sentences]
    return detect_scheme(sentences, where) if any(sentences) else "IOB2"


# A file whose token lists are this share of single characters (or more) is character-level: MSRA, Resume, Weibo
# and KLUE ship one character per line, Latin letters and digits included
CHARACTER_LEVEL_SHARE = 0.9
CHARACTER_LEVEL_MIN_TOKENS = 8
# how token lists become text, in ingest's fingerprint for task ner: 2 = a character-level file is joined with nothing
# between its tokens; CoNLL's token column follows an index column of numbers only; 3 = a file whose tokens carry
# word-position marks (Weibo NER: 科0 技1) is read without them (ner.position_marks); 4 = nothing between a Han or
# kana character and a digit, punctuation or symbol ("2005年", "（北海道）", join_tokens)
TOKENS_RULE = 4
# one character (a grapheme: a letter and its combining marks) and its position in its word, as Weibo NER's second
# release (golden-horse's weiboNER_2nd_conll) writes each token: the word segmentation its authors used, not text
POSITION_MARK = regex.compile(r"^(\X)(\d{1,2})$")


def without_position_marks(records: list[dict[str, Any]], n: NerConfig, where: str
                           ) -> tuple[list[dict[str, Any]], int, list[str]]:
    """(records with each token list's position marks dropped, how many tokens lost one, [a note saying so]) under
    ner.position_marks: strip drops every mark, auto only in a file whose tokens are marked (`position_marked`),
    keep none ((records, 0, [])). '科0' reads '科'; a token that is not one character and a number stays as it is."""
    lists = [record.get(n.tokens_key) for record in records]
    if n.position_marks == "keep" or (n.position_marks == "auto" and not position_marked(lists)):
        return records, 0, []
    read, dropped, examples = [], 0, []
    for record, listed in zip(records, lists):
        if not isinstance(listed, list):
            read.append(record)
            continue
        bare = [match.group(1) if (match := POSITION_MARK.match(str(t))) else t for t in listed]
        changed = [str(a) for a, b in zip(listed, bare) if str(a) != str(b)]
        dropped, examples = dropped + len(changed), (examples + changed)[:6]
        read.append({**record, n.tokens_key: bare})
    if not dropped:
        return read, 0, []
    total = sum(len(tokens) for tokens in lists if isinstance(tokens, list))
    return read, dropped, [
        f"{where}: {dropped:,} of {total:,} tokens are one character followed by its position in its word "
        f"({' '.join(examples)} ...: Weibo NER's word segmentation marks, not text), so each is read as its character "
        "alone and the text has no such numbers; ner.position_marks: keep reads the tokens as written"]


def position_marked(lists: list[Any]) -> bool:
    """Whether token lists carry word-position marks: at least CHARACTER_LEVEL_SHARE of their tokens (and at least
    CHARACTER_LEVEL_MIN_TOKENS) are one character and a number that is 0 or one more than the token's before it
    (each word's characters counted from 0), so that a file of codes (A1 B2) or years (19 66) is not taken for one."""
    marked = total = 0
    for tokens in lists:
        if not isinstance(tokens, list):
            continue
        before = -1  # a list starts with a word
        for token in tokens:
            total += 1
            match = POSITION_MARK.match(str(token))
            position = int(match.group(2)) if match else None
            marked += position is not None and position in (0, before + 1)
            before = -1 if position is None else position
    return total >= CHARACTER_LEVEL_MIN_TOKENS and marked >= CHARACTER_LEVEL_SHARE * total


def file_separator(records: list[dict[str, Any]], n: NerConfig) -> str | None:
    """What joins each record's tokens: ner.token_separator, or under auto "" for a character-level file (at least
    CHARACTER_LEVEL_SHARE of its tokens one character each), so that "M B A" and "1 9 6 6" in a Chinese corpus
    read "MBA" and "1966" as the text was written; None (a space, nothing between Han or kana) otherwise."""
    if n.token_separator is not None:
        return n.token_separator
    lengths = [len(str(t)) for record in records if isinstance(record.get(n.tokens_key), list)
               for t in record[n.tokens_key]]
    single = sum(length == 1 for length in lengths)
    character_level = len(lengths) >= CHARACTER_LEVEL_MIN_TOKENS and single >= CHARACTER_LEVEL_SHARE * len(lengths)
    return "" if character_level else None


def _unlabelled_text(record: Mapping[str, Any], cfg: PipelineConfig, where: str,
                     separator: str | None = None) -> str | None:
    text = record.get(cfg.ingest.text_column)
    if text is None and isinstance(record.get(cfg.ner.tokens_key), list):  # tokens without tags: text to score
        return join_tokens([str(t) for t in record[cfg.ner.tokens_key]], separator=separator)[0]
    if text is not None and not isinstance(text, str):
        raise SpanError(f"{where}: {cfg.ingest.text_column!r} holds {type(text).__name__}, not text", "no_text")
    return text


def read_record(record: Mapping[str, Any], where: str, cfg: PipelineConfig, scheme: str,
                counts: Counter[str], separator: str | None = None) -> tuple[str | None, list[Span] | None]:
    """(text, spans) of one record; spans None when it carries no usable annotation (Label Studio cancelled, Prodigy
    reject, no annotation key under auto). separator: what joins token lists (`file_separator`)."""
    n, text_key = cfg.ner, cfg.ingest.text_column
    style = style_of(record, n)
    annotated: Annotated | None
    if style is None:
        return _unlabelled_text(record, cfg, where, separator), None
    if style == "doccano":
        keyed = record if n.spans_key is None else {**record, "label": record.get(n.spans_key)}
        annotated = read_doccano(keyed, where, text_key=text_key, offsets=n.offsets, counts=counts,
                                 ambiguous=n.ambiguous_offsets)
    elif style == "label_studio":
        annotated = read_label_studio(record, where, text_key=text_key, offsets=n.offsets, counts=counts,
                                      ambiguous=n.ambiguous_offsets)
    elif style == "spans":
        annotated = read_span_dicts(record, where, text_key=text_key, spans_key=n.spans_key, offsets=n.offsets,
                                    counts=counts, ambiguous=n.ambiguous_offsets)
    else:
        annotated = read_token_tags(record, where, tokens_key=n.tokens_key, tags_key=n.tags_key,
                                    label_names=n.tag_names or None, scheme=scheme, separator=separator,
                                    counts=counts)
    if annotated is None:  # a Label Studio task nobody annotated, a Prodigy reject: scored, not trained on
        holder = record.get("data") or {} if style == "label_studio" else record
        return _unlabelled_text(holder, cfg, where, separator), None
    text, spans = annotated
    return text, [Span(s.start, s.end, n.label_map.get(s.label, s.label)) for s in spans]


def type_lines(tags: Any, lines: list[int] | None, label_map: Mapping[str, str]) -> dict[str, int]:
    """{entity type (after ner.label_map): the line of the first token tagged with it} of a CoNLL sentence's tags
    and its tokens' lines; {} without them. A clash of spellings then names the line an editor shows the tag on."""
    found: dict[str, int] = {}
    for tag, line in zip(tags if isinstance(tags, list) else [], lines or []):
        kind = parse_tag(str(tag))[1]
        if kind:
            found.setdefault(label_map.get(kind, kind), int(line))
    return found


def malformed_note(url: str, malformed: int, entities: int, scheme: str, setting: str, first: str) -> str:
    """What ingest says of a file whose tag sequences break their scheme (an I- that no B- begins, a type that
    changes inside an entity, BIOES without its E-): how many of its entities, which scheme (and whether detected),
    where the first is (`first`: 'line 12' or 'record 3', the record it is in), how they were read and the setting
    that would read them otherwise."""
    how = "detected over the file (ner.tag_scheme: auto)" if setting == "auto" else "ner.tag_scheme"
    return (f"{url}: {malformed:,} of its {entities:,} entities have tags that break the {scheme} scheme ({how}), "
            f"the first in the record at {first}: an I- that no B- begins, or a type that changes inside an entity. "
            "They are read as seqeval's default mode reads them (an I- after O begins an entity) and counted as "
            "malformed_tag_sequences in the raw manifest; if the file is written in another scheme, set "
            "ner.tag_scheme")


class NerTask:
    name = "ner"
    label_map_setting = LABEL_MAP_SETTING  # the mapping that merges spellings of one label
    model_kind = "token-classification"  # the Hugging Face head score.model must have
    output_area = "entities"  # the lake area score writes
    nested_records = True  # json(l) records are read as the objects they are: span lists mix numbers and text
    read_rule = TOKENS_RULE

    def read_rows(self, frame: pl.DataFrame, cfg: PipelineConfig, url: str, lines: list[int] | None) -> RowsRead:
        """Each record's text and spans (see read_record), entity types rewritten by ner.label_map (ingest then refuses
        two spellings of one type, as it does labels). Raises SpanError (an InputDataError) naming url and the record
        or line."""
        records, dropped, notes = without_position_marks(frame.to_dicts(), cfg.ner, url)
        scheme, separator = file_scheme(records, cfg.ner, url), file_separator(records, cfg.ner)
        texts: list[str | None] = []
        labels: list[str | None] = []
        counts: Counter[str] = Counter(position_marks_dropped=dropped)
        entities, first_malformed = 0, ""
        for index, record in enumerate(records):
            at = line_or_row(index, lines[index] if lines else None, 'record')
            before = counts["malformed_tag_sequences"]
            text, spans = read_record(record, f"{url} {at}", cfg, scheme, counts, separator)
            first_malformed = first_malformed or (at if counts["malformed_tag_sequences"] > before else "")
            texts.append(text)
            labels.append(None if spans is None else encode_spans(spans))
            entities += len(spans or [])
        counts["entities"] = entities
        if first_malformed:
            notes.append(malformed_note(url, counts["malformed_tag_sequences"], entities, scheme, cfg.ner.tag_scheme,
                                        first_malformed))
        member_lines = None
        if TOKEN_LINES in frame.columns:
            member_lines = [type_lines(record.get(cfg.ner.tags_key), numbers, cfg.ner.label_map)
                            for record, numbers in zip(records, frame[TOKEN_LINES].to_list())]
        return RowsRead(pl.Series(texts, dtype=pl.String), pl.Series(labels, dtype=pl.String),
                        {k: int(v) for k, v in counts.items() if v}, notes, member_lines)

    def required_columns(self, cfg: PipelineConfig) -> dict[str, str | None]:
        """None beyond ingest's: each record's style says where its text is (a text key, Label Studio's data, or
        tokens)."""
        return {}

    def label_members(self, label: str) -> list[str]:
        return [s.label for s in decode_spans(label)]

    def require(self, cfg: PipelineConfig, stage: str) -> None:
        """Entities support every setting of every stage."""

    def label_setting(self, cfg: PipelineConfig) -> str:
        return LABEL_MAP_SETTING

    def agreement_key(self, label: str) -> str:
        """The spans' types and lengths and the gaps between them, not where the first one starts: the same
        entities shifted by an edit before them agree; another type, boundary or entity between them does not."""
        spans = decode_spans(label)
        return json.dumps([[s.label, s.end - s.start, s.start - before.end if before else None]
                           for before, s in zip([None, *spans[:-1]], spans)], ensure_ascii=False)

    def token_label_names(self, lake: Lake, run_date: str, curated_manifest: dict[str, Any]) -> list[str]:
        """The BIO tags of the night's entity types (trainable rows only): O, B-X, I-X, ... (tagging.tag_names)."""
        return tag_names(entity_types(lake, {run_date: curated_manifest}))

    def token_table(self, curated: pl.DataFrame, encoder: Any, labels: list[str], batch_size: int,
                    coverage: cov.CoverageCounter | None = None) -> pa.Table:
        """token_shard_table: the token ids, and for each labelled row its tags and what they could not keep."""
        return token_shard_table(curated, encoder, labels, batch_size, coverage)

    def token_warnings(self, counts: dict[str, Any], cfg: PipelineConfig, texts_cut_warned: bool = False) -> list[str]:
        """A warning when more than MISMATCH_WARNING of the night's entities cannot be reproduced by its tokens (an
        edge inside a token) or lie past tokenize.max_length while training reads only the first window (unless
        the truncated texts' warning was given: it counts the entities they cut)."""
        entities = counts.get("entities", 0)
        found = []
        checks = [("boundary_mismatches", "have an edge inside a token (they train as the whole tokens they overlap)",
                   "a tokenizer that splits these words, or annotations on word edges")]
        if cfg.train.long_text != "chunk" and not texts_cut_warned:  # under chunk, training reads every window
            checks.append(("entities_cut", "lie past tokenize.max_length (training never sees them)",
                           "train.long_text: chunk to train on every window, and score.long_text: chunk to find "
                           "them when scoring"))
        for key, what, setting in checks:
            if entities and counts.get(key, 0) > MISMATCH_WARNING * entities:
                found.append(f"tokenize: {counts[key]} of {entities} entity spans of run_date={cfg.run_date} {what}; "
                             f"see {setting}")
        return found

    def relabel(self, raw: list[str | None], cleaned: list[str], labels: list[str | None]) -> tuple[
            list[str | None], list[str | None]]:
        """Each row's spans on its cleaned text (bert_pipeline/ner/offsets.map_spans); a row whose spans cannot all
        be kept true gets the reason span_unmappable (and keeps its raw label, as rejects keep what was sent)."""
        out: list[str | None] = []
        reasons: list[str | None] = []
        for before, after, label in zip(raw, cleaned, labels):
            mapped = None if label is None else map_spans(before or "", after, decode_spans(label), clean_text)
            out.append(label if label is None or mapped is None else encode_spans(mapped))
            reasons.append(UNMAPPABLE if label is not None and mapped is None else None)
        return out, reasons



def entity_types(lake: Lake, manifests: dict[str, dict[str, Any]]) -> list[str]:
    """The sorted entity types of the trainable (labelled, not conflicting) curated rows of these nights."""
    rows = lake.dataset("curated", manifests).to_table(
        columns=["label"], filter=~pc.field("label_conflict") & pc.field("label").is_valid())
    return sorted({span.label for value in pc.unique(rows["label"]).to_pylist() for span in decode_spans(value)})


def token_shard_table(curated: pl.DataFrame, encoder: Any, tags: list[str], batch_size: int,
                      coverage: cov.CoverageCounter | None = None) -> pa.Table:
    """An NER token shard: doc_id, input_ids, length, label_id (0 = trainable, -1 = not: unlabelled or in
    conflict), split, truncated, and per labelled row `tag_ids` (list<int16> into `tags`, -100 on special tokens:
    bert_pipeline/ner/tagging.token_labels_for_spans), `entities` (its spans), `boundary_mismatches` (spans with
    an edge inside a token) and `entities_cut` (spans past tokenize.max_length). Encoded with offsets (`encode_batch`), which the alignment
    needs; `coverage` counts the same encodings."""
    texts = curated["text"].to_list()
    labels = curated["label"].to_list()
    trainable = [label is not None and not conflict for label, conflict in
                 zip(labels, curated["label_conflict"].to_list())]
    ids: list[list[int]] = []
    tag_ids: list[list[int] | None] = []
    mismatches, cut, truncated, entities = [], [], [], []
    for start in range(0, len(texts), batch_size):
        batch = texts[start:start + batch_size]
        encodings = encoder.encode_batch(batch)
        if coverage is not None:
            coverage.add(batch, encodings, with_offsets=True)
        for row, encoding in enumerate(encodings, start):
            ids.append(encoding.ids)
            truncated.append(bool(encoding.overflowing))
            if not trainable[row]:
                tag_ids.append(None)
                mismatches.append(0)
                cut.append(0)
                entities.append(0)
                continue
            spans = decode_spans(labels[row])
            read_up_to = max((end for _, end in encoding.offsets), default=0)
            kept = [span for span in spans if span.start < read_up_to]
            row_tags, missed = token_labels_for_spans(encoding.offsets, kept, tags)
            tag_ids.append(row_tags.tolist())
            mismatches.append(missed)
            cut.append(len(spans) - len(kept))
            entities.append(len(spans))
    id_type = pa.uint16() if encoder.get_vocab_size() <= np.iinfo(np.uint16).max + 1 else pa.uint32()
    return pa.table({
        "doc_id": curated["doc_id"].to_arrow(),
        "input_ids": pa.array(ids, pa.list_(id_type)),
        "length": pa.array([len(i) for i in ids], pa.int32()),
        "label_id": pa.array([0 if ok else -1 for ok in trainable], pa.int16()),
        "split": curated["split"].to_arrow(),
        "truncated": pa.array(truncated),
        "tag_ids": pa.array(tag_ids, pa.list_(pa.int16())),
        "boundary_mismatches": pa.array(mismatches, pa.int16()),
        "entities_cut": pa.array(cut, pa.int16()),
        "entities": pa.array(entities, pa.int32()),
    })
