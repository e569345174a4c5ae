"""Tokenize stage throughput against raw `tokenizers` encode_batch and `datasets.Dataset.map(batched=True)`.

Same texts, same tokenizer (truncation at max_length), one process; medians of --repeats runs. Ours includes building
the Arrow table and writing the IPC file (to memory). Prints ratios last.

    .venv/bin/python benchmarks/bench_tokenize.py [--input FILE --text-column COL --model DIR --max-length 128]
"""

from __future__ import annotations

import io

import polars as pl
import pyarrow as pa

from benchmarks._common import corpus_parser, load_texts, median_seconds
from bert_pipeline.modeling.models import fast_encoder, load_tokenizer, resolve_model_dir
from bert_pipeline.stages.tokenize import token_table


def main() -> None:
    parser = corpus_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-datasets", action="store_true", help="skip the datasets.map anchor")
    args = parser.parse_args()

    texts = load_texts(args.input, args.text_column)
    tokenizer = load_tokenizer(resolve_model_dir(args.model))
    encoder = fast_encoder(tokenizer, args.max_length)
    frame = pl.DataFrame({"doc_id": [str(i) for i in range(len(texts))], "text": texts,
                          "label": [None] * len(texts), "label_conflict": [False] * len(texts),
                          "split": ["train"] * len(texts)}, schema_overrides={"label": pl.String})

    def raw() -> None:
        encoder.encode_batch(texts)

    def ours() -> None:
        table = token_table(frame, encoder, [], batch_size=2048)
        with pa.ipc.new_file(io.BytesIO(), table.schema) as writer:
            writer.write_table(table)

    results = {"raw encode_batch": median_seconds(raw, args.repeats), "bert-pipeline tokenize": median_seconds(ours, args.repeats)}
    if not args.no_datasets:
        import datasets

        datasets.disable_progress_bars()
        dataset = datasets.Dataset.from_dict({"text": texts})

        def hf_map() -> None:
            dataset.map(lambda b: tokenizer(b["text"], truncation=True, max_length=args.max_length), batched=True,
                        load_from_cache_file=False, keep_in_memory=True)

        results["datasets.map(batched=True)"] = median_seconds(hf_map, args.repeats)

    print(f"{len(texts)} texts, max_length {args.max_length}, median of {args.repeats}")
    for name, seconds in results.items():
        print(f"  {name:<28} {len(texts) / seconds:>10,.0f} texts/s")
    base = results["bert-pipeline tokenize"]
    print(f"ratio ours / raw encode_batch: {results['raw encode_batch'] / base:.2f}")
    if "datasets.map(batched=True)" in results:
        print(f"ratio ours / datasets.map:     {results['datasets.map(batched=True)'] / base:.2f}")


if __name__ == "__main__":
    main()
