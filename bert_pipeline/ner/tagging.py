"""Tags <-> spans: gold data in tag schemes and CoNLL files, and the model side (BIO tag set, constrained Viterbi
decoding, alignment of character spans with a fast tokenizer's offsets, merging overlapping windows).

Reading gold tags follows seqeval 1.2.2's default (non-strict, conlleval) chunking, `seqeval.metrics.
sequence_labeling.get_entities`: a chunk ends before B-/S-/O or a type change and after E-/S-; it starts at B-/S-,
at a type change, and at an I-/E- that follows O, E- or S-. So a malformed sequence still yields entities (an I- after
O starts one, an E- without B- is a one-token entity, a B- never closed by E- ends where the next chunk starts); each
chunk whose tags break the scheme's strict pattern is counted as malformed. BILOU's L/U and BMES's M are read as
BIOES's E/S and I. Tags are prefix-first (`B-PER`); a tag without a type is an error.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable, NamedTuple, Sequence

import numpy as np
import regex

from bert_pipeline.ner.spans import Span, SpanError

SCHEMES = ("IOB1", "IOB2", "BIOES", "BILOU", "BMES")
_ALIASES = {"BIO": "IOB2", "IOBES": "BIOES"}
_TO_CANONICAL = {  # each scheme's prefixes -> B/I/E/S
    "IOB1": {"B": "B", "I": "I"}, "IOB2": {"B": "B", "I": "I"}, "BIOES": {"B": "B", "I": "I", "E": "E", "S": "S"},
    "BILOU": {"B": "B", "I": "I", "L": "E", "U": "S"}, "BMES": {"B": "B", "M": "I", "E": "E", "S": "S"},
}
_STRICT = {"IOB1": re.compile(r"[IB]I*"), "IOB2": re.compile(r"BI*"), "BIOES": re.compile(r"S|BI*E")}
_TAG = re.compile(r"([BIESLUM])-(.+)", re.S)
# Scripts written without spaces between words. Script_Extensions, not Script, so that the prolonged sound mark ー,
# 。、「」 and ・ (script Common, used only with these) glue too. Hangul is left out: Korean puts spaces between words.
GLUE_SCRIPTS = ("Han", "Hiragana", "Katakana")
TOKEN_LINES = "token_lines"  # a CoNLL sentence's column (ingest): each token's 1-based line, for messages


def scheme_name(scheme: str) -> str:
    """The canonical name of a scheme (case-insensitive; BIO = IOB2, IOBES = BIOES); ValueError if unknown."""
    name = _ALIASES.get(scheme.upper(), scheme.upper())
    if name not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}; one of {', '.join(SCHEMES)} (or BIO, IOBES)")
    return name


def parse_tag(tag: str, where: str = "") -> tuple[str, str]:
    """("O", "") for O, else (prefix, type): "B-PER" -> ("B", "PER"). Raises SpanError for anything else."""
    if tag == "O":
        return "O", ""
    match = _TAG.fullmatch(tag)
    if match is None:
        raise SpanError(f"{where}: tag {tag!r} is neither O nor PREFIX-TYPE with a prefix in B I E S L U M "
                        "(suffix-style tags such as PER-B are not read)", "bad_tag")
    return match.group(1), match.group(2)


def _sentences(tags: Sequence[str] | Sequence[Sequence[str]]) -> list[Sequence[str]]:
    return [tags] if not tags or isinstance(tags[0], str) else list(tags)  # type: ignore[list-item]


def detect_scheme(tags: Sequence[str] | Sequence[Sequence[str]], where: str = "") -> str:
    """The scheme of a file's tags: one sequence, or a list of sentences (better: sentence starts are seen).

    M- -> BMES; L-/U- -> BILOU; E-/S- -> BIOES; only B-/I-: IOB1 if some chunk starts with I- and no B- starts a
    chunk after O or another type (IOB1 uses B- only between two adjacent entities of one type), else IOB2.
    Raises SpanError for a mix no scheme has (e.g. M- with I-, or L- with E-).
    """
    sentences = _sentences(tags)
    prefixes = {parse_tag(t, where)[0] for sentence in sentences for t in sentence} - {"O"}
    for name, marks in (("BMES", {"M"}), ("BILOU", {"L", "U"}), ("BIOES", {"E", "S"})):
        if prefixes & marks:
            if not prefixes <= set(_TO_CANONICAL[name]):
                raise SpanError(f"{where}: tag prefixes {sorted(prefixes)} fit no scheme ({name} has "
                                f"{sorted(_TO_CANONICAL[name])}); pass the scheme explicitly", "bad_tag")
            return name
    i_starts = fresh_b = 0
    for sentence in sentences:
        previous = ("O", "")
        for tag in sentence:
            prefix, kind = parse_tag(tag, where)
            i_starts += prefix == "I" and previous[1] != kind
            fresh_b += prefix == "B" and previous[1] != kind
            previous = (prefix, kind)
    return "IOB1" if i_starts and not fresh_b else "IOB2"


def _ends(prev: str, tag: str, prev_type: str, kind: str) -> bool:
    return prev in "ES" or (prev in "BI" and tag in "BSO") or (prev != "O" and prev_type != kind)


def _starts(prev: str, tag: str, prev_type: str, kind: str) -> bool:
    return tag in "BS" or (prev in "OES" and tag in "IE") or (tag != "O" and prev_type != kind)


def chunks(tags: Sequence[str], scheme: str, where: str = "") -> tuple[list[tuple[str, int, int]], int]:
    """(type, first token, last token inclusive) per entity, seqeval-default chunking; and the malformed count.

    Raises SpanError for a tag the scheme does not have (e.g. E-PER in an IOB2 file) or a tag without a type.
    """
    name = scheme_name(scheme)
    mapping = _TO_CANONICAL[name]
    canonical = []
    for tag in tags:
        prefix, kind = parse_tag(tag, where)
        if prefix != "O" and prefix not in mapping:
            raise SpanError(f"{where}: tag {tag!r} is not in scheme {name} (prefixes {sorted(mapping)}); "
                            "use detect_scheme or pass the file's scheme", "bad_tag")
        canonical.append((mapping.get(prefix, "O"), kind))
    found: list[tuple[str, int, int]] = []
    prev, prev_type, begin, malformed = "O", "", 0, 0
    for i, (tag, kind) in enumerate(canonical + [("O", "")]):
        if _ends(prev, tag, prev_type, kind):
            found.append((prev_type, begin, i - 1))
            malformed += not _is_strict(name, canonical, begin, i - 1)
        if _starts(prev, tag, prev_type, kind):
            begin = i
        prev, prev_type = tag, kind
    return found, malformed


def _is_strict(name: str, canonical: list[tuple[str, str]], first: int, last: int) -> bool:
    """Whether tokens first..last form one well-formed entity of the scheme (IOB1: B- only after the same type)."""
    prefixes = "".join(prefix for prefix, _ in canonical[first:last + 1])
    pattern = _STRICT.get(name, _STRICT["BIOES"])
    if name == "IOB1" and prefixes[0] == "B":
        return pattern.fullmatch(prefixes) is not None and first > 0 and canonical[first - 1][1] == canonical[first][1]
    return pattern.fullmatch(prefixes) is not None


def spans_from_tags(token_offsets: Sequence[tuple[int, int]], tags: Sequence[str], scheme: str, *,
                    where: str = "") -> tuple[list[Span], int]:
    """Entity spans from per-token tags, and the number of malformed chunks (read leniently, as seqeval does).

    token_offsets: (start, end) code-point offsets of each token in the text, same length as tags. A span runs from
    its first token's start to its last token's end. Raises SpanError for unknown tags; ValueError if lengths differ.
    """
    if len(token_offsets) != len(tags):
        raise ValueError(f"{where}: {len(token_offsets)} tokens but {len(tags)} tags")
    found, malformed = chunks(tags, scheme, where)
    return [Span(token_offsets[a][0], token_offsets[b][1], kind) for kind, a, b in found], malformed


def tags_from_spans(token_offsets: Sequence[tuple[int, int]], spans: Iterable[Span], scheme: str = "IOB2") -> list[str]:
    """Per-token tags of `scheme` for spans (the inverse of spans_from_tags): a token overlapping a span is in it.

    Spans must not overlap (check_spans). token_offsets: (start, end) code points per token.
    """
    name = scheme_name(scheme)
    tags = ["O"] * len(token_offsets)
    previous: tuple[str, int] | None = None  # (type, last token) of the previous entity
    for span in sorted(spans):
        inside = [i for i, (a, b) in enumerate(token_offsets) if a < span.end and b > span.start and b > a]
        if inside:
            tags[inside[0]:inside[-1] + 1] = _entity_tags(name, len(inside), span.label, previous, inside[0])
            previous = (span.label, inside[-1])
    return tags


def _entity_tags(name: str, n: int, label: str, previous: tuple[str, int] | None, first: int) -> list[str]:
    if name in ("IOB1", "IOB2"):
        adjacent = previous is not None and previous == (label, first - 1)
        head = "B" if name == "IOB2" or adjacent else "I"
        return [f"{head}-{label}"] + [f"I-{label}"] * (n - 1)
    single, middle, last = {"BIOES": "SIE", "BILOU": "UIL", "BMES": "SME"}[name]
    if n == 1:
        return [f"{single}-{label}"]
    return [f"B-{label}"] + [f"{middle}-{label}"] * (n - 2) + [f"{last}-{label}"]


_GLUE_CACHE: dict[tuple[str, ...], regex.Pattern[str]] = {}


def _glue_pattern(scripts: Sequence[str]) -> regex.Pattern[str]:
    key = tuple(scripts)
    if key not in _GLUE_CACHE:
        _GLUE_CACHE[key] = regex.compile("[" + "".join(f"\\p{{scx={s}}}" for s in key) + "]")
    return _GLUE_CACHE[key]


def join_tokens(tokens: Sequence[str], *, separator: str | None = None,
                glue_scripts: Sequence[str] = GLUE_SCRIPTS) -> tuple[str, list[tuple[int, int]]]:
    """The text of pre-split tokens and each token's (start, end) code-point offsets in it.

    separator None (the default): one space between tokens, nothing between two characters of `glue_scripts`
    (Han, Hiragana, Katakana: Chinese and Japanese have no spaces) or between one of them and a digit, punctuation or
    symbol ("2005年", "（北海道）"), and nothing next to a token that is or ends with whitespace (KLUE-style corpora
    keep spaces as tokens). A fixed separator ("" for a character-level Chinese corpus
    whose Latin letters and digits would otherwise be spaced out, " " for plain joining) is used everywhere.
    Pass glue_scripts=(*GLUE_SCRIPTS, "Hangul") for character-level Korean without space tokens.
    """
    glue = _glue_pattern(glue_scripts)
    parts: list[str] = []
    offsets: list[tuple[int, int]] = []
    length = 0
    for i, token in enumerate(tokens):
        if i:
            sep = separator if separator is not None else _auto_separator(tokens[i - 1], token, glue)
            parts.append(sep)
            length += len(sep)
        parts.append(token)
        offsets.append((length, length + len(token)))
        length += len(token)
    return "".join(parts), offsets


def _auto_separator(before: str, after: str, glue: regex.Pattern[str]) -> str:
    """"" where the texts meet without a space: next to whitespace, between two characters of the glue scripts, and
    between one of them and a character that is not a letter (digits, punctuation, symbols: "2005年", "（北海道）"
    as Japanese and Chinese write them); " " otherwise, so a Latin or Cyrillic word beside Han keeps its space."""
    if not before or not after or before[-1].isspace() or after[0].isspace():
        return ""
    left, right = before[-1], after[0]
    left_glued, right_glued = glue.match(left) is not None, glue.match(right) is not None
    if (left_glued and (right_glued or not right.isalpha())) or (right_glued and not left.isalpha()):
        return ""
    return " "


@dataclass(frozen=True)
class ConllFile:
    """What read_conll found. sentences: (text, spans, 1-based line of the sentence's first token)."""

    sentences: list[tuple[str, tuple[Span, ...], int]]
    scheme: str
    malformed: int  # chunks that break the scheme's strict pattern, read as seqeval's default mode reads them
    documents: int  # -DOCSTART- lines seen


def _looks_like_tag(field: str) -> bool:
    return field == "O" or _TAG.fullmatch(field) is not None


LOOK_CHARS = 65_536


def conll_fields(line: str) -> list[str]:
    """A CoNLL line's columns: split at tabs when it has one (a token may then be a space, as KLUE keeps them), else
    at runs of spaces; trailing whitespace (a trailing tab) is not an empty column."""
    kept = line.rstrip()
    return kept.split("\t") if "\t" in kept else kept.split()


def looks_like_conll(text: str, sample: int = 200) -> bool:
    """Whether most of the first `sample` lines that are not blank, -DOCSTART- or '#' comments (9 in 10) have two or
    more columns and end with a tag (O, B-PER ...): a CoNLL column file, whatever its extension."""
    head = text[:LOOK_CHARS].splitlines()  # a bounded prefix: this runs on every txt, csv and tsv source
    lines = list(itertools.islice((ln for ln in head if ln.strip() and not ln.startswith(("#", "-DOCSTART-"))),
                                  sample))
    tagged = sum(len(fields) >= 2 and _looks_like_tag(fields[-1].strip()) for fields in map(conll_fields, lines))
    return bool(lines) and tagged >= 0.9 * len(lines)


def conll_sentences(lines: Iterable[str], where: str, *, token_column: int | None = None,
                    tag_column: int | None = None) -> tuple[list[list[tuple[str, str, int]]], int]:
    """Sentences of (token, tag, line number) and the -DOCSTART- lines seen; '#' comment lines at a sentence start
    are skipped. token_column / tag_column: 1-based, None = chosen by `conll_columns`. Raises SpanError naming
    where:line for a line without the columns or a bad tag, or for a file whose tag column is ambiguous."""
    rows, documents = _conll_rows(lines, where)
    token_at, tag_at = conll_columns(rows, where, token_column, tag_column)
    sentences = []
    for sentence in rows:
        read = []
        for fields, number in sentence:
            tag = tag_at if tag_at >= 0 else len(fields) + tag_at
            if not token_at < len(fields) or not 0 <= tag < len(fields) or tag == token_at or not fields[token_at]:
                raise SpanError(f"{where}:{number}: line {chr(9).join(fields)!r} needs a token in column "
                                f"{token_at + 1} and a tag in column {tag + 1 if tag_at >= 0 else 'the last'} (tab "
                                "or space separated; ner.conll_token_column and ner.conll_tag_column choose them)",
                                "bad_line")
            parse_tag(fields[tag_at].strip(), f"{where}:{number}")
            read.append((fields[token_at], fields[tag_at].strip(), number))
        sentences.append(read)
    return sentences, documents


def _conll_rows(lines: Iterable[str], where: str) -> tuple[list[list[tuple[list[str], int]]], int]:
    """The file's sentences as (fields, line number) lists, and its -DOCSTART- lines."""
    sentences: list[list[tuple[list[str], int]]] = [[]]
    documents = 0
    for number, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        fields = conll_fields(line)
        if not line.strip() or fields[0] == "-DOCSTART-":
            documents += bool(line.strip())
            if sentences[-1]:
                sentences.append([])
            continue
        if not sentences[-1] and line.startswith("#") and not _looks_like_tag(fields[-1].strip()):
            continue  # "# id ... domain=en" (MultiCoNER), "# text = ..." (CoNLL-U), "# http://... [date]" (GermEval)
        if len(fields) < 2 or not fields[0]:
            raise SpanError(f"{where}:{number}: line {line!r} needs a token in the first column and a tag in the "
                            "last (tab or space separated)", "bad_line")
        sentences[-1].append((fields, number))
    return [s for s in sentences if s], documents


# The phrase types of chunk tags, which CoNLL-2003 keeps in the column before its entity tags: English (CoNLL-2000)
# and German (the German CoNLL-2003 data: I-NC, I-VC ...)
CHUNK_TYPES = frozenset("NP VP PP ADJP ADVP SBAR PRT INTJ CONJP LST UCP NC VC PC ADJX ADVX".split())
_INDEX = re.compile(r"\d+(?:[-.]\d+)?")  # 7, and CoNLL-U's multiword range 4-5 and empty node 8.1


def conll_columns(rows: Sequence[Sequence[tuple[list[str], int]]], where: str, token_column: int | None,
                  tag_column: int | None) -> tuple[int, int]:
    """(token, tag) column indexes of a CoNLL file (the tag's -1 = each line's last), from the 1-based settings or,
    where None, from the file.

    Token: the first column, or the second where every line has three or more and the first is an index (numbers
    only: GermEval 2014, CoNLL-U, 0-based or counted over the file). Tag: the last column (CoNLL-2002/2003 put NER
    last, after POS and chunk tags). A file whose last two columns both hold nothing but tags, the first of them
    not chunk tags (NP, VP ...), is two annotation layers (GermEval's outer and nested entities): which one to read
    is not guessed, SpanError names both and ner.conll_tag_column."""
    if token_column is None:
        token_column = 2 if _index_first(rows) else 1
    if tag_column is not None:
        return token_column - 1, tag_column - 1
    inner, outer = _tag_types(rows, -1, token_column), _tag_types(rows, -2, token_column)
    if inner is not None and outer is not None and not outer <= CHUNK_TYPES:
        width = len(rows[0][0][0])
        raise SpanError(f"{where}: columns {width - 1} and {width} both hold entity tags ({_types(outer)}; "
                        f"{_types(inner)}): two annotation layers (GermEval 2014 keeps outer entities in its column 3 "
                        "and nested ones in column 4). Set ner.conll_tag_column to the column to read (ingest reads "
                        "one layer of flat entities)", "ambiguous_columns")
    return token_column - 1, -1


def _types(types: set[str]) -> str:
    return ", ".join(sorted(types)[:6]) + (" ..." if len(types) > 6 else "") if types else "O only"


def _index_first(rows: Sequence[Sequence[tuple[list[str], int]]]) -> bool:
    return all(len(fields) > 2 and _INDEX.fullmatch(fields[0].strip()) for sentence in rows for fields, _ in sentence)


def _tag_types(rows: Sequence[Sequence[tuple[list[str], int]]], column: int, token_column: int) -> set[str] | None:
    """The entity types of a column (negative: from each line's end) whose every value is a tag, or None (a
    column of anything else, or the token column itself)."""
    types: set[str] = set()
    for sentence in rows:
        for fields, _ in sentence:
            at = len(fields) + column
            if at < token_column or not _looks_like_tag(fields[at].strip()):
                return None
            types.add(parse_tag(fields[at].strip())[1])
    return types - {""}


def read_conll(lines: Iterable[str], where: str, *, scheme: str = "auto", separator: str | None = None,
               glue_scripts: Sequence[str] = GLUE_SCRIPTS, token_column: int | None = None,
               tag_column: int | None = None) -> ConllFile:
    """Sentences of a CoNLL column file as (text, spans, first line); columns as `conll_columns` chooses them.

    lines: the file's lines (with or without newlines). Blank lines end sentences; -DOCSTART- lines are skipped.
    scheme "auto" detects it over the whole file (detect_scheme). Tokens are joined by join_tokens(separator,
    glue_scripts; ingest passes separator "" for a character-level file, task.ner.file_separator). token_column /
    tag_column: 1-based, None = `conll_columns` chooses. Raises SpanError naming where:line for a line without the
    columns or a bad tag.
    """
    rows, documents = conll_sentences(lines, where, token_column=token_column, tag_column=tag_column)
    name = detect_scheme([[tag for _, tag, _ in s] for s in rows], where) if scheme == "auto" else scheme_name(scheme)
    sentences, malformed = [], 0
    for sentence in rows:
        text, offsets = join_tokens([token for token, _, _ in sentence], separator=separator,
                                    glue_scripts=glue_scripts)
        spans, bad = spans_from_tags(offsets, [tag for _, tag, _ in sentence], name, where=f"{where}:{sentence[0][2]} (sentence)")
        sentences.append((text, tuple(spans), sentence[0][2]))
        malformed += bad
    return ConllFile(sentences, name, malformed, documents)


# ---- the model side: a BIO tag set, decoding, alignment ----

def tag_names(entity_labels: Iterable[str]) -> list[str]:
    """["O", "B-X", "I-X", ...] over the sorted distinct labels: the model's output classes, in this order."""
    labels = sorted(set(entity_labels))
    if any(not label or label != label.strip() for label in labels):
        raise ValueError(f"entity labels must be non-empty without surrounding spaces: {labels!r}")
    return ["O"] + [f"{prefix}-{label}" for label in labels for prefix in "BI"]


def _bio(tag_names: Sequence[str]) -> list[tuple[str, str]]:
    parsed = [parse_tag(tag) for tag in tag_names]
    if any(prefix not in "OBI" for prefix, _ in parsed):
        raise ValueError(f"not a BIO tag set: {list(tag_names)}")
    return parsed


def allowed_transitions(tag_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(allowed, start_allowed): allowed[i, j] (T, T) bool says tag j may follow tag i; start_allowed (T,) bool.

    BIO constraints (as AllenNLP's `allowed_transitions(constraint_type="BIO")`): I-X only after B-X or I-X, never
    first; O and B-* anywhere. Any tag may end a sequence.
    """
    parsed = _bio(tag_names)
    allowed = np.array([[prefix != "I" or (p_prev in "BI" and t_prev == kind) for prefix, kind in parsed]
                        for p_prev, t_prev in parsed], dtype=bool)
    start_allowed = np.array([prefix != "I" for prefix, _ in parsed], dtype=bool)
    return allowed, start_allowed


def constrained_decode(log_probs: np.ndarray, allowed: np.ndarray, start_allowed: np.ndarray) -> list[int]:
    """The best tag path under the constraints (Viterbi, 1967): argmax of sum of log_probs over allowed paths.

    log_probs: (n_tokens, T) per-token log-probabilities (or any additive scores); allowed (T, T), start_allowed (T,)
    from allowed_transitions. Returns n_tokens tag ids; ties go to the lower id. ValueError on a NaN or bad shape.
    """
    scores = np.asarray(log_probs, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] != allowed.shape[0] or allowed.shape != (len(start_allowed),) * 2:
        raise ValueError(f"log_probs {scores.shape} does not fit {allowed.shape[0]} tags")
    if np.isnan(scores).any():
        raise ValueError("log_probs contains NaN")
    if len(scores) == 0:
        return []
    transition = np.where(allowed, 0.0, -np.inf)
    best = np.where(start_allowed, scores[0], -np.inf)
    back = np.zeros(scores.shape, dtype=np.int64)
    for t in range(1, len(scores)):
        candidates = best[:, None] + transition  # (previous, next)
        back[t] = candidates.argmax(axis=0)
        best = candidates[back[t], np.arange(len(best))] + scores[t]
    path = [int(best.argmax())]
    for t in range(len(scores) - 1, 0, -1):
        path.append(int(back[t, path[-1]]))
    return path[::-1]


class EntityPrediction(NamedTuple):
    """A predicted entity: text[start:end] (code points), its type, and the mean probability of its tokens' tags."""

    start: int
    end: int
    label: str
    score: float


def _after_marks(text: str | None, end: int) -> int:
    """end moved over combining marks (Mn, Me) that the tokenizer's normalizer dropped from every token."""
    while text is not None and end < len(text) and unicodedata.category(text[end]) in ("Mn", "Me"):
        end += 1
    return end


def spans_from_token_tags(tag_ids: Sequence[int], token_offsets: np.ndarray | Sequence[Sequence[int]],
                          tag_names: Sequence[str], token_scores: Sequence[float], *,
                          text: str | None = None) -> list[EntityPrediction]:
    """Entities from one text's per-token BIO tag ids (decoded), with the fast tokenizer's offsets.

    token_offsets: (n, 2) code-point offsets; tokens with end <= start (special tokens, (0, 0)) are skipped.
    token_scores: (n,) probability of each token's chosen tag. An entity runs from its first token's start to its
    last token's end; its score is the mean of its tokens' scores. An I-X that does not continue an X entity starts
    one (seqeval's default reading; constrained_decode never produces it). With `text`, an entity's end is moved over
    combining accents the tokenizer dropped (uncased BERT's offsets for "José" in NFD stop before the accent).
    """
    parsed = _bio(tag_names)
    found: list[EntityPrediction] = []
    current: list = []  # [label, start, end, scores]
    for tag_id, (start, end), score in zip(tag_ids, np.asarray(token_offsets).tolist(), token_scores):
        if end <= start:
            continue
        prefix, kind = parsed[tag_id]
        if current and (prefix != "I" or kind != current[0]):
            found.append(_entity(current, text))
            current = []
        if current:
            current[2], current[3] = end, current[3] + [score]
        elif prefix != "O":
            current = [kind, start, end, [score]]
    if current:
        found.append(_entity(current, text))
    return found


def _entity(current: list, text: str | None) -> EntityPrediction:
    kind, start, end, scores = current
    return EntityPrediction(int(start), _after_marks(text, int(end)), kind, float(np.mean(scores)))


def token_labels_for_spans(token_offsets: np.ndarray | Sequence[Sequence[int]], spans: Iterable[Span],
                           tag_names: Sequence[str]) -> tuple[np.ndarray, int]:
    """Training labels for one text's tokens from its spans, by character offsets (no whitespace pre-splitting).

    token_offsets: (n, 2) code-point offsets from a fast tokenizer; tokens with end <= start (special tokens) get
    -100 (ignored by the loss). Every token overlapping a span is labelled: B-X the first, I-X the rest (HF run_ner's
    label_all_tokens=True convention, chosen because offset alignment has no words to pick a "first subword" of in
    CJK, URLs or emoji, and decoding then reads every token the same way). A token already in an earlier span stays
    in it. Returns (labels (n,) int64 into tag_names, boundary_mismatches): spans the tokens cannot reproduce exactly
    (an edge strictly inside a token, or no token at all). Raises SpanError for a label not in tag_names.
    """
    offsets = np.asarray(token_offsets, dtype=np.int64).reshape(-1, 2)
    index = {tag: i for i, tag in enumerate(tag_names)}
    labels = np.full(len(offsets), index["O"], dtype=np.int64)
    content = offsets[:, 1] > offsets[:, 0]
    labels[~content] = -100
    mismatches = 0
    for span in sorted(spans):
        if f"B-{span.label}" not in index:
            raise SpanError(f"span {span}: label {span.label!r} is not among the model's tags {list(tag_names)}",
                            "unknown_label")
        inside = np.flatnonzero(content & (offsets[:, 0] < span.end) & (offsets[:, 1] > span.start))
        cut = content & (((offsets[:, 0] < span.start) & (span.start < offsets[:, 1]))
                         | ((offsets[:, 0] < span.end) & (span.end < offsets[:, 1])))
        mismatches += bool(len(inside) == 0 or cut.any())
        free = inside[labels[inside] == index["O"]]
        if len(free):
            labels[free] = index[f"I-{span.label}"]
            labels[free[0]] = index[f"B-{span.label}"]
    return labels, mismatches


def combine_window_logits(window_logits: Sequence[np.ndarray], window_token_starts: Sequence[int],
                          n_tokens: int) -> np.ndarray:
    """One text's per-token logits (n_tokens, T) from overlapping windows: each token takes its logits from the
    window that gives it the most context, so an entity across a window edge decodes whole and once. A single window
    gives exactly its own logits.

    The window is the one where min(tokens before it, tokens after it) + 0.01 x window length is largest, the first
    such on a tie: the "max context" rule of Google's BERT SQuAD code (run_squad.py, `_check_is_max_context`). A
    token at a window's first position is read there with no left context at all ("Paulo" without "São" looks like
    a person), so averaging it with the window that reads it in context could split or cut the entity.

    window_logits: per window (n_i, T), content tokens only (special tokens removed); window_token_starts: the
    position of each window's first token in the text's content tokens. ValueError if a token is left uncovered or
    a window runs past n_tokens.
    """
    if len(window_logits) != len(window_token_starts) or not window_logits:
        raise ValueError(f"{len(window_logits)} windows but {len(window_token_starts)} starts")
    width = window_logits[0].shape[1]
    combined = np.zeros((n_tokens, width), dtype=window_logits[0].dtype)
    best = np.full(n_tokens, -np.inf)
    for logits, start in zip(window_logits, window_token_starts):
        if start < 0 or start + len(logits) > n_tokens or logits.shape[1] != width:
            raise ValueError(f"window at {start} of shape {logits.shape} does not fit {n_tokens} tokens x {width}")
        position = np.arange(len(logits))
        context = np.minimum(position, len(logits) - 1 - position) + 0.01 * len(logits)
        better = context > best[start:start + len(logits)]
        combined[start:start + len(logits)][better] = logits[better]
        best[start:start + len(logits)][better] = context[better]
    if np.isinf(best).any():
        raise ValueError(f"tokens {np.flatnonzero(np.isinf(best))[:5].tolist()}... are in no window")
    return combined


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of (n, T) logits, numerically stable."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def predict_entities(logits: np.ndarray, token_offsets: np.ndarray | Sequence[Sequence[int]],
                     tag_names: Sequence[str], *, text: str | None = None) -> list[EntityPrediction]:
    """Entities of one text from its per-token logits (n, T) over tag_names: log-softmax, constrained Viterbi on the
    content tokens (special tokens removed first, so [CLS] cannot break a path), spans with mean tag probability."""
    offsets = np.asarray(token_offsets, dtype=np.int64).reshape(-1, 2)
    keep = offsets[:, 1] > offsets[:, 0]
    log_probs = log_softmax(np.asarray(logits, dtype=np.float64)[keep])
    path = constrained_decode(log_probs, *allowed_transitions(tag_names))
    scores = np.exp(log_probs[np.arange(len(path)), path]) if path else np.zeros(0)
    return spans_from_token_tags(path, offsets[keep], tag_names, scores.tolist(), text=text)
