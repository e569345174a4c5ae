"""The product's own training loop and scorer on one GPU, and its DDP path on several (see gpu_check.sh).

1. train: `bert_pipeline.stages.train.fit` on a randomly initialised BERT-base-sized `BertForSequenceClassification` built
   from a `BertConfig` (hidden 768, 12 layers, 12 heads, vocab 30522; nothing downloaded), one epoch of --steps
   optimizer steps over synthetic token sequences of mixed lengths, with the pipeline's defaults (batch 32,
   length-grouped batches, fused AdamW, bf16 autocast on CUDA, dropout off). The steady-state window is read from
   fit's own progress callback (every 50 steps; `loss.item()` syncs every step, so host clocks are exact).
2. score: `bert_pipeline.stages.score.Scorer.probabilities` over --texts synthetic texts of mixed lengths (seeded, from a
   word list), with that model saved by `save_pretrained` beside an offline-built WordPiece tokenizer; the padding
   share comes from the product's `token_budget_batches` on the product's encoding of the same texts.
3. ddp: with more than one CUDA device, the product's multi-device path (`train.devices: N`):
   `distributed.launch` starts N ranks under torchrun; each wraps its work in `distributed.process_group`, as
   `bert_pipeline.stages.train.main` does, and runs `fit` with `Dist.from_env()`.

FLOP estimates (attention-score FLOPs, ~2 % at these lengths, are not counted): training 6 x N x real tokens,
scoring 2 x N x real tokens, N = parameters without the embedding tables (lookups, no matmul); the figure with all
parameters is printed beside it. MFU = achieved FLOP/s / the GPU's dense bf16 peak, by `torch.cuda.get_device_name()`.

    python -m benchmarks.gpu_check [--steps 300] [--texts 50000] [--batch 32]
    python -m benchmarks.gpu_check --cpu-smoke [--ddp 2]      # same code paths, tiny model, on CPU
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from benchmarks._common import cpu_flags
from bert_pipeline.training.checkpoint import CheckpointStore
from bert_pipeline.config import TrainConfig
from bert_pipeline.training.distributed import Dist, launch, process_group
from bert_pipeline.errors import LakeStateError
from bert_pipeline.modeling.inference import pick_device, token_budget_batches
from bert_pipeline.stages.score import Scorer
from bert_pipeline.text.encoding import encode_texts
from bert_pipeline.stages.train import dropout_overrides, epoch_groups, fit
from bert_pipeline.training.trainset import SplitData

# Dense bf16 tensor-core peak in TFLOP/s (no sparsity), matched against torch.cuda.get_device_name().
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L4": 121.0}
LABELS = ["negative", "neutral", "positive"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = """the a an and or but of to in on at for with from by about as is was are were be been being have has had
do does did not no yes this that these those it its i you he she we they me him her us them my your our their what
which who when where why how all any both each few more most other some such only own same so than too very can will
just should now good bad great love hate happy sad new old day night time year people thing world life work home
phone service order delivery price quality product team support store app update account bill money week month today
tomorrow yesterday really never always still again maybe think know want need like get got make made go going went
come came see saw say said tell told ask asked try tried feel felt look looked best worst better worse amazing awful
terrible fine okay nice slow fast late early broken fixed free cheap expensive thanks please sorry wow lol""".split()


@dataclass(frozen=True)
class Shape:
    """A BERT encoder's size: hidden width, layers, attention heads, feed-forward width, vocabulary (tokens)."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int = 30522


