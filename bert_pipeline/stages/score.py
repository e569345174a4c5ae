"""Score: every curated row, shard by shard, with the champion (or `score.model`), into predictions/.

Within a shard: tokenize with the model's own tokenizer, sort by length, cut batches by a padded-token budget, run
under `torch.inference_mode()`, restore the original order. `score.long_text: chunk` tokenizes without truncation
and cuts each text into windows (`windows`): the budget then bounds windows, so a document of 100,000 tokens is many
small passes, never one huge one, and its row records how many windows it took. A multi-label model (config
problem_type multi_label_classification) gives sigmoid probabilities and the labels above its thresholds.

Each prediction shard carries the stage fingerprint in its parquet metadata, so a rerun after a crash scores only the
shards that are missing, and a rerun of a completed run_date with the same model and data does nothing.

With no champion yet (and score.model empty), `score.fallback: baseline` (the default) scores with the baseline stored
with the newest trained model that stores one (`FALLBACKS`: the TF-IDF baseline of a classifier; of an entity
model's CRF and memorising lexicon, the one that read the validation rows better) scores the night through the same
plan, shard writer and commit, its rows marked model_version `<version>+tfidf-baseline` (`+crf-baseline`,
`+memorising-baseline`); a later run with a champion replaces the partition as any change of model does. With
`none`, or no stored baseline, nothing is scored and the summary says why.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import json
import logging
import os
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Literal, NamedTuple

import numpy as np
import pyarrow as pa
import xxhash

from bert_pipeline.evaluation import baseline
from bert_pipeline.lake import storage
from bert_pipeline.task import task_of
from bert_pipeline.config import PipelineConfig
from bert_pipeline.errors import LakeStateError
from bert_pipeline.progress import Progress
from bert_pipeline.lake.manifests import SHARD_FINGERPRINT, STAGING, Lake, fingerprint, manifest_matches, shard_matches, shard_name
from bert_pipeline.modeling.models import (
    CACHE_DIR, check_label_names, fast_encoder, folder_content_hash, lake_labels, load_classifier, load_tokenizer,
    resolve_model_dir, tokenizer_hash,
)
from bert_pipeline.lake.predictions import SCHEMA_VERSION, SCHEMA_VERSION_KEY, ScoredBy, prediction_table
from bert_pipeline.text.encoding import encode_texts
from bert_pipeline.modeling.inference import batch_tokens_for, logits_within_budget, pick_device, pick_precision
from bert_pipeline.training.calibration import softmax
from bert_pipeline.modeling.multilabel import is_multi_label, sigmoid, thresholds_of
from bert_pipeline.evaluation.registry import committed_models
from bert_pipeline.ner.crf import CRF_FILE
from bert_pipeline.ner.metrics import LEXICON_FILE
from bert_pipeline.modeling.windows import Windowing, mean_by_document

log = logging.getLogger(__name__)


def resolve_scoring_model(cfg: PipelineConfig, lake: Lake) -> tuple[str, str]:
    """(local model folder, model_version) for score.model, else the registry's champion.

    Raises ConfigError when score.model names no real labels (LABEL_0, LABEL_1, ...: `models.check_label_names`);
    logs a warning when its labels share none of the lake's."""
    if cfg.score.model:
        folder = resolve_model_dir(cfg.score.model, field="score.model")
        check_label_names(folder, "score.model", lake_labels(lake.root))
        ref = os.path.expanduser(cfg.score.model) if "://" not in cfg.score.model else cfg.score.model
        return folder, os.path.basename(ref.rstrip("/")) or cfg.score.model
    champion = storage.read_json(lake.champion_url)
    if champion is None:
        raise LakeStateError(
            f"score.model is empty and {no_champion_reason(lake)}; set score.model to a "
            f"Hugging Face {task_of(cfg).model_kind} folder, or train on more labelled data first")
    version = champion["model_version"]
    return resolve_model_dir(lake.model_url(version), field="score.model"), version


def no_champion_reason(lake: Lake) -> str:
    """Why the lake has no champion: no model trained yet, or how many were refused and the newest refusal."""
    refused = [m for m in committed_models(lake) if not m.get("promoted", True)]
    why = ("no train stage has produced a model in this lake (a run_date without labelled rows trains nothing)"
           if not refused else f"{len(refused)} model(s) were trained but none passed the champion gate "
           f"(newest: {refused[-1]['champion_decision']['reason']})")
    return f"{lake.champion_url} names no champion yet: {why}"


