"""Running a classifier over token ids: device and precision choice, padding a batch, logits in input order.

Shared by training (evaluation), the registry (the champion on tonight's validation rows) and scoring.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch


def pick_device(name: str) -> torch.device:
    """`auto` = CUDA when available, else CPU; `cpu`/`cuda` as asked."""
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def autocast(device: torch.device, dtype: torch.dtype | None = None) -> Any:
    """bf16 autocast on CUDA devices that have it (or the dtype asked for); a no-op otherwise."""
    if dtype is None and device.type == "cuda" and torch.cuda.is_bf16_supported():
        dtype = torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def collate(sequences: Sequence[np.ndarray], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), both [rows, longest row] int64, padded on the right with pad_id."""
    width = max(len(s) for s in sequences)
    ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)


@torch.inference_mode()
def predict_logits(model: Any, sequences: Sequence[np.ndarray], batch_size: int, pad_id: int,
                   device: torch.device) -> np.ndarray:
    """Logits [rows, num_labels] float32 of token-id sequences, in input order (batched by sorted length)."""
    model.eval()
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    order = np.argsort(lengths, kind="stable")
    logits = np.zeros((len(sequences), model.config.num_labels), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        ids, mask = collate([sequences[i] for i in index], pad_id, device)
        with autocast(device):
            out = model(input_ids=ids, attention_mask=mask).logits
        logits[index] = out.float().cpu().numpy()
    return logits
