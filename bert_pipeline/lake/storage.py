"""The one storage seam: local folders, file://, s3:// and memory:// through fsspec (datatrove's io.py idea).

Every location is a URL string. Writes that a reader can see are atomic: a local file is written under a temporary
name in the same folder and renamed over the target; an object store PUT is atomic by itself.
S3 endpoint, credentials and options come from the environment (AWS_* variables, AWS_ENDPOINT_URL, or fsspec's
FSSPEC_S3_* variables); they are never part of a URL or a manifest.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import json
import os
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

PACKAGE_SCHEME = "pkg://"


def resolve_package_url(url: str) -> str:
    """`pkg://<package>/<relative path>` -> the file inside an installed package, found without importing it."""
    if not url.startswith(PACKAGE_SCHEME):
        return url
    package, _, relative = url[len(PACKAGE_SCHEME):].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{url}: package {package!r} is not installed (pip install it, or use a plain path)")
    return str(Path(list(spec.submodule_search_locations)[0]) / relative)


def filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path inside it) for any URL or local path."""
    fs, path = fsspec.core.url_to_fs(resolve_package_url(url))
    return fs, path


def set_options(url: str, options: dict[str, Any]) -> None:
    """Default fsspec options (keys, endpoint, client_kwargs) for url's protocol in this process, e.g. from a
    Prefect Secret block. They live in fsspec's config, never in a URL, manifest or log line."""
    protocol = fsspec.core.split_protocol(url)[0] or "file"
    fsspec.config.conf.setdefault(protocol, {}).update(options)


OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "abfs", "az", "adl"}


def is_object_store(fs: fsspec.AbstractFileSystem) -> bool:
    """Object stores have no folders to create; their buckets are the user's to create."""
    protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
    return bool(protocols & OBJECT_STORES)


def is_local(url: str) -> bool:
    return isinstance(filesystem(url)[0], LocalFileSystem)


def join(root: str, *parts: str) -> str:
    """Join URL parts with '/', keeping the scheme and never doubling separators."""
    out = root.rstrip("/")
    for part in parts:
        out += "/" + part.strip("/")
    return out


