"""The training loop's shared parts, used by fine-tuning (train) and domain adaptation (adapt): length-grouped
batches, the precision choice, AdamW and its warmup-then-linear-decay schedule."""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch

from bert_pipeline.modeling.inference import pick_precision


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


def training_precision(requested: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None for fp32, whether a grad scaler is needed): `inference.pick_precision`'s rule (auto =
    bf16 on CUDA with bf16 and on CPUs with native bf16), plus fp16 with a grad scaler on CUDA without bf16."""
    if requested == "auto" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16, True
    return pick_precision(requested, device), False


def make_optimizer(model: Any, learning_rate: float, weight_decay: float,
                   embedding_learning_rate: float | None = None) -> torch.optim.Optimizer:
    """AdamW (fused where the device has the kernels) with weight decay on matrices only, not on biases and
    LayerNorm weights (BERT's recipe).

    embedding_learning_rate: the input embedding matrix's own peak rate (None = learning_rate). Rows added for an
    extended vocabulary start untrained, and at a fine-tuning rate they barely move in a night: Adam moves a weight by
    about the rate per step, so 300 steps at 5e-5 move a row by at most ~0.015 where MiniLM's rows have a spread
    (standard deviation) of 0.056.
    Learning new embeddings at a higher rate than the pretrained body follows Artetxe, Ruder and Yogatama, "On the
    Cross-lingual Transferability of Monolingual Representations" (ACL 2020), who learn a new language's embeddings
    with the body kept. A LambdaLR schedule scales every group's rate alike. A DDP-wrapped model is unwrapped."""
    inner = getattr(model, "module", model)
    embeddings = inner.get_input_embeddings().weight if embedding_learning_rate is not None else None
    named = [p for _, p in model.named_parameters() if p.requires_grad and p is not embeddings]
    groups = [{"params": [p for p in named if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in named if p.ndim < 2], "weight_decay": 0.0}]
    if embeddings is not None and embeddings.requires_grad:
        groups.append({"params": [embeddings], "weight_decay": weight_decay, "lr": embedding_learning_rate})
    try:
        return torch.optim.AdamW(groups, lr=learning_rate, fused=True)
    except (RuntimeError, TypeError):  # fused kernels missing for this device/dtype
        return torch.optim.AdamW(groups, lr=learning_rate)


def warmup_linear(total_steps: int, warmup_ratio: float) -> Callable[[int], float]:
    """The learning-rate factor per step for LambdaLR: linear warmup over warmup_ratio of the steps, then linear
    decay to 0 at total_steps."""
    warmup = max(1, math.ceil(total_steps * warmup_ratio))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor
