"""Domain-adaptive pretraining: a budgeted masked-language-model pass over a lake's own text before fine-tuning.

Gururangan et al., "Don't Stop Pretraining: Adapt Language Models to Domains and Tasks" (ACL 2020): continuing the
masked-LM objective on text of the target domain (DAPT), and even on the task's own unlabelled text (TAPT), improves
the fine-tuned classifier, most when the domain is far from the pretraining corpus. Here the text is the lake's,
labelled and unlabelled alike.

The pass is BERT's recipe: transformers' `DataCollatorForLanguageModeling` picks `mask_probability` of the non-special
tokens and replaces 80 % of them with [MASK], 10 % with a random token and keeps 10 %; AdamW with linear warmup and
decay (`optimization.make_optimizer`, `optimization.warmup_linear`); the precision `optimization.training_precision` chooses. It stops at
whichever comes first of `max_steps` optimizer steps, `max_minutes` of wall clock (time spent by an earlier, killed
attempt counts) and `max_passes` passes over the text, and records which.

Resumable after kill -9: every `checkpoint_every_steps` steps the model, optimizer, scheduler, grad scaler, RNG
states, step, elapsed seconds and the position in the data order go to the work folder's checkpoint.pt in one write.
The data order is a function of (seed, pass) and the masking of (seed, step), so a resumed run takes exactly the
steps the killed one would have. The committed folder:

    <out_url>/model.safetensors, config.json    the adapted encoder with its masked-LM head (and the base model's
                                                pooler, which a masked-LM model has no use for but a classifier reads)
    <out_url>/tokenizer files                   `plan.tokenizer.save_pretrained` (added tokens included)
    <out_url>/modules.json, 1_Pooling/...       the base's sentence-transformers files, when it has them
    <out_url>/_manifest.json                    written last: the commit marker, with `key` (see `AdaptationPlan`)

`AutoModelForSequenceClassification.from_pretrained` (or `models.load_classifier`) of that folder gives the adapted
encoder and pooler with a fresh classification head.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import xxhash

from bert_pipeline.lake import storage
from bert_pipeline.modeling.inference import autocast
from bert_pipeline.training.checkpoint import CheckpointStore
from bert_pipeline.lake.manifests import utc_now
from bert_pipeline.modeling.models import fast_encoder, require_safetensors, with_fresh_heads
from bert_pipeline.training.optimization import length_grouped_batches, make_optimizer, training_precision, warmup_linear
from bert_pipeline.progress import Progress

log = logging.getLogger(__name__)

MANIFEST = "_manifest.json"
HELDOUT_SHARE, HELDOUT_MAX, HELDOUT_MIN_TEXTS = 0.05, 500, 20  # held-out slice: 5 % of the texts, at most 500
_TRAIN_MASKS, _HELDOUT_MASKS = 0, 1  # streams of masking seeds
_SENTENCE_TRANSFORMERS_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")

GrowEmbeddings = Callable[[Any, Any], Any]  # (model, tokenizer) -> anything; grows the embeddings to len(tokenizer)


@dataclass(frozen=True)
class AdaptationPlan:
    """What to adapt, where it goes, and the budget.

    base_dir: a local Hugging Face model folder (`models.resolve_model_dir`), safetensors weights.
    tokenizer: a transformers fast tokenizer; it may hold more tokens than the base's embedding matrix has rows
        (`tokenizer.add_tokens`): the matrix grows to len(tokenizer).
    key: what is adapted, e.g. a hash of the base model, `models.tokenizer_hash` and these settings; a committed
        folder with the same key is reused as it is, and a checkpoint of another key is discarded.
    out_url / work_url: folder (local path or fsspec URL) of the committed model / of the checkpoints.
    max_steps: optimizer steps at most; max_minutes: wall-clock minutes at most (loading and evaluation included);
        max_passes: passes over the training texts at most.
    batch_size: texts per step; max_length: tokens per text, [CLS] and [SEP] included (longer texts are cut).
    learning_rate: AdamW peak, after warmup_ratio of the planned steps; weight_decay: AdamW's (not on biases and
        LayerNorm weights); embedding_learning_rate: the input embedding matrix's own peak (None = learning_rate;
        `optimization.make_optimizer`).
    mask_probability: share of non-special tokens the loss is taken on (BERT: 0.15).
    seed: masking, data order, the held-out slice, the fresh masked-LM head and new embedding rows.
    precision: "auto" | "fp32" | "bf16" (`optimization.training_precision`; auto is fp16 with a grad scaler on CUDA
        devices without bf16).
    """

    base_dir: str
    tokenizer: Any
    key: str
    out_url: str
    work_url: str
    max_steps: int = 1000
    max_minutes: float = 30.0
    batch_size: int = 32
    max_length: int = 128
    learning_rate: float = 5e-5
    mask_probability: float = 0.15
    seed: int = 0
    checkpoint_every_steps: int = 200
    precision: str = "auto"
    max_passes: int = 3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    embedding_learning_rate: float | None = None

    def __post_init__(self) -> None:
        if self.max_steps < 1 or self.batch_size < 1 or self.checkpoint_every_steps < 1 or self.max_passes < 1:
            raise ValueError("max_steps, batch_size, checkpoint_every_steps and max_passes must be at least 1")
        if self.max_minutes <= 0 or not 0.0 < self.mask_probability < 1.0 or self.max_length < 3:
            raise ValueError("max_minutes must be positive, mask_probability in (0, 1), max_length at least 3")


@dataclass
class AdaptProgress:
    """Where an adaptation stood at its last checkpoint (progress.json). `epoch`/`batch_in_epoch`: the pass over the
    texts in progress (0-based) and the batches of it done; `seconds`: wall clock spent so far."""

    key: str = ""
    data_hash: str = ""
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    seconds: float = 0.0
    tokens_seen: int = 0
    heldout_loss_before: float | None = None


def _extra(losses: list[float], device: torch.device) -> dict[str, torch.Tensor]:
    """What an adaptation checkpoint holds beyond the loop's state: the per-step losses and the CUDA RNG."""
    extra = {"losses": torch.tensor(losses, dtype=torch.float64)}
    if device.type == "cuda":
        extra["cuda_rng"] = torch.cuda.get_rng_state(device)
    return extra


