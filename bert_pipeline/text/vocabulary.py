"""Vocabulary extension: the lake's characters and words that the base tokenizer turns into its unknown token become
tokens of their own, and the model's embedding matrix grows to read them.

The packaged MiniLM's English vocabulary reads two Chinese characters in three as [UNK]: no amount of fine-tuning can
tell 好 from 差 when both are the same vector. Following the usual Hugging Face recipe (`tokenizer.add_tokens`, then
`model.resize_token_embeddings`), a night's unknown text is added to the tokenizer:

- characters that are unknown on their own (as `coverage` counts them) and occur at least `min_count` times in the
  night's unknown spans: every script (Han, Kana, Thai, Hangul, emoji...). In scripts without spaces they are the
  units the model reads;
- whole words of space-delimited scripts whose span is unknown (a Cyrillic or Arabic word the vocabulary cannot spell,
  a product code with an unknown symbol), at least `min_count` times, matched only as whole words (`single_word`);
- whole words, as often, of a script the vocabulary spells in pieces though none is unknown (Russian through an
  English vocabulary: `coverage.pieced_scripts`), that the tokenizer splits.

Additions are written as the tokenizer's normaliser writes them (lower case for an uncased model) and matched on the
normalised text, except Han characters, matched as written (`written_one_way`: so that the vocabulary holds `如`,
not the normaliser's `' 如 '`); never equal to a special token, so a user's "[SEP]" stays text
(models.fast_encoder). They are appended after the base vocabulary, in order of frequency, so ids of the base
vocabulary never move and an extension only ever grows: an extended tokenizer of a later night holds every addition
of an earlier one.

New embedding rows (`grow_embeddings`): a token the base tokenizer could spell from known pieces starts as the mean of
those pieces' vectors; a token it could not spell starts from Hugging Face's `mean_resizing` (a sample from a normal
with the old rows' mean and covariance: Hewitt, "Initializing new word embeddings for pretrained language models",
2021), so that the model's first outputs are not disturbed by it.

The lake keeps each extended tokenizer once, content-addressed, with a pointer to the newest one per base tokenizer:

    <root>/tokenizers/<hash>/          tokenizer files (save_pretrained) and _manifest.json (written last)
    <root>/tokenizers/_current-<base hash>.json   {"hash", "folder", "added"}: where the next night starts
"""

from __future__ import annotations

import logging
import os
import tempfile
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable

from bert_pipeline.lake import storage
from bert_pipeline.text.coverage import NO_SPACE_SCRIPTS, CoverageCounter, char_script, pieced_scripts, text_script

log = logging.getLogger(__name__)

MANIFEST = "_manifest.json"


@dataclass(frozen=True)
class Addition:
    """One new token: its text (normalised), how often its text was unknown in the night, and whether it is a whole
    word (matched only between word boundaries) or a character."""

    text: str
    count: int
    word: bool


def choose_additions(counter: CoverageCounter, min_count: int, max_new: int,
                     coverage: dict[str, Any] | None = None) -> list[Addition]:
    """The characters and words to add, most frequent first, at most `max_new`, from a night's coverage count.

    counter: a CoverageCounter fed with the night's encodings (its `unknown_pieces` map each unknown span's text to its
    occurrences). Characters: those unknown on their own, counted over all unknown spans. Words: unknown spans of
    more than one character whose script is written with spaces (not Han, Kana, Thai...: there the characters are
    the units), without spaces inside. Both normalised as the tokenizer normalises (`normalize`). A tokenizer
    without an unknown token that drops what it cannot spell (`counter.drops_text`) gets its dropped text the same
    way; one that reads everything (byte-level BPE) gets nothing (its pre-tokenizer would leave the space before
    an added word as a token of its own). Words of a script the vocabulary spells in pieces
    (`coverage.pieced_scripts`: Russian through an English vocabulary, nearly letter by letter), when the counter
    collected its words (`collect_words`): those the tokenizer splits, seen at least `min_count` times (their
    embeddings start as the mean of their pieces', `grow_embeddings`). coverage: `counter.result()`, when the caller
    has it."""
    if counter.unk_id is None and not counter.drops_text:
        return []
    words = pieced_words(counter, min_count, coverage)
    chars = counter.hidden_chars()
    for piece, n in (counter.unknown_pieces + counter.dropped_pieces).items():
        if len(piece) > 1 and not any(c.isspace() for c in piece) and text_script(piece) not in NO_SPACE_SCRIPTS:
            words[piece] += n
    encoder = counter.encoder
    known = set(encoder.get_vocab(with_added_tokens=True))
    alone = counter.is_unknown_alone(sorted(chars))
    totals: Counter = Counter()  # (normalised text, is a word) -> occurrences: Word and WORD are one token
    for text, n, word in [(c, n, False) for c, n in chars.items() if alone[c]] + [(w, n, True) for w, n in words.items()]:
        totals[normalize(encoder, text), word] += n
    found = [Addition(text, n, word) for (text, word), n in totals.items()  # a space inside never matches
             if n >= min_count and text.strip() and " " not in text and text not in known and not _looks_special(text)]
    ranked = sorted(found, key=lambda a: (-a.count, a.word, a.text))
    return ranked[:max_new]