BERT_BASE = Shape(768, 12, 12, 3072)
TINY = Shape(64, 2, 2, 256)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny model on the CPU: 60 steps, 500 texts")
    parser.add_argument("--steps", type=int, help="optimizer steps (default 300; 60 with --cpu-smoke)")
    parser.add_argument("--texts", type=int, help="texts to score (default 50,000; 500 with --cpu-smoke)")
    parser.add_argument("--batch", type=int, default=TrainConfig().batch_size, help="train.batch_size (rows)")
    parser.add_argument("--max-length", type=int, default=128, help="tokens per row at most")
    parser.add_argument("--batch-tokens", type=int, default=None,
                        help="score.batch_tokens (padded tokens per pass); default the product's per device")
    parser.add_argument("--ddp", type=int, default=None,
                        help="ranks for the DDP check (default: the CUDA device count; >1 runs it, on CPU via gloo)")
    parser.add_argument("rank_config", nargs="?", help=argparse.SUPPRESS)  # a DDP rank's job, from launch()
    args = parser.parse_args(argv)
    args.steps = args.steps or (60 if args.cpu_smoke else 300)
    args.texts = args.texts or (500 if args.cpu_smoke else 50_000)
    args.device = "cpu" if args.cpu_smoke else "cuda"
    return args


def peak_tflops(device_name: str) -> float | None:
    """Dense bf16 peak of a GPU name in TFLOP/s; None when unknown (H100 PCIe/NVL differ from SXM: unknown)."""
    if "H100" in device_name and ("PCIe" in device_name or "NVL" in device_name):
        return None
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in device_name), None)


def mfu_text(flops_per_second: float, peak: float | None) -> str:
    """`12.3 %` of the peak (TFLOP/s), or why there is no figure."""
    return f"{flops_per_second / (peak * 1e12):.1%}" if peak else "n/a (no known peak)"


def parameter_counts(model: torch.nn.Module) -> tuple[int, int]:
    """(all parameters, parameters outside the embedding tables), counts of scalars."""
    total = sum(p.numel() for p in model.parameters())
    embedding = sum(p.numel() for name, p in model.named_parameters() if ".embeddings." in f".{name}")
    return total, total - embedding


def new_model(shape: Shape, cfg: TrainConfig, device: torch.device) -> torch.nn.Module:
    """A randomly initialised BertForSequenceClassification of `shape` with the labels and the pipeline's dropout."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=shape.vocab, hidden_size=shape.hidden, num_hidden_layers=shape.layers,
                        num_attention_heads=shape.heads, intermediate_size=shape.intermediate,
                        id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)},
                        **dropout_overrides(cfg))
    torch.manual_seed(cfg.seed)
    return BertForSequenceClassification(config).to(device)


def mixed_lengths(rng: np.random.Generator, rows: int, median: float, low: int, high: int) -> np.ndarray:
    """Log-normal lengths (sigma 0.8) around `median`, clipped to [low, high]: many short rows, a long tail."""
    return np.clip(np.rint(rng.lognormal(np.log(median), 0.8, rows)), low, high).astype(np.int64)


def synthetic_split(rows: int, max_length: int, vocab: int, seed: int) -> SplitData:
    """Token sequences [CLS] ids [SEP] of mixed lengths (median 40 tokens, up to max_length) and labels 0..2."""
    rng = np.random.default_rng(seed)
    sequences = []
    for length in mixed_lengths(rng, rows, 40, 4, max_length):
        ids = rng.integers(1000, vocab, length)
        ids[0], ids[-1] = 101, 102
        sequences.append(ids)
    return SplitData(sequences, rng.integers(0, len(LABELS), rows).astype(np.int64))


def train_config(args: argparse.Namespace, devices: int = 1) -> TrainConfig:
    """The pipeline's training defaults for one epoch, no early stopping and no mid-epoch checkpoints."""
    return TrainConfig(epochs=1, batch_size=args.batch, device=args.device, precision="auto", seed=0,
                       early_stopping_patience=0, checkpoint_every_steps=10**9, calibrate=False, devices=devices)


