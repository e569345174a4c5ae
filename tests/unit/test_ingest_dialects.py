"""Input dialects (quotes as pandas and Python's csv write them, ingest.quote_char, ingest.delimiter) and refusals
that name the file, the line and the setting that would change the outcome."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import polars as pl
import pytest

from bert_pipeline.config import build_config
from bert_pipeline.errors import ConfigError, InputDataError
from bert_pipeline.stages.ingest import run_ingest
from bert_pipeline.lake.manifests import Lake
from tests.helpers import read_partition


def ingest(tmp_path: Path, source: Path, **ingest_cfg) -> tuple[dict, pl.DataFrame]:
    cfg = build_config({"data_root": str(tmp_path / "lake"), "run_date": "2026-01-01",
                        "ingest": {"sources": [str(source)], **ingest_cfg}})
    summary = run_ingest(cfg)
    return summary, read_partition(Lake.of(cfg), "raw", cfg.run_date)


def refused(tmp_path: Path, source: Path, **ingest_cfg) -> str:
    """The message of the InputDataError ingest raises; checks that nothing was written."""
    with pytest.raises(InputDataError) as failure:
        ingest(tmp_path, source, **ingest_cfg)
    assert not (tmp_path / "lake").exists()
    message = str(failure.value)
    assert str(source) in message, message
    return message


TSV_TEXTS = ['24" monitor, bright', 'said "do not buy"', '"quoted all through"', "it's “fine”", 'a "lone quote']


def test_tsv_quotes_matter_only_at_the_start_of_a_value(tmp_path: Path) -> None:
    path = tmp_path / "reviews.tsv"
    path.write_text("id\ttext\tlabel\n" + "".join(f"r{i}\t{t}\tpos\n" for i, t in enumerate(TSV_TEXTS)))
    summary, raw = ingest(tmp_path, path, id_column="id", label_column="label")
    assert summary["rows"] == 5 and raw.height == 5
    # a value that starts with " is quoted (as pandas and Python's csv read it); a " anywhere else is text
    assert raw["text"].to_list() == ['24" monitor, bright', 'said "do not buy"', "quoted all through", "it's “fine”",
                                     'a "lone quote']
    assert raw["doc_id"].to_list() == ["r0", "r1", "r2", "r3", "r4"]
    assert raw["label"].to_list() == ["pos"] * 5
    _, unquoted = ingest(tmp_path / "unquoted", path, id_column="id", label_column="label", quote_char="")
    assert unquoted["text"].to_list() == TSV_TEXTS  # no quoting: every " as written


QUOTED = ["first line\nsecond \"line\" with\ta tab", '24" monitor', 'a "b" c', "中文评论 😀, fine", "crlf\r\ninside",
          '"all quoted"', "", "trailing tab\t"]


@pytest.mark.parametrize("writer", ["pandas", "csv-module", "pandas-crlf"])
def test_a_quoted_tsv_reads_back_as_its_writer_wrote_it(tmp_path: Path, writer: str) -> None:
    """pandas' to_csv(sep="\\t") and Python's csv module quote values holding a tab, a line break or a quote (inner
    quotes doubled), as the UCI drug-review export does: read back by default, value for value."""
    path = tmp_path / "export.tsv"
    frame = pd.DataFrame({"id": [f"d{i}" for i in range(len(QUOTED))], "text": QUOTED,
                          "label": ["pos", "neg"] * (len(QUOTED) // 2)})
    if writer == "csv-module":
        with path.open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle, delimiter="\t").writerows([frame.columns.tolist(), *frame.values.tolist()])
    else:
        frame.to_csv(path, sep="\t", index=False, lineterminator="\r\n" if writer == "pandas-crlf" else "\n")
    assert '""' in path.read_text(encoding="utf-8")  # the writer doubled the inner quotes
    _, raw = ingest(tmp_path, path, id_column="id", label_column="label")
    assert raw["text"].to_list() == QUOTED[:6] + [None, "trailing tab\t"]  # an empty value is null, as polars reads it
    assert raw["doc_id"].to_list() == frame["id"].tolist() and raw["label"].to_list() == frame["label"].tolist()
    _, explicit = ingest(tmp_path / "explicit", path, id_column="id", label_column="label", quote_char='"')
    assert explicit["text"].to_list() == raw["text"].to_list()


def test_mid_value_quotes_and_text_after_a_closing_quote(tmp_path: Path) -> None:
    path = tmp_path / "mixed.tsv"
    path.write_text('n\ttext\n1\t24" monitor\n2\ta "b" c\n3\t"quoted" then text\n4\tsay ""hi""\n5\t""\n'
                    '6\t"a ""real"" quote"\n')
    _, raw = ingest(tmp_path, path)
    # Python's csv module and pandas: after the closing quote the value goes on as text; doubled quotes mid-value stay
    assert raw["text"].to_list() == ['24" monitor', 'a "b" c', "quoted then text", 'say ""hi""', None,
                                     'a "real" quote']
    csv_path = tmp_path / "inches.csv"
    csv_path.write_text('text,label\n"quoted, fine",pos\nmy 24" monitor,neg\n')
    _, raw = ingest(tmp_path / "csv", csv_path, label_column="label")
    assert raw["text"].to_list() == ["quoted, fine", 'my 24" monitor'] and raw["label"].to_list() == ["pos", "neg"]


def test_files_with_and_without_quotes_read_alike(tmp_path: Path) -> None:
    """polars reads a file without any quote, Python's csv one with a quote: blank lines, empty values, repeated
    column names and \\r line ends must come out the same."""
    body = "text\tlabel\tlabel\r\nfirst\tpos\t1\r\n\r\nsecond\t\t2\r\nlast\tneg\t3\r\n"
    plain, quoted = tmp_path / "plain.tsv", tmp_path / "quoted.tsv"
    plain.write_bytes(body.encode())
    quoted.write_bytes(body.replace("last", 'last 24"').encode())
    _, a = ingest(tmp_path / "a", plain)
    _, b = ingest(tmp_path / "b", quoted)
    assert a["text"].to_list() == ["first", None, "second", "last"]
    assert b["text"].to_list() == ["first", None, "second", 'last 24"']
    assert a.columns == b.columns
    old_mac = tmp_path / "old_mac.tsv"  # lone \r line ends, which polars does not end a line at
    old_mac.write_bytes(b'text\tlabel\rfirst\tpos\r"two\rlines"\tneg\r')
    _, c = ingest(tmp_path / "c", old_mac, label_column="label")
    assert c["text"].to_list() == ["first", "two\rlines"] and c["label"].to_list() == ["pos", "neg"]
    old_mac.write_bytes(b"text\tlabel\rfirst\tpos\rsecond\tneg\r")  # no quote at all
    _, d = ingest(tmp_path / "d", old_mac, label_column="label")
    assert d["text"].to_list() == ["first", "second"] and d["label"].to_list() == ["pos", "neg"]


def test_a_quoting_tsv_read_with_no_quoting_is_refused_at_the_line(tmp_path: Path) -> None:
    path = tmp_path / "quoted.tsv"
    path.write_text('id\tlabel\ttext\n1\tsport\t"first line\nsecond line"\n2\tfood\tplain soup\n')
    message = refused(tmp_path, path, id_column="id", label_column="label", quote_char="")
    assert "line 3 has 1 field, the header has 3" in message and "ingest.quote_char: '\"'" in message
    _, raw = ingest(tmp_path, path, id_column="id", label_column="label")
    assert raw["text"].to_list() == ["first line\nsecond line", "plain soup"]


def test_a_quoted_record_with_too_few_fields_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "short.tsv"
    path.write_text('id\ttext\n1\t"two\nlines"\n2\n3\tfine\n')
    message = refused(tmp_path, path)
    assert "line 4 has 1 field, the header has 2" in message  # line 4: the quoted value spans lines 2 and 3
    assert "ingest.quote_char to empty" in message


def test_a_value_that_starts_with_a_quote_never_closed_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "open.tsv"
    path.write_text('id\ttext\n1\tfine\n2\t"Best drug ever\n3\tok\n4\tok too\n')
    message = refused(tmp_path, path)
    assert 'line 3 opens a "-quoted value that the file never closes' in message
    assert "ingest.quote_char to empty" in message
    _, raw = ingest(tmp_path, path, quote_char="")
    assert raw["text"].to_list() == ["fine", '"Best drug ever', "ok", "ok too"]


def test_csv_with_an_extra_field_names_the_line_and_the_settings(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    rows = [f"{n},review number {n},pos" for n in range(2, 21)] + ["21,great, really,pos"]
    path.write_text("id,text,label\n" + "\n".join(rows) + "\n")
    message = refused(tmp_path, path, label_column="label")
    assert message.endswith("line 21 has 4 fields, the header has 3; if the file is tab-separated set ingest.format: "
                            "tsv, or set ingest.delimiter; a value that holds the delimiter or a line break must be "
                            '"-quoted')  # no quote in the file: ingest.quote_char would change nothing
    assert "truncate_ragged_lines" not in message  # no polars option
    path.write_text("id,text,label\n" + "\n".join(rows[:5]) + '\n22,"quoted, fine",pos\n' + "\n".join(rows[5:]))
    message = refused(tmp_path, path, label_column="label")
    assert message.endswith("line 22 has 4 fields, the header has 3; if the file is tab-separated set ingest.format: "
                            'tsv, or set ingest.delimiter; if " is plain text in this file (not quoting) set '
                            "ingest.quote_char to empty (no quoting)")


def test_csv_extra_field_after_quoted_multiline_values_counts_lines_not_rows(tmp_path: Path) -> None:
    path = tmp_path / "multi.csv"
    path.write_text('text,label\n"one\ntwo, three",pos\n"he said ""hi""",neg\nfour,five,six\n')
    assert "line 5 has 3 fields, the header has 2" in refused(tmp_path, path)


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
    _, raw = ingest(tmp_path / "other", piped, label_column="label", delimiter="|")  # a mid-value " is text
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
