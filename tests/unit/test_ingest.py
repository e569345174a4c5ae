from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from bert_pipeline.config import build_config
from bert_pipeline.errors import InputDataError
from bert_pipeline.ingest import decode_text, expand_sources, read_source, run_ingest
from bert_pipeline.lake import Lake
from tests.helpers import read_partition

CSV = 'id,text,label\n1,"first line\nsecond line, with comma",pos\n2,"he said ""hi""",neg\n3,plain,\n'


def ingest(tmp_path: Path, sources: list[str], **ingest_cfg) -> tuple[dict, pl.DataFrame]:
    cfg = build_config({"data_root": str(tmp_path / "lake"), "run_date": "2026-01-01",
                        "ingest": {"sources": sources, **ingest_cfg}})
    summary = run_ingest(cfg)
    lake = Lake(cfg.data_root)
    frame = read_partition(lake, "raw", cfg.run_date)
    return summary, frame


def test_csv_with_quoted_newlines_and_quotes(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(CSV)
    summary, raw = ingest(tmp_path, [str(tmp_path / "a.csv")], label_column="label", id_column="id")
    assert summary["rows"] == 3 and summary["labelled_rows"] == 2
    assert raw["text"].to_list() == ["first line\nsecond line, with comma", 'he said "hi"', "plain"]
    assert raw["doc_id"].to_list() == ["1", "2", "3"]
    assert raw["label"].to_list() == ["pos", "neg", None]
    assert raw.columns == ["doc_id", "text", "label", "split", "source", "source_row", "invalid_utf8",
                           "ingested_at", "run_date"]


@pytest.mark.parametrize("fmt", ["tsv", "jsonl", "parquet", "txt", "csv.gz", "jsonl.zst"])
def test_every_format_reads_the_same_texts(tmp_path: Path, fmt: str) -> None:
    texts = ["alpha beta", "gamma, delta", "epsilon"]
    path = tmp_path / f"data.{fmt}"
    if fmt == "tsv":
        path.write_text("text\n" + "\n".join(texts) + "\n")
    elif fmt == "jsonl":
        path.write_text("\n".join(json.dumps({"text": t, "n": i}) for i, t in enumerate(texts)) + "\n")
    elif fmt == "parquet":
        pq.write_table(pa.table({"text": texts}), path)
    elif fmt == "txt":
        path.write_text("\n".join(texts) + "\n")
    elif fmt == "csv.gz":
        path.write_bytes(gzip.compress(("text\n" + "\n".join(f'"{t}"' for t in texts) + "\n").encode()))
    else:
        lines = "\n".join(json.dumps({"text": t}) for t in texts) + "\n"
        path.write_bytes(zstandard.ZstdCompressor().compress(lines.encode()))
    _, raw = ingest(tmp_path, [str(path)])
    assert raw["text"].to_list() == texts
    assert raw["source_row"].to_list() == [0, 1, 2]


def test_invalid_utf8_is_replaced_counted_and_flagged(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b"text\nfine \xe2\x9c\x93\nbroken \xff\xfe here\nreal \xef\xbf\xbd char\n")
    summary, raw = ingest(tmp_path, [str(path)])
    assert summary["invalid_utf8_replaced"] == 2  # \xff and \xfe; the genuine U+FFFD is not counted
    assert raw["text"][1] == "broken \ufffd\ufffd here"
    assert raw["invalid_utf8"].to_list() == [False, True, True]  # a row holding U+FFFD is flagged


def test_boms_and_utf16() -> None:
    assert decode_text(b"\xef\xbb\xbftext\nx\n") == ("text\nx\n", 0)
    assert decode_text("text\nü\n".encode("utf-16")) == ("text\nü\n", 0)


def test_missing_column_lists_the_columns_that_exist(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(CSV)
    with pytest.raises(InputDataError) as err:
        ingest(tmp_path, [str(tmp_path / "a.csv")], text_column="body")
    assert "a.csv: ingest.text_column is 'body'" in str(err.value) and "id, text, label" in str(err.value)
    assert not (tmp_path / "lake").exists()  # nothing written before the error


def test_glob_matching_nothing_and_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="matches no file"):
        expand_sources([str(tmp_path / "*.csv")])
    (tmp_path / "x.xlsx").write_text("x")
    with pytest.raises(InputDataError, match="set ingest.format"):
        ingest(tmp_path, [str(tmp_path / "x.xlsx")])


def test_derived_ids_are_stable_and_unique_even_for_repeated_texts(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("text\nsame\nsame\nother\n")
    _, first = ingest(tmp_path, [str(tmp_path / "a.csv")])
    assert first["doc_id"].n_unique() == 3
    cfg = build_config({"ingest": {"sources": [str(tmp_path / "a.csv")]}})
    again, _ = read_source(expand_sources(cfg.ingest.sources)[0], cfg.ingest)
    assert again["doc_id"].to_list() == first["doc_id"].to_list()


def test_duplicate_given_ids_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id,text\n1,a\n1,b\n")
    with pytest.raises(InputDataError, match="not unique"):
        ingest(tmp_path, [str(tmp_path / "a.csv")], id_column="id")


def test_split_column_is_normalised_and_checked(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("text,s\na,TRAIN\nb,dev\nc,Test\nd,\n")
    _, raw = ingest(tmp_path, [str(tmp_path / "a.csv")], split_column="s")
    assert raw["split"].to_list() == ["train", "validation", "test", None]
    (tmp_path / "b.csv").write_text("text,s\na,holdout\n")
    with pytest.raises(InputDataError, match="holdout"):
        ingest(tmp_path, [str(tmp_path / "b.csv")], split_column="s")


def test_rerun_is_skipped_until_the_input_changes(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("text\none\ntwo\n")
    first, _ = ingest(tmp_path, [str(path)])
    second, _ = ingest(tmp_path, [str(path)])
    assert not first["skipped"] and second["skipped"]
    path.write_text("text\none\ntwo\nthree\n")
    third, raw = ingest(tmp_path, [str(path)])
    assert not third["skipped"] and raw.height == 3


def test_empty_files_are_sources_with_no_rows(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "a.csv").write_text("text,label\nhello,x\n")
    summary, raw = ingest(tmp_path, [str(tmp_path / "empty.csv"), str(tmp_path / "a.csv")], label_column="label")
    assert summary["rows"] == 1 and raw["text"].to_list() == ["hello"]


def test_txt_sources_refuse_label_columns(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one\ntwo\n")
    with pytest.raises(InputDataError, match="txt source holds only text"):
        ingest(tmp_path, [str(tmp_path / "a.txt")], label_column="label")


def test_relative_sources_keep_their_name_and_ids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.csv").write_text("text\nhello\n")
    monkeypatch.chdir(tmp_path)
    cfg = build_config({"ingest": {"sources": ["d/a.csv"]}})
    frame, _ = read_source(expand_sources(cfg.ingest.sources)[0], cfg.ingest)
    assert frame["source"].to_list() == ["d/a.csv"]
