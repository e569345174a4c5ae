"""The entity model's linear baseline: a linear-chain CRF on hand-made features, fitted on the same training rows.

It is what a team would otherwise run (the sklearn-crfsuite CoNLL tutorial's features, with the neighbours two units
away and the neighbouring pairs, which Chinese NER needs: Zhang & Yang, ACL 2018, report character bigrams as the
strongest single feature of their character baseline). The gate asks a new entity model to beat it on validation
(as the classifier is asked to beat TF-IDF); with no champion, `score.fallback: baseline` scores with it.

Units: each Han, Hiragana, Katakana, Hangul or Thai character alone (no spaces, or particles glued to names), else
runs of word characters, else single other characters. A span is learned over the units it overlaps and predicted as whole units.
Stored as crfsuite's own binary model file (python-crfsuite, the CRFsuite library of Okazaki 2007), never pickled.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from typing import Sequence

import regex

from bert_pipeline.lake import storage
from bert_pipeline.ner.spans import Span
from bert_pipeline.ner.tagging import spans_from_tags, tags_from_spans

FEATURES = "units-v2"  # the units' and features' version: in the file's name, so a changed set never reads an old file
CRF_FILE = f"crf-{FEATURES}.crfsuite"  # inside a model's baseline/ folder, beside the memorising lexicon.json
# one unit per character in scripts whose entities are not whole space-delimited words: Chinese and Japanese (no
# spaces), Korean (a particle joins the name: 서울에서) and Thai (no spaces)
UNIT = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}\p{Thai}]|\w+|[^\w\s]")
# L-BFGS with elastic-net regularisation: the sklearn-crfsuite tutorial's settings
PARAMS = {"c1": 0.1, "c2": 0.1, "max_iterations": 100, "feature.possible_transitions": True}


def units(text: str) -> list[tuple[int, int]]:
    """(start, end) code-point offsets of the text's units."""
    return [(m.start(), m.end()) for m in UNIT.finditer(text)]


def unit_features(text: str, offsets: Sequence[tuple[int, int]]) -> list[dict[str, float | str]]:
    """One feature dict per unit: the unit (lower-cased), its affixes and shape, the units up to two away and the
    pairs it forms with its neighbours; BOS/EOS at the ends. String values are one-hot features (crfsuite's
    attribute=value)."""
    words = [text[a:b] for a, b in offsets]
    lower = [w.lower() for w in words]
    found = []
    for i, word in enumerate(words):
        features: dict[str, float | str] = {
            "bias": 1.0, "w": lower[i], "suffix3": lower[i][-3:], "prefix2": lower[i][:2],
            "title": float(word.istitle()), "upper": float(word.isupper()), "digit": float(word.isdigit())}
        for step in (-2, -1, 1, 2):
            j = i + step
            if 0 <= j < len(words):
                features[f"w{step:+d}"] = lower[j]
                features[f"title{step:+d}"] = float(words[j].istitle())
        if i:
            features["pair-1"] = lower[i - 1] + "|" + lower[i]
        else:
            features["BOS"] = 1.0
        if i + 1 < len(words):
            features["pair+1"] = lower[i] + "|" + lower[i + 1]
        else:
            features["EOS"] = 1.0
        found.append(features)
    return found


class CrfTagger:
    """A linear-chain CRF over text units (see the module's docstring); empty until `fit` or `load`."""

    def __init__(self, model_file: str | None = None) -> None:
        self.model_file = model_file
        self._tagger = None
        self._workdir: str | None = None
        self._lock = threading.Lock()  # a crfsuite Tagger holds the sequence it tags: one caller at a time

    def fit(self, texts: Sequence[str], spans: Sequence[Sequence[Span]]) -> "CrfTagger":
        """texts: training documents; spans: each one's gold spans (sorted, non-overlapping). Rows without a unit
        are skipped. Returns self; ValueError when no row has a unit or the lengths differ."""
        import pycrfsuite

        if len(texts) != len(spans):
            raise ValueError(f"{len(texts)} texts but {len(spans)} span lists")
        trainer = pycrfsuite.Trainer(verbose=False)
        rows = 0
        for text, doc in zip(texts, spans):
            offsets = units(text)
            if offsets:
                trainer.append(unit_features(text, offsets), tags_from_spans(offsets, doc))
                rows += 1
        if not rows:
            raise ValueError("no training text holds a unit to tag")
        trainer.set_params(PARAMS)
        self._workdir = tempfile.mkdtemp(prefix="bert-pipeline-crf-")
        self.model_file = os.path.join(self._workdir, CRF_FILE)
        trainer.train(self.model_file)
        self._tagger = None
        return self

    def _opened(self):  # type: ignore[no-untyped-def]
        import pycrfsuite

        if self._tagger is None:
            if self.model_file is None:
                raise RuntimeError("CrfTagger has no model: fit or load it first")
            self._tagger = pycrfsuite.Tagger()
            self._tagger.open(self.model_file)
        return self._tagger

    def predict_scored(self, texts: Sequence[str]) -> list[list[tuple[Span, float]]]:
        """Per text, its entity spans (sorted, non-overlapping, whole units) with a score each: the mean marginal
        probability of its units' tags (0-1)."""
        found = []
        with self._lock:  # score shards may run in threads of one process and share this tagger
            tagger = self._opened()
            for text in texts:
                offsets = units(text)
                if not offsets:
                    found.append([])
                    continue
                tags = tagger.tag(unit_features(text, offsets))
                spans, _ = spans_from_tags(offsets, tags, "IOB2")
                marginals = [tagger.marginal(tag, i) for i, tag in enumerate(tags)]
                found.append([(span, _mean_inside(span, offsets, marginals)) for span in spans])
        return found

    def predict(self, texts: Sequence[str]) -> list[list[Span]]:
        """Per text, its entity spans."""
        return [[span for span, _ in doc] for doc in self.predict_scored(texts)]

    def labels(self) -> list[str]:
        """The entity types the model can tag, sorted."""
        with self._lock:
            return sorted({tag[2:] for tag in self._opened().labels() if tag != "O"})

    def save(self, folder: str) -> None:
        """Copy the model file to folder/CRF_FILE (local or remote storage)."""
        if self.model_file is None:
            raise RuntimeError("CrfTagger has no model: fit it first")
        with open(self.model_file, "rb") as handle:
            storage.write_bytes_atomic(storage.join(folder, CRF_FILE), handle.read())

    @classmethod
    def load(cls, folder: str) -> "CrfTagger":
        """The tagger `save` wrote into a local folder. FileNotFoundError when it holds no CRF_FILE."""
        path = os.path.join(folder, CRF_FILE)
        if not os.path.exists(path):
            raise FileNotFoundError(path)
        return cls(path)

    def __del__(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)


def _mean_inside(span: Span, offsets: Sequence[tuple[int, int]], marginals: Sequence[float]) -> float:
    inside = [m for (a, b), m in zip(offsets, marginals) if a >= span.start and b <= span.end]
    return float(sum(inside) / len(inside)) if inside else 0.0
