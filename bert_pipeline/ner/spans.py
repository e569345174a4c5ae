"""The canonical NER form: a text plus a sorted tuple of `Span(start, end, label)`.

Offsets are Python code points of the text as stored (what `text[start:end]`, duckdb `substring` and polars
`str.slice` count), half-open: `text[start:end]` is the entity. One character belongs to at most one entity (a flat
tagger cannot hold nested entities). Offsets counted in UTF-16 units (Java/JS tools: Label Studio, doccano's
front-end, brat in a browser; an emoji counts 2) or UTF-8 bytes (Go, Rust and C tools; é counts 2) are converted with
`utf16_to_code_points` / `utf8_to_code_points` when a setting says so, never guessed: the checks below *suggest* that
setting when the other reading would have fit, and refuse a span whose readings are equally plausible
(`_check_offset_unit`) until a setting says which.

Every problem raises `SpanError` whose message names where (file:line or row), the span, the text around it and the
setting that would help; its `reason` is a short code for a rejects/ row when the stage is told to reject bad records.
"""

from __future__ import annotations

import numbers
import unicodedata
from dataclasses import dataclass
from typing import Iterable, NoReturn, Sequence

import regex

from bert_pipeline.errors import InputDataError

# The settings of the `ner:` config section (bert_pipeline/config.NerConfig) the messages point to.
OFFSETS_SETTING = "ner.offsets"  # code_points (default) | utf16 | utf8
AMBIGUOUS_SETTING = "ner.ambiguous_offsets"  # refuse (default) | code_points
LABEL_MAP_SETTING = "ner.label_map"  # {spelling: canonical label}
# A character of a script written without spaces between words: text/coverage.NO_SPACE_SCRIPTS, which this layer
# may not import (tests/unit/test_ner_core.py checks the two agree).
ASTRAL_CHAR = regex.compile(r"[\U00010000-\U0010FFFF]")  # counts 2 in UTF-16: an emoji, a rare Han character
NO_SPACE_CHAR = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}]")


class SpanError(InputDataError):
    """An entity annotation that cannot be used as given. `reason` is a short code (e.g. "overlap")."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, order=True)
class Span:
    """One entity: `text[start:end]` (code points, half-open) has type `label`. Sorts by (start, end, label)."""

    start: int
    end: int
    label: str


def context(text: str, start: int, end: int, width: int = 24) -> str:
    """The text around [start, end) with the span in ⟦ ⟧, as a Python literal (whitespace and newlines visible)."""
    start, end = max(0, min(start, len(text))), max(0, min(end, len(text)))
    left = ("…" if start > width else "") + text[max(0, start - width):start]
    right = text[end:end + width] + ("…" if end + width < len(text) else "")
    return repr(f"{left}⟦{text[start:end]}⟧{right}")


def _fail(where: str, span: object, text: str, start: int, end: int, problem: str, hint: str, reason: str) -> NoReturn:
    raise SpanError(f"{where}: span {span} {problem}; text around it: {context(text, start, end)}. {hint}", reason)


def _utf16_length(text: str) -> int:
    return len(text) + len(ASTRAL_CHAR.findall(text))


def utf16_to_code_points(text: str, offsets: Sequence[int]) -> list[int]:
    """Offsets counted in UTF-16 code units (an astral character such as an emoji counts 2) -> code-point offsets.

    offsets: any ints in [0, utf16 length of text]. Returns a list of the same length.
    Raises ValueError for an offset outside the text or one that falls between the two halves of a surrogate pair.
    """
    if not ASTRAL_CHAR.search(text):
        table: dict[int, int] | None = None
    else:
        table, unit = {}, 0
        for index, char in enumerate(text):
            table[unit] = index
            unit += 2 if ord(char) > 0xFFFF else 1
        table[unit] = len(text)
    result, length = [], _utf16_length(text)
    for offset in offsets:
        if not 0 <= offset <= length or (table is not None and offset not in table):
            raise ValueError(f"UTF-16 offset {offset} is outside the text ({length} units) or inside a surrogate "
                             "pair")
        result.append(offset if table is None else table[offset])
    return result


def utf8_to_code_points(text: str, offsets: Sequence[int]) -> list[int]:
    """Offsets counted in UTF-8 bytes (as Go, Rust and C tools count: é counts 2, 中 3, an emoji 4) -> code-point
    offsets.

    offsets: any ints in [0, UTF-8 length of text]. Returns a list of the same length.
    Raises ValueError for an offset outside the text or one that falls inside a character's bytes.
    """
    encoded = text.encode("utf-8")
    result = []
    for offset in offsets:
        try:
            if not 0 <= offset <= len(encoded):
                raise UnicodeDecodeError("utf-8", encoded, offset, offset, "outside")
            result.append(len(encoded[:offset].decode("utf-8")))  # strict: a prefix ending inside a character fails
        except UnicodeDecodeError:
            raise ValueError(f"UTF-8 offset {offset} is outside the text ({len(encoded)} bytes) or inside a "
                             "character") from None
    return result


def _as_span(item: object, where: str) -> Span:
    """A Span from a Span or a (start, end, label) sequence; start/end must be ints (not bools), label a str."""
    if isinstance(item, Span):
        start, end, label = item.start, item.end, item.label
    elif isinstance(item, (tuple, list)) and len(item) == 3:
        start, end, label = item
    else:
        raise SpanError(f"{where}: {item!r} is not a (start, end, label) span", "bad_span")
    if not is_int(start) or not is_int(end):
        raise SpanError(f"{where}: span {item!r} has offsets {start!r}, {end!r}; they must be integers", "bad_span")
    if not isinstance(label, str) or not label.strip():
        raise SpanError(f"{where}: span {item!r} has label {label!r}; it must be a non-empty string", "bad_label")
    return Span(int(start), int(end), label)


def is_int(value: object) -> bool:
    """An integer offset or id: int or numpy integer, not bool (True would silently be 1) nor float."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _unit_hint(text: str, span: Span, expected: str | None) -> str:
    """The offsets settings that would read this span right: utf16 when the text has characters outside the Basic
    Multilingual Plane and the UTF-16 reading fits, utf8 when the text is not ASCII and the UTF-8 byte reading fits;
    every unit that fits, '' when none does. Fits: inside the text, on character edges, and the expected text if one
    is given; else not blank, and readings without whitespace at their edges are preferred to those with it."""
    clean, spaced = [], []
    for unit, convert, applies in (("utf16", utf16_to_code_points, ASTRAL_CHAR.search(text)),
                                   ("utf8", utf8_to_code_points, not text.isascii())):
        if not applies:
            continue
        try:
            start, end = convert(text, [span.start, span.end])
        except ValueError:
            continue
        covered = text[start:end]
        if covered.strip() and (expected is None or covered == expected):
            (clean if _clean_edges(covered) else spaced).append(_setting_hint(unit, covered))
    hints = clean or spaced
    return " Or: ".join(hint.strip() for hint in hints) + " " if hints else ""


