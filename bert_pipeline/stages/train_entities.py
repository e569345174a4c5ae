"""Train for task: ner: a token classifier (AutoModelForTokenClassification, BIO tags) on the accumulated entity
annotations, behind train.py's Recipe interface, so the loop, checkpoints, DDP, domain adaptation, the shared gate
rules and the commit are the classifier's.

- Training set: every committed night's labelled curated rows in the window (`train.window_days`), the newest label
  correction of a text applied, the newest version of a re-sent id, the split curate gave it; a row whose spans are in
  conflict is not read. Texts are tokenized with offsets and each token gets the BIO tag of the span it falls in
  (`ner.tagging.token_labels_for_spans`; special tokens -100, ignored by the loss).
- Tags: O, B-X, I-X over the entity types of the training rows. A type seen only in validation or test is refused
  (the model could never predict it) unless train.drop_unseen_labels drops those spans from the gold.
- Validation and test: per-token logits, constrained Viterbi decoding (never an I- without its B-), spans mapped back
  to character offsets of the stored text (`ner.tagging.predict_entities`); exact-match entity precision, recall and
  F1 (micro, macro, per type), as seqeval's strict IOB2 mode counts them (`ner.metrics.entity_scores`); the best epoch
  has the best validation entity F1 (micro).
- Gate: validation entity F1 must beat the CRF baseline (train.linear_baseline: a linear-chain CRF on word features,
  `ner.crf.CrfTagger`) and the memorising baseline (every string seen as an entity in training, tagged
  with its most frequent type: `ner.metrics.MemorisingTagger`) and tie or beat the champion's on the same rows.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import polars as pl
import torch
import xxhash

from bert_pipeline.config import PipelineConfig, TrainConfig
from bert_pipeline.curation.labels import apply_corrections, read_corrections
from bert_pipeline.errors import ConfigError, InputDataError
from bert_pipeline.evaluation import registry, selection
from bert_pipeline.evaluation.selection import Average
from bert_pipeline.lake.manifests import Lake
from bert_pipeline.modeling.inference import eval_budget, predict_token_logits
from bert_pipeline.modeling.models import (
    check_dropout, fast_encoder, load_token_classifier, load_tokenizer, resolve_model_dir,
)
from bert_pipeline.modeling.windows import Windowing, token_logits_over_windows
from bert_pipeline.ner.crf import CRF_FILE, CrfTagger
from bert_pipeline.ner.metrics import (
    MemorisingTagger, entity_row_counts, entity_scores, type_confusion,
)
from bert_pipeline.ner.spans import Span
from bert_pipeline.ner.tagging import predict_entities, tag_names, token_labels_for_spans
from bert_pipeline.stages.train import Objective, TrainRun, margin_of, nested_of, settle
from bert_pipeline.task.ner import decode_spans, encode_spans
from bert_pipeline.text.vocabulary import grow_embeddings
from bert_pipeline.training.trainset import (
    SPLITS, SplitData, TrainingSet, TrainingSetPlan, newest_versions, subsample,
)

log = logging.getLogger(__name__)
PROBLEM_TYPE = "token_classification"


@dataclass
class TaggedSplit(SplitData):
    """A split of an NER training set: `labels` holds one int64 tag-id array per row (-100 on special tokens);
    `offsets` each row's token character offsets [tokens, 2], `gold` its spans, `texts` its curated text."""

    offsets: list[np.ndarray] = field(default_factory=list)
    gold: list[list[Span]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    def take(self, index: np.ndarray) -> "TaggedSplit":
        return TaggedSplit([self.sequences[i] for i in index], self.labels[index],
                           [self.doc_ids[i] for i in index], [self.run_dates[i] for i in index],
                           [self.offsets[i] for i in index], [self.gold[i] for i in index],
                           [self.texts[i] for i in index])

    def windows(self, windowing: Windowing) -> "TaggedSplit":
        """train.long_text: chunk: one training row per window of these whole texts, its targets the tags of its
        own tokens (-100 on the special tokens each window gets). Offsets, gold and texts are not carried: a
        window is trained on, never decoded."""
        windows, document = windowing.split(self.sequences)
        labels = np.empty(len(windows), dtype=object)
        labels[:] = windowing.cut_values(list(self.labels), -100)
        return TaggedSplit(windows, labels, [self.doc_ids[i] for i in document],
                           [self.run_dates[i] for i in document])

    def stripped(self, windowing: Windowing) -> "TaggedSplit":
        """The split cut to its content tokens (what windowed logits line up with): sequences, tag targets and
        offsets without the special tokens."""
        labels = np.empty(len(self), dtype=object)
        labels[:] = [windowing.strip(row) for row in self.labels]
        return TaggedSplit([windowing.strip(s) for s in self.sequences], labels, self.doc_ids, self.run_dates,
                           [windowing.strip(o) for o in self.offsets], self.gold, self.texts)


def split_logits(model: Any, rows: TaggedSplit, cfg: TrainConfig, pad_id: int, device: torch.device,
                 windowing: Windowing | None) -> tuple[list[np.ndarray], TaggedSplit]:
    """Per-row token logits of a split and the split they line up with. With windowing (train.long_text: chunk),
    each text is read in windows and a token's logits come from the window that reads it in the most context
    (`modeling.windows.token_logits_over_windows`), lining up with the split's content tokens (`stripped`)."""
    def predict(sequences: list[np.ndarray]) -> list[np.ndarray]:
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        return predict_token_logits(model, sequences, eval_budget(lengths, cfg.eval_batch_size), pad_id, device,
                                    cfg.precision)

    if windowing is None:
        return predict(rows.sequences), rows
    return token_logits_over_windows(windowing, rows.sequences, predict)[0], rows.stripped(windowing)


def _labelled_rows(lake: Lake, plan: TrainingSetPlan) -> tuple[pl.DataFrame, int]:
    """doc_id, text, label, split, run_date of every trainable row of the plan's nights, corrections applied, newest
    version of each id; and how many rows a correction relabelled."""
    corrections = read_corrections(lake, [night.run_date for night in plan.nights])
    wanted = set(corrections["doc_id"].to_list())
    frames = []
    for night in plan.nights:
        table = lake.dataset("curated", {night.run_date: night.curated}).to_table(
            columns=["doc_id", "text", "label", "label_conflict", "split"])
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        frames.append(frame.with_columns(
            label=pl.when(pl.col("label_conflict")).then(None).otherwise(pl.col("label")),
            run_date=pl.lit(night.run_date)).drop("label_conflict"))
    schema = {"doc_id": pl.String, "text": pl.String, "label": pl.String, "split": pl.String, "run_date": pl.String}
    frame = pl.concat(frames) if frames else pl.DataFrame(schema=schema)
    frame = frame.filter(pl.col("label").is_not_null() | pl.col("doc_id").is_in(list(wanted)))
    before = frame["label"].to_list()
    frame = apply_corrections(frame, corrections)
    corrected = sum(old != new for old, new, doc in zip(before, frame["label"], frame["doc_id"]) if doc in wanted)
    frame, _ = newest_versions(frame.filter(pl.col("label").is_not_null()))
    return frame, corrected


def _unseen_types(by_split: dict[str, pl.DataFrame], types: set[str], drop: bool) -> dict[str, dict[str, int]]:
    """{type: spans per split} of entity types with no training span. Errors: InputDataError unless `drop`."""
    unseen: dict[str, dict[str, int]] = {}
    for split in ("validation", "test"):
        for value in by_split[split]["label"].to_list():
            for span in decode_spans(value):
                if span.label not in types:
                    unseen.setdefault(span.label, {s: 0 for s in SPLITS})[split] += 1
    if unseen and not drop:
        described = "; ".join(f"{label!r}: {counts}" for label, counts in sorted(unseen.items()))
        raise InputDataError(
            f"train: entity type(s) with no span in the training rows would be a tag the model never learned: "
            f"{described}. Annotate training rows with them, or set train.drop_unseen_labels: true to leave those "
            "spans out of the validation and test gold (the model manifest then lists them)")
    return unseen


def _split(frame: pl.DataFrame, encoder: Any, tags: list[str], types: set[str]) -> TaggedSplit:
    texts = frame["text"].to_list()
    gold = [[s for s in decode_spans(v) if s.label in types] for v in frame["label"].to_list()]
    sequences, labels, offsets = [], [], []
    for start in range(0, len(texts), 1024):
        for encoding, spans in zip(encoder.encode_batch(texts[start:start + 1024]), gold[start:start + 1024]):
            sequences.append(np.asarray(encoding.ids, np.int64))
            offsets.append(np.asarray(encoding.offsets, np.int64).reshape(-1, 2))
            labels.append(token_labels_for_spans(offsets[-1], spans, tags)[0])
    array = np.empty(len(labels), dtype=object)
    array[:] = labels
    return TaggedSplit(sequences, array, frame["doc_id"].to_list(), frame["run_date"].to_list(), offsets, gold, texts)


def load_tagging_set(cfg: PipelineConfig, plan: TrainingSetPlan, encoder: Any) -> TrainingSet:
    """The accumulated NER training set; its `label_names` are the BIO tags (tagging.tag_names of the training
    rows' entity types). encoder: tonight's tokenizers.Tokenizer, truncating at max_length (untruncated under
    train.long_text: chunk: tags cover every token and training cuts windows). Errors: InputDataError for types
    without training spans (see _unseen_types) or a training set without any entity."""
    frame, corrected = _labelled_rows(Lake.of(cfg), plan)
    by_split = {split: frame.filter(pl.col("split") == split) for split in SPLITS}
    by_split["train"] = subsample(by_split["train"], cfg.train.max_train_samples, cfg.train.seed)
    if by_split["train"].is_empty():
        return TrainingSet({s: TaggedSplit([], np.zeros(0, object)) for s in SPLITS}, [], {}, {}, 0, {},
                           PROBLEM_TYPE)
    types = {span.label for value in by_split["train"]["label"].to_list() for span in decode_spans(value)}
    if not types:
        raise InputDataError(
            f"train: the {by_split['train'].height} labelled training rows of run_dates "
            f"{[n.run_date for n in plan.nights]} hold no entity at all: there is no type to learn; check the "
            "annotation export (ner.annotations, ner.spans_key)")
    dropped = _unseen_types(by_split, types, cfg.train.drop_unseen_labels)
    tags = tag_names(types)
    splits = {split: _split(f, encoder, tags, types) for split, f in by_split.items()}
    rows_by_night: dict[str, dict[str, int]] = {n.run_date: {s: 0 for s in SPLITS} for n in plan.nights}
    for split, f in by_split.items():
        for date, n in f["run_date"].value_counts().iter_rows():
            rows_by_night[date][split] = int(n)
    source = {n.run_date: "re-tokenized" for n in plan.nights}  # the tags need each token's character offsets
    return TrainingSet(splits, tags, rows_by_night, source, corrected, dropped, PROBLEM_TYPE)  # type: ignore[arg-type]


def decode(logits: Sequence[np.ndarray], data: TaggedSplit, tags: list[str]) -> list[list[Span]]:
    """Each row's predicted entities (constrained Viterbi over the BIO tags), as Spans of its text."""
    return [[Span(e.start, e.end, e.label) for e in predict_entities(row, offsets, tags, text=text)]
            for row, offsets, text in zip(logits, data.offsets, data.texts)]


def token_loss(logits: Sequence[np.ndarray], data: TaggedSplit) -> float | None:
    """Mean cross-entropy over the labelled tokens of a split (None without any)."""
    if not len(logits):
        return None
    flat = torch.from_numpy(np.concatenate(logits))
    target = torch.from_numpy(np.concatenate(list(data.labels)))
    return float(torch.nn.functional.cross_entropy(flat, target, ignore_index=-100).item())


def entity_report(predicted: list[list[Span]], data: TaggedSplit, logits: Sequence[np.ndarray]) -> dict[str, Any]:
    """Entity-level figures of one split: entity_f1 (micro), entity_macro_f1, precision, recall, per_type, the
    type confusion, token loss and rows."""
    scores = entity_scores(data.gold, predicted)
    confusion = type_confusion(data.gold, predicted)
    return {"rows": len(data), "entity_f1": scores["micro"]["f1"], "entity_macro_f1": scores["macro"]["f1"],
            "precision": scores["micro"]["precision"], "recall": scores["micro"]["recall"],
            "entities": scores["micro"]["support"], "predicted_entities": scores["micro"]["predicted"],
            "per_type": scores["per_type"], "loss": token_loss(logits, data),
            "type_confusion": [{"gold": g, "predicted": p, "count": n} for (g, p), n in sorted(confusion.items())]}


@dataclass
class TaggerObjective:
    """Token classification: cross-entropy over the BIO tags of every labelled token; the best epoch has the best
    validation entity F1."""

    cfg: TrainConfig
    train: TaggedSplit
    tags: list[str]
    selection: str = "entity_f1"
    average: Average = "micro"

    def batch_labels(self, batch: np.ndarray, width: int, device: torch.device) -> torch.Tensor:
        targets = np.full((len(batch), width), -100, np.int64)
        for row, i in enumerate(batch.tolist()):
            targets[row, : len(self.train.labels[i])] = self.train.labels[i]
        return torch.from_numpy(targets).to(device)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                 ignore_index=-100)

    def validate(self, model: Any, data: SplitData, pad_id: int, device: torch.device,
                 windowing: Windowing | None) -> dict[str, Any]:
        assert isinstance(data, TaggedSplit)
        logits, rows = split_logits(model, data, self.cfg, pad_id, device, windowing)
        predicted = decode(logits, rows, self.tags)
        return entity_report(predicted, rows, logits) | {
            "fold_counts": selection.by_fold(entity_row_counts(rows.gold, predicted))}


