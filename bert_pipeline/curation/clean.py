"""Text cleaning and quality filters: one row in, cleaned text and a drop reason (or none) out."""

from __future__ import annotations

import html
import re
import unicodedata
from typing import Callable

import ftfy
import polars as pl
import regex
import xxhash

from bert_pipeline.config import CurateConfig
from bert_pipeline.curation.neardup import normal_form

# HTML's element names (the HTML Living Standard's, and the obsolete ones scraped pages still hold): only these are
# markup. Anything else between angle brackets is the user's text: "press <Enter>", "List<String>", "x<y and y>z",
# "<john@example.com>", a model's "<mask>".
HTML_ELEMENTS = frozenset("""
    a abbr address area article aside audio b base bdi bdo blockquote body br button canvas caption cite code col
    colgroup data datalist dd del details dfn dialog div dl dt em embed fieldset figcaption figure footer form h1 h2 h3
    h4 h5 h6 head header hgroup hr html i iframe img input ins kbd label legend li link main map mark menu meta meter
    nav noscript object ol optgroup option output p param picture pre progress q rp rt ruby s samp script search
    section select slot small source span strong style sub summary sup table tbody td template textarea tfoot th thead
    time title tr track u ul var video wbr
    acronym applet basefont big blink center dir font frame frameset marquee nobr noframes plaintext strike tt xmp
""".split())
_TAG = re.compile(  # a comment, a doctype, or an element's start or end tag (attributes of up to 500 characters)
    r"<!--.*?-->|<!doctype[^<>]{0,500}>|</?(?:" + "|".join(sorted(HTML_ELEMENTS, key=len, reverse=True))
    + r")(?:[\s/][^<>]{0,500})?>", re.IGNORECASE | re.DOTALL)
# in curate's fingerprint: 2 = tags of HTML elements only, stripped before entities are unescaped; 3 = low_alpha counts
# user-perceived characters, and emoji as content; too_short counts a wide character (CJK, emoji) at least two;
# 4 = a rating's stars and hearts are content
CLEAN_RULE = 4
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\u2028\u2029\ufeff]")
# The same without C1 (\x80-\x9f): before ftfy those are often part of mojibake ("â€\x9d" is a mangled ”).
_CONTROL_BUT_C1 = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u200b\u2028\u2029\ufeff]")
_SPACE = re.compile(r"\s+")
REPETITION_MIN_CHARS = 20
SHORT_TEXT_CHARS = 100  # below this, repetition is measured on 3-grams ("hahahahaha...", "no no no no no ...")
# The stored text is what the user wrote, repaired: ftfy fixes mojibake, C1 controls and surrogates only. Its default
# width folding (every full-width ，！：（） to ASCII), quote straightening and ligature expansion rewrote most Chinese
# reviews; such folding belongs in the dedup key alone (neardup.normal_form). HTML is unescaped below, for every text.
_REPAIR_ONLY = ftfy.TextFixerConfig(
    unescape_html=False, fix_character_width=False, uncurl_quotes=False, fix_latin_ligatures=False,
    normalization="NFC", explain=False,
)


def clean_text(text: str | None) -> str:
    """The text as the user wrote it, repaired: mojibake fixed (ftfy), tags of HTML elements stripped (`_TAG`:
    other text in angle brackets stays) and HTML entities unescaped,
    control characters removed, whitespace collapsed to single spaces, Unicode NFC. Width, quotes and ligatures are
    kept: "，" stays "，", "“" stays "“", "ﬁ" stays "ﬁ"."""
    if not text:
        return ""
    text = _CONTROL_BUT_C1.sub(" ", text)  # first, so that ftfy does not glue the words around a control character
    text = ftfy.fix_text(text, _REPAIR_ONLY)
    # tags first: "&lt;b&gt;" is text that shows a tag, not markup; then controls again, as &#7; is one too
    text = _CONTROL.sub(" ", html.unescape(_TAG.sub(" ", text)))
    return unicodedata.normalize("NFC", _SPACE.sub(" ", text).strip())  # an entity may spell a decomposed accent


def dedup_key(cleaned: str) -> str:
    """The exact-duplicate key: xxh3-64 hex of the normal form (NFKC, quotes straightened, casefolded, whitespace
    collapsed), so "ＡＢＣ" and "ABC", or “x” and "x", are one text."""
    return xxhash.xxh3_64_hexdigest(normal_form(cleaned).encode())


_GRAPHEME = regex.compile(r"\X")
# a letter, an emoji (Unicode's Extended_Pictographic, and the regional indicators that pair into flags) or a rating's
# star or heart (★★★★☆, ♡: symbols Unicode does not call pictographic, which reviews use as their verdict): content
_CONTENT = regex.compile(r"[\p{L}\p{Extended_Pictographic}\p{Regional_Indicator}\u2605\u2606\u2729-\u2730\u2661]")


