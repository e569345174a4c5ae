"""Model folders and tokenizers checked before work: a scoring folder with only transformers' placeholder labels
(LABEL_0, LABEL_1, ...) is refused, one whose labels share none of the lake's is named; `~` in a model path is the
home folder; a tokenizer whose lowercasing disagrees with its vocabulary is named when loaded and in the tokens
manifest."""

from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path

import polars as pl
import pytest

from bert_pipeline.lake import storage
from bert_pipeline.config import build_config
from bert_pipeline.stages.curate import run_curate
from bert_pipeline.errors import ConfigError
from bert_pipeline.stages.ingest import run_ingest
from bert_pipeline.lake.manifests import Lake
from bert_pipeline.modeling.models import (
    casing_warnings, check_label_names, default_model_dir, lake_labels, load_tokenizer, preflight, resolve_model_dir,
)
from bert_pipeline.stages.score import resolve_scoring_model
from bert_pipeline.stages.tokenize import run_tokenize
from tests.helpers import build_tiny_model

TEXTS = ["The food was lovely today", "Our visit was awful and the staff were rude", "Paris in May, said Anna",
         "really great service at the new place", "terrible coffee and a dreadful wait"] * 8


def write_champion(root: Path, labels: list[str]) -> None:
    """A lake whose champion (as registry.promote writes it) has these labels."""
    storage.write_json_atomic(Lake(str(root)).champion_url, {"model_version": "2026-01-01-x", "label_names": labels})


# --- (a) label names of scoring folders ---------------------------------------------------------------------------

def test_a_scoring_folder_with_placeholder_labels_is_refused_at_preflight(tmp_path: Path) -> None:
    folder = build_tiny_model(tmp_path / "placeholders", TEXTS, vocab_size=120)  # id2label LABEL_0, LABEL_1
    cfg = build_config({"data_root": str(tmp_path / "lake"), "train": {"base_model": str(folder)},
                        "score": {"model": str(folder)}})
    with pytest.raises(ConfigError) as refused:
        preflight(cfg, ["score"])
    message = str(refused.value)
    assert message.startswith(f"score.model: {folder} has no label names")
    assert "(id2label {0: 'LABEL_0', 1: 'LABEL_1'})" in message
    assert "every prediction would be written as one of ['LABEL_0', 'LABEL_1']" in message
    assert "into its config.json as id2label (e.g. {\"0\": \"<name of output 0>\", \"1\": \"<name of output 1>\"})" \
        in message and "label2id" in message
    assert "lake's labels" not in message  # a new lake knows no labels
    assert not (tmp_path / "lake").exists()
    # the library's score stage refuses too (a run_score without the flows' preflight)
    with pytest.raises(ConfigError, match="has no label names"):
        resolve_scoring_model(cfg, Lake.of(cfg))
    # the base model itself may have placeholders: training replaces the head with the lake's labels
    preflight(cfg, ["tokenize", "train"])


def test_known_lake_labels_of_the_same_count_are_not_guessed_onto_the_outputs(tmp_path: Path) -> None:
    folder = build_tiny_model(tmp_path / "placeholders", TEXTS, vocab_size=120)
    write_champion(tmp_path / "lake", ["negative", "positive"])
    with pytest.raises(ConfigError) as refused:
        check_label_names(str(folder), "score.model", lake_labels(str(tmp_path / "lake")))
    assert ("the lake's labels are ['negative', 'positive'], as many as the model's outputs, but which output is "
            "which is not recorded anywhere, so they are not assigned by guess") in str(refused.value)


def test_real_label_names_pass_and_placeholders_that_are_the_lake_labels_pass(tmp_path: Path) -> None:
    named = build_tiny_model(tmp_path / "named", TEXTS, vocab_size=120, labels=["negative", "positive"])
    assert check_label_names(str(named), "score.model", []) == ["negative", "positive"]
    placeholders = build_tiny_model(tmp_path / "placeholders", TEXTS, vocab_size=120)
    write_champion(tmp_path / "lake", ["LABEL_0", "LABEL_1"])  # a lake whose labels really are spelt so
    assert check_label_names(str(placeholders), "score.model", lake_labels(str(tmp_path / "lake"))) == [
        "LABEL_0", "LABEL_1"]


