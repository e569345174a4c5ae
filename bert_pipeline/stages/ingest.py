"""Ingest: read every source (csv, tsv, jsonl, parquet, txt; gz/zst/bz2/xz too) into the raw partition.

Each row gets a stable `doc_id`, its `source` and `source_row`; invalid UTF-8 (and a lone surrogate escape in JSON,
which no UTF-8 text can hold) is replaced with U+FFFD, counted in the manifest and flagged per row. NUL is removed.
Every problem with an input names the file, the line and the setting that would help.

Text is read as written: a line ends at \\n, \\r\\n or \\r only (U+2028, U+2029, NEL, form feed and vertical tab are
text inside a line, unlike Python's str.splitlines), for txt, jsonl and csv/tsv alike, and so do error line numbers.

csv and tsv are read as their writers (pandas' to_csv, Python's csv module, spreadsheets) meant them: a `"` at the
start of a field quotes it (the field runs to the closing quote, `""` inside is one quote, line breaks inside are
kept), a `"` anywhere else is text, so `24" monitor` stays as written. ingest.quote_char: '' reads with no quoting;
ingest.delimiter and ingest.quote_char override either format's own.

A committed partition is rewritten only from the same sources (a retry or a config change reads the same rows);
other sources, or other contents of them, are refused unless ingest.on_existing says append or replace.
"""

from __future__ import annotations

import collections
import csv
import datetime as dt
import hashlib
import io
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import fsspec
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from bert_pipeline.lake import storage
from bert_pipeline.config import NOT_FINGERPRINTED, IngestConfig, PipelineConfig
from bert_pipeline.errors import InputDataError, line_or_row
from bert_pipeline.curation.labels import look_alike_warnings, spelling_clashes, spelling_message
from bert_pipeline.ner.tagging import TOKEN_LINES, conll_sentences, looks_like_conll
from bert_pipeline.task import task_of
from bert_pipeline.lake.manifests import Lake, fingerprint, manifest_matches, shard_name

log = logging.getLogger(__name__)

COMPRESSION_SUFFIXES = {".gz": "gzip", ".zst": "zstd", ".bz2": "bz2", ".xz": "xz"}
FORMAT_BY_EXTENSION = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json",
    ".parquet": "parquet", ".pq": "parquet", ".txt": "txt", ".text": "txt",
    ".conll": "conll", ".iob": "conll", ".bio": "conll", ".bmes": "conll",
}
SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "validation": "validation", "valid": "validation", "val": "validation", "dev": "validation", "eval": "validation",
    "test": "test", "testing": "test",
}
RAW_SCHEMA = pa.schema([
    ("doc_id", pa.string()), ("text", pa.string()), ("label", pa.string()), ("split", pa.string()),
    ("source", pa.string()), ("source_row", pa.int64()), ("invalid_utf8", pa.bool_()),
    ("ingested_at", pa.timestamp("us", tz="UTC")),
])  # run_date is the hive folder's name, not a column (see bert_pipeline/lake/manifests.py)
LINES_NAMED = 5  # how many line numbers a manifest and a warning name per file


@dataclass(frozen=True)
class SourceFile:
    url: str  # what we open
    name: str  # what rows record as `source` and what doc_ids derive from: the URL as the config wrote it


@dataclass
class SourceReport:
    """What reading one source found: `replaced` invalid UTF-8 sequences and lone surrogates written as U+FFFD (of
    which `surrogates` lone surrogates, on the 1-based `surrogate_lines`), and the xxh3-128 of the file's bytes, which
    tells the same file from a changed one when a committed partition is met again."""

    content_xxh3: str = ""
    replaced: int = 0
    surrogates: int = 0
    surrogate_lines: list[int] = field(default_factory=list)
    task_counts: dict[str, int] = field(default_factory=dict)  # what the task's reading counted (trimmed_spans ...)
    task_notes: list[str] = field(default_factory=list)  # what the task's reading must tell the user (RowsRead.notes)
    row_lines: list[int] | None = None  # the 1-based line each row starts on; None where rows are not lines (parquet)


def expand_sources(sources: list[str]) -> list[SourceFile]:
    if not sources:
        raise InputDataError("ingest.sources is empty: list at least one file, glob or URL")
    found: dict[str, SourceFile] = {}
    for source in sources:
        resolved = storage.resolve_package_url(source)
        matches = storage.glob(resolved)
        if not matches:
            raise InputDataError(f"ingest.sources: {source!r} matches no file")
        single = not fsspec.core.has_magic(resolved)  # type: ignore[attr-defined]
        for url in matches:
            name = source if single else url  # a plain source keeps its name as written: ids don't depend on the cwd
            found.setdefault(url, SourceFile(url=url, name=name))
    return list(found.values())


UNNAMED = "unnamed"  # a format no extension names: weiboNER_2nd_conll.train, a corpus's .dev and .test files


def detect_format(url: str, configured: str) -> tuple[str, str | None]:
    """(format, compression) from the configured format or the file's extension; UNNAMED under auto for an extension
    that names none, which `_read_table` reads as CoNLL when its lines are (`looks_like_conll`), else refuses."""
    lowered = url.lower()
    compression = None
    for suffix, codec in COMPRESSION_SUFFIXES.items():
        if lowered.endswith(suffix):
            compression, lowered = codec, lowered[: -len(suffix)]
    if configured != "auto":
        return configured, compression
    for extension, fmt in FORMAT_BY_EXTENSION.items():
        if lowered.endswith(extension):
            return fmt, compression
    return UNNAMED, compression


def read_raw_bytes(url: str, compression: str | None) -> bytes:
    fs, path = storage.filesystem(url)
    try:
        with fs.open(path, "rb", compression=compression) as handle:
            return handle.read()
    except (EOFError, OSError) as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError, ConnectionError, TimeoutError)):
            raise
        raise InputDataError(f"{url}: cannot decompress ({compression}): {exc}") from exc


