"""One exported annotation record (a dict) -> (text, spans) in the canonical form, checked by `check_spans`.

Each reader returns None for a record that carries no usable annotation (a Label Studio task whose annotations are all
cancelled or absent, a Prodigy "reject"/"ignore" answer) - "not annotated" is not "annotated, no entities" - and
adds what it saw to `counts` if given: `trimmed_spans`, `unlabelled_records` by reason (the caller keeps such a
record's text, scored and not trained on), `malformed_tag_sequences`, `multi_label_regions`.
`offsets="utf16"` converts offsets counted in UTF-16 units first (Label Studio and doccano count in the browser: an
emoji is 2), `offsets="utf8"` offsets counted in UTF-8 bytes (Go, Rust and C tools); it is a setting, never guessed.
Errors are SpanError naming `where`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal, Mapping, Sequence

from bert_pipeline.ner.spans import (
    OFFSETS_SETTING, Span, SpanError, check_spans, check_utf16_setting, is_int, utf8_to_code_points,
    utf16_to_code_points,
)
from bert_pipeline.ner.tagging import GLUE_SCRIPTS, join_tokens, spans_from_tags

Offsets = Literal["code_points", "utf16", "utf8"]
Ambiguity = Literal["refuse", "code_points"]  # ner.ambiguous_offsets
Annotated = tuple[str, list[Span]]


def _text(record: Mapping[str, Any], key: str, where: str) -> str:
    value = record.get(key)
    if not isinstance(value, str):
        raise SpanError(f"{where}: the record has no text string under {key!r} (keys: {sorted(record)}); "
                        "set ingest.text_column to the key that holds it", "no_text")
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
        return (item[1], item[2], item[0], None) if _label_first(item) else (item[0], item[1], item[2], None)
    raise SpanError(f"{where}: entity {item!r} is neither a dict with start/end/label nor [start, end, label]",
                    "bad_span")


def _label_first(item: Sequence[Any]) -> bool:
    """Whether a list entry is Argilla v1's [label, start, end] rather than doccano's [start, end, label]: its first
    element is a string and, when its last is a string too, the first is not a number. ["0", "8", "LOC"] is doccano's
    order with quoted offsets (refused naming '0', '8'), ["1", 0, 8] Argilla's with a numeric label."""
    if not isinstance(item[0], str):
        return False
    return not isinstance(item[2], str) or not item[0].strip().lstrip("+-").isdigit()


def _finish(text: str, entries: Sequence[tuple[Any, Any, Any, Any]], where: str, offsets: Offsets,
            counts: Counter[str] | None, ambiguous: Ambiguity = "refuse") -> Annotated:
    """Converts offsets if told to, then check_spans (expected texts where the tool stored them; code-point offsets
    that read as plausibly in UTF-16 units refused unless `ambiguous` is code_points)."""
    triples = [(s, e, label) for s, e, label, _ in entries]
    if offsets != "code_points" and triples:
        ints = [int(v) for s, e, _ in triples for v in (s, e) if is_int(v)]
        if len(ints) == 2 * len(triples):
            convert = utf16_to_code_points if offsets == "utf16" else utf8_to_code_points
            try:
                converted = iter(convert(text, ints))
            except ValueError as exc:
                raise SpanError(f"{where}: {exc} (with {OFFSETS_SETTING}: {offsets}); if this file counts code "
                                f"points, as Python tools do, set {OFFSETS_SETTING}: code_points for it",
                                "outside_text") from exc
            given = triples
            triples = [(next(converted), next(converted), label) for _, _, label in triples]
            if offsets == "utf16" and all(t is None for *_, t in entries):
                check_utf16_setting(text, [(s, e) for s, e, _ in given], [(s, e) for s, e, _ in triples], where)
    expected = [t for *_, t in entries]
    spans, trimmed = check_spans(text, triples, where,
                                 expected_texts=expected if any(t is not None for t in expected) else None,
                                 refuse_ambiguous=offsets == "code_points" and ambiguous == "refuse")
    if counts is not None:
        counts["trimmed_spans"] += trimmed
    return text, spans


def read_doccano(record: Mapping[str, Any], where: str, *, text_key: str = "text", offsets: Offsets = "code_points",
                 counts: Counter[str] | None = None, ambiguous: Ambiguity = "refuse") -> Annotated:
    """doccano JSONL: {"text", "label": [[start, end, "PER"], ...]} (older exports: "labels"; 1.x with relations:
    "entities": [{"start_offset", "end_offset", "label"}])."""
    text = _text(record, text_key, where)
    raw = next((record[k] for k in ("label", "labels", "entities") if k in record), [])
    if not isinstance(raw, list):
        raise SpanError(f"{where}: 'label' is {type(raw).__name__}; doccano span exports hold a list of "
                        "[start, end, label] (a string is a text-classification export)", "bad_span")
    return _finish(text, [_entry(item, where) for item in raw], where, offsets, counts, ambiguous)


def _not_annotated(counts: Counter[str] | None, reason: str) -> None:
    """Counts a record read as text only: the caller keeps its text as an unlabelled row (scored, not trained on)."""
    if counts is not None:
        counts[f"unlabelled_records.{reason}"] += 1