def pieced_words(counter: CoverageCounter, min_count: int, coverage: dict[str, Any] | None = None) -> Counter:
    """word -> occurrences of the collected words (`counter.words`) of scripts spelled in pieces that occur at least
    min_count times and that the tokenizer splits into more than one token. coverage: `counter.result()` where the
    caller has it already (it decodes every token id seen)."""
    if not counter.words:
        return Counter()
    scripts = {script for script, _, _ in pieced_scripts(coverage or counter.result())}
    frequent = [(w, n) for w, n in counter.words.items() if n >= min_count and text_script(w) in scripts]
    if not frequent:
        return Counter()
    encoded = counter.encoder.encode_batch([w for w, _ in frequent], add_special_tokens=False)
    return Counter({w: n for (w, n), e in zip(frequent, encoded) if len(e.ids) > 1})


def normalize(encoder: Any, text: str) -> str:
    """text as the tokenizer's normaliser writes it (lower case, accents stripped for an uncased BERT); unchanged
    without a normaliser. Added tokens are matched against normalised text."""
    normalizer = encoder.normalizer
    return normalizer.normalize_str(text).strip() if normalizer is not None else text


def _looks_special(text: str) -> bool:
    # "[SEP]", "<s>", "</s>" typed by users must stay text; a token spelt like one would invite confusion
    return (text.startswith("[") and text.endswith("]")) or (text.startswith("<") and text.endswith(">"))


def extend(tokenizer: Any, additions: Iterable[Addition]) -> int:
    """Add `additions` to a transformers fast tokenizer, in place, after every id it has; returns how many were new.

    Characters are matched anywhere, words only as whole words (AddedToken(single_word=True)); against the
    normalised text, except a Han character (`written_one_way`), matched as written; never as special tokens."""
    from tokenizers import AddedToken

    tokens = [AddedToken(a.text, single_word=a.word, normalized=not written_one_way(a.text), special=False)
              for a in additions]
    return int(tokenizer.add_tokens(tokens)) if tokens else 0


def written_one_way(text: str) -> bool:
    """Whether `text` is one Han character outside the CJK compatibility blocks: one with no case, no accents and
    no other character that a BERT normaliser folds into it (compatibility ideographs decompose into unified ones).
    Such an addition is matched on the text as written (AddedToken(normalized=False)), which tokenizes as matching
    it on the normalised text would, and the vocabulary holds it as the character itself: a normalised addition is
    held as BERT's normaliser writes it, ' 如 ' with the spaces it puts around CJK characters, which Hugging Face's
    `pipeline("token-classification")` takes for a subword (its length differs from the text's), merging a whole
    Chinese sentence into one word. Kana, Hangul and Thai stay normalised: an uncased normaliser folds が into か
    and strips Thai marks, so their other spellings must still match."""
    if len(text) != 1 or char_script(text) != "Han":
        return False
    code = ord(text)
    return not (0xF900 <= code <= 0xFAFF or 0x2F800 <= code <= 0x2FA1F) and text not in _COMPATIBILITY_TARGETS


# the unified ideographs that BERT's NFD makes of compatibility ideographs in a text (豈 U+F900 is read as 豈 U+8C48):
# added as written, they would no longer match the compatibility form
_COMPATIBILITY_TARGETS = frozenset(unicodedata.normalize("NFD", chr(code)) for code in (
    *range(0xF900, 0xFB00), *range(0x2F800, 0x2FA20)))