def decode_text(data: bytes) -> tuple[str, int]:
    """Decode bytes as UTF-16 (when it has a BOM) or UTF-8; return the text and how many bad sequences were replaced.

    errors="replace" never yields a surrogate: a lone surrogate in UTF-16, or one encoded in UTF-8 (ED A0 80), is a
    bad sequence and becomes U+FFFD like any other, so the text always encodes to valid UTF-8."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        text = data.decode("utf-16", errors="replace")
        return text, text.count("\ufffd")
    if data[:3] == b"\xef\xbb\xbf":
        data = data[3:]
    text = data.decode("utf-8", errors="replace")
    # errors="replace" emits one U+FFFD per bad sequence; genuine U+FFFD characters are the bytes EF BF BD.
    return text, text.count("\ufffd") - data.count(b"\xef\xbf\xbd")


def split_lines(text: str) -> list[str]:
    """The lines of `text`, ended by \\n, \\r\\n or \\r only, without their line ends; a final line end adds no empty
    line. (str.splitlines also ends lines at U+2028, U+2029, U+0085, form feed, vertical tab and \\x1c-\\x1e, which
    are text: a document holding one would become two.)"""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def count_line_ends(text: str) -> int:
    """How many \\n, \\r\\n or \\r line ends `text` holds (a \\r\\n is one)."""
    return text.count("\n") + text.count("\r") - text.count("\r\n")


def csv_dialect(fmt: str, cfg: IngestConfig) -> tuple[str, str | None]:
    """(delimiter, quote character or None for no quoting) of a csv or tsv source: the settings, else the format's
    own (`,` or tab, and `"` for both)."""
    delimiter = cfg.delimiter or ("\t" if fmt == "tsv" else ",")
    return delimiter, '"' if cfg.quote_char == "auto" else cfg.quote_char


def _read_table(url: str, fmt: str, compression: str | None, cfg: PipelineConfig,
                nested: bool = False) -> tuple[pl.DataFrame, SourceReport]:
    """A source file's columns. nested: json(l) values that are lists or objects are kept as the Python objects
    they are (polars would unify them: [0, 5, "PER"] into strings, a missing key into null); a CoNLL file is one row
    per sentence with the token and tag lists under ner.tokens_key and ner.tags_key and the `line` it starts on."""
    data = read_raw_bytes(url, compression)
    report = SourceReport(content_xxh3=xxhash.xxh3_128_hexdigest(data))
    if fmt == "parquet":
        try:
            return _without_nul(pl.from_arrow(pq.read_table(io.BytesIO(data)))), report  # type: ignore[arg-type]
        except pa.ArrowInvalid as exc:
            raise InputDataError(f"{url}: not a readable parquet file: {exc}") from exc
    text, report.replaced = decode_text(data)
    text = text.replace("\x00", "")  # NUL bytes break CSV parsers and are never meaningful text
    column = cfg.ingest.text_column
    if not text.strip():  # an empty file is a source with no rows, not an error
        return pl.DataFrame(schema={column: pl.String}), report
    if fmt == UNNAMED:
        if not looks_like_conll(text):
            raise InputDataError(f"{url}: cannot tell the format from the extension; set ingest.format to one of "
                                 "csv, tsv, jsonl, json, parquet, txt, conll")
        fmt = "conll"  # corpora ship their CoNLL splits as .train, .dev and .test
        log.info("ingest: %s: no extension names its format; its lines are CoNLL columns, read as conll", url)
    guessed_conll = fmt in ("txt", "csv", "tsv") and cfg.ingest.format == "auto" and looks_like_conll(text)
    if guessed_conll and cfg.task == "ner":
        fmt = "conll"  # an entity corpus shipped as .txt (hironsan's iob_sents.txt) or .tsv: what the task reads
        log.info("ingest: %s: its lines are CoNLL columns (a token and a tag per line), read as conll", url)
    elif guessed_conll:
        raise InputDataError(f"{url}: its lines look like a CoNLL column file (a token and a tag per line), not "
                             f"{fmt} texts: to read its entities set task: ner and ingest.format: conll; to read "
                             f"each line as a text set ingest.format: {fmt}. Nothing was written")
    if fmt == "txt":
        lines = split_lines(text)
        report.row_lines = list(range(1, len(lines) + 1))
        return pl.DataFrame({column: lines}, schema={column: pl.String}), report
    if fmt == "conll":
        frame = _read_conll(text, url, cfg)
        report.row_lines = frame["line"].to_list()
        return frame, report
    if fmt == "json" and text.lstrip().startswith("["):
        return _without_nul(_frame_of_mixed_fields(json_array_objects(text, url), nested)), report
    if fmt in ("jsonl", "json"):
        text, report.surrogates, report.surrogate_lines = _jsonl_without_lone_surrogates(text)
        report.replaced += report.surrogates
        report.row_lines = [n for n, line in enumerate(split_lines(text), start=1) if line.strip()]  # one a line
        if nested:
            try:
                return _without_nul(_frame_of_mixed_fields(jsonl_objects(text), nested)), report
            except InputDataError as problem:
                raise InputDataError(f"{url}: {problem}") from None
        return _without_nul(_read_jsonl(text, url)), report
    try:
        frame, report.row_lines = _read_delimited(text, url, fmt, *csv_dialect(fmt, cfg.ingest))
        return frame, report
    except InputDataError as problem:
        if looks_like_conll(text):
            setting = "ingest.format: conll" if cfg.task == "ner" else "task: ner and ingest.format: conll"
            raise InputDataError(f"{problem}. Its lines look like a CoNLL column file (a token and a tag per "
                                 f"line): for entities set {setting}") from None
        raise


def _read_conll(text: str, url: str, cfg: PipelineConfig) -> pl.DataFrame:
    """One row per sentence of a CoNLL column file: token and tag lists, the 1-based line it starts on and each
    token's line (TOKEN_LINES)."""
    n = cfg.ner
    sentences, _ = conll_sentences(split_lines(text), url, token_column=n.conll_token_column,
                                   tag_column=n.conll_tag_column)
    return pl.DataFrame({
        n.tokens_key: pl.Series([[t for t, _, _ in s] for s in sentences], dtype=pl.List(pl.String)),
        n.tags_key: pl.Series([[tag for _, tag, _ in s] for s in sentences], dtype=pl.List(pl.String)),
        "line": pl.Series([s[0][2] for s in sentences], dtype=pl.Int64),
        TOKEN_LINES: pl.Series([[number for _, _, number in s] for s in sentences], dtype=pl.List(pl.Int64)),
    })


