"""Curate: clean, filter, deduplicate (exact and near, within the night and against earlier nights), flag label
conflicts and assign leak-free splits.

Every raw row ends in exactly one of curated/ or rejects/ with a `reason`; `commit` checks raw = curated + rejected
before it writes the manifests. Drop reasons are data (datatrove's filter idea), never exceptions:

  empty            nothing left after cleaning
  too_short        fewer than curate.min_chars characters (code points; a wide CJK character or emoji counts two)
  too_long         more than curate.max_chars characters
  low_alpha        letters, emoji and rating stars are less than curate.min_alpha_ratio of the visible grapheme clusters
  repetitive       more than curate.max_repetition of its character n-grams repeat an earlier one (10-grams from
                   100 characters, 3-grams for 20-99)
  exact_duplicate  same normalised text (NFKC, casefold, whitespace collapsed) as the kept row `duplicate_of`
  near_duplicate   character 5-gram Jaccard >= curate.near_dup_threshold, chained within a cluster
  label_correction same normalised text as an earlier night's kept row `duplicate_of`, with another label: the
                   newest label is the one the accumulated training set uses (`labels.read_corrections`)
  label_superseded same normalised text as a later night's kept row `duplicate_of` (this night is a backfill or a
                   rerun), with another label: the later night's label is newer and stands

Every other committed night counts, earlier and later: a backfilled night is deduplicated against the nights after
it too, and yields to them (their kept rows stay kept). Exact duplicates, corrections and ids are compared whatever
the near-dup settings; a night whose index was built with other near-dup settings has its band hashes recomputed
from its curated text. When a rerun of a night no longer keeps rows that other nights' rejects point at, those
nights are reported as stale (`stale_nights` in the summary) with the command that redoes them.

The stage is four steps so that the per-shard ones can be mapped over shards (Prefect, Dask):
  begin                      fingerprint; skip if committed; else un-commit the outputs
  prepare_shard(i)  [map]    clean + filter raw shard i, LSH band hashes of its candidates -> _work/
  cluster                    exact groups + verified near pairs (tonight and vs. the earlier nights' index)
  finish_shard(i)   [map]    curated/part-i and rejects/part-i from the clean shard and the clusters
  commit                     conservation check, dedup index, manifests (curated last), _work removed
"""

from __future__ import annotations

import functools
import logging
import unicodedata
from dataclasses import dataclass
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from bert_pipeline.lake import storage
from bert_pipeline.curation.clean import CLEAN_RULE, clean_frame
from bert_pipeline.config import CurateConfig, PipelineConfig
from bert_pipeline.curation.dedup import TextLoader, cluster_documents, texts_bands
from bert_pipeline.errors import InputDataError, LakeStateError
from bert_pipeline.curation.labels import CORRECTION, SUPERSEDED, apply_corrections, read_corrections
from bert_pipeline.lake.manifests import (
    SHARD_FINGERPRINT, Lake, fingerprint, manifest_matches, shard_matches, shard_name,
)
from bert_pipeline.curation.neardup import NearDupParams, normal_form, paired_overlap
from bert_pipeline.ner.offsets import UNMAPPABLE
from bert_pipeline.task import Task, task_of

log = logging.getLogger(__name__)

REASONS = ("empty", "too_short", "too_long", "low_alpha", "repetitive", "exact_duplicate", "near_duplicate",
           CORRECTION, SUPERSEDED, UNMAPPABLE)

CURATED_SCHEMA = pa.schema([
    ("doc_id", pa.string()), ("text", pa.string()), ("label", pa.string()), ("split", pa.string()),
    ("label_conflict", pa.bool_()), ("duplicates", pa.int32()), ("cluster_id", pa.string()),
    ("dedup_key", pa.string()), ("source", pa.string()), ("source_row", pa.int64()),
])  # run_date is the hive folder's name in every table, not a column (see bert_pipeline/lake/manifests.py)
REJECTS_SCHEMA = pa.schema([
    ("doc_id", pa.string()), ("text", pa.string()), ("original_text", pa.string()), ("reason", pa.string()),
    ("duplicate_of", pa.string()), ("similarity", pa.float32()), ("cluster_id", pa.string()), ("label", pa.string()),
    ("source", pa.string()), ("source_row", pa.int64()),
])
INDEX_SCHEMA = pa.schema([
    ("doc_id", pa.string()), ("dedup_key", pa.string()), ("label", pa.string()), ("shard", pa.string()),
    ("bands", pa.list_(pa.uint64())),
])
CANDIDATE_COLUMNS = ["doc_id", "dedup_key", "label", "bands", "shard"]


def assign_split(key: str, seed: int, validation_fraction: float, test_fraction: float) -> str:
    """Deterministic split from a cluster's key (its kept text's dedup key, or with `ingest.id_column` its doc_id):
    a cluster never straddles splits, and a text, or an id whatever its text, keeps its split across nights."""
    bucket = xxhash.xxh3_64_intdigest(f"{seed}:{key}".encode()) / 2**64
    if bucket < test_fraction:
        return "test"
    if bucket < test_fraction + validation_fraction:
        return "validation"
    return "train"


