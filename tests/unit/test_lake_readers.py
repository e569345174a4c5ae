"""Every table of a multi-night lake reads whole with polars, duckdb, pyarrow and pandas, and the README's reader
examples run as written; a lake of the old layout is refused, then migrated without losing a row or a value."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from bert_pipeline.config import build_config
from bert_pipeline.stages.curate import run_curate
from bert_pipeline.errors import LakeStateError
from bert_pipeline.stages.ingest import run_ingest
from bert_pipeline.lake.manifests import Lake
from bert_pipeline.lake.migrate import migrate_lake
from bert_pipeline.modeling.models import preflight
from bert_pipeline.lake.predictions import PREDICTIONS_SCHEMA, SCHEMA_VERSION, SCHEMA_VERSION_KEY
from bert_pipeline.stages.score import run_score
from bert_pipeline.stages.tokenize import run_tokenize
from tests.helpers import build_tiny_model, code_blocks, demo_frame

README = Path(__file__).resolve().parents[2] / "README.md"
NIGHTS = ("2026-05-01", "2026-05-02", "2026-05-03")
PARQUET_TABLES = ("raw", "curated", "rejects", "dedup_index", "predictions")
MESSY = ["這家餐廳很好吃，服務也不錯！（推薦）", "「最高」でした。また来ます！", "The “best” ﬁsh — 10/10", '24" monitor, said "do not buy"']


def night_frame(night: int) -> pl.DataFrame:
    """Night 0: two labels as ints; night 1: three labels as floats with a NaN, messy scripts and quotes; night 2:
    texts of night 0 sent again (duplicates) plus a few new ones."""
    tweets = demo_frame().filter(pl.col("text").str.len_chars() > 40).unique("text", maintain_order=True)
    tweets = tweets.sample(fraction=1.0, shuffle=True, seed=3)
    if night == 0:
        rows = tweets.filter(pl.col("sentiment") != "neutral").head(40)
        return rows.select("text", label=pl.col("sentiment").replace_strict({"negative": 0, "positive": 2},
                                                                            return_dtype=pl.Int64))
    if night == 1:
        rows = tweets.slice(100, 40).select("text", label=pl.col("sentiment").replace_strict(
            {"negative": 0.0, "neutral": 1.0, "positive": 2.0}, return_dtype=pl.Float64))
        extra = pl.DataFrame({"text": MESSY, "label": [float("nan"), 2.0, 2.0, 0.0]})
        return pl.concat([rows, extra])
    again = night_frame(0).head(10)
    return pl.concat([again, tweets.slice(200, 5).select("text", label=pl.lit(1, pl.Int64))])


@pytest.fixture(scope="module")
def lake_root(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """Three nights through ingest, curate, tokenize and score; night 1 on is scored by a model with one more label."""
    root = tmp_path_factory.mktemp("readers")
    texts = demo_frame()["text"].head(500).to_list()
    two = build_tiny_model(root / "model-2", texts, labels=["negative", "positive"])
    three = build_tiny_model(root / "model-3", texts, labels=["negative", "neutral", "positive"])
    for night, run_date in enumerate(NIGHTS):
        source = root / f"night{night}.jsonl"
        night_frame(night).write_ndjson(source)
        cfg = build_config({"data_root": str(root / "lake"), "run_date": run_date,
                            "ingest": {"sources": [str(source)], "label_column": "label", "shard_rows": 20},
                            "curate": {"min_chars": 5}, "tokenize": {"max_length": 32},
                            "train": {"base_model": str(tiny_model)},
                            "score": {"model": str(two if night == 0 else three)}})
        run_ingest(cfg), run_curate(cfg), run_tokenize(cfg), run_score(cfg)
    return root / "lake"


def committed_rows(lake: Lake, table: str) -> int:
    return pl.from_arrow(lake.dataset(table).to_table()).height  # type: ignore[union-attr]


def readers(folder: Path) -> dict[str, tuple[list[str], list[str], list[str]]]:
    """The table at `folder` as each reader reads it: (columns, doc_ids, run_dates as text), row for row."""
    glob = f"{folder}/*/*.parquet"
    frames = {
        "polars glob": pl.read_parquet(glob, hive_partitioning=True),
        "polars folder": pl.scan_parquet(folder).collect(),
        "pyarrow.dataset": pl.from_arrow(ds.dataset(folder, partitioning="hive").to_table()),
        "duckdb": duckdb.sql(f"select * from read_parquet('{glob}', hive_partitioning = true)").pl(),
    }
    seen = {name: (f.columns, f["doc_id"].to_list(), f["run_date"].cast(pl.String).to_list())  # type: ignore[union-attr]
            for name, f in frames.items()}
    pandas = pd.read_parquet(folder)
    seen["pandas"] = (list(pandas.columns), pandas["doc_id"].tolist(), pandas["run_date"].astype(str).tolist())
    return seen


@pytest.mark.parametrize("table", PARQUET_TABLES)
def test_every_reader_reads_every_night_with_every_column(lake_root: Path, table: str) -> None:
    lake = Lake(str(lake_root))
    expected = pl.from_arrow(lake.dataset(table).to_table())
    nights_with_rows = [d for d in NIGHTS if pq.ParquetDataset(lake.partition(table, d)).read().num_rows]
    assert expected["run_date"].cast(pl.String).unique().sort().to_list() == nights_with_rows  # type: ignore[index]
    assert expected["doc_id"].n_unique() == expected.height > 0  # type: ignore[index, union-attr]
    want = sorted(zip(expected["doc_id"].to_list(), expected["run_date"].cast(pl.String).to_list()))  # type: ignore[index]
    for reader, (columns, doc_ids, run_dates) in readers(lake_root / table).items():
        assert set(columns) == set(expected.columns), (reader, set(expected.columns) ^ set(columns))  # type: ignore[union-attr]
        assert sorted(zip(doc_ids, run_dates)) == want, reader  # every row, each under its night


def test_the_lake_folders_hold_only_data_files(lake_root: Path) -> None:
    for table in (*PARQUET_TABLES, "tokens"):
        extensions = {p.suffix for p in (lake_root / table).rglob("*") if p.is_file()}
        assert extensions <= {".parquet", ".arrow"}, (table, extensions)
    for table in PARQUET_TABLES:
        for file in (lake_root / table).rglob("*.parquet"):
            assert "run_date" not in pq.read_schema(file).names, file  # the folder name carries it


def test_predictions_keep_one_schema_when_the_label_set_changes(lake_root: Path) -> None:
    lake = Lake(str(lake_root))
    frame = pl.read_parquet(f"{lake_root}/predictions/*/*.parquet", hive_partitioning=True)
    for file in (lake_root / "predictions").rglob("*.parquet"):
        schema = pq.read_schema(file)
        assert schema.remove_metadata() == PREDICTIONS_SCHEMA, file
        assert schema.metadata[SCHEMA_VERSION_KEY.encode()] == SCHEMA_VERSION.encode()
    assert lake.read_manifest("predictions", NIGHTS[1])["schema_version"] == SCHEMA_VERSION
    night0 = frame.filter(pl.col("run_date") == pl.date(2026, 5, 1))
    night1 = frame.filter(pl.col("run_date") == pl.date(2026, 5, 2))
    assert night0.height == lake.read_manifest("curated", NIGHTS[0])["counts"]["curated_rows"]
    assert night1.height == lake.read_manifest("curated", NIGHTS[1])["counts"]["curated_rows"]
    assert set(night0["probabilities"].map.keys().explode()) == {"negative", "positive"}
    assert set(night1["probabilities"].map.keys().explode()) == {"negative", "neutral", "positive"}
    assert night0.select(pl.col("probabilities").map.get("neutral")).to_series().null_count() == night0.height
    for part in (night0, night1):
        values = part["probabilities"].map.values().to_list()
        np.testing.assert_allclose([sum(v) for v in values], 1.0, atol=1e-5)
        np.testing.assert_allclose(part["confidence"].to_numpy(), [max(v) for v in values], rtol=1e-6)
        best = [keys[int(np.argmax(v))] for keys, v in zip(part["probabilities"].map.keys().to_list(), values)]
        assert part["predicted_label"].to_list() == best


DOCS = Path(__file__).resolve().parents[2] / "docs"
# Every page's python blocks that read the lake as ./lake (its data_root) must run as written; the blocks of the
# tutorials that build a lake of their own (./my-lake, ./lake-multilabel) read models and dates this lake lacks.
READER_PAGES = [README, *sorted(DOCS.rglob("*.md"))]
OTHER_LAKES = ("my-lake", "lake-multilabel", "lake/ner/")  # read by their own tests (test_ner_nights.py ...)


def test_every_reader_example_in_the_readme_and_docs_runs_as_written(lake_root: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(lake_root.parent)  # the examples read ./lake
    lake = Lake(str(lake_root))
    ran = 0
    for page in READER_PAGES:
        for number, (lang, code) in enumerate(code_blocks(page.read_text())):
            if lang != "python" or any(other in code for other in OTHER_LAKES):
                continue
            names: dict = {}
            exec(compile(code, f"{page.name} block {number}", "exec"), names)  # noqa: S102 - the docs' own example
            ran += 1
            if "predictions" in names:  # every night's predictions, whichever reader the block uses
                table = names["predictions"]
                table = table.collect() if isinstance(table, pl.LazyFrame) else table
                assert len(table) == committed_rows(lake, "predictions"), f"{page.name} block {number}"
            if "neutral_db" in names:
                check_the_four_readers(names, lake)
    assert ran >= 12


def check_the_four_readers(names: dict, lake: Lake) -> None:
    """The side-by-side example of read-the-lake.md: each reader's figures agree with the lake's manifests."""
    assert names["predictions"].height == names["neutral"].height == names["neutral_db"].height == committed_rows(
        lake, "predictions")
    p_polars = names["neutral"].sort("doc_id")
    p_duck = names["neutral_db"].sort("doc_id")
    assert p_polars["p_neutral"].null_count() == lake.read_manifest("predictions", NIGHTS[0])["counts"]["rows"]
    assert p_polars["p_neutral"].fill_null(-1).to_list() == pytest.approx(p_duck["p_neutral"].fill_null(-1).to_list())
    assert p_polars.schema["run_date"] == p_duck.schema["run_date"] == pl.Date
    assert names["rejects"].schema.field("run_date").type == pa.date32()
    assert names["tokens"].num_rows == committed_rows(lake, "tokens")
    assert names["curated"].height == committed_rows(lake, "curated")
    assert len(names["raw"]) == committed_rows(lake, "raw")
    curated = names["curated"]
    for text in MESSY[1:]:  # the user's punctuation and quotes, as written (the NaN-labelled one is kept too)
        assert text in curated["text"].to_list()


def test_lake_dataset_reads_only_committed_partitions(lake_root: Path, tmp_path: Path) -> None:
    copy = tmp_path / "lake"
    shutil.copytree(lake_root, copy)
    lake = Lake(str(copy))
    before = committed_rows(lake, "curated")
    (copy / "_manifests" / "curated" / f"run_date={NIGHTS[2]}.json").unlink()  # as while a stage rewrites it
    assert committed_rows(lake, "curated") == before - pl.read_parquet(copy / "curated" / f"run_date={NIGHTS[2]}").height
    with pytest.raises(LakeStateError, match="no committed curated partition for run_date=2026-05-03 .*: run the "
                                             "curate stage first"):
        lake.dataset("curated", [NIGHTS[2]])
    empty = Path(lake.manifest_url("predictions", "2026-05-09"))  # a night of duplicates is scored empty
    empty.write_text(json.dumps({"outputs": [], "counts": {"rows": 0}}))
    nothing = lake.dataset("predictions", ["2026-05-09"]).to_table(columns=["doc_id", "probabilities", "run_date"])
    assert nothing.num_rows == 0 and nothing.schema.field("run_date").type == pa.date32()
    assert lake.dataset("predictions").to_table().num_rows == committed_rows(Lake(str(lake_root)), "predictions")


KILLED_MID_WRITE = """
import os, sys
import pyarrow as pa
from bert_pipeline.lake import storage
os.replace = lambda *args: os._exit(9)  # dies as kill -9 would: after the bytes are written, before the rename
storage.write_parquet_atomic(sys.argv[1], pa.table({"doc_id": ["x"]}))
"""


def test_a_writer_killed_mid_write_leaves_every_folder_readable(lake_root: Path, tmp_path: Path) -> None:
    copy = tmp_path / "lake"
    shutil.copytree(lake_root, copy)
    partition = copy / "curated" / f"run_date={NIGHTS[2]}"
    before = {reader: sorted(ids) for reader, (_, ids, _) in readers(copy / "curated").items()}
    died = subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, str(partition / "part-00000.parquet")],
                          capture_output=True, text=True)
    assert died.returncode == 9, died.stderr
    (temporary,) = copy.rglob("*.tmp-*")
    assert temporary.parent == copy / "_tmp" / "curated" / f"run_date={NIGHTS[2]}"  # outside the table's folder
    # every reader still reads the folder, and sees the committed rows only
    assert {reader: sorted(ids) for reader, (_, ids, _) in readers(copy / "curated").items()} == before
    assert sorted(p.name for p in partition.iterdir()) == ["part-00000.parquet"]

    # the next commit of that partition deletes what the dead writer left (and a temporary an earlier version
    # left in the folder itself)
    (partition / "part-00000.parquet.tmp-0123abcd").write_bytes(b"torn")
    (copy / "_manifests" / "curated" / f"run_date={NIGHTS[2]}.json").unlink()  # as the killed stage had begun
    cfg = build_config({"data_root": str(copy), "run_date": NIGHTS[2],
                        "ingest": {"sources": [str(lake_root.parent / "night2.jsonl")], "label_column": "label",
                                   "shard_rows": 20}, "curate": {"min_chars": 5}})
    run_curate(cfg)
    assert list(copy.rglob("*.tmp-*")) == [] and not (copy / "_tmp" / "curated" / f"run_date={NIGHTS[2]}").exists()
    assert {reader: sorted(ids) for reader, (_, ids, _) in readers(copy / "curated").items()} == before


def cli(*args: str) -> subprocess.CompletedProcess:
    """The installed console script, as a user runs it."""
    return subprocess.run([str(Path(sys.executable).with_name("bert-pipeline")), *args], capture_output=True,
                          text=True, timeout=300)


OLD_LAKE = Path(__file__).resolve().parents[1] / "data" / "lake-0.1"  # written by bert-pipeline 0.1 (commit f0fec70)


def old_rows(table: str) -> pl.DataFrame:
    """The 0.1 fixture's committed rows of a table, read file by file through its old manifests."""
    frames = []
    for manifest in sorted((OLD_LAKE / table).glob("run_date=*/_manifest.json")):
        for name in json.loads(manifest.read_text())["outputs"]:
            frames.append(pl.read_parquet(manifest.parent / name))
    return pl.concat(frames, how="diagonal")


