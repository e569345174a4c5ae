"""One exported annotation record (a dict) -> (text, spans) in the canonical form, checked by `check_spans`.

Each reader returns None for a record that carries no usable annotation (a Label Studio task whose annotations are all
cancelled or absent, a Prodigy "reject"/"ignore" answer) - "not annotated" is not "annotated, no entities" - and
adds what it saw to `counts` if given: `trimmed_spans`, `skipped_records` by reason, `malformed_tag_sequences`,
`multi_label_regions`. `offsets="utf16"` converts offsets counted in UTF-16 units first (Label Studio and doccano
count in the browser: an emoji is 2); it is a setting, never guessed. Errors are SpanError naming `where`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal, Mapping, Sequence

from bert_pipeline.ner.spans import Span, SpanError, check_spans, is_int, utf16_to_code_points
from bert_pipeline.ner.tagging import GLUE_SCRIPTS, join_tokens, spans_from_tags

Offsets = Literal["code_points", "utf16"]
Annotated = tuple[str, list[Span]]


def _text(record: Mapping[str, Any], key: str, where: str) -> str:
    value = record.get(key)
    if not isinstance(value, str):
        raise SpanError(f"{where}: the record has no text string under {key!r} (keys: {sorted(record)}); "
                        "set the text key", "no_text")
    return value


def _entry(item: Any, where: str) -> tuple[Any, Any, Any, Any]:
    """(start, end, label, text or None) from a dict (start/end, start_char/end_char, start_offset/end_offset;
    label or labels[0]) or a list: [start, end, label] (doccano) or [label, start, end, ...] (Argilla v1)."""
    if isinstance(item, Mapping):
        start = next((item[k] for k in ("start", "start_char", "start_offset") if k in item), None)
        end = next((item[k] for k in ("end", "end_char", "end_offset") if k in item), None)
        label = item.get("label", (item.get("labels") or [None])[0])
        return start, end, label, item.get("text")
    if isinstance(item, (list, tuple)) and len(item) >= 3:
        return (item[1], item[2], item[0], None) if isinstance(item[0], str) else (item[0], item[1], item[2], None)
    raise SpanError(f"{where}: entity {item!r} is neither a dict with start/end/label nor [start, end, label]",
                    "bad_span")


def _finish(text: str, entries: Sequence[tuple[Any, Any, Any, Any]], where: str, offsets: Offsets,
            counts: Counter[str] | None) -> Annotated:
    """Converts offsets if told to, then check_spans (expected texts where the tool stored them)."""
    triples = [(s, e, label) for s, e, label, _ in entries]
    if offsets == "utf16" and triples:
        ints = [int(v) for s, e, _ in triples for v in (s, e) if is_int(v)]
        if len(ints) == 2 * len(triples):
            try:
                converted = iter(utf16_to_code_points(text, ints))
            except ValueError as exc:
                raise SpanError(f"{where}: {exc}", "outside_text") from exc
            triples = [(next(converted), next(converted), label) for _, _, label in triples]
    expected = [t for *_, t in entries]
    spans, trimmed = check_spans(text, triples, where,
                                 expected_texts=expected if any(t is not None for t in expected) else None)
    if counts is not None:
        counts["trimmed_spans"] += trimmed
    return text, spans


def read_doccano(record: Mapping[str, Any], where: str, *, text_key: str = "text", offsets: Offsets = "code_points",
                 counts: Counter[str] | None = None) -> Annotated:
    """doccano JSONL: {"text", "label": [[start, end, "PER"], ...]} (older exports: "labels"; 1.x with relations:
    "entities": [{"start_offset", "end_offset", "label"}])."""
    text = _text(record, text_key, where)
    raw = next((record[k] for k in ("label", "labels", "entities") if k in record), [])
    if not isinstance(raw, list):
        raise SpanError(f"{where}: 'label' is {type(raw).__name__}; doccano span exports hold a list of "
                        "[start, end, label] (a string is a text-classification export)", "bad_span")
    return _finish(text, [_entry(item, where) for item in raw], where, offsets, counts)


def _skip(counts: Counter[str] | None, reason: str) -> None:
    if counts is not None:
        counts[f"skipped_records.{reason}"] += 1


def read_label_studio(record: Mapping[str, Any], where: str, *, text_key: str = "text",
                      offsets: Offsets = "code_points", counts: Counter[str] | None = None) -> Annotated | None:
    """A Label Studio JSON-export task: data[text_key], the first annotation not `was_cancelled`, its results with a
    value {start, end, labels, text} (other result types - choices, relations - are ignored). labels[0] is the type.
    Returns None when no annotation is usable."""
    text = _text(record.get("data") or {}, text_key, f"{where} (data)")
    annotation = next((a for a in record.get("annotations") or [] if not a.get("was_cancelled")), None)
    if annotation is None:
        _skip(counts, "cancelled" if record.get("annotations") else "unannotated")
        return None
    entries = []
    for result in annotation.get("result") or []:
        value = result.get("value") or {}
        if "start" not in value or "labels" not in value:
            continue
        if counts is not None and len(value["labels"]) > 1:
            counts["multi_label_regions"] += 1
        entries.append(_entry(value, where))
    return _finish(text, entries, where, offsets, counts)


def read_span_dicts(record: Mapping[str, Any], where: str, *, text_key: str = "text", spans_key: str | None = None,
                    offsets: Offsets = "code_points", counts: Counter[str] | None = None) -> Annotated | None:
    """spaCy (`Doc.to_json()` "ents"), Prodigy ("spans", answer accept/reject/ignore), Argilla ("entities", or v1
    "annotation" as [label, start, end]) and Label Studio JSON-MIN ("label": [{start, end, text, labels}]):
    a list of dicts with start/end (or start_char/end_char) and label. spans_key None tries spans, entities, ents
    (pass "annotation" for Argilla v1, "label" for JSON-MIN). A record without the list is an error (an empty list
    is a record without entities). Returns None for a Prodigy reject/ignore."""
    if record.get("answer") in ("reject", "ignore"):
        _skip(counts, f"answer_{record['answer']}")
        return None
    text = _text(record, text_key, where)
    keys = [spans_key] if spans_key else ["spans", "entities", "ents"]
    raw = next((record[k] for k in keys if k in record), None)
    if not isinstance(raw, list):
        raise SpanError(f"{where}: no list of entities under {keys} (keys: {sorted(record)}); set the spans key",
                        "bad_span")
    return _finish(text, [_entry(item, where) for item in raw], where, offsets, counts)


def read_token_tags(record: Mapping[str, Any], where: str, *, tokens_key: str = "tokens", tags_key: str = "ner_tags",
                    label_names: Sequence[str] | None = None, scheme: str = "IOB2", separator: str | None = None,
                    glue_scripts: Sequence[str] = GLUE_SCRIPTS, counts: Counter[str] | None = None) -> Annotated:
    """Token and tag lists (HF datasets, e.g. conll2003, wnut_17): tags as strings, or ints into `label_names`
    (`dataset.features["ner_tags"].feature.names`). Tokens are joined by join_tokens. Malformed tag sequences are
    read as seqeval's default mode reads them and counted. The scheme is a setting: detect_scheme over the file's
    tags can choose it."""
    tokens, tags = record.get(tokens_key), record.get(tags_key)
    if not isinstance(tokens, list) or not isinstance(tags, list) or len(tokens) != len(tags):
        raise SpanError(f"{where}: needs lists {tokens_key!r} and {tags_key!r} of one length", "bad_tags")
    if tags and all(is_int(t) for t in tags):
        if label_names is None or not all(0 <= t < len(label_names) for t in tags):
            raise SpanError(f"{where}: integer tags {sorted(set(tags))} need the label list they index "
                            f"(label_names, {0 if label_names is None else len(label_names)} given)", "bad_tags")
        tags = [label_names[int(t)] for t in tags]
    text, token_offsets = join_tokens(tokens, separator=separator, glue_scripts=glue_scripts)
    spans, malformed = spans_from_tags(token_offsets, tags, scheme, where=where)
    if counts is not None:
        counts["malformed_tag_sequences"] += malformed
    return _finish(text, [(s.start, s.end, s.label, None) for s in spans], where, "code_points", counts)