def no_model_reason(cfg: PipelineConfig, lake: Lake) -> str:
    """What a night without a model to score with says (score stage summary, report)."""
    fallbacks = FALLBACKS[cfg.task]
    name = " or ".join(fallback.name for fallback in fallbacks)
    if cfg.score.fallback == "baseline":
        what = (f"score.fallback: baseline found no trained model with a stored {name} "
                f"({'; '.join(fallback.stored_by for fallback in fallbacks)})")
    else:
        what = f"set score.fallback: baseline to score with the {name} stored with the newest trained model, or set score.model"
    return f"nothing scored: {no_champion_reason(lake)}; {what}"


@dataclass(frozen=True)
class Fallback:
    """What `score.fallback: baseline` scores a task's night with: the baseline stored in a model's baseline/."""

    files: tuple[str, ...]  # inside baseline/: all present = stored; their bytes are its model_hash
    kind: str  # a term of the score fingerprint
    hash_prefix: str  # of model_hash
    suffix: str  # of the model_version its rows carry
    stored_by: str  # which models store one
    scorer: Callable[[str], Any]  # local baseline folder -> a scorer (table, metadata, labels, tokenizer_hash, dtype)
    figure: str = ""  # the model manifest's champion_decision key of its validation figure

    @property
    def name(self) -> str:
        return baseline.BASELINE_NAMES[self.suffix]


def _lexicon_scorer(folder: str) -> Any:
    from bert_pipeline.stages.score_entities import LexiconScorer  # the task's own module, loaded when it scores

    return LexiconScorer(folder)


def _crf_scorer(folder: str) -> Any:
    from bert_pipeline.stages.score_entities import CrfScorer

    return CrfScorer(folder)


def newest_baseline(lake: Lake, fallbacks: tuple[Fallback, ...]) -> tuple[str, str, Fallback] | None:
    """(model folder URL, model_version, which baseline) of the newest committed model (promoted or not) that
    stores one of the task's baselines (classification: train.linear_baseline; ner: every model): of those it
    stores, the one with the best validation figure in its champion decision (ner: the CRF or the memorising
    lexicon, whichever read the validation rows better), ties and unrecorded figures to the first in the order of
    `fallbacks`; None when no model stores one."""
    for manifest in reversed(committed_models(lake)):
        version = (manifest.get("metrics") or {}).get("model_version")
        if not version or not (manifest.get("metrics") or {}).get("baseline"):
            continue
        stored = [fallback for fallback in fallbacks
                  if all(storage.exists(storage.join(lake.model_url(version), baseline.FOLDER, name))
                         for name in fallback.files)]
        if stored:
            decision = manifest.get("champion_decision") or {}
            best = max(stored, key=lambda f: -1.0 if decision.get(f.figure) is None else float(decision[f.figure]))
            return lake.model_url(version), version, best
    return None


def baseline_dir(model_url: str) -> str:
    """A local copy of a model folder's baseline/ (the folder itself when local; a remote one is copied once, keyed
    by its files' identities)."""
    return storage.cached_folder(storage.join(model_url, baseline.FOLDER), str(CACHE_DIR / "baselines"))


def baseline_hash(folder: str, fallback: Fallback) -> str:
    """What a baseline's rows name as model_hash: its kind's prefix and the xxh3-128 of its stored files."""
    digest = xxhash.xxh3_128()
    for name in fallback.files:
        with open(os.path.join(folder, name), "rb") as handle:
            for block in iter(lambda: handle.read(1 << 24), b""):
                digest.update(block)
    return f"{fallback.hash_prefix}:{digest.hexdigest()}"


class Scored(NamedTuple):
    """A batch of texts scored: probabilities [rows, labels] float32 in input order (softmax rows, or one sigmoid
    per label for a multi-label model), truncated [rows] bool, windows [rows] int32 (windows read per text)."""

    probabilities: np.ndarray
    truncated: np.ndarray
    windows: np.ndarray