class StepClock:
    """fit's progress callback: (perf_counter seconds, optimizer step) at each step message (every 50 steps)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.marks: list[tuple[float, int]] = []

    def __call__(self, message: str, fraction: float) -> None:
        if (found := re.match(r"epoch \d+/\d+ step (\d+)/", message)):
            self.marks.append((time.perf_counter(), int(found.group(1))))

    def window(self) -> tuple[float, int, int, bool]:
        """(seconds, first step, last step, steady): from the first mark to the last, or from fit's start to the
        last mark when there is only one (then warm-up is included)."""
        if not self.marks:
            raise RuntimeError("fit called progress with no 'step N/M' message: its format changed")
        if len(self.marks) == 1:
            return self.marks[0][0] - self.start, 0, self.marks[0][1], False
        return self.marks[-1][0] - self.marks[0][0], self.marks[0][1], self.marks[-1][1], True


def batch_tokens(groups: list[list[np.ndarray]], lengths: np.ndarray) -> tuple[int, int, int]:
    """(rows, real tokens, padded tokens) of optimizer steps: padded = rows x longest row, per micro-batch."""
    batches = [b for group in groups for b in group]
    return (sum(len(b) for b in batches), int(sum(lengths[b].sum() for b in batches)),
            int(sum(len(b) * lengths[b].max() for b in batches)))


def train_check(args: argparse.Namespace, shape: Shape, cfg: TrainConfig, device: torch.device,
                dist: Dist = Dist()) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Run `fit` for args.steps optimizer steps per rank; (the trained model, figures in rows, tokens, seconds)."""
    model = new_model(shape, cfg, device)
    train = synthetic_split(args.steps * args.batch * dist.world, args.max_length, shape.vocab, seed=1)
    splits = {"train": train, "validation": synthetic_split(2 * args.batch, args.max_length, shape.vocab, seed=2),
              "test": SplitData([], np.zeros(0, np.int64))}
    clock = StepClock()
    with tempfile.TemporaryDirectory(prefix="gpu_check_ckpt_") as folder:
        history = fit(model, splits, LABELS, cfg, 0, device, CheckpointStore(folder, writer=dist.is_writer),
                      clock, dist)
    seconds, first, last, steady = clock.window()
    groups = dist.shard(epoch_groups(train.lengths, cfg, 0))  # the steps fit ran, in its order
    rows, real, padded = batch_tokens(groups[first:last], train.lengths)
    return model, {"seconds": seconds, "first": first, "last": last, "steady": steady, "rows": rows,
                   "real_tokens": real, "padded_tokens": padded, "steps": history["steps"],
                   "fit_samples_per_second": history["samples_per_second"], "precision": history["precision"],
                   "world": dist.world}


def print_train(result: dict[str, Any], params: tuple[int, int], peak: float | None, label: str) -> float:
    """Print the training figures; returns samples/s of the timed window (all ranks together)."""
    world, seconds = result["world"], result["seconds"]
    samples, tokens = world * result["rows"] / seconds, world * result["real_tokens"] / seconds
    window = (f"steps {result['first'] + 1}-{result['last']} (between fit's progress marks, warm-up excluded)"
              if result["steady"] else f"steps 1-{result['last']} (warm-up included: fewer than 100 steps)")
    print(f"{label}: {result['steps']} optimizer steps per rank, {result['precision']}; timed {window}: "
          f"{seconds:.2f} s")
    print(f"  {samples:,.1f} samples/s, {tokens:,.0f} real tokens/s; padding "
          f"{1 - result['real_tokens'] / result['padded_tokens']:.1%} of the padded batch tokens")
    print(f"  MFU {mfu_text(6 * params[1] * tokens, peak)} (6 x {params[1] / 1e6:.1f}M non-embedding params x real "
          f"tokens; with all {params[0] / 1e6:.1f}M params: {mfu_text(6 * params[0] * tokens, peak)})")
    print(f"  fit's own samples_per_second: {world * result['fit_samples_per_second']:,.1f} (whole epoch: warm-up, "
          f"validation and the end-of-epoch checkpoint included)")
    return samples


