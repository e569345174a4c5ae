"""Entity-level NER metrics, type confusion, and the memorising baseline.

An entity counts as correct only with its exact boundaries and type, as in seqeval's strict IOB2 mode
(`classification_report(..., mode="strict", scheme=IOB2)`, seqeval 1.2.2) and the CoNLL-2003 shared task: per type,
precision = correct / predicted and recall = correct / gold (0 where the denominator is 0, seqeval's
zero_division default); micro pools every type's counts; macro is the unweighted mean of the per-type values over the
types present in the gold or the predictions (seqeval's "macro avg"). tests/unit/test_ner_core.py checks agreement.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Iterable, Sequence

import numpy as np
import regex

from bert_pipeline.lake import storage
from bert_pipeline.ner.spans import Span

LEXICON_FILE = "lexicon.json"  # the memorising baseline inside a model's baseline/ folder

_WORD_GLUE = regex.compile(r"[\w--[\p{scx=Han}\p{scx=Hiragana}\p{scx=Katakana}]]", regex.V1)


def _keys(spans: Iterable[Any]) -> set[tuple[int, int, str]]:
    """(start, end, label) of Spans, (start, end, label) tuples or EntityPrediction (its score ignored)."""
    return {(s.start, s.end, s.label) if isinstance(s, Span) else (int(s[0]), int(s[1]), str(s[2])) for s in spans}


def _prf(correct: int, predicted: int, gold: int) -> dict[str, float]:
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def entity_scores(gold: Sequence[Iterable[Any]], pred: Sequence[Iterable[Any]]) -> dict[str, Any]:
    """Exact-match entity precision/recall/F1: {"micro": {...}, "macro": {...}, "per_type": {label: {...}}}.

    gold, pred: one collection of spans per document, same number of documents (duplicates within a document count
    once). Each block has precision, recall, f1 (floats in [0, 1]) and support (gold entities); micro also has
    predicted and correct. ValueError if the document counts differ.
    """
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold documents but {len(pred)} predicted")
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for gold_doc, pred_doc in zip(gold, pred):
        g, p = _keys(gold_doc), _keys(pred_doc)
        for _, _, label in g:
            counts[label]["gold"] += 1
        for key in p:
            counts[key[2]]["predicted"] += 1
            counts[key[2]]["correct"] += key in g
    per_type = {label: {**_prf(c["correct"], c["predicted"], c["gold"]), "support": c["gold"]}
                for label, c in sorted(counts.items())}
    total = sum(counts.values(), Counter())
    micro = {**_prf(total["correct"], total["predicted"], total["gold"]), "support": total["gold"],
             "predicted": total["predicted"], "correct": total["correct"]}
    n = len(per_type)
    macro = {key: (sum(v[key] for v in per_type.values()) / n if n else 0.0) for key in ("precision", "recall", "f1")}
    return {"micro": micro, "macro": {**macro, "support": total["gold"]}, "per_type": per_type}


def entity_row_counts(gold: Sequence[Iterable[Any]], pred: Sequence[Iterable[Any]]) -> np.ndarray:
    """Exact-match entity (correct, predicted but wrong, gold but missed) per document, pooled over types: int64
    [documents, 1, 3], as bert_pipeline/evaluation/selection.py counts answers (micro F1). ValueError if the counts
    differ."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold documents but {len(pred)} predicted")
    counts = np.zeros((len(gold), 1, 3), np.int64)
    for row, (gold_doc, pred_doc) in enumerate(zip(gold, pred)):
        g, p = _keys(gold_doc), _keys(pred_doc)
        correct = len(g & p)
        counts[row, 0] = (correct, len(p) - correct, len(g) - correct)
    return counts