def near_dup_params(c: CurateConfig) -> NearDupParams:
    return NearDupParams(threshold=c.near_dup_threshold, num_perm=c.num_perm, shingle_chars=c.shingle_chars,
                         dense_shingle_chars=c.dense_shingle_chars)


def index_params(c: CurateConfig) -> dict[str, Any]:
    """What must match for an earlier night's index to be comparable with tonight's band hashes."""
    return {**near_dup_params(c).__dict__, "near_dedup": c.near_dedup}


def empty_index() -> pl.DataFrame:
    """Earlier nights' index rows when there are none: the index schema plus the run_date of the folder."""
    return pl.from_arrow(INDEX_SCHEMA.append(pa.field("run_date", pa.string())).empty_table())  # type: ignore[return-value]


# ---- the pure steps, on frames -------------------------------------------------------------------------------------

def prepare_frame(raw: pl.DataFrame, c: CurateConfig, shard: str, task: Task) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(cleaned rows, candidates with their band hashes) for one raw shard; the task keeps its labels true through
    the cleaning (entity spans follow the text)."""
    cleaned = clean_frame(raw, c, task.relabel)
    candidates = cleaned.filter(pl.col("reason").is_null())
    params = near_dup_params(c)
    bands = texts_bands(candidates["norm"].to_list(), params) if c.near_dedup else None
    return cleaned, candidates.select(
        "doc_id", "dedup_key", "label",
        bands=pl.Series(bands.tolist() if bands is not None else [[]] * candidates.height, dtype=pl.List(pl.UInt64)),
        shard=pl.lit(shard),
    )


def finish_frame(cleaned: pl.DataFrame, clusters: pl.DataFrame, c: CurateConfig,
                 split_by_id: bool = False) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(curated, rejects) rows of one shard. `split_by_id`: the split follows the doc_id (the source's ids), so an
    id re-sent with edited text keeps its split."""
    df = cleaned.join(clusters, on="doc_id", how="left").with_columns(
        reason=pl.coalesce("reason", "dup_reason"), kept=pl.col("kept").fill_null(False),
        label_conflict=pl.col("label_conflict").fill_null(False),
    )
    kept = df.filter(pl.col("kept"))
    keys = kept["doc_id" if split_by_id else "dedup_key"].to_list()
    splits = [given or assign_split(key, c.split_seed, c.validation_fraction, c.test_fraction)
              for given, key in zip(kept["split"].to_list(), keys)]
    curated = kept.with_columns(split=pl.Series(splits, dtype=pl.String)).select(CURATED_SCHEMA.names)
    rejects = df.filter(~pl.col("kept")).select(REJECTS_SCHEMA.names)
    if curated.height + rejects.height != cleaned.height:
        raise LakeStateError(f"conservation broken: {cleaned.height} rows in, {curated.height} curated + "
                             f"{rejects.height} rejected out")
    return curated, rejects


def curate_frame(raw: pl.DataFrame, cfg: PipelineConfig, earlier: pl.DataFrame | None = None,
                 load_earlier: TextLoader | None = None) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """All steps in memory for one frame: (curated, rejects, candidates with bands). For tests and small inputs."""
    cleaned, candidates = prepare_frame(raw, cfg.curate, shard_name(0), task_of(cfg))
    norm = dict(zip(cleaned["doc_id"].to_list(), cleaned["norm"].to_list()))
    clusters = cluster_documents(
        candidates, earlier if earlier is not None else empty_index(),
        lambda rows: {d: norm[d] for d in rows["doc_id"].to_list()}, load_earlier or (lambda _: {}),
        near_dup_params(cfg.curate), near=cfg.curate.near_dedup, run_date=cfg.run_date,
        agree=task_of(cfg).agreement_key,
    )
    curated, rejects = finish_frame(cleaned, clusters, cfg.curate, split_by_id=bool(cfg.ingest.id_column))
    return curated, rejects, candidates


# ---- the steps on the lake ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CuratePlan:
    """What every step needs to agree on; small and JSON-able so tasks can pass it around."""

    fingerprint: str
    shards: int
    skipped: bool

    def as_dict(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "shards": self.shards, "skipped": self.skipped}


