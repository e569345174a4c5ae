"""Ingest: read every source (csv, tsv, jsonl, parquet, txt; gz/zst/bz2/xz too) into the raw partition.

Each row gets a stable `doc_id`, its `source` and `source_row`; invalid UTF-8 is replaced with U+FFFD, counted in the
manifest and flagged per row. Every problem with an input names the file, the line and the setting that would help:
polars reads every file, and only when it refuses one is the text checked line by line (csv, json) to say where.

TSV has no quoting (IANA text/tab-separated-values): a `"` in a value is text, so `24" monitor` stays as written.
CSV quotes with `"`. ingest.delimiter and ingest.quote_char override either.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from dataclasses import dataclass
from typing import Any

import fsspec
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from bert_pipeline import storage
from bert_pipeline.config import IngestConfig, PipelineConfig
from bert_pipeline.errors import InputDataError
from bert_pipeline.labels import canonical_labels, check_label_spellings, label_set
from bert_pipeline.lake import Lake, fingerprint, manifest_matches, shard_name

COMPRESSION_SUFFIXES = {".gz": "gzip", ".zst": "zstd", ".bz2": "bz2", ".xz": "xz"}
FORMAT_BY_EXTENSION = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
    ".parquet": "parquet", ".pq": "parquet", ".txt": "txt", ".text": "txt",
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
])  # run_date is the hive folder's name, not a column (see bert_pipeline/lake.py)


@dataclass(frozen=True)
class SourceFile:
    url: str  # what we open
    name: str  # what rows record as `source` and what doc_ids derive from: the URL as the config wrote it


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


def detect_format(url: str, configured: str) -> tuple[str, str | None]:
    """(format, compression) from the configured format or the file's extension."""
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
    raise InputDataError(
        f"{url}: cannot tell the format from the extension; set ingest.format to one of "
        "csv, tsv, jsonl, parquet, txt"
    )


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
    """Decode bytes as UTF-16 (when it has a BOM) or UTF-8; return the text and how many bad sequences were replaced."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        text = data.decode("utf-16", errors="replace")
        return text, text.count("\ufffd")
    if data[:3] == b"\xef\xbb\xbf":
        data = data[3:]
    text = data.decode("utf-8", errors="replace")
    # errors="replace" emits one U+FFFD per bad sequence; genuine U+FFFD characters are the bytes EF BF BD.
    return text, text.count("\ufffd") - data.count(b"\xef\xbf\xbd")


def csv_dialect(fmt: str, cfg: IngestConfig) -> tuple[str, str | None]:
    """(delimiter, quote character or None for no quoting) of a csv or tsv source: the settings, else the format's."""
    delimiter = cfg.delimiter or ("\t" if fmt == "tsv" else ",")
    quote = ('"' if fmt == "csv" else None) if cfg.quote_char == "auto" else cfg.quote_char
    return delimiter, quote


