"""The lake layout and the stage contract.

    <root>/<area>/run_date=YYYY-MM-DD/part-00000.parquet ... _manifest.json
    <root>/models/<model_version>/ (HF folder + metrics.json + _manifest.json)
    <root>/models/_champion.json

A partition is committed by its `_manifest.json`, written last. A stage first removes an old manifest that does not
match, writes its shards (each atomically), deletes shards the new manifest does not list, and then writes the
manifest. So a reader that trusts manifests never sees a half-written partition, and a stage whose manifest matches
its fingerprint (inputs + config + code version) is skipped: that is what makes retries and reruns safe.
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
from typing import Any, Iterator

import pyarrow as pa

from bert_pipeline import __version__, storage
from bert_pipeline.errors import LakeStateError

MANIFEST = "_manifest.json"
AREAS = ("raw", "curated", "rejects", "dedup_index", "tokens", "predictions")
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


@dataclass(frozen=True)
class Lake:
    root: str

    def partition(self, area: str, run_date: str) -> str:
        if area not in AREAS:
            raise LakeStateError(f"unknown lake area {area!r}; areas are {', '.join(AREAS)}")
        return storage.join(self.root, area, f"run_date={safe_name(run_date, 'run_date')}")

    def manifest_url(self, area: str, run_date: str) -> str:
        return storage.join(self.partition(area, run_date), MANIFEST)

    def read_manifest(self, area: str, run_date: str) -> dict[str, Any] | None:
        return storage.read_json(self.manifest_url(area, run_date))

    def run_dates(self, area: str) -> list[str]:
        """Sorted run_dates that have a committed partition in area."""
        pattern = storage.join(self.root, area, "run_date=*", MANIFEST)
        dates = [url.rsplit("/", 2)[-2].removeprefix("run_date=") for url in storage.glob(pattern)]
        return sorted(d for d in dates if _SAFE_NAME.match(d))

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
    """Writes one partition under the contract: uncommit, write shards, drop stale shards, commit."""

    folder: str
    fingerprint: str
    outputs: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def begin(self) -> "PartitionWriter":
        storage.remove([storage.join(self.folder, MANIFEST)])
        return self

    def url(self, name: str) -> str:
        return storage.join(self.folder, name)

    def add(self, name: str) -> str:
        self.outputs.append(name)
        return self.url(name)

    def commit(self, **fields: Any) -> dict[str, Any]:
        listed = set(self.outputs)
        stale = [u for u in storage.list_files(self.folder, "part-*") if u.rsplit("/", 1)[-1] not in listed]
        storage.remove(stale)
        manifest = {
            "fingerprint": self.fingerprint,
            "code_version": __version__,
            "outputs": self.outputs,
            "committed_at": utc_now(),
            "seconds": round(time.monotonic() - self.started, 3),
            **fields,
        }
        storage.write_json_atomic(storage.join(self.folder, MANIFEST), manifest)
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
