"""Every model family the README names trains through the pipeline with the defaults, and `train.attention_dropout` /
`train.hidden_dropout` land in each family's own config keys (DistilBERT's and ModernBERT's are not BERT's: up to
0.3.0 they crashed the train stage with `unexpected keyword argument 'attention_probs_dropout_prob'`, after three
stages had committed). A family whose keys are unknown is refused before any stage writes."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import polars as pl
import pytest
import torch

from bert_pipeline.config import build_config
from bert_pipeline.stages.curate import run_curate
from bert_pipeline.errors import ConfigError
from bert_pipeline.stages.ingest import run_ingest
from bert_pipeline.modeling.models import dropout_keys, preflight
from bert_pipeline.stages.tokenize import run_tokenize
from bert_pipeline.stages.train import new_classifier, run_train
from flows import cli
from tests.helpers import build_tiny_model

STAGES = ["ingest", "curate", "tokenize", "train", "score"]
GOOD = ["great", "lovely", "excellent", "wonderful", "superb", "amazing"]
BAD = ["awful", "terrible", "horrible", "dreadful", "poor", "nasty"]
FILLER = ["the", "food", "was", "service", "today", "really", "place", "our", "visit", "staff"]

# family -> (train.attention_dropout keys, train.hidden_dropout keys): what the config must hold afterwards
KEYS = {
    "bert": (["attention_probs_dropout_prob"], ["hidden_dropout_prob"]),
    "distilbert": (["attention_dropout"], ["dropout", "seq_classif_dropout"]),
    "modernbert": (["attention_dropout"], ["embedding_dropout", "mlp_dropout", "classifier_dropout"]),
    "roberta": (["attention_probs_dropout_prob"], ["hidden_dropout_prob"]),
    "xlm-roberta": (["attention_probs_dropout_prob"], ["hidden_dropout_prob"]),
    "electra": (["attention_probs_dropout_prob"], ["hidden_dropout_prob"]),
    "albert": (["attention_probs_dropout_prob"], ["hidden_dropout_prob", "classifier_dropout_prob"]),
    "deberta-v2": (["attention_probs_dropout_prob"], ["hidden_dropout_prob", "pooler_dropout"]),
}


def family_config(family: str, vocab_size: int, cls_id: int, sep_id: int) -> object:
    """A tiny (hidden 32, 2 layers, 2 heads) transformers config of `family`, padding id 0 as the tokenizer has."""
    import transformers as tf

    common = {"vocab_size": vocab_size, "pad_token_id": 0, "num_labels": 2}
    bert_like = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 37}
    if family == "distilbert":
        return tf.DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=37, max_position_embeddings=512,
                                   **common)
    if family == "modernbert":
        return tf.ModernBertConfig(**bert_like, max_position_embeddings=512, local_attention=16,
                                   cls_token_id=cls_id, sep_token_id=sep_id, bos_token_id=cls_id,
                                   eos_token_id=sep_id, **common)
    if family in ("roberta", "xlm-roberta"):  # fairseq positions: 2 reserved, 512 usable
        config_class = tf.RobertaConfig if family == "roberta" else tf.XLMRobertaConfig
        return config_class(**bert_like, max_position_embeddings=514, type_vocab_size=1, **common)
    if family == "electra":
        return tf.ElectraConfig(embedding_size=32, **bert_like, max_position_embeddings=512, **common)
    if family == "albert":
        return tf.AlbertConfig(embedding_size=16, **bert_like, max_position_embeddings=512, **common)
    if family == "deberta-v2":
        return tf.DebertaV2Config(**bert_like, max_position_embeddings=512, relative_attention=True,
                                  position_buckets=16, pos_att_type=["p2c", "c2p"], **common)
    if family == "t5":  # a classifier transformers has, whose dropout keys bert-pipeline cannot map
        return tf.T5Config(d_model=32, d_kv=16, d_ff=37, num_layers=2, num_heads=2, decoder_start_token_id=0,
                           **common)
    raise ValueError(family)


def build_family_model(folder: Path, family: str, texts: list[str], labels: list[str] | None = None) -> Path:
    """A tiny `family` sequence classifier with random weights and the tiny BERT's WordPiece tokenizer (lowercasing,
    uncased vocabulary), saved as a Hugging Face folder (safetensors); `labels` names its classes."""
    build_tiny_model(folder, texts, vocab_size=200, labels=labels)
    if family == "bert":
        return folder
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = family_config(family, len(tokenizer), tokenizer.cls_token_id, tokenizer.sep_token_id)
    if labels:
        config.id2label, config.label2id = dict(enumerate(labels)), {name: i for i, name in enumerate(labels)}
    for name in ("config.json", "model.safetensors"):
        (folder / name).unlink()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
    return folder


def reviews(rows: int = 160) -> list[dict[str, str]]:
    rng = random.Random(0)
    out = []
    for i in range(rows):
        label = "good" if i % 2 else "bad"
        words = rng.sample(FILLER, 5) + [rng.choice(GOOD if label == "good" else BAD)]
        rng.shuffle(words)
        out.append({"text": " ".join(words) + f" #{i}", "label": label})
    return out


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A lake with ingest, curate and tokenize committed (every family folder here shares the tokenizer, so one
    tokens partition serves them all), and its config."""
    root = tmp_path_factory.mktemp("families")
    pl.DataFrame(reviews()).write_csv(root / "reviews.csv")
    base = build_family_model(root / "bert", "bert", [r["text"] for r in reviews()])
    data = {"data_root": str(root / "lake"), "run_date": "2026-01-01",
            "ingest": {"sources": [str(root / "reviews.csv")], "label_column": "label"},
            "curate": {"validation_fraction": 0.2, "test_fraction": 0.1, "near_dedup": False},
            "tokenize": {"max_length": 32},
            "train": {"base_model": str(base), "epochs": 1, "batch_size": 16, "learning_rate": 1e-3,
                      "eval_batch_size": 64}}
    cfg = build_config(data)
    run_ingest(cfg), run_curate(cfg), run_tokenize(cfg)
    return root, data


