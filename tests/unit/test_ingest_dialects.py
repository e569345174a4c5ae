"""Input dialects (TSV without quoting, ingest.quote_char, ingest.delimiter) and refusals that name the file, the
line and the setting that would change the outcome."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from bert_pipeline.config import build_config
from bert_pipeline.errors import ConfigError, InputDataError
from bert_pipeline.ingest import run_ingest
from bert_pipeline.lake import Lake
from tests.helpers import read_partition


def ingest(tmp_path: Path, source: Path, **ingest_cfg) -> tuple[dict, pl.DataFrame]:
    cfg = build_config({"data_root": str(tmp_path / "lake"), "run_date": "2026-01-01",
                        "ingest": {"sources": [str(source)], **ingest_cfg}})
    summary = run_ingest(cfg)
    return summary, read_partition(Lake(cfg.data_root), "raw", cfg.run_date)


def refused(tmp_path: Path, source: Path, **ingest_cfg) -> str:
    """The message of the InputDataError ingest raises; checks that nothing was written."""
    with pytest.raises(InputDataError) as failure:
        ingest(tmp_path, source, **ingest_cfg)
    assert not (tmp_path / "lake").exists()
    message = str(failure.value)
    assert str(source) in message, message
    return message


TSV_TEXTS = ['24" monitor, bright', 'said "do not buy"', '"quoted all through"', "it's “fine”", 'a "lone quote']


def test_tsv_keeps_quotes_in_values_as_text(tmp_path: Path) -> None:
    path = tmp_path / "reviews.tsv"
    path.write_text("id\ttext\tlabel\n" + "".join(f"r{i}\t{t}\tpos\n" for i, t in enumerate(TSV_TEXTS)))
    summary, raw = ingest(tmp_path, path, id_column="id", label_column="label")
    assert summary["rows"] == 5 and raw.height == 5
    assert raw["text"].to_list() == TSV_TEXTS
    assert raw["doc_id"].to_list() == ["r0", "r1", "r2", "r3", "r4"]
    assert raw["label"].to_list() == ["pos"] * 5


def test_a_tsv_that_really_quotes_is_read_with_quote_char(tmp_path: Path) -> None:
    path = tmp_path / "quoted.tsv"
    path.write_text('id\tlabel\ttext\n1\tsport\t"first line\nsecond ""line"" with\ta tab"\n2\tfood\tplain soup\n')
    _, raw = ingest(tmp_path, path, id_column="id", label_column="label", quote_char='"')
    assert raw["text"].to_list() == ['first line\nsecond "line" with\ta tab', "plain soup"]
    assert raw["label"].to_list() == ["sport", "food"]


def test_a_quoting_tsv_read_without_quote_char_is_refused_at_the_line(tmp_path: Path) -> None:
    path = tmp_path / "quoted.tsv"
    path.write_text('id\tlabel\ttext\n1\tsport\t"first line\nsecond line"\n2\tfood\tplain soup\n')
    message = refused(tmp_path, path, id_column="id", label_column="label")
    assert "line 3 has 1 field, the header has 3" in message and "ingest.quote_char: '\"'" in message


def test_csv_with_an_extra_field_names_the_line_and_the_settings(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    rows = [f"{n},review number {n},pos" for n in range(2, 21)] + ["21,great, really,pos"]
    path.write_text("id,text,label\n" + "\n".join(rows) + "\n")
    message = refused(tmp_path, path, label_column="label")
    assert "line 21 has 4 fields, the header has 3" in message
    assert "ingest.format: tsv" in message and "ingest.delimiter" in message and "ingest.quote_char" in message
    assert "truncate_ragged_lines" not in message  # no polars option


def test_csv_extra_field_after_quoted_multiline_values_counts_lines_not_rows(tmp_path: Path) -> None:
    path = tmp_path / "multi.csv"
    path.write_text('text,label\n"one\ntwo, three",pos\n"he said ""hi""",neg\nfour,five,six\n')
    assert "line 5 has 3 fields, the header has 2" in refused(tmp_path, path)


def test_csv_quote_inside_a_value_is_refused_or_read_as_text_with_no_quoting(tmp_path: Path) -> None:
    path = tmp_path / "inches.csv"
    path.write_text('text,label\n"quoted, fine",pos\nmy 24" monitor,neg\n')
    message = refused(tmp_path, path, label_column="label")
    assert "line 3 has a \" inside a value" in message and "ingest.quote_char to empty" in message
    path.write_text('text,label\nfine,pos\nmy 24" monitor,neg\n')
    _, raw = ingest(tmp_path, path, label_column="label", quote_char="")
    assert raw["text"].to_list() == ["fine", 'my 24" monitor']


def test_csv_unclosed_quote_names_the_line_it_opens_on(tmp_path: Path) -> None:
    path = tmp_path / "open.csv"
    path.write_text('text,label\nfine,pos\n"never closed,neg\nmore,pos\n')
    message = refused(tmp_path, path)
    assert "line 3 opens a \"-quoted value" in message and "ingest.quote_char" in message


def test_truncated_jsonl_names_the_line_and_the_format_setting(tmp_path: Path) -> None:
    path = tmp_path / "cut.jsonl"
    lines = [json.dumps({"text": f"review {n}", "label": "pos"}) for n in range(6)]
    path.write_text("\n".join(lines) + '\n{"text": "review 6", "lab')
    message = refused(tmp_path, path, label_column="label")
    assert "line 7 is not valid JSON" in message and "cut off" in message and "ingest.format" in message
    assert "Syntax at character" not in message


def test_jsonl_line_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "list.jsonl"
    path.write_text('{"text": "fine"}\n\n["a", "list"]\n')
    message = refused(tmp_path, path)
    assert "line 3 holds a JSON list, not an object" in message and "ingest.format" in message


def test_delimiter_override(tmp_path: Path) -> None:
    path = tmp_path / "semi.csv"
    path.write_text('text;label\n"a; quoted";pos\n24, b;neg\n')
    _, raw = ingest(tmp_path, path, label_column="label", delimiter=";")  # csv keeps its " quoting
    assert raw["text"].to_list() == ["a; quoted", "24, b"] and raw["label"].to_list() == ["pos", "neg"]
    piped = tmp_path / "piped.tsv"
    piped.write_text('text|label\nmy 24" screen|pos\n')
    _, raw = ingest(tmp_path / "other", piped, label_column="label", delimiter="|")  # tsv stays unquoted
    assert raw["text"].to_list() == ['my 24" screen']


def test_dialect_settings_are_checked(tmp_path: Path) -> None:
    cfg = build_config({"ingest": {"delimiter": "tab", "quote_char": ""}}).ingest
    assert (cfg.delimiter, cfg.quote_char) == ("\t", None)
    assert build_config().ingest.quote_char == "auto" and build_config().ingest.delimiter is None
    with pytest.raises(ConfigError, match="ingest.delimiter: must be one ASCII character"):
        build_config({"ingest": {"delimiter": "；"}})
    with pytest.raises(ConfigError, match="ingest.quote_char: must be one ASCII character"):
        build_config({"ingest": {"quote_char": "''"}})
    with pytest.raises(ConfigError, match="delimiter and quote_char must differ"):
        build_config({"ingest": {"delimiter": "|", "quote_char": "|"}})
