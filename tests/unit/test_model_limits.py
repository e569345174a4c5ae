"""Model limits checked before any write (max_length against max_position_embeddings), and special-token strings
typed by users encoded as text, with the real [CLS] ... [SEP] still around them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bert_pipeline.config import build_config
from bert_pipeline.errors import ConfigError
from bert_pipeline.modeling.models import default_model_dir, fast_encoder, load_tokenizer, max_positions, preflight
from bert_pipeline.text.encoding import encode_texts
from flows import cli

STAGES = ["ingest", "curate", "tokenize", "train", "score"]


@pytest.fixture(params=["minilm", "tiny"])
def tokenizer(request: pytest.FixtureRequest, tiny_model: Path):
    return load_tokenizer(default_model_dir() if request.param == "minilm" else str(tiny_model))


def ids(encoder, text: str) -> list[int]:
    return encoder.encode(text, add_special_tokens=False).ids


def test_special_tokens_typed_by_users_are_text(tokenizer) -> None:
    encoder = fast_encoder(tokenizer, 64)
    cls, sep, pad, mask = (tokenizer.convert_tokens_to_ids(t) for t in ("[CLS]", "[SEP]", "[PAD]", "[MASK]"))
    flat, offsets, _ = encode_texts(encoder, ["great [SEP] product [MASK]", "[CLS][PAD] ok"], batch_size=2)
    for row in range(2):
        got = flat[offsets[row]:offsets[row + 1]].tolist()
        assert got[0] == cls and got[-1] == sep  # the template's own, once each
        assert got.count(cls) == 1 and got.count(sep) == 1 and mask not in got and pad not in got
    assert ids(encoder, "[SEP]") == ids(encoder, "[") + ids(encoder, "sep") + ids(encoder, "]")
    assert ids(encoder, "[MASK]") == ids(encoder, "[") + ids(encoder, "mask") + ids(encoder, "]")
    first = flat[offsets[0]:offsets[1]].tolist()
    assert first == [cls, *ids(encoder, "great"), *ids(encoder, "[SEP]"), *ids(encoder, "product"),
                     *ids(encoder, "[MASK]"), sep]


def test_truncation_keeps_the_closing_sep(tokenizer) -> None:
    encoding = fast_encoder(tokenizer, 12).encode("word [SEP] " * 40)
    assert len(encoding.ids) == 12 and encoding.ids[-1] == tokenizer.convert_tokens_to_ids("[SEP]")


def config(tmp_path: Path, tiny_model: Path, **sections) -> dict:
    source = tmp_path / "in.csv"
    source.write_text("text,label\ngood one,pos\nbad one,neg\n")
    return {"data_root": str(tmp_path / "lake"), "run_date": "2026-01-01",
            "ingest": {"sources": [str(source)], "label_column": "label"},
            "train": {"base_model": str(tiny_model)}, **sections}


def test_preflight_refuses_a_max_length_the_model_cannot_take(tmp_path: Path, tiny_model: Path) -> None:
    assert max_positions(str(tiny_model)) == 512
    cfg = build_config(config(tmp_path, tiny_model, tokenize={"max_length": 1024}))
    for stages in (STAGES, ["tokenize"], ["train"], ["score"]):
        with pytest.raises(ConfigError) as failure:
            preflight(cfg, stages)
        assert "tokenize.max_length is 1024" in str(failure.value) and "at most 512 tokens" in str(failure.value)
    preflight(cfg, ["ingest", "curate"])  # neither loads a model
    preflight(build_config(config(tmp_path, tiny_model, tokenize={"max_length": 512})), STAGES)


def test_preflight_checks_the_scoring_length_against_the_scoring_model(tmp_path: Path, tiny_model: Path) -> None:
    cfg = build_config(config(tmp_path, tiny_model, score={"max_length": 600}))
    preflight(cfg, ["tokenize", "train"])  # 128 tokens: fine
    with pytest.raises(ConfigError, match=r"score.max_length is 600, but train.base_model \(the champion's base"):
        preflight(cfg, ["score"])
    scoring = build_config(config(tmp_path, tiny_model, score={"max_length": 600, "model": str(tiny_model)}))
    with pytest.raises(ConfigError, match="score.max_length is 600, but score.model .* at most 512 tokens"):
        preflight(scoring, ["score"])
    missing_base = build_config(config(tmp_path, tiny_model, train={"base_model": str(tmp_path / "gone")},
                                       score={"max_length": 600}))
    preflight(missing_base, ["score"])  # the champion scores without its base model: nothing to check against


def test_cli_refuses_before_any_stage_writes(tmp_path: Path, tiny_model: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps(config(tmp_path, tiny_model, tokenize={"max_length": 1024})))  # JSON is YAML
    assert cli.main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "tokenize.max_length is 1024" in err and "512" in err
    assert not (tmp_path / "lake").exists()


@pytest.mark.parametrize("model_config, limit", [
    ({"model_type": "bert", "max_position_embeddings": 512}, 512),
    ({"model_type": "roberta", "max_position_embeddings": 514, "pad_token_id": 1}, 512),
    ({"model_type": "deberta-v2", "max_position_embeddings": 512, "position_biased_input": False}, None),
    ({"model_type": "distilbert"}, None),
])
def test_max_positions(tmp_path: Path, model_config: dict, limit: int | None) -> None:
    (tmp_path / "config.json").write_text(json.dumps(model_config))
    assert max_positions(str(tmp_path)) == limit