@pytest.mark.parametrize("family", ["bert", "distilbert", "modernbert", "roberta", "electra"])
def test_each_family_trains_through_the_train_stage_with_the_defaults(
        family: str, tokenized: tuple[Path, dict], tmp_path: Path) -> None:
    root, data = tokenized
    folder = build_family_model(tmp_path / family, family, [r["text"] for r in reviews()])
    lake = tmp_path / "lake"
    shutil.copytree(data["data_root"], lake)
    cfg = build_config({**data, "data_root": str(lake), "train": {**data["train"], "base_model": str(folder)}})
    assert (cfg.train.attention_dropout, cfg.train.hidden_dropout) == (0.0, 0.0)  # the defaults
    preflight(cfg, STAGES)  # accepted before any stage writes
    result = run_train(cfg)
    assert result["skipped"] is False and result["metrics"]["train"]["steps"] >= 6, result
    saved = json.loads((Path(result["model_uri"]) / "config.json").read_text())
    assert saved["model_type"] == family
    attention, hidden = KEYS[family]
    assert {k: saved[k] for k in attention + hidden} == dict.fromkeys(attention + hidden, 0.0)
    if family in ("bert", "roberta", "electra"):
        assert saved.get("classifier_dropout") is None  # the head follows hidden_dropout_prob (0.0)
    assert saved["id2label"] == {"0": "bad", "1": "good"}


def dropout_rates(model: torch.nn.Module) -> set[float]:
    """Every dropout probability the model applies: its nn.Dropout modules and the functional ones kept as numbers
    on attention modules (ModernBERT's attention_dropout)."""
    rates = {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)}
    rates |= {float(m.attention_dropout) for m in model.modules()
              if isinstance(getattr(m, "attention_dropout", None), float)}
    return rates


