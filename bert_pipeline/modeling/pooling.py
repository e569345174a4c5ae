"""How a classifier turns the encoder's token vectors into the one vector its head reads (`train.pooling`).

Hugging Face's BERT classifiers read the [CLS] token's vector through the checkpoint's pooler (dense + tanh). A
sentence-transformers model, the packaged all-MiniLM-L6-v2 among them, was trained to be read through the mean of
its token vectors instead (its `1_Pooling/config.json` says `pooling_mode_mean_tokens`); its [CLS] vector and pooler
were never trained for that. `mean` replaces the pooler by the attention-masked mean of the last hidden states, the
sentence-transformers rule (Reimers & Gurevych, "Sentence-BERT", EMNLP 2019; `sentence_transformers.models.Pooling`),
so that fine-tuning starts from the representation the model was trained to give.

- `auto`: `mean` for a multi-label model whose base model pools by mean, else `cls`. Measured on the disaster
  messages (benchmarks/bench_multilabel.py, 6,000 training rows, 2 epochs): test macro-F1 0.489 with mean pooling,
  0.401 through [CLS]. Single-label training keeps [CLS] under `auto` until it is measured there (`mean` by hand).
- `cls`: the model's own head, unchanged.
- `mean`: refused (naming `train.pooling`) for a model without a BERT-style pooler to replace, such as RoBERTa or
  DistilBERT, whose heads read [CLS] themselves; a model whose config already has `classifier_pooling` (ModernBERT)
  pools by mean itself when told to.

The choice is stored in the model folder's config.json as `classifier_pooling` ("cls" | "mean", the key and values
Hugging Face's ModernBERT uses) and `models.load_classifier` applies it on every load, for training, the champion
gate and scoring alike. A mean-pooled BERT folder holds no pooler weights: plain
`AutoModelForSequenceClassification.from_pretrained` reports them missing (it would read [CLS] through a random
pooler), so load such a folder with `bert_pipeline.modeling.models.load_classifier`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch

from bert_pipeline.errors import ConfigError
from bert_pipeline.modeling.hub import hub_cached

POOLING_KEY = "classifier_pooling"


class MeanPooling(torch.nn.Module):
    """Takes the place of a BERT pooler in a mean-pooled classifier. The encoder calls its pooler with the hidden
    states alone, so this returns the [CLS] vector as a placeholder, and the encoder's forward hook
    (`_mean_of_tokens`, installed by `use_mean_pooling`) replaces the pooled output by the masked mean of the same
    call: nothing is stored between calls, so threads sharing one model (Dask workers scoring shards) stay apart."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states[:, 0]