class Scorer:
    """A loaded model + tokenizer that turns texts into probabilities; one per worker process."""

    def __init__(self, model_dir: str, max_length: int, batch_tokens: int | None, precision: str,
                 device: str, long_text: str = "truncate") -> None:
        self.device = pick_device(device)
        self.tokenizer = load_tokenizer(model_dir)
        self.tokenizer_hash = tokenizer_hash(self.tokenizer)
        self.encoder = fast_encoder(self.tokenizer, None if long_text == "chunk" else max_length)
        self.windowing = Windowing.of(self.encoder, max_length) if long_text == "chunk" else None
        self.model = load_classifier(model_dir).to(self.device).eval()
        self.dtype = pick_precision(precision, self.device)
        self.batch_tokens = batch_tokens_for(self.device, batch_tokens)
        self.pad_id = self.tokenizer.pad_token_id or 0
        calibration = storage.read_json(os.path.join(model_dir, "calibration.json")) if os.path.isdir(model_dir) else None
        self.temperature = float((calibration or {}).get("temperature", 1.0))
        id2label = self.model.config.id2label
        self.labels = [str(id2label[i]) for i in range(self.model.config.num_labels)]
        self.multi_label = is_multi_label(self.model.config)
        self.thresholds = thresholds_of(calibration, self.labels) if self.multi_label else None

    def table(self, doc_ids: pa.Array, texts: list[str], scored_by: ScoredBy) -> pa.Table:
        """The predictions of these rows (PREDICTIONS_SCHEMA)."""
        scored = self.probabilities(texts)
        return prediction_table(doc_ids, scored.probabilities, self.labels, scored.truncated, scored_by,
                                self.thresholds, scored.windows)

    def metadata(self) -> dict[str, str]:
        """What a predictions shard's parquet metadata records of this model beyond the plan's."""
        return classifier_metadata(self)

    def probabilities(self, texts: list[str]) -> Scored:
        """Every text scored (see `Scored`); with chunking, a text's logits are the mean of its windows'."""
        flat, offsets, truncated = encode_texts(self.encoder, texts, batch_size=4096)
        sequences = [flat[offsets[i]:offsets[i + 1]] for i in range(len(texts))]
        windows = np.ones(len(texts), dtype=np.int32)
        if self.windowing is not None:
            sequences, document = self.windowing.split(sequences)
            windows = np.bincount(document, minlength=len(texts)).astype(np.int32)
        logits = self.logits(sequences)
        if self.windowing is not None:
            logits = mean_by_document(logits, document, len(texts))
        probabilities = sigmoid(logits) if self.multi_label else softmax(logits, self.temperature)
        return Scored(probabilities.astype(np.float32), truncated, windows)

    def logits(self, sequences: list[np.ndarray]) -> np.ndarray:
        """Logits [rows, labels] float32 of token-id sequences in input order, batched by the token budget."""
        return logits_within_budget(self.model, sequences, self.batch_tokens, self.pad_id, self.device, self.dtype)


class BaselineScorer:
    """The TF-IDF baseline stored with a model (`score.fallback: baseline`) behind the Scorer's interface: it reads
    every character of a text (nothing truncated, one window)."""

    def __init__(self, folder: str) -> None:
        self.model = baseline.load(folder)
        self.labels = self.model.label_names
        self.multi_label = self.model.multi_label
        self.thresholds = self.model.threshold_array() if self.multi_label else None
        self.temperature, self.tokenizer_hash, self.dtype = 1.0, baseline.KIND, "float64"

    def probabilities(self, texts: list[str]) -> Scored:
        return Scored(self.model.probabilities(texts).astype(np.float32), np.zeros(len(texts), bool),
                      np.ones(len(texts), np.int32))

    def table(self, doc_ids: pa.Array, texts: list[str], scored_by: ScoredBy) -> pa.Table:
        scored = self.probabilities(texts)
        return prediction_table(doc_ids, scored.probabilities, self.labels, scored.truncated, scored_by,
                                self.thresholds, scored.windows)

    def metadata(self) -> dict[str, str]:
        return classifier_metadata(self)


def classifier_metadata(scorer: "Scorer | BaselineScorer") -> dict[str, str]:
    """A classifier's calibration in a predictions shard's metadata: temperature, problem type, thresholds."""
    return {"bert_pipeline.temperature": str(scorer.temperature),
            "bert_pipeline.problem_type": "multi_label" if scorer.multi_label else "single_label",
            **({"bert_pipeline.thresholds": json.dumps(dict(zip(scorer.labels, scorer.thresholds.tolist())))}
               if scorer.thresholds is not None else {})}


