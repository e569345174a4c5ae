"""Curate: clean text, filter, exact-deduplicate, flag label conflicts and assign leak-free splits.

Every raw row ends in exactly one of curated/ or rejects/ (with a `reason`); the stage asserts
raw = curated + rejected before it commits. Drop reasons are data (datatrove's filter idea), never exceptions.

Reasons: empty (nothing left after cleaning), too_short, too_long, exact_duplicate (same normalised key as a kept row,
`duplicate_of` names it).
"""

from __future__ import annotations

import html
import re
import unicodedata
from typing import Any

import ftfy
import polars as pl
import pyarrow as pa
import xxhash

from bert_pipeline import storage
from bert_pipeline.config import PipelineConfig
from bert_pipeline.errors import LakeStateError
from bert_pipeline.lake import Lake, PartitionWriter, fingerprint, manifest_matches, shard_name

REASONS = ("empty", "too_short", "too_long", "exact_duplicate")
_TAG = re.compile(r"</?[A-Za-z!][^<>]{0,500}>")  # an HTML tag; leaves "<3" and "a < b" alone
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\u2028\u2029\ufeff]")
_SPACE = re.compile(r"\s+")

CURATED_SCHEMA = pa.schema([
    ("doc_id", pa.string()), ("text", pa.string()), ("label", pa.string()), ("split", pa.string()),
    ("label_conflict", pa.bool_()), ("duplicates", pa.int32()), ("dedup_key", pa.string()),
    ("source", pa.string()), ("source_row", pa.int64()), ("run_date", pa.string()),
])
REJECTS_SCHEMA = pa.schema([
    ("doc_id", pa.string()), ("text", pa.string()), ("original_text", pa.string()), ("reason", pa.string()),
    ("duplicate_of", pa.string()), ("label", pa.string()), ("source", pa.string()), ("source_row", pa.int64()),
    ("run_date", pa.string()),
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
    """The exact-duplicate key: NFKC, casefolded, whitespace collapsed, hashed (xxh3-64 hex)."""
    normal = _SPACE.sub(" ", unicodedata.normalize("NFKC", cleaned).casefold()).strip()
    return xxhash.xxh3_64_hexdigest(normal.encode())


def assign_split(key: str, seed: int, validation_fraction: float, test_fraction: float) -> str:
    """Deterministic split from the dedup key, so duplicates share a split and a text keeps it across nights."""
    bucket = xxhash.xxh3_64_intdigest(f"{seed}:{key}".encode()) / 2**64
    if bucket < test_fraction:
        return "test"
    if bucket < test_fraction + validation_fraction:
        return "validation"
    return "train"


def filter_reason(cleaned: str, min_chars: int, max_chars: int) -> str | None:
    if not cleaned:
        return "empty"
    if len(cleaned) < min_chars:
        return "too_short"
    if len(cleaned) > max_chars:
        return "too_long"
    return None


def curate_frame(raw: pl.DataFrame, cfg: PipelineConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(curated, rejects) for a raw frame; pure, so tests can call it on a handful of rows."""
    c = cfg.curate
    cleaned = [clean_text(t) for t in raw["text"].to_list()]
    df = raw.with_columns(
        original_text=pl.col("text"),
        text=pl.Series(cleaned, dtype=pl.String),
        reason=pl.Series([filter_reason(t, c.min_chars, c.max_chars) for t in cleaned], dtype=pl.String),
        dedup_key=pl.Series([dedup_key(t) for t in cleaned], dtype=pl.String),
    )
    candidates = df.filter(pl.col("reason").is_null())
    # The kept row of a duplicate group is the smallest doc_id: deterministic whatever the input order.
    groups = candidates.group_by("dedup_key").agg(
        kept_id=pl.col("doc_id").min(),
        duplicates=pl.len().cast(pl.Int32),
        label_conflict=pl.col("label").drop_nulls().n_unique() > 1,
    )
    candidates = candidates.join(groups, on="dedup_key", how="left")
    is_kept = pl.col("doc_id") == pl.col("kept_id")
    kept = candidates.filter(is_kept)
    duplicates = candidates.filter(~is_kept).with_columns(reason=pl.lit("exact_duplicate"), duplicate_of="kept_id")

    given = kept["split"].to_list()
    keys = kept["dedup_key"].to_list()
    splits = [g or assign_split(k, c.split_seed, c.validation_fraction, c.test_fraction) for g, k in zip(given, keys)]
    curated = kept.with_columns(split=pl.Series(splits, dtype=pl.String)).select(CURATED_SCHEMA.names)

    filtered = df.filter(pl.col("reason").is_not_null()).with_columns(duplicate_of=pl.lit(None, dtype=pl.String))
    rejects = pl.concat(
        [filtered.select(REJECTS_SCHEMA.names), duplicates.select(REJECTS_SCHEMA.names)], how="vertical"
    )
    if curated.height + rejects.height != raw.height:
        raise LakeStateError(
            f"conservation broken: raw {raw.height} != curated {curated.height} + rejected {rejects.height}"
        )
    return curated, rejects


def _write_shards(writer: PartitionWriter, frame: pl.DataFrame, schema: pa.Schema, shard_rows: int) -> None:
    table = frame.to_arrow().cast(schema)
    for index, start in enumerate(range(0, max(table.num_rows, 1), shard_rows)):
        storage.write_parquet_atomic(writer.add(shard_name(index)), table.slice(start, shard_rows))


def run_curate(cfg: PipelineConfig) -> dict[str, Any]:
    lake = Lake(cfg.data_root)
    raw_manifest = lake.require_manifest("raw", cfg.run_date, produced_by="ingest")
    stage_fp = fingerprint("curate", raw_manifest["fingerprint"], cfg.fingerprint("curate"))
    curated_folder = lake.partition("curated", cfg.run_date)
    manifest = lake.read_manifest("curated", cfg.run_date)
    rejects_folder = lake.partition("rejects", cfg.run_date)
    if manifest_matches(manifest, stage_fp, curated_folder) and manifest_matches(
        lake.read_manifest("rejects", cfg.run_date), stage_fp, rejects_folder
    ):
        return {"stage": "curate", "skipped": True, "partition": curated_folder, **manifest["counts"]}

    raw_urls = lake.shard_urls("raw", cfg.run_date, raw_manifest)
    raw = pl.concat([pl.from_arrow(storage.read_parquet(u)) for u in raw_urls], how="vertical")  # type: ignore[misc]
    curated, rejects = curate_frame(raw, cfg)

    by_reason = {r: 0 for r in REASONS} | dict(rejects["reason"].value_counts().iter_rows())
    counts = {
        "raw_rows": raw.height,
        "curated_rows": curated.height,
        "rejected_rows": rejects.height,
        "rejected_by_reason": by_reason,
        "label_conflicts": int(curated["label_conflict"].sum()),
        "splits": dict(curated["split"].value_counts().iter_rows()),
    }
    # rejects first, curated last: the curated manifest is what commits the stage.
    curated_writer = PartitionWriter(curated_folder, stage_fp).begin()
    rejects_writer = PartitionWriter(rejects_folder, stage_fp).begin()
    _write_shards(rejects_writer, rejects, REJECTS_SCHEMA, cfg.curate.shard_rows)
    common = dict(stage="curate", run_date=cfg.run_date, inputs=[raw_manifest["fingerprint"]],
                  config_hash=cfg.fingerprint("curate"), counts=counts)
    rejects_writer.commit(**common)
    _write_shards(curated_writer, curated, CURATED_SCHEMA, cfg.curate.shard_rows)
    curated_writer.commit(**common)
    return {"stage": "curate", "skipped": False, "partition": curated_folder, **counts}