def json_array_objects(text: str, url: str) -> list[dict[str, Any]]:
    """The objects of a JSON file holding one array of them (Label Studio's JSON export). Raises InputDataError
    naming the line and column of a syntax error, or the first element that is not an object."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputDataError(f"{url}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}; "
                             f"ingest.format json reads one array of objects, or one object per line") from None
    bad = next((i for i, item in enumerate(value) if not isinstance(item, dict)), None)
    if bad is not None:
        raise InputDataError(f"{url}: element {bad + 1} of the JSON array is a {type(value[bad]).__name__}, not "
                             "an object with the record's fields")
    return value


def _without_nul(df: pl.DataFrame) -> pl.DataFrame:
    """NUL removed from every text column, as from csv and txt bytes: a JSON `\\u0000` or parquet text may hold it."""
    text_columns = [name for name, dtype in df.schema.items() if dtype == pl.String]
    return df.with_columns(pl.col(text_columns).str.replace_all("\x00", "", literal=True)) if text_columns else df


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")  # half of a UTF-16 pair, or text such as \\ud800
_SURROGATE = re.compile("[\ud800-\udfff]")


def _jsonl_without_lone_surrogates(text: str) -> tuple[str, int, list[int]]:
    """jsonl text with line ends made \\n and each lone surrogate escape (`\\ud800` without its other half, which no
    UTF-8 text can hold: polars reads it as NUL, or refuses the whole file) written as U+FFFD; also how many were
    replaced and the 1-based lines that held one. A pair (`\\ud83d\\ude00`, an emoji) is kept, and so is escaped text
    (`\\\\ud800`); a line that is not valid JSON is left for the parser to report with its line number."""
    if "\r" not in text and not _SURROGATE_ESCAPE.search(text):
        return text, 0, []
    # a raw \r cannot be inside a JSON string (control characters are escaped), so it is always a line end
    lines, replaced, where = split_lines(text), 0, []
    for index, line in enumerate(lines):
        if not _SURROGATE_ESCAPE.search(line):
            continue
        try:  # json pairs halves into one character, so every surrogate left in its strings is a lone one
            dumped = json.dumps(json.loads(line), ensure_ascii=False)
        except (ValueError, RecursionError):
            continue
        found = len(_SURROGATE.findall(dumped))
        if found:
            lines[index] = _SURROGATE.sub("\ufffd", dumped)
            replaced, where = replaced + found, [*where, index + 1]
    return "\n".join(lines), replaced, where


def _read_jsonl(text: str, url: str) -> pl.DataFrame:
    try:
        return pl.read_ndjson(io.BytesIO(text.encode()), infer_schema_length=None)
    except (pl.exceptions.PolarsError, ValueError) as exc:
        try:  # every line is one JSON object, yet polars found no one type for some field (a number here, a list there)
            return _frame_of_mixed_fields(jsonl_objects(text))
        except InputDataError as problem:
            raise InputDataError(f"{url}: {problem}") from None
        except (pl.exceptions.PolarsError, ValueError, TypeError, OverflowError):
            raise InputDataError(f"{url}: cannot parse as jsonl ({str(exc).splitlines()[0]}); {JSONL_ADVICE}") from None


JSONL_ADVICE = "ingest.format is jsonl: one JSON object per line (set ingest.format if the file is another format)"


def jsonl_objects(text: str) -> list[dict[str, Any]]:
    """Each line's JSON object, blank lines skipped. Raises InputDataError naming the first line that is not one
    ('line N ...', lines ended by \\n, \\r\\n or \\r only: a JSON string may hold U+2028) with what to do."""
    lines = split_lines(text)
    last = max((n for n, line in enumerate(lines, start=1) if line.strip()), default=0)
    objects = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            cut = ", so the file may be cut off" if number == last else ""
            raise InputDataError(f"line {number} is not valid JSON: {exc.msg.removesuffix(' at')} at column "
                                 f"{exc.colno}{cut}; {JSONL_ADVICE}") from None
        if not isinstance(value, dict):
            raise InputDataError(f"line {number} holds a JSON {type(value).__name__}, not an object; {JSONL_ADVICE}")
        objects.append(value)
    return objects


def _frame_of_mixed_fields(rows: list[dict[str, Any]], nested: bool = False) -> pl.DataFrame:
    """jsonl rows that polars refuses because a field holds values of several JSON types (`"labels": 1` on one line,
    `"labels": [1, 2]` on another): such a field becomes text, each value as written (strings as they are, anything
    else as its JSON), which the label rules read back (`1`, `[1,2]` a set, `true`); a field of one JSON type (ints
    and floats are one: numbers) keeps it."""
    columns = {}
    for name in dict.fromkeys(name for row in rows for name in row):
        values = [row.get(name) for row in rows]
        if nested and any(isinstance(v, (list, dict)) for v in values):  # the objects as they are (see _read_table)
            columns[name] = pl.Series(name, values, dtype=pl.Object)
            continue
        kinds = {float if type(v) is int else type(v) for v in values if v is not None}
        if len(kinds) > 1:
            values = [v if v is None or isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in values]
        columns[name] = pl.Series(name, values)
    return pl.DataFrame(columns)


def _read_delimited(text: str, url: str, fmt: str, delimiter: str,
                    quote: str | None) -> tuple[pl.DataFrame, list[int]]:
    """csv/tsv text as string columns, empty values null, a blank line a row of nulls, and the 1-based line each row
    starts on (a quoted value may hold line ends). A record whose field count differs from the header's is refused
    naming its line, never padded with nulls or cut.

    polars reads text in which quoting cannot matter (no quote character in it) and whose lines end at \\n (polars
    does not end a line at a lone \\r): most files, fast. Python's csv module reads the rest, with its defaults,
    which are how pandas and spreadsheets read and write quotes: a quote opens a value only at its start, so
    `24" monitor` is text (polars refuses it) and `"a" b` is `a b`. Raises InputDataError naming the file."""
    if (quote is None or quote not in text) and text.count("\r") == text.count("\r\n"):
        problem = unquoted_ragged_line(text, fmt, delimiter, quote)
        if problem is None:
            try:
                frame = pl.read_csv(io.BytesIO(text.encode()), separator=delimiter, infer_schema=False,
                                    quote_char=None)
                lines = split_lines(text)  # one row a line after the header, the first line not blank
                header = next((i for i, line in enumerate(lines) if line), 0)
                return frame, list(range(header + 2, len(lines) + 1))
            except (pl.exceptions.PolarsError, ValueError) as exc:
                advice = _dialect_advice(fmt, delimiter, quote, quotes_in_text=False)
                problem = f"cannot parse as {fmt} ({str(exc).splitlines()[0]}); {advice}"
        raise InputDataError(f"{url}: {problem}")
    records, starts, problem = csv_records(text, fmt, delimiter, quote)
    if problem is not None:
        raise InputDataError(f"{url}: {problem}")
    header, rows = records[0], records[1:]
    rows = [row or [""] * len(header) for row in rows]  # a blank line: a row of nulls, as polars reads it
    columns = list(zip(*rows)) if rows else [()] * len(header)
    frame = pl.DataFrame([pl.Series(name, values, dtype=pl.String) for name, values in
                          zip(_unique_names(header), columns)])
    return frame.with_columns(pl.all().replace("", None)), starts[1:]  # empty is null, as polars reads it unquoted


_END = "\x00"  # NUL is removed from the text first: a record of it alone marks where the file ends


def csv_records(text: str, fmt: str, delimiter: str,
                quote: str | None) -> tuple[list[list[str]], list[int], str | None]:
    """The records of csv/tsv text as Python's csv module reads them (strict=False, doublequote: a quote opens a value
    only at its start, `""` inside is one quote, text after the closing quote is kept), the header first and leading
    blank lines dropped; the 1-based line each record starts on; and the first problem, 'line N ...; what to set', for
    a record whose field count is not the header's or a quoted value the file never closes (csv would silently read
    the rest of the file into it)."""
    csv.field_size_limit(2**31 - 1)  # one review may be megabytes; the default limit is 128 KiB
    ended = text if text.endswith(("\n", "\r")) else text + "\n"
    quoting = {"quotechar": quote, "doublequote": True} if quote else {"quoting": csv.QUOTE_NONE}
    reader = csv.reader(io.StringIO(ended + _END, newline=""), delimiter=delimiter, strict=False,
                        **quoting)  # type: ignore[call-overload]
    records, starts, start = [], [], 1  # starts: the line each record begins on (csv counts \n, \r\n, \r)
    for record in reader:
        records.append(record)
        starts.append(start)
        start = reader.line_num + 1
    if records[-1] != [_END]:  # the end marker was read into a value: its opening quote is never closed
        opened = count_line_ends(ended) - count_line_ends(records[-1][-1]) + 1
        return records, starts, (f"line {opened} opens a {quote}-quoted value that the file never closes; "
                                 f"{_plain_quotes(quote)}")
    first = next((i for i, record in enumerate(records) if record), len(records) - 1)
    records, starts = records[first:-1], starts[first:-1]
    width = len(records[0]) if records else 0
    for record, line in zip(records, starts):
        if record and len(record) != width:
            return records, starts, _field_count(line, len(record), width, fmt, delimiter, quote)
    return records or [[]], starts or [1], None


def _unique_names(header: list[str]) -> list[str]:
    """Column names as polars makes them unique: a repeated `a` becomes `a_duplicated_0`, then `a_duplicated_1`."""
    seen: dict[str, int] = {}
    names = []
    for name in header:
        repeats = seen.get(name)
        seen[name] = 0 if repeats is None else repeats + 1
        names.append(name if repeats is None else f"{name}_duplicated_{repeats}")
    return names


def _plain_quotes(quote: str | None) -> str:
    return f"if {quote} is plain text in this file (not quoting) set ingest.quote_char to empty (no quoting)"


def _dialect_advice(fmt: str, delimiter: str, quote: str | None, quotes_in_text: bool = True) -> str:
    """The settings that would split the file another way, worded for the dialect that failed (quote_char is named
    only when the text holds the quote character: in a file without one it changes nothing)."""
    name = {"\t": "tab", ",": "comma"}.get(delimiter, repr(delimiter))
    if quote is None:
        return (f"ingest.format is {fmt} with no quoting and a {name} between fields: if its values are quoted "
                "(to hold a line break or the delimiter) set ingest.quote_char: '\"', else set ingest.delimiter")
    split = ("if the file is tab-separated set ingest.format: tsv, or set ingest.delimiter" if fmt == "csv"
             and delimiter == "," else f"ingest.format is {fmt} with a {name} between fields: if the file uses "
             "another, set ingest.delimiter")
    if not quotes_in_text:
        return f"{split}; a value that holds the delimiter or a line break must be {quote}-quoted"
    return f"{split}; {_plain_quotes(quote)}"


def _field_count(line: int, fields: int, header: int, fmt: str, delimiter: str, quote: str | None,
                 quotes_in_text: bool = True) -> str:
    return (f"line {line} has {fields} field{'s' * (fields != 1)}, the header has {header}; "
            f"{_dialect_advice(fmt, delimiter, quote, quotes_in_text)}")


def unquoted_ragged_line(text: str, fmt: str, delimiter: str, quote: str | None = None) -> str | None:
    """'line N has X fields, the header has Y; ...' for the first non-blank line of text read without quoting (lines
    end at \\n; a \\r\\n leaves its \\r, which counts no field) whose field count is not the header's; None when all
    agree. `quote` (not in the text) words the advice. Vectorised (polars), as it runs on most files."""
    lines = pl.Series([text]).str.split("\n").explode()
    fields = lines.str.count_matches(delimiter, literal=True) + 1
    ragged = ((fields != fields[0]) & (lines.str.strip_chars().str.len_chars() > 0)).arg_true()
    if ragged.len() == 0:
        return None
    return _field_count(ragged[0] + 1, fields[ragged[0]], fields[0], fmt, delimiter, quote, quotes_in_text=False)


def _require_columns(df: pl.DataFrame, url: str, cfg: IngestConfig, task_columns: dict[str, str | None]) -> None:
    """Every column a setting names is in the file: the id and split columns, and the task's own."""
    wanted = {"ingest.id_column": cfg.id_column, "ingest.split_column": cfg.split_column, **task_columns}
    for field_name, column in wanted.items():
        if column is not None and column not in df.columns:
            raise InputDataError(
                f"{url}: {field_name} is {column!r} but the file has no such column; "
                f"its columns are: {', '.join(df.columns) or '(none)'}"
            )


