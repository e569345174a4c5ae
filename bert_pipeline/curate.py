"""Curate: clean, filter, deduplicate (exact and near, within the night and against earlier nights), flag label
conflicts and assign leak-free splits.

Every raw row ends in exactly one of curated/ or rejects/ with a `reason`; the stage asserts raw = curated + rejected
before it commits. Drop reasons are data (datatrove's filter idea), never exceptions:

  empty            nothing left after cleaning
  too_short        fewer than curate.min_chars characters
  too_long         more than curate.max_chars characters
  low_alpha        letters are less than curate.min_alpha_ratio of the non-space characters
  repetitive       more than curate.max_repetition of its character 10-grams repeat an earlier one (texts >= 100 chars)
  exact_duplicate  same normalised text (NFKC, casefold, whitespace collapsed) as the kept row `duplicate_of`
  near_duplicate   character 5-gram Jaccard >= curate.near_dup_threshold with a member of the kept row's cluster

Steps (each a function over one shard or one small table, so they can be mapped over shards): `clean_frame` per raw
shard, `cluster_documents` over the candidates' keys and texts plus the earlier nights' index, `split_frame` per shard.
"""

from __future__ import annotations

import html
import re
from typing import Any

import ftfy
import numpy as np
import polars as pl
import pyarrow as pa
import xxhash

from bert_pipeline import storage
from bert_pipeline.config import CurateConfig, PipelineConfig
from bert_pipeline.dedup import cluster_documents
from bert_pipeline.errors import LakeStateError
from bert_pipeline.lake import Lake, PartitionWriter, fingerprint, manifest_matches, shard_name
from bert_pipeline.neardup import NearDupParams, normal_form

REASONS = ("empty", "too_short", "too_long", "low_alpha", "repetitive", "exact_duplicate", "near_duplicate")
_TAG = re.compile(r"</?[A-Za-z!][^<>]{0,500}>")  # an HTML tag; leaves "<3" and "a < b" alone
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\u2028\u2029\ufeff]")
_SPACE = re.compile(r"\s+")
REPETITION_MIN_CHARS = 100
REPETITION_NGRAM = 10

CURATED_SCHEMA = pa.schema([
    ("doc_id", pa.string()), ("text", pa.string()), ("label", pa.string()), ("split", pa.string()),
    ("label_conflict", pa.bool_()), ("duplicates", pa.int32()), ("cluster_id", pa.string()),
    ("dedup_key", pa.string()), ("source", pa.string()), ("source_row", pa.int64()), ("run_date", pa.string()),
])
REJECTS_SCHEMA = pa.schema([
    ("doc_id", pa.string()), ("text", pa.string()), ("original_text", pa.string()), ("reason", pa.string()),
    ("duplicate_of", pa.string()), ("similarity", pa.float32()), ("cluster_id", pa.string()), ("label", pa.string()),
    ("source", pa.string()), ("source_row", pa.int64()), ("run_date", pa.string()),
])
INDEX_SCHEMA = pa.schema([
    ("doc_id", pa.string()), ("dedup_key", pa.string()), ("label", pa.string()), ("run_date", pa.string()),
    ("shard", pa.string()), ("bands", pa.list_(pa.uint64())),
])


def clean_text(text: str | None) -> str:
    """Repair mojibake (ftfy), unescape HTML entities, strip tags and control characters, collapse whitespace."""
    if not text:
        return ""
    text = _CONTROL.sub(" ", text)  # first, so that ftfy does not glue the words around a control character
    text = ftfy.fix_text(text, unescape_html=False)
    text = _TAG.sub(" ", html.unescape(text))
    return _SPACE.sub(" ", text).strip()


def dedup_key(cleaned: str) -> str:
    """The exact-duplicate key: xxh3-64 hex of the normal form (NFKC, casefolded, whitespace collapsed)."""
    return xxhash.xxh3_64_hexdigest(normal_form(cleaned).encode())


def alpha_ratio(text: str) -> float:
    visible = [c for c in text if not c.isspace()]
    return sum(c.isalpha() for c in visible) / len(visible) if visible else 0.0


def repetition(text: str, n: int = REPETITION_NGRAM) -> float:
    """Fraction of character n-grams that repeat an earlier one: ~0.05 for prose, near 1 for 'spam spam spam ...'."""
    windows = len(text) - n + 1
    if len(text) < REPETITION_MIN_CHARS or windows <= 0:
        return 0.0
    return 1.0 - len({text[i:i + n] for i in range(windows)}) / windows


