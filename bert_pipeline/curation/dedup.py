"""Duplicate clusters: exact (same normalised key) and near (verified MinHash-LSH pairs), within tonight's documents
and against the kept documents of every other committed night, earlier or later (through the lake's dedup index).

The inputs are small per-document rows (doc_id, dedup_key, label, LSH band hashes) from every shard; texts are
loaded only for candidate pairs, to verify them exactly. The kept member of a cluster is a committed night's document
when there is one (earliest run_date, then smallest doc_id), else tonight's first in raw order (sources as listed,
rows as read; rows an append added come after the committed ones, so an append never displaces a kept row). A
committed row always stays kept: a backfilled night (older than a committed one) yields to the
later night's copy instead of rewriting it, so no committed decision changes behind the user's back.

Label corrections: a row of tonight whose normalised key equals an earlier night's kept row's key but whose label
differs from that row's current label (`earlier["label"]`, with earlier corrections already applied) is not a plain
duplicate: it gets `label_correction`, `duplicate_of` the earlier row. Rows without a label stay `exact_duplicate`
(a missing label corrects nothing). When tonight's labelled rows of one key disagree, every one of them is recorded as
a correction (the one that agrees with the earlier row too), and the training set then treats the earlier row as a
label conflict (`labels.read_corrections`). An earlier row in a label conflict is indexed without a label, so a
later night's single label for it is a correction that resolves the conflict.

Nights out of order: when the committed row of a key is from a night *later* than tonight (a backfill, or a rerun of
a past night), its label is newer than tonight's; tonight's labelled rows that disagree with it are `label_superseded`
(the later label stands) rather than corrections. An unlabelled later row is labelled by them (a correction).

Ids: a tonight row with the doc_id of a committed row but another key is another version of that document (an id
re-sent with edited text), never its near duplicate: the two are not clustered, and the training set keeps the
newest night's version (`trainset.newest_versions`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import polars as pl

from bert_pipeline.curation.labels import CORRECTION, SUPERSEDED
from bert_pipeline.curation.neardup import (
    NearDupParams, UnionFind, band_hashes, candidate_pairs, jaccard_of_sets, shingle_hashes, signatures,
)

# rows (with doc_id, and the shard or run_date/shard that holds them) -> {doc_id: normalised text}
TextLoader = Callable[[pl.DataFrame], dict[str, str]]

CLUSTER_SCHEMA = {
    "doc_id": pl.String, "cluster_id": pl.String, "kept": pl.Boolean, "dup_reason": pl.String,
    "duplicate_of": pl.String, "similarity": pl.Float32, "label_conflict": pl.Boolean, "duplicates": pl.Int32,
}


def texts_bands(texts: list[str], params: NearDupParams) -> np.ndarray:
    """LSH band hashes [docs, bands] of normalised texts: computed per shard, stored in the dedup index."""
    flat, offsets = shingle_hashes(texts, params.shingle_chars, params.dense_shingle_chars)
    bands, rows = params.bands_rows
    return band_hashes(signatures(flat, offsets, params.num_perm, params.seed), bands, rows)


def _band_matrix(frame: pl.DataFrame, bands: int) -> np.ndarray:
    if frame.is_empty():
        return np.zeros((0, bands), dtype=np.uint64)
    return np.asarray(frame["bands"].to_list(), dtype=np.uint64).reshape(frame.height, -1)


def _cross_night_candidates(bands: np.ndarray, earlier_bands: np.ndarray) -> np.ndarray:
    """[pairs, 2] (tonight row, earlier row) sharing a band hash, by a join in long form on (band, hash)."""
    if not len(bands) or not len(earlier_bands):
        return np.zeros((0, 2), dtype=np.int64)

    def long(matrix: np.ndarray, name: str) -> pl.DataFrame:
        return pl.DataFrame({name: np.repeat(np.arange(matrix.shape[0]), matrix.shape[1]),
                             "band": np.tile(np.arange(matrix.shape[1]), matrix.shape[0]), "hash": matrix.reshape(-1)})

    joined = long(bands, "rep").join(long(earlier_bands, "old"), on=["band", "hash"], how="inner")
    return joined.select("rep", "old").unique().sort(["rep", "old"]).to_numpy().astype(np.int64)


def _shingle_sets(texts: list[str], params: NearDupParams) -> list[frozenset[int]]:
    flat, offsets = shingle_hashes(texts, params.shingle_chars, params.dense_shingle_chars)
    return [frozenset(flat[offsets[i]:offsets[i + 1]].tolist()) for i in range(len(texts))]


def _relabelled_keys(ordered: pl.DataFrame, earlier: pl.DataFrame, first_old_by_key: dict[str, int],
                     n_reps: int, run_date: str | None, agree: Callable[[str], str]) -> dict[tuple[str, str], str]:
    """{(doc_id, key): reason} for tonight's labelled rows whose key is a committed kept row's, when any of them
    carries another label than that row: all of them, so that copies that disagree make the earlier row a conflict.
    The reason is `label_correction`, or `label_superseded` when the committed row is from a night after `run_date`
    and has a label (its label is the newer one)."""
    old_label, old_date = earlier["label"].to_list(), earlier["run_date"].cast(pl.String).to_list()
    rows: dict[str, list[tuple[str, str]]] = {}
    for doc_id, key, label in ordered.select("doc_id", "dedup_key", "label").iter_rows():
        if key in first_old_by_key and label is not None:
            rows.setdefault(key, []).append((doc_id, label))
    out = {}
    for key, labelled in rows.items():
        old = first_old_by_key[key] - n_reps
        if old_label[old] is None or any(agree(label) != agree(old_label[old]) for _, label in labelled):
            newer = run_date is not None and old_date[old] > run_date and old_label[old] is not None
            out.update({(doc_id, key): SUPERSEDED if newer else CORRECTION for doc_id, _ in labelled})
    return out


def cluster_documents(tonight: pl.DataFrame, earlier: pl.DataFrame, load_tonight: TextLoader,
                      load_earlier: TextLoader, params: NearDupParams, near: bool = True,
                      run_date: str | None = None, agree: Callable[[str], str] = str) -> pl.DataFrame:
    """One CLUSTER_SCHEMA row per tonight's candidate (doc_id, dedup_key, label, bands, shard), `tonight` in raw
    order (shard by shard, rows as read): within a cluster an other night's row is kept, else tonight's first.

    `agree`: a label's agreement key (`Task.agreement_key`): a cluster is in label conflict, and a re-sent text
    corrects an earlier one, when their labels' keys differ.

    `earlier` holds the index rows of the other committed nights (earlier or later than tonight's `run_date`):
    doc_id, dedup_key, label, run_date, shard, bands (bands computed with `params`). `run_date` None treats every
    committed night as earlier.
    """
    # raw order: of tonight's copies of a text the first to arrive is kept (committed rows come before the rows an
    # ingest.on_existing: append added, so an append never takes the kept place from a row already scored)
    ordered = tonight
    reps = ordered.unique("dedup_key", keep="first", maintain_order=True)
    earlier = earlier.sort(["run_date", "doc_id"])
    n_reps, n_old = reps.height, earlier.height
    node_id = reps["doc_id"].to_list() + earlier["doc_id"].to_list()
    node_key = reps["dedup_key"].to_list() + earlier["dedup_key"].to_list()
    uf = UnionFind(n_reps + n_old)
    first_old_by_key: dict[str, int] = {}
    for row, key in enumerate(earlier["dedup_key"].to_list()):
        first_old_by_key.setdefault(key, n_reps + row)
    for rep, key in enumerate(node_key[:n_reps]):  # exact matches with earlier nights
        if key in first_old_by_key:
            uf.union(rep, first_old_by_key[key])

    sets: dict[int, frozenset[int]] = {}
    if near and n_reps:
        n_bands = params.bands_rows[0]
        within = candidate_pairs(_band_matrix(reps, n_bands))
        cross = _cross_night_candidates(_band_matrix(reps, n_bands), _band_matrix(earlier, n_bands))
        need_reps = sorted(set(within.reshape(-1).tolist()) | set(cross[:, 0].tolist()))
        need_old = sorted(set(cross[:, 1].tolist()))
        texts = load_tonight(reps[need_reps]) if need_reps else {}
        sets.update(zip(need_reps, _shingle_sets([texts.get(node_id[r], "") for r in need_reps], params)))
        old_texts = load_earlier(earlier[need_old]) if need_old else {}
        old_sets = _shingle_sets([old_texts.get(node_id[n_reps + r], "") for r in need_old], params)
        sets.update({n_reps + r: s for r, s in zip(need_old, old_sets)})
        for a, b in within.tolist() + [(rep, n_reps + old) for rep, old in cross.tolist()]:
            if node_id[a] == node_id[b]:  # one id, two texts: two versions of a document, not duplicates
                continue
            if jaccard_of_sets(sets[a], sets[b]) >= params.threshold:
                uf.union(a, b)

    relabelled = _relabelled_keys(ordered, earlier, first_old_by_key, n_reps, run_date, agree)
    roots = uf.roots()
    kept_of_root: dict[int, int] = {}
    for node in list(range(n_reps, n_reps + n_old)) + list(range(n_reps)):  # earlier nights win, then raw order
        kept_of_root.setdefault(roots[node], node)
    rep_of_key = {key: i for i, key in enumerate(node_key[:n_reps])}
    labels: dict[int, set[str]] = {}
    sizes: dict[int, int] = {}
    for label, key in zip(ordered["label"].to_list(), ordered["dedup_key"].to_list()):
        root = roots[rep_of_key[key]]
        sizes[root] = sizes.get(root, 0) + 1
        if label is not None:
            labels.setdefault(root, set()).add(agree(label))
    for row, label in enumerate(earlier["label"].to_list()):
        root = roots[n_reps + row]
        if label is not None and root in sizes:
            labels.setdefault(root, set()).add(agree(label))

    out = []
    for doc_id, key in zip(ordered["doc_id"].to_list(), ordered["dedup_key"].to_list()):
        rep = rep_of_key[key]
        root = roots[rep]
        kept = kept_of_root[root]
        kept_id, conflict, size = node_id[kept], len(labels.get(root, ())) > 1, sizes[root]
        # kept: this row is its key's representative and the representative is the cluster's kept node (a row with
        # the same doc_id as an earlier night's kept row is that row seen again: a duplicate of it)
        if kept == rep and doc_id == node_id[rep]:
            out.append((doc_id, kept_id, True, None, None, None, conflict, size))
        elif (doc_id, key) in relabelled:
            old_id = node_id[first_old_by_key[key]]
            out.append((doc_id, kept_id, False, relabelled[(doc_id, key)], old_id, 1.0, conflict, size))
        elif node_key[kept] == key:
            out.append((doc_id, kept_id, False, "exact_duplicate", kept_id, 1.0, conflict, size))
        else:
            similarity = jaccard_of_sets(sets[rep], sets[kept]) if rep in sets and kept in sets else None
            out.append((doc_id, kept_id, False, "near_duplicate", kept_id, similarity, conflict, size))
    return pl.DataFrame(out, schema=CLUSTER_SCHEMA, orient="row")
