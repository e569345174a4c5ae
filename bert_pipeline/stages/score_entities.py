"""Score for task: ner: a token classifier's entities for every curated row, into the entities table
(bert_pipeline/lake/entities.py), behind score.py's scorer interface (`table`, `metadata`), so planning, shards,
exactly-once commits, replacement and Dask are the classifier's.

Per text: tokens with character offsets, per-token logits, constrained Viterbi decoding over the BIO transitions (an
I- never follows O or another type: `ner.tagging.constrained_decode`), entities mapped back to code-point offsets of
the stored text, each with the mean probability of its tokens' tags and its text cut from the stored text.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from bert_pipeline.errors import ConfigError
from bert_pipeline.lake.entities import entity_table
from bert_pipeline.lake.predictions import ScoredBy
from bert_pipeline.modeling.inference import batch_tokens_for, pick_device, pick_precision, predict_token_logits
from bert_pipeline.modeling.models import fast_encoder, load_token_classifier, load_tokenizer, tokenizer_hash
from bert_pipeline.modeling.windows import Windowing, token_logits_over_windows
from bert_pipeline.ner.crf import CrfTagger
from bert_pipeline.ner.metrics import MemorisingTagger
from bert_pipeline.ner.tagging import allowed_transitions, predict_entities, tag_names


class EntityScorer:
    """A loaded token classifier + tokenizer that turns texts into entity rows; one per worker process.

    long_text: chunk reads every token in overlapping windows (`windowed`). Errors: ConfigError for a model whose
    labels are not a BIO tag set (O, B-X, I-X), naming the folder."""

    def __init__(self, model_dir: str, max_length: int, batch_tokens: int | None, precision: str, device: str,
                 long_text: str = "truncate") -> None:
        self.device = pick_device(device)
        self.tokenizer = load_tokenizer(model_dir)
        self.tokenizer_hash = tokenizer_hash(self.tokenizer)
        self.encoder = fast_encoder(self.tokenizer, None if long_text == "chunk" else max_length)
        self.windowing = Windowing.of(self.encoder, max_length) if long_text == "chunk" else None
        self.model = load_token_classifier(model_dir).to(self.device).eval()
        self.dtype = pick_precision(precision, self.device)
        self.labels = [str(self.model.config.id2label[i]) for i in range(self.model.config.num_labels)]
        try:
            allowed_transitions(self.labels)
        except ValueError as exc:
            raise ConfigError(f"score.model {model_dir}: its labels {self.labels} are not BIO entity tags (O, B-X, "
                              f"I-X): {exc}") from None
        self.batch_tokens = batch_tokens_for(self.device, batch_tokens)
        self.pad_id = self.tokenizer.pad_token_id or 0

    def table(self, doc_ids: pa.Array, texts: list[str], scored_by: ScoredBy) -> pa.Table:
        """The entities of these rows (ENTITIES_SCHEMA)."""
        encodings = [e for start in range(0, len(texts), 4096)
                     for e in self.encoder.encode_batch(texts[start:start + 4096])]
        sequences = [np.asarray(e.ids, np.int64) for e in encodings]
        offsets = [np.asarray(e.offsets, np.int64).reshape(-1, 2) for e in encodings]
        windows = np.ones(len(texts), np.int32)
        if self.windowing is None:
            logits = self.token_logits(sequences)
        else:
            logits, offsets, windows = self.windowed(sequences, offsets)
        found = [[(e.start, e.end, e.label, e.score) for e in predict_entities(row, spans, self.labels, text=text)]
                 for row, spans, text in zip(logits, offsets, texts)]
        truncated = np.fromiter((bool(e.overflowing) for e in encodings), bool, count=len(encodings))
        return entity_table(doc_ids, texts, found, truncated, scored_by, windows)

    def token_logits(self, sequences: list[np.ndarray]) -> list[np.ndarray]:
        return predict_token_logits(self.model, sequences, self.batch_tokens, self.pad_id, self.device,
                                    "fp32" if self.dtype is None else "bf16")

    def windowed(self, sequences: list[np.ndarray], offsets: list[np.ndarray]) -> tuple[
            list[np.ndarray], list[np.ndarray], np.ndarray]:
        """score.long_text: chunk: each text's content tokens in overlapping windows; a token's logits are the mean
        over the windows that read it (`modeling.windows.token_logits_over_windows`), so an entity across a window
        edge is decoded whole and once. Returns (per text: content-token logits, content-token offsets; windows per
        text). A text that fits one window gives exactly its unwindowed logits."""
        assert self.windowing is not None
        logits, windows = token_logits_over_windows(self.windowing, sequences, self.token_logits)
        return logits, [self.windowing.strip(o) for o in offsets], windows

    def metadata(self) -> dict[str, Any]:
        return {"bert_pipeline.problem_type": "token_classification", "bert_pipeline.tags": ",".join(self.labels),
                "bert_pipeline.decoding": "constrained Viterbi over BIO transitions"}


class CrfScorer:
    """The CRF baseline stored beside an entity model (baseline/`ner.crf.CRF_FILE`, `ner.crf.CrfTagger`) behind the scorer
    interface, for `score.fallback: baseline` while no entity model has passed the gate. An entity's score is the
    mean marginal probability of its units' tags. It reads every character of a text (nothing truncated)."""

    def __init__(self, folder: str) -> None:
        self.tagger = CrfTagger.load(folder)
        self.labels = tag_names(self.tagger.labels())
        self.tokenizer_hash, self.dtype = "crf-units", "n/a"

    def table(self, doc_ids: pa.Array, texts: list[str], scored_by: ScoredBy) -> pa.Table:
        """The entities of these rows (ENTITIES_SCHEMA)."""
        found = [[(s.start, s.end, s.label, score) for s, score in doc] for doc in self.tagger.predict_scored(texts)]
        return entity_table(doc_ids, texts, found, np.zeros(len(texts), bool), scored_by)

    def metadata(self) -> dict[str, Any]:
        return {"bert_pipeline.problem_type": "token_classification", "bert_pipeline.tags": ",".join(self.labels),
                "bert_pipeline.decoding": "CRF baseline: Viterbi over text units (bert_pipeline/ner/crf.py)"}


class LexiconScorer:
    """The memorising baseline stored beside an entity model (baseline/lexicon.json) behind the scorer interface,
    for `score.fallback: baseline` while no entity model has passed the gate: every string seen as an entity in
    training, found again by longest match (`ner.metrics.MemorisingTagger`). An entity's score is the share of that
    string's training occurrences that had its type (1.0 in lexicons stored without it). It reads every character of
    a text (nothing truncated, one window)."""

    def __init__(self, folder: str) -> None:
        self.tagger = MemorisingTagger.load(folder)
        self.labels = tag_names(self.tagger.lexicon.values())
        self.tokenizer_hash, self.dtype = "memorising-lexicon", "n/a"

    def table(self, doc_ids: pa.Array, texts: list[str], scored_by: ScoredBy) -> pa.Table:
        """The entities of these rows (ENTITIES_SCHEMA)."""
        found = [[(s.start, s.end, s.label, self.tagger.confidence.get(text[s.start:s.end], 1.0))
                  for s in self.tagger.predict_one(text)] for text in texts]
        return entity_table(doc_ids, texts, found, np.zeros(len(texts), bool), scored_by)

    def metadata(self) -> dict[str, Any]:
        return {"bert_pipeline.problem_type": "token_classification", "bert_pipeline.tags": ",".join(self.labels),
                "bert_pipeline.decoding": "memorising baseline: longest match of training entity strings"}
