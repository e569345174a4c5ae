"""Vocabulary coverage: how much of a night's text the tokenizer's vocabulary can read, by Unicode script.

A WordPiece or SentencePiece tokenizer turns a word it cannot spell from its vocabulary into its unknown token
([UNK], <unk>); the model then reads one and the same vector for every such word. The packaged MiniLM (an English
uncased vocabulary) does this to about two thirds of the tokens of Chinese product reviews, and nothing else in the
pipeline says so. This module measures it from the encodings the tokenize stage makes anyway:

- unknown token share: unknown tokens / content tokens (the tokens a text became, without the [CLS]/[SEP] the
  post-processor adds), both counted over what the model reads (after truncation at max_length);
- hidden character share: characters inside the spans of unknown tokens / non-space characters the model reads
  (the text, less the tail that truncation cut off); an [UNK] that stands for "café😀" hides five characters;
- both again per Unicode script (the Script property, e.g. Han, Latin, Cyrillic, Common for digits, punctuation and
  emoji; looked up with fontTools.unicodedata, which ships Unicode's Scripts.txt), with the token and character
  counts behind them;
- the most frequent unknown characters (characters of unknown spans that are unknown on their own as well: in
  "café😀" only 😀) and unknown words (the text of each unknown token's span), with counts;
- tokens per word (fertility) of each script written with spaces: a vocabulary that reads a script without any
  unknown token can still spell its words nearly letter by letter (Russian through the packaged MiniLM: 5.8 tokens
  a word, English tweets 1.3); above MAX_TOKENS_PER_WORD the script is spelled in pieces, and the share of the night's
  characters in such scripts counts towards poor coverage as hidden characters do;
- the letters outside Latin that an uncased normaliser reads as other letters (й as и, が as か).

A tokenizer without an unknown token (byte-level BPE as in RoBERTa and GPT-2: every byte is in the vocabulary) hides
nothing: its unknown and hidden shares are 0 (an English one still spells other scripts in pieces). One without an unknown token that leaves characters it cannot spell without any
token (a character-level BPE trained without one: `drops_text`, found by encoding PROBE) hides what no token's
offsets cover; every text is then encoded with offsets. Characters of a script (not Common or Inherited) that the
normaliser deletes before the vocabulary is consulted (an uncased BERT's accent stripping takes Thai vowel and tone
marks and some Devanagari signs) are hidden too (`stripped_chars`), though their tokens look known. Combining marks
of script Inherited that it deletes (Arabic and Hebrew vowel signs, decomposed Latin accents) are counted apart
(`removed_marks`), not as hidden: the words read as written without them.

A token's script is that of the text it stands for: for a known token, its vocabulary piece as the tokenizer decodes
it (a byte-level piece holding only part of a character's bytes counts as BYTE_PIECES); for an unknown token, its
span of the text. A piece's script is that of its first character that is neither Common nor Inherited.

Cost: `encode_batch_fast`, which tokenize uses, does not compute character offsets; `encode_batch` does, for 40 % to
120 % more time. So only the texts that hold an unknown token or were truncated (2 % of the demo tweets) are encoded
again with offsets; once more than a quarter of a night's texts need them (a Chinese night through an English
vocabulary), `wants_offsets` tells the caller to encode the following batches with offsets straight away. Everything
else is counted with numpy from the token ids and the texts' code points. `benchmarks/bench_coverage.py`: the
coverage's own calls take 0.07-0.09 of the stage's time on the demo tweets, 0.26-0.36 on a night of Chinese reviews
through the English MiniLM.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import regex
from fontTools import unicodedata as ucd

TOP = 20  # unknown characters and words kept, most frequent first
COMMON, INHERITED = "Common", "Inherited"
BYTE_PIECES = "(bytes of a character)"  # byte-level tokens holding part of a character's UTF-8 bytes
REPLACEMENT = "\ufffd"
MAX_CODE_POINT = 0x110000
# Scripts written without spaces between words (Unicode Script property, as char_script names them).
NO_SPACE_SCRIPTS = frozenset({"Han", "Hiragana", "Katakana", "Thai", "Lao", "Khmer", "Myanmar"})
# Above this share of a night's texts needing offsets, encoding them all with offsets is cheaper than twice.
OFFSETS_SHARE = 0.25


@lru_cache(maxsize=None)
def char_script(char: str) -> str:
    """The Unicode Script property value of one character, long name: 'Han', 'Latin', 'Common', 'Inherited'..."""
    return str(ucd.script_name(ucd.script(char)))


@lru_cache(maxsize=1 << 16)
def text_script(text: str) -> str:
    """The script a piece of text belongs to: that of its first character whose script is neither Common nor
    Inherited; else Common (digits, punctuation, emoji), or Inherited (combining marks alone); 'Unknown' when empty."""
    fallback = ""
    for char in text:
        script = char_script(char)
        if script not in (COMMON, INHERITED):
            return script
        if not fallback and not char.isspace():
            fallback = script
    return fallback or "Unknown"


def _piece_script(text: str) -> str:
    """text_script of a decoded vocabulary piece; a byte-level piece holding part of a character decodes to U+FFFD."""
    script = text_script(text)
    return BYTE_PIECES if script == COMMON and REPLACEMENT in text else script


def unknown_token_id(encoder: Any) -> int | None:
    """The id of the unknown token the tokenizer's model emits; None when it has none (byte-level BPE)."""
    model = encoder.model
    token = getattr(model, "unk_token", None)
    if token:
        return encoder.token_to_id(token)
    if type(model).__name__ == "Unigram":  # SentencePiece Unigram names its unknown token by id
        unk_id = json.loads(encoder.to_str()).get("model", {}).get("unk_id")
        return int(unk_id) if unk_id is not None else None
    return None