def _setting_hint(unit: str, covered: str) -> str:
    counts = {"utf16": "UTF-16 units (an emoji counts 2, as Java/JS tools count)",
              "utf8": "UTF-8 bytes (é counts 2 and 中 3, as Go, Rust and C tools count)"}[unit]
    return f"Read as {counts} it is {covered!r}: set `{OFFSETS_SETTING}: {unit}`. "


def _cuts_words(text: str, start: int, end: int) -> bool:
    """Whether a span edge surely falls inside a word: between two letters or digits, neither of a script written
    without spaces (between two Han characters the word edge is unknown; between Han and Latin, as in 在Paris, there
    is one). False for an invalid span."""
    return _cut_edges(text, start, end) > 0


def _cut_edges(text: str, start: int, end: int) -> int:
    """How many of a span's two edges surely fall inside a word (see `_cuts_words`); 0 for an invalid span."""
    if not 0 <= start < end <= len(text):
        return 0
    cut = 0
    for edge in (start, end):  # a plain loop: this runs for every exported span of non-ASCII text
        if 0 < edge < len(text):
            left, right = text[edge - 1], text[edge]
            if _word_char(left) and _word_char(right) and not NO_SPACE_CHAR.match(left) \
                    and not NO_SPACE_CHAR.match(right):
                cut += 1
    return cut


def _unspaced_edge(text: str, edge: int) -> bool:
    """Whether an offset falls between two characters of a script written without spaces, where a word edge is
    unknown."""
    return 0 < edge < len(text) and bool(NO_SPACE_CHAR.match(text[edge - 1])) and bool(NO_SPACE_CHAR.match(text[edge]))


def _word_char(char: str) -> bool:
    """A letter, digit or combining mark (NFD text: 'e' + U+0301 is one letter to a reader)."""
    return char.isalnum() or unicodedata.category(char).startswith("M")


def _bad_edges(text: str, start: int, end: int) -> int:
    """How many of a span's edges no annotator would choose: inside a word, or on whitespace."""
    covered = text[start:end]
    return _cut_edges(text, start, end) + (covered[:1].isspace()) + (covered[-1:].isspace())


