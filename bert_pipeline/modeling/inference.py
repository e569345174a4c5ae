"""Running a classifier over token ids: device and precision choice, padding a batch, logits in input order.

Shared by training (evaluation), the registry (the champion on tonight's validation rows) and scoring.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from bert_pipeline.modeling.windows import Windowing, mean_by_document


def pick_device(name: str) -> torch.device:
    """`auto` = CUDA when available, else CPU; `cpu`/`cuda` as asked."""
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def cpu_has_native_bf16() -> bool:
    """AMX or AVX512-BF16 in the CPU flags: without them bf16 is emulated and several times slower than fp32."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next((line for line in handle if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def pick_precision(requested: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `score.precision`/`train.precision`, or None for fp32.

    auto = bf16 on CUDA devices with bf16 and on CPUs with native bf16 (AMX or avx512_bf16), else fp32: emulated bf16
    is slower than fp32 (0.36x measured on an AVX2 CPU), native bf16 faster (benchmarks/bench_score.py,
    bench_train.py print both where the CPU has it)."""
    if requested == "bf16":
        return torch.bfloat16
    if requested == "auto":
        native = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_native_bf16()
        return torch.bfloat16 if native else None
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    """Autocast to dtype on device; a no-op for None (fp32)."""
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
                   device: torch.device, precision: str = "auto", windowing: Windowing | None = None) -> np.ndarray:
    """Logits [rows, num_labels] float32 of token-id sequences, in input order, under the autocast dtype
    `pick_precision(precision, device)` chooses. Batched by `eval_budget`: at most batch_size rows of the longest
    sequence per pass, more rows of shorter ones. With `windowing`, sequences are whole documents: each is read in
    windows and its logits are the mean of its windows' (bert_pipeline/modeling/windows.py)."""
    if windowing is not None:
        windows, document = windowing.split(sequences)
        return mean_by_document(predict_logits(model, windows, batch_size, pad_id, device, precision), document,
                                len(sequences))
    model.eval()
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    return logits_within_budget(model, sequences, eval_budget(lengths, batch_size), pad_id, device,
                                pick_precision(precision, device))


@torch.inference_mode()
def logits_within_budget(model: Any, sequences: Sequence[np.ndarray], batch_tokens: int, pad_id: int,
                         device: torch.device, dtype: torch.dtype | None) -> np.ndarray:
    """Logits [rows, num_labels] float32 of a sequence classifier over token-id sequences, in input order, in
    `longest_first` passes of at most batch_tokens padded tokens, under autocast to dtype (None: fp32)."""
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    logits = np.zeros((len(sequences), model.config.num_labels), dtype=np.float32)
    for index in longest_first(lengths, batch_tokens):
        ids, mask = collate([sequences[i] for i in index], pad_id, device)
        with autocast(device, dtype):
            logits[index] = model(input_ids=ids, attention_mask=mask).logits.float().cpu().numpy()
    return logits


# Measured on a 2-core AVX-512 CPU (MiniLM-L6, tweets): 2k-4k padded tokens per pass is ~30 % faster than 16k (the
# activations stay in cache); a GPU wants large passes to fill its cores.
DEFAULT_BATCH_TOKENS = {"cpu": 4096, "cuda": 65536}


def batch_tokens_for(device: torch.device, configured: int | None) -> int:
    """score.batch_tokens, or its default for the device (DEFAULT_BATCH_TOKENS; 4096 for another kind)."""
    return configured or DEFAULT_BATCH_TOKENS.get(device.type, 4096)


def token_budget_batches(lengths: np.ndarray, batch_tokens: int) -> list[np.ndarray]:
    """Indices sorted by length, cut so that rows x longest-row stays within batch_tokens (at least one row)."""
    order = np.argsort(lengths, kind="stable")
    batches, start = [], 0
    while start < len(order):
        end = start + 1
        while end < len(order) and (end - start + 1) * lengths[order[end]] <= batch_tokens:
            end += 1
        batches.append(order[start:end])
        start = end
    return batches


def eval_budget(lengths: np.ndarray, batch_size: int) -> int:
    """The padded-token budget of an evaluation pass (train.eval_batch_size): batch_size rows of the longest
    sequence, so a pass never holds more than the rows x longest it always could, and more rows of shorter ones."""
    return batch_size * max(int(lengths.max()) if len(lengths) else 1, 1)


def longest_first(lengths: np.ndarray, batch_tokens: int) -> list[np.ndarray]:
    """`token_budget_batches`, longest batch first. Each pass's activations then fit in blocks the allocator freed
    after an earlier, larger pass. Shortest first, every pass asks for a little more than any block freed so far,
    glibc grows the heap around the live blocks, and peak RSS crept up with the corpus (1.31x for 10x the rows in
    benchmarks/bench_score_memory.py; 1.16x longest first). Capping glibc's mmap threshold also bounded it (1.02x)
    but cost 23 % of the throughput (mmap + page faults on every activation)."""
    return token_budget_batches(lengths, batch_tokens)[::-1]


@torch.inference_mode()
def predict_token_logits(model: Any, sequences: Sequence[np.ndarray], batch_tokens: int, pad_id: int,
                         device: torch.device, precision: str = "auto") -> list[np.ndarray]:
    """Per-token logits of a token classifier: one float32 array [len(sequence), num_labels] per sequence, in input
    order, under the autocast dtype `pick_precision` chooses. Batched as the sequence classifier's scoring is
    (`longest_first`: rows x longest row within batch_tokens padded tokens), padding cut off."""
    dtype = pick_precision(precision, device)
    model.eval()
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    out: list[np.ndarray] = [np.zeros((0, model.config.num_labels), np.float32)] * len(sequences)
    for index in longest_first(lengths, batch_tokens):
        ids, mask = collate([sequences[i] for i in index], pad_id, device)
        with autocast(device, dtype):
            logits = model(input_ids=ids, attention_mask=mask).logits.float().cpu().numpy()
        for row, i in enumerate(index.tolist()):
            out[i] = logits[row, : lengths[i]]
    return out