@pytest.mark.parametrize("family", sorted(KEYS))
def test_dropout_settings_land_in_the_family_keys_and_the_modules(family: str, tmp_path: Path) -> None:
    """attention 0.05, hidden 0.07: those values in exactly the family's keys, and no dropout left at the family's
    default anywhere in the model (DistilBERT's head 0.2, ALBERT's 0.1); then a few optimizer steps."""
    folder = build_family_model(tmp_path / family, family, [r["text"] for r in reviews(40)])
    cfg = build_config({"train": {"base_model": str(folder), "attention_dropout": 0.05, "hidden_dropout": 0.07}})
    model = new_classifier(str(folder), cfg.train, ["bad", "good"], torch.device("cpu"))
    attention, hidden = KEYS[family]
    assert {k: getattr(model.config, k) for k in attention + hidden} == (
        dict.fromkeys(attention, 0.05) | dict.fromkeys(hidden, 0.07))
    assert dropout_rates(model) == {0.05, 0.07}
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(5, model.config.vocab_size, (4, 12))
    first = None
    for _ in range(3):
        loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([0, 1, 0, 1])).loss
        loss.backward(), optimizer.step(), optimizer.zero_grad()
        first = first if first is not None else loss.item()
    assert torch.isfinite(loss) and first is not None


def test_empty_settings_keep_the_model_own_dropout(tmp_path: Path) -> None:
    folder = build_family_model(tmp_path / "distilbert", "distilbert", [r["text"] for r in reviews(40)])
    cfg = build_config({"train": {"base_model": str(folder), "attention_dropout": None, "hidden_dropout": 0.0}})
    model = new_classifier(str(folder), cfg.train, ["bad", "good"], torch.device("cpu"))
    assert (model.config.attention_dropout, model.config.dropout, model.config.seq_classif_dropout) == (0.1, 0.0, 0.0)


def test_keys_of_other_families_are_found_by_name() -> None:
    import transformers as tf

    assert dropout_keys(tf.FunnelConfig()) == (["attention_dropout"], ["hidden_dropout"])
    assert dropout_keys(tf.GPT2Config()) == (["attn_pdrop"], ["embd_pdrop", "resid_pdrop"])
    assert dropout_keys(tf.BartConfig()) == (["attention_dropout"], ["dropout", "classifier_dropout"])
    assert dropout_keys(tf.T5Config()) == ([], [])  # dropout_rate and a head's key alone: nothing to map


def test_a_family_without_known_keys_is_refused_before_any_stage_writes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = build_family_model(tmp_path / "t5", "t5", [r["text"] for r in reviews(40)])
    pl.DataFrame(reviews(20)).write_csv(tmp_path / "in.csv")
    data = {"data_root": str(tmp_path / "lake"), "run_date": "2026-01-01",
            "ingest": {"sources": [str(tmp_path / "in.csv")], "label_column": "label"},
            "train": {"base_model": str(folder)}}
    with pytest.raises(ConfigError) as refused:
        preflight(build_config(data), ["train"])
    message = str(refused.value)
    assert message.startswith("train.attention_dropout (0.0) and train.hidden_dropout (0.0): train.base_model")
    assert f"({folder}) is a 't5' model" in message
    assert "its dropout keys: classifier_dropout=0.0, dropout_rate=0.1" in message
    assert "set train.attention_dropout and train.hidden_dropout to empty (null)" in message
    (tmp_path / "run.yaml").write_text(json.dumps(data))
    assert cli.main(["run", "--config", str(tmp_path / "run.yaml")]) == 2
    assert "is a 't5' model" in capsys.readouterr().err
    assert not (tmp_path / "lake").exists()
    # emptied, the settings keep T5's own dropout and nothing is refused
    preflight(build_config(data, {"train.attention_dropout": None, "train.hidden_dropout": None}), ["train"])