def _as_string(df: pl.DataFrame, column: str | None, url: str) -> pl.Series | None:
    if column is None:
        return None
    series = df[column]
    if series.dtype != pl.String:
        if series.dtype.is_nested():
            raise InputDataError(f"{url}: column {column!r} holds {series.dtype}, not text")
        series = series.cast(pl.String)
    return series


# a whole number, with or without a zero fraction, as pandas writes an id column that became float ("1.0", "-2.00"),
# or with a bare point, as spreadsheets and printf's %#g write one ("1.")
_WHOLE_NUMBER = re.compile(r"^[+-]?(0|[1-9][0-9]*)(\.0*)?$")
# the version of the rule that writes ids (canonical_ids): in ingest's fingerprint when ingest.id_column is set, so
# that a committed night read under an older rule is read again when it is run again, not skipped with other ids
ID_RULE = 3


def canonical_ids(df: pl.DataFrame, column: str | None, url: str) -> pl.Series | None:
    """ingest.id_column as text, one spelling per number, so that an id is one document whatever format a night
    arrives in: integers as written; a float column (an int id column that a gap made float in pandas, or a jsonl
    `1.0`) with its whole numbers as integers; a text column of which every id is a whole number with a zero
    fraction ("1.0", "2.0": what pandas' to_csv writes for such a column) or a bare point ("1.") the same. Any
    other text is kept as written: leading zeros ("007"), and "1.0" in a column that also holds "A-7". A whole
    number is written without its sign when positive and "-0" is "0", as an integer column would write it: "+7",
    "7.0", "7." and "7" are one id.

    Shape: df.height, dtype String, nulls kept (the caller refuses them); None without an id column. Errors:
    InputDataError naming `url` for a nested column."""
    ids = _as_string(df, column, url)
    if ids is None or column is None:
        return ids
    source = df[column]
    if source.dtype.is_float():
        whole = source.is_finite() & (source == source.floor())  # beyond int64's range: kept as the float reads
        as_int = pl.coalesce(source.cast(pl.Int64, strict=False).cast(pl.String), ids)
        return pl.select(pl.when(source.is_nan()).then(None).when(whole).then(as_int).otherwise(ids)
                         ).to_series().alias(ids.name)
    present = ids.drop_nulls()
    if source.dtype == pl.String and present.len() and present.str.contains(_WHOLE_NUMBER.pattern).all():
        whole = ids.str.replace(r"\.0*$", "").str.strip_prefix("+")
        return pl.select(pl.when(whole == "-0").then(pl.lit("0")).otherwise(whole)).to_series().alias(ids.name)
    return ids


def _normalise_split(series: pl.Series | None, url: str) -> pl.Series | None:
    if series is None:
        return None
    lowered = series.str.strip_chars().str.to_lowercase()
    unknown = sorted(set(lowered.drop_nulls().unique().to_list()) - set(SPLIT_ALIASES) - {""})
    if unknown:
        raise InputDataError(
            f"{url}: ingest.split_column holds {unknown[:5]}; allowed values are train, validation, test "
            f"(or {', '.join(sorted(set(SPLIT_ALIASES) - {'train', 'validation', 'test'}))})"
        )
    return lowered.replace_strict(SPLIT_ALIASES, default=None, return_dtype=pl.String)


def _stable_ids(source_name: str, texts: pl.Series, seen: dict[str, int] | None = None) -> list[str]:
    """xxh3-128 of (source, text, occurrence of that text in the source): stable across reruns, unique. `seen`
    counts the texts of this source already in the partition (an append of a changed file of the same name), so
    that its ids continue from theirs instead of repeating them."""
    seen = dict(seen or {})
    ids = []
    for text in texts.fill_null("").to_list():
        occurrence = seen.get(text, 0)
        seen[text] = occurrence + 1
        ids.append(xxhash.xxh3_128_hexdigest(f"{source_name}\x00{occurrence}\x00{text}".encode()))
    return ids