def test_labels_disjoint_from_the_lake_are_named_in_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = build_tiny_model(tmp_path / "toxicity", TEXTS, vocab_size=120, labels=["clean", "toxic"])
    lake = tmp_path / "lake"
    write_champion(lake, ["negative", "positive"])
    storage.write_json_atomic(Lake(str(lake)).manifest_url("tokens", "2026-01-02"),
                              {"label_names": ["neutral", '["negative","positive"]']})
    assert lake_labels(str(lake)) == ["negative", "neutral", "positive"]
    cfg = build_config({"data_root": str(lake), "score": {"model": str(folder)}})
    with caplog.at_level(logging.WARNING, logger="bert_pipeline.modeling.models"):
        preflight(cfg, ["score"])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"score.model: {folder} predicts ['clean', 'toxic'], none of which is a label of this lake "
                        "(['negative', 'neutral', 'positive']); its predictions will not be comparable with the "
                        "lake's labels"]
    caplog.clear()
    overlapping = build_tiny_model(tmp_path / "overlap", TEXTS, vocab_size=120, labels=["negative", "other"])
    with caplog.at_level(logging.WARNING, logger="bert_pipeline.modeling.models"):
        check_label_names(str(overlapping), "score.model", lake_labels(str(lake)))
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


# --- (b) ~ in model paths -------------------------------------------------------------------------------------------

def test_a_tilde_in_model_paths_is_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    folder = build_tiny_model(home / "models" / "sentiment", TEXTS, vocab_size=120, labels=["negative", "positive"])
    assert resolve_model_dir("~/models/sentiment") == str(folder)
    assert resolve_model_dir("~/models/sentiment/", "score.model").rstrip("/") == str(folder)
    pl.DataFrame({"text": TEXTS[:5], "label": ["negative", "positive"] * 2 + ["negative"]}).write_csv(home / "in.csv")
    cfg = build_config({"data_root": "~/lake", "run_date": "2026-01-01",
                        "ingest": {"sources": ["~/in.csv"], "label_column": "label"},
                        "train": {"base_model": "~/models/sentiment"}, "score": {"model": "~/models/sentiment"}})
    preflight(cfg, ["ingest", "curate", "tokenize", "train", "score"])  # refused as "not an existing folder" before
    assert resolve_scoring_model(cfg, Lake.of(cfg)) == (str(folder), "sentiment")
    assert run_ingest(cfg)["rows"] == 5  # the lake and the sources under ~ too (fsspec expands them)
    assert Lake(str(home / "lake")).read_manifest("raw", "2026-01-01")["counts"]["rows"] == 5
    with pytest.raises(ConfigError) as missing:
        resolve_model_dir("~/models/gone")
    assert f"train.base_model: ~/models/gone ({home}/models/gone) is neither an existing folder" in str(missing.value)


# --- (c) tokenizer casing against its vocabulary ---------------------------------------------------------------------

def uncased_vocab_without_lowercasing(folder: Path) -> Path:
    """The tiny model (uncased vocabulary), its tokenizer.json normalizer told not to lowercase."""
    build_tiny_model(folder, TEXTS, vocab_size=120)
    spec = json.loads((folder / "tokenizer.json").read_text())
    spec["normalizer"]["lowercase"] = False
    (folder / "tokenizer.json").write_text(json.dumps(spec))
    return folder


def test_an_uncased_vocabulary_read_without_lowercasing_is_named(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    folder = uncased_vocab_without_lowercasing(tmp_path / "cased-normalizer")
    with caplog.at_level(logging.WARNING, logger="bert_pipeline.modeling.models"):
        tokenizer = load_tokenizer(str(folder))
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert logged == casing_warnings(tokenizer, str(folder)) and len(logged) == 1
    message = logged[0]
    assert message.startswith(f"tokenizer of {folder}: it does not lowercase its input, but its vocabulary is "
                              "uncased (0 of the ")
    assert "capitalised words of its own vocabulary became [UNK] (0 in lower case)" in message
    assert "`do_lower_case: false`, or a normalizer with `lowercase: false`" in message
    assert "Fix: set lowercasing on in tokenizer.json (normalizer, `lowercase`) and tokenizer_config.json" in message
    # the damage it names: a capitalised word is one [UNK]
    assert tokenizer.tokenize("The food") == ["[UNK]", "food"]


def test_do_lower_case_false_in_tokenizer_config_is_named(tmp_path: Path) -> None:
    from transformers import BertTokenizerFast

    folder = build_tiny_model(tmp_path / "do-lower-case", TEXTS, vocab_size=120)
    # transformers 5: vocab_file= alone keeps a 5-token vocabulary; the real one comes from tokenizer_file=
    BertTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), do_lower_case=False).save_pretrained(folder)
    assert json.loads((folder / "tokenizer_config.json").read_text())["do_lower_case"] is False
    warnings = casing_warnings(load_tokenizer(str(folder)), str(folder))
    assert len(warnings) == 1 and "it does not lowercase its input, but its vocabulary is uncased" in warnings[0]