def type_confusion(gold: Sequence[Iterable[Any]], pred: Sequence[Iterable[Any]]) -> Counter[tuple[str, str]]:
    """Counts of (gold type, predicted type) for predicted spans with a gold span's exact boundaries but another
    type, over documents (same count in gold and pred; ValueError otherwise)."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold documents but {len(pred)} predicted")
    confusion: Counter[tuple[str, str]] = Counter()
    for gold_doc, pred_doc in zip(gold, pred):
        by_range = defaultdict(set)
        for start, end, label in _keys(gold_doc):
            by_range[(start, end)].add(label)
        for start, end, label in _keys(pred_doc):
            labels = by_range.get((start, end), set())
            if labels and label not in labels:
                confusion.update((g, label) for g in sorted(labels))
    return confusion


def _glued(before: str, after: str) -> bool:
    """Whether two adjacent characters are inside one word: both word characters, neither Chinese/Japanese."""
    return bool(_WORD_GLUE.match(before)) and bool(_WORD_GLUE.match(after))


class MemorisingTagger:
    """The baseline the gate compares a model with: every string seen as an entity in training, tagged with its most
    frequent type (ties: the alphabetically first), found again by greedy longest match, left to right, without
    overlaps. The CoNLL-2003 shared-task baseline (Tjong Kim Sang & De Meulder 2003) tagged training entities the
    same way. A match must not cut a word (e.g. "Paris" in "Parisian"); Chinese and Japanese characters have no word
    edges, so there any match counts. Case-sensitive.
    """

    def __init__(self, lexicon: dict[str, str] | None = None, confidence: dict[str, float] | None = None) -> None:
        """A tagger over a stored lexicon ({entity text: type}) and, optionally, each entry's confidence (the share
        of its training occurrences that had that type; 1.0 where absent); empty until `fit`."""
        self.lexicon: dict[str, str] = dict(lexicon or {})
        self.confidence: dict[str, float] = dict(confidence or {})
        self._lengths: list[int] = sorted({len(s) for s in self.lexicon}, reverse=True)

    def fit(self, texts: Sequence[str], spans: Sequence[Iterable[Any]]) -> "MemorisingTagger":
        """texts: training documents; spans: each document's gold spans. Returns self."""
        if len(texts) != len(spans):
            raise ValueError(f"{len(texts)} texts but {len(spans)} span lists")
        seen: dict[str, Counter[str]] = defaultdict(Counter)
        for text, doc in zip(texts, spans):
            for start, end, label in _keys(doc):
                seen[text[start:end]][label] += 1
        self.lexicon = {s: min(c, key=lambda label: (-c[label], label)) for s, c in seen.items()}
        self.confidence = {s: c[self.lexicon[s]] / sum(c.values()) for s, c in seen.items()}
        self._lengths = sorted({len(s) for s in self.lexicon}, reverse=True)
        return self

    def save(self, folder: str) -> None:
        """Write folder/lexicon.json (the lexicon and each entry's confidence; JSON, never pickle)."""
        storage.write_json_atomic(storage.join(folder, LEXICON_FILE), {
            "kind": "memorising", "lexicon": self.lexicon, "confidence": self.confidence,
            "source": "bert_pipeline/ner/metrics.MemorisingTagger (Tjong Kim Sang & De Meulder 2003's baseline)"})

    @classmethod
    def load(cls, folder: str) -> "MemorisingTagger":
        """The tagger `save` wrote into folder. Raises FileNotFoundError when folder has no lexicon.json."""
        stored = storage.read_json(storage.join(folder, LEXICON_FILE))
        if stored is None:
            raise FileNotFoundError(storage.join(folder, LEXICON_FILE))
        return cls(stored["lexicon"], stored.get("confidence"))

    def predict_one(self, text: str) -> list[Span]:
        """The spans of one text, sorted and non-overlapping."""
        found: list[Span] = []
        i = 0
        while i < len(text):
            length = next((n for n in self._lengths if self._matches(text, i, n)), 0)
            if length:
                found.append(Span(i, i + length, self.lexicon[text[i:i + length]]))
            i += length or 1
        return found

    def predict(self, texts: Sequence[str]) -> list[list[Span]]:
        """predict_one for each text."""
        return [self.predict_one(text) for text in texts]

    def _matches(self, text: str, i: int, n: int) -> bool:
        if i + n > len(text) or text[i:i + n] not in self.lexicon:
            return False
        left_ok = i == 0 or not _glued(text[i - 1], text[i])
        return left_ok and (i + n == len(text) or not _glued(text[i + n - 1], text[i + n]))
