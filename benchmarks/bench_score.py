"""Scoring throughput against `transformers.pipeline("text-classification", batch_size=32)` and a plain
length-sorted fp32 loop: same model folder, same texts, one process. Also argmax agreement and the largest
probability difference against an fp32 reference. Prints ratios last.

    .venv/bin/python -m benchmarks.bench_score [--input FILE --text-column COL --model DIR --rows 4000]
    .venv/bin/python -m benchmarks.bench_score --long --rows 1000 --max-length 512

--long joins 4-16 consecutive texts into one (about 100-400 tokens for the demo tweets), where fixed-size batches
waste more on padding.

Without --model it fine-tunes nothing: it scores with a 3-label head on the packaged MiniLM (random head, fixed
seed), which costs the same per text as a trained one.
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
import torch

from benchmarks._common import corpus_parser, load_texts
from bert_pipeline.models import load_classifier, load_tokenizer, resolve_model_dir
from bert_pipeline.score import Scorer


def sorted_fp32_loop(model_dir: str, texts: list[str], batch: int, max_length: int) -> np.ndarray:
    """The plain baseline: sort by length, fixed batches of `batch`, pad per batch, fp32."""
    tokenizer = load_tokenizer(model_dir)
    model = load_classifier(model_dir).eval()
    order = np.argsort([len(t) for t in texts], kind="stable")
    probs = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(texts), batch):
            index = order[start:start + batch]
            enc = tokenizer([texts[i] for i in index], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt")
            probs[index] = torch.softmax(model(**enc).logits, dim=-1).numpy()
    return probs


def hf_pipeline(model_dir: str, texts: list[str], max_length: int) -> np.ndarray:
    from transformers import pipeline

    classify = pipeline("text-classification", model=model_dir, tokenizer=model_dir, device=-1, top_k=None,
                        truncation=True, max_length=max_length)
    model = classify.model
    out = classify(texts, batch_size=32)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return np.array([[next(d["score"] for d in row if d["label"] == name) for name in labels] for row in out])


def join_texts(texts: list[str], rows: int) -> list[str]:
    """`rows` texts, each 4-16 consecutive input texts joined (seeded, so every run sees the same corpus)."""
    sizes = np.random.default_rng(0).integers(4, 17, size=rows)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]) % max(len(texts) - 16, 1)
    return [" ".join(texts[s:s + n]) for s, n in zip(starts, sizes)]


def main() -> None:
    parser = corpus_parser(__doc__)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--long", action="store_true", help="join 4-16 consecutive texts into each text")
    args = parser.parse_args()
    texts = load_texts(args.input, args.text_column, limit=args.rows * 16 if args.long else args.rows)
    if args.long:
        texts = join_texts(texts, args.rows)

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model
        if not model_dir:
            torch.manual_seed(0)
            base = resolve_model_dir("")
            load_classifier(base, num_labels=3, ignore_mismatched_sizes=True).save_pretrained(tmp)
            load_tokenizer(base).save_pretrained(tmp)
            model_dir = tmp
        timings: dict[str, float] = {}
        start = time.perf_counter()
        reference = hf_pipeline(model_dir, texts, args.max_length)
        timings["transformers.pipeline, batch 32"] = time.perf_counter() - start
        start = time.perf_counter()
        plain = sorted_fp32_loop(model_dir, texts, 32, args.max_length)
        timings["length-sorted fp32 loop, batch 32"] = time.perf_counter() - start
        results = {}
        for precision in ("fp32", "bf16"):
            scorer = Scorer(model_dir, args.max_length, None, precision, "cpu")
            start = time.perf_counter()
            results[precision], _ = scorer.probabilities(texts)
            timings[f"bert-pipeline Scorer ({precision})"] = time.perf_counter() - start

    print(f"{len(texts)} texts{' (joined, --long)' if args.long else ''}, max_length {args.max_length}, {torch.get_num_threads()} CPU threads, "
          f"model {args.model or 'MiniLM-L6 + 3-label head'}")
    for name, seconds in timings.items():
        print(f"  {name:<36} {len(texts) / seconds:8.1f} texts/s")
    for name, probs in [("sorted loop", plain), *results.items()]:
        agree = float((probs.argmax(1) == reference.argmax(1)).mean())
        print(f"  {name:<12} argmax agreement with the pipeline {agree:.4f}, max |Δp| "
              f"{float(np.abs(probs - reference).max()):.4f}")
    anchor = timings["transformers.pipeline, batch 32"]
    print("ratios against transformers.pipeline: " + ", ".join(
        f"{name} {anchor / seconds:.2f}x" for name, seconds in timings.items() if "pipeline," not in name))


if __name__ == "__main__":
    main()