def alpha_ratio(text: str) -> float:
    """The share of a text's visible user-perceived characters (grapheme clusters, UAX #29; spaces not counted) that
    begin with a letter, with an Extended_Pictographic character (emoji, and © ® ™), a regional indicator (a flag), or
    a rating's star or heart (★ ☆ ✩-✰ ♡): 0.0-1.0, 0.0 for a text of spaces only. A keycap (1️⃣) starts with its digit and does not count.

    Clusters, not code points, so that a Devanagari or Thai syllable's vowel signs, a skin-tone modifier or the
    joiners of "👨‍👩‍👧" do not count as noise; emoji are content because in reviews and social text they carry
    the sentiment ("😡😡😡"), as a star rating does ("★★☆☆☆"). What it rejects is what has neither: numbers, codes,
    punctuation, markup leftovers."""
    if text.isascii():  # every cluster one character (cleaned text holds no \r\n), and no emoji: letters decide, fast
        visible = [c for c in text if not c.isspace()]
        return sum(c.isalpha() for c in visible) / len(visible) if visible else 0.0
    visible = [g for g in _GRAPHEME.findall(text) if not g.isspace()]
    return sum(bool(_CONTENT.match(g)) for g in visible) / len(visible) if visible else 0.0


def display_width(text: str) -> int:
    """A text's length for curate.min_chars: its code points, where a wide user-perceived character (a grapheme
    cluster, UAX #29, starting with East Asian Width W or F: Han, kana, Hangul, most emoji) counts at least two.

    So "好评" or "最高" (a whole review, as "great" is) and "👎🙄" are not too short while "ok" and "x" still are: one
    CJK character carries about what a short Latin word does. Never less than len(text): a Hindi "ठीक" or Thai
    "แย่", whose vowel signs are code points of their own, keeps the length it always had."""
    return sum(max(len(g), 2 if unicodedata.east_asian_width(g[0]) in "WF" else 1) for g in _GRAPHEME.findall(text))


def repetition(text: str) -> float:
    """Fraction of character n-grams that repeat an earlier one (10-grams, or 3-grams under 100 characters):
    ~0.05 for prose, near 1 for 'spam spam spam ...'. Texts under 20 characters are not judged. Characters are
    user-perceived ones (grapheme clusters), so "🤦🏽‍♀️" four times is 4 characters, not 20 code points."""
    if len(text) < REPETITION_MIN_CHARS:  # fewer code points, so fewer clusters too: not judged
        return 0.0
    clusters = _GRAPHEME.findall(text) if not text.isascii() else text
    # a text whose clusters are all one code point is sliced as the string it is (fast); else as a list of clusters
    chars: str | list[str] = text if len(clusters) == len(text) else clusters
    n = 10 if len(chars) >= SHORT_TEXT_CHARS else 3
    windows = len(chars) - n + 1
    if len(chars) < REPETITION_MIN_CHARS or windows <= 0:
        return 0.0
    seen = {chars[i:i + n] for i in range(windows)} if isinstance(chars, str) else \
        {tuple(chars[i:i + n]) for i in range(windows)}
    return 1.0 - len(seen) / windows


def filter_reason(cleaned: str, c: CurateConfig) -> str | None:
    if not cleaned:
        return "empty"
    if len(cleaned) < c.min_chars and display_width(cleaned) < c.min_chars:  # the width is never below len()
        return "too_short"
    if len(cleaned) > c.max_chars:
        return "too_long"
    if alpha_ratio(cleaned) < c.min_alpha_ratio:
        return "low_alpha"
    if repetition(cleaned) > c.max_repetition:
        return "repetitive"
    return None


# (raw texts, cleaned texts, labels) -> (labels of the cleaned texts, a drop reason or None per row): the task's
# (bert_pipeline/task) way of keeping labels true when cleaning rewrites text (entity spans move with it)
Relabel = Callable[[list[str | None], list[str], list[str | None]], tuple[list[str | None], list[str | None]]]


def clean_frame(raw: pl.DataFrame, c: CurateConfig, relabel: Relabel | None = None) -> pl.DataFrame:
    """Cleaned text, its normal form and dedup key, the filter reason (null = a dedup candidate), original text.
    relabel: how labels follow the rewrite (none: they do not change); a text filter's reason wins over its."""
    texts = raw["text"].to_list()
    cleaned = [clean_text(t) for t in texts]
    normal = [normal_form(t) for t in cleaned]
    reasons = [filter_reason(t, c) for t in cleaned]
    labels = raw["label"].to_list()
    if relabel is not None:
        labels, label_reasons = relabel(texts, cleaned, labels)
        reasons = [reason or other for reason, other in zip(reasons, label_reasons)]
    return raw.with_columns(
        original_text=pl.col("text"),
        text=pl.Series(cleaned, dtype=pl.String),
        label=pl.Series(labels, dtype=pl.String),
        norm=pl.Series(normal, dtype=pl.String),
        dedup_key=pl.Series([xxhash.xxh3_64_hexdigest(t.encode()) for t in normal], dtype=pl.String),
        reason=pl.Series(reasons, dtype=pl.String),
    )