class CurateLake:
    def __init__(self, cfg: PipelineConfig) -> None:
        self.cfg = cfg
        self.lake = Lake.of(cfg)
        self.run_date = cfg.run_date
        self.folders = {a: self.lake.partition(a, cfg.run_date) for a in ("curated", "rejects", "dedup_index")}
        self.work = storage.join(self.lake.root, "_work", "curate", f"run_date={cfg.run_date}")

    def raw_urls(self) -> list[str]:
        manifest = self.lake.require_manifest("raw", self.run_date, produced_by="ingest")
        return self.lake.shard_urls("raw", self.run_date, manifest)

    def work_url(self, kind: str, index: int | None = None) -> str:
        return storage.join(self.work, kind, shard_name(index)) if index is not None else storage.join(self.work, kind)

    def committed_manifests(self) -> dict[str, dict[str, Any]]:
        """run_date -> index manifest, for every other committed night, earlier or later, whatever its near-dup
        settings (exact duplicates, corrections and ids never depend on them). Only manifests: the fingerprint and
        the counts need no index rows; `committed_index` reads those, once. Listed once per step (a CurateLake
        lives for one step): commit asks five times, and on S3 each listing reads two manifests per night."""
        return self._committed

    @functools.cached_property
    def _committed(self) -> dict[str, dict[str, Any]]:
        return self.every_committed if self.cfg.curate.dedup_across_nights else {}

    @functools.cached_property
    def every_committed(self) -> dict[str, dict[str, Any]]:
        """run_date -> index manifest of every other committed night, whatever curate.dedup_across_nights says: the
        training set reads every night's versions of an id, so the id check reads them too."""
        found = {}
        for date in self.lake.run_dates("dedup_index"):
            if date == self.run_date or not (manifest := self.lake.read_manifest("dedup_index", date)):
                continue
            curated = self.lake.read_manifest("curated", date)  # committed last: an index without it is not a night
            if curated and curated.get("fingerprint") == manifest.get("fingerprint"):
                found[date] = manifest
        return found

    def earlier_manifests(self) -> dict[str, dict[str, Any]]:
        """The committed nights before this one: their index fingerprints are part of tonight's, so a changed
        earlier night makes tonight's curation stale (later nights yield to tonight's committed rows instead)."""
        return {date: m for date, m in self.committed_manifests().items() if date < self.run_date}

    def recomputed_nights(self) -> list[str]:
        """Committed nights whose index bands were built with other near-dup settings than tonight's."""
        if not self.cfg.curate.near_dedup:
            return []
        params = index_params(self.cfg.curate)
        return sorted(d for d, m in self.committed_manifests().items() if m.get("near_dup_params") != params)

    def committed_index(self) -> pl.DataFrame:
        """The index rows (keys, labels, LSH bands) of the other committed nights, each row's label as corrected
        since; bands recomputed from the curated text for nights indexed with other near-dup settings."""
        committed = self.committed_manifests()
        if not committed:
            return empty_index()
        rows = pl.from_arrow(self.lake.dataset("dedup_index", committed).to_table())
        rows = rows.with_columns(pl.col("run_date").cast(pl.String))  # type: ignore[union-attr]
        recompute = self.recomputed_nights()
        if recompute:
            fresh = self.bands_from_text(recompute)
            rows = rows.join(fresh, on="doc_id", how="left", suffix="_new").with_columns(
                bands=pl.when(pl.col("run_date").is_in(recompute)).then("bands_new").otherwise("bands")
            ).drop("bands_new")
        return apply_corrections(rows, read_corrections(self.lake, committed))

    def bands_from_text(self, run_dates: list[str]) -> pl.DataFrame:
        """doc_id, bands: LSH band hashes with tonight's near-dup settings, from the curated text of `run_dates`."""
        table = self.lake.dataset("curated", run_dates).to_table(columns=["doc_id", "text"])
        norms = [normal_form(t) for t in table["text"].to_pylist()]
        bands = texts_bands(norms, near_dup_params(self.cfg.curate))
        return pl.DataFrame({"doc_id": table["doc_id"].to_pylist(),
                             "bands": pl.Series(bands.tolist(), dtype=pl.List(pl.UInt64))})

    def load_tonight(self, rows: pl.DataFrame) -> dict[str, str]:
        """Normal forms of tonight's candidates, from the clean shards that hold them."""
        return _column_of(rows, ["shard"], lambda shard: storage.join(self.work, "clean", shard), "norm")

    def load_earlier(self, rows: pl.DataFrame) -> dict[str, str]:
        """Reads only the curated shards that hold the candidates, and only their doc_id and text columns."""
        texts = _column_of(rows, ["run_date", "shard"],
                           lambda date, shard: storage.join(self.lake.partition("curated", date), shard), "text")
        return {doc_id: normal_form(text) for doc_id, text in texts.items()}


def _column_of(rows: pl.DataFrame, by: list[str], url_of: Any, column: str) -> dict[str, str]:
    """{doc_id: column} for `rows`, reading each shard named by the `by` columns once, two columns only."""
    values: dict[str, str] = {}
    for key, group in rows.group_by(by):
        frame = pl.from_arrow(storage.read_parquet(url_of(*map(str, key)), columns=["doc_id", column]))
        wanted = frame.filter(pl.col("doc_id").is_in(group["doc_id"].to_list()))  # type: ignore[union-attr]
        values.update(dict(wanted.iter_rows()))
    return values


def _write(url: str, frame: pl.DataFrame | pa.Table, stage_fp: str, schema: pa.Schema | None = None) -> None:
    table = frame.to_arrow() if isinstance(frame, pl.DataFrame) else frame
    storage.write_parquet_atomic(url, table.cast(schema) if schema else table, {SHARD_FINGERPRINT: stage_fp})


