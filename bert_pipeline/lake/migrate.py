"""Migrate a lake written by bert-pipeline before 0.2 (layout 1) to the current layout (`bert-pipeline migrate-lake`).

Layout 1 kept each partition's manifest beside its files (`<area>/run_date=D/_manifest.json`), wrote `run_date` as a
column as well as in the folder name, and gave predictions one `prob_<label>` column per label. Per partition:

1. every listed shard that still has a `run_date` column (or, in predictions, `prob_` columns) is rewritten in place,
   atomically, with its rows, values and file metadata unchanged otherwise;
2. the manifest is written to `_manifests/<area>/run_date=D.json`;
3. the old manifest is deleted.

Then the leftovers of interrupted runs, which no manifest lists and which would still trip folder readers, are dealt
with: `*.tmp-*` files are deleted, unlisted parquet shards lose their `run_date` column, and unlisted schema-1
predictions shards (whose labels only a manifest knows) are deleted: the next run of that stage rewrites all of them.
Stage fingerprints include the code version, so rerunning a stage on a migrated night recomputes it once.

A crash at any point leaves either the old manifest (the partition is migrated again; shards already rewritten are
left alone) or the new one: rerunning the command finishes the job, and running it on a migrated lake does nothing.
Replacements a score run had begun under `predictions/.staging` are deleted: they were never committed, and the
next score run rebuilds them.
"""

from __future__ import annotations

from typing import Any

from bert_pipeline.lake import storage
from bert_pipeline.errors import LakeStateError
from bert_pipeline.lake.manifests import AREAS, Lake
from bert_pipeline.lake.predictions import SCHEMA_VERSION, SCHEMA_VERSION_KEY, from_probability_columns
from bert_pipeline.progress import Progress

LEGACY_PROBABILITY_PREFIX = "prob_"


def migrate_lake(root: str, progress: Progress | None = None) -> dict[str, Any]:
    """Convert every layout-1 partition under `root`; returns counts of partitions and shards rewritten.

    Raises LakeStateError, after migrating everything else, naming each predictions shard whose probability columns
    do not match the labels its manifest lists (those partitions stay in layout 1, and the lake stays refused)."""
    lake = Lake(root)
    legacy = lake.legacy_partitions()
    rewritten, refused = 0, []
    for done, manifest_url in enumerate(legacy):
        try:
            rewritten += _migrate_partition(lake, manifest_url)
        except LakeStateError as exc:
            refused.append(str(exc))
        if progress:
            progress(f"migrated {manifest_url.rsplit('/', 3)[-3]}", (done + 1) / len(legacy))
    staging = storage.join(root, "predictions", ".staging")
    had_staging = storage.exists(staging)
    storage.remove([staging])
    leftovers = _sweep_leftovers(lake)
    if not refused:
        lake.require_current_layout()  # no format-1 manifest is left: marks the lake current
    if refused:
        raise LakeStateError(f"{len(legacy) - len(refused)} partition(s) migrated; {len(refused)} could not be: "
                             + "; ".join(refused))
    return {"partitions_migrated": len(legacy), "shards_rewritten": rewritten,
            "uncommitted_staging_removed": had_staging, "leftovers_fixed": leftovers}


def _migrate_partition(lake: Lake, manifest_url: str) -> int:
    """One layout-1 partition: its shards, then its manifest in the new place, then the old manifest deleted."""
    area, partition = manifest_url.rsplit("/", 3)[-3:-1]
    run_date = partition.removeprefix("run_date=")
    manifest = storage.read_json(manifest_url)
    rewritten = 0
    if manifest is not None:
        rewritten = sum(_migrate_shard(url, area, manifest) for url in lake.shard_urls(area, run_date, manifest))
        if area == "predictions":
            manifest["schema_version"] = SCHEMA_VERSION
        storage.write_json_atomic(lake.manifest_url(area, run_date), manifest)
    storage.remove([manifest_url])
    return rewritten


def _sweep_leftovers(lake: Lake) -> int:
    """Fix the files in partition folders that no manifest lists; returns how many were changed or deleted."""
    fixed = 0
    for area in AREAS:
        listed = {url for date in lake.run_dates(area) for url in
                  lake.shard_urls(area, date, lake.read_manifest(area, date) or {"outputs": []})}
        for url in storage.glob(storage.join(lake.root, area, "run_date=*", "*")):
            if url in listed or url.endswith(".arrow"):
                continue
            name = url.rsplit("/", 1)[-1]
            if ".tmp-" in name:
                storage.remove([url])
                fixed += 1
            elif name.endswith(".parquet"):
                try:
                    fixed += _migrate_shard(url, area, None)
                except LakeStateError:  # schema-1 predictions without a manifest: labels unknown
                    storage.remove([url])
                    fixed += 1
    return fixed


def _migrate_shard(url: str, area: str, manifest: dict[str, Any] | None) -> bool:
    """Rewrite one shard in the current layout; False when it already is (or is an Arrow token shard)."""
    if url.endswith(".arrow"):
        return False  # token shards never had a run_date column
    table = storage.read_parquet(url)
    legacy_columns = [c for c in table.column_names if c.startswith(LEGACY_PROBABILITY_PREFIX)]
    if "run_date" not in table.column_names and not (area == "predictions" and legacy_columns):
        return False
    metadata = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    if area == "predictions":
        labels = [str(label) for label in ((manifest or {}).get("counts") or {}).get("labels") or []]
        if len(labels) != len(legacy_columns):
            folder = url.rsplit("/", 1)[0]
            raise LakeStateError(
                f"{url}: {len(legacy_columns)} probability columns ({', '.join(legacy_columns)}) but its manifest "
                f"lists {len(labels)} labels ({labels}); delete {folder} (`bert-pipeline score` for that run_date "
                "rebuilds it) and run migrate-lake again")
        # the scorer wrote one column per label in the model's label order, the order the manifest lists
        table = from_probability_columns(table, labels, legacy_columns)
        metadata |= {SCHEMA_VERSION_KEY: SCHEMA_VERSION}
    else:
        table = table.drop_columns(["run_date"])
    storage.write_parquet_atomic(url, table.replace_schema_metadata(None), metadata)
    return True