def _restore(store: CheckpointStore, model: Any, optimizer: Any, scheduler: Any, scaler: Any,
             device: torch.device) -> list[float]:
    """Resume from the store's checkpoint (RNGs included); returns the per-step losses so far."""
    state = store.restore(model, optimizer, scheduler, scaler)
    if device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"], device)
    return [float(x) for x in state["losses"].tolist()]


def committed(out_url: str, key: str) -> dict[str, Any] | None:
    """The manifest of the adapted folder at out_url when it was committed for `key`; else None."""
    manifest = storage.read_json(storage.join(out_url, MANIFEST))
    return manifest if isinstance(manifest, dict) and manifest.get("key") == key else None


@dataclass
class _Corpus:
    """Token ids (int32 arrays, [CLS] ... [SEP]) of the training texts and the held-out slice."""

    train: list[np.ndarray]
    heldout: list[np.ndarray]
    data_hash: str

    @classmethod
    def of(cls, plan: AdaptationPlan, texts: Sequence[str]) -> "_Corpus":
        kept = [t for t in texts if isinstance(t, str) and t.strip()]
        digest = xxhash.xxh3_128()
        for text in kept:
            digest.update(text.encode("utf-8", "replace") + b"\x00")
        encoder = fast_encoder(plan.tokenizer, plan.max_length)
        sequences = [np.asarray(e.ids, dtype=np.int32) for e in encoder.encode_batch(kept)
                     if not all(e.special_tokens_mask)]
        order = np.random.default_rng([plan.seed % 2**32, 7]).permutation(len(sequences))
        held = 0
        if len(sequences) >= HELDOUT_MIN_TEXTS:
            held = min(HELDOUT_MAX, max(1, round(HELDOUT_SHARE * len(sequences))))
        heldout = sorted((sequences[i] for i in order[:held]), key=len)
        train = [sequences[i] for i in sorted(order[held:])]
        return cls(train, heldout, digest.hexdigest())