def _read_table(url: str, fmt: str, compression: str | None, cfg: IngestConfig) -> tuple[pl.DataFrame, int]:
    data = read_raw_bytes(url, compression)
    if fmt == "parquet":
        try:
            return pl.from_arrow(pq.read_table(io.BytesIO(data))), 0  # type: ignore[return-value]
        except pa.ArrowInvalid as exc:
            raise InputDataError(f"{url}: not a readable parquet file: {exc}") from exc
    text, replaced = decode_text(data)
    text = text.replace("\x00", "")  # NUL bytes break CSV parsers and are never meaningful text
    if not text.strip():  # an empty file is a source with no rows, not an error
        return pl.DataFrame(schema={cfg.text_column: pl.String}), replaced
    if fmt == "txt":
        return pl.DataFrame({cfg.text_column: text.splitlines()}, schema={cfg.text_column: pl.String}), replaced
    if fmt == "jsonl":
        return _read_jsonl(text, url), replaced
    return _read_delimited(text, url, fmt, *csv_dialect(fmt, cfg)), replaced


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
    ('line N ...') with what to do."""
    last = text.rstrip().count("\n") + 1
    objects = []
    for number, line in enumerate(text.split("\n"), start=1):  # "\n" only, as polars: a JSON string may hold U+2028
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


def _frame_of_mixed_fields(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """jsonl rows that polars refuses because a field holds values of several JSON types (`"labels": 1` on one line,
    `"labels": [1, 2]` on another): such a field becomes text, each value as written (strings as they are, anything
    else as its JSON), which the label rules read back (`1`, `[1,2]` a set, `true`); a field of one JSON type (ints
    and floats are one: numbers) keeps it."""
    columns = {}
    for name in dict.fromkeys(name for row in rows for name in row):
        values = [row.get(name) for row in rows]
        kinds = {float if type(v) is int else type(v) for v in values if v is not None}
        if len(kinds) > 1:
            values = [v if v is None or isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in values]
        columns[name] = pl.Series(name, values)
    return pl.DataFrame(columns)


def _read_delimited(text: str, url: str, fmt: str, delimiter: str, quote: str | None) -> pl.DataFrame:
    """csv/tsv text as string columns. Without quoting every line is one record, so a line whose field count differs
    from the header's is refused here, before polars would fill the missing fields with nulls."""
    problem = unquoted_ragged_line(text, fmt, delimiter) if quote is None else None
    if problem is None:
        try:
            return pl.read_csv(io.BytesIO(text.encode()), separator=delimiter, infer_schema=False, quote_char=quote)
        except (pl.exceptions.PolarsError, ValueError) as exc:
            problem = delimited_problem(text, fmt, delimiter, quote) or (
                f"cannot parse as {fmt} ({str(exc).splitlines()[0]}); {_dialect_advice(fmt, delimiter, quote)}")
    raise InputDataError(f"{url}: {problem}")


def _dialect_advice(fmt: str, delimiter: str, quote: str | None) -> str:
    """The settings that would split the file another way, worded for the dialect that failed."""
    name = {"\t": "tab", ",": "comma"}.get(delimiter, repr(delimiter))
    if quote is None:
        return (f"ingest.format is {fmt} with no quoting and a {name} between fields: if its values are quoted "
                "(to hold a line break or the delimiter) set ingest.quote_char: '\"', else set ingest.delimiter")
    if fmt == "csv" and delimiter == ",":
        return "if the file is tab-separated set ingest.format: tsv, or set ingest.delimiter / ingest.quote_char"
    return (f"ingest.format is {fmt} with a {name} between fields and {quote} quoting: set ingest.delimiter, or "
            "ingest.quote_char (empty = no quoting)")


def _field_count(line: int, fields: int, header: int, fmt: str, delimiter: str, quote: str | None) -> str:
    return (f"line {line} has {fields} field{'s' * (fields != 1)}, the header has {header}; "
            f"{_dialect_advice(fmt, delimiter, quote)}")


def unquoted_ragged_line(text: str, fmt: str, delimiter: str) -> str | None:
    """'line N has X fields, the header has Y; ...' for the first non-blank line of unquoted text whose field count
    is not the header's; None when all agree. Vectorised (polars), as it runs on every unquoted file."""
    lines = pl.Series([text]).str.split("\n").explode()
    fields = lines.str.count_matches(delimiter, literal=True) + 1
    ragged = ((fields != fields[0]) & (lines.str.strip_chars().str.len_chars() > 0)).arg_true()
    if ragged.len() == 0:
        return None
    return _field_count(ragged[0] + 1, fields[ragged[0]], fields[0], fmt, delimiter, None)


def delimited_problem(text: str, fmt: str, delimiter: str, quote: str | None) -> str | None:
    """Where quoted csv/tsv text breaks, found with Python's csv module (only after polars refused the file):
    'line N ...; what to set' for a record with more fields than the header, a quoted value never closed or followed
    by text, or a quote inside an unquoted value; None when no such line is found."""
    csv.field_size_limit(2**31 - 1)  # one review may be megabytes; the default limit is 128 KiB
    lines = list(io.StringIO(text, newline=""))  # the lines csv.reader counts in line_num, endings kept
    quoting = {"quotechar": quote, "quoting": csv.QUOTE_MINIMAL} if quote else {"quoting": csv.QUOTE_NONE}
    reader = csv.reader(lines, delimiter=delimiter, strict=True, **quoting)  # type: ignore[call-overload]
    plain_quotes = f"if {quote} is plain text in this file set ingest.quote_char to empty (no quoting)"
    header, start = None, 1
    try:
        for row in reader:
            if header is None:
                header = len(row)
            elif len(row) > header:
                return _field_count(start, len(row), header, fmt, delimiter, quote)
            elif quote and reader.line_num == start and _quote_inside_value(lines[start - 1], delimiter, quote):
                return f"line {start} has a {quote} inside a value that does not start with one; {plain_quotes}"
            start = reader.line_num + 1
    except csv.Error:
        if quote is None:  # unquoted text breaks only on a lone carriage return: let polars' message stand
            return None
        if reader.line_num >= len(lines):
            return f"line {start} opens a {quote}-quoted value that the file never closes; {plain_quotes}"
        return f"line {start} has text after the closing {quote} of a quoted value; {plain_quotes}"
    return None


