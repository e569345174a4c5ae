"""BERT-base training and scoring throughput and MFU on one GPU (see gpu_check.sh). Pure torch + transformers.

FLOPs per token (forward) ≈ 2 · non-embedding parameters + 4 · layers · seq · hidden (attention scores and
values); training ≈ 3 × forward. MFU = achieved FLOP/s ÷ the GPU's dense bf16 peak (--peak-tflops, default the
H200's 989).
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import BertConfig, BertForSequenceClassification


def flops_per_token(model: torch.nn.Module, cfg: BertConfig, seq: int) -> float:
    embedding = sum(p.numel() for n, p in model.named_parameters() if "embeddings" in n)
    non_embedding = sum(p.numel() for p in model.parameters()) - embedding
    return 2 * non_embedding + 4 * cfg.num_hidden_layers * seq * cfg.hidden_size


def timed(fn, steps: int) -> float:  # type: ignore[no-untyped-def]
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--score-batch", type=int, default=512)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    args = parser.parse_args()
    assert torch.cuda.is_available(), "no CUDA device"
    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                     num_labels=3, attention_probs_dropout_prob=0.0)
    model = BertForSequenceClassification(cfg).cuda()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, fused=True)
    ids = torch.randint(1000, cfg.vocab_size, (args.batch, args.seq), device="cuda")
    mask = torch.ones_like(ids)
    labels = torch.randint(0, 3, (args.batch,), device="cuda")
    per_token = flops_per_token(model, cfg, args.seq)
    print(f"{torch.cuda.get_device_name()} torch {torch.__version__}; BERT-base {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M "
          f"params, seq {args.seq}, {per_token / 1e9:.3f} GFLOP/token forward")

    def train_step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(input_ids=ids, attention_mask=mask).logits.float(), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    model.train()
    timed(train_step, 20)  # warm-up
    seconds = timed(train_step, args.steps)
    samples = args.steps * args.batch / seconds
    train_mfu = samples * args.seq * 3 * per_token / (args.peak_tflops * 1e12)
    print(f"train: {args.steps} steps x {args.batch} in {seconds:.1f} s: {samples:,.0f} samples/s, MFU {train_mfu:.1%}")

    model.eval()
    score_ids = torch.randint(1000, cfg.vocab_size, (args.score_batch, args.seq), device="cuda")
    score_mask = torch.ones_like(score_ids)

    @torch.inference_mode()
    def score_step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            torch.softmax(model(input_ids=score_ids, attention_mask=score_mask).logits.float(), dim=-1)

    timed(score_step, 10)
    seconds = timed(score_step, 100)
    texts = 100 * args.score_batch / seconds
    score_mfu = texts * args.seq * per_token / (args.peak_tflops * 1e12)
    print(f"score: {texts:,.0f} texts/s at seq {args.seq}, MFU {score_mfu:.1%}")


if __name__ == "__main__":
    main()
