"""Fine-tuning throughput and accuracy against the Hugging Face Trainer, same model, data and hyper-parameters.

Demo tweets (unique texts, seed-0 shuffle): 4,000 train / 2,000 eval, max_length 128, batch 32, lr 5e-5, one epoch,
no warmup, no weight decay, seed 0. The Trainer gets dynamic padding (DataCollatorWithPadding); ours is
bert_pipeline.stages.train.fit with the pipeline's defaults (length-grouped batches, fused AdamW, attention dropout off so
SDPA stays on its fused kernel, hidden dropout off; the Trainer keeps the model's 0.1 for both). Both models are then
evaluated by the same fp32 loop (accuracy and macro-F1). Ours also trains in bf16 autocast where the CPU has native
bf16 (AMX or avx512_bf16; `--bf16` forces the emulated comparison): that is the evidence behind `train.precision:
auto`. Prints the CPU flags first and ratios last.

    .venv/bin/python -m benchmarks.bench_train [--input FILE --text-column COL --label-column COL --model DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from benchmarks._common import corpus_parser, cpu_flags
from bert_pipeline.training.checkpoint import CheckpointStore
from bert_pipeline.config import IngestConfig, PipelineConfig, TrainConfig
from bert_pipeline.stages.ingest import expand_sources, read_source
from bert_pipeline.modeling.models import fast_encoder, load_classifier, load_tokenizer, resolve_model_dir
from bert_pipeline.modeling.inference import cpu_has_native_bf16, predict_logits
from bert_pipeline.evaluation.metrics import classification_report
from bert_pipeline.training.optimization import training_precision
from bert_pipeline.stages.train import dropout_overrides, fit
from bert_pipeline.training.trainset import SplitData


def load_data(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    cfg = IngestConfig(sources=[args.input], text_column=args.text_column, label_column=args.label_column)
    frame, _ = read_source(expand_sources(cfg.sources)[0], PipelineConfig(ingest=cfg))
    frame = frame.filter(frame["label"].is_not_null()).unique("text", keep="first", maintain_order=True)
    frame = frame.sample(fraction=1.0, shuffle=True, seed=0)
    return frame["text"].to_list(), frame["label"].to_list()


def encode(texts: list[str], labels: list[int], encoder) -> SplitData:  # type: ignore[no-untyped-def]
    return SplitData([np.asarray(e.ids, dtype=np.int64) for e in encoder.encode_batch(texts)],
                     np.asarray(labels, dtype=np.int64))


def scores(model, data: SplitData, pad_id: int, label_names: list[str]) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(accuracy, macro-F1) on data, evaluated in fp32 by the product's inference loop."""
    logits = predict_logits(model, data.sequences, 128, pad_id, torch.device("cpu"))
    report = classification_report(data.labels, logits.argmax(axis=1), label_names)
    return float(report["accuracy"]), float(report["macro_f1"])


def run_ours(model_dir: str, label_names: list[str], train: SplitData, splits: dict, cfg: TrainConfig,
             pad_id: int) -> tuple[float, object]:
    torch.manual_seed(cfg.seed)
    model = load_classifier(model_dir, num_labels=len(label_names), ignore_mismatched_sizes=True,
                            **dropout_overrides(cfg))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        fit(model, splits, label_names, cfg, pad_id, torch.device("cpu"), CheckpointStore(tmp))
        seconds = time.perf_counter() - start
    return seconds, model


def run_trainer(model_dir: str, label_names: list[str], train: SplitData, tokenizer, cfg: TrainConfig):  # type: ignore[no-untyped-def]
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    torch.manual_seed(cfg.seed)
    model = load_classifier(model_dir, num_labels=len(label_names), ignore_mismatched_sizes=True)
    rows = [{"input_ids": s.tolist(), "attention_mask": [1] * len(s), "labels": int(y)}
            for s, y in zip(train.sequences, train.labels)]
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=cfg.batch_size,
                                 learning_rate=cfg.learning_rate, num_train_epochs=cfg.epochs, weight_decay=0.0,
                                 warmup_steps=0, lr_scheduler_type="linear", seed=cfg.seed, eval_strategy="no",
                                 save_strategy="no", logging_strategy="no", report_to=[], use_cpu=True,
                                 disable_tqdm=True, dataloader_num_workers=0)
        trainer = Trainer(model=model, args=args, train_dataset=rows,
                          data_collator=DataCollatorWithPadding(tokenizer))
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return seconds, model