def _quote_inside_value(line: str, delimiter: str, quote: str) -> bool:
    """True when some value of a one-line record is neither quoted ("x", "x ""y"" z") nor free of quotes: Python's
    csv reads `24" monitor` as text, polars refuses it."""
    d, q = re.escape(delimiter), re.escape(quote)
    value = f"{q}(?:[^{q}]|{q}{q})*{q}|[^{d}{q}\r\n]*"
    return re.fullmatch(f"(?:{value})(?:{d}(?:{value}))*", line.rstrip("\r\n")) is None


def _require_columns(df: pl.DataFrame, url: str, cfg: IngestConfig) -> None:
    wanted = {
        "ingest.text_column": cfg.text_column, "ingest.label_column": cfg.label_column,
        "ingest.id_column": cfg.id_column, "ingest.split_column": cfg.split_column,
    }
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


def _stable_ids(source_name: str, texts: pl.Series) -> list[str]:
    """xxh3-128 of (source, text, occurrence of that text in the source): stable across reruns, unique."""
    seen: dict[str, int] = {}
    ids = []
    for text in texts.fill_null("").to_list():
        occurrence = seen.get(text, 0)
        seen[text] = occurrence + 1
        ids.append(xxhash.xxh3_128_hexdigest(f"{source_name}\x00{occurrence}\x00{text}".encode()))
    return ids


def read_source(source: SourceFile, cfg: IngestConfig) -> tuple[pl.DataFrame, int]:
    """One source file as raw-schema columns (without ingested_at/run_date) and its count of replaced bytes."""
    fmt, compression = detect_format(source.url, cfg.format)
    if fmt == "txt" and (cfg.label_column or cfg.id_column or cfg.split_column):
        raise InputDataError(f"{source.url}: a txt source holds only text (one document per line); unset "
                             "ingest.label_column, ingest.id_column and ingest.split_column or use csv/tsv/jsonl")
    df, replaced = _read_table(source.url, fmt, compression, cfg)
    if df.height == 0:
        df = pl.DataFrame(schema={c: pl.String for c in (cfg.text_column, cfg.label_column, cfg.id_column,
                                                         cfg.split_column) if c})
    _require_columns(df, source.url, cfg)
    text = _as_string(df, cfg.text_column, source.url)
    assert text is not None
    ids = _as_string(df, cfg.id_column, source.url)
    if ids is not None and ids.null_count():
        raise InputDataError(f"{source.url}: ingest.id_column {cfg.id_column!r} has {ids.null_count()} empty ids")
    labels = None
    if cfg.label_column is not None:
        try:  # one label identity whatever the file's type: 1, 1.0 and "1" are all the label "1"
            labels = canonical_labels(df[cfg.label_column], cfg.label_delimiter)
        except InputDataError as exc:
            raise InputDataError(f"{source.url}: ingest.label_column {cfg.label_column!r}: {exc}") from None
    split = _normalise_split(_as_string(df, cfg.split_column, source.url), source.url)
    rows = df.height
    out = pl.DataFrame({
        "doc_id": ids if ids is not None else pl.Series(_stable_ids(source.name, text), dtype=pl.String),
        "text": text,
        "label": labels if labels is not None else pl.Series([None] * rows, dtype=pl.String),
        "split": split if split is not None else pl.Series([None] * rows, dtype=pl.String),
        "source": pl.Series([source.name] * rows, dtype=pl.String),
        "source_row": pl.Series(range(rows), dtype=pl.Int64),
    })
    out = out.with_columns(invalid_utf8=pl.lit(replaced > 0) & pl.col("text").fill_null("").str.contains("\ufffd"))
    return out, replaced


