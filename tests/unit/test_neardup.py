"""Near-duplicate detection: planted edits found, unrelated texts not, scripts without spaces handled."""

from __future__ import annotations

import random

import numpy as np
import polars as pl
import pytest

from bert_pipeline.config import build_config
from bert_pipeline.stages.curate import curate_frame
from bert_pipeline.curation.neardup import (
    NearDupParams, UnionFind, candidate_pairs, exact_jaccard, find_near_duplicates, lsh_params, normal_form,
    shingle_hashes,
)
from tests.helpers import demo_frame


def shingles(text: str, n: int = 5) -> set[str]:
    text = text if len(text) >= n else text + "\x00" * (n - len(text))
    return {text[i:i + n] for i in range(len(text) - n + 1)}


def true_jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


def test_shingle_hashes_match_python_shingles() -> None:
    texts = ["hello world", "hi", "你好世界你好朋友们"]
    flat, offsets = shingle_hashes(texts, 5)
    for i, text in enumerate(texts):
        assert len(set(flat[offsets[i]:offsets[i + 1]].tolist())) == len(shingles(text))
    a, b = "the quick brown fox jumps", "the quick brown fox jumped"
    flat, offsets = shingle_hashes([a, b], 5)
    assert exact_jaccard(flat[:offsets[1]], flat[offsets[1]:]) == pytest.approx(true_jaccard(a, b))


def test_planted_near_duplicates_are_found_with_high_recall_and_precision() -> None:
    rng = random.Random(0)
    base = [normal_form(t) for t in demo_frame()["text"].unique(maintain_order=True).head(3000).to_list()]
    base = [t for t in base if len(t) > 60]
    planted = []
    for text in base[:300]:
        words = text.split(" ")
        words.insert(rng.randrange(len(words)), "indeed")  # one insertion
        planted.append(" ".join(words))
    texts = base + planted
    pairs, sims = find_near_duplicates(texts, NearDupParams(threshold=0.8))
    found = {tuple(p) for p in pairs.tolist()}
    truth = {(i, len(base) + i) for i in range(300) if true_jaccard(base[i], planted[i]) >= 0.8}
    assert len(truth) > 150
    assert len(truth & found) / len(truth) >= 0.95
    precision = np.mean([true_jaccard(texts[i], texts[j]) >= 0.8 for i, j in found])
    assert precision >= 0.99
    assert np.all(sims >= 0.8)


def test_text_without_spaces_is_compared_by_characters() -> None:
    a = "今天天气很好我们一起去公园散步然后吃晚饭"
    b = "今天天气很好我们一起去公园散步然后吃午饭"
    c = "这家餐厅的服务非常糟糕菜也很难吃不会再来"
    pairs, _ = find_near_duplicates([a, b, c], NearDupParams(threshold=0.7))
    assert pairs.tolist() == [[0, 1]]


def test_near_duplicates_form_clusters_with_one_kept_row_and_a_conflict_flag() -> None:
    texts = ["The flight was delayed for three hours and nobody told us anything at all",
             "The flight was delayed for three hours and nobody told us anything at all!!",
             "the flight was delayed for three hours, and nobody told us anything at all.",
             "An entirely different complaint about lost luggage in Denver last night"]
    raw = pl.DataFrame({"doc_id": ["d3", "d1", "d2", "d4"], "text": texts, "label": ["neg", "neg", "neu", "neg"],
                        "split": [None] * 4, "source": ["s"] * 4, "source_row": [0, 1, 2, 3],
                        "run_date": ["2026-01-01"] * 4}, schema_overrides={"split": pl.String})
    curated, rejects, _ = curate_frame(raw, build_config({}))
    assert sorted(curated["doc_id"]) == ["d3", "d4"]  # the first to arrive (source_row 0) is kept, not the smallest id
    kept = curated.filter(pl.col("doc_id") == "d3").row(0, named=True)
    assert kept["label_conflict"] and kept["duplicates"] == 3 and kept["cluster_id"] == "d3"
    assert set(rejects["reason"]) == {"near_duplicate"} and set(rejects["duplicate_of"]) == {"d3"}
    assert set(rejects["cluster_id"]) == {"d3"} and (rejects["similarity"] >= 0.8).all()


def test_helpers() -> None:
    uf = UnionFind(5)
    uf.union(0, 1), uf.union(3, 4), uf.union(1, 4)
    assert len({uf.find(i) for i in range(5)}) == 2
    bands = np.array([[1, 7], [1, 8], [2, 8], [3, 9]], dtype=np.uint64)
    assert candidate_pairs(bands).tolist() == [[0, 1], [1, 2]]
    b, r = lsh_params(0.8, 128)
    assert b * r <= 128 and 0.6 < (1 / b) ** (1 / r) < 0.9


def test_a_corpus_without_spaces_and_many_repeats(tmp_path) -> None:
    from bert_pipeline.stages.curate import run_curate
    from bert_pipeline.stages.ingest import run_ingest
    from bert_pipeline.lake.manifests import Lake
    from tests.helpers import cjk_corpus

    texts, edits = cjk_corpus()
    pl.DataFrame({"review": texts}).write_csv(tmp_path / "reviews.csv")
    cfg = build_config({"data_root": str(tmp_path / "lake"), "run_date": "2026-03-01",
                        "ingest": {"sources": [str(tmp_path / "reviews.csv")], "text_column": "review"}})
    run_ingest(cfg)
    summary = run_curate(cfg)
    assert summary["raw_rows"] == summary["curated_rows"] + summary["rejected_rows"] == 500
    assert summary["rejected_by_reason"]["exact_duplicate"] == 50
    lake = Lake.of(cfg)
    rejects = pl.concat([pl.read_parquet(u) for u in lake.shard_urls("rejects", cfg.run_date,
                                                                        lake.read_manifest("rejects", cfg.run_date))])
    near = set(rejects.filter(pl.col("reason") == "near_duplicate")["text"])
    assert len(near) >= 48  # one changed character in 30-45: 3-gram Jaccard >= 0.8 for nearly every edit
    assert near <= {texts[j] for _, j in edits} | {texts[i] for i, _ in edits}