def _mismatch_hint(text: str, span: Span, expected: str) -> str:
    hint = _unit_hint(text, span, expected)
    if not hint and text[span.start:span.end + 1] == expected:
        hint = "The end offset looks inclusive (the text matches one character further); fix the exporter. "
    if not hint and unicodedata.normalize("NFC", text[span.start:span.end]) == unicodedata.normalize("NFC", expected):
        hint = "They differ only in Unicode normalization (NFC/NFD): read spans before any text cleaning. "
    return hint


def _check_offset_unit(text: str, span: Span, where: str, reject: str) -> None:
    """For a span an exporter gave in code points without storing the entity text: refuses offsets that may count
    UTF-16 units. After an emoji (or any character outside the Basic Multilingual Plane) the two readings differ, and
    word edges tell them apart: a code-point reading that cuts a word where the UTF-16 reading does not, and reads as
    a believable entity (`_believable`), is refused suggesting ner.offsets: utf16; the other way round it is code
    points. Between two characters of a script written without spaces (Han, Kana, Thai...: `NO_SPACE_CHAR`) the word
    edge is unknown; where neither reading surely cuts a word and the span is in or next to such text, unless the
    UTF-16 reading starts or ends with whitespace while the code-point one does not, nothing in the record says
    which is meant, and the span is refused naming both readings and both settings. In other scripts a span that
    cuts a word either way is left to the tokenize stage's boundary count (sub-word entities such as Paris in
    #Paris2024 exist). UTF-8 byte offsets are judged over the whole record (`_check_utf8_record`).
    ner.ambiguous_offsets: code_points trusts the code points and skips all this."""
    if ASTRAL_CHAR.search(text, 0, span.end):  # something before the span's end counts 2 in UTF-16
        _check_utf16_reading(text, span, where, reject)


def _check_utf16_reading(text: str, span: Span, where: str, reject: str) -> None:
    try:
        start, end = utf16_to_code_points(text, [span.start, span.end])
    except ValueError:  # not a UTF-16 reading of this text (out of range, or inside an emoji): code points
        return
    if (start, end) == (span.start, span.end) or not text[start:end].strip():
        return
    cuts, cuts_utf16 = _cuts_words(text, span.start, span.end), _cuts_words(text, start, end)
    if cuts_utf16 and not cuts:  # the UTF-16 reading cuts a word the code points keep whole: code points it is
        return
    if cuts and not cuts_utf16 and _believable(text[start:end]) and _bad_edges(text, span.start, span.end) >= 2:
        _fail(where, span, text, span.start, span.end, f"cuts a word ({text[span.start:span.end]!r}) after "
              "an emoji or other character outside the Basic Multilingual Plane", _unit_hint(text, span, None)
              + _TRUST_HINT + reject, "utf16_offsets")
    both = text[min(start, span.start):max(end, span.end)]
    if not NO_SPACE_CHAR.search(both):
        return
    if _clean_edges(text[span.start:span.end]) and not _clean_edges(text[start:end]):
        return  # an exporter does not start or end an entity with a space: code points it is
    _fail(where, span, text, span.start, span.end,
          f"comes after an emoji or other character outside the Basic Multilingual Plane in text without spaces, "
          f"where its offsets read as code points give {text[span.start:span.end]!r} and read as UTF-16 units (an "
          f"emoji counts 2) give {text[start:end]!r}, and nothing in the record says which is meant",
          f"Say what your tool counts: `{OFFSETS_SETTING}: utf16` for Java/JavaScript tools (Label Studio, "
          f"doccano's browser export), `{AMBIGUOUS_SETTING}: code_points` for Python tools (spaCy, Prodigy, "
          "doccano's API). Nothing was written.", "ambiguous_offsets")