def read_source(source: SourceFile, cfg: PipelineConfig) -> tuple[pl.DataFrame, SourceReport]:
    """One source file as raw-schema columns (without ingested_at/run_date) and what reading it found. The task
    (bert_pipeline/task) reads each row's text and label; ids, splits and provenance are the same for every task."""
    task, ingest = task_of(cfg), cfg.ingest
    fmt, compression = detect_format(source.url, ingest.format)
    if fmt == "txt" and (ingest.label_column or ingest.id_column or ingest.split_column):
        raise InputDataError(f"{source.url}: a txt source holds only text (one document per line); unset "
                             "ingest.label_column, ingest.id_column and ingest.split_column or use csv/tsv/jsonl")
    df, report = _read_table(source.url, fmt, compression, cfg, nested=task.nested_records)
    if df.height == 0:
        df = pl.DataFrame(schema={c: pl.String for c in (ingest.text_column, ingest.label_column, ingest.id_column,
                                                         ingest.split_column) if c})
    _require_columns(df, source.url, ingest, task.required_columns(cfg))
    row_lines = report.row_lines if report.row_lines and len(report.row_lines) == df.height else None
    read = task.read_rows(df, cfg, source.url, row_lines)
    report.task_counts, report.task_notes = read.counts, read.notes
    for note in read.notes:
        log.warning("ingest: %s", note)
    text, labels = read.text, read.label
    ids = canonical_ids(df, ingest.id_column, source.url)
    if ids is not None and ids.null_count():
        empty = ids.is_null().arg_true().head(LINES_NAMED).to_list()
        raise InputDataError(f"{source.url}: ingest.id_column {ingest.id_column!r} has {ids.null_count()} empty ids, "
                             f"at {_places(empty, row_lines)}: give every row an id, or leave ingest.id_column empty "
                             "(doc_ids are then derived from the text). Nothing was written")
    split = _normalise_split(_as_string(df, ingest.split_column, source.url), source.url)
    rows = df.height
    out = pl.DataFrame({
        "doc_id": ids if ids is not None else pl.Series(_stable_ids(source.name, text), dtype=pl.String),
        "text": text,
        "label": labels,
        "split": split if split is not None else pl.Series([None] * rows, dtype=pl.String),
        "source": pl.Series([source.name] * rows, dtype=pl.String),
        "source_row": pl.Series(range(rows), dtype=pl.Int64),
        "source_line": pl.Series(row_lines or [None] * rows, dtype=pl.Int64),  # for messages; not written
        MEMBER_LINES: pl.Series([json.dumps(m) if m else None for m in read.member_lines or [None] * rows],
                                dtype=pl.String),  # for messages; not written
    })
    replaced = pl.lit(report.replaced > 0)
    out = out.with_columns(invalid_utf8=replaced & pl.col("text").fill_null("").str.contains("\ufffd"))
    if report.surrogates:  # said where the user looks (the stage log, the Prefect run), not only in the manifest
        log.warning("ingest: %s", _surrogate_warning(source.name, report))
    return out, report


def _places(rows: list[int], row_lines: list[int] | None) -> str:
    """'line 7, line 12' where rows start on known lines (row_lines), else 'row 5, row 9' (1-based data rows)."""
    return ", ".join(line_or_row(row, row_lines[row] if row_lines else None) for row in rows)


def place(source: str, row: int, line: int | None) -> str:
    """'reviews.csv line 14', or 'reviews.parquet row 3' where rows are not lines (`errors.line_or_row`)."""
    return f"{source} {line_or_row(row, line)}"


def _surrogate_warning(name: str, report: SourceReport) -> str:
    lines = ", ".join(map(str, report.surrogate_lines[:LINES_NAMED]))
    hidden = len(report.surrogate_lines) - LINES_NAMED
    more = f" and {hidden} more" if hidden > 0 else ""
    return (f"{name}: {report.surrogates} lone surrogate escape(s) (such as \\ud800 without its pair: not a "
            f"character) replaced by U+FFFD and the rows flagged invalid_utf8, on line(s) {lines}{more}")


MEMBER_LINES = "member_lines"  # JSON {label member: line} where a row spans lines (RowsRead.member_lines)
TRANSIENT = ("source_line", MEMBER_LINES)  # columns of tonight's rows kept for messages, never written
EXACT_KEYS = ["doc_id", "text", "label"]  # a row that repeats another in all three is a copy of it, not a document


def without_exact_repeats(rows: pl.DataFrame, id_column: str | None,
                          committed: pl.DataFrame | None = None) -> tuple[pl.DataFrame, int, list[str]]:
    """(rows less those that repeat an earlier one exactly: the same given id, text and label, as a file
    concatenated twice or an export that overlaps the one before leaves them; the first is kept, and so is every
    row that repeats none; how many were left out; [the warning saying so, naming where the first repeat is]).
    `committed`: the partition's committed rows (ingest.on_existing: append), which tonight's rows may repeat too.
    Without ingest.id_column nothing is left out: a derived doc_id counts a text's occurrences, so a repeated text
    is another document (curate then rejects it as an exact duplicate, keeping the row)."""
    if id_column is None or rows.is_empty():
        return rows, 0, []
    fresh = pl.struct(EXACT_KEYS).is_first_distinct()
    kept = rows.filter(fresh)
    if committed is not None and committed.height:
        kept = kept.join(committed.select(EXACT_KEYS).unique(), on=EXACT_KEYS, how="anti", nulls_equal=True,
                         maintain_order="left")
    left_out = rows.height - kept.height
    if not left_out:
        return rows, 0, []
    first = rows.join(kept.select("source", "source_row"), on=["source", "source_row"], how="anti",
                      maintain_order="left").row(0, named=True)
    warning = (f"{left_out:,} row(s) repeat an earlier row exactly (ingest.id_column {id_column!r}, text and label), "
               f"as a file concatenated twice or an export that overlaps the one before leaves them, the first at "
               f"{place(first['source'], first['source_row'], first['source_line'])} (id {first['doc_id']!r}): one "
               "of each is kept, the copies are left out (`repeated_rows` in the raw manifest)")
    log.warning("ingest: %s", warning)
    return kept, left_out, [warning]


def _check_unique_ids(df: pl.DataFrame, id_column: str | None, committed: int = 0) -> None:
    """Refuse ids that several rows share with other texts or labels (exact copies are gone: without_exact_repeats),
    naming an example and two rows that hold it (`place`: file and line, or row where rows are not lines). The first
    `committed` rows of df are the partition's committed rows (ingest.on_existing: append)."""
    duplicated = df.with_row_index("at").filter(pl.col("doc_id").is_duplicated())
    if duplicated.height:
        examples = duplicated["doc_id"].unique(maintain_order=True).head(5).to_list()
        holders = duplicated.filter(pl.col("doc_id") == examples[0]).head(2)
        places = [place(source, row, line) + (" (already committed)" if at < committed else "")
                  for at, source, row, line in holders.select("at", "source", "source_row", "source_line").iter_rows()]
        where = f"the ids in ingest.id_column {id_column!r}" if id_column else "the derived doc_ids"
        scope = " across the committed partition and tonight's sources" if committed else ""
        fix = ("give each document one id, remove the repeated rows from the source, or leave ingest.id_column empty "
               "(doc_ids are then derived from the text)" if id_column else "report it: derived doc_ids include "
               "the source and row")
        raise InputDataError(f"{where} are not unique{scope}: {duplicated.height} rows share ids such as {examples}; "
                             f"{examples[0]!r} is {places[0]} and {places[1]} with other texts or labels. An id names "
                             "one document, so "
                             f"these rows cannot all be kept: {fix}. Nothing was written")