def begin(cfg: PipelineConfig) -> CuratePlan:
    task_of(cfg).require(cfg, "curate")
    cl = CurateLake(cfg)
    raw_manifest = cl.lake.require_manifest("raw", cfg.run_date, produced_by="ingest")
    earlier_fps = [m["fingerprint"] for m in cl.earlier_manifests().values()]
    redos = stale_redos(cl)

    def stage_fp_of(redos: int) -> str:  # the redo count only once there is one: older lakes keep their fingerprints
        return fingerprint("curate", raw_manifest["fingerprint"], cfg.fingerprint("curate"), earlier_fps,
                           *([{"stale_redos": redos}] if redos else []), {"clean_rule": CLEAN_RULE})

    stage_fp = stage_fp_of(redos)
    shards = len(raw_manifest["outputs"])
    if all(manifest_matches(cl.lake.read_manifest(a, cfg.run_date), stage_fp, f) for a, f in cl.folders.items()):
        lost = lost_duplicate_targets(cl)
        if not lost:
            return CuratePlan(stage_fp, shards, skipped=True)
        redos += 1
        stage_fp = stage_fp_of(redos)
        log.warning("curate: run_date=%s is stale: %d of its rejected rows name as `duplicate_of` a row that no "
                    "committed night keeps any more (a later night was redone without it, e.g. %s); redoing it",
                    cfg.run_date, len(lost), sorted(lost)[0])
    if redos:  # kept until commit, so that a crashed redo resumes under the same fingerprint
        storage.write_json_atomic(cl.work_url("stale_redos.json"), {"stale_redos": redos})
    remember_previous_kept(cl)
    for area in cl.folders:
        cl.lake.writer(area, cfg.run_date, stage_fp).begin()  # un-commit: readers must not trust a partition being rewritten
    return CuratePlan(stage_fp, shards, skipped=False)


def stale_redos(cl: CurateLake) -> int:
    """How often this night has been redone because other nights no longer keep rows its rejects point at: part of
    its fingerprint, so that each such redo is new work for tokenize and everything after it. From _work while a
    curation of the night is under way (a redo that crashed), else from its committed curated manifest."""
    under_way = storage.read_json(cl.work_url("stale_redos.json"))
    if under_way:
        return int(under_way["stale_redos"])
    return int((cl.lake.read_manifest("curated", cl.run_date) or {}).get("stale_redos", 0))


def lost_duplicate_targets(cl: CurateLake) -> set[str]:
    """doc_ids that this committed night's rejects name as `duplicate_of` and that no committed night keeps any more.

    A night's fingerprint holds the earlier nights only, so a later night redone without a row that this night
    yielded to (a backfill's exact or near duplicate, label_superseded, label_correction) leaves this night
    unchanged and its text in no night at all: such a night is stale and must be redone, not skipped. Reads only the
    `duplicate_of` column of this night's rejects and, filtered to those ids, the doc_id column of the indexes."""
    later = [d for d in cl.every_committed if d > cl.run_date]
    rejects = cl.lake.read_manifest("rejects", cl.run_date)
    if not later or not rejects or later_curation_under_way(cl):
        return set()
    named = cl.lake.dataset("rejects", {cl.run_date: rejects}).to_table(
        columns=["duplicate_of"], filter=pc.field("duplicate_of").is_valid())
    targets = set(named["duplicate_of"].to_pylist())
    if not targets:
        return set()
    nights = cl.every_committed | {cl.run_date: cl.lake.read_manifest("dedup_index", cl.run_date) or {}}
    kept = cl.lake.dataset("dedup_index", nights).to_table(columns=["doc_id"],
                                                          filter=pc.field("doc_id").isin(sorted(targets)))
    return targets - set(kept["doc_id"].to_pylist())


def later_curation_under_way(cl: CurateLake) -> bool:
    """Whether a later night's curation is un-committed but was written (its index folder is there): a redo under
    way or killed. What it keeps is not known until it commits, and its commit names the nights it leaves stale
    (remember_previous_kept), so nothing is judged lost meanwhile: a retry answers as the first run did."""
    return any(d > cl.run_date and d not in cl.every_committed and storage.exists(cl.lake.partition("dedup_index", d))
               for d in cl.lake.run_dates("raw"))


def remember_previous_kept(cl: CurateLake) -> None:
    """Before a committed night is redone: keep its kept doc_ids in _work, so that commit can name the other nights
    whose rejects point at rows the new curation no longer keeps. Written before the un-commit, and kept when a
    crashed run already wrote it."""
    url = cl.work_url("previous_kept.parquet")
    manifest = cl.lake.read_manifest("dedup_index", cl.run_date)
    if manifest is None or storage.exists(url):
        return
    table = cl.lake.dataset("dedup_index", {cl.run_date: manifest}).to_table(columns=["doc_id"])
    storage.write_parquet_atomic(url, table, {})


def stale_nights(cl: CurateLake, kept_now: set[str]) -> dict[str, int]:
    """{run_date: rows} of other committed nights whose rejects name, as `duplicate_of`, a row this night kept
    before its rerun and keeps no more: their decisions rest on a row that is gone (redo them)."""
    url = cl.work_url("previous_kept.parquet")
    if not storage.exists(url):
        return {}
    lost = set(storage.read_parquet(url, ["doc_id"])["doc_id"].to_pylist()) - kept_now
    committed = {d: cl.lake.read_manifest("rejects", d) for d in cl.committed_manifests()}
    committed = {d: m for d, m in committed.items() if m}
    if not lost or not committed:
        return {}
    hits = cl.lake.dataset("rejects", committed).to_table(
        columns=["run_date"], filter=pc.field("duplicate_of").isin(sorted(lost)))
    counts = pl.from_arrow(hits).with_columns(pl.col("run_date").cast(pl.String))["run_date"].value_counts()  # type: ignore[union-attr]
    return dict(sorted(counts.iter_rows()))