def _check_unique_ids(df: pl.DataFrame, id_column: str | None) -> None:
    duplicated = df.filter(pl.col("doc_id").is_duplicated())
    if duplicated.height:
        examples = duplicated["doc_id"].unique(maintain_order=True).head(5).to_list()
        where = f"ingest.id_column {id_column!r}" if id_column else "derived doc_ids"
        raise InputDataError(f"{where} are not unique: {duplicated.height} rows share ids such as {examples}")


def check_labels(raw: pl.DataFrame, lake: Lake, run_date: str) -> dict[str, int]:
    """Tonight's rows per label (a multi-label row counts for each of its labels), after refusing spellings that
    collide with each other or with an earlier night's labels (from the raw manifests), naming both and where each
    was seen."""
    labelled = raw.filter(pl.col("label").is_not_null()).unique("label", keep="first", maintain_order=True)
    counts: dict[str, int] = {}
    for value, rows in raw["label"].drop_nulls().value_counts().iter_rows():  # per distinct value (or set)
        for label in label_set(value):
            counts[label] = counts.get(label, 0) + rows
    counts = dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
    where: dict[str, str] = {}
    for value, source, row in labelled.select("label", "source", "source_row").iter_rows():
        for label in label_set(value):
            where.setdefault(label, f"{source} row {row + 1}")
    for date in lake.run_dates("raw"):
        manifest = lake.read_manifest("raw", date) or {}
        if date != run_date:
            for label in (manifest.get("counts") or {}).get("labels") or {}:
                where.setdefault(label, f"run_date={date}")
    check_label_spellings(where, where, setting="ingest.label_column")
    return {str(k): int(v) for k, v in counts.items()}


def run_ingest(cfg: PipelineConfig) -> dict[str, Any]:
    lake = Lake(cfg.data_root)
    folder = lake.partition("raw", cfg.run_date)
    sources = expand_sources(cfg.ingest.sources)
    inputs = [storage.file_identity(s.url) | {"name": s.name} for s in sources]
    stage_fp = fingerprint("ingest", cfg.fingerprint("ingest"), inputs)
    manifest = lake.read_manifest("raw", cfg.run_date)
    if manifest_matches(manifest, stage_fp, folder):
        return {"stage": "ingest", "skipped": True, "partition": folder, **manifest["counts"]}

    frames, per_file = [], []
    for source in sources:  # read (and so validate) every source before writing anything
        frame, replaced = read_source(source, cfg.ingest)
        frames.append(frame)
        per_file.append({"source": source.name, "rows": frame.height, "invalid_utf8_replaced": replaced})
    ingested_at = dt.datetime.now(dt.timezone.utc)
    raw = pl.concat(frames, how="vertical").with_columns(
        ingested_at=pl.lit(ingested_at, dtype=pl.Datetime("us", "UTC")))
    _check_unique_ids(raw, cfg.ingest.id_column)
    labels = check_labels(raw, lake, cfg.run_date)

    writer = lake.writer("raw", cfg.run_date, stage_fp).begin()
    table = raw.to_arrow().cast(RAW_SCHEMA)
    for index, start in enumerate(range(0, max(table.num_rows, 1), cfg.ingest.shard_rows)):
        storage.write_parquet_atomic(writer.add(shard_name(index)), table.slice(start, cfg.ingest.shard_rows))
    counts = {
        "rows": raw.height,
        "labelled_rows": raw.height - raw["label"].null_count(),
        "labels": labels,
        "invalid_utf8_rows": int(raw["invalid_utf8"].sum()),
        "invalid_utf8_replaced": sum(f["invalid_utf8_replaced"] for f in per_file),
    }
    writer.commit(stage="ingest", run_date=cfg.run_date, inputs=inputs, files=per_file,
                  config_hash=cfg.fingerprint("ingest"), counts=counts)
    return {"stage": "ingest", "skipped": False, "partition": folder, **counts}