def check_labels(raw: pl.DataFrame, lake: Lake, cfg: PipelineConfig) -> tuple[dict[str, int], list[str]]:
    """(Tonight's rows per label (a multi-label row counts for each of its labels; an NER row for each entity, per
    type), warnings), after refusing tonight's spellings that collide with each other or with an earlier night's
    labels (from the raw manifests), naming both and where each was seen. Warned: spellings that collide on committed
    nights only (tonight cannot change them), labels that are numbers beside labels that are words, labels that begin
    others (`labels.look_alike_warnings`), logged."""
    task = task_of(cfg)
    labelled = raw.filter(pl.col("label").is_not_null()).unique("label", keep="first", maintain_order=True)
    counts: dict[str, int] = {}
    for value, rows in raw["label"].drop_nulls().value_counts().iter_rows():  # per distinct value (or set)
        for label in task.label_members(value):
            counts[label] = counts.get(label, 0) + rows
    counts = dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
    where: dict[str, str] = {}
    for value, source, row, line, members in labelled.select("label", "source", "source_row", "source_line",
                                                              MEMBER_LINES).iter_rows():
        at = json.loads(members) if members else {}  # a CoNLL sentence: the line of each type's first entity
        for label in task.label_members(value):
            where.setdefault(label, place(source, row, at.get(label, line)))
    held: set[str] = set()  # the other nights' labels
    for date in lake.run_dates("raw"):
        manifest = lake.read_manifest("raw", date) or {}
        if date != cfg.run_date:
            for label in (manifest.get("counts") or {}).get("labels") or {}:
                where.setdefault(label, f"run_date={date}")
                held.add(label)
    setting, map_setting = task.label_setting(cfg), task.label_map_setting
    clashes = spelling_clashes(where)
    tonight = [group for group in clashes if set(group) & set(counts)]
    if tonight:
        raise InputDataError(spelling_message(tonight, where, setting, map_setting, counts, held)
                             + ". Nothing was written.")
    # spellings apart on committed nights only (a lake written before label_key joined them): tonight cannot change
    # them, so they are told, not refused; training refuses them until those nights are ingested again with the map
    committed_only = [group for group in clashes if group not in tonight]
    warnings = [f"{spelling_message(committed_only, where, setting, map_setting, counts, held)}, and run the nights "
                "that hold the other spellings again from ingest: training refuses them until then"
                ] if committed_only else []
    warnings += look_alike_warnings(where, setting, map_setting, new=set(counts) - held)
    for warning in warnings:
        log.warning("ingest: %s", warning)
    return {str(k): int(v) for k, v in counts.items()}, warnings


def check_lake_task(lake: Lake, cfg: PipelineConfig) -> None:
    """Refuse to ingest into a task's lake whose committed nights hold another task's labels (a class is not a span
    list): InputDataError naming both tasks and the setting. Each task has its own lake in data_root
    (`manifests.lake_root`), so this happens only where an entity lake was written at the top of data_root before
    one data_root could hold both tasks. Nights written before tasks existed are classification."""
    for date in lake.run_dates("raw"):
        held = (lake.read_manifest("raw", date) or {}).get("task", "classification")
        if held != cfg.task:
            raise InputDataError(f"{lake.root} holds task: {held} (run_date={date}), where the lake of task: "
                                 f"{cfg.task} would be: it was written at the top of data_root before one data_root "
                                 f"could hold both tasks. Set data_root to another folder for {cfg.task} (e.g. "
                                 f"{cfg.data_root}-{cfg.task}). Nothing was written.")


def settings_hash(cfg: PipelineConfig, *, without: frozenset[str] = frozenset()) -> str:
    """cfg.fingerprint("ingest") without ingest.on_existing, which says what to do with a committed partition, not
    how to read the sources: setting it for a retry does not make a committed night look changed. `without`: other
    ingest keys left out (`reading_hash`)."""
    return _hash_of(_ingest_settings(cfg, without))


def _ingest_settings(cfg: PipelineConfig, without: frozenset[str]) -> dict[str, Any]:
    """The settings `settings_hash` hashes, as JSON-able values."""
    # an empty label_map is left out too, so that nights committed before the setting existed keep their fingerprints
    unset = {"on_existing", *without} | (set() if cfg.ingest.label_map else {"label_map"})
    settings: dict[str, Any] = {"ingest": cfg.ingest.model_dump(mode="json", exclude=unset)}
    if cfg.task != "classification":  # so that a classification lake's committed nights keep their fingerprints
        settings |= {"task": cfg.task, "ner": cfg.ner.model_dump(mode="json", exclude=NOT_FINGERPRINTED["ner"])}
    if task_of(cfg).read_rule is not None:  # a night read under an older rule is read again when it is run again
        settings["read_rule"] = task_of(cfg).read_rule
    if cfg.ingest.id_column:
        settings["id_rule"] = ID_RULE
    return settings