def read_label_studio(record: Mapping[str, Any], where: str, *, text_key: str = "text",
                      offsets: Offsets = "code_points", counts: Counter[str] | None = None,
                      ambiguous: Ambiguity = "refuse") -> Annotated | None:
    """A Label Studio JSON-export task: data[text_key] and the spans of its annotation: the one marked `ground_truth`,
    else the one not `was_cancelled`. Its results with a value {start, end, labels, text} are the spans (other result
    types - choices, relations - are ignored); labels[0] is the type. Several such annotations (annotators) must
    agree on every span; if they do not, a SpanError names them, since taking one would drop the others' work
    unseen. Returns None when no annotation is usable."""
    text = _text(record.get("data") or {}, text_key, f"{where} (data)")
    usable = [a for a in record.get("annotations") or [] if not a.get("was_cancelled")]
    if not usable:
        _not_annotated(counts, "cancelled" if record.get("annotations") else "unannotated")
        return None
    candidates = [a for a in usable if a.get("ground_truth")] or usable
    entries = [_label_studio_entries(a, where) for a in candidates]
    annotated = _finish(text, entries[0], where, offsets, counts, ambiguous)
    # the others compared as read (offsets converted, checked, whitespace trimmed): a trailing space still agrees
    if any(_finish(text, found, where, offsets, None, ambiguous)[1] != annotated[1] for found in entries[1:]):
        shown = "; ".join(_described(a, i, found) for i, (a, found) in enumerate(zip(candidates, entries)))
        several_truths = len(candidates) > 1 and all(a.get("ground_truth") for a in candidates)
        advice = ("They are all marked as ground truth: keep that mark on the one to train on only"
                  if several_truths else "Mark the one to train on as ground truth in Label Studio, or cancel the "
                  "others")
        raise SpanError(f"{where}: the task has {len(candidates)} {'ground-truth ' if several_truths else ''}"
                        f"annotations that disagree ({shown}). {advice}, and export again (nothing was written).",
                        "annotations_disagree")
    if counts is not None:
        counts["multi_label_regions"] += sum(len((r.get("value") or {}).get("labels") or []) > 1
                                             for r in candidates[0].get("result") or [] if _is_span_result(r))
        counts["agreeing_annotations"] += len(candidates) - 1
    return annotated


def _described(annotation: Mapping[str, Any], index: int, entries: list[tuple[Any, Any, Any, Any]]) -> str:
    """'annotation 12 by 3: PER 'Ngozi Okonjo', ORG [18, 27)': who annotated what, for a disagreement."""
    who = f" by {annotation['completed_by']}" if annotation.get("completed_by") is not None else ""
    found = ", ".join(f"{label} {text!r}" if text else f"{label} [{s}, {e})" for s, e, label, text in entries)
    return f"annotation {annotation.get('id', index + 1)}{who}: {found or 'no entities'}"


def _is_span_result(result: Mapping[str, Any]) -> bool:
    value = result.get("value") or {}
    return "start" in value and "labels" in value


def _label_studio_entries(annotation: Mapping[str, Any], where: str) -> list[tuple[Any, Any, Any, Any]]:
    """(start, end, label, text) of an annotation's span results, as exported."""
    return [_entry(result["value"], where) for result in annotation.get("result") or [] if _is_span_result(result)]


def read_span_dicts(record: Mapping[str, Any], where: str, *, text_key: str = "text", spans_key: str | None = None,
                    offsets: Offsets = "code_points", counts: Counter[str] | None = None,
                    ambiguous: Ambiguity = "refuse") -> Annotated | None:
    """spaCy (`Doc.to_json()` "ents"), Prodigy ("spans", answer accept/reject/ignore), Argilla ("entities", or v1
    "annotation" as [label, start, end]) and Label Studio JSON-MIN ("label": [{start, end, text, labels}]):
    a list of dicts with start/end (or start_char/end_char) and label. spans_key None tries spans, entities, ents
    (pass "annotation" for Argilla v1, "label" for JSON-MIN). A record without the list is an error (an empty list
    is a record without entities). Returns None for a Prodigy reject/ignore."""
    if record.get("answer") in ("reject", "ignore"):
        _not_annotated(counts, f"answer_{record['answer']}")
        return None
    text = _text(record, text_key, where)
    keys = [spans_key] if spans_key else ["spans", "entities", "ents"]
    raw = next((record[k] for k in keys if k in record), None)
    if not isinstance(raw, list):
        raise SpanError(f"{where}: no list of entities under {keys} (keys: {sorted(record)}); set the spans key",
                        "bad_span")
    return _finish(text, [_entry(item, where) for item in raw], where, offsets, counts, ambiguous)


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
            raise SpanError(f"{where}: integer tags {sorted(set(tags))} need the tag names they index: set "
                            f"ner.tag_names to the dataset's list (features['ner_tags'].feature.names; "
                            f"{0 if label_names is None else len(label_names)} given)", "bad_tags")
        tags = [label_names[int(t)] for t in tags]
    text, token_offsets = join_tokens(tokens, separator=separator, glue_scripts=glue_scripts)
    spans, malformed = spans_from_tags(token_offsets, tags, scheme, where=where)
    if counts is not None:
        counts["malformed_tag_sequences"] += malformed
    return _finish(text, [(s.start, s.end, s.label, None) for s in spans], where, "code_points", counts,
                   "code_points")  # offsets computed here, from the tokens: nothing to doubt