def build_tokenizer() -> Any:
    """An uncased BERT WordPiece tokenizer over WORDS and single letters (rarer words split into letters),
    built offline with `tokenizers` and wrapped for save_pretrained/AutoTokenizer."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(SPECIAL + letters + ["##" + c for c in letters] + WORDS))}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    backend.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


def synthetic_texts(count: int, seed: int = 0) -> list[str]:
    """Texts of mixed lengths (median 20 words, some beyond 128 tokens), 5 % of words random letter strings."""
    rng = np.random.default_rng(seed)
    texts = []
    for words in mixed_lengths(rng, count, 20, 1, 400):
        chosen = [WORDS[i] for i in rng.integers(0, len(WORDS), words)]
        for i in np.flatnonzero(rng.random(words) < 0.05):
            chosen[i] = "".join(chr(97 + c) for c in rng.integers(0, 26, rng.integers(4, 11)))
        texts.append(" ".join(chosen))
    return texts


def score_check(args: argparse.Namespace, model_dir: str, texts: list[str]) -> dict[str, Any]:
    """Scorer.probabilities over `texts` after a warm-up; figures in texts, tokens and seconds."""
    scorer = Scorer(model_dir, args.max_length, args.batch_tokens, "auto", args.device)
    scorer.probabilities(texts[: max(1, min(2000, len(texts) // 10))])  # kernels, allocator, tokenizer warm-up
    start = time.perf_counter()
    probs, truncated, _ = scorer.probabilities(texts)
    seconds = time.perf_counter() - start
    assert probs.shape == (len(texts), len(LABELS)) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-3)
    start = time.perf_counter()
    _, offsets, _ = encode_texts(scorer.encoder, texts, batch_size=4096)  # the encoding probabilities() does
    encode_seconds = time.perf_counter() - start
    lengths = np.diff(offsets)
    padded = sum(len(b) * int(lengths[b].max()) for b in token_budget_batches(lengths, scorer.batch_tokens))
    return {"seconds": seconds, "encode_seconds": encode_seconds, "real_tokens": int(lengths.sum()),
            "padded_tokens": padded, "truncated": float(np.mean(truncated)), "batch_tokens": scorer.batch_tokens,
            "precision": str(scorer.dtype).replace("torch.", "") if scorer.dtype else "fp32",
            "mean_tokens": float(lengths.mean())}


def print_score(result: dict[str, Any], texts: int, params: tuple[int, int], peak: float | None) -> None:
    tokens = result["real_tokens"] / result["seconds"]
    print(f"score (bert_pipeline.stages.score.Scorer.probabilities): {texts:,} texts, {result['mean_tokens']:.1f} tokens "
          f"each on average, {result['truncated']:.1%} truncated; batch_tokens {result['batch_tokens']}, "
          f"{result['precision']}: {result['seconds']:.2f} s (tokenizing alone {result['encode_seconds']:.2f} s)")
    print(f"  {texts / result['seconds']:,.0f} texts/s, {tokens:,.0f} real tokens/s; padding "
          f"{1 - result['real_tokens'] / result['padded_tokens']:.1%} of the padded batch tokens "
          "(token_budget_batches on the encoded lengths)")
    print(f"  MFU {mfu_text(2 * params[1] * tokens, peak)} (2 x {params[1] / 1e6:.1f}M non-embedding params x real "
          f"tokens; with all params: {mfu_text(2 * params[0] * tokens, peak)})")


def save_model_folder(model: torch.nn.Module, folder: str) -> str:
    """The trained model (safetensors) and the offline tokenizer in `folder`, as the Scorer loads them."""
    model.save_pretrained(folder)  # type: ignore[operator]
    build_tokenizer().save_pretrained(folder)
    return folder


def ddp_ranks(args: argparse.Namespace) -> tuple[int, str]:
    """(ranks, why) for the DDP check: --ddp when given, else the CUDA device count."""
    if args.ddp is not None:
        return args.ddp, f"--ddp {args.ddp}"
    count = torch.cuda.device_count() if args.device == "cuda" else 0
    return count, f"torch.cuda.device_count() = {count}"


def ddp_check(args: argparse.Namespace, params: tuple[int, int], peak: float | None, single: float) -> None:
    """train.devices: N through distributed.launch (torchrun), each rank running fit; rank 0 reports back."""
    ranks, why = ddp_ranks(args)
    if ranks < 2:
        print(f"ddp: skipped ({why}); train.devices: N needs N > 1 devices")
        return
    with tempfile.TemporaryDirectory(prefix="gpu_check_ddp_") as folder:
        result_path = os.path.join(folder, "rank0.json")
        job = {"args": vars(args) | {"rank_config": None}, "train": train_config(args, ranks).model_dump(mode="json"),
               "result": result_path}
        try:
            launch("benchmarks.gpu_check", job, ranks)
        except LakeStateError as exc:
            print(f"ddp: FAILED: {exc}")
            return
        with open(result_path) as handle:
            result = json.load(handle)
    samples = print_train(result, params, peak, f"ddp (train.devices: {ranks}, {why}, fit with Dist.from_env())")
    print(f"  scaling: {samples / single:.2f}x the single-device samples/s on {ranks} ranks "
          f"({samples / single / ranks:.0%} efficiency)")


def rank_main(path: str) -> None:
    """One DDP rank under torchrun, as bert_pipeline.stages.train.main: process_group around fit with Dist.from_env()."""
    with open(path) as handle:
        job = json.load(handle)
    args, cfg = argparse.Namespace(**job["args"]), TrainConfig.model_validate(job["train"])
    with process_group(cfg.device):
        dist = Dist.from_env()
        shape = TINY if args.cpu_smoke else BERT_BASE
        _, result = train_check(args, shape, cfg, dist.device(pick_device(cfg.device)), dist)
        if dist.is_writer:
            with open(job["result"], "w") as handle:
                json.dump(result, handle)


def header(args: argparse.Namespace, shape: Shape) -> float | None:
    """Print the machine, library versions and model; returns the dense bf16 peak in TFLOP/s (None: unknown)."""
    import transformers

    print(f"CPU: {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, flags {cpu_flags()}")
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
          f"transformers {transformers.__version__}, python {sys.version.split()[0]}")
    peak = None
    if args.device == "cuda":
        name = torch.cuda.get_device_name()
        peak = peak_tflops(name)
        props = torch.cuda.get_device_properties(0)
        print(f"GPU: {name}, {props.multi_processor_count} SMs, {props.total_memory / 2**30:.1f} GiB, "
              f"{torch.cuda.device_count()} device(s); dense bf16 peak: "
              f"{f'{peak:.0f} TFLOP/s' if peak else 'unknown for this name: MFU not computed'}")
    else:
        print("device: CPU (smoke run: tiny model, figures check the code paths, not the hardware)")
    print(f"model: BertForSequenceClassification(BertConfig(hidden {shape.hidden}, {shape.layers} layers, "
          f"{shape.heads} heads, vocab {shape.vocab})), random init, {len(LABELS)} labels")
    return peak


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.rank_config:
        rank_main(args.rank_config)
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device visible to torch; use --cpu-smoke to check the code paths on CPU")
    shape = TINY if args.cpu_smoke else BERT_BASE
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars of save/load: noise in the log
    peak = header(args, shape)
    cfg, device = train_config(args), pick_device(args.device)
    model, result = train_check(args, shape, cfg, device)
    params = parameter_counts(model)
    single = print_train(result, params, peak, f"train (bert_pipeline.stages.train.fit, batch {args.batch})")
    with tempfile.TemporaryDirectory(prefix="gpu_check_model_") as folder:
        save_model_folder(model, folder)
        del model
        texts = synthetic_texts(args.texts)
        print_score(score_check(args, folder, texts), len(texts), params, peak)
    ddp_check(args, params, peak, single)


if __name__ == "__main__":
    main()