@dataclass
class EntityBaselineModels:
    """What an entity model stores under baseline/: the memorising lexicon (lexicon.json) and, under
    train.linear_baseline, the CRF (`ner.crf.CRF_FILE`)."""

    lexicon: MemorisingTagger
    crf: CrfTagger | None

    def save(self, folder: str) -> None:
        self.lexicon.save(folder)
        if self.crf is not None:
            self.crf.save(folder)


@dataclass
class Memorised:
    """The baselines fitted on a training set: their figures and their validation answers (crf_answers: None when
    train.linear_baseline is off)."""

    metrics: dict[str, Any]
    validation_answers: list[list[Span]]
    model: EntityBaselineModels  # saved under baseline/ beside the model
    crf_answers: list[list[Span]] | None = None


def champion_entities(lake: Lake, champion: dict[str, Any], data: TaggedSplit, cfg: TrainConfig,
                      device: torch.device) -> list[list[Span]] | None:
    """The champion's entities on these rows (their texts tokenized with its own tokenizer at the max_length it was
    trained with; under train.long_text: chunk every token, in its windows of that length), or None when its
    folder cannot be loaded."""
    manifest = registry.model_manifest(lake, champion["model_version"])
    try:
        folder = resolve_model_dir(lake.model_url(champion["model_version"]), "champion")
        model = load_token_classifier(folder).to(device)
        tokenizer = load_tokenizer(folder)
    except (ConfigError, OSError) as exc:
        log.warning("champion %s cannot be loaded (%s): comparing with the baseline alone",
                    champion["model_version"], exc)
        return None
    max_length = int(manifest.get("max_length") or 512)
    chunk = cfg.long_text == "chunk"
    encoder = fast_encoder(tokenizer, None if chunk else max_length)
    encodings = encoder.encode_batch(data.texts) if data.texts else []
    sequences = [np.asarray(e.ids, np.int64) for e in encodings]
    blank = np.empty(len(sequences), dtype=object)
    blank[:] = [np.full(len(s), -100, np.int64) for s in sequences]
    theirs = TaggedSplit(sequences, blank, data.doc_ids, data.run_dates,
                         [np.asarray(e.offsets, np.int64).reshape(-1, 2) for e in encodings], data.gold, data.texts)
    logits, rows = split_logits(model, theirs, cfg, tokenizer.pad_token_id or 0, device,
                                Windowing.of(encoder, max_length) if chunk else None)
    return decode(logits, rows, [str(model.config.id2label[i]) for i in range(model.config.num_labels)])


