"""Duplicate clusters: exact (same normalised key) and near (verified MinHash-LSH pairs), within tonight's documents
and against the kept documents of earlier nights (through the lake's dedup index).

The kept member of a cluster is an earlier night's document when there is one (earliest run_date, then smallest
doc_id), else tonight's smallest doc_id: deterministic whatever the input order.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import polars as pl

from bert_pipeline.neardup import (
    NearDupParams, UnionFind, band_hashes, candidate_pairs, jaccard_of_sets, shingle_hashes, shingle_sets, signatures,
)

# doc_ids of earlier nights -> their cleaned text, for exact verification of cross-night candidates
TextLoader = Callable[[pl.DataFrame], dict[str, str]]

CLUSTER_SCHEMA = {
    "doc_id": pl.String, "cluster_id": pl.String, "kept": pl.Boolean, "reason": pl.String,
    "duplicate_of": pl.String, "similarity": pl.Float32, "label_conflict": pl.Boolean,
}


def _bands(texts: list[str], params: NearDupParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    flat, offsets = shingle_hashes(texts, params.shingle_chars)
    sigs = signatures(flat, offsets, params.num_perm, params.seed)
    bands, rows = params.bands_rows
    return band_hashes(sigs, bands, rows), flat, offsets


def rep_bands(texts: list[str], params: NearDupParams) -> np.ndarray:
    """Band hashes [docs, bands] of normalised texts: what the dedup index stores per kept document."""
    return _bands(texts, params)[0]


def _cross_night_candidates(bands: np.ndarray, earlier: pl.DataFrame) -> pl.DataFrame:
    """(rep, earlier_row) pairs sharing a band hash, joined in long form on (band, hash)."""
    if earlier.is_empty() or not len(bands):
        return pl.DataFrame({"rep": [], "earlier_row": []}, schema={"rep": pl.Int64, "earlier_row": pl.Int64})
    tonight = pl.DataFrame({
        "rep": np.repeat(np.arange(bands.shape[0]), bands.shape[1]),
        "band": np.tile(np.arange(bands.shape[1]), bands.shape[0]),
        "hash": bands.reshape(-1),
    })
    before = (earlier.select(pl.int_range(pl.len()).alias("earlier_row"), pl.col("bands"))
              .with_columns(band=pl.int_ranges(pl.col("bands").list.len())).explode(["bands", "band"])
              .rename({"bands": "hash"}).with_columns(pl.col("band").cast(pl.Int64)))
    joined = tonight.with_columns(pl.col("band").cast(pl.Int64)).join(before, on=["band", "hash"], how="inner")
    return joined.select(pl.col("rep").cast(pl.Int64), pl.col("earlier_row").cast(pl.Int64)).unique()


def cluster_documents(tonight: pl.DataFrame, earlier: pl.DataFrame, load_texts: TextLoader,
                      params: NearDupParams, near: bool = True) -> tuple[pl.DataFrame, np.ndarray]:
    """Cluster tonight's documents (doc_id, dedup_key, norm, label) against each other and earlier nights.

    `earlier` holds the index rows of earlier nights: doc_id, dedup_key, label, run_date, shard, bands.
    Returns one row per tonight's document (CLUSTER_SCHEMA) and the band hashes of every representative, aligned
    with the first occurrence of each dedup_key in `tonight` sorted by doc_id (what the index stores).
    """
    ordered = tonight.sort("doc_id")
    reps = ordered.unique("dedup_key", keep="first", maintain_order=True)
    rep_keys, rep_ids = reps["dedup_key"].to_list(), reps["doc_id"].to_list()
    n_reps = len(rep_ids)
    earlier = earlier.sort(["run_date", "doc_id"]) if not earlier.is_empty() else earlier
    earlier_ids = earlier["doc_id"].to_list() if not earlier.is_empty() else []
    earlier_by_key = {k: i for i, k in reversed(list(enumerate(earlier["dedup_key"].to_list())))} if earlier_ids else {}

    uf = UnionFind(n_reps + len(earlier_ids))
    for rep, key in enumerate(rep_keys):  # exact matches with earlier nights
        if key in earlier_by_key:
            uf.union(rep, n_reps + earlier_by_key[key])

    bands = np.zeros((n_reps, params.bands_rows[0]), dtype=np.uint64)
    sets: dict[int, frozenset[int]] = {}
    if n_reps and near:
        bands, flat, offsets = _bands(reps["norm"].to_list(), params)
        within = candidate_pairs(bands)
        cross = _cross_night_candidates(bands, earlier)
        sets = shingle_sets(flat, offsets, np.unique(np.concatenate([within.reshape(-1), cross["rep"].to_numpy()])))
        for i, j in within.tolist():
            if jaccard_of_sets(sets[i], sets[j]) >= params.threshold:
                uf.union(i, j)
        if cross.height:
            wanted = earlier[sorted(set(cross["earlier_row"].to_list()))]
            texts = load_texts(wanted)
            rows = sorted(set(cross["earlier_row"].to_list()))
            old_flat, old_offsets = shingle_hashes([texts.get(earlier_ids[r], "") for r in rows], params.shingle_chars)
            for k, r in enumerate(rows):
                sets[n_reps + r] = frozenset(old_flat[old_offsets[k]:old_offsets[k + 1]].tolist())
            for rep, r in cross.iter_rows():
                if jaccard_of_sets(sets[rep], sets[n_reps + r]) >= params.threshold:
                    uf.union(rep, n_reps + r)

    roots = uf.roots()
    kept_of_root: dict[int, int] = {}
    for node in list(range(n_reps, n_reps + len(earlier_ids))) + list(range(n_reps)):  # earlier nights win
        kept_of_root.setdefault(roots[node], node)
    rep_index = {key: i for i, key in enumerate(rep_keys)}
    node_id = rep_ids + earlier_ids
    node_key = rep_keys + (earlier["dedup_key"].to_list() if earlier_ids else [])
    labels_of_root: dict[int, set[str]] = {}
    for label, key in zip(ordered["label"].to_list(), ordered["dedup_key"].to_list()):
        if label is not None:
            labels_of_root.setdefault(roots[rep_index[key]], set()).add(label)
    for r, label in enumerate(earlier["label"].to_list() if earlier_ids else []):
        if label is not None and roots[n_reps + r] in labels_of_root:
            labels_of_root[roots[n_reps + r]].add(label)

    out = []
    for doc_id, key in zip(ordered["doc_id"].to_list(), ordered["dedup_key"].to_list()):
        rep = rep_index[key]
        kept = kept_of_root[roots[rep]]
        kept_id = node_id[kept]
        conflict = len(labels_of_root.get(roots[rep], ())) > 1
        if doc_id == kept_id:
            out.append((doc_id, kept_id, True, None, None, None, conflict))
        elif node_key[kept] == key:
            out.append((doc_id, kept_id, False, "exact_duplicate", kept_id, 1.0, conflict))
        else:
            similarity = jaccard_of_sets(sets[rep], sets[kept]) if rep in sets and kept in sets else None
            out.append((doc_id, kept_id, False, "near_duplicate", kept_id, similarity, conflict))
    return pl.DataFrame(out, schema=CLUSTER_SCHEMA, orient="row"), bands