def cased_model(folder: Path, lowercase: bool) -> Path:
    """A tiny model whose WordPiece vocabulary is cased (built from the texts as written)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    build_tiny_model(folder, TEXTS, vocab_size=120)
    words = sorted({w for t in TEXTS for w, _ in pre_tokenizers.BertPreTokenizer().pre_tokenize_str(t)})
    chars = sorted({c for w in words for c in w})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars] + words
    tok = Tokenizer(models.WordPiece(vocab=dict(zip(vocab, range(len(vocab)))), unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]", mask_token="[MASK]").save_pretrained(folder)
    return folder


def test_a_cased_vocabulary_read_with_lowercasing_is_named(tmp_path: Path) -> None:
    folder = cased_model(tmp_path / "lowercased-cased", lowercase=True)
    warnings = casing_warnings(load_tokenizer(str(folder)), str(folder))
    assert len(warnings) == 1
    assert warnings[0].startswith(f"tokenizer of {folder}: it lowercases its input, but its vocabulary is cased (")
    assert "`do_lower_case: true`" in warnings[0] and "set lowercasing off" in warnings[0]


def test_tokenizers_that_agree_with_their_vocabulary_raise_nothing(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    assert casing_warnings(load_tokenizer(default_model_dir())) == []  # the packaged MiniLM: uncased, lowercases
    tiny = build_tiny_model(tmp_path / "tiny", TEXTS, vocab_size=120)  # uncased, lowercases
    assert casing_warnings(load_tokenizer(str(tiny))) == []
    cased = cased_model(tmp_path / "cased", lowercase=False)  # cased, keeps case
    assert casing_warnings(load_tokenizer(str(cased))) == []
    # byte-level BPE trained on lower-case text only: no [UNK] exists, nothing is lost
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator([t.lower() for t in TEXTS], trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<pad>"]))
    assert casing_warnings(PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>")) == []


def test_the_tokens_manifest_records_the_casing_warning(tmp_path: Path) -> None:
    folder = uncased_vocab_without_lowercasing(tmp_path / "cased-normalizer")
    rng = random.Random(0)
    rows = [{"text": f"{rng.choice(TEXTS)} {i}", "label": "pos" if i % 2 else "neg"} for i in range(30)]
    pl.DataFrame(rows).write_csv(tmp_path / "in.csv")
    data = {"data_root": str(tmp_path / "lake"), "run_date": "2026-01-01",
            "ingest": {"sources": [str(tmp_path / "in.csv")], "label_column": "label"},
            "curate": {"near_dedup": False}, "train": {"base_model": str(folder)}}
    cfg = build_config(data)
    run_ingest(cfg), run_curate(cfg)
    summary = run_tokenize(cfg)
    expected = casing_warnings(load_tokenizer(str(folder)), str(folder))
    # then the coverage warning (tests/unit/test_coverage.py): the capitalised words are [UNK]
    assert summary["warnings"][:1] == expected and len(expected) == 1
    assert summary["warnings"][1].startswith("poor vocabulary coverage") and "fix that first" in summary["warnings"][1]
    manifest = Lake.of(cfg).read_manifest("tokens", cfg.run_date)
    assert manifest["tokenizer"]["warnings"] == expected
    assert run_tokenize(cfg)["warnings"] == summary["warnings"]  # a skipped rerun still says it
    # a tokenizer that agrees with its vocabulary: no warnings key in the manifest
    good = build_tiny_model(tmp_path / "good", TEXTS, vocab_size=120)
    shutil.rmtree(tmp_path / "lake")
    # (its vocabulary has no digits, so the row numbers are [UNK]: 13 % of the tokens, a coverage warning that is not
    # what this test is about)
    clean = build_config(data, {"train.base_model": str(good), "tokenize.max_unknown_share": 1.0})
    run_ingest(clean), run_curate(clean)
    assert "warnings" not in run_tokenize(clean)
    assert "warnings" not in Lake.of(clean).read_manifest("tokens", clean.run_date)["tokenizer"]