# task -> what score.fallback: baseline scores with, in order of preference (bert_pipeline/task names the tasks)
FALLBACKS: dict[str, tuple[Fallback, ...]] = {
    "classification": (Fallback((baseline.SETTINGS_FILE, baseline.TENSORS_FILE), baseline.KIND, "tfidf",
                                baseline.SUFFIX, "models trained with train.linear_baseline: true store one",
                                BaselineScorer, "linear_baseline_validation_macro_f1"),),
    "ner": (Fallback((CRF_FILE,), "crf", "crf", baseline.CRF_SUFFIX,
                     "entity models trained with train.linear_baseline: true store one", _crf_scorer,
                     "crf_validation_entity_f1"),
            Fallback((LEXICON_FILE,), "memorising-lexicon", "memorising", baseline.MEMORISING_SUFFIX,
                     "every trained entity model stores one", _lexicon_scorer, "memorising_validation_entity_f1")),
}
_BY_SUFFIX = {fallback.suffix: fallback for fallbacks in FALLBACKS.values() for fallback in fallbacks}


@functools.lru_cache(maxsize=2)
def cached_baseline_scorer(model_ref: str, model_hash: str, suffix: str = baseline.SUFFIX) -> Any:
    """One baseline load per worker process (model_hash keys a changed folder anew); suffix: which of the model's
    stored baselines (`Fallback.suffix`)."""
    return _BY_SUFFIX[suffix].scorer(baseline_dir(model_ref))


@dataclass(frozen=True)
class ScorePlan:
    """What every shard task of one score run needs: small and picklable (it travels to Dask workers).

    `action` is "empty" (no curated rows: commit an empty partition, no model needed), "skip" (the committed
    partition already holds this model's predictions of this data), "no_model" (no champion, score.model empty and
    no fallback: nothing is written, `reason` says why) or "score". `fallback`: which baseline stored with model
    folder `model_ref` scores (its Fallback.suffix, e.g. +tfidf-baseline; score.fallback: baseline), "" for a model. Shards are written to `target`:
    the partition itself, or a staging folder when a committed partition is being replaced.
    """

    run_date: str
    folder: str
    curated_fingerprint: str
    curated_rows: int
    curated_urls: tuple[str, ...]
    action: Literal["empty", "skip", "no_model", "score"] = "score"
    fingerprint: str = ""
    max_length: int = 0
    model_ref: str = ""
    model_version: str = ""
    model_hash: str = ""
    labels: tuple[str, ...] = ()
    run_id: str = ""
    replacing: bool = False
    target: str = ""
    committed_counts: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    reason: str = ""
    fallback: str = ""  # the suffix of the stored baseline that scores (Fallback.suffix); "" = a model scores
    area: str = "predictions"  # the task's output area (predictions; entities for task: ner)

    @property
    def shards(self) -> int:
        return len(self.curated_urls)

    def shard_url(self, index: int) -> str:
        return storage.join(self.target, shard_name(index))


def commit_empty(cfg: PipelineConfig, plan: ScorePlan) -> dict[str, Any]:
    """A run_date with no curated rows (e.g. a night of duplicates): an empty, committed partition, no model needed."""
    lake = Lake.of(cfg)
    stage_fp = fingerprint("score", plan.curated_fingerprint, "no rows")
    if not manifest_matches(lake.read_manifest(plan.area, cfg.run_date), stage_fp, plan.folder):
        lake.writer(plan.area, cfg.run_date, stage_fp).begin().commit(
            stage="score", run_date=cfg.run_date, inputs=[plan.curated_fingerprint], model_version=None,
            counts={"rows": 0, "scored_this_run": 0, "labels": []}, schema_version=SCHEMA_VERSION)
    return {"stage": "score", "skipped": False, "partition": plan.folder, "rows": 0, "scored_this_run": 0}


def finish_without_scoring(cfg: PipelineConfig, plan: ScorePlan) -> dict[str, Any]:
    """The summary of a plan with nothing to score: an empty night is committed empty; a done one is reported."""
    if plan.action == "empty":
        return commit_empty(cfg, plan)
    if plan.action == "no_model":  # no partition is written: a later run with a model scores the night
        return {"stage": "score", "skipped": True, "reason": plan.reason, "model_version": None, "rows": 0}
    return {"stage": "score", "skipped": True, "partition": plan.folder, "model_version": plan.model_version,
            **plan.committed_counts}