# baseline -> (what it is, what a refusal by it advises), for the gate's messages
BASELINE_REFUSALS = {
    "memorising baseline": ("every string seen as an entity in training, tagged with its most frequent type",
                            ": the model learned too little to be trusted; train longer (train.epochs, "
                            "train.min_steps) or annotate more rows"),
    "CRF baseline": ("a linear-chain CRF on word features, trained on the same rows",
                     "; with no champion, score.fallback: baseline scores with the CRF. For text the base model reads "
                     "poorly (see the tokenize stage's coverage) set train.base_model to a model of its language"),
}


def entity_gate(gold: list[list[Span]], new: list[list[Span]], baseline: list[list[Span]] | None,
                champion: dict[str, Any] | None, theirs: list[list[Span]] | None, tolerance: float,
                crf: list[list[Span]] | None = None, nested: float | None = None,
                margin: registry.Margin = registry.Margin()) -> dict[str, Any]:
    """The champion decision for a new entity model from validation gold and predictions (pure): its nested
    validation entity F1 (`nested`, see `registry.gate`; None = the plain figure) must beat the CRF baseline's
    (when given) and the memorising baseline's (strictly), and its plain figure tie or beat the champion's on the
    same rows (within tolerance). `margin`: as `registry.gate`'s, against the CRF baseline."""
    rows, entities = len(gold), sum(map(len, gold))
    new_f1 = entity_scores(gold, new)["micro"]["f1"]
    judged, figure = registry.held_figure(new_f1, nested, "validation entity F1")
    interval = None if crf is None else selection.difference_interval(entity_row_counts(gold, new),
                                                                      entity_row_counts(gold, crf), "micro")
    told = registry.tell_apart_note(interval, entities, "validation entities", "CRF baseline")
    base_f1 = entity_scores(gold, baseline)["micro"]["f1"] if baseline is not None else None
    crf_f1 = entity_scores(gold, crf)["micro"]["f1"] if crf is not None else None
    their_f1 = entity_scores(gold, theirs)["micro"]["f1"] if champion and theirs is not None else None
    decision: dict[str, Any] = {
        "validation_rows": rows, "validation_entities": entities, "new_validation_entity_f1": new_f1,
        "memorising_validation_entity_f1": base_f1, "crf_validation_entity_f1": crf_f1,
        "champion_validation_entity_f1": their_f1, "new_validation_entity_f1_nested": nested,
        "crf_difference_interval": interval, "baseline_margin": str(margin),
        "champion_run_on_these_rows": theirs is not None and bool(rows),
        "previous_champion": champion and champion["model_version"], "tolerance": tolerance,
    }
    if entities == 0:
        return decision | {"promoted": False, "reason": (
            f"the {rows} labelled validation rows hold no entity: nothing to compare models on; annotate more rows "
            "or raise curate.validation_fraction")}
    short = [(name, f1) for name, f1 in (("memorising baseline", base_f1), ("CRF baseline", crf_f1))
             if f1 is not None and registry.falls_short(judged, f1)]  # each must be beaten; name all it is not
    if short:
        beaten_by = " nor ".join(f"the {name} {f1:.4f} ({BASELINE_REFUSALS[name][0]})" for name, f1 in short)
        advice = "".join(BASELINE_REFUSALS[name][1] for name, _ in short)
        return decision | {"promoted": False, "reason": (
            f"{figure} does not beat {beaten_by} on {entities} validation entities{advice}"
            f"{told if 'CRF baseline' in dict(short) else ''}")}
    if crf_f1 is not None and (refusal := registry.within_noise(figure, interval, margin, entities,
                                                                "validation entities", f"CRF baseline {crf_f1:.4f}")):
        return decision | {"promoted": False, "reason": refusal}
    base_note = "" if base_f1 is None else f" (memorising baseline {base_f1:.4f})"
    base_note += "" if crf_f1 is None else f" (CRF baseline {crf_f1:.4f})"
    if champion is None or their_f1 is None:
        missing = "no champion yet" if champion is None else (
            f"champion {champion['model_version']} could not be loaded, so it is compared with the baseline alone")
        crf_versus = "" if crf_f1 is None else f" and {registry.versus(judged, crf_f1, 'CRF baseline')}"
        return decision | {"promoted": True, "reason": f"{figure} "
                           f"{registry.versus(judged, base_f1 or 0.0, 'memorising baseline')}{crf_versus}{told}; {missing}"}
    promote = new_f1 >= their_f1 - tolerance
    verdict = "beats or ties" if new_f1 >= their_f1 else ("is within tolerance of" if promote else "is worse than")
    return decision | {"promoted": promote, "reason": (
        f"validation entity F1 {new_f1:.4f} {verdict} champion {champion['model_version']} at {their_f1:.4f} on the "
        f"same {entities} validation entities{base_note}"
        f"{registry.perfect_tie_note(new_f1, base_f1, 'memorising baseline')}{told}")}


