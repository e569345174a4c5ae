"""Tokenize: curated text -> Arrow IPC token shards, once (nanoGPT's prepare/train split).

Shard columns: doc_id, input_ids (uint16 when the vocabulary fits, else uint32), length, label_id (-1 = not
trainable: unlabelled or label conflict), split, truncated. The manifest records the label map the train stage
uses, the tokenizer identity and hash, max_length, counts and a length histogram. A shard whose file exists with this
stage's fingerprint in its schema metadata is not tokenized again.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from bert_pipeline import storage
from bert_pipeline.config import PipelineConfig
from bert_pipeline.labels import check_label_spellings
from bert_pipeline.lake import (
    SHARD_FINGERPRINT, Lake, fingerprint, manifest_matches, shard_matches,
)
from bert_pipeline.progress import Progress
from bert_pipeline.models import casing_warnings, fast_encoder, load_tokenizer, resolve_model_dir, tokenizer_hash

HISTOGRAM_EDGES = [0, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192]


def label_names(lake: Lake, run_date: str, curated_manifest: dict[str, Any]) -> list[str]:
    """Sorted label values of the trainable curated rows (a multi-label row's value is its whole set, e.g.
    '["billing","refund"]'): a shard's label_id is the position of the row's value here."""
    rows = lake.dataset("curated", {run_date: curated_manifest}).to_table(
        columns=["label"], filter=~pc.field("label_conflict") & pc.field("label").is_valid())
    return sorted(pc.unique(rows["label"]).to_pylist())


def encode_texts(encoder: Any, texts: list[str], batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flat token ids, offsets, truncated flags) for texts, in order."""
    ids: list[list[int]] = []
    truncated: list[bool] = []
    encode = getattr(encoder, "encode_batch_fast", encoder.encode_batch)
    for start in range(0, len(texts), batch_size):
        for encoding in encode(texts[start:start + batch_size]):
            ids.append(encoding.ids)
            truncated.append(bool(encoding.overflowing))
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int32, count=len(ids))
    offsets = np.zeros(len(ids) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter((t for x in ids for t in x), dtype=np.int64, count=int(offsets[-1]))
    return flat, offsets, np.asarray(truncated, dtype=bool)


def token_table(curated: pl.DataFrame, encoder: Any, labels: list[str], batch_size: int) -> pa.Table:
    flat, offsets, truncated = encode_texts(encoder, curated["text"].to_list(), batch_size)
    id_type = pa.uint16() if encoder.get_vocab_size() <= np.iinfo(np.uint16).max + 1 else pa.uint32()
    input_ids = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat).cast(id_type))
    label_index = {name: i for i, name in enumerate(labels)}
    label_ids = [
        -1 if (label is None or conflict) else label_index[label]
        for label, conflict in zip(curated["label"].to_list(), curated["label_conflict"].to_list())
    ]
    return pa.table({
        "doc_id": curated["doc_id"].to_arrow(),
        "input_ids": input_ids,
        "length": pa.array(np.diff(offsets), pa.int32()),
        # a multi-label night may hold many distinct label sets: int32 when int16 cannot index them all
        "label_id": pa.array(label_ids, pa.int16() if len(labels) <= np.iinfo(np.int16).max else pa.int32()),
        "split": curated["split"].to_arrow(),
        "truncated": pa.array(truncated),
    })


def write_arrow_atomic(url: str, table: pa.Table, metadata: dict[str, str]) -> None:
    table = table.replace_schema_metadata({k.encode(): v.encode() for k, v in metadata.items()})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    storage.write_bytes_atomic(url, sink.getvalue().to_pybytes())


def read_arrow(url: str, columns: list[str] | None = None) -> pa.Table:
    table = pa.ipc.open_file(pa.BufferReader(storage.read_bytes(url))).read_all()
    return table.select(columns) if columns else table