# An id's text tonight and its newest text on another night are not one document edited when their character
# shingles overlap less than this (overlap coefficient, `neardup.paired_overlap`). `benchmarks/bench_id_versions.py`
# (3,000 random pairs per corpus): unrelated texts fall below it in 97.0 % of tweet pairs, 100 % of Chinese review
# pairs and 98.1 % of food review pairs; none of the edits did (another text appended, half of it rewritten, a tenth
# of its characters changed).
UNRELATED_VERSION_OVERLAP = 0.2
# Texts shorter than this many shingles (about 14 characters, 12 in Han) are not judged: "good" -> "very good" shares
# none of its 5-grams and is still an edit.
MIN_SHINGLES_JUDGED = 10


@dataclass(frozen=True)
class IdVersions:
    """Tonight's kept rows whose doc_id another committed night keeps with another text (versions of one document:
    the training set keeps the newest night's, `trainset.newest_versions`), and those whose text is nothing like the
    newest other version: doc_id, run_date (the other night), overlap, text, other_text; `nights` maps each
    run_date named there to its curated fingerprint (a skipped rerun repeats the warning only while they hold)."""

    versions: int
    unrelated: pl.DataFrame
    nights: dict[str, str]

    @property
    def unrelated_ids(self) -> int:
        return self.unrelated.height


def id_versions(cl: CurateLake, curated: pl.DataFrame, tonight_shards: pl.DataFrame) -> IdVersions:
    """Compare tonight's kept rows (doc_id, dedup_key) with the rows of the same doc_id on every other committed
    night; `tonight_shards` (doc_id, shard) says which curated shard holds tonight's text."""
    nothing = IdVersions(0, pl.DataFrame(schema={"doc_id": pl.String, "run_date": pl.String, "overlap": pl.Float64,
                                                 "text": pl.String, "other_text": pl.String}), {})
    committed = cl.every_committed
    if not committed or curated.is_empty():
        return nothing
    others = pl.from_arrow(cl.lake.dataset("dedup_index", committed).to_table(
        columns=["doc_id", "dedup_key", "shard", "run_date"], filter=pc.field("doc_id").isin(curated["doc_id"].to_list())))
    others = others.with_columns(pl.col("run_date").cast(pl.String))  # type: ignore[union-attr]
    both = curated.select("doc_id", "dedup_key").join(others, on="doc_id", suffix="_other")  # type: ignore[arg-type]
    both = both.filter(pl.col("dedup_key") != pl.col("dedup_key_other"))
    if both.is_empty():
        return nothing
    versions = both["doc_id"].n_unique()
    # each id against its newest other version only: one pair per id, however many nights re-sent it
    both = both.sort("run_date", descending=True).unique("doc_id", keep="first").sort("run_date", "doc_id")
    tonight = _column_of(tonight_shards.filter(pl.col("doc_id").is_in(both["doc_id"].to_list())), ["shard"],
                         lambda shard: storage.join(cl.folders["curated"], shard), "text")
    other_text: list[str] = []
    for (date,), group in both.group_by("run_date", maintain_order=True):
        texts = _column_of(group, ["shard"], lambda shard, d=date: storage.join(cl.lake.partition("curated", d), shard),
                           "text")
        other_text += [texts[doc] for doc in group["doc_id"].to_list()]
    both = both.with_columns(text=pl.col("doc_id").replace_strict(tonight), other_text=pl.Series(other_text))
    overlap, shingles = paired_overlap([without_marks(t) for t in both["text"].to_list()],
                                       [without_marks(t) for t in other_text], near_dup_params(cl.cfg.curate))
    both = both.with_columns(overlap=pl.Series(overlap), shingles=pl.Series(shingles))
    unrelated = both.filter((pl.col("overlap") < UNRELATED_VERSION_OVERLAP) & (pl.col("shingles") >= MIN_SHINGLES_JUDGED))
    nights = {d: (cl.lake.read_manifest("curated", d) or {}).get("fingerprint", "")
              for d in sorted(set(unrelated["run_date"].to_list()))}
    return IdVersions(versions, unrelated.select(nothing.unrelated.columns), nights)


def quoted(text: str | None, limit: int = 40) -> str:
    """A text as a message quotes it: repr, cut to `limit` characters with an ellipsis; '' for None."""
    text = text or ""
    return repr(text if len(text) <= limit else text[:limit - 1] + "…")


def without_marks(text: str) -> str:
    """The near-dup normal form without combining marks (NFKD, then marks dropped): a version that adds or drops
    accents, Arabic vowel marks or Hebrew niqqud is the same text edited, not another text."""
    return "".join(c for c in unicodedata.normalize("NFKD", normal_form(text)) if not unicodedata.combining(c))