def added_texts(tokenizer: Any) -> list[str]:
    """The non-special added tokens of a fast tokenizer, in id order: what an extension added to its base."""
    decoder = tokenizer.backend_tokenizer.get_added_tokens_decoder()
    return [token.content for _, token in sorted(decoder.items()) if not token.special]


def grow_embeddings(model: Any, tokenizer: Any, base_tokenizer: Any | None = None) -> int:
    """Grow a Hugging Face model's input embeddings (and a tied output layer) to len(tokenizer) rows; returns how many
    rows were added (0 when it already has enough).

    New rows: HF's mean_resizing (a normal draw with the old rows' mean and covariance; Hewitt 2021), then, for each
    new token that `base_tokenizer` (default: `tokenizer` without its added tokens cannot be had, so pass the base)
    spells from known pieces, the mean of those pieces' rows. Shapes: embeddings [vocab, hidden] -> [len(tokenizer),
    hidden]."""
    import torch

    embeddings = model.get_input_embeddings()
    old = embeddings.weight.shape[0]
    new = len(tokenizer)
    if new <= old:
        return 0
    model.resize_token_embeddings(new, mean_resizing=True)
    if base_tokenizer is None:
        return new - old
    weight = model.get_input_embeddings().weight
    unk = base_tokenizer.unk_token_id
    ids = list(range(old, new))
    texts = tokenizer.convert_ids_to_tokens(ids)
    pieces = base_tokenizer(texts, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        for row, spelled in zip(ids, pieces):
            if spelled and unk not in spelled and max(spelled) < old:
                weight[row] = weight[spelled].mean(dim=0)
    return new - old


# --- the lake's extended tokenizers --------------------------------------------------------------------------------


def current_pointer(root: str, base_hash: str) -> str:
    return storage.join(root, "tokenizers", f"_current-{base_hash}.json")


def current_extension(root: str, base_hash: str) -> dict[str, Any] | None:
    """{"hash", "folder", "added"} of the newest extended tokenizer of this base in the lake; None when none."""
    pointer = storage.read_json(current_pointer(root, base_hash))
    if pointer and storage.exists(storage.join(pointer["folder"], MANIFEST)):
        return pointer
    return None


def load_extension(folder: str, token_hash: str) -> Any:
    """The extended tokenizer kept in the lake at `folder` (a local path or a URL: copied once into the local cache,
    under its hash, as it never changes)."""
    from bert_pipeline.modeling.models import CACHE_DIR, load_tokenizer

    return load_tokenizer(storage.download_folder(folder, str(CACHE_DIR / "tokenizers" / token_hash)))


def save_extension(root: str, tokenizer: Any, token_hash: str, base_hash: str, manifest: dict[str, Any]) -> str:
    """Write an extended tokenizer to <root>/tokenizers/<token_hash>/ (once: an existing folder is the same content)
    and point the base's pointer at it; returns the folder URL. The manifest is written after the files and the
    pointer after the manifest, so a kill at any point leaves either the old state or the new."""
    folder = storage.join(root, "tokenizers", token_hash)
    if not storage.exists(storage.join(folder, MANIFEST)):
        with tempfile.TemporaryDirectory() as tmp:
            tokenizer.save_pretrained(tmp)
            for name in sorted(os.listdir(tmp)):
                with open(os.path.join(tmp, name), "rb") as handle:
                    storage.write_bytes_atomic(storage.join(folder, name), handle.read())
        storage.write_json_atomic(storage.join(folder, MANIFEST), {"hash": token_hash, "base_hash": base_hash, **manifest})
    storage.write_json_atomic(current_pointer(root, base_hash),
                              {"hash": token_hash, "folder": folder, "added": manifest.get("added", 0)})
    return folder


def summary(additions: list[Addition], limit: int = 20) -> dict[str, Any]:
    """What was added, for manifests and reports: counts by script and kind, the most frequent additions."""
    by_script = Counter(text_script(a.text) for a in additions)
    return {"added": len(additions), "words": sum(a.word for a in additions),
            "characters": sum(not a.word for a in additions),
            "by_script": dict(by_script.most_common()),
            "top": [[a.text, a.count] for a in additions[:limit]]}