def _check_utf8_record(text: str, spans: Sequence[Span], where: str) -> None:
    """For a record's spans an exporter gave in code points without entity texts: refuses the record when its offsets
    read as UTF-8 bytes fit and as code points do not. That is: some span's code-point reading cuts a word; every
    span that reads differently in bytes has a byte reading on character edges, of two characters or more, that cuts
    no word, has no edge between two characters of a script without spaces (any edge "fits" there) and looks like an
    entity (`_believable`); and those spans' code-point readings have at least two bad edges between them (a cut
    word or whitespace, `_bad_edges`), since one cut edge is what a correct sub-word entity makes (Paris in
    #Paris2024). Each further span makes a coincidence rarer, while a byte-offset export passes every span; an
    entity cut on both sides (NYC in #INYCForever) can still be refused by coincidence, about 2 in 1,000 such
    tweets. In text without spaces (Chinese, Japanese, Thai) and where words take prefixes or particles (Arabic,
    Korean) word edges say little, and a byte-offset export of one entity there can pass: set the unit when you
    know it."""
    if text.isascii():
        return
    cutting = [span for span in spans if _cuts_words(text, span.start, span.end)]
    if not cutting:  # first: the conversion costs a pass over the text per span
        return
    try:  # every offset at once: the text is encoded once per record
        converted = iter(utf8_to_code_points(text, [offset for span in spans for offset in (span.start, span.end)]))
    except ValueError:  # inside a character's bytes or outside: not a UTF-8 reading of this record
        return
    readings: dict[tuple[int, int], tuple[int, int]] = {}  # offsets that read differently in bytes, and how
    for span in spans:
        start, end = next(converted), next(converted)
        if (start, end) != (span.start, span.end):
            if end - start < 2 or _cuts_words(text, start, end) or not _believable(text[start:end]) \
                    or _unspaced_edge(text, start) or _unspaced_edge(text, end):
                return  # between two Han characters any edge "fits": no evidence that bytes were meant
            readings[span.start, span.end] = (start, end)
    span = next((span for span in cutting if (span.start, span.end) in readings), None)
    if span is None:  # the spans that cut a word cut it in either unit (before any non-ASCII character)
        return
    if sum(_bad_edges(text, *offsets) for offsets in readings) < 2:
        return  # one cut edge is what a correct sub-word entity makes (Paris in #Paris2024): not evidence enough
    start, end = readings[span.start, span.end]
    readings_text = [text[a:b] for a, b in readings.values()]
    others = f" (all {len(readings)} of its spans that read otherwise in bytes read as whole words: " \
        f"{', '.join(map(repr, readings_text))})" if len(readings) > 1 else ""
    _fail(where, span, text, span.start, span.end, f"cuts a word ({text[span.start:span.end]!r}) after a character "
          f"that UTF-8 stores in several bytes{others}", _setting_hint("utf8", text[start:end]) + _TRUST_HINT
          + "Fix the annotation in the export (nothing was written).", "utf8_offsets")


def check_utf16_setting(text: str, given: Sequence[tuple[int, int]], converted: Sequence[tuple[int, int]],
                        where: str) -> None:
    """Under `ner.offsets: utf16`, for a record's spans without entity texts (given: the offsets as exported,
    converted: the same read as UTF-16 units): refuse the record when the offsets read as code points fit and as
    UTF-16 units do not, a file that counts code points (spaCy, Prodigy, doccano's API) in a night set to utf16.
    The evidence is `_check_utf8_record`'s the other way round: every span that reads differently has a code-point
    reading of two characters or more that cuts no word, has no edge between two characters of a script without
    spaces and looks like an entity (`_believable`), and the UTF-16 readings have at least two bad edges between
    them (a cut word or whitespace). Raises SpanError naming `where`, both readings and the setting."""
    differing = [(g, c) for g, c in zip(given, converted) if g != c]
    if not differing:
        return
    for (start, end), _ in differing:
        if not 0 <= start < end <= len(text) or end - start < 2 or _cuts_words(text, start, end) \
                or not _believable(text[start:end]) or _unspaced_edge(text, start) or _unspaced_edge(text, end):
            return
    if sum(_bad_edges(text, *c) for _, c in differing) < 2:
        return
    (start, end), (cut_start, cut_end) = max(differing, key=lambda pair: _bad_edges(text, *pair[1]))
    readings = ", ".join(repr(text[a:b]) for (a, b), _ in differing)
    _fail(where, (start, end), text, cut_start, cut_end,
          f"read as UTF-16 units (`{OFFSETS_SETTING}: utf16`) covers {text[cut_start:cut_end]!r}, cutting a word, "
          f"while read as code points every span that differs is a whole word ({readings})",
          f"This file seems to count code points, as Python tools do (spaCy, Prodigy, doccano's API): set "
          f"`{OFFSETS_SETTING}: code_points` for it. The setting holds for every file of a night: ingest files "
          "that count differently on separate nights. Nothing was written.", "code_point_offsets")


_TRUST_HINT = (f"If your tool counts code points and the entity is part of a word, set "
               f"`{AMBIGUOUS_SETTING}: code_points`. ")


def _clean_edges(covered: str) -> bool:
    return bool(covered) and not covered[0].isspace() and not covered[-1].isspace()