def unrelated_versions_advice(cfg: PipelineConfig, found: IdVersions) -> str:
    """What to tell the user when ids come back with texts nothing like their other versions."""
    examples = "; ".join(f"{row['doc_id']!r} on {row['run_date']}: {quoted(row['other_text'])}, tonight: "
                         f"{quoted(row['text'])}" for row in found.unrelated.head(3).iter_rows(named=True))
    return (f"{found.unrelated_ids} of the {found.versions} id(s) that run_date={cfg.run_date} sends again with "
            f"another text come with a text nothing like their newest version on another night (less than "
            f"{UNRELATED_VERSION_OVERLAP:.0%} of the shorter text's character shingles shared), e.g. {examples}. "
            "An id sent again is read as a new version of one document and only its newest night's version is "
            "trained on, so the other versions leave the training set. If ingest.id_column "
            f"({cfg.ingest.id_column!r}) holds row numbers or other ids that are not kept per document, leave "
            "ingest.id_column empty (doc_ids are then derived from the text) and run the nights again from ingest "
            "(the same sources under another config are read again in place)")


def prepare_shard(cfg: PipelineConfig, index: int, stage_fp: str) -> int:
    cl = CurateLake(cfg)
    clean_url, bands_url = cl.work_url("clean", index), cl.work_url("bands", index)
    if shard_matches(clean_url, stage_fp) and shard_matches(bands_url, stage_fp):
        return index
    raw = pl.from_arrow(storage.read_parquet(cl.raw_urls()[index]))
    cleaned, candidates = prepare_frame(raw, cfg.curate, shard_name(index), task_of(cfg))  # type: ignore[arg-type]
    _write(bands_url, candidates, stage_fp)
    _write(clean_url, cleaned, stage_fp)
    return index


def cluster(cfg: PipelineConfig, stage_fp: str, shards: int) -> int:
    cl = CurateLake(cfg)
    url = cl.work_url("clusters.parquet")
    if shard_matches(url, stage_fp):
        return shards
    candidates = pl.concat([pl.from_arrow(storage.read_parquet(cl.work_url("bands", i), CANDIDATE_COLUMNS))
                            for i in range(shards)])  # type: ignore[misc]
    clusters = cluster_documents(candidates, cl.committed_index(), cl.load_tonight, cl.load_earlier,  # type: ignore[arg-type]
                                 near_dup_params(cfg.curate), near=cfg.curate.near_dedup, run_date=cfg.run_date,
                                 agree=task_of(cfg).agreement_key)
    _write(url, clusters, stage_fp)
    return shards


def finish_shard(cfg: PipelineConfig, index: int, stage_fp: str) -> int:
    cl = CurateLake(cfg)
    curated_url = storage.join(cl.folders["curated"], shard_name(index))
    rejects_url = storage.join(cl.folders["rejects"], shard_name(index))
    if shard_matches(curated_url, stage_fp) and shard_matches(rejects_url, stage_fp):
        return index
    cleaned = pl.from_arrow(storage.read_parquet(cl.work_url("clean", index)))
    clusters = pl.from_arrow(storage.read_parquet(cl.work_url("clusters.parquet")))
    clusters = clusters.filter(pl.col("doc_id").is_in(cleaned["doc_id"].to_list()))  # type: ignore[union-attr]
    curated, rejects = finish_frame(cleaned, clusters, cfg.curate,  # type: ignore[arg-type]
                                    split_by_id=bool(cfg.ingest.id_column))
    _write(rejects_url, rejects, stage_fp, REJECTS_SCHEMA)
    _write(curated_url, curated, stage_fp, CURATED_SCHEMA)
    return index


