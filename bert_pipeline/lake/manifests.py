"""The lake layout and the stage contract.

    <root>/<area>/run_date=YYYY-MM-DD/part-00000.parquet ...   (hive partitions: nothing but data files)
    <root>/_manifests/<area>/run_date=YYYY-MM-DD.json          (the commit record of that partition)
    <root>/_staging/<area>/...                                  (a replacement being built; never read)
    <root>/_tmp/<area>/run_date=YYYY-MM-DD/*.tmp-*               (a shard being written, renamed into place whole)
    <root>/models/<model_version>/ (HF folder + metrics.json + _manifest.json)
    <root>/models/_champion.json

A partition is committed by its manifest, written last. A stage first removes an old manifest that does not match,
writes its shards (each atomically), deletes shards the new manifest does not list, and then writes the manifest. So
a reader that trusts manifests never sees a half-written partition, and a stage whose manifest matches its
fingerprint (inputs + config + code version) is skipped: that is what makes retries and reruns safe.

The partition folders hold only data files, and `run_date` lives only in the folder name (hive style), so every
common reader reads a whole table: polars and duckdb on a glob or the folder, pyarrow.dataset, pandas.read_parquet.
A `run_date` column inside the files as well made pyarrow and pandas refuse ("string vs dictionary"), and a
manifest beside the files made polars refuse a folder ("paths with different file extensions"); lakes written that
way (format 1) are refused with the command that migrates them (bert_pipeline/lake/migrate.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping

import pyarrow as pa
import pyarrow.dataset as ds

from bert_pipeline import __version__
from bert_pipeline.lake import storage
from bert_pipeline.errors import LakeStateError
from bert_pipeline.lake.entities import ENTITIES_SCHEMA
from bert_pipeline.lake.predictions import PREDICTIONS_SCHEMA

MANIFEST = "_manifest.json"  # a model folder's commit record
MANIFESTS = "_manifests"  # <root>/_manifests/<area>/run_date=YYYY-MM-DD.json: partitions' commit records
STAGING = "_staging"
LAYOUT, LAYOUT_MARKER = 2, "_layout.json"  # <root>/_manifests/_layout.json: this lake is in the current layout
AREAS = ("raw", "curated", "rejects", "dedup_index", "tokens", "predictions", "entities")
SHARD_FORMAT = {"tokens": "ipc"}  # every other area holds parquet
PRODUCED_BY = {"raw": "ingest", "curated": "curate", "rejects": "curate", "dedup_index": "curate", "tokens": "tokenize",
               "predictions": "score", "entities": "score"}
# run_date as every reader that parses the folder name sees it (polars and duckdb infer a date from it)
PARTITIONING = ds.partitioning(pa.schema([("run_date", pa.date32())]), flavor="hive")
FIXED_SCHEMAS = {"predictions": PREDICTIONS_SCHEMA, "entities": ENTITIES_SCHEMA}  # the tables whose schema does not depend on the data
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=-]{0,127}$")


def shard_name(index: int, extension: str = "parquet") -> str:
    return f"part-{index:05d}.{extension}"


def fingerprint(*parts: Any) -> str:
    """A stable hash of JSON-able parts: the identity of a stage's work."""
    blob = json.dumps([__version__, *parts], sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def safe_name(value: str, what: str) -> str:
    """Names that become part of a lake path may not climb out of it (no '/', no '..')."""
    if not _SAFE_NAME.match(value) or ".." in value:
        raise LakeStateError(f"{what} {value!r} is not a safe path component")
    return value


# The area only one task writes: a committed partition of it at the top of data_root is that task's lake
OWN_AREA = {"ner": "entities"}


def lake_root(data_root: str, task: str, folder: str) -> str:
    """The root of one task's lake in `data_root`: `data_root/folder` (`folder` "" = the top), except where the top
    of data_root already holds this task's nights (an entity lake written before one data_root could hold both
    tasks), which is read and written where it is: nothing is moved. The top is this task's when its first raw
    manifest that names a task names this one, or, with none (a re-ingest of a one-night lake un-commits its only
    raw manifest), when it holds committed partitions of the area only this task writes (OWN_AREA)."""
    if not folder:
        return data_root
    top = Lake(data_root)
    for date in top.run_dates("raw"):
        named = (top.read_manifest("raw", date) or {}).get("task")
        if named:
            return data_root if named == task else storage.join(data_root, folder)
    own = OWN_AREA.get(task)
    return data_root if own and top.run_dates(own) else storage.join(data_root, folder)


def root_of(cfg: Any) -> str:
    """The root of cfg's task's lake (a PipelineConfig: data_root, task, task_folder); see lake_root."""
    return lake_root(cfg.data_root, cfg.task, cfg.task_folder)


@dataclass(frozen=True)
class Lake:
    root: str

    @classmethod
    def of(cls, cfg: Any) -> "Lake":
        """The lake of cfg's task inside cfg.data_root (root_of)."""
        return cls(root_of(cfg))

    def partition(self, area: str, run_date: str) -> str:
        if area not in AREAS:
            raise LakeStateError(f"unknown lake area {area!r}; areas are {', '.join(AREAS)}")
        return storage.join(self.root, area, f"run_date={safe_name(run_date, 'run_date')}")

    def manifest_url(self, area: str, run_date: str) -> str:
        self.partition(area, run_date)  # validates both
        return storage.join(self.root, MANIFESTS, area, f"run_date={run_date}.json")

    def staging(self, area: str, name: str) -> str:
        """A folder where a replacement partition is built, outside the area so no folder reader sees it."""
        return storage.join(self.root, STAGING, area, safe_name(name, "staging folder"))

    def read_manifest(self, area: str, run_date: str) -> dict[str, Any] | None:
        return storage.read_json(self.manifest_url(area, run_date))

    def run_dates(self, area: str) -> list[str]:
        """Sorted run_dates that have a committed partition in area."""
        pattern = storage.join(self.root, MANIFESTS, area, "run_date=*.json")
        dates = [url.rsplit("/", 1)[-1].removeprefix("run_date=").removesuffix(".json") for url in storage.glob(pattern)]
        return sorted(d for d in dates if _SAFE_NAME.match(d))

    def writer(self, area: str, run_date: str, stage_fp: str, folder: str | None = None,
               outputs: list[str] | None = None) -> "PartitionWriter":
        """A writer of the (area, run_date) partition; `folder` when the shards are built elsewhere (staging)."""
        return PartitionWriter(folder or self.partition(area, run_date), self.manifest_url(area, run_date), stage_fp,
                               list(outputs or []))

    def dataset(self, area: str, run_dates: Iterable[str] | Mapping[str, dict[str, Any]] | None = None) -> ds.Dataset:
        """The committed partitions of `area` (every run_date, or those given) as one pyarrow dataset.

        Only the files the manifests list are read, so a partition being written or replaced is never half-seen;
        pass {run_date: manifest} to read exactly the commits a plan already holds. `run_date` is a date32 column
        taken from the hive folder names. Parquet areas, and the Arrow IPC token shards. Raises LakeStateError for a
        run_date without a committed partition.
        """
        fs, base = storage.filesystem(storage.join(self.root, area))
        if not isinstance(run_dates, Mapping):
            dates = self.run_dates(area) if run_dates is None else list(run_dates)
            run_dates = {date: self.require_manifest(area, date, PRODUCED_BY[area]) for date in dates}
        paths = [storage.filesystem(url)[1] for date, manifest in run_dates.items()
                 for url in self.shard_urls(area, date, manifest)]
        schema = FIXED_SCHEMAS.get(area)  # a night scored empty has no file to take the schema from
        if schema is not None:
            schema = schema.append(PARTITIONING.schema.field("run_date"))
            if not paths:
                return ds.dataset(schema.empty_table())
        return ds.dataset(paths, schema=schema, filesystem=fs, format=SHARD_FORMAT.get(area, "parquet"),
                          partitioning=PARTITIONING, partition_base_dir=base)

    def legacy_partitions(self) -> list[str]:
        """Manifests of the format-1 layout (`<area>/run_date=.../_manifest.json`): partitions to migrate."""
        return [url for area in AREAS for url in storage.glob(storage.join(self.root, area, "run_date=*", MANIFEST))]

    @property
    def layout_marker(self) -> str:
        return storage.join(self.root, MANIFESTS, LAYOUT_MARKER)

    def require_current_layout(self) -> None:
        """Refuse a lake written in the format-1 layout before any stage reads or writes it (LakeStateError).

        A lake marked current (`_manifests/_layout.json`) costs one read; an unmarked one is searched for format-1
        manifests once and marked when it has none (a new lake), so the listing is not repeated every night."""
        if storage.exists(self.layout_marker):
            return
        legacy = self.legacy_partitions()
        if not legacy:
            storage.write_json_atomic(self.layout_marker, {"layout": LAYOUT})
            return
        raise LakeStateError(
            f"{self.root} holds {len(legacy)} partition(s) in the layout of bert-pipeline before 0.2 (e.g. "
            f"{legacy[0]}): run `bert-pipeline migrate-lake --set data_root={self.root}` once; it moves the "
            "manifests to _manifests/, drops the run_date column the folder names already carry, and rewrites "
            "predictions to the stable schema. Nothing else changes.")

    def require_manifest(self, area: str, run_date: str, produced_by: str) -> dict[str, Any]:
        manifest = self.read_manifest(area, run_date)
        if manifest is None:
            raise LakeStateError(
                f"no committed {area} partition for run_date={run_date} under {self.root}: "
                f"run the {produced_by} stage first (bert-pipeline {produced_by} ...)"
            )
        return manifest

    def shard_urls(self, area: str, run_date: str, manifest: dict[str, Any]) -> list[str]:
        folder = self.partition(area, run_date)
        return [storage.join(folder, name) for name in manifest["outputs"]]

    @property
    def models(self) -> str:
        return storage.join(self.root, "models")

    def model_url(self, model_version: str) -> str:
        return storage.join(self.models, safe_name(model_version, "model_version"))

    @property
    def champion_url(self) -> str:
        return storage.join(self.models, "_champion.json")


def stage_outcome(summary: Mapping[str, Any]) -> str:
    """A stage summary's outcome as logs print it: 'done', or 'skipped (<why>)' with the reason the stage gave (train:
    'training set unchanged since champion ...', 'no labelled training rows'), else that the partition was already
    committed with this fingerprint."""
    if not summary.get("skipped"):
        return "done"
    return f"skipped ({summary.get('reason') or 'already committed'})"


SHARD_FINGERPRINT = "bert_pipeline.fingerprint"  # file-metadata key: which stage run wrote a shard


def shard_matches(url: str, stage_fp: str) -> bool:
    """True when the shard at url (parquet or Arrow IPC) exists whole and was written by this stage fingerprint.

    Reads only the file's footer/schema; a torn or missing file is simply not done.
    """
    try:
        return storage.file_metadata(url).get(SHARD_FINGERPRINT) == stage_fp
    except (FileNotFoundError, pa.ArrowInvalid, OSError):
        return False


def manifest_matches(manifest: dict[str, Any] | None, expected_fingerprint: str, folder: str) -> bool:
    """True when a committed manifest has this fingerprint and every file it lists is still there."""
    if not manifest or manifest.get("fingerprint") != expected_fingerprint:
        return False
    return all(storage.exists(storage.join(folder, name)) for name in manifest.get("outputs", []))


@dataclass
class PartitionWriter:
    """Writes one partition under the contract: uncommit, write shards, drop stale shards, commit (Lake.writer)."""

    folder: str
    manifest_url: str
    fingerprint: str
    outputs: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def begin(self) -> "PartitionWriter":
        storage.remove([self.manifest_url])
        return self

    def url(self, name: str) -> str:
        return storage.join(self.folder, name)

    def add(self, name: str) -> str:
        self.outputs.append(name)
        return self.url(name)

    def clear_abandoned_temporaries(self) -> None:
        """Delete the temporaries of this partition's shards that a writer killed mid-write left in the staging
        folder outside the partition (storage.temp_folder); called at commit, when the partition's lock is held and
        every shard is written, so none is in use."""
        temps = storage.temp_folder(self.folder)
        if storage.is_local(self.folder) and temps != self.folder:
            storage.remove(storage.list_files(temps, "*.tmp-*"))
            storage.remove_empty_folders(temps)

    def commit(self, **fields: Any) -> dict[str, Any]:
        listed = set(self.outputs)
        # part-*.tmp-* in the folder itself: left by earlier versions, which staged temporaries beside the shards
        stale = [u for u in storage.list_files(self.folder, "part-*") if u.rsplit("/", 1)[-1] not in listed]
        storage.remove(stale)
        self.clear_abandoned_temporaries()
        manifest = {
            "fingerprint": self.fingerprint,
            "code_version": __version__,
            "outputs": self.outputs,
            "committed_at": utc_now(),
            "seconds": round(time.monotonic() - self.started, 3),
            **fields,
        }
        storage.write_json_atomic(self.manifest_url, manifest)
        return manifest


# A lock older than this is taken over even when its owner cannot be checked (another host): a stage that has not
# finished in a day has died, and a nightly pipeline must not stay blocked on it forever.
LOCK_STALE_SECONDS = 24 * 3600


def lock_url(root: str, stage: str, run_date: str) -> str:
    return storage.join(root, "_locks", f"{safe_name(stage, 'stage')}-run_date={safe_name(run_date, 'run_date')}.lock")


@contextlib.contextmanager
def stage_lock(root: str, stage: str, run_date: str) -> Iterator[dict[str, Any]]:
    """One writer per (stage, run_date): a second run started while the first holds the lock is refused with a
    message naming the holder, before it writes anything.

    Locally the lock file is created with O_EXCL, and a lock whose process is gone (same host, kill -9) is taken
    over. Object stores have no create-if-absent here: the lock is written, read back and compared, which narrows but
    does not close the race; the Prefect deployment concurrency limits are the guarantee there.
    """
    url = lock_url(root, stage, run_date)
    owner = {"token": uuid.uuid4().hex, "pid": os.getpid(), "host": socket.gethostname(), "since": utc_now(),
             "since_epoch": time.time(), "stage": stage, "run_date": run_date}
    _acquire(url, owner)
    try:
        yield owner
    finally:
        holder = storage.read_json(url)
        if holder and holder.get("token") == owner["token"]:
            storage.remove([url])


def _acquire(url: str, owner: dict[str, Any]) -> None:
    for _ in range(2):  # second try after removing a stale lock
        holder = storage.read_json(url)
        if holder is not None:
            if not _is_stale(holder):
                raise LakeStateError(
                    f"{owner['stage']} for run_date={owner['run_date']} is already running (pid {holder.get('pid')} on "
                    f"{holder.get('host')} since {holder.get('since')}); this run stops without writing. If that "
                    f"process is gone, delete {url}")
            storage.remove([url])
        if _create_exclusive(url, owner) and (storage.read_json(url) or {}).get("token") == owner["token"]:
            return
    raise LakeStateError(f"could not take the lock {url}: another run took it at the same moment")


def _is_stale(holder: dict[str, Any]) -> bool:
    if time.time() - float(holder.get("since_epoch", 0)) > LOCK_STALE_SECONDS:
        return True
    if holder.get("host") != socket.gethostname():
        return False  # cannot check a process on another host
    try:
        os.kill(int(holder.get("pid", 0)), 0)
    except ProcessLookupError:
        return True  # killed (kill -9, OOM): its partial work is redone by the manifests
    except (PermissionError, ValueError, OverflowError):
        return False
    return False


def _create_exclusive(url: str, owner: dict[str, Any]) -> bool:
    data = json.dumps(owner).encode()
    if storage.is_local(url):
        path = storage.filesystem(url)[1]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return True
    if storage.exists(url):
        return False
    storage.write_bytes_atomic(url, data)
    return True