def _hash_of(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


# how tonight reads a source, whichever sources they are: shard_rows cuts the rows into files and reads nothing
_NOT_READING = frozenset({"sources", "shard_rows"})


def reading_hash(cfg: PipelineConfig) -> str:
    """How tonight reads a source, whichever sources they are: `settings_hash` without ingest.sources (and
    ingest.shard_rows, which cuts the rows into files and reads nothing). A manifest
    records it (`read_under`), and the settings behind it (`readings`), so that a night kept as committed can tell
    rows read under other settings, and which setting differs."""
    return settings_hash(cfg, without=_NOT_READING)


def reading_settings(cfg: PipelineConfig) -> dict[str, Any]:
    """The settings `reading_hash` hashes: {"ingest": {...}, and "task", "ner", "read_rule", "id_rule" where they
    apply}; `_hash_of` of it is `reading_hash(cfg)`."""
    return _ingest_settings(cfg, _NOT_READING)


def _same_content(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two records of a source (a manifest's `inputs` entry merged with its `files` entry) hold the same
    bytes: by content hash where both have one, else by size and version (mtime or ETag)."""
    if a.get("content_xxh3") and b.get("content_xxh3"):
        return a["content_xxh3"] == b["content_xxh3"]
    return (a.get("size"), a.get("version")) == (b.get("size"), b.get("version"))


def committed_sources(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The sources a raw manifest records, one dict each: name, url, size, version, and rows and content_xxh3 where
    recorded (manifests written before content hashes have size and version only)."""
    files = manifest.get("files") or []
    sources = []
    for index, entry in enumerate(manifest.get("inputs") or []):
        if not isinstance(entry, dict):
            continue
        name = entry.get("name") or entry.get("url")
        read = files[index] if index < len(files) and files[index].get("source") == name else {}
        sources.append({**entry, "name": name, **{k: read[k] for k in ("rows", "content_xxh3") if k in read}})
    return sources


def _already_committed(source: dict[str, Any], committed: list[dict[str, Any]]) -> bool:
    return any(c["name"] == source["name"] and _same_content(c, source) for c in committed)


def _describe(sources: list[dict[str, Any]], committed: list[dict[str, Any]] | None = None) -> str:
    """'a.csv (3 rows), b.csv (2 rows, changed since it was committed)' for a message, at most five names; with
    `committed`, a file of a committed name with other contents says so."""
    names = []
    for source in sources[:5]:
        notes = [f"{source['rows']} row{'s' * (source['rows'] != 1)}"] if "rows" in source else []
        if committed and any(c["name"] == source["name"] for c in committed) and not _already_committed(source,
                                                                                                     committed):
            notes.append("changed since it was committed")
        names.append(source["name"] + (f" ({', '.join(notes)})" if notes else ""))
    return ", ".join(names) + (f" and {len(sources) - 5} more" if len(sources) > 5 else "")


def _other_sources(run_date: str, committed: list[dict[str, Any]], tonight: list[dict[str, Any]]) -> str:
    return (f"raw run_date={run_date} is already committed from {_describe(committed)}; tonight's sources "
            f"are {_describe(tonight, committed)}. Ingesting them would replace the committed rows, which would then "
            "disappear from raw, curated and predictions. Set ingest.on_existing: append to add tonight's rows to "
            "the partition (the committed rows and their doc_ids stay), or ingest.on_existing: replace to drop the "
            "committed rows for tonight's; or ingest into another run_date")


def _settings_drift(cfg: PipelineConfig, manifest: dict[str, Any]) -> list[str]:
    """[a warning] (logged) when the committed partition was read under other reading settings than tonight's and
    tonight keeps its rows as they are (a skip because it holds tonight's sources among others, or an append): e.g.
    another ingest.text_column, or a newer reading rule of the task (a character-level CoNLL file joined without
    spaces); [] when they are the same or unknown (UNRECORDED: rows committed by an older version, whose manifest
    keeps that mark after an append, so it never claims them for tonight's settings). The warning names the settings
    that differ where the manifest recorded them (`readings`), else the reading hashes. Only replace reads them
    again."""
    tonight = reading_hash(cfg)
    others = [h for h in _read_under(manifest) if h not in (tonight, UNRECORDED)]
    if not others:
        return []
    recorded = manifest.get("readings") or {}
    named = [_differences(recorded[h], reading_settings(cfg), ("then", "tonight")) for h in others if h in recorded]
    what = ("; ".join(dict.fromkeys(d for d in named if d)) if len(named) == len(others)
            else f"reading hash {', '.join(others)}, tonight {tonight}: another ingest or ner setting, or a newer "
                 "reading rule of this version")
    warning = (f"raw run_date={cfg.run_date}: committed rows of it were read under other ingest settings than "
               f"tonight's ({what}); they stay as they were read. To read the night again under tonight's "
               "settings, run it with all of its sources and ingest.on_existing: replace")
    log.warning("ingest: %s", warning)
    return [warning]


_RULES = {"read_rule": "the task's reading rule", "id_rule": "the doc_id rule"}  # versions of this code, not settings


def _differences(one: dict[str, Any], other: dict[str, Any], names: tuple[str, str]) -> str:
    """'ingest.label_map.POS: "pos" then, unset tonight, ner.scheme: ...' (names ("then", "tonight")) for the
    dotted keys whose values differ between two `reading_settings`."""
    first, second = _dotted(one), _dotted(other)
    parts = []
    for key in sorted(first.keys() | second.keys()):
        if first.get(key, _UNSET) != second.get(key, _UNSET):
            parts.append(f"{_RULES.get(key, key)}: {_shown(first.get(key, _UNSET))} {names[0]}, "
                         f"{_shown(second.get(key, _UNSET))} {names[1]}")
    return ", ".join(parts)


def mixed_readings(manifest: dict[str, Any]) -> list[str]:
    """[a note] for the report when a committed raw partition holds rows read under several reading settings (an
    append under other settings), naming what differs between the readings where the manifest recorded them; []
    when its rows were read one way (or the others are unrecorded)."""
    read_under = [h for h in _read_under(manifest) if h != UNRECORDED]
    if len(read_under) < 2:
        return []
    recorded = manifest.get("readings") or {}
    first = next((h for h in read_under if h in recorded), None)
    named = [_differences(recorded[first], recorded[h], ("in one reading", "in another"))
             for h in read_under if first is not None and h != first and h in recorded]
    what = ("; ".join(named) if len(named) == len(read_under) - 1
            else f"reading hashes {', '.join(read_under)}")
    return [f"raw run_date={manifest.get('run_date')} holds rows read under {len(read_under)} ingest settings, "
            f"appended under other settings than the committed rows ({what}). To read them one way, run the "
            "night with all of its sources and ingest.on_existing: replace"]


_UNSET = object()


def _dotted(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            flat |= _dotted(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _shown(value: Any) -> str:
    if value is _UNSET:
        return "unset"
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


# in read_under: rows committed before manifests recorded how they were read (their settings are unknown)
UNRECORDED = "unrecorded"


def _read_under(manifest: dict[str, Any]) -> list[str]:
    """The reading hashes (`reading_hash`) a committed partition's rows were read under: several after an append
    under other settings; UNRECORDED for rows of a manifest written before they were recorded."""
    return list(manifest.get("read_under") or [UNRECORDED])


def skipped_warnings(manifest: dict[str, Any]) -> dict[str, list[str]]:
    """The committed night's label warnings for a skipped rerun's summary, logged again ({} when none)."""
    warnings = manifest.get("label_warnings") or []
    for warning in warnings:
        log.warning("ingest: %s", warning)
    return {"warnings": warnings} if warnings else {}


def run_ingest(cfg: PipelineConfig) -> dict[str, Any]:
    """Read every source into raw/run_date=...; skipped when the committed partition has this fingerprint, or holds
    every one of tonight's sources (by name and content) among others (a night retried after another appended).

    A partition committed from other sources (or other contents of the same files) is refused before anything is
    written, unless ingest.on_existing is append (add tonight's new sources' rows) or replace (drop the committed
    rows). The same sources with another config are read again in place. Raises InputDataError for a bad input or
    that refusal."""
    lake = Lake.of(cfg)
    folder = lake.partition("raw", cfg.run_date)
    sources = expand_sources(cfg.ingest.sources)
    inputs = [storage.file_identity(s.url) | {"name": s.name} for s in sources]
    stage_fp = fingerprint("ingest", settings_hash(cfg), inputs)
    manifest = lake.read_manifest("raw", cfg.run_date)
    if manifest_matches(manifest, stage_fp, folder):
        return {"stage": "ingest", "skipped": True, "partition": folder, **manifest["counts"],
                **skipped_warnings(manifest)}
    check_lake_task(lake, cfg)
    task = task_of(cfg)
    task.require(cfg, "ingest")

    frames, per_file, warnings = [], [], []
    for source in sources:  # read (and so validate) every source before writing anything
        frame, report = read_source(source, cfg)
        frames.append(frame)
        per_file.append({"source": source.name, "rows": frame.height, "invalid_utf8_replaced": report.replaced,
                         "content_xxh3": report.content_xxh3, **report.task_counts})
        if report.surrogates:
            per_file[-1] |= {"lone_surrogates": report.surrogates,
                             "lone_surrogate_lines": report.surrogate_lines[:LINES_NAMED]}
            warnings.append(_surrogate_warning(source.name, report))
        warnings += report.task_notes
    tonight = [entry | read for entry, read in zip(inputs, per_file)]
    if manifest is not None:
        committed = committed_sources(manifest)
        held = all(_already_committed(s, committed) for s in tonight)
        same = held and len(committed) == len(tonight)
        if not same and held and cfg.ingest.on_existing != "replace":  # e.g. night 1 retried after night 2 appended
            kept = skipped_warnings(manifest).get("warnings", []) + _settings_drift(cfg, manifest)
            return {"stage": "ingest", "skipped": True, "partition": folder, **manifest["counts"],
                    **({"warnings": kept} if kept else {}),
                    "reason": f"tonight's sources are already in the committed partition, which also holds "
                              f"{_describe([c for c in committed if not _already_committed(c, tonight)])}"}
        if not same and cfg.ingest.on_existing == "refuse":
            raise InputDataError(_other_sources(cfg.run_date, committed, tonight))
        if not same and cfg.ingest.on_existing == "append":
            return _append(cfg, lake, manifest, stage_fp, frames, tonight, warnings + _settings_drift(cfg, manifest))
        if not same:
            warnings.append(f"ingest.on_existing: replace: the rows committed from {_describe(committed)} "
                            f"were replaced by tonight's from {_describe(tonight, committed)}")
            log.warning("ingest: %s", warnings[-1])

    ingested_at = dt.datetime.now(dt.timezone.utc)
    raw = pl.concat(frames, how="vertical").with_columns(
        ingested_at=pl.lit(ingested_at, dtype=pl.Datetime("us", "UTC")))
    raw, repeated, said = without_exact_repeats(raw, cfg.ingest.id_column)
    warnings += said
    _check_unique_ids(raw, cfg.ingest.id_column)
    labels, label_warnings = check_labels(raw, lake, cfg)
    warnings += label_warnings

    writer = lake.writer("raw", cfg.run_date, stage_fp).begin()
    table = raw.drop(*TRANSIENT).to_arrow().cast(RAW_SCHEMA)
    for index, start in enumerate(range(0, max(table.num_rows, 1), cfg.ingest.shard_rows)):
        storage.write_parquet_atomic(writer.add(shard_name(index)), table.slice(start, cfg.ingest.shard_rows))
    counts = {
        "rows": raw.height,
        "labelled_rows": raw.height - raw["label"].null_count(),
        "labels": labels,
        "invalid_utf8_rows": int(raw["invalid_utf8"].sum()),
        "invalid_utf8_replaced": sum(f["invalid_utf8_replaced"] for f in per_file),
        "lone_surrogates": sum(f.get("lone_surrogates", 0) for f in per_file),
        **({"repeated_rows": repeated} if repeated else {}),
        **_task_counts(per_file),
    }
    writer.commit(stage="ingest", run_date=cfg.run_date, inputs=inputs, files=_stamped(per_file, ingested_at),
                  config_hash=settings_hash(cfg), read_under=[reading_hash(cfg)],
                  readings={reading_hash(cfg): reading_settings(cfg)}, counts=counts, task=cfg.task,
                  label_warnings=label_warnings)
    return {"stage": "ingest", "skipped": False, "partition": folder, **counts,
            **({"warnings": warnings} if warnings else {})}


def _task_counts(per_file: list[dict[str, Any]]) -> dict[str, int]:
    """The task's reading counts (entities, trimmed_spans ...) summed over the files' manifest entries."""
    known = {"rows", "invalid_utf8_replaced", "lone_surrogates", "size"}
    total: collections.Counter[str] = collections.Counter()
    for entry in per_file:
        total.update({k: v for k, v in entry.items() if k not in known and type(v) is int})
    return dict(total)


def _stamped(per_file: list[dict[str, Any]], ingested_at: dt.datetime) -> list[dict[str, Any]]:
    return [entry | {"ingested_at": ingested_at.isoformat(timespec="seconds")} for entry in per_file]


def _committed_rows(lake: Lake, run_date: str, manifest: dict[str, Any]) -> pl.DataFrame:
    """The committed raw rows' doc_id, text, label, source and source_row, in shard order."""
    columns = ["doc_id", "text", "label", "source", "source_row"]
    tables = [storage.read_parquet(url, columns=columns) for url in lake.shard_urls("raw", run_date, manifest)]
    table = pa.concat_tables(tables) if tables else RAW_SCHEMA.empty_table().select(columns)
    return pl.from_arrow(table)  # type: ignore[return-value]


def _append(cfg: PipelineConfig, lake: Lake, manifest: dict[str, Any], stage_fp: str, frames: list[pl.DataFrame],
            tonight: list[dict[str, Any]], warnings: list[str]) -> dict[str, Any]:
    """ingest.on_existing: append. Tonight's sources that the partition does not already hold (by name and content;
    run_ingest skips a night whose sources it holds all of) are written as new shards after the committed ones,
    which stay as they are (rows, doc_ids, ingested_at); the manifest, written last, lists both, so a reader sees the
    old partition or the whole new one. Ids must be unique across the whole partition (InputDataError naming the id
    and both rows); a changed file of an already committed name continues its derived ids' occurrence count."""
    committed = committed_sources(manifest)
    new = [(frame, source) for frame, source in zip(frames, tonight) if not _already_committed(source, committed)]
    old = _committed_rows(lake, cfg.run_date, manifest)
    frames = []
    for frame, source in new:
        earlier = old.filter(pl.col("source") == source["name"])
        if cfg.ingest.id_column is None and earlier.height:
            seen = collections.Counter(earlier["text"].fill_null("").to_list())
            frame = frame.with_columns(doc_id=pl.Series(_stable_ids(source["name"], frame["text"], seen),
                                                        dtype=pl.String))
        frames.append(frame)
    ingested_at = dt.datetime.now(dt.timezone.utc)
    added = pl.concat(frames, how="vertical").with_columns(
        ingested_at=pl.lit(ingested_at, dtype=pl.Datetime("us", "UTC")))
    added, repeated, said = without_exact_repeats(added, cfg.ingest.id_column, old)
    warnings = warnings + said
    keys = ["doc_id", "text", "label", "source", "source_row"]
    lines = [pl.lit(None, dtype=pl.Int64).alias("source_line"),  # committed rows: their lines are not kept
             pl.lit(None, dtype=pl.String).alias(MEMBER_LINES)]
    whole = pl.concat([old.select(*keys, *lines), added.select(*keys, *TRANSIENT)], how="vertical")
    _check_unique_ids(whole, cfg.ingest.id_column, committed=old.height)
    labels, label_warnings = check_labels(whole, lake, cfg)
    warnings += label_warnings

    outputs = list(manifest["outputs"])
    writer = lake.writer("raw", cfg.run_date, stage_fp, outputs=outputs)  # no begin(): the old commit stands till ours
    table, index = added.drop(*TRANSIENT).to_arrow().cast(RAW_SCHEMA), len(outputs)
    for start in range(0, table.num_rows, cfg.ingest.shard_rows):
        while shard_name(index) in outputs:
            index += 1
        storage.write_parquet_atomic(writer.add(shard_name(index)), table.slice(start, cfg.ingest.shard_rows))
    before = manifest["counts"]
    counts = {
        "rows": whole.height,
        "labelled_rows": whole.height - whole["label"].null_count(),
        "labels": labels,
        "invalid_utf8_rows": int(before.get("invalid_utf8_rows", 0)) + int(added["invalid_utf8"].sum()),
        "invalid_utf8_replaced": int(before.get("invalid_utf8_replaced", 0))
        + sum(s["invalid_utf8_replaced"] for _, s in new),
        "lone_surrogates": int(before.get("lone_surrogates", 0)) + sum(s.get("lone_surrogates", 0) for _, s in new),
        **({"repeated_rows": int(before.get("repeated_rows", 0)) + repeated}
           if repeated or before.get("repeated_rows") else {}),
        **_task_counts(list(manifest.get("files") or []) + [s for _, s in new]),
    }
    read_under = sorted(set(_read_under(manifest)) | {reading_hash(cfg)})  # several when appended under others
    readings = (manifest.get("readings") or {}) | {reading_hash(cfg): reading_settings(cfg)}
    added_inputs = [{k: s[k] for k in ("url", "size", "version", "name")} for _, s in new]
    added_files = _stamped([{k: v for k, v in s.items() if k not in ("url", "size", "version", "name")}
                            for _, s in new], ingested_at)
    writer.commit(stage="ingest", run_date=cfg.run_date, inputs=list(manifest.get("inputs") or []) + added_inputs,
                  files=list(manifest.get("files") or []) + added_files, config_hash=settings_hash(cfg),
                  read_under=read_under, readings=readings, counts=counts, appended=[s["name"] for _, s in new],
                  task=cfg.task, label_warnings=label_warnings)
    note = (f"ingest.on_existing: append: {added.height} rows from {_describe([s for _, s in new], committed)} "
            f"added to the {old.height} committed")
    log.info("ingest: %s", note)
    return {"stage": "ingest", "skipped": False, "partition": lake.partition("raw", cfg.run_date), **counts,
            "appended_rows": added.height, **({"warnings": warnings} if warnings else {})}
