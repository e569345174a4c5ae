"""Near-duplicate detection: character n-gram shingles, MinHash (rensa, Rust), LSH banding, exact verification.

Why character n-grams: they need no word segmentation, so Chinese, Japanese and Thai text (no spaces between words)
shingles as well as English; splitting on spaces or `\\W` would make a whole Chinese review one token. The size is
chosen per text: 5 characters, or 3 for texts mostly in Han, Kana or Hangul, where one character is about a syllable
or a word (with 5-grams one edited character would cost five shingles of a short review). Text is first put in the
same normal form as the exact-dedup key (NFKC, quotes straightened, casefolded, whitespace collapsed).

Pipeline, shaped so each step can be mapped over shards:
  1. `shingle_hashes` + `signatures`: per shard, a 64-bit hash per shingle (vectorised rolling hash in numpy) and a
     MinHash signature per document (rensa's R-MinHash over the flat hash buffer: no Python object per shingle).
  2. `band_hashes`: per shard, one 64-bit hash per LSH band.
  3. `candidate_pairs`: documents sharing any band hash (all pairs in small buckets, a star plus a chain in big ones).
  4. `verify`: the exact Jaccard of the two shingle sets (so precision does not depend on MinHash noise), or the
     MinHash estimate when only signatures are at hand (documents of earlier nights, kept in the lake's index).
  5. `UnionFind`: connected components of verified pairs are the duplicate clusters.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable

import numpy as np

_SPACE = re.compile(r"\s+")
# Curly quotes as straight ones, the set ftfy's uncurl_quotes folds; NFKC leaves them alone. Only the dedup key folds
# them: the stored text keeps the user's quotes (clean.clean_text).
_STRAIGHT_QUOTES = str.maketrans({**dict.fromkeys("\u02bc\u2018\u2019\u201a\u201b", "'"),
                                  **dict.fromkeys("\u201c\u201d\u201e\u201f", '"')})
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_BASE = np.uint64(0x100000001B3)
MAX_BUCKET_ALL_PAIRS = 32


def normal_form(text: str) -> str:
    """NFKC (full-width to ASCII, ligatures split), curly quotes straightened, casefolded, whitespace collapsed: the
    form both exact and near dedup compare, never stored as the text."""
    folded = unicodedata.normalize("NFKC", text).translate(_STRAIGHT_QUOTES).casefold()
    return _SPACE.sub(" ", folded).strip()


def _mix(x: np.ndarray) -> np.ndarray:
    """A multiply-xorshift finaliser (half of splitmix64's): spreads a polynomial hash over all 64 bits."""
    x = x * _MIX_1
    return x ^ (x >> np.uint64(31))


# Han, Kana, Hangul: scripts where one character is about a syllable or a word.
_DENSE_SCRIPTS = ((0x1100, 0x11FF), (0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7AF),
                  (0xF900, 0xFAFF))


def _dense_mask(codes: np.ndarray) -> np.ndarray:
    mask = np.zeros(len(codes), dtype=bool)
    for low, high in _DENSE_SCRIPTS:
        mask |= (codes >= low) & (codes <= high)
    return mask


def shingle_sizes(texts: list[str], n: int, dense_n: int | None) -> np.ndarray:
    """Per text: dense_n when at least half its characters are Han/Kana/Hangul, else n."""
    sizes = np.full(len(texts), n, dtype=np.int64)
    if not texts or not dense_n or dense_n == n:
        return sizes
    codes = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
    ends = np.cumsum([len(t) for t in texts])
    dense = np.concatenate(([0], np.cumsum(_dense_mask(codes))))
    counts = dense[ends] - dense[np.concatenate(([0], ends[:-1]))]
    lengths = np.maximum(1, np.diff(np.concatenate(([0], ends))))
    return np.where(counts * 2 >= lengths, dense_n, n)


def _rolling(codes: np.ndarray, n: int) -> np.ndarray:
    windows = len(codes) - n + 1
    rolling = np.full(max(windows, 0), np.uint64(n), dtype=np.uint64)  # seeded by n: sizes hash apart
    with np.errstate(over="ignore"):
        for j in range(n):  # h = sum code[i+j] * BASE^(n-1-j), wrapping mod 2^64
            rolling = rolling * _BASE + codes[j:j + windows]
        return _mix(rolling)


def shingle_hashes(texts: Iterable[str], n: int, dense_n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(flat uint64 hashes of every character shingle, row offsets) for already-normalised texts.

    Shingles are n characters, or dense_n for texts mostly in Han/Kana/Hangul. A text shorter than its shingle is
    padded with NULs, so it still has one.
    """
    texts = list(texts)
    if not texts:
        return np.zeros(0, np.uint64), np.zeros(1, np.int64)
    sizes = shingle_sizes(texts, n, dense_n)
    padded = [t if len(t) >= k else t + "\x00" * (k - len(t)) for t, k in zip(texts, sizes.tolist())]
    lengths = np.fromiter((len(t) for t in padded), dtype=np.int64, count=len(padded))
    codes = np.frombuffer("".join(padded).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    counts = lengths - sizes + 1
    offsets = np.zeros(len(padded) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    # Document d owns windows starts[d] .. starts[d] + counts[d] - 1; windows straddling two documents are dropped.
    position = np.arange(offsets[-1]) + np.repeat(starts - offsets[:-1], counts)
    size_of = np.repeat(sizes, counts)
    flat = np.empty(offsets[-1], dtype=np.uint64)
    for size in np.unique(sizes).tolist():
        chosen = size_of == size
        flat[chosen] = _rolling(codes, size)[position[chosen]]
    return flat, offsets


def signatures(flat: np.ndarray, offsets: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """MinHash signatures [docs, num_perm] (uint32) from flat shingle hashes, computed in Rust by rensa."""
    import itertools

    import rensa

    docs = len(offsets) - 1
    if docs <= 0:
        return np.zeros((0, num_perm), dtype=np.uint32)
    matrix = rensa.RMinHash.digest_matrix_from_flat_token_hashes(flat, offsets.astype(np.uint64), num_perm, seed)
    values = np.fromiter(itertools.chain.from_iterable(matrix.to_rows()), dtype=np.uint32, count=docs * num_perm)
    return values.reshape(docs, num_perm)


def lsh_params(threshold: float, num_perm: int, fp_weight: float = 0.5, fn_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) minimising weighted false-positive and false-negative probability (datasketch's method)."""

    def integrate(f, a: float, b: float, steps: int = 200) -> float:
        width = (b - a) / steps
        return sum(f(a + (i + 0.5) * width) for i in range(steps)) * width

    best, best_error = (1, num_perm), math.inf
    for bands in range(1, num_perm + 1):
        rows = num_perm // bands
        if rows == 0:
            break
        fp = integrate(lambda s: 1 - (1 - s ** rows) ** bands, 0.0, threshold)
        fn = integrate(lambda s: 1 - (1 - (1 - s ** rows) ** bands), threshold, 1.0)
        error = fp_weight * fp + fn_weight * fn
        if error < best_error:
            best, best_error = (bands, rows), error
    return best


def band_hashes(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """[docs, bands] uint64: one hash per band of each signature."""
    out = np.zeros((sigs.shape[0], bands), dtype=np.uint64)
    wide = sigs.astype(np.uint64)
    with np.errstate(over="ignore"):
        for band in range(bands):
            h = np.full(sigs.shape[0], np.uint64(band + 1), dtype=np.uint64)
            for column in range(band * rows, (band + 1) * rows):
                h = _mix(h * _BASE + wide[:, column])
            out[:, band] = h
    return out


def candidate_pairs(bands: np.ndarray) -> np.ndarray:
    """[pairs, 2] int64 of row indices (i < j) that share at least one band hash, deduplicated.

    Buckets of two (nearly all of them) are paired in one vectorised step; bigger buckets get all pairs up to
    MAX_BUCKET_ALL_PAIRS members, else a star to the first member plus a chain (connected, not quadratic).
    """
    found: list[np.ndarray] = []
    for band in range(bands.shape[1]):
        order = np.argsort(bands[:, band], kind="stable")
        ordered = bands[order, band]
        boundaries = np.flatnonzero(np.diff(ordered)) + 1
        starts = np.concatenate(([0], boundaries))
        sizes = np.diff(np.concatenate((starts, [len(ordered)])))
        pairs_of_two = starts[sizes == 2]
        found.append(np.stack([order[pairs_of_two], order[pairs_of_two + 1]], axis=1))
        for start, size in zip(starts[sizes > 2], sizes[sizes > 2]):
            members = order[start:start + size]
            if size <= MAX_BUCKET_ALL_PAIRS:
                i, j = np.triu_indices(size, k=1)
                found.append(np.stack([members[i], members[j]], axis=1))
            else:
                found.append(np.stack([np.full(size - 1, members[0]), members[1:]], axis=1))
                found.append(np.stack([members[:-1], members[1:]], axis=1))
    pairs = np.concatenate(found) if found else np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.sort(pairs, axis=1), axis=0) if len(pairs) else pairs.astype(np.int64)


def exact_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.unique(a), np.unique(b)
    union = len(np.union1d(a, b))
    return len(np.intersect1d(a, b, assume_unique=True)) / union if union else 1.0


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    return float(np.mean(sig_a == sig_b))


class UnionFind:
    """Connected components over integer nodes 0..n-1 (path halving, union by size)."""

    def __init__(self, size: int) -> None:
        self.parent = list(range(size))
        self.size = [1] * size

    def find(self, node: int) -> int:
        parent = self.parent
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]

    def roots(self) -> list[int]:
        return [self.find(i) for i in range(len(self.parent))]


@dataclass(frozen=True)
class NearDupParams:
    threshold: float = 0.8
    num_perm: int = 128
    shingle_chars: int = 5
    dense_shingle_chars: int = 3
    seed: int = 42
    # LSH is tuned this far below the threshold: it only proposes candidates and exact verification removes the
    # false positives, so the S-curve can favour recall.
    recall_margin: float = 0.15

    @property
    def bands_rows(self) -> tuple[int, int]:
        return lsh_params(max(0.05, self.threshold - self.recall_margin), self.num_perm)


def shingle_sets(flat: np.ndarray, offsets: np.ndarray, rows: Iterable[int]) -> dict[int, frozenset[int]]:
    return {int(r): frozenset(flat[offsets[r]:offsets[r + 1]].tolist()) for r in rows}


def jaccard_of_sets(a: frozenset[int], b: frozenset[int]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def paired_overlap(left: list[str], right: list[str], params: NearDupParams,
                   chunk: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """For normalised texts left[i] and right[i]: ([n] float64 overlap coefficient |A & B| / min(|A|, |B|) of their
    character-shingle sets, [n] int64 shingles of the smaller set).

    Both texts of a pair are shingled at one size, the smaller of the two sizes near-dup detection would pick (so a
    Chinese review with an English sentence appended still shares its 3-grams). The overlap coefficient
    (Szymkiewicz-Simpson) is not pulled down by text added to a version, as Jaccard is. Read `chunk` pairs at a time.
    """
    overlap, smaller = np.zeros(len(left)), np.zeros(len(left), np.int64)
    for begin in range(0, len(left), chunk):
        a, b = left[begin:begin + chunk], right[begin:begin + chunk]
        sizes = np.minimum(shingle_sizes(a, params.shingle_chars, params.dense_shingle_chars),
                           shingle_sizes(b, params.shingle_chars, params.dense_shingle_chars))
        for size in np.unique(sizes).tolist():
            rows = np.flatnonzero(sizes == size)
            flat_a, off_a = shingle_hashes([a[i] for i in rows], size, size)
            flat_b, off_b = shingle_hashes([b[i] for i in rows], size, size)
            for j, i in enumerate(rows.tolist()):
                set_a = set(flat_a[off_a[j]:off_a[j + 1]].tolist())
                set_b = set(flat_b[off_b[j]:off_b[j + 1]].tolist())
                least = min(len(set_a), len(set_b))
                overlap[begin + i] = len(set_a & set_b) / least if least else 1.0
                smaller[begin + i] = least
    return overlap, smaller


def find_near_duplicates(texts: list[str], params: NearDupParams) -> tuple[np.ndarray, np.ndarray]:
    """Verified near-duplicate pairs within normalised texts: ([pairs, 2] indices, [pairs] exact Jaccard)."""
    flat, offsets = shingle_hashes(texts, params.shingle_chars, params.dense_shingle_chars)
    sigs = signatures(flat, offsets, params.num_perm, params.seed)
    bands, rows = params.bands_rows
    pairs = candidate_pairs(band_hashes(sigs, bands, rows))
    sets = shingle_sets(flat, offsets, np.unique(pairs))
    similarity = np.array([jaccard_of_sets(sets[i], sets[j]) for i, j in pairs.tolist()], dtype=np.float64)
    keep = similarity >= params.threshold
    return pairs[keep], similarity[keep]
