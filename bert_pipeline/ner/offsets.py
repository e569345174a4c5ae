"""Spans through a text rewrite: curation cleans the raw text (mojibake repaired, HTML unescaped and stripped,
whitespace collapsed, NFC), and every entity must still cover the same characters afterwards.

The raw -> clean offset map comes from the edit script between the two strings (Python's `difflib.SequenceMatcher`,
Ratcliff/Obershelp matching, junk heuristic off): a span's edges move with the unchanged runs they sit in. The map is
a guess where the rewrite touched the edge itself, so every mapped span is then checked: the cleaned text's slice must
equal the span's raw text cleaned the same way (`clean(raw[start:end])`). A span that fails, or whose text cleaning
removes, cannot be kept true: its row is rejected with the reason `span_unmappable` rather than trained on wrong
entities.
"""

from __future__ import annotations

import bisect
from difflib import SequenceMatcher
from typing import Callable, Sequence

from bert_pipeline.ner.spans import Span

UNMAPPABLE = "span_unmappable"  # the rejects reason of a row with a span that cleaning could not keep true


def _position_map(raw: str, cleaned: str) -> Callable[[int, bool], int | None]:
    """raw offset -> cleaned offset, through the edit script (`SequenceMatcher.get_opcodes`). `end`: the offset
    closes a span (it maps through the edit holding the character before it); else it opens one (the edit holding
    the character at it). Inside an unchanged run an offset moves with the run; a replaced run (`e` + U+0301 -> `é`)
    maps only at its edges; a removed character maps nowhere (None)."""
    edits = [op for op in SequenceMatcher(None, raw, cleaned, autojunk=False).get_opcodes() if op[1] < op[2]]
    firsts = [op[1] for op in edits]

    def at(offset: int, end: bool) -> int | None:
        char = offset - 1 if end else offset
        tag, i1, i2, j1, j2 = edits[bisect.bisect_right(firsts, char) - 1]
        if tag == "equal":
            return j1 + (offset - i1)
        if tag == "replace" and offset == (i2 if end else i1):
            return j2 if end else j1
        return None

    return at


def map_spans(raw: str, cleaned: str, spans: Sequence[Span], clean: Callable[[str], str]) -> list[Span] | None:
    """The spans of `raw` as spans of `cleaned` (code points, sorted), or None when one cannot be kept true.

    raw: the text the spans were given on; cleaned: `clean(raw)`; clean: the cleaning function itself, used to check
    each mapped span (`cleaned[s:e] == clean(raw[span])`). Texts that cleaning left unchanged keep their spans as
    they are (the common case, no matching run).
    """
    if raw == cleaned or not spans:
        return list(spans)
    at = _position_map(raw, cleaned)
    mapped = []
    for span in spans:  # an edge on a removed character (an HTML tag inside the span) moves inwards to a kept one
        start = next((at(i, False) for i in range(span.start, span.end) if at(i, False) is not None), None)
        end = next((at(i, True) for i in range(span.end, span.start, -1) if at(i, True) is not None), None)
        expected = clean(raw[span.start:span.end])
        if start is None or end is None or end <= start or not expected or cleaned[start:end] != expected:
            return None
        mapped.append(Span(start, end, span.label))
    return mapped
