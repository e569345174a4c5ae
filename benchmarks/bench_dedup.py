"""Near-dedup speed and quality against datasketch, with brute-force Jaccard on a sample as ground truth.

The corpus (default: the demo tweets) gets planted near-duplicates: word edits, insertions and truncations of real
rows (characters instead of words for text without spaces). Both sides see the same normalised texts and the same
shingles (character 5-grams, 3-grams for Han/Kana/Hangul texts, NUL-padded when shorter).
  ours:        bert_pipeline.curation.neardup.find_near_duplicates (rensa MinHash, LSH bands, exact verification)
  datasketch:  MinHash(num_perm=128) + MinHashLSH(threshold) insert and query, as its users run it
Ground truth: exact Jaccard of every pair inside a sample (all planted pairs' rows plus random rows), by a sparse
matrix product. Recall = found true pairs / true pairs (Jaccard >= threshold); precision = found pairs that are true.
Prints ratios last.

    .venv/bin/python -m benchmarks.bench_dedup [--input FILE --text-column COL --threshold 0.8 --plant 2000]
"""

from __future__ import annotations

import random
import time

import numpy as np
import scipy.sparse as sp

from benchmarks._common import corpus_parser, load_texts, median_seconds
from bert_pipeline.curation.clean import clean_text
from bert_pipeline.curation.neardup import NearDupParams, find_near_duplicates, normal_form, shingle_sizes

FILLER = ["really", "very", "so", "just", "today", "again", "now", "also", "still", "though"]


def _units(text: str) -> tuple[list[str], str]:
    """Words when the text has spaces between them, else characters (Chinese, Japanese, Thai)."""
    words = text.split(" ")
    return (words, " ") if len(words) >= 8 else (list(text), "")


def plant(texts: list[str], count: int, rng: random.Random) -> tuple[list[str], list[tuple[int, int]]]:
    """Append `count` edited copies of random rows long enough to edit; return texts and (original, copy) pairs.

    One edit per copy: replace a word (or character), insert one, or cut the last tenth.
    """
    eligible = [i for i, t in enumerate(texts) if len(_units(t)[0]) >= 8]
    out, pairs = list(texts), []
    for original in rng.sample(eligible, min(count, len(eligible))):
        units, joiner = _units(texts[original])
        filler = rng.choice(FILLER) if joiner else rng.choice(units)
        kind = rng.choice(["edit", "insert", "truncate"])
        if kind == "edit":
            units[rng.randrange(len(units))] = filler
        elif kind == "insert":
            units.insert(rng.randrange(len(units) + 1), filler)
        else:
            units = units[: max(1, len(units) - max(1, len(units) // 10))]
        pairs.append((original, len(out)))
        out.append(joiner.join(units))
    return out, pairs


def shingle_strings(text: str, params: NearDupParams) -> list[bytes]:
    """The same shingles as the pipeline: per-text size (dense scripts get shorter ones), NUL-padded."""
    n = int(shingle_sizes([text], params.shingle_chars, params.dense_shingle_chars)[0])
    text = text if len(text) >= n else text + "\x00" * (n - len(text))
    return [text[i:i + n].encode() for i in range(len(text) - n + 1)]


def datasketch_pairs(texts: list[str], params: NearDupParams) -> set[tuple[int, int]]:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=params.threshold, num_perm=params.num_perm)
    hashes = []
    for i, text in enumerate(texts):
        m = MinHash(num_perm=params.num_perm)
        m.update_batch(shingle_strings(text, params))
        lsh.insert(i, m)
        hashes.append(m)
    pairs = set()
    for i, m in enumerate(hashes):
        for j in lsh.query(m):
            if j != i:
                pairs.add((min(i, j), max(i, j)))
    return pairs


def true_pairs(texts: list[str], sample: list[int], params: NearDupParams) -> set[tuple[int, int]]:
    """Every pair inside `sample` whose exact shingle Jaccard >= threshold (sparse A·Aᵀ)."""
    vocab: dict[bytes, int] = {}
    rows, cols = [], []
    for r, doc in enumerate(sample):
        for s in set(shingle_strings(texts[doc], params)):
            rows.append(r)
            cols.append(vocab.setdefault(s, len(vocab)))
    matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(sample), len(vocab)))
    inter = (matrix @ matrix.T).tocoo()
    sizes = np.asarray(matrix.sum(axis=1)).ravel()
    upper = inter.row < inter.col
    i, j, x = inter.row[upper], inter.col[upper], inter.data[upper]
    jac = x / (sizes[i] + sizes[j] - x)
    keep = jac >= params.threshold - 1e-9
    return {(min(sample[a], sample[b]), max(sample[a], sample[b])) for a, b in zip(i[keep], j[keep])}


def quality(found: set[tuple[int, int]], truth: set[tuple[int, int]], sample: set[int]) -> tuple[float, float]:
    inside = {p for p in found if p[0] in sample and p[1] in sample}
    recall = len(truth & inside) / len(truth) if truth else 1.0
    precision = len(truth & inside) / len(inside) if inside else 1.0
    return recall, precision


def main() -> None:
    parser = corpus_parser(__doc__, model=False)
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--plant", type=int, default=2000, help="near-duplicates to plant")
    parser.add_argument("--sample", type=int, default=3000, help="random rows added to the ground-truth sample")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recall-margin", type=float, default=NearDupParams.recall_margin,
                        help="how far below the threshold the LSH bands are tuned")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    base = list(dict.fromkeys(t for t in (normal_form(clean_text(x)) for x in load_texts(args.input, args.text_column)) if t))
    texts, planted = plant(base, args.plant, rng)
    params = NearDupParams(threshold=args.threshold, recall_margin=args.recall_margin)

    ours_seconds = median_seconds(lambda: find_near_duplicates(texts, params), args.repeats)
    pairs, _ = find_near_duplicates(texts, params)
    ours = {(int(a), int(b)) for a, b in pairs.tolist()}
    start = time.perf_counter()
    theirs = datasketch_pairs(texts, params)
    theirs_seconds = time.perf_counter() - start

    sample = sorted({i for p in planted for i in p} | set(rng.sample(range(len(texts)), min(args.sample, len(texts)))))
    truth = true_pairs(texts, sample, params)
    sample_set = set(sample)
    ours_q, theirs_q = quality(ours, truth, sample_set), quality(theirs, truth, sample_set)

    print(f"{len(texts)} documents ({len(base)} unique real + {len(planted)} planted), threshold {args.threshold}, "
          f"{params.num_perm} permutations, character {params.shingle_chars}-grams "
          f"({params.dense_shingle_chars}-grams for Han/Kana/Hangul texts)")
    print(f"ground truth: {len(truth)} pairs with Jaccard >= {args.threshold} among {len(sample)} sampled rows")
    print(f"  ours        {len(texts) / ours_seconds:>9,.0f} docs/s  recall {ours_q[0]:.3f}  precision {ours_q[1]:.3f}"
          f"  (median of {args.repeats})")
    print(f"  datasketch  {len(texts) / theirs_seconds:>9,.0f} docs/s  recall {theirs_q[0]:.3f}  "
          f"precision {theirs_q[1]:.3f}")
    print(f"ratio ours / datasketch docs/s: {theirs_seconds / ours_seconds:.1f}")


if __name__ == "__main__":
    main()