def main() -> None:
    parser = corpus_parser(__doc__)
    parser.add_argument("--label-column", default="sentiment")
    parser.add_argument("--train-rows", type=int, default=4000)
    parser.add_argument("--eval-rows", type=int, default=2000)
    parser.add_argument("--attention-dropout", type=float, default=TrainConfig().attention_dropout)
    parser.add_argument("--hidden-dropout", type=float, default=TrainConfig().hidden_dropout)
    parser.add_argument("--bf16", action="store_true",
                        help="also train in bf16 where the CPU lacks native bf16 (emulated: slow, for comparison)")
    parser.add_argument("--no-trainer", action="store_true", help="skip the HF Trainer anchor")
    args = parser.parse_args()

    texts, raw_labels = load_data(args)
    label_names = sorted(set(raw_labels))
    label_ids = [label_names.index(label) for label in raw_labels]
    model_dir = resolve_model_dir(args.model)
    tokenizer = load_tokenizer(model_dir)
    encoder = fast_encoder(tokenizer, args.max_length)
    n, m = args.train_rows, args.eval_rows
    train = encode(texts[:n], label_ids[:n], encoder)
    evaluation = encode(texts[n:n + m], label_ids[n:n + m], encoder)
    pad_id = tokenizer.pad_token_id or 0
    base = dict(epochs=1, batch_size=32, learning_rate=5e-5, warmup_ratio=0.0, weight_decay=0.0, seed=0, device="cpu",
                early_stopping_patience=0, checkpoint_every_steps=10**9, calibrate=False,
                attention_dropout=args.attention_dropout, hidden_dropout=args.hidden_dropout)
    splits = {"train": train, "validation": SplitData([], np.zeros(0, np.int64)), "test": evaluation}
    native = cpu_has_native_bf16()
    auto_dtype = training_precision("auto", torch.device("cpu"))[0]
    results: dict[str, tuple[float, float, float]] = {}
    if not args.no_trainer:
        seconds, model = run_trainer(model_dir, label_names, train, tokenizer, TrainConfig(**base))
        results["HF Trainer (fp32, dynamic padding)"] = (n / seconds, *scores(model, evaluation, pad_id, label_names))
    for precision in ["fp32"] + (["bf16"] if native or args.bf16 else []):
        seconds, model = run_ours(model_dir, label_names, train, splits, TrainConfig(**base, precision=precision), pad_id)
        results[f"bert-pipeline fit ({precision})"] = (n / seconds, *scores(model, evaluation, pad_id, label_names))

    real = int(sum(len(s) for s in train.sequences))
    print(f"CPU flags: {cpu_flags()}; native bf16: {'yes' if native else 'no'}; train.precision auto trains in "
          f"{str(auto_dtype).replace('torch.', '') if auto_dtype else 'fp32'} here")
    print(f"{n} train / {m} eval rows, max_length {args.max_length}, batch 32, lr 5e-5, 1 epoch, "
          f"{torch.get_num_threads()} CPU threads; {real} real tokens")
    for name, (speed, acc, f1) in results.items():
        print(f"  {name:<36} {speed:7.1f} samples/s  eval accuracy {acc:.4f}  macro-F1 {f1:.4f}")
    ours = results["bert-pipeline fit (fp32)"]
    if "HF Trainer (fp32, dynamic padding)" in results:
        trainer = results["HF Trainer (fp32, dynamic padding)"]
        print(f"ratio ours / Trainer samples/s: {ours[0] / trainer[0]:.2f}; accuracy difference {ours[1] - trainer[1]:+.4f}")
    if "bert-pipeline fit (bf16)" in results:
        bf16 = results["bert-pipeline fit (bf16)"]
        print(f"ratio bf16 / fp32 samples/s: {bf16[0] / ours[0]:.2f}; macro-F1 difference {bf16[2] - ours[2]:+.4f}")


if __name__ == "__main__":
    main()
