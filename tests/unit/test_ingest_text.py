"""Text as written: lines end at \\n, \\r\\n or \\r only (not at U+2028, form feed, NEL...), in txt and jsonl and in
the line numbers errors give; a lone surrogate becomes U+FFFD, counted, flagged and named by line; never a NUL."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bert_pipeline.config import build_config
from bert_pipeline.errors import InputDataError
from bert_pipeline.stages.ingest import decode_text, run_ingest, split_lines
from bert_pipeline.lake.manifests import Lake
from tests.helpers import read_partition

# characters str.splitlines ends a line at, though they are text inside one
INSIDE = ["\u2028", "\u2029", "\x0c", "\x85", "\x0b", "\x1c", "\x1d", "\x1e"]


def ingest(tmp_path: Path, source: Path, **ingest_cfg) -> tuple[dict, pl.DataFrame, dict]:
    cfg = build_config({"data_root": str(tmp_path / "lake"), "run_date": "2026-01-01",
                        "ingest": {"sources": [str(source)], **ingest_cfg}})
    summary = run_ingest(cfg)
    lake = Lake.of(cfg)
    return summary, read_partition(lake, "raw", cfg.run_date), lake.read_manifest("raw", cfg.run_date) or {}


def test_split_lines_ends_lines_only_at_newline_crlf_and_cr() -> None:
    assert split_lines("a\u2028b\r\nc\rd\ne\x0cf\x85g\n") == ["a\u2028b", "c", "d", "e\x0cf\x85g"]
    assert split_lines("one\n\nthree") == ["one", "", "three"]
    assert split_lines("end\r\n") == ["end"] and split_lines("cr\r\r") == ["cr", ""]


def test_a_txt_source_keeps_every_line_whole(tmp_path: Path) -> None:
    documents = [f"第{n}行 review {n}{c}still line {n} 😀" for n, c in enumerate(INSIDE)] + ["crlf ends", "cr ends"]
    path = tmp_path / "reviews.txt"
    endings = ["\n", "\r\n", "\r", "\n", "\r\n", "\n", "\n", "\r", "\r\n", "\n"]
    path.write_bytes("".join(d + e for d, e in zip(documents, endings)).encode())
    assert len(path.read_bytes().decode().splitlines()) == 18  # what str.splitlines made of these 10 lines
    summary, raw, _ = ingest(tmp_path, path)
    assert summary["rows"] == 10
    assert raw["text"].to_list() == documents
    assert raw["source_row"].to_list() == list(range(10))


def test_jsonl_values_holding_line_separators_stay_one_record(tmp_path: Path) -> None:
    texts = ["para one\u2028para two", "中文\u2029😀", "nel\x85inside"]
    lines = [json.dumps({"text": t, "label": "x"}, ensure_ascii=False) for t in texts]
    path = tmp_path / "mixed_ends.jsonl"
    path.write_bytes((lines[0] + "\r\n" + lines[1] + "\r" + lines[2] + "\n").encode())  # polars alone refuses \r ends
    summary, raw, _ = ingest(tmp_path, path, label_column="label")
    assert summary["rows"] == 3 and raw["text"].to_list() == texts


def test_jsonl_error_line_numbers_count_only_real_line_ends(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    good = [json.dumps({"text": f"line {n}\u2028with a separator\x85"}, ensure_ascii=False) for n in range(3)]
    path.write_bytes(("\r".join(good) + '\r{"text": "cut' + "\n").encode())
    with pytest.raises(InputDataError) as failure:
        ingest(tmp_path, path)
    message = str(failure.value)
    assert "line 4 is not valid JSON" in message and "cut off" in message and str(path) in message


def test_a_lone_surrogate_becomes_u_fffd_and_is_flagged_by_line(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "surrogates.jsonl"
    path.write_text(
        '{"text": "fine 中文", "label": "a"}\n'
        '{"text": "bad \\ud800 here", "label": "b"}\n'  # a high half without its low half
        '\n'
        '{"text": "emoji \\ud83d\\ude00 pair", "label": "a"}\n'  # a real pair: one character
        '{"text": "path C:\\\\ud800 is text", "label": "a"}\n'  # an escaped backslash: the text \ud800
        '{"text": "low \\udc00 alone\u2028still", "label": "c\\udfff"}\n'  # a low half alone, in a label too
    )
    with caplog.at_level(logging.WARNING, logger="bert_pipeline.stages.ingest"):
        summary, raw, manifest = ingest(tmp_path, path, label_column="label")
    assert raw["text"].to_list() == ["fine 中文", "bad \ufffd here", "emoji \U0001F600 pair", "path C:\\ud800 is text",
                                     "low \ufffd alone\u2028still"]
    assert raw["label"].to_list() == ["a", "b", "a", "a", "c\ufffd"]
    assert raw["invalid_utf8"].to_list() == [False, True, False, False, True]
    assert not any("\x00" in t for t in raw["text"].to_list())
    assert summary["lone_surrogates"] == 3 and summary["invalid_utf8_rows"] == 2
    entry = manifest["files"][0]
    assert entry["lone_surrogates"] == 3 and entry["lone_surrogate_lines"] == [2, 6]
    assert summary["warnings"] == [f"{path}: 3 lone surrogate escape(s) (such as \\ud800 without its pair: not a "
                                   "character) replaced by U+FFFD and the rows flagged invalid_utf8, on line(s) 2, 6"]
    assert any(str(path) in r.getMessage() and "line(s) 2, 6" in r.getMessage() for r in caplog.records)


def test_nul_from_json_escapes_and_parquet_is_removed(tmp_path: Path) -> None:
    jsonl = tmp_path / "nul.jsonl"
    jsonl.write_text('{"text": "a\\u0000b", "label": "x\\u0000"}\n')
    _, raw, _ = ingest(tmp_path / "j", jsonl, label_column="label")
    assert raw["text"].to_list() == ["ab"] and raw["label"].to_list() == ["x"]
    parquet = tmp_path / "nul.parquet"
    pq.write_table(pa.table({"text": ["c\x00d", "中\x00文"]}), parquet)
    _, raw, _ = ingest(tmp_path / "p", parquet)
    assert raw["text"].to_list() == ["cd", "中文"]


def test_utf16_lone_surrogates_are_replaced_and_counted(tmp_path: Path) -> None:
    data = b"\xff\xfe" + "text\nok\nbad ".encode("utf-16-le") + b"\x00\xd8" + " end\n".encode("utf-16-le")
    assert decode_text(data) == ("text\nok\nbad \ufffd end\n", 1)
    path = tmp_path / "utf16.csv"
    path.write_bytes(data)
    summary, raw, _ = ingest(tmp_path, path)
    assert raw["text"].to_list() == ["ok", "bad \ufffd end"] and raw["invalid_utf8"].to_list() == [False, True]
    assert summary["invalid_utf8_replaced"] == 1 and summary["lone_surrogates"] == 0