def _figures(splits: dict[str, TaggedSplit], answers: dict[str, list[list[Span]]]) -> dict[str, dict[str, float]]:
    """{split: entity_f1, entity_macro_f1, precision, recall} of a baseline's answers."""
    return {name: {"entity_f1": s["micro"]["f1"], "entity_macro_f1": s["macro"]["f1"],
                   "precision": s["micro"]["precision"], "recall": s["micro"]["recall"]}
            for name, s in ((n, entity_scores(splits[n].gold, a)) for n, a in answers.items())}


class TaggerRecipe:
    """Recipe (bert_pipeline/stages/train.py) for task: ner."""

    def load(self, cfg: PipelineConfig, plan: TrainingSetPlan, encoder: Any) -> TrainingSet:
        return load_tagging_set(cfg, plan, encoder)

    def content_hash(self, data: TrainingSet) -> str:
        """xxh3-128 of (split, doc_id, spans) of every row."""
        digest = xxhash.xxh3_128()
        for split, rows in sorted(data.splits.items()):
            assert isinstance(rows, TaggedSplit)
            for doc_id, spans in sorted(zip(rows.doc_ids, map(encode_spans, rows.gold))):
                digest.update(f"{split}\x00{doc_id}\x00{spans}\n".encode())
        return digest.hexdigest()

    def new_model(self, base_dir: str, cfg: TrainConfig, data: TrainingSet, device: torch.device,
                  vocabulary: tuple[Any, Any]) -> Any:
        tags = data.label_names
        model = load_token_classifier(base_dir, num_labels=len(tags), id2label=dict(enumerate(tags)),
                                      label2id={t: i for i, t in enumerate(tags)}, ignore_mismatched_sizes=True,
                                      **check_dropout(base_dir, cfg))
        if grown := grow_embeddings(model, *vocabulary):
            log.info("train: %d embedding rows added for the extended vocabulary", grown)
        return model.to(device)

    def objective(self, cfg: TrainConfig, data: TrainingSet,
                  device: torch.device) -> Callable[[SplitData], Objective] | None:
        return lambda train: TaggerObjective(cfg, train, data.label_names)  # type: ignore[arg-type]

    def evaluate(self, model: Any, data: TrainingSet, cfg: TrainConfig, pad_id: int, device: torch.device,
                 windowing: Windowing | None) -> tuple[dict[str, Any], Any]:
        """Validation and test entity figures of the best weights; the validation predictions for the gate."""
        metrics: dict[str, Any] = {"calibration": {"problem_type": PROBLEM_TYPE, "decoding": "constrained Viterbi "
                                                   "over BIO transitions (ner.tagging.constrained_decode)"}}
        answers: list[list[Span]] = []
        for split in ("validation", "test"):
            split_rows = data.splits[split]
            assert isinstance(split_rows, TaggedSplit)
            logits, rows = split_logits(model, split_rows, cfg, pad_id, device, windowing)
            predicted = decode(logits, rows, data.label_names)
            metrics[split] = entity_report(predicted, rows, logits)
            answers = predicted if split == "validation" else answers
        return metrics, answers

    def baseline(self, run: TrainRun, data: TrainingSet) -> Memorised:
        """The memorising baseline and, under train.linear_baseline, the CRF, fitted on the training rows and
        scored on validation and test (metrics["baseline"]; the CRF's under its "crf" key)."""
        splits = {name: rows for name, rows in data.splits.items() if isinstance(rows, TaggedSplit)}
        tagger = MemorisingTagger().fit(splits["train"].texts, splits["train"].gold)
        answers = {name: tagger.predict(rows.texts) for name, rows in splits.items() if name != "train"}
        metrics = {"kind": "memorising", "entries": len(tagger.lexicon), "model_version": run.model_version + "-lexicon",
                   **_figures(splits, answers)}
        log.info("train: memorising baseline (%d strings) validation entity F1 %.4f, test %.4f", len(tagger.lexicon),
                 metrics["validation"]["entity_f1"], metrics["test"]["entity_f1"])
        crf, crf_answers = None, None
        if run.cfg.train.linear_baseline and any(splits["train"].gold):
            started = time.perf_counter()
            crf = CrfTagger().fit(splits["train"].texts, splits["train"].gold)
            crf_answers = {name: crf.predict(rows.texts) for name, rows in splits.items() if name != "train"}
            metrics["crf"] = {"kind": "crf", "features": "the sklearn-crfsuite tutorial's, +-2 units and pairs",
                              "seconds": round(time.perf_counter() - started, 2), **_figures(splits, crf_answers)}
            log.info("train: CRF baseline validation entity F1 %.4f, test %.4f, in %.1f s",
                     metrics["crf"]["validation"]["entity_f1"], metrics["crf"]["test"]["entity_f1"],
                     metrics["crf"]["seconds"])
        return Memorised(metrics, answers["validation"], EntityBaselineModels(tagger, crf),
                         crf_answers["validation"] if crf_answers else None)

    def gate(self, run: TrainRun, data: TrainingSet, validation_output: Any, metrics: dict[str, Any], pad_id: int,
             device: torch.device, windowing: Windowing | None, baseline: Any) -> dict[str, Any]:
        validation = data.splits["validation"]
        assert isinstance(validation, TaggedSplit)
        champion = registry.read_champion(run.lake)
        theirs = (champion_entities(run.lake, champion, validation, run.cfg.train, device)
                  if champion is not None and len(validation) else None)
        decision = entity_gate(validation.gold, validation_output, baseline.validation_answers if baseline else None,
                               champion, theirs, run.cfg.train.champion_tolerance,
                               baseline.crf_answers if baseline else None, nested_of(metrics), margin_of(run))
        return settle(run, data, decision, champion)

    def card(self, model_version: str, run_date: str, base_model: str, metrics: dict[str, Any],
             training_set: dict[str, Any], decision: dict[str, Any], recipe: str, fingerprints: dict[str, str]) -> str:
        status = ("**Champion**" if decision.get("promoted") else "**Not promoted** (kept for inspection; scoring "
                  "uses the champion)") + f": {decision.get('reason')}."
        tags = metrics["label_names"]
        rows = "".join(f"| {name} | {m.get('rows', 0)} | {m.get('entities', 0)} | {m.get('precision', 0):.4f} | "
                       f"{m.get('recall', 0):.4f} | {m.get('entity_f1', 0):.4f} | {m.get('entity_macro_f1', 0):.4f} |\n"
                       for name, m in (("validation", metrics["validation"]), ("test", metrics["test"])))
        types = "".join(f"| {kind} | {m['support']} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} |\n"
                        for kind, m in metrics["test"].get("per_type", {}).items())
        base = metrics.get("baseline") or {}
        return (
            f"# {model_version}\n\n{status}\n\nEntity tagger (token classification, BIO tags) fine-tuned by "
            f"bert-pipeline for run_date {run_date} from `{base_model}`.\n\nTags: {', '.join(tags)}\n\n"
            "| split | rows | entities | precision | recall | entity F1 (micro) | entity F1 (macro) |\n"
            f"|---|---|---|---|---|---|---|\n{rows}\n"
            f"Test, per type:\n\n| type | entities | precision | recall | F1 |\n|---|---|---|---|---|\n{types}\n"
            + (f"Memorising baseline ({base.get('entries')} strings, baseline/lexicon.json): validation entity F1 "
               f"{base['validation']['entity_f1']:.4f}, test {base['test']['entity_f1']:.4f}.\n\n" if base else "")
            + (f"CRF baseline (baseline/{CRF_FILE}): validation entity F1 {base['crf']['validation']['entity_f1']:.4f}"
               f", test {base['crf']['test']['entity_f1']:.4f}.\n\n" if base.get("crf") else "")
            + f"Training set: the labelled rows of {len(training_set['rows_by_night'])} night(s), "
            f"{training_set['corrections_applied']} label correction(s) applied.\n\nRecipe: {recipe}. Decoding: "
            f"constrained Viterbi (no I- without its B-).\n\nFingerprints: {json.dumps(fingerprints)}\n")
