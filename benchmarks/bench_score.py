"""Scoring throughput of the product's Scorer against a plain length-sorted loop and `transformers.pipeline`,
each run in a fresh process (so no variant inherits another's allocator settings or warm caches).

The plain loop is what a careful user would write: the model's own tokenizer, texts sorted by length, batches cut by
the same padded-token budget as the Scorer, `torch.inference_mode()`, the same precision (bf16 autocast where the CPU
has native bf16), in a process whose allocator nobody touched. The Scorer must reach >= 0.95x of it. Also argmax
agreement and the largest probability difference against the pipeline. Prints the CPU flags, then ratios last.

    .venv/bin/python -m benchmarks.bench_score [--input FILE --text-column COL --model DIR --rows 4000 --repeats 3]
    .venv/bin/python -m benchmarks.bench_score --long --rows 1000 --max-length 512

--long joins 4-16 consecutive texts into one (about 100-400 tokens for the demo tweets), where fixed-size batches
waste more on padding. Without --model it scores with a 3-label head on the packaged MiniLM (random head, fixed seed),
which costs the same per text as a trained one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._common import corpus_parser, cpu_flags, load_texts

WARMUP_TEXTS = 256


def plain_sorted_loop(model_dir: str, texts: list[str], max_length: int, batch_tokens: int,
                      precision: str) -> np.ndarray:
    """The anchor: HF tokenizer, sort by token length, cut by a padded-token budget, pad per batch, softmax."""
    import torch

    from bert_pipeline.modeling.models import load_classifier, load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    model = load_classifier(model_dir).eval()
    encoded = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    order = np.argsort([len(ids) for ids in encoded], kind="stable")
    probs = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    start = 0
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        while start < len(order):
            end = start + 1
            while end < len(order) and (end - start + 1) * len(encoded[order[end]]) <= batch_tokens:
                end += 1
            index = order[start:end]
            batch = tokenizer.pad({"input_ids": [encoded[i] for i in index]}, return_tensors="pt")
            probs[index] = torch.softmax(model(**batch).logits.float(), dim=-1).numpy()
            start = end
    return probs


def product_scorer(model_dir: str, texts: list[str], max_length: int, batch_tokens: int, precision: str) -> np.ndarray:
    from bert_pipeline.stages.score import Scorer

    return Scorer(model_dir, max_length, batch_tokens, precision, "cpu").probabilities(texts)[0]


def hf_pipeline(model_dir: str, texts: list[str], max_length: int, _batch_tokens: int, _precision: str) -> np.ndarray:
    from transformers import pipeline

    classify = pipeline("text-classification", model=model_dir, tokenizer=model_dir, device=-1, top_k=None,
                        truncation=True, max_length=max_length)
    labels = [classify.model.config.id2label[i] for i in range(classify.model.config.num_labels)]
    out = classify(texts, batch_size=32)
    return np.array([[next(d["score"] for d in row if d["label"] == name) for name in labels] for row in out])


VARIANTS = {"pipeline": hf_pipeline, "plain": plain_sorted_loop, "scorer": product_scorer}


def child(args: argparse.Namespace) -> None:
    """One variant in this (fresh) process: warm up on a few texts, then time all of them; JSON on stdout."""
    texts = json.loads(Path(args.texts_file).read_text())
    run = VARIANTS[args.child]
    run(args.model, texts[:WARMUP_TEXTS], args.max_length, args.batch_tokens, args.precision)
    start = time.perf_counter()
    probs = run(args.model, texts, args.max_length, args.batch_tokens, args.precision)
    seconds = time.perf_counter() - start
    np.save(args.probs_file, probs)
    print(json.dumps({"texts_per_s": len(texts) / seconds}))


def run_child(variant: str, precision: str, model: str, texts_file: str, probs_file: str,
              args: argparse.Namespace) -> float:
    command = [sys.executable, "-m", "benchmarks.bench_score", "--child", variant, "--precision", precision,
               "--model", model, "--texts-file", texts_file, "--probs-file", probs_file,
               "--max-length", str(args.max_length), "--batch-tokens", str(args.batch_tokens)]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["texts_per_s"])


def join_texts(texts: list[str], rows: int) -> list[str]:
    """`rows` texts, each 4-16 consecutive input texts joined (seeded, so every run sees the same corpus)."""
    sizes = np.random.default_rng(0).integers(4, 17, size=rows)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]) % max(len(texts) - 16, 1)
    return [" ".join(texts[s:s + n]) for s, n in zip(starts, sizes)]


def build_model(folder: Path) -> str:
    import torch

    from bert_pipeline.modeling.models import load_classifier, load_tokenizer, resolve_model_dir

    torch.manual_seed(0)
    base = resolve_model_dir("")
    load_classifier(base, num_labels=3, ignore_mismatched_sizes=True).save_pretrained(folder)
    load_tokenizer(base).save_pretrained(folder)
    return str(folder)


def main() -> None:
    parser = corpus_parser(__doc__)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--long", action="store_true", help="join 4-16 consecutive texts into each text")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per variant; the median is used")
    parser.add_argument("--batch-tokens", type=int, default=4096, help="padded tokens per pass, for both loops")
    parser.add_argument("--bf16", action="store_true", help="also bf16 where the CPU lacks native bf16 (emulated)")
    parser.add_argument("--no-pipeline", action="store_true", help="skip the transformers.pipeline anchor")
    parser.add_argument("--child", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--texts-file", help=argparse.SUPPRESS)
    parser.add_argument("--probs-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    from bert_pipeline.modeling.inference import cpu_has_native_bf16

    texts = load_texts(args.input, args.text_column, limit=args.rows * 16 if args.long else args.rows)
    texts = join_texts(texts, args.rows) if args.long else texts
    precisions = ["fp32"] + (["bf16"] if cpu_has_native_bf16() or args.bf16 else [])
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or build_model(Path(tmp) / "model")
        texts_file = Path(tmp) / "texts.json"
        texts_file.write_text(json.dumps(texts))
        speed: dict[tuple[str, str], list[float]] = {}
        probs: dict[tuple[str, str], np.ndarray] = {}
        runs = [("pipeline", "fp32")] * (not args.no_pipeline) + [(v, p) for p in precisions for v in ("plain", "scorer")]
        for _ in range(args.repeats):  # interleaved, so a slow spell of a shared machine hits every variant
            for variant, precision in runs:
                out = str(Path(tmp) / f"{variant}-{precision}.npy")
                speed.setdefault((variant, precision), []).append(
                    run_child(variant, precision, model, str(texts_file), out, args))
                probs[(variant, precision)] = np.load(out)
            runs = [r for r in runs if r[0] != "pipeline"]  # the slow anchor once is enough

    print(f"CPU flags: {cpu_flags()}; native bf16: {'yes' if cpu_has_native_bf16() else 'no'}")
    print(f"{len(texts)} texts{' (joined, --long)' if args.long else ''}, max_length {args.max_length}, "
          f"{args.batch_tokens} padded tokens per pass, model {args.model or 'MiniLM-L6 + 3-label head'}, "
          f"each variant in a fresh process, median of {args.repeats}")
    reference = probs.get(("pipeline", "fp32"), probs[("plain", "fp32")])
    for (variant, precision), values in speed.items():
        agree = float((probs[(variant, precision)].argmax(1) == reference.argmax(1)).mean())
        print(f"  {variant:<9} {precision:<5} {statistics.median(values):8.1f} texts/s "
              f"(runs: {', '.join(f'{v:.1f}' for v in values)}); argmax agreement {agree:.4f}, "
              f"max |dp| {float(np.abs(probs[(variant, precision)] - reference).max()):.4f}")
    for precision in precisions:
        ratio = statistics.median(speed[("scorer", precision)]) / statistics.median(speed[("plain", precision)])
        print(f"ratio Scorer / plain sorted loop, {precision}: {ratio:.3f} (target >= 0.95)")
    if ("pipeline", "fp32") in speed:
        print(f"ratio Scorer / transformers.pipeline, fp32: "
              f"{statistics.median(speed[('scorer', 'fp32')]) / speed[('pipeline', 'fp32')][0]:.2f}")


if __name__ == "__main__":
    main()