def _mask_generator(seed: int, stream: int, step: int) -> torch.Generator:
    """The masking of a batch as a function of (seed, stream, step): a resumed run masks as the killed one would."""
    state = np.random.SeedSequence([seed % 2**32, stream, step]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def _batch(collator: Any, sequences: Sequence[np.ndarray], generator: torch.Generator,
           device: torch.device) -> dict[str, torch.Tensor]:
    """input_ids, attention_mask, labels [rows, longest] for the model: padded, masked by the collator."""
    collator.generator = generator  # used by the collator when its own `seed` is None
    batch = collator([{"input_ids": s.tolist()} for s in sequences])
    return {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask", "labels")}


@torch.inference_mode()
def heldout_loss(model: Any, collator: Any, sequences: Sequence[np.ndarray], seed: int, batch_size: int,
                 device: torch.device, dtype: torch.dtype | None) -> float | None:
    """Mean masked-LM cross-entropy (nats per masked token) over `sequences`, with masks fixed by `seed` (so that
    a model before and after adaptation is scored on the same masks); None without sequences."""
    if not len(sequences):
        return None
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for index, start in enumerate(range(0, len(sequences), batch_size)):
            batch = _batch(collator, sequences[start:start + batch_size],
                           _mask_generator(seed, _HELDOUT_MASKS, index), device)
            masked = int((batch["labels"] != -100).sum())
            if not masked:
                continue
            with autocast(device, dtype):
                loss = masked_lm_loss(model, batch)
            total += float(loss.float()) * masked
            count += masked
    finally:
        model.train(was_training)
    return total / count if count else None


def _base_pooler(base_dir: str, model: Any) -> dict[str, torch.Tensor]:
    """The base folder's pooler tensors under the masked-LM model's key names (e.g. "bert.pooler.dense.weight"),
    when the masked-LM model has no pooler of its own (BERT's has none): saved with the adapted weights so that a
    classifier loaded from them reads [CLS] through the base's pooler, not a random one. {} otherwise."""
    from safetensors import safe_open

    prefix = getattr(model, "base_model_prefix", "")
    if not prefix or getattr(getattr(model, "base_model", None), "pooler", None) is not None:
        return {}
    if not os.path.isdir(base_dir):  # a hub id: its files are not at hand here
        return {}
    out: dict[str, torch.Tensor] = {}
    for name in sorted(os.listdir(base_dir)):
        if not name.endswith(".safetensors"):
            continue
        with safe_open(os.path.join(base_dir, name), framework="pt") as handle:  # type: ignore[no-untyped-call]
            for key in handle.keys():
                head, found, rest = key.partition("pooler.")
                if found and head in ("", f"{prefix}."):
                    out[f"{prefix}.pooler.{rest}"] = handle.get_tensor(key)
    return out


def _load_model(plan: AdaptationPlan, grow_embeddings: GrowEmbeddings | None) -> tuple[Any, dict[str, Any]]:
    """The base as AutoModelForMaskedLM with embeddings for len(plan.tokenizer) tokens, and facts for the manifest."""
    from transformers import AutoModelForMaskedLM

    require_safetensors(plan.base_dir, "adapt: base model")
    model, fresh = with_fresh_heads(plan.base_dir, lambda: AutoModelForMaskedLM.from_pretrained(
        plan.base_dir, use_safetensors=True, trust_remote_code=False, output_loading_info=True))
    rows, wanted = model.get_input_embeddings().weight.shape[0], len(plan.tokenizer)
    if wanted > rows:
        if grow_embeddings is not None:
            grow_embeddings(model, plan.tokenizer)
        else:
            model.resize_token_embeddings(wanted, mean_resizing=True)
        grown = model.get_input_embeddings().weight.shape[0]
        output = model.get_output_embeddings()
        if grown < wanted or (output is not None and output.weight.shape[0] != grown):
            raise ValueError(f"adapt: after growing, the input embeddings have {grown} rows and the output layer "
                             f"{None if output is None else output.weight.shape[0]}; the tokenizer has {wanted} "
                             "tokens (grow_embeddings must grow both, as resize_token_embeddings does)")
        log.info("adapt: embedding matrix grown from %d to %d rows for the tokenizer's added tokens", rows, grown)
    return model, {"mlm_head": "fresh" if fresh else "from base", "embedding_rows_added": max(0, wanted - rows),
                   "vocab_size": wanted}


def _commit(plan: AdaptationPlan, model: Any, pooler: dict[str, torch.Tensor], manifest: dict[str, Any]) -> None:
    """Write the adapted folder to out_url through a local temporary folder; the manifest last."""
    storage.remove([storage.join(plan.out_url, MANIFEST)])  # first: a folder half replaced is never "committed"
    with tempfile.TemporaryDirectory() as tmp:
        state = model.state_dict()
        state.update({k: v for k, v in pooler.items() if k not in state})
        model.save_pretrained(tmp, state_dict=state)  # safetensors (the only format transformers 5 writes)
        plan.tokenizer.save_pretrained(tmp)
        _copy_sentence_transformers_files(plan.base_dir, tmp)
        storage.remove([plan.out_url])
        storage.upload_folder(tmp, plan.out_url)
    storage.write_json_atomic(storage.join(plan.out_url, MANIFEST), manifest)


def _copy_sentence_transformers_files(base_dir: str, target: str) -> None:
    """modules.json and the module folders it names (1_Pooling, ...), so `pooling.base_pools_by_mean` reads the
    adapted folder as it read the base."""
    import json

    for name in _SENTENCE_TRANSFORMERS_FILES:
        if os.path.isfile(os.path.join(base_dir, name)):
            shutil.copy2(os.path.join(base_dir, name), os.path.join(target, name))
    try:
        with open(os.path.join(base_dir, "modules.json"), encoding="utf-8") as handle:
            modules = json.load(handle)
    except (OSError, ValueError):
        return
    for module in modules if isinstance(modules, list) else []:
        path = str(module.get("path", "")) if isinstance(module, dict) else ""
        source = os.path.join(base_dir, path)
        if path and not os.path.isabs(path) and ".." not in path and os.path.isdir(source):
            shutil.copytree(source, os.path.join(target, path), dirs_exist_ok=True)


def _cuda_devices(device: torch.device) -> list[int]:
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def _mean(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 5) if values else None


def adapt(plan: AdaptationPlan, texts: Sequence[str], device: torch.device | str,
          progress: Progress | None = None, grow_embeddings: GrowEmbeddings | None = None) -> dict[str, Any]:
    """Adapt plan.base_dir to `texts` by masked-LM training and commit it to plan.out_url; returns its manifest.

    A folder already committed there for plan.key is returned as it is, without work. A checkpoint in plan.work_url
    of the same key and texts is resumed. Empty texts are dropped; 5 % of the rest (at most 500, none under 20
    texts) are held out and scored before and after (`heldout_loss_before`/`_after`, nats per masked token).
    `grow_embeddings(model, tokenizer)` grows the embedding matrix to len(plan.tokenizer) rows when the tokenizer is
    larger (default: `resize_token_embeddings(..., mean_resizing=True)`). The caller's torch RNG state is left as
    it was.

    Manifest (with "reused": True added when the folder was already committed for plan.key): key, steps,
    planned_steps, stopped_by ("steps" | "minutes" | "data": max_passes passes done), seconds,
    texts, heldout_texts, tokens_seen (non-padding tokens of the training batches), mlm_loss_first/_last (mean over
    the first/last 10 % of steps), heldout_loss_before/_after, resumed_from_step, device, precision, and the settings.

    Raises ValueError when there is no text to learn from, or grow_embeddings leaves the matrix too small; storage
    errors as `storage` raises them. Not for several processes: run it on one.
    """
    if (done := committed(plan.out_url, plan.key)) is not None:
        log.info("adapt: %s already holds the model adapted for key %s (%s steps); reused", plan.out_url, plan.key,
                 done.get("steps"))
        CheckpointStore(plan.work_url).clear()  # left behind by a run killed between its commit and its cleanup
        if progress:
            progress(f"adapting to the lake's text: reused {plan.out_url}", 1.0)
        return done | {"reused": True}
    started = time.monotonic()
    device = torch.device(device)
    with torch.random.fork_rng(devices=_cuda_devices(device)):
        torch.manual_seed(plan.seed)
        return _adapt(plan, texts, device, progress, grow_embeddings, started)


def _adapt(plan: AdaptationPlan, texts: Sequence[str], device: torch.device, progress: Progress | None,
           grow_embeddings: GrowEmbeddings | None, started: float) -> dict[str, Any]:
    from transformers import DataCollatorForLanguageModeling


    corpus = _Corpus.of(plan, texts)
    if not corpus.train:
        raise ValueError(f"adapt: none of the {len(texts)} texts holds a token to learn from")
    model, facts = _load_model(plan, grow_embeddings)
    pooler = _base_pooler(plan.base_dir, model)
    model.to(device)
    collator = DataCollatorForLanguageModeling(plan.tokenizer, mlm_probability=plan.mask_probability, seed=None)
    batches_per_pass = math.ceil(len(corpus.train) / plan.batch_size)
    planned = min(plan.max_steps, plan.max_passes * batches_per_pass)
    optimizer = make_optimizer(model, plan.learning_rate, plan.weight_decay, plan.embedding_learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_linear(planned, plan.warmup_ratio))
    dtype, needs_scaler = training_precision(plan.precision, device)
    scaler = torch.amp.GradScaler("cuda") if needs_scaler else None
    precision = str(dtype).replace("torch.", "") if dtype else "fp32"

    store = CheckpointStore(plan.work_url, progress_type=AdaptProgress)
    state = store.load_progress()
    losses: list[float] = []
    if state is not None and (state.key, state.data_hash) == (plan.key, corpus.data_hash):
        losses = _restore(store, model, optimizer, scheduler, scaler, device)
        log.info("adapt: resuming at step %d (%.0f s spent) from %s", state.step, state.seconds, plan.work_url)
    else:
        if state is not None:
            log.info("adapt: discarding the checkpoint in %s (other key or texts)", plan.work_url)
            store.clear()
        state = AdaptProgress(key=plan.key, data_hash=corpus.data_hash)
        state.heldout_loss_before = heldout_loss(model, collator, corpus.heldout, plan.seed, plan.batch_size, device,
                                                 dtype)
    resumed_from, spent_before = state.step, state.seconds
    budget = plan.max_minutes * 60.0
    lengths = np.fromiter((len(s) for s in corpus.train), dtype=np.int64, count=len(corpus.train))
    every = max(1, planned // 20)
    log.info("adapt: %d texts (%d held out), %d batches per pass, planned %d steps (max_steps %d, max_minutes %g, "
             "max_passes %d), precision %s, device %s", len(corpus.train), len(corpus.heldout), batches_per_pass,
             planned, plan.max_steps, plan.max_minutes, plan.max_passes, precision, device)

    def elapsed() -> float:
        return spent_before + time.monotonic() - started

    order: tuple[int, list[np.ndarray]] = (-1, [])
    model.train()
    while True:
        if state.step >= plan.max_steps:
            stopped_by = "steps"
            break
        if state.epoch >= plan.max_passes:
            stopped_by = "data"
            break
        if elapsed() >= budget:
            stopped_by = "minutes"
            break
        if order[0] != state.epoch:
            order = (state.epoch, length_grouped_batches(lengths, plan.batch_size,
                                                         np.random.default_rng([plan.seed % 2**32, state.epoch])))
        if state.batch_in_epoch >= len(order[1]):
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0
            continue
        rows = order[1][state.batch_in_epoch]
        batch = _batch(collator, [corpus.train[i] for i in rows],
                       _mask_generator(plan.seed, _TRAIN_MASKS, state.step), device)
        loss = _step(model, batch, optimizer, scheduler, scaler, device, dtype)
        if loss is not None:
            losses.append(loss)
        state.step, state.batch_in_epoch = state.step + 1, state.batch_in_epoch + 1
        state.tokens_seen += int(batch["attention_mask"].sum())
        if state.step % plan.checkpoint_every_steps == 0 and state.step < planned:
            state.seconds = round(elapsed(), 3)
            store.save(state, model, optimizer, scheduler, scaler, _extra(losses, device))
        if state.step % every == 0:
            recent = float(np.mean(losses[-every:])) if losses else float("nan")
            log.info("adapt: step %d/%d, masked-LM loss %.4f, %.0f s", state.step, planned, recent, elapsed())
            if progress:
                progress(f"adapting to the lake's text: step {state.step}/{planned}",
                         min(1.0, max(state.step / planned, elapsed() / budget)))

    after = heldout_loss(model, collator, corpus.heldout, plan.seed, plan.batch_size, device, dtype)
    tenth = max(1, len(losses) // 10)
    manifest = {
        "key": plan.key, "steps": state.step, "planned_steps": planned, "stopped_by": stopped_by,
        "seconds": round(elapsed(), 2), "texts": len(corpus.train), "heldout_texts": len(corpus.heldout),
        "passes": round(state.step / batches_per_pass, 3), "tokens_seen": state.tokens_seen,
        "mlm_loss_first": _mean(losses[:tenth]), "mlm_loss_last": _mean(losses[-tenth:]),
        "heldout_loss_before": None if state.heldout_loss_before is None else round(state.heldout_loss_before, 5),
        "heldout_loss_after": None if after is None else round(after, 5),
        "resumed_from_step": resumed_from, "device": str(device), "precision": precision,
        "settings": {"max_steps": plan.max_steps, "max_minutes": plan.max_minutes, "max_passes": plan.max_passes,
                     "batch_size": plan.batch_size, "max_length": plan.max_length,
                     "learning_rate": plan.learning_rate, "mask_probability": plan.mask_probability,
                     "seed": plan.seed, "weight_decay": plan.weight_decay, "warmup_ratio": plan.warmup_ratio},
        "base_dir": plan.base_dir, "pooler_from_base": bool(pooler), **facts,
        "data_hash": corpus.data_hash, "committed_at": utc_now(),
    }
    _commit(plan, model, pooler, manifest)
    store.clear()
    log.info("adapt: %d steps (stopped by %s) in %.0f s; held-out masked-LM loss %s -> %s; committed %s",
             state.step, stopped_by, manifest["seconds"], manifest["heldout_loss_before"],
             manifest["heldout_loss_after"], plan.out_url)
    if progress:
        progress(f"adapting to the lake's text: step {state.step}/{planned}, stopped by {stopped_by}", 1.0)
    return manifest


def masked_lm_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy (nats) over the masked positions of a batch (labels != -100), as `model(**batch).loss`.

    The masked-LM head (a dense layer, LayerNorm and a decoder over the whole vocabulary) runs on the masked
    positions only, about 15 % of them, instead of every position: with the packaged MiniLM's 30k-token vocabulary
    over 384 dimensions that decoder is most of a step's arithmetic. Models whose head is `cls` (BERT family) or
    `lm_head` (RoBERTa, XLM-R, ELECTRA generators...) take this path; any other computes its own loss."""
    head = getattr(model, "cls", None) or getattr(model, "lm_head", None)
    if head is None:
        return model(**batch).loss
    labels = batch["labels"]
    hidden = model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
    chosen = labels != -100
    return torch.nn.functional.cross_entropy(head(hidden[chosen]).float(), labels[chosen])


def _step(model: Any, batch: dict[str, torch.Tensor], optimizer: Any, scheduler: Any, scaler: Any,
          device: torch.device, dtype: torch.dtype | None) -> float | None:
    """One optimizer step on a masked batch; its loss (nats per masked token), or None for a batch in which the
    collator masked nothing (no update then)."""
    if not bool((batch["labels"] != -100).any()):
        return None
    with autocast(device, dtype):
        loss = masked_lm_loss(model, batch)
    (scaler.scale(loss) if scaler is not None else loss).backward()
    if scaler is not None:
        scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach().float())