def model_labels(model_dir: str) -> list[str]:
    """The classifier's labels in id order, from its config alone (no weights loaded)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=False)
    return [str(config.id2label[i]) for i in range(config.num_labels)]


def _entity_scorer(*args: Any) -> Any:
    from bert_pipeline.stages.score_entities import EntityScorer  # the task's own module, loaded when it scores

    return EntityScorer(*args)


# task -> the scorer of its models (bert_pipeline/task names the tasks): same arguments, `table` and `metadata`
SCORERS: dict[str, Callable[..., Any]] = {"classification": Scorer, "ner": _entity_scorer}


@functools.lru_cache(maxsize=2)
def cached_scorer(model_ref: str, model_hash: str, max_length: int, batch_tokens: int | None, precision: str,
                  device: str, long_text: str = "truncate", task: str = "classification") -> Scorer:
    """One model load per worker process, however many shards it scores (model_hash keys a changed folder anew)."""
    return SCORERS[task](resolve_model_dir(model_ref, "score.model"), max_length, batch_tokens, precision, device,
                         long_text)


def plan_score(cfg: PipelineConfig, run_id: str | None = None) -> ScorePlan:
    """What every shard task needs; action "skip" when the committed partition already matches, "no_model" when
    the lake has no champion and score.fallback finds nothing to score with (`reason` says why).

    Raises LakeStateError without committed curated rows; ConfigError for a score.model without label names."""
    task = task_of(cfg)
    task.require(cfg, "score")
    lake = Lake.of(cfg)
    curated = lake.require_manifest("curated", cfg.run_date, produced_by="curate")
    area = task.output_area
    folder = lake.partition(area, cfg.run_date)
    source = ScorePlan(run_date=cfg.run_date, folder=folder, curated_fingerprint=curated["fingerprint"], area=area,
                       curated_rows=curated["counts"]["curated_rows"],
                       curated_urls=tuple(lake.shard_urls("curated", cfg.run_date, curated)))
    if source.curated_rows == 0:  # nothing to score (e.g. a night of duplicates): no model needed
        return replace(source, action="empty")
    run_id = run_id or uuid.uuid4().hex
    no_champion = not cfg.score.model and storage.read_json(lake.champion_url) is None
    found = newest_baseline(lake, FALLBACKS[cfg.task]) if no_champion and cfg.score.fallback == "baseline" else None
    if no_champion and found is None:
        reason = no_model_reason(cfg, lake)
        log.warning("score: %s", reason)
        return replace(source, action="no_model", reason=reason)
    if found is not None:  # score.fallback: baseline, and no champion yet
        fallback = found[2]
        model_hash = baseline_hash(baseline_dir(found[0]), fallback)
        stage_fp = fingerprint("score", curated["fingerprint"], model_hash, SCHEMA_VERSION, fallback.kind)
        labels = cached_baseline_scorer(found[0], model_hash, fallback.suffix).labels
        plan = replace(source, fingerprint=stage_fp, model_version=found[1] + fallback.suffix, model_ref=found[0],
                       model_hash=model_hash, labels=tuple(labels), run_id=run_id, fallback=fallback.suffix)
    else:
        model_dir, model_version = resolve_scoring_model(cfg, lake)
        model_hash = folder_content_hash(model_dir)
        max_length = cfg.score.max_length or cfg.tokenize.max_length
        stage_fp = fingerprint("score", curated["fingerprint"], model_hash, max_length, cfg.score.precision,
                               SCHEMA_VERSION, *([cfg.score.long_text] if cfg.score.long_text != "truncate" else []))
        plan = replace(source, fingerprint=stage_fp, max_length=max_length, model_version=model_version,
                       model_ref=cfg.score.model or lake.model_url(model_version), model_hash=model_hash,
                       labels=tuple(model_labels(model_dir)), run_id=run_id)
    manifest = lake.read_manifest(area, cfg.run_date)
    if manifest_matches(manifest, stage_fp, folder) and not cfg.score.force:
        # the committed rows name the model that wrote them (another version may share their model_hash, as two
        # nights' memorising baselines with the same lexicon do)
        return replace(plan, action="skip", committed_counts=manifest["counts"],
                       model_version=manifest.get("model_version") or plan.model_version)
    # Replacing a committed partition (another model, or score.force): build the new one aside and swap it in, so
    # readers see the old rows or the new ones, never a mix. The staging name is deterministic: a crash resumes it.
    # A partition of the same fingerprint that lost shards is repaired in place: its other shards are identical.
    replacing = manifest is not None and (manifest.get("fingerprint") != stage_fp or cfg.score.force)
    staging = lake.staging(area, f"run_date={cfg.run_date}-{stage_fp[:12]}")
    if replacing and cfg.score.force and not storage.exists(storage.join(staging, "_started")):
        storage.remove([staging])  # a forced run recomputes everything, once
        storage.write_bytes_atomic(storage.join(staging, "_started"), b"")
    if not replacing:
        lake.writer(area, cfg.run_date, stage_fp).begin()
    return replace(plan, replacing=replacing, target=staging if replacing else folder)


def score_shard(cfg: PipelineConfig, plan: ScorePlan, index: int) -> dict[str, int]:
    """Score curated shard `index` into the plan's target folder, unless that shard is already there."""
    url = plan.shard_url(index)
    if shard_matches(url, plan.fingerprint):
        return {"rows": storage.parquet_rows(url), "scored": 0}
    scorer: Any = (
        cached_baseline_scorer(plan.model_ref, plan.model_hash, plan.fallback) if plan.fallback else
        cached_scorer(plan.model_ref, plan.model_hash, plan.max_length, cfg.score.batch_tokens, cfg.score.precision,
                      cfg.score.device, cfg.score.long_text, cfg.task))
    source = "score.fallback: baseline (no champion)" if plan.fallback else (cfg.score.model or "champion")
    file_meta = {SHARD_FINGERPRINT: plan.fingerprint, SCHEMA_VERSION_KEY: SCHEMA_VERSION,
                 "bert_pipeline.labels": json.dumps(list(plan.labels)),
                 "bert_pipeline.model_version": plan.model_version,
                 "bert_pipeline.model_hash": plan.model_hash, "bert_pipeline.model_source": source,
                 "bert_pipeline.tokenizer_hash": scorer.tokenizer_hash,
                 "bert_pipeline.score_config": json.dumps(cfg.score.model_dump(mode="json") | {"max_length": plan.max_length}),
                 **scorer.metadata(),
                 "bert_pipeline.precision": str(scorer.dtype).replace("torch.", "") if scorer.dtype else "fp32"}
    shard = storage.read_parquet(plan.curated_urls[index], columns=["doc_id", "text"])
    table = scorer.table(shard["doc_id"], shard["text"].to_pylist(),
                         ScoredBy(plan.model_version, plan.model_hash, plan.run_id))
    storage.write_parquet_atomic(url, table, file_meta)
    rows = table.num_rows
    del shard, table
    release_memory()
    return {"rows": rows, "scored": rows}


