"""Long documents: a text longer than the model's window is read as overlapping windows, one prediction per document.

The rule (`score.long_text: chunk`, `train.long_text: chunk`):
  - the text is tokenized without truncation; its content tokens (without the tokenizer's special tokens) are cut into
    windows of `max_length - specials` tokens, each starting three quarters of a window after the previous one (a
    quarter overlap, so a sentence cut at one window's edge is whole in the next), the last window ending at the
    text's end; each window gets the special tokens back ([CLS] ... [SEP] for BERT) and is `max_length` tokens at most;
  - a text that fits the window is one window, exactly the sequence truncation would give;
  - the document's logits are the mean of its windows' logits (so its softmax is the normalised geometric mean of the
    windows' probabilities, and a multi-label document's sigmoid that of the mean logit): every window counts, a
    single strongly worded window cannot outvote the rest. Measured against truncation in
    benchmarks/bench_long_text.py.
  - training on chunks: every window of a training document is a training row with the document's label(s);
    validation and test are scored per document with the rule above, so metrics are document-level.
  - token classification (task: ner): each token's logits are those of the window that reads it in the most
    context (BERT's "max context" rule, `ner.tagging.combine_window_logits`), so an entity across a window edge is
    decoded whole and once; a training window's tag targets are its own tokens' tags.

The same windowing (HF's `stride`/`return_overflowing_tokens` in the question-answering examples) is used for
training, evaluation and scoring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from bert_pipeline.ner.tagging import combine_window_logits


@dataclass(frozen=True)
class Windowing:
    """How one tokenizer's sequences are cut: `prefix`/`suffix` are its special token ids around a single text."""

    max_length: int
    prefix: tuple[int, ...]
    suffix: tuple[int, ...]

    @classmethod
    def of(cls, encoder: Any, max_length: int) -> "Windowing":
        """The special tokens a `tokenizers.Tokenizer` adds around one text (found by encoding "" and "a")."""
        empty, one = encoder.encode("").ids, encoder.encode("a").ids
        start = 0
        while start < len(empty) and start < len(one) and empty[start] == one[start]:
            start += 1
        if max_length <= len(empty):
            raise ValueError(f"max_length {max_length} leaves no room for text beside {len(empty)} special tokens")
        return cls(max_length, tuple(empty[:start]), tuple(empty[start:]))

    @property
    def content(self) -> int:
        """Content tokens per window."""
        return self.max_length - len(self.prefix) - len(self.suffix)

    @property
    def step(self) -> int:
        """Content tokens between the starts of two windows: three quarters of a window (a quarter overlap)."""
        return max(1, self.content - self.content // 4)

    def count(self, tokens: int) -> int:
        """Windows of a text of `tokens` content tokens: 1 + ceil((tokens - content) / step) for a longer one."""
        return 1 if tokens <= self.content else 1 + -(-(tokens - self.content) // self.step)

    def starts(self, tokens: int) -> list[int]:
        """Where each window of a text of `tokens` content tokens starts, in content tokens (split's order)."""
        last = tokens - self.content
        return [0] if tokens <= self.content else [min(i * self.step, last) for i in range(self.count(tokens))]

    def strip(self, sequence: np.ndarray) -> np.ndarray:
        """A sequence's (or its per-token values') content part: without the special tokens around it."""
        return sequence[len(self.prefix):len(sequence) - len(self.suffix)]

    def cut_values(self, values: Sequence[np.ndarray], fill: Any) -> list[np.ndarray]:
        """Per-token values of untruncated sequences (e.g. tag targets) cut as `split` cuts the sequences: one array
        per window, `fill` on the special tokens each window gets."""
        head, tail = np.full(len(self.prefix), fill), np.full(len(self.suffix), fill)
        return [window for row in values for window in self._cut(row, head, tail)]

    def split(self, sequences: Sequence[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
        """(windows, document index [windows] int64) of untruncated sequences (special tokens included), in order.

        Every window is at most max_length ids; documents keep their order and their windows are contiguous."""
        prefix, suffix = np.asarray(self.prefix, np.int64), np.asarray(self.suffix, np.int64)
        cut = [self._cut(sequence, prefix, suffix) for sequence in sequences]
        counts = np.fromiter(map(len, cut), dtype=np.int64, count=len(cut))
        return [window for windows in cut for window in windows], np.repeat(np.arange(len(sequences)), counts)

    def _cut(self, row: np.ndarray, head: np.ndarray, tail: np.ndarray) -> list[np.ndarray]:
        """One sequence's (or its per-token values') windows: the row itself when it fits one window, else each
        window's part of its content between `head` and `tail` (what the special tokens become)."""
        body = self.strip(row)
        if len(row) <= self.max_length and self.count(len(body)) == 1:
            return [row]
        return [np.concatenate([head, body[start:start + self.content], tail]).astype(row.dtype)
                for start in self.starts(len(body))]

def mean_by_document(values: np.ndarray, document: np.ndarray, documents: int) -> np.ndarray:
    """values [windows, k] averaged per document -> [documents, k] (documents without windows stay 0)."""
    total = np.zeros((documents, values.shape[1]), dtype=np.float64)
    np.add.at(total, document, values)
    counts = np.bincount(document, minlength=documents).astype(np.float64)
    return (total / np.maximum(counts, 1)[:, None]).astype(np.float32)


def token_logits_over_windows(windowing: Windowing, sequences: Sequence[np.ndarray],
                              predict: Callable[[list[np.ndarray]], list[np.ndarray]]) -> tuple[
        list[np.ndarray], np.ndarray]:
    """Token classification over windows: per text, the logits of its content tokens [content tokens, tags], each
    token's from the window that reads it in the most context (`ner.tagging.combine_window_logits`); and the windows
    each text took [texts] int32. sequences: untruncated, special tokens included; predict: windows -> their token
    logits. A text that fits one window gets exactly its unwindowed logits."""
    windows, document = windowing.split(sequences)
    logits = predict(windows)
    counts = np.bincount(document, minlength=len(sequences))
    first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    combined = [combine_window_logits([windowing.strip(w) for w in logits[first[doc]:first[doc] + counts[doc]]],
                                      windowing.starts(len(windowing.strip(sequence))),
                                      len(windowing.strip(sequence)))
                for doc, sequence in enumerate(sequences)]
    return combined, counts.astype(np.int32)