def commit(cfg: PipelineConfig, stage_fp: str, shards: int) -> dict[str, Any]:
    cl = CurateLake(cfg)
    names = [shard_name(i) for i in range(shards)]
    raw_manifest = cl.lake.require_manifest("raw", cfg.run_date, produced_by="ingest")
    curated = pl.concat([pl.from_arrow(storage.read_parquet(storage.join(cl.folders["curated"], n),
                                                            ["doc_id", "label_conflict", "split", "dedup_key", "label"]))
                         for n in names])  # type: ignore[misc]
    reasons = pl.concat([pl.from_arrow(storage.read_parquet(storage.join(cl.folders["rejects"], n), ["reason"]))
                         for n in names])  # type: ignore[misc]
    raw_rows = raw_manifest["counts"]["rows"]
    if curated.height + reasons.height != raw_rows:
        raise LakeStateError(f"conservation broken for run_date={cfg.run_date}: raw {raw_rows} != curated "
                             f"{curated.height} + rejected {reasons.height}; not committing")
    earlier = cl.earlier_manifests()
    earlier_fps = [m["fingerprint"] for m in earlier.values()]
    later = {d: m for d, m in cl.committed_manifests().items() if d > cfg.run_date}
    stale = stale_nights(cl, set(curated["doc_id"].to_list()))
    bands = pl.concat([pl.from_arrow(storage.read_parquet(cl.work_url("bands", i), ["doc_id", "bands", "shard"]))
                       for i in range(shards)])  # type: ignore[misc]
    versions = id_versions(cl, curated, bands.select("doc_id", "shard"))
    advice = [unrelated_versions_advice(cfg, versions)] if versions.unrelated_ids else []
    try:  # under refuse: raised before anything is committed (previous_kept: an earlier curation was un-committed)
        unrelated = unrelated_verdict(cfg, advice, redone=storage.exists(cl.work_url("previous_kept.parquet")))
    except InputDataError:
        withdraw(cl)
        raise
    filtered = filtered_warning(cfg, [storage.join(cl.folders["rejects"], n) for n in names], reasons, raw_rows)
    counts = {
        "raw_rows": raw_rows, "curated_rows": curated.height, "rejected_rows": reasons.height,
        "rejected_by_reason": {r: 0 for r in REASONS} | dict(reasons["reason"].value_counts().iter_rows()),
        "label_conflicts": int(curated["label_conflict"].sum()),
        "label_corrections": int((reasons["reason"] == CORRECTION).sum()),
        "earlier_documents_indexed": sum(m["counts"]["curated_rows"] for m in earlier.values()),
        "later_documents_indexed": sum(m["counts"]["curated_rows"] for m in later.values()),
        "label_superseded": int((reasons["reason"] == SUPERSEDED).sum()),
        "id_versions": versions.versions, "unrelated_id_versions": versions.unrelated_ids,
        "splits": dict(curated["split"].value_counts().iter_rows()),
    }
    notes = {"index_recomputed_for": cl.recomputed_nights(), "stale_nights": stale, "stale_redos": stale_redos(cl),
             "stale_night_fingerprints": {d: cl.committed_manifests()[d]["fingerprint"] for d in stale},
             "warnings": filtered + ([stale_advice(cfg.run_date, stale)] if stale else []) + unrelated,
             # what a skipped rerun and the report repeat
             "filter_warnings": filtered, "id_warnings": advice, "id_warning_nights": versions.nights}
    common = dict(stage="curate", run_date=cfg.run_date, inputs=[raw_manifest["fingerprint"], *earlier_fps],
                  config_hash=cfg.fingerprint("curate"), counts=counts, **notes)
    # a row in a label conflict has no label to compare with: a later night's single label for it is a correction
    index = curated.select("doc_id", "dedup_key", label=pl.when(pl.col("label_conflict")).then(None)
                           .otherwise(pl.col("label"))).join(bands, on="doc_id", how="left").select(INDEX_SCHEMA.names)
    index_writer = cl.lake.writer("dedup_index", cfg.run_date, stage_fp)
    _write(index_writer.add(shard_name(0)), index, stage_fp, INDEX_SCHEMA)
    # rejects and the index first, curated last: the curated manifest is what commits the stage
    cl.lake.writer("rejects", cfg.run_date, stage_fp, outputs=names).commit(**common)
    index_writer.commit(**common, near_dup_params=index_params(cfg.curate))
    cl.lake.writer("curated", cfg.run_date, stage_fp, outputs=names).commit(**common)
    storage.remove([cl.work])
    storage.remove_empty_folders(storage.join(cl.lake.root, "_work"))
    for warning in notes["warnings"]:
        log.warning("curate: %s", warning)
    if notes["index_recomputed_for"]:
        log.info("curate: run_date(s) %s were indexed with other near-dup settings; their band hashes were "
                 "recomputed from their curated text for tonight's comparison", notes["index_recomputed_for"])
    return {"stage": "curate", "skipped": False, "partition": cl.folders["curated"], **counts, **notes}


def nights_unchanged(lake: Lake, named: dict[str, str] | None) -> bool:
    """True while every run_date in `named` is committed with the curated fingerprint it maps to."""
    return all((lake.read_manifest("curated", date) or {}).get("fingerprint") == fp for date, fp in (named or {}).items())


def still_true(lake: Lake, manifest: dict[str, Any]) -> list[str]:
    """The committed night's id warnings, while the other nights they name are committed as they were then (a later
    night is not part of this night's fingerprint: redone, it may have fixed its ids)."""
    return (manifest.get("id_warnings") or []) if nights_unchanged(lake, manifest.get("id_warning_nights")) else []


IDS_TITLE = "Ids sent again with other texts"