def _summarise(tables: list[pa.Table]) -> dict[str, Any]:
    lengths = np.concatenate([t["length"].to_numpy() for t in tables]) if tables else np.zeros(0, np.int32)
    frames = [pl.from_arrow(t.select(["label_id", "split", "truncated"])) for t in tables]
    df = pl.concat(frames) if frames else pl.DataFrame({"label_id": [], "split": [], "truncated": []})  # type: ignore[arg-type]
    trainable = df.filter(pl.col("label_id") >= 0)
    counts, edges = np.histogram(lengths, bins=HISTOGRAM_EDGES + [max(HISTOGRAM_EDGES[-1], int(lengths.max(initial=0))) + 1])
    return {
        "rows": int(df.height),
        "tokens": int(lengths.sum()),
        "truncated": int(df["truncated"].sum()) if df.height else 0,
        "trainable_by_split": dict(trainable["split"].value_counts().iter_rows()) if df.height else {},
        "length_histogram": {f"{int(lo)}-{int(hi) - 1}": int(n) for lo, hi, n in zip(edges[:-1], edges[1:], counts)},
    }


def run_tokenize(cfg: PipelineConfig, progress: Progress | None = None) -> dict[str, Any]:
    lake = Lake(cfg.data_root)
    curated_manifest = lake.require_manifest("curated", cfg.run_date, produced_by="curate")
    model_dir = resolve_model_dir(cfg.train.base_model)
    tokenizer = load_tokenizer(model_dir)  # logs a casing/vocabulary disagreement (models.casing_warnings)
    tok_hash = tokenizer_hash(tokenizer)
    warnings = casing_warnings(tokenizer, model_dir)
    stage_fp = fingerprint("tokenize", curated_manifest["fingerprint"], tok_hash, cfg.fingerprint("tokenize"))
    folder = lake.partition("tokens", cfg.run_date)
    manifest = lake.read_manifest("tokens", cfg.run_date)
    if manifest_matches(manifest, stage_fp, folder):
        return {"stage": "tokenize", "skipped": True, "partition": folder, **manifest["counts"],
                **({"warnings": warnings} if warnings else {})}

    labels = label_names(lake, cfg.run_date, curated_manifest)
    check_label_spellings(labels, setting=f"ingest.label_column of run_date={cfg.run_date}")
    encoder = fast_encoder(tokenizer, cfg.tokenize.max_length)
    writer = lake.writer("tokens", cfg.run_date, stage_fp).begin()
    tables = []
    size = cfg.tokenize.shard_rows
    curated_urls = lake.shard_urls("curated", cfg.run_date, curated_manifest)
    for index, curated_url in enumerate(curated_urls):
        if progress:
            progress(f"tokenizing curated shard {index + 1}/{len(curated_urls)}", index / len(curated_urls))
        # curated shard i becomes token shards part-iiiii-jjj.arrow of at most tokenize.shard_rows rows each
        pieces = max(1, math.ceil(storage.parquet_rows(curated_url) / size))
        urls = [writer.add(f"part-{index:05d}-{piece:03d}.arrow") for piece in range(pieces)]
        if all(shard_matches(url, stage_fp) for url in urls):
            tables += [read_arrow(url, ["length", "label_id", "split", "truncated"]) for url in urls]
            continue
        curated = pl.from_arrow(storage.read_parquet(curated_url))
        table = token_table(curated, encoder, labels, cfg.tokenize.batch_size)  # type: ignore[arg-type]
        for piece, url in enumerate(urls):
            write_arrow_atomic(url, table.slice(piece * size, size), {SHARD_FINGERPRINT: stage_fp})
        tables.append(table)
    counts = _summarise(tables)
    if progress:
        progress(f"{len(curated_urls)} curated shards tokenized", 1.0)
    writer.commit(
        stage="tokenize", run_date=cfg.run_date, inputs=[curated_manifest["fingerprint"]],
        config_hash=cfg.fingerprint("tokenize"), counts=counts, label_names=labels, max_length=cfg.tokenize.max_length,
        tokenizer={"source": cfg.train.base_model or "packaged MiniLM", "hash": tok_hash,
                   "vocab_size": encoder.get_vocab_size(), "pad_token_id": tokenizer.pad_token_id,
                   **({"warnings": warnings} if warnings else {})},
    )
    return {"stage": "tokenize", "skipped": False, "partition": folder, "label_names": labels, **counts,
            **({"warnings": warnings} if warnings else {})}
