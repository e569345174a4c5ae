"""Fine-tuning throughput and accuracy against the Hugging Face Trainer, same model, data and hyper-parameters.

Demo tweets (unique texts, seed-0 shuffle): 4,000 train / 2,000 eval, max_length 128, batch 32, lr 5e-5, one epoch,
no warmup, no weight decay, seed 0. The Trainer gets dynamic padding (DataCollatorWithPadding); ours is
bert_pipeline.train.fit with the pipeline's defaults (length-grouped batches, fused AdamW, attention dropout off so
SDPA stays on its fused kernel, hidden dropout off; the Trainer keeps the model's 0.1 for both). Both models are then evaluated by the same loop.
Prints ratios last.

    .venv/bin/python -m benchmarks.bench_train [--input FILE --text-column COL --label-column COL --model DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from benchmarks._common import corpus_parser
from bert_pipeline.checkpoint import CheckpointStore
from bert_pipeline.config import IngestConfig, TrainConfig
from bert_pipeline.ingest import expand_sources, read_source
from bert_pipeline.models import fast_encoder, load_classifier, load_tokenizer, resolve_model_dir
from bert_pipeline.inference import predict_logits
from bert_pipeline.train import dropout_overrides, fit
from bert_pipeline.trainset import SplitData


def load_data(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    cfg = IngestConfig(sources=[args.input], text_column=args.text_column, label_column=args.label_column)
    frame, _ = read_source(expand_sources(cfg.sources)[0], cfg)
    frame = frame.filter(frame["label"].is_not_null()).unique("text", keep="first", maintain_order=True)
    frame = frame.sample(fraction=1.0, shuffle=True, seed=0)
    return frame["text"].to_list(), frame["label"].to_list()


def encode(texts: list[str], labels: list[int], encoder) -> SplitData:  # type: ignore[no-untyped-def]
    return SplitData([np.asarray(e.ids, dtype=np.int64) for e in encoder.encode_batch(texts)],
                     np.asarray(labels, dtype=np.int64))


def accuracy(model, data: SplitData, pad_id: int) -> float:  # type: ignore[no-untyped-def]
    logits = predict_logits(model, data.sequences, 128, pad_id, torch.device("cpu"))
    return float((logits.argmax(axis=1) == data.labels).mean())


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
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="ours only: bf16 autocast pays off on CPUs with native bf16 (AMX/avx512_bf16)")
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
    cfg = TrainConfig(epochs=1, batch_size=32, learning_rate=5e-5, warmup_ratio=0.0, weight_decay=0.0, seed=0,
                      device="cpu", precision=args.precision, early_stopping_patience=0, checkpoint_every_steps=10**9,
                      calibrate=False, attention_dropout=args.attention_dropout, hidden_dropout=args.hidden_dropout)
    splits = {"train": train, "validation": SplitData([], np.zeros(0, np.int64)), "test": evaluation}

    trainer_seconds, trainer_model = run_trainer(model_dir, label_names, train, tokenizer, cfg)
    trainer_accuracy = accuracy(trainer_model, evaluation, pad_id)
    ours_seconds, ours_model = run_ours(model_dir, label_names, train, splits, cfg, pad_id)
    ours_accuracy = accuracy(ours_model, evaluation, pad_id)

    real = int(sum(len(s) for s in train.sequences))
    print(f"{n} train / {m} eval rows, max_length {args.max_length}, batch 32, lr 5e-5, 1 epoch, "
          f"{torch.get_num_threads()} CPU threads; {real} real tokens")
    print(f"  HF Trainer (dynamic padding)  {n / trainer_seconds:7.1f} samples/s  eval accuracy {trainer_accuracy:.4f}")
    print(f"  bert-pipeline fit ({args.precision})      {n / ours_seconds:7.1f} samples/s  eval accuracy {ours_accuracy:.4f}")
    print(f"ratio ours / Trainer samples/s: {trainer_seconds / ours_seconds:.2f}; "
          f"accuracy difference {ours_accuracy - trainer_accuracy:+.4f}")


if __name__ == "__main__":
    main()