def release_memory() -> None:
    """Hand freed memory back to the OS between shards, so peak RSS follows the shard size, not the corpus size."""
    gc.collect()
    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def commit_score(cfg: PipelineConfig, plan: ScorePlan, shard_results: list[dict[str, int]]) -> dict[str, Any]:
    """Check every curated row is scored exactly once, swap a replacement in, write the manifest (last).

    Raises LakeStateError when the shards' rows do not add up to the curated rows."""
    rows = sum(r["rows"] for r in shard_results)
    if rows != plan.curated_rows:
        raise LakeStateError(f"{plan.area} hold {rows} rows but curated has {plan.curated_rows}; not committing")
    counts = {"rows": rows, "scored_this_run": sum(r["scored"] for r in shard_results), "labels": list(plan.labels)}
    lake = Lake.of(cfg)
    writer = lake.writer(plan.area, cfg.run_date, plan.fingerprint, outputs=[shard_name(i) for i in range(plan.shards)])
    if plan.replacing:
        storage.remove([storage.join(plan.target, "_started")])
        # un-commit first: during the swap, and after a crash in it, no manifest vouches for the folder, so a rerun
        # repairs it in place from each shard's own fingerprint instead of trusting the old manifest
        writer.begin()
        storage.replace_folder(plan.target, plan.folder)
        storage.remove_empty_folders(storage.join(lake.root, STAGING))
    writer.commit(stage="score", run_date=cfg.run_date, inputs=[plan.curated_fingerprint],
                  model_version=plan.model_version, model_hash=plan.model_hash, schema_version=SCHEMA_VERSION,
                  config_hash=cfg.fingerprint("score"), counts=counts)
    return {"stage": "score", "skipped": False, "partition": plan.folder, "model_version": plan.model_version,
            **counts}


def run_score(cfg: PipelineConfig, run_id: str | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """All shards in this process, in order (the Prefect flow maps `score_shard` instead)."""
    plan = plan_score(cfg, run_id)
    if plan.action != "score":
        return finish_without_scoring(cfg, plan)
    results = []
    for index in range(plan.shards):
        results.append(score_shard(cfg, plan, index))
        if progress:
            progress(f"scored shard {index + 1}/{plan.shards} ({sum(r['rows'] for r in results)} rows)",
                     (index + 1) / plan.shards)
    return commit_score(cfg, plan, results)