def filter_reason(cleaned: str, c: CurateConfig) -> str | None:
    if not cleaned:
        return "empty"
    if len(cleaned) < c.min_chars:
        return "too_short"
    if len(cleaned) > c.max_chars:
        return "too_long"
    if alpha_ratio(cleaned) < c.min_alpha_ratio:
        return "low_alpha"
    if repetition(cleaned) > c.max_repetition:
        return "repetitive"
    return None


def assign_split(key: str, seed: int, validation_fraction: float, test_fraction: float) -> str:
    """Deterministic split from a cluster's key: a cluster never straddles splits and keeps its split across nights."""
    bucket = xxhash.xxh3_64_intdigest(f"{seed}:{key}".encode()) / 2**64
    if bucket < test_fraction:
        return "test"
    if bucket < test_fraction + validation_fraction:
        return "validation"
    return "train"


def near_dup_params(c: CurateConfig) -> NearDupParams:
    return NearDupParams(threshold=c.near_dup_threshold, num_perm=c.num_perm, shingle_chars=c.shingle_chars)


def clean_frame(raw: pl.DataFrame, c: CurateConfig) -> pl.DataFrame:
    """Per shard: cleaned text, its normal form and dedup key, and the filter reason (null = candidate)."""
    cleaned = [clean_text(t) for t in raw["text"].to_list()]
    normal = [normal_form(t) for t in cleaned]
    return raw.with_columns(
        original_text=pl.col("text"),
        text=pl.Series(cleaned, dtype=pl.String),
        norm=pl.Series(normal, dtype=pl.String),
        dedup_key=pl.Series([xxhash.xxh3_64_hexdigest(t.encode()) for t in normal], dtype=pl.String),
        reason=pl.Series([filter_reason(t, c) for t in cleaned], dtype=pl.String),
    )


def curate_frame(raw: pl.DataFrame, cfg: PipelineConfig, earlier: pl.DataFrame | None = None,
                 load_texts: Any = None) -> tuple[pl.DataFrame, pl.DataFrame, np.ndarray]:
    """(curated, rejects, band hashes of the curated rows) for a raw frame; pure apart from `load_texts`."""
    c = cfg.curate
    df = clean_frame(raw, c)
    candidates = df.filter(pl.col("reason").is_null())
    clusters, bands = cluster_documents(
        candidates.select("doc_id", "dedup_key", "norm", "label"),
        earlier if earlier is not None else empty_index(), load_texts or (lambda _: {}),
        near_dup_params(c), near=c.near_dedup,
    )
    df = df.join(clusters.rename({"reason": "dup_reason"}), on="doc_id", how="left").with_columns(
        reason=pl.coalesce("reason", "dup_reason"), kept=pl.col("kept").fill_null(False),
        label_conflict=pl.col("label_conflict").fill_null(False),
    )
    sizes = df.filter(pl.col("cluster_id").is_not_null()).group_by("cluster_id").agg(duplicates=pl.len().cast(pl.Int32))
    kept = df.filter(pl.col("kept")).join(sizes, on="cluster_id", how="left")
    splits = [given or assign_split(key, c.split_seed, c.validation_fraction, c.test_fraction)
              for given, key in zip(kept["split"].to_list(), kept["dedup_key"].to_list())]
    curated = kept.with_columns(split=pl.Series(splits, dtype=pl.String)).select(CURATED_SCHEMA.names)
    rejects = df.filter(~pl.col("kept")).select(REJECTS_SCHEMA.names)
    if curated.height + rejects.height != raw.height:
        raise LakeStateError(
            f"conservation broken: raw {raw.height} != curated {curated.height} + rejected {rejects.height}"
        )
    rep_rows = {doc_id: i for i, doc_id in enumerate(
        candidates.sort("doc_id").unique("dedup_key", keep="first", maintain_order=True)["doc_id"].to_list())}
    kept_bands = bands[[rep_rows[d] for d in curated["doc_id"].to_list()]] if curated.height else bands[:0]
    return curated, rejects, kept_bands


def empty_index() -> pl.DataFrame:
    return pl.from_arrow(INDEX_SCHEMA.empty_table())  # type: ignore[return-value]


def read_earlier_index(lake: Lake, run_date: str, params: NearDupParams) -> tuple[pl.DataFrame, list[str]]:
    """Index rows of every committed night before run_date built with the same near-dup parameters."""
    frames, fingerprints = [], []
    for date in lake.run_dates("dedup_index"):
        if date >= run_date:
            continue
        manifest = lake.read_manifest("dedup_index", date)
        if not manifest or manifest.get("near_dup_params") != params.__dict__:
            continue
        fingerprints.append(manifest["fingerprint"])
        frames += [pl.from_arrow(storage.read_parquet(u)) for u in lake.shard_urls("dedup_index", date, manifest)]
    return (pl.concat(frames) if frames else empty_index()), fingerprints  # type: ignore[return-value]