def test_a_lake_written_by_0_1_is_refused_then_migrated_whole(tmp_path: Path) -> None:
    legacy = tmp_path / "old"
    shutil.copytree(OLD_LAKE, legacy)
    with pytest.raises(pa.ArrowTypeError, match="run_date"):
        pd.read_parquet(legacy / "raw")  # what analysts saw
    cfg = build_config({"data_root": str(legacy), "run_date": "2026-05-04"})
    with pytest.raises(LakeStateError, match="bert-pipeline migrate-lake"):
        preflight(cfg, ["ingest"])
    refused = cli("ingest", "--set", f"data_root={legacy}", "--set", "ingest.sources=[x.csv]")
    assert refused.returncode == 2 and "migrate-lake" in refused.stderr, refused.stderr

    done = cli("migrate-lake", "--set", f"data_root={legacy}")
    assert done.returncode == 0 and "12 partition(s) migrated" in done.stdout, done.stdout + done.stderr
    preflight(cfg, ["ingest"])  # accepted now
    assert json.loads((legacy / "_manifests" / "_layout.json").read_text()) == {"layout": 2}
    assert migrate_lake(str(legacy))["partitions_migrated"] == 0  # a second run does nothing
    assert not (legacy / "predictions" / ".staging").exists() and not list(legacy.rglob("*.tmp-*"))

    lake = Lake(str(legacy))
    for table in PARQUET_TABLES:
        for reader, (columns, doc_ids, _) in readers(legacy / table).items():
            assert sorted(doc_ids) == sorted(old_rows(table)["doc_id"].to_list()), (table, reader)
        want = old_rows(table).drop("run_date", *[c for c in old_rows(table).columns if c.startswith("prob_")])
        got = pl.from_arrow(lake.dataset(table).to_table())
        assert sorted(zip(got["doc_id"], got["run_date"].cast(pl.String))) == sorted(
            zip(old_rows(table)["doc_id"], old_rows(table)["run_date"]))  # each row under its night
        same = got.select(want.columns).sort("doc_id").equals(want.sort("doc_id"))
        assert same, table  # every row and every value of the other columns kept
    old = old_rows("predictions").sort("doc_id")
    new = pl.from_arrow(lake.dataset("predictions").to_table()).sort("doc_id")
    columns = {"Negative": "prob_negative", "neutral (mixed)": "prob_neutral_mixed", "Positive": "prob_positive"}
    for label, column in columns.items():  # the probabilities moved into the map under the model's own label names
        assert new.select(pl.col("probabilities").map.get(label)).to_series().to_list() == old[column].to_list()
    assert new["predicted_labels"].to_list() == [[label] for label in old["predicted_label"]]
    assert set(new.filter(pl.col("run_date") == pl.date(2026, 4, 1))["probabilities"].map.keys().explode()) == {
        "Negative", "Positive"}