def _as_encoder(tokenizer: Any, max_length: int | None) -> Any:
    """A `tokenizers.Tokenizer` encoding as the tokenize stage does (models.fast_encoder) from a transformers fast
    tokenizer; a `tokenizers.Tokenizer` is used as it is."""
    if hasattr(tokenizer, "backend_tokenizer"):
        from bert_pipeline.modeling.models import fast_encoder

        return fast_encoder(tokenizer, max_length)
    return tokenizer


@dataclass
class CoverageCounter:
    """Accumulates coverage over the batches of a night; `result()` is the JSON-able summary.

    Feed it every batch that `encoder` encoded: `add(texts, encodings, ids, with_offsets)`. Memory: one int64 count
    per vocabulary id and two per code point seen (at most 0x110000, 8.9 MB each), plus counters of unknown
    pieces; with collect_words, a counter of every distinct word of the scripts written with spaces."""

    encoder: Any
    unk_id: int | None = None
    texts: int = 0
    texts_needing_offsets: int = 0
    texts_with_unknown: int = 0
    id_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    char_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    unknown_pieces: Counter = field(default_factory=Counter)  # text of an unknown token's span -> occurrences
    dropped_pieces: Counter = field(default_factory=Counter)  # text that no token covers -> occurrences
    drops_text: bool = False  # no unknown token, and characters outside the vocabulary become no token at all
    word_starts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # code point -> words it begins
    collect_words: bool = False  # keep `words` (for vocabulary.choose_additions): costs a pass over every word
    words: Counter = field(default_factory=Counter)  # word (`script_words`) -> occurrences, when collect_words

    def __post_init__(self) -> None:
        self.unk_id = unknown_token_id(self.encoder)
        self.id_counts = np.zeros(self.encoder.get_vocab_size(with_added_tokens=True), np.int64)
        special = [i for i, t in self.encoder.get_added_tokens_decoder().items() if t.special and i != self.unk_id]
        self._special = np.asarray(special, np.int64)
        self._unknown_alone: dict[str, bool] = {}
        self.drops_text = self.unk_id is None and bool(uncovered_runs(PROBE, self.encoder.encode(
            PROBE, add_special_tokens=False).offsets))

    @property
    def wants_offsets(self) -> bool:
        """True when so many texts so far needed offsets (unknown tokens, truncation) that the next batches are
        cheaper encoded with offsets (`encode_batch`) than encoded fast and again for offsets."""
        return self.texts >= 256 and self.texts_needing_offsets > OFFSETS_SHARE * self.texts

    def add(self, texts: Sequence[str], encodings: Sequence[Any], flat: np.ndarray | None = None,
            lengths: np.ndarray | None = None, truncated: np.ndarray | None = None,
            with_offsets: bool = False) -> None:
        """Count one batch: texts[i] was encoded as encodings[i]. The caller may pass what it took from them
        already: flat (int64, every token id of the batch in order, special tokens included), lengths (tokens per
        text) and truncated (bool per text). with_offsets: the encodings came from `encode_batch` (offsets filled
        in); from `encode_batch_fast` they are not, and the texts that need them are encoded again here, alone."""
        if flat is None or lengths is None:
            ids = [e.ids for e in encodings]
            lengths = np.fromiter(map(len, ids), np.int32, count=len(ids))
            flat = np.fromiter(itertools.chain.from_iterable(ids), np.int64, count=int(lengths.sum()))
        if truncated is None:
            truncated = np.fromiter((bool(e.overflowing) for e in encodings), bool, count=len(encodings))
        self.texts += len(texts)
        self.id_counts += np.bincount(flat, minlength=len(self.id_counts))[:len(self.id_counts)]
        if texts:
            points = np.frombuffer("".join(texts).encode("utf-32-le"), np.uint32)
            self._count_chars(points, 1)
            self._count_word_starts(points, texts, 1)
            if self.collect_words:
                for text in texts:
                    self.words.update(script_words(text))
        unk = self.unk_id
        need_mask = np.asarray(truncated, bool).copy()
        if unk is not None:  # the texts whose tokens hold the unknown id: by position in the flat array
            ends = np.cumsum(lengths)
            need_mask[np.searchsorted(ends, np.flatnonzero(flat == unk), side="right")] = True
        if self.drops_text:  # what no token covers is only seen in the offsets, of every text
            need_mask[:] = True
        need = np.flatnonzero(need_mask).tolist()
        if not need:
            return
        self.texts_needing_offsets += len(need)
        chosen = [texts[i] for i in need]
        redone = encodings if with_offsets else self.encoder.encode_batch(chosen)
        pieces: list[str] = []
        tails: list[str] = []
        for j, text in enumerate(chosen):
            encoding = redone[need[j]] if with_offsets else redone[j]
            spans = [span for token, span in zip(encoding.ids, encoding.offsets) if token == unk]
            read_to = max((end for _, end in encoding.offsets), default=0) if encoding.overflowing else len(text)
            dropped = uncovered_runs(text[:read_to], encoding.offsets) if self.drops_text else []
            if spans or dropped:
                self.texts_with_unknown += 1
                pieces += [text[start:end] for start, end in spans]
                self.dropped_pieces.update(dropped)
            if encoding.overflowing:  # the model never reads what follows its last token
                tails.append(text[max(read_to - 1, 0):] if read_to else " " + text)  # with the character before
        self.unknown_pieces.update(pieces)
        if tails:
            tail_points = np.frombuffer("".join(tails).encode("utf-32-le"), np.uint32)
            self._count_chars(np.frombuffer("".join(t[1:] for t in tails).encode("utf-32-le"), np.uint32), -1)
            self._count_word_starts(tail_points, tails, -1, context=True)

    def _count_chars(self, points: np.ndarray, sign: int) -> None:
        self.char_counts = _added(self.char_counts, np.bincount(points), sign)

    def _count_word_starts(self, points: np.ndarray, texts: Sequence[str], sign: int, context: bool = False) -> None:
        """Count, per code point, the words it begins, so that `result` can say how many tokens each script's words
        take (fertility). A word is a run of letters (and marks) of one script: `@user`, `«горшок»` and the Latin
        of `OPPO手机` are words of their letters' scripts. texts[i] is one run of `points`; context: each text's
        first character is the one before it in its document (a truncation tail), only there to tell whether the
        next one begins a word."""
        if not len(points):
            return
        present = np.flatnonzero(np.bincount(points))
        kinds = np.array([_word_char(int(p)) for p in present], np.int64)  # script id * 4 + (1 letter, 2 mark)
        kind = kinds[np.searchsorted(present, points)]
        letter, mark = kind % 4 == 1, kind % 4 == 2
        cont = np.zeros(len(points), bool)
        cont[1:] = (letter | mark)[:-1] & (mark[:-1] | (kind[:-1] // 4 == kind[1:] // 4))
        firsts = np.cumsum([0, *map(len, texts)])[:-1]
        firsts = firsts[firsts < len(points)]
        cont[firsts] = False  # a text's first letter begins a word whatever ended the text before it
        start = letter & ~cont
        if context:
            start[firsts] = False
        self.word_starts = _added(self.word_starts, np.bincount(points[start]), sign)

    def hidden_chars(self) -> Counter:
        """char -> occurrences inside unknown tokens' spans and in text no token covers (spaces left out): what
        the vocabulary could not spell, before the normaliser's stripped marks are added."""
        hidden: Counter = Counter()
        for piece, n in (self.unknown_pieces + self.dropped_pieces).items():
            for char, k in Counter(piece).items():
                if not char.isspace():
                    hidden[char] += k * n
        return hidden

    def normaliser_strips(self) -> Counter:
        """char -> occurrences of the characters the model reads that the tokenizer's normaliser deletes before its
        vocabulary is consulted, in scripts other than Common and Inherited: an uncased BERT strips combining marks,
        which in Thai and Devanagari are vowels and tones (ดี reads as ด). Latin accents fold to a letter ("é" ->
        "e"), so they are not counted; what a character becomes is judged alone, once per distinct character."""
        return self._deleted(lambda char: char_script(char) not in (COMMON, INHERITED))

    def normaliser_removes_marks(self) -> Counter:
        """char -> occurrences of the combining marks of script Inherited (nonspacing: Arabic's and Hebrew's vowel
        signs, the combining accents of decomposed Latin) that the tokenizer's normaliser deletes. They are not counted
        as hidden: a text reads as written without them, as Arabic is usually written and as Arabic models'
        own preprocessing reads it; they are counted so that the report can say what the model never sees."""
        return self._deleted(lambda char: char_script(char) == INHERITED and unicodedata.category(char) == "Mn")

    def _deleted(self, considered: Callable[[str], bool]) -> Counter:
        """char -> occurrences of the characters read tonight, `considered(char)` true, that the tokenizer's
        normaliser turns into nothing, judged alone (once per distinct character); empty without a normaliser."""
        normalizer = getattr(self.encoder, "normalizer", None)
        found: Counter = Counter()
        if normalizer is None:
            return found
        for point in np.flatnonzero(self.char_counts > 0).tolist():
            char = chr(point)
            if considered(char) and not normalizer.normalize_str(char):
                found[char] = int(self.char_counts[point])
        return found

    def normaliser_folds(self) -> list[list[Any]]:
        """[[char, what the normaliser makes of it, occurrences], ...] (most first, at most TOP) of the letters of
        scripts other than Latin, Common and Inherited that the tokenizer's normaliser turns into another letter, not
        only into its lower case: an uncased BERT's accent stripping reads Russian й as и and ё as е, so мой and
        мои are one word to the model. Latin accents (é -> e) are left out, as in `normaliser_strips`."""
        normalizer = getattr(self.encoder, "normalizer", None)
        if normalizer is None:
            return []
        found = []
        for point in np.flatnonzero(self.char_counts > 0).tolist():
            char = chr(point)
            if char_script(char) in (COMMON, INHERITED, "Latin") or not char.isalpha():
                continue
            read = normalizer.normalize_str(char).strip()
            # a Hangul syllable decomposed into its jamo is the same letter, spelled as coverage counts elsewhere
            if read and read not in (char, char.lower()) and unicodedata.normalize("NFC", read) != char:
                found.append([char, read, int(self.char_counts[point])])
        return sorted(found, key=lambda row: (-row[2], row[0]))[:TOP]

    def is_unknown_alone(self, chars: list[str]) -> dict[str, bool]:
        """Whether each character, encoded on its own, becomes the unknown token (cached per counter)."""
        todo = [c for c in chars if c not in self._unknown_alone]
        if todo:
            for char, encoding in zip(todo, self.encoder.encode_batch_fast(todo, add_special_tokens=False)
                                      if hasattr(self.encoder, "encode_batch_fast")
                                      else self.encoder.encode_batch(todo, add_special_tokens=False)):
                self._unknown_alone[char] = self.unk_id in encoding.ids or not encoding.ids  # unknown, or dropped
        return {c: self._unknown_alone[c] for c in chars}

    def result(self) -> dict[str, Any]:
        """The night's coverage as plain JSON types (shares are fractions in [0, 1], rounded to 6 digits):

        {"unknown_token": "[UNK]" | None, "texts", "texts_with_unknown", "tokens", "unknown_tokens",
         "unknown_token_share", "chars", "hidden_chars", "hidden_char_share",
         "spelled_in_pieces_chars", "spelled_in_pieces_char_share" (characters of the scripts whose words take
         more than MAX_TOKENS_PER_WORD tokens),
         "by_script": {script: {"tokens", "unknown_tokens", "unknown_token_share", "chars", "hidden_chars",
                                "hidden_char_share", and for a script written with spaces whose words it saw at
                                least MIN_WORDS times "words", "tokens_per_word"}} (most characters first),
         "top_unknown_chars": [[char, occurrences], ...] (unknown to the vocabulary, not the normaliser's),
         "top_unknown_words": [[text, occurrences], ...], and where there are some "stripped_chars" (an occurrence
         count, hidden) with "top_stripped_chars" (`normaliser_strips`), "removed_marks" with "top_removed_marks"
         (`normaliser_removes_marks`, not hidden) and "folded_chars" ([[char, read as, occurrences], ...],
         `normaliser_folds`)}
        """
        counts = self.id_counts.copy()
        counts[self._special] = 0
        unknown_tokens = int(counts[self.unk_id]) if self.unk_id is not None else 0
        scripts: dict[str, dict[str, int]] = {}

        def row(script: str) -> dict[str, int]:
            return scripts.setdefault(script, {"tokens": 0, "unknown_tokens": 0, "chars": 0, "hidden_chars": 0,
                                               "words": 0})

        # known tokens: the script of the vocabulary piece, decoded as the tokenizer decodes it
        known = np.flatnonzero(counts)
        known = known[known != self.unk_id] if self.unk_id is not None else known
        with _gc_paused():  # one small list per id: a cyclic collection here would walk the whole heap for nothing
            decoded = self.encoder.decode_batch([[i] for i in known.tolist()], skip_special_tokens=False)
        names: dict[str, int] = {}
        codes = np.fromiter((names.setdefault(_piece_script(text), len(names)) for text in decoded), np.int64,
                            count=len(decoded))
        for script, total in zip(names, np.bincount(codes, weights=counts[known], minlength=len(names))):
            row(script)["tokens"] += int(total)
        # unknown tokens: the script of the text they stand for
        for piece, n in self.unknown_pieces.items():
            entry = row(text_script(piece))
            entry["tokens"] += n
            entry["unknown_tokens"] += n
        hidden = self.hidden_chars()
        stripped = self.normaliser_strips()
        for char, n in stripped.items():  # every occurrence is hidden, some already inside an unknown token's span
            hidden[char] = max(hidden[char], n)
        for char, n in hidden.items():
            row(char_script(char))["hidden_chars"] += n
        # characters the model reads (not spaces), and the words they begin
        for point in np.flatnonzero(self.char_counts):
            char = chr(int(point))
            if not char.isspace():
                row(char_script(char))["chars"] += int(self.char_counts[point])
        for point in np.flatnonzero(self.word_starts > 0):
            row(char_script(chr(int(point))))["words"] += int(self.word_starts[point])
        chars, hidden_chars = sum(r["chars"] for r in scripts.values()), sum(hidden.values())
        alone = self.is_unknown_alone(sorted(hidden))
        top_chars = sorted(((c, n) for c, n in hidden.items() if alone[c] and c not in stripped),
                           key=lambda kv: (-kv[1], kv[0]))[:TOP]
        marks = self.normaliser_removes_marks()
        top_words = sorted((self.unknown_pieces + self.dropped_pieces).items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]
        tokens = int(counts.sum())
        by_script = {
            script: {"tokens": r["tokens"], "unknown_tokens": r["unknown_tokens"],
                     "unknown_token_share": _share(r["unknown_tokens"], r["tokens"]), "chars": r["chars"],
                     "hidden_chars": r["hidden_chars"], "hidden_char_share": _share(r["hidden_chars"], r["chars"]),
                     **_fertility(script, r)}
            for script, r in sorted(scripts.items(), key=lambda kv: (-kv[1]["chars"], -kv[1]["tokens"], kv[0]))
        }
        pieces = sum(chars for _, _, chars in pieced_scripts({"by_script": by_script}))
        return {
            "unknown_token": self.encoder.id_to_token(self.unk_id) if self.unk_id is not None else None,
            **({"drops_text": True} if self.drops_text else {}),
            **({"stripped_chars": sum(stripped.values()), "top_stripped_chars": _most(stripped)} if stripped else {}),
            **({"removed_marks": sum(marks.values()), "top_removed_marks": _most(marks)} if marks else {}),
            **({"folded_chars": folded} if (folded := self.normaliser_folds()) else {}),
            "texts": self.texts, "texts_with_unknown": self.texts_with_unknown,
            "tokens": tokens, "unknown_tokens": unknown_tokens, "unknown_token_share": _share(unknown_tokens, tokens),
            "chars": chars, "hidden_chars": hidden_chars, "hidden_char_share": _share(hidden_chars, chars),
            "spelled_in_pieces_chars": pieces, "spelled_in_pieces_char_share": _share(pieces, chars),
            "by_script": by_script,
            "top_unknown_chars": [[c, n] for c, n in top_chars],
            "top_unknown_words": [[w, n] for w, n in top_words],
        }


# One character of many scripts: a tokenizer without an unknown token that leaves any of them without a token drops
# what its vocabulary cannot spell (a character-level BPE trained without one), where a byte-level one reads all.
PROBE = "a Z é ß 中 あ ア 한 ไ ع Ж ह ⅷ 😀 𝔘 ☃ ꙮ"


def uncovered_runs(text: str, offsets: Sequence[tuple[int, int]]) -> list[str]:
    """The runs of non-space characters of `text` that no token's (start, end) character offsets cover: what the
    tokenizer dropped."""
    covered = np.zeros(len(text) + 1, np.int32)
    for start, end in offsets:
        if end > start:
            covered[start] += 1
            covered[end] -= 1
    inside = np.cumsum(covered[:-1]) > 0
    runs, current = [], []
    for char, seen in zip(text, inside):
        if seen or char.isspace():
            if current:
                runs.append("".join(current))
                current = []
        else:
            current.append(char)
    return runs + (["".join(current)] if current else [])


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _share(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


def _added(counts: np.ndarray, more: np.ndarray, sign: int) -> np.ndarray:
    """counts + sign * more, per code point, counts grown to more's length where it is shorter."""
    if len(more) > len(counts):
        counts = np.concatenate([counts, np.zeros(len(more) - len(counts), np.int64)])
    counts[:len(more)] += sign * more
    return counts


_SCRIPT_IDS: dict[str, int] = {}


@lru_cache(maxsize=1 << 16)
def _word_char(point: int) -> int:
    """script id * 4 + 1 for a letter, + 2 for a mark (a combining accent, a vowel sign), + 0 otherwise."""
    char = chr(point)
    category = unicodedata.category(char)
    script = _SCRIPT_IDS.setdefault(char_script(char), len(_SCRIPT_IDS))
    return script * 4 + (1 if category[0] == "L" else 2 if category[0] == "M" else 0)


# Fertility (tokens per word; Rust et al., "How Good is Your Tokenizer?", ACL 2021): the packaged MiniLM takes 1.3
# tokens per word of English tweets, 2.4 of German, 2.9 of Finnish, 3.2 of Turkish, and 4.5-5.6 of Greek, Arabic and
# Russian, which its English vocabulary spells nearly letter by letter though no token is unknown. Above this the
# script counts as spelled in pieces (`spelled_in_pieces_char_share`), and coverage as poor like hidden text.
MAX_TOKENS_PER_WORD = 4.0
MIN_WORDS = 50  # words of a script below which its tokens per word say little
# a run of letters with their marks; `script_words` cuts it where the script changes (OPPO手机: OPPO, 手机)
WORD_PATTERN = regex.compile(r"\p{L}[\p{L}\p{M}]*")


def script_words(text: str) -> list[str]:
    """The words of `text` in scripts written with spaces (not Common, Inherited or NO_SPACE_SCRIPTS): runs of
    letters and marks, cut where the letters' script changes."""
    words = []
    for run in WORD_PATTERN.findall(text):
        start, script = 0, None
        for index, char in enumerate(run):
            here = char_script(char)
            if here in (COMMON, INHERITED):
                continue
            if script is not None and here != script:
                words.append((script, run[start:index]))
                start = index
            script = here
        words.append((script, run[start:]))
    return [word for script, word in words
            if script not in (None, COMMON, INHERITED) and script not in NO_SPACE_SCRIPTS]


def _fertility(script: str, row: dict[str, int]) -> dict[str, Any]:
    """{"words", "tokens_per_word"} of a script written with spaces whose words were seen at least MIN_WORDS
    times; {} otherwise (Common, Inherited, and Han, Kana, Thai..., whose letter runs are phrases, not words)."""
    words = row["words"]
    if script in (COMMON, INHERITED) or script in NO_SPACE_SCRIPTS or words < MIN_WORDS:
        return {}
    return {"words": words, "tokens_per_word": round(row["tokens"] / words, 3)}


def measure(tokenizer: Any, texts: Sequence[str], max_length: int | None = None, batch_size: int = 2048,
            counter: CoverageCounter | None = None) -> dict[str, Any]:
    """Coverage of texts (any number) through a tokenizer: a transformers fast tokenizer (encoded as the tokenize
    stage does, truncated at max_length tokens) or a `tokenizers.Tokenizer` used as it is. Encodes the texts; the
    tokenize stage instead feeds its own encodings to a CoverageCounter. `counter` adds to an existing one."""
    encoder = _as_encoder(tokenizer, max_length)
    counter = counter or CoverageCounter(encoder)
    fast = getattr(encoder, "encode_batch_fast", None)
    for start in range(0, len(texts), batch_size):
        batch = list(texts[start:start + batch_size])
        with_offsets = fast is None or counter.wants_offsets
        counter.add(batch, (encoder.encode_batch if with_offsets else fast)(batch), with_offsets=with_offsets)
    return counter.result()


# --- what to do about poor coverage ------------------------------------------------------------------------------

# Han alone (no Kana: not Japanese) -> a Chinese BERT or a multilingual encoder; any other script (Hiragana, Katakana,
# Hangul, Thai, Arabic, Cyrillic, Devanagari, ...) -> a multilingual encoder; Common alone (emoji) -> byte-level BPE.
MULTILINGUAL = "a multilingual encoder such as `bert-base-multilingual-cased` or `xlm-roberta-base`"


def affected_scripts(coverage: dict[str, Any], limit: int = 3) -> list[tuple[str, int, float]]:
    """(script, hidden characters, hidden character share) of the scripts with hidden characters, most first."""
    rows = [(s, r["hidden_chars"], r["hidden_char_share"]) for s, r in (coverage.get("by_script") or {}).items()
            if r.get("hidden_chars")]
    return sorted(rows, key=lambda r: (-r[1], r[0]))[:limit]


def _most(counts: Counter) -> list[list[Any]]:
    """[[char, occurrences], ...], most first (ties by character), at most TOP."""
    return [[c, n] for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]]


def pieced_scripts(coverage: dict[str, Any]) -> list[tuple[str, float, int]]:
    """(script, tokens per word, characters) of the scripts spelled in pieces (more than MAX_TOKENS_PER_WORD tokens
    per word), most characters first."""
    rows = [(s, r["tokens_per_word"], r["chars"]) for s, r in (coverage.get("by_script") or {}).items()
            if r.get("tokens_per_word", 0) > MAX_TOKENS_PER_WORD]
    return sorted(rows, key=lambda r: (-r[2], r[0]))


def pieces_line(coverage: dict[str, Any]) -> str:
    """'Cyrillic 5.8 tokens per word (133,398 characters, 93.4 % of the night's)' for the scripts spelled in pieces;
    '' when none is."""
    return "; ".join(f"{s} {per_word:.1f} tokens per word ({n:,} characters, "
                     f"{n / max(coverage.get('chars', 0), 1):.1%} of the night's)"
                     for s, per_word, n in pieced_scripts(coverage))


def advice(coverage: dict[str, Any]) -> str:
    """One sentence: which kind of base model reads the scripts this night's unknown tokens hide, and how to set it."""
    by_script = coverage.get("by_script") or {}
    scripts = [s for s, _, _ in affected_scripts(coverage, limit=99) if s not in (COMMON, INHERITED)]
    scripts += [s for s, _, _ in pieced_scripts(coverage) if s not in scripts]
    setting = ("download it into a local Hugging Face folder and set `train.base_model` to that folder (the token "
               "shards are then made again with its tokenizer)")
    if not scripts:
        return ("The unknown characters are emoji and symbols (script Common): a byte-level BPE model such as "
                "`roberta-base` has no unknown token, and `xlm-roberta-base`'s vocabulary holds many emoji; "
                f"{setting}. If emoji carry no signal for your labels, this may be acceptable.")
    japanese = any(by_script.get(s, {}).get("chars") for s in ("Hiragana", "Katakana"))
    if scripts == ["Han"] and not japanese:
        return (f"The hidden text is Chinese (script Han): use a base model whose vocabulary covers it, such as "
                f"`bert-base-chinese` (Chinese only) or {MULTILINGUAL}; {setting}.")
    named = " and ".join(scripts[:4]) if len(scripts) <= 2 else ", ".join(scripts[:4])
    return f"Use a base model whose vocabulary covers {named}: {MULTILINGUAL}; {setting}."


def poor_coverage_message(coverage: dict[str, Any], threshold: float, run_date: str, source: str) -> str:
    """The warning for a night whose coverage is poor (`is_poor`): the shares, the scripts most affected, the top
    unknown characters or the scripts spelled in pieces (whichever made it poor, or both), what to do, and the two
    settings."""
    scripts = "; ".join(f"{s} {n:,} characters hidden ({share:.1%} of its characters)"
                        for s, n, share in affected_scripts(coverage))
    chars = ", ".join(f"{c!r} x{n}" for c, n in (coverage.get("top_unknown_chars") or [])[:10]) or "none on their own"
    if coverage.get("unknown_token") is None:  # drops_text: nothing stands for what it cannot spell
        shares = "it has no unknown token and drops what its vocabulary cannot spell, so"
    else:
        shares = (f"{coverage['unknown_token_share']:.1%} of the tokens are the unknown token "
                  f"{coverage.get('unknown_token')} ({coverage['unknown_tokens']:,} of {coverage['tokens']:,}), and")
    pieces = pieces_line(coverage)
    hidden = max(coverage.get("unknown_token_share", 0.0), coverage.get("hidden_char_share", 0.0)) > threshold
    parts = []
    if hidden or not pieces:
        parts.append(f"{shares} {coverage['hidden_char_share']:.1%} of the characters are hidden from the model "
                     f"(tokenize.max_unknown_share, {threshold:.1%}, bounds both shares): the tokenizer of {source} "
                     f"cannot spell them from its vocabulary. Most affected: {scripts or 'none'}. Most frequent "
                     f"unknown characters: {chars}.")
    if pieces:
        parts.append(f"{'T' if hidden else 'the t'}okenizer of {source} spells "
                     f"{coverage.get('spelled_in_pieces_char_share', 0.0):.1%} of the characters in pieces (more "
                     f"than {MAX_TOKENS_PER_WORD:g} tokens per word; English takes about 1.3; "
                     f"tokenize.max_unknown_share, {threshold:.1%}, bounds this share too): {pieces}. The model then "
                     "reads their words nearly letter by letter, and a text holds fewer words within "
                     "tokenize.max_length.")
    return (f"poor vocabulary coverage for run_date={run_date}: {' '.join(parts)} {advice(coverage)} Settings: "
            "tokenize.max_unknown_share (the threshold), tokenize.on_poor_coverage (warn, or refuse to stop before "
            "any token shard is written).")


# Below this many tokens a share says little (a night of 8 tokens, 4 of them emoji): no verdict either way.
MIN_TOKENS_FOR_VERDICT = 200


def is_poor(coverage: dict[str, Any] | None, threshold: float) -> bool:
    """True when a measured night's unknown token share, its hidden character share or the share of its characters
    spelled in pieces (`pieced_scripts`) is above threshold (None: not measured) and it holds at least
    MIN_TOKENS_FOR_VERDICT tokens. All three, because any can be small while another is not: an uncased BERT splits
    a Hangul syllable into jamo tokens, so a night whose words are [UNK] can hold 4 % unknown tokens and hide 26 % of
    its characters; a tokenizer that drops what it cannot spell has no unknown token; Russian through an English
    vocabulary has neither, and takes six tokens a word."""
    if not coverage or coverage.get("tokens", 0) < MIN_TOKENS_FOR_VERDICT:
        return False
    return _largest_share(coverage)[0] > threshold


def over_threshold(coverage: dict[str, Any], threshold: float) -> str:
    """'72.1% of its tokens are [UNK]' (or its characters hidden, or spelled in pieces): the largest of the shares
    `is_poor` bounds, for a refusal to name the one that went over `threshold`."""
    share, what = _largest_share(coverage)
    return f"{share:.1%} {what}"


def _largest_share(coverage: dict[str, Any]) -> tuple[float, str]:
    """(share, what it is a share of) of the largest of the three shares `is_poor` bounds; the pieced share is
    absent from nights measured before 2026-12-05."""
    shares = [(coverage.get("unknown_token_share", 0.0), f"of its tokens are {coverage.get('unknown_token')}"),
              (coverage.get("hidden_char_share", 0.0), "of its characters are hidden from the model"),
              (coverage.get("spelled_in_pieces_char_share", 0.0), "of its characters are spelled in pieces")]
    share, what = max(shares, key=lambda pair: float(pair[0]))
    return float(share), what