def standing_notes(lake: Lake, manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """(title, warning) of a committed curated night that still hold, for its report and a skipped rerun: texts
    mostly rejected; ids re-sent with unrelated texts and other nights left stale, each while the nights it names
    are committed as they were (a stale night redone has a new fingerprint, `stale_redos`)."""
    notes = [("Rejected for their text", w) for w in manifest.get("filter_warnings") or []]
    notes += [(IDS_TITLE, w) for w in still_true(lake, manifest)]
    stale, named = manifest.get("stale_nights") or {}, manifest.get("stale_night_fingerprints")
    if stale and named and nights_unchanged(lake, named):
        notes.append(("Other nights left stale", stale_advice(manifest["run_date"], stale)))
    return notes


# The reasons that judge a row's own text (not what else the lake holds) and the setting that decides each. When they
# reject more than MOSTLY_FILTERED of a night's raw rows, ingest.text_column or a filter setting is likely wrong.
FILTER_SETTINGS = {"empty": None, "too_short": "min_chars", "too_long": "max_chars", "low_alpha": "min_alpha_ratio",
                   "repetitive": "max_repetition"}
MOSTLY_FILTERED = 0.5


def filtered_warning(cfg: PipelineConfig, rejects_urls: list[str], reasons: pl.DataFrame, raw_rows: int) -> list[str]:
    """A warning when the text filters rejected more than MOSTLY_FILTERED of the night's raw rows (from 10 rows),
    with the count per reason, its setting and three rejected texts of the commonest reason; [] otherwise."""
    counts = {r: n for r, n in reasons["reason"].value_counts().sort(["count", "reason"], descending=[True, False]).iter_rows()
              if r in FILTER_SETTINGS}
    total = sum(counts.values())
    if raw_rows < 10 or total <= MOSTLY_FILTERED * raw_rows:
        return []

    def setting(reason: str) -> str:
        key = FILTER_SETTINGS[reason]
        return f" (curate.{key} = {getattr(cfg.curate, key)})" if key else ""

    top = next(iter(counts))
    examples: list[str] = []
    for url in rejects_urls:  # the first shards hold enough examples: read no more than needed
        rows = pl.from_arrow(storage.read_parquet(url, ["reason", "original_text", "source", "source_row"]))
        rows = rows.filter(pl.col("reason") == top).sort("source", "source_row")  # type: ignore[union-attr]
        for _, text, source, row in rows.head(3 - len(examples)).iter_rows():
            examples.append(f"{source} row {'?' if row is None else row + 1}: {quoted(text)}")
        if len(examples) >= 3:
            break
    by_reason = ", ".join(f"{reason} {n:,}{setting(reason)}" for reason, n in counts.items())
    return [f"{total:,} of {raw_rows:,} raw rows of run_date={cfg.run_date} ({total / raw_rows:.1%}) were rejected for "
            f"their text: {by_reason}; e.g. {'; '.join(examples)}. Check the sources: that ingest.text_column "
            f"({cfg.ingest.text_column!r}) is the column that holds the text (csv, tsv, jsonl, json and parquet) and "
            f"that ingest.format reads them as they are; or loosen those settings. Every rejected row is in "
            f"rejects/run_date={cfg.run_date} with its reason"]


def unrelated_verdict(cfg: PipelineConfig, advice: list[str], committed: bool = False,
                      redone: bool = False) -> list[str]:
    """The warning about ids sent again with unrelated texts ([] when `advice` is empty); under
    curate.on_unrelated_versions: refuse, an InputDataError instead. committed: the night is already committed (a
    skipped rerun), which the error says stays; redone: an earlier curation of the night was committed and has been
    un-committed (by this run or an unfinished one before it)."""
    if not advice:
        return []
    if cfg.curate.on_unrelated_versions == "refuse":
        where = ("its curated partition was committed earlier and is left as it is" if committed
                 else "it is left uncommitted, with no shards in curated/ or rejects/" + (
                     " (its earlier committed curation is no longer committed: undone by this run or an earlier "
                     "unfinished one)" if redone else "")
                 + "; rerun curate once the ids are fixed, or with curate.on_unrelated_versions: warn")
        raise InputDataError(f"curate refused run_date={cfg.run_date} (curate.on_unrelated_versions: refuse): "
                             f"{advice[0]}; {where}")
    return [f"{advice[0]}; curate.on_unrelated_versions: refuse stops such a night before it is committed"]


def withdraw(cl: CurateLake) -> None:
    """Remove the shards of a refused night's partitions, which `begin` un-committed, so that a folder reader
    (polars, duckdb, pandas over curated/ and rejects/) sees no rows of it; its _work files stay, so that a rerun
    resumes from the cleaned shards. Called with the stage's lock held."""
    for folder in cl.folders.values():
        storage.remove(storage.list_files(folder, "part-*"))
        storage.remove_empty_folders(folder)


def stale_advice(run_date: str, stale: dict[str, int]) -> str:
    """What to tell the user when a rerun of run_date left other nights' decisions resting on rows it dropped."""
    nights = ", ".join(f"{d} ({n} row(s))" for d, n in stale.items())
    first = next(iter(stale))
    return (f"the rerun of run_date={run_date} no longer keeps rows that the rejects of {nights} name as the row "
            f"they duplicate: those nights are stale. Redo each with `bert-pipeline curate --config <your config> "
            f"--set run_date={first}` (and so on), then tokenize, train and score it")


def skipped_summary(cfg: PipelineConfig) -> dict[str, Any]:
    lake = Lake.of(cfg)
    manifest = lake.read_manifest("curated", cfg.run_date) or {"counts": {}}
    verdict = unrelated_verdict(cfg, still_true(lake, manifest), committed=True)  # raised here under refuse
    warnings = [w for title, w in standing_notes(lake, manifest) if title != IDS_TITLE] + verdict
    for warning in warnings:
        log.warning("curate: %s", warning)
    return {"stage": "curate", "skipped": True, "partition": lake.partition("curated", cfg.run_date),
            **manifest["counts"], **({"warnings": warnings} if warnings else {})}


def run_curate(cfg: PipelineConfig) -> dict[str, Any]:
    """All steps in one process, in order (the Prefect flow maps the per-shard steps instead)."""
    plan = begin(cfg)
    if plan.skipped:
        return skipped_summary(cfg)
    for index in range(plan.shards):
        prepare_shard(cfg, index, plan.fingerprint)
    cluster(cfg, plan.fingerprint, plan.shards)
    for index in range(plan.shards):
        finish_shard(cfg, index, plan.fingerprint)
    return commit(cfg, plan.fingerprint, plan.shards)