@pytest.mark.parametrize("rerun_with", ["model-2", "model-3"])
def test_a_replacement_killed_in_its_swap_is_repaired_not_trusted(lake_root: Path, tmp_path: Path, rerun_with: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Rescoring night 2 (scored by model-3) with model-2 dies right after swapping its folder in. Rerun with model-2:
    only the commit is left (nothing rescored). Rerun with model-3, as the next night would: the old manifest must
    not vouch for model-2's rows, so everything is rescored rather than skipped."""
    from bert_pipeline.lake import storage

    shutil.copytree(lake_root, tmp_path / "lake")
    base = {"data_root": str(tmp_path / "lake"), "run_date": NIGHTS[1]}
    real_swap = storage.replace_folder

    def swap_then_die(source: str, target: str) -> None:
        real_swap(source, target)
        raise OSError("killed between the swap and the manifest")

    monkeypatch.setattr(storage, "replace_folder", swap_then_die)
    with pytest.raises(OSError, match="killed"):
        run_score(build_config(base | {"score": {"model": str(lake_root.parent / "model-2")}}), run_id="replacement")
    monkeypatch.setattr(storage, "replace_folder", real_swap)
    done = run_score(build_config(base | {"score": {"model": str(lake_root.parent / rerun_with)}}), run_id="rerun")
    rows = pl.from_arrow(Lake(str(tmp_path / "lake")).dataset("predictions", [NIGHTS[1]]).to_table())
    assert set(rows["model_version"]) == {rerun_with} and rows.height == done["rows"] == rows["doc_id"].n_unique()
    if rerun_with == "model-2":
        assert done["scored_this_run"] == 0 and set(rows["run_id"]) == {"replacement"}  # swapped-in shards kept
    else:
        assert not done.get("skipped") and done["scored_this_run"] == done["rows"] and set(rows["run_id"]) == {"rerun"}
    assert not any((tmp_path / "lake" / "_staging").rglob("*.parquet"))
