"""A second night's copies and near-copies of the first night's kept rows are rejected against the lake's index."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from bert_pipeline.config import build_config
from bert_pipeline.curation.clean import clean_text
from bert_pipeline.stages.curate import run_curate
from bert_pipeline.stages.ingest import run_ingest
from bert_pipeline.lake.manifests import Lake
from tests.helpers import demo_frame


def _night(tmp_path: Path, run_date: str, texts: list[str]) -> tuple[dict, Lake]:
    path = tmp_path / f"batch-{run_date}.csv"
    pl.DataFrame({"text": texts, "label": ["x"] * len(texts)}).write_csv(path)
    cfg = build_config({"data_root": str(tmp_path / "lake"), "run_date": run_date,
                        "ingest": {"sources": [str(path)], "label_column": "label"}})
    run_ingest(cfg)
    return run_curate(cfg), Lake.of(cfg)


def _read(lake: Lake, area: str, run_date: str) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(u) for u in lake.shard_urls(area, run_date, lake.read_manifest(area, run_date))])


def test_second_night_rejects_overlap_with_the_first(tmp_path: Path) -> None:
    pool = [t for t in demo_frame()["text"].unique(maintain_order=True).to_list() if len(t) > 80][:400]
    first, second_new = pool[:200], pool[200:260]
    copies = first[:30]
    edits = [t + " (updated)" for t in first[30:60]]
    _night(tmp_path, "2026-01-01", first)
    summary, lake = _night(tmp_path, "2026-01-02", copies + edits + second_new)

    night1 = _read(lake, "curated", "2026-01-01")
    rejects = _read(lake, "rejects", "2026-01-02")
    curated = _read(lake, "curated", "2026-01-02")
    assert summary["earlier_documents_indexed"] == night1.height
    assert summary["raw_rows"] == curated.height + rejects.height == 120
    by_text = dict(zip(night1["text"], night1["doc_id"]))
    exact = rejects.filter(pl.col("reason") == "exact_duplicate")
    assert exact.height == 30
    assert all(by_text[t] == d for t, d in zip(exact["text"], exact["duplicate_of"]))
    near = rejects.filter(pl.col("reason") == "near_duplicate")
    assert near.height >= 28  # " (updated)" on a tweet keeps 5-gram Jaccard >= 0.8 for nearly all of them
    assert set(near["duplicate_of"]) <= set(night1["doc_id"])
    assert len(set(curated["text"]) & {clean_text(t) for t in second_new}) >= 55  # the pool has a few near-dups

    # rerunning the first night is unaffected by the second (only earlier nights count)
    assert run_curate(build_config({"data_root": str(tmp_path / "lake"), "run_date": "2026-01-01",
                                    "ingest": {"sources": [str(tmp_path / "batch-2026-01-01.csv")],
                                               "label_column": "label"}}))["skipped"]


def test_the_same_file_on_a_second_night_is_all_duplicates(tmp_path: Path) -> None:
    texts = [t for t in demo_frame()["text"].unique(maintain_order=True).to_list() if len(t) > 80][:50]
    path = tmp_path / "same.csv"
    pl.DataFrame({"text": texts}).write_csv(path)
    for run_date in ("2026-02-01", "2026-02-02"):
        cfg = build_config({"data_root": str(tmp_path / "lake"), "run_date": run_date, "ingest": {"sources": [str(path)]}})
        run_ingest(cfg)
        summary = run_curate(cfg)
    assert summary["curated_rows"] == 0 and summary["raw_rows"] == summary["rejected_rows"] == 50
    assert summary["rejected_by_reason"]["exact_duplicate"] == 50


def test_a_re_sent_text_with_another_label_is_a_correction_and_disagreeing_copies_all_are() -> None:
    from bert_pipeline.curation.dedup import cluster_documents
    from bert_pipeline.curation.neardup import NearDupParams

    earlier = pl.DataFrame({"doc_id": ["e1", "e2"], "dedup_key": ["k1", "k2"], "label": ["x", None],  # e2: a conflict
                            "run_date": ["2026-01-01"] * 2, "shard": ["part-00000.parquet"] * 2,
                            "bands": [[], []]}, schema_overrides={"bands": pl.List(pl.UInt64)})
    tonight = pl.DataFrame({"doc_id": ["t1", "t2", "t3", "t4", "t5"], "dedup_key": ["k1", "k1", "k2", "k1", "k3"],
                            "label": ["x", "y", "z", None, "x"], "bands": [[]] * 5, "shard": ["part-00000.parquet"] * 5},
                           schema_overrides={"bands": pl.List(pl.UInt64)})
    clusters = cluster_documents(tonight, earlier, lambda rows: {}, lambda rows: {}, NearDupParams(), near=False)
    outcome = {d: (reason, of) for d, reason, of in clusters.select("doc_id", "dup_reason", "duplicate_of").iter_rows()}
    assert outcome == {
        "t1": ("label_correction", "e1"),  # agrees with e1, but its copy t2 does not: both are recorded, e1 conflicts
        "t2": ("label_correction", "e1"),
        "t3": ("label_correction", "e2"),  # a single label for a row that was in conflict resolves it
        "t4": ("exact_duplicate", "e1"),  # no label corrects nothing
        "t5": (None, None),  # a new text
    }


def test_corrections_keep_the_newest_night_and_a_disagreeing_night_is_a_conflict(tmp_path: Path) -> None:
    from bert_pipeline.curation.labels import read_corrections

    lake = Lake(str(tmp_path / "lake"))
    batches = {"2026-01-02": [("t1", "e1", "y"), ("t2", "e2", "a"), ("t3", "e2", "b")],
               "2026-01-03": [("u1", "e1", "z")]}
    for date, rows in batches.items():
        folder = tmp_path / "lake" / "rejects" / f"run_date={date}"
        folder.mkdir(parents=True)
        pl.DataFrame(rows, schema=["doc_id", "duplicate_of", "label"], orient="row").with_columns(
            reason=pl.lit("label_correction")).write_parquet(folder / "part-00000.parquet")
        manifest = Path(lake.manifest_url("rejects", date))
        manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.write_text(
            '{"outputs": ["part-00000.parquet"], "counts": {"rejected_by_reason": {"label_correction": 1}}}')
    current = read_corrections(lake, list(batches))
    assert current.select("doc_id", "label", "corrected_on").rows() == [
        ("e1", "z", "2026-01-03"), ("e2", None, "2026-01-02")]
    assert read_corrections(lake, ["2026-01-02"])["label"].to_list() == ["y", None]