def _believable(covered: str) -> bool:
    """Whether a reading looks like an entity a person selected: it starts with a letter or digit and ends with one
    (or a combining mark, as NFD text does). Half a flag emoji, '️ #' or 'Köln.' are not: a reading in another unit
    that merely avoids cutting a word is no evidence that the tool counted that unit."""
    return bool(covered) and covered[0].isalnum() and _word_char(covered[-1])


def _check_one(text: str, span: Span, where: str, expected: str | None, refuse_ambiguous: bool = False) -> Span:
    """The span with surrounding whitespace trimmed; raises SpanError for anything unusable."""
    reject = "Fix the annotation in the export (nothing was written)."
    if span.start < 0 or span.end > len(text):
        _fail(where, span, text, span.start, span.end, f"is outside the text ({len(text)} code points)",
              _unit_hint(text, span, expected) + reject, "outside_text")
    if span.end <= span.start:
        _fail(where, span, text, span.end, span.start, "ends at or before its start", reject, "empty_span")
    if expected is not None and text[span.start:span.end] != expected:
        _fail(where, span, text, span.start, span.end,
              f"covers {text[span.start:span.end]!r} but the annotation says {expected!r}",
              _mismatch_hint(text, span, expected) + reject, "text_mismatch")
    if expected is None and refuse_ambiguous:
        _check_offset_unit(text, span, where, reject)
    covered = text[span.start:span.end]
    if covered.isspace():
        _fail(where, span, text, span.start, span.end, "is all whitespace", reject, "whitespace_span")
    left = len(covered) - len(covered.lstrip())
    right = len(covered) - len(covered.rstrip())
    return Span(span.start + left, span.end - right, span.label)


def _check_overlaps(text: str, spans: list[Span], where: str) -> None:
    """Raises SpanError for the first pair of sorted spans that share a character (overlap or nesting)."""
    outer: Span | None = None
    for span in spans:
        if outer is not None and span.start < outer.end:
            kind = "is nested inside" if span.end <= outer.end else "overlaps"
            _fail(where, span, text, min(outer.start, span.start), max(outer.end, span.end),
                  f"{kind} {outer} ({text[outer.start:outer.end]!r})",
                  "A flat tagger gives each character one entity: keep one of them in the annotation "
                  "(nothing was written).", "overlap")
        if outer is None or span.end > outer.end:
            outer = span


def check_spans(text: str, spans: Iterable[object], where: str, *,
                expected_texts: Sequence[str | None] | None = None,
                refuse_ambiguous: bool = False) -> tuple[list[Span], int]:
    """The spans, checked, whitespace-trimmed, sorted and with exact duplicates dropped; and how many of the returned
    spans were trimmed.

    spans: Span or (start, end, label) items, code-point offsets. expected_texts: the entity text the tool stored for
    each span, in the same order (None where unknown); compared before trimming.
    Raises SpanError naming `where` for: offsets outside the text, end <= start, a span text that disagrees with its
    expected text, an all-whitespace span, overlapping or nested spans, a non-integer offset or empty label; and,
    with refuse_ambiguous (offsets an exporter gave as code points, not ones computed here, and no setting trusting
    them), spans without expected text whose offsets read better in UTF-16 units (`_check_offset_unit`: cutting a
    word where the UTF-16 reading does not, or as plausible in text without spaces) or, over the whole record, in
    UTF-8 bytes (`_check_utf8_record`).
    """
    items = [_as_span(item, where) for item in spans]
    if expected_texts is not None and len(expected_texts) != len(items):
        raise ValueError(f"{where}: {len(expected_texts)} expected texts for {len(items)} spans")
    expected = list(expected_texts) if expected_texts is not None else [None] * len(items)
    # a stored entity text that its code points read right, past a character another unit counts otherwise, proves
    # the record counts code points: no unit check then
    proof = [span for span, known in zip(items, expected) if known is not None and 0 <= span.start < span.end
             <= len(text) and text[span.start:span.end] == known]
    utf16_proven = any(ASTRAL_CHAR.search(text, 0, span.end) for span in proof)
    utf8_proven = any(not text[:span.end].isascii() for span in proof)
    checked = [_check_one(text, span, where, known, refuse_ambiguous and not utf16_proven)
               for span, known in zip(items, expected)]
    if refuse_ambiguous and not utf8_proven:
        _check_utf8_record(text, [span for span, known in zip(items, expected) if known is None], where)
    trimmed = len({after for before, after in zip(items, checked) if before != after})  # duplicates once
    result = sorted(set(checked))
    _check_overlaps(text, result, where)
    return result, trimmed