def to_url(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """The inverse of `filesystem`: local paths stay plain paths, others get their protocol back."""
    return path if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(path)


def _names_the_url(*errors: type[OSError]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Permanent storage errors (refused credentials; for writes, a missing bucket) say which location they were
    about, so the user knows what to fix and nobody retries blindly. Reads keep FileNotFoundError as it is: there it
    means "not written yet"."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapped(url: str, *args: Any, **kwargs: Any) -> Any:
            try:
                return fn(url, *args, **kwargs)
            except errors as exc:
                if str(url) in str(exc):
                    raise
                raise type(exc)(f"cannot use {url}: {exc} (check that the bucket exists and that these credentials "
                                "may use it)") from exc

        return wrapped

    return decorate


@_names_the_url(PermissionError)
def exists(url: str) -> bool:
    fs, path = filesystem(url)
    return fs.exists(path)


@_names_the_url(PermissionError)
def read_bytes(url: str) -> bytes:
    fs, path = filesystem(url)
    with fs.open(path, "rb") as handle:
        return handle.read()


def read_text(url: str) -> str:
    return read_bytes(url).decode("utf-8")


TEMP_FOLDER = "_tmp"


def temp_folder(folder: str) -> str:
    """Where a local atomic write into `folder` stages its bytes before the rename: `folder` itself, except for a
    hive partition folder (`<dataset>/<key>=<value>/...`), whose temporaries go to
    `<dataset's parent>/_tmp/<dataset>/<key>=<value>/...`.

    Folder readers list a hive dataset whole: polars refuses a folder holding any file that is not parquet, hidden or
    not, so a temporary left by a writer killed mid-write (kill -9 skips every cleanup) must not sit in it. The
    rename stays atomic only on one filesystem: write_bytes_atomic stages beside the file when the table folder is
    a link to another disk."""
    parts = folder.rstrip("/").split("/")
    hive = 0
    while hive < len(parts) - 1 and "=" in parts[len(parts) - 1 - hive]:
        hive += 1
    if not hive:
        return folder
    dataset = len(parts) - 1 - hive
    return "/".join(parts[:dataset] + [TEMP_FOLDER] + parts[dataset:])


@_names_the_url(PermissionError, FileNotFoundError)
def write_bytes_atomic(url: str, data: bytes) -> None:
    """Write data to url whole or not at all: local files through a temporary (see temp_folder) renamed into place,
    object stores in one PUT."""
    fs, path = filesystem(url)
    parent = fs._parent(path)
    if isinstance(fs, LocalFileSystem):
        os.makedirs(parent, exist_ok=True)
        staging = temp_folder(parent)
        if staging != parent:
            os.makedirs(staging, exist_ok=True)
            if os.stat(staging).st_dev != os.stat(parent).st_dev:  # a table folder linked to another disk: a rename
                staging = parent  # across disks is not atomic (EXDEV), so stage beside the file as before
        tmp = os.path.join(staging, f"{os.path.basename(path)}.tmp-{uuid.uuid4().hex}")
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    else:
        if parent and not is_object_store(fs):  # s3fs's makedirs would create a misspelt bucket: never do that
            fs.makedirs(parent, exist_ok=True)
        fs.pipe_file(path, data)


def write_json_atomic(url: str, obj: Any) -> None:
    write_bytes_atomic(url, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def read_json(url: str) -> Any | None:
    """The parsed JSON at url, or None when there is no such file."""
    try:
        return json.loads(read_bytes(url))
    except FileNotFoundError:
        return None


@_names_the_url(PermissionError)
def list_files(folder: str, pattern: str = "*") -> list[str]:
    """Sorted URLs of files directly in folder matching pattern; [] when the folder does not exist."""
    fs, path = filesystem(folder)
    return sorted(to_url(fs, p) for p in fs.glob(f"{path.rstrip('/')}/{pattern}") if not fs.isdir(p))


@_names_the_url(PermissionError, FileNotFoundError)  # a glob over a missing folder is [], a missing bucket an error
def glob(pattern: str) -> list[str]:
    fs, path = filesystem(pattern)
    if not fsspec.core.has_magic(path):  # type: ignore[attr-defined]
        return [to_url(fs, path)] if fs.exists(path) else []
    return sorted(to_url(fs, p) for p in fs.glob(path) if not fs.isdir(p))


def remove(urls: Iterable[str]) -> None:
    for url in urls:
        fs, path = filesystem(url)
        if fs.exists(path):
            fs.rm(path, recursive=True)


def remove_empty_folders(url: str) -> None:
    """Remove url and the folders under it when they hold no files (object stores have no empty folders)."""
    fs, path = filesystem(url)
    if not isinstance(fs, LocalFileSystem) or not os.path.isdir(path):
        return
    for root, _dirs, _files in os.walk(path, topdown=False):
        try:
            os.rmdir(root)
        except OSError:  # not empty
            pass


def replace_folder(source: str, target: str) -> None:
    """Put the folder `source` in place of `target`.

    Local filesystems: two renames (target to a trash folder beside source, source to target), so a reader sees
    the old folder or the new one, never a mix (for an instant, neither). Object stores have no rename: files are
    copied over one by one and extra ones deleted; readers there should go through the manifest.
    """
    fs, src = filesystem(source)
    _, dst = filesystem(target)
    if isinstance(fs, LocalFileSystem):
        trash = f"{src.rstrip('/')}.trash-{uuid.uuid4().hex}"
        if os.path.exists(dst):
            os.rename(dst, trash)
        os.rename(src, dst)
        import shutil

        shutil.rmtree(trash, ignore_errors=True)
        return
    names = {p[len(src.rstrip("/")) + 1:] for p in fs.find(src)}
    for name in sorted(names):
        write_bytes_atomic(join(target, name), read_bytes(join(source, name)))
    remove([join(target, p[len(dst.rstrip("/")) + 1:]) for p in fs.find(dst)
            if p[len(dst.rstrip("/")) + 1:] not in names])
    remove([source])


def file_identity(url: str) -> dict[str, Any]:
    """What tells whether an input changed between runs: size plus mtime/ETag where the filesystem has one."""
    fs, path = filesystem(url)
    info = fs.info(path)
    changed = info.get("mtime") or info.get("LastModified") or info.get("ETag") or info.get("created")
    return {"url": url, "size": int(info.get("size") or 0), "version": str(changed)}


def write_parquet_atomic(url: str, table: pa.Table, metadata: dict[str, str] | None = None) -> None:
    if metadata:
        merged = dict(table.schema.metadata or {})
        merged.update({k.encode(): v.encode() for k, v in metadata.items()})
        table = table.replace_schema_metadata(merged)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd", row_group_size=64 * 1024)
    write_bytes_atomic(url, buffer.getvalue())


def read_parquet(url: str, columns: list[str] | None = None) -> pa.Table:
    fs, path = filesystem(url)
    with fs.open(path, "rb") as handle:
        return pq.read_table(handle, columns=columns)


def parquet_rows(url: str) -> int:
    fs, path = filesystem(url)
    with fs.open(path, "rb") as handle:
        return pq.ParquetFile(handle).metadata.num_rows


def parquet_metadata(url: str) -> dict[str, str]:
    fs, path = filesystem(url)
    with fs.open(path, "rb") as handle:
        raw = pq.read_schema(handle).metadata or {}
    return {k.decode(): v.decode() for k, v in raw.items()}


def file_metadata(url: str) -> dict[str, str]:
    """Schema metadata of a parquet or Arrow IPC file, read from its footer only."""
    if not url.endswith(".arrow"):
        return parquet_metadata(url)
    fs, path = filesystem(url)
    with fs.open(path, "rb") as handle:
        raw = pa.ipc.open_file(handle).schema.metadata or {}
    return {k.decode(): v.decode() for k, v in raw.items()}


def cached_folder(url: str, cache_dir: str, identify: str = "*") -> str:
    """A local path for a folder: itself when local; a remote one is copied once (download_folder) into
    cache_dir/<key>, the key made of the URL and the size and ETag/mtime of its files matching `identify`, so that
    a folder replaced at the same URL is copied again."""
    if is_local(url):
        return filesystem(url)[1]
    identity = [file_identity(u) for u in list_files(url, identify)]
    key = hashlib.sha256(json.dumps([url, identity], sort_keys=True, default=str).encode()).hexdigest()[:16]
    return download_folder(url, os.path.join(cache_dir, key))


def download_folder(url: str, local_dir: str) -> str:
    """Copy a (small) remote folder such as a model to local_dir; local folders are returned as they are.

    The copy lands in a temporary folder renamed into place when complete, so an existing local_dir is always whole
    and is reused (callers key local_dir by the URL of an immutable folder).
    """
    fs, path = filesystem(url)
    if isinstance(fs, LocalFileSystem):
        return path
    if os.path.isdir(local_dir):
        return local_dir
    tmp = f"{local_dir}.tmp-{uuid.uuid4().hex}"
    os.makedirs(tmp)
    try:
        for remote in fs.find(path):
            relative = remote[len(path.rstrip("/")) + 1:]
            os.makedirs(os.path.dirname(os.path.join(tmp, relative)) or tmp, exist_ok=True)
            fs.get_file(remote, os.path.join(tmp, relative))
        os.replace(tmp, local_dir)
    except OSError:
        if os.path.isdir(local_dir):  # another process finished the same copy first
            return local_dir
        raise
    finally:
        if os.path.isdir(tmp):
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return local_dir


def upload_folder(local_dir: str, url: str) -> None:
    """Copy every file of local_dir under url, each file atomically. Temporaries (`*.tmp-*`) that a kill -9 during an
    earlier upload left in the folders it writes are removed first: the caller owns url until it commits it."""
    for root, _dirs, files in os.walk(local_dir):
        relative_dir = os.path.relpath(root, local_dir).replace(os.sep, "/")
        remove(list_files(url if relative_dir == "." else join(url, relative_dir), "*.tmp-*"))
        for name in sorted(files):
            full = os.path.join(root, name)
            relative = os.path.relpath(full, local_dir).replace(os.sep, "/")
            with open(full, "rb") as handle:
                write_bytes_atomic(join(url, relative), handle.read())
