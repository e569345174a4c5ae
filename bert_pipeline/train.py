"""Train: fine-tune an AutoModelForSequenceClassification from the token shards, evaluate, register the model.

The loop is short on purpose (nanoGPT's rule): length-grouped batches with dynamic padding, AdamW (fused where the
device supports it), linear warmup and decay, bf16 autocast on CUDA devices that have it. The result is a versioned
HF folder under models/<model_version>/ with metrics.json; it becomes champion unless its validation macro-F1 is
worse than the current champion's on the same label set.
"""

from __future__ import annotations

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
from bert_pipeline.errors import InputDataError
from bert_pipeline.lake import Lake, fingerprint, utc_now
from bert_pipeline.metrics import classification_report
from bert_pipeline.models import load_classifier, load_tokenizer, resolve_model_dir
from bert_pipeline.tokenize import read_arrow

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


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


def autocast(device: torch.device) -> Any:
    enabled = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


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


def evaluate(model: Any, data: SplitData, label_names: list[str], batch_size: int, pad_id: int,
             device: torch.device) -> dict[str, Any]:
    if len(data) == 0:
        return {"rows": 0}
    logits = predict_logits(model, data, batch_size, pad_id, device)
    loss = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(data.labels)).item()
    return {"loss": loss, **classification_report(data.labels, logits.argmax(axis=1), label_names)}


def make_optimizer(model: Any, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
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


def fit(model: Any, train: SplitData, cfg: TrainConfig, pad_id: int, device: torch.device,
        progress: Progress | None = None) -> dict[str, Any]:
    """The training loop; returns what happened (steps, losses, samples/s)."""
    rng = np.random.default_rng(cfg.seed)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    optimizer = make_optimizer(model, cfg, device)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_linear(total, cfg.warmup_ratio))
    lengths = train.lengths
    started, step, losses = time.monotonic(), 0, []
    for epoch in range(cfg.epochs):
        model.train()
        for batch in length_grouped_batches(lengths, cfg.batch_size, rng):
            ids, mask = collate([train.sequences[i] for i in batch], pad_id, device)
            labels = torch.from_numpy(train.labels[batch]).to(device)
            with autocast(device):
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            step += 1
            if progress and (step % 50 == 0 or step == total):
                progress(f"epoch {epoch + 1}/{cfg.epochs} step {step}/{total} loss {np.mean(losses[-50:]):.4f}")
    seconds = time.monotonic() - started
    return {"steps": step, "final_loss": float(np.mean(losses[-50:])) if losses else None,
            "seconds": round(seconds, 2), "samples_per_second": round(len(train) * cfg.epochs / max(seconds, 1e-9), 2)}


def promote_if_better(lake: Lake, model_version: str, metrics: dict[str, Any], labels: list[str],
                      tolerance: float = 0.0) -> dict[str, Any]:
    """Make the new model champion unless it is worse on validation macro-F1 than the champion (same labels)."""
    champion = storage.read_json(lake.champion_url)
    new_f1 = metrics["validation"].get("macro_f1", 0.0)
    if champion is None:
        promote, why = True, "no champion yet"
    elif champion.get("label_names") != labels:
        promote, why = True, "champion was trained on another label set"
    else:
        promote = new_f1 >= champion["validation_macro_f1"] - tolerance
        why = f"validation macro-F1 {new_f1:.4f} vs champion {champion['validation_macro_f1']:.4f}"
    decision = {"promoted": promote, "reason": why, "previous_champion": champion and champion["model_version"]}
    if promote:
        storage.write_json_atomic(lake.champion_url, {
            "model_version": model_version, "validation_macro_f1": new_f1, "label_names": labels,
            "promoted_at": utc_now(),
        })
    return decision


def run_train(cfg: PipelineConfig, progress: Progress | None = None) -> dict[str, Any]:
    lake = Lake(cfg.data_root)
    tokens = lake.require_manifest("tokens", cfg.run_date, produced_by="tokenize")
    stage_fp = fingerprint("train", tokens["fingerprint"], cfg.fingerprint("train"))
    model_version = f"{cfg.run_date}-{stage_fp[:10]}"
    model_url = lake.model_url(model_version)
    done = storage.read_json(storage.join(model_url, "_manifest.json"))
    if done and done.get("fingerprint") == stage_fp:
        return {"stage": "train", "skipped": True, "model_version": model_version, "model_uri": model_url,
                "metrics": done["metrics"]}
    if not tokens["counts"]["trainable_by_split"].get("train"):
        log.warning("no labelled training rows for run_date=%s: nothing to train, scoring will use the champion",
                    cfg.run_date)
        return {"stage": "train", "skipped": True, "reason": "no labelled training rows", "model_version": None}

    labels: list[str] = tokens["label_names"]
    if len(labels) < 2:
        raise InputDataError(
            f"train: the labelled rows of run_date={cfg.run_date} hold {len(labels)} distinct label(s) {labels}; "
            "a classifier needs at least 2 (check ingest.label_column)"
        )
    splits = load_splits(lake, cfg.run_date, tokens)
    train_data = subsample(splits["train"], cfg.train.max_train_samples, cfg.train.seed)
    torch.manual_seed(cfg.train.seed)
    device = pick_device(cfg.train.device)
    base_dir = resolve_model_dir(cfg.train.base_model)
    tokenizer = load_tokenizer(base_dir)
    model = load_classifier(
        base_dir, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)}, ignore_mismatched_sizes=True,
    ).to(device)
    pad_id = tokens["tokenizer"]["pad_token_id"] or 0
    history = fit(model, train_data, cfg.train, pad_id, device, progress)
    metrics = {
        "model_version": model_version,
        "label_names": labels,
        "train": {"rows": len(train_data), "available_rows": len(splits["train"]), **history},
        "validation": evaluate(model, splits["validation"], labels, cfg.train.eval_batch_size, pad_id, device),
        "test": evaluate(model, splits["test"], labels, cfg.train.eval_batch_size, pad_id, device),
        "device": str(device),
    }
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        storage.write_json_atomic(os.path.join(tmp, "metrics.json"), metrics)
        storage.upload_folder(tmp, model_url)
    decision = promote_if_better(lake, model_version, metrics, labels)
    storage.write_json_atomic(storage.join(model_url, "_manifest.json"), {
        "fingerprint": stage_fp, "stage": "train", "run_date": cfg.run_date, "inputs": [tokens["fingerprint"]],
        "config_hash": cfg.fingerprint("train"), "base_model": cfg.train.base_model or "packaged MiniLM",
        "tokenizer_hash": tokens["tokenizer"]["hash"], "metrics": metrics, "champion_decision": decision,
        "committed_at": utc_now(),
    })
    return {"stage": "train", "skipped": False, "model_version": model_version, "model_uri": model_url,
            "metrics": metrics, "champion_decision": decision}