def earlier_text_loader(lake: Lake) -> Any:
    """Reads only the curated shards that hold the candidates, and only their doc_id and text columns."""

    def load(rows: pl.DataFrame) -> dict[str, str]:
        texts: dict[str, str] = {}
        for (date, shard), group in rows.group_by(["run_date", "shard"]):
            url = storage.join(lake.partition("curated", str(date)), str(shard))
            frame = pl.from_arrow(storage.read_parquet(url, columns=["doc_id", "text"]))
            wanted = frame.filter(pl.col("doc_id").is_in(group["doc_id"].to_list()))  # type: ignore[union-attr]
            texts.update({d: normal_form(t) for d, t in wanted.iter_rows()})
        return texts

    return load


def _write_shards(writer: PartitionWriter, table: pa.Table, shard_rows: int) -> None:
    for index, start in enumerate(range(0, max(table.num_rows, 1), shard_rows)):
        storage.write_parquet_atomic(writer.add(shard_name(index)), table.slice(start, shard_rows))


def run_curate(cfg: PipelineConfig) -> dict[str, Any]:
    lake = Lake(cfg.data_root)
    raw_manifest = lake.require_manifest("raw", cfg.run_date, produced_by="ingest")
    params = near_dup_params(cfg.curate)
    earlier, earlier_fps = (read_earlier_index(lake, cfg.run_date, params) if cfg.curate.dedup_across_nights
                            else (empty_index(), []))
    stage_fp = fingerprint("curate", raw_manifest["fingerprint"], cfg.fingerprint("curate"), earlier_fps)
    folders = {area: lake.partition(area, cfg.run_date) for area in ("curated", "rejects", "dedup_index")}
    manifest = lake.read_manifest("curated", cfg.run_date)
    if all(manifest_matches(lake.read_manifest(a, cfg.run_date), stage_fp, f) for a, f in folders.items()):
        return {"stage": "curate", "skipped": True, "partition": folders["curated"], **manifest["counts"]}  # type: ignore[index]

    raw_urls = lake.shard_urls("raw", cfg.run_date, raw_manifest)
    raw = pl.concat([pl.from_arrow(storage.read_parquet(u)) for u in raw_urls], how="vertical")  # type: ignore[misc]
    curated, rejects, bands = curate_frame(raw, cfg, earlier, earlier_text_loader(lake))

    by_reason = {r: 0 for r in REASONS} | dict(rejects["reason"].value_counts().iter_rows())
    counts = {
        "raw_rows": raw.height,
        "curated_rows": curated.height,
        "rejected_rows": rejects.height,
        "rejected_by_reason": by_reason,
        "label_conflicts": int(curated["label_conflict"].sum()),
        "earlier_documents_indexed": earlier.height,
        "splits": dict(curated["split"].value_counts().iter_rows()),
    }
    common = dict(stage="curate", run_date=cfg.run_date, inputs=[raw_manifest["fingerprint"], *earlier_fps],
                  config_hash=cfg.fingerprint("curate"), counts=counts)
    writers = {area: PartitionWriter(folder, stage_fp).begin() for area, folder in folders.items()}
    # rejects and the index first, curated last: the curated manifest is what commits the stage.
    _write_shards(writers["rejects"], rejects.to_arrow().cast(REJECTS_SCHEMA), cfg.curate.shard_rows)
    writers["rejects"].commit(**common)
    shard_of_row = [shard_name(i // cfg.curate.shard_rows) for i in range(curated.height)]
    index = pl.DataFrame({
        "doc_id": curated["doc_id"], "dedup_key": curated["dedup_key"], "label": curated["label"],
        "run_date": pl.Series([cfg.run_date] * curated.height, dtype=pl.String),
        "shard": pl.Series(shard_of_row, dtype=pl.String),
        "bands": pl.Series(bands.tolist(), dtype=pl.List(pl.UInt64)),
    })
    _write_shards(writers["dedup_index"], index.to_arrow().cast(INDEX_SCHEMA), 1_000_000)
    writers["dedup_index"].commit(**common, near_dup_params=params.__dict__)
    _write_shards(writers["curated"], curated.to_arrow().cast(CURATED_SCHEMA), cfg.curate.shard_rows)
    writers["curated"].commit(**common)
    return {"stage": "curate", "skipped": False, "partition": folders["curated"], **counts}
