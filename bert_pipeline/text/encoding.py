"""Texts to token ids in batches, with the fast tokenizer: what tokenize writes in its shards and what training,
the champion gate and scoring use for text that has no shard of the right tokenizer."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from bert_pipeline.text import coverage as cov


def encode_texts(encoder: Any, texts: list[str], batch_size: int,
                 coverage: cov.CoverageCounter | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flat token ids, offsets, truncated flags) for texts, in order. With `coverage`, each batch's encodings are
    also counted there (the texts that hold an unknown token are encoded once more, with character offsets)."""
    flats: list[np.ndarray] = [np.zeros(0, np.int64)]
    lengths: list[np.ndarray] = [np.zeros(0, np.int32)]
    truncated: list[np.ndarray] = [np.zeros(0, bool)]
    fast = getattr(encoder, "encode_batch_fast", None)
    for start in range(0, len(texts), batch_size):
        batch = texts[start:start + batch_size]
        with_offsets = fast is None or (coverage is not None and coverage.wants_offsets)
        encodings = (encoder.encode_batch if with_offsets else fast)(batch)
        ids = [encoding.ids for encoding in encodings]
        lengths.append(np.fromiter(map(len, ids), dtype=np.int32, count=len(ids)))
        flats.append(np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lengths[-1].sum())))
        truncated.append(np.fromiter((bool(e.overflowing) for e in encodings), dtype=bool, count=len(encodings)))
        if coverage is not None:
            coverage.add(batch, encodings, flats[-1], lengths[-1], truncated[-1], with_offsets)
    lengths_all = np.concatenate(lengths)
    offsets = np.zeros(len(lengths_all) + 1, dtype=np.int32)
    np.cumsum(lengths_all, out=offsets[1:])
    return np.concatenate(flats), offsets, np.concatenate(truncated)