def masked_mean(hidden_states: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """[rows, tokens, hidden] -> [rows, hidden]: the mean over the tokens whose attention mask [rows, tokens] is 1
    (all tokens without a mask), in float32 (a bf16 count of more than 256 tokens would round)."""
    if attention_mask is None:
        return hidden_states.float().mean(dim=1).to(hidden_states.dtype)
    mask = attention_mask[:, :, None].float()
    return ((hidden_states.float() * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)).to(hidden_states.dtype)


def _mean_of_tokens(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Any:
    """Forward hook on a mean-pooled encoder: its pooled output becomes the masked mean of its last hidden states."""
    mask = kwargs.get("attention_mask")
    if mask is None and len(args) > 1:
        mask = args[1]
    if isinstance(output, tuple):
        return (output[0], masked_mean(output[0], mask), *output[2:])
    output.pooler_output = masked_mean(output.last_hidden_state, mask)  # ModelOutput keeps output[1] in step
    return output


def _bert_style_pooler(model: Any) -> bool:
    """True when the classifier reads its encoder's pooler, a module called on all hidden states (BertPooler and its
    copies); ALBERT's and BigBird's poolers are a Linear on [CLS] alone, and RoBERTa-style heads have none."""
    pooler = getattr(getattr(model, "base_model", None), "pooler", None)
    return isinstance(pooler, torch.nn.Module) and not isinstance(pooler, torch.nn.Linear) and (
        isinstance(pooler, MeanPooling) or type(pooler).__name__.endswith("Pooler"))


def _natively_pooled(model: Any) -> bool:
    """A model class that reads `classifier_pooling` itself (ModernBERT's config has it by default)."""
    return not _bert_style_pooler(model) and getattr(model.config, POOLING_KEY, None) in ("cls", "mean")


def supports_mean(model: Any) -> bool:
    """True when `use_mean_pooling` can make this classifier pool by mean."""
    return _bert_style_pooler(model) or _natively_pooled(model)


def use_mean_pooling(model: Any) -> None:
    """Make `model` (a Hugging Face sequence classifier) read the masked mean of its token vectors; idempotent."""
    model.config.classifier_pooling = "mean"
    if _natively_pooled(model) or reads_missing_pooler(model):
        return
    model.base_model.pooler = MeanPooling()
    model.base_model.register_forward_hook(_mean_of_tokens, with_kwargs=True)


def base_pools_by_mean(model_dir: str) -> bool:
    """True when `model_dir` (a folder, or a hub id in the local Hugging Face cache) is a sentence-transformers model
    whose Pooling module takes the mean of the tokens only (`1_Pooling/config.json`, found through `modules.json`)."""
    try:
        modules = _read_json(model_dir, "modules.json")
        folder = next(m.get("path", "") for m in modules if str(m.get("type", "")).endswith("models.Pooling"))
        pooling = _read_json(model_dir, f"{folder}/config.json" if folder else "config.json")
    except (OSError, ValueError, StopIteration, AttributeError, TypeError):
        return False
    modes = {key for key, value in pooling.items() if key.startswith("pooling_mode_") and value is True}
    return modes == {"pooling_mode_mean_tokens"}


def _read_json(model_dir: str, name: str) -> Any:

    path = os.path.join(model_dir, name) if os.path.isdir(model_dir) else hub_cached(model_dir, name)
    with open(path or "", encoding="utf-8") as handle:
        return json.load(handle)


def choose_pooling(requested: str, base_dir: str, multi_label: bool, model: Any) -> str:
    """"cls" or "mean" for `train.pooling` and the base `model` as loaded (see the module docstring for auto).

    Errors: ConfigError when mean is asked for a model that has no pooler to replace, or cls for a base that was
    itself trained with mean pooling (its folder has no pooler weights left to read [CLS] through)."""
    if requested == "auto":
        if _natively_pooled(model) or reads_missing_pooler(model):
            return model.config.classifier_pooling  # the base's own choice: ModernBERT, a mean-pooled folder
        return "mean" if multi_label and base_pools_by_mean(base_dir) and supports_mean(model) else "cls"
    if requested == "mean" and not supports_mean(model):
        raise ConfigError(
            f"train.pooling is mean, but {base_dir} ({model.config.model_type}) has no BERT-style pooler to replace: "
            "its classification head reads the first token itself; set train.pooling to cls or auto")
    if requested == "cls" and reads_missing_pooler(model):
        raise ConfigError(
            f"train.pooling is cls, but {base_dir} was trained with mean pooling (classifier_pooling: mean in its "
            "config.json) and holds no pooler weights to read [CLS] through; set train.pooling to mean or auto")
    return requested


def apply_pooling(model: Any, mode: str) -> Any:
    """Set `model`'s pooling to "cls" (its own head) or "mean" and record it in its config; returns the model."""
    if mode == "mean":
        use_mean_pooling(model)
    elif _natively_pooled(model) or _bert_style_pooler(model):
        model.config.classifier_pooling = "cls"
    return model


def restore_pooling(model: Any) -> Any:
    """Apply the pooling a loaded folder's config.json records (`classifier_pooling`); returns the model."""
    if getattr(model.config, POOLING_KEY, None) == "mean" and _bert_style_pooler(model):
        use_mean_pooling(model)
    return model


def reads_missing_pooler(model: Any) -> bool:
    """True when plain `from_pretrained` would mis-read this model's saved folder: a BERT-style encoder whose pooler
    was replaced by the mean (its weights are not saved)."""
    return isinstance(getattr(getattr(model, "base_model", None), "pooler", None), MeanPooling)


def recorded_pooling(model_dir: str) -> str | None:
    """`classifier_pooling` from a folder's (or a hub-cached model's) config.json; None when absent or unreadable."""
    try:
        value = _read_json(model_dir, "config.json").get(POOLING_KEY)
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None
