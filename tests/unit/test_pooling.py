"""Mean pooling (`bert_pipeline.modeling.pooling`) on tiny models built here: the masked mean ignores padding, the choice
survives save and load through `load_classifier` (and only through it), and `auto` follows the base model's own
sentence-transformers pooling for multi-label training only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from bert_pipeline.config import TrainConfig
from bert_pipeline.errors import ConfigError
from bert_pipeline.modeling.models import load_classifier
from bert_pipeline.modeling.pooling import MeanPooling, apply_pooling, base_pools_by_mean, choose_pooling
from bert_pipeline.stages.train import new_classifier
from tests.helpers import as_sentence_transformers, build_tiny_model

TEXTS = ["the parcel is late again", "refund my invoice please", "login fails with error 500", "merci beaucoup",
         "包裹还没到", "password reset link broken"] * 20


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny"), TEXTS, num_labels=3, vocab_size=200)


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Two rows: 5 real tokens, and 3 real tokens followed by 2 pads whose ids would change a plain mean."""
    ids = torch.tensor([[2, 10, 11, 12, 3], [2, 20, 3, 0, 0]])
    return ids, (ids != 0).long()


def test_mean_pooling_is_the_mean_of_the_real_tokens_only(base: Path) -> None:
    torch.manual_seed(0)
    model = apply_pooling(load_classifier(str(base)), "mean").eval()
    assert isinstance(model.bert.pooler, MeanPooling) and model.config.classifier_pooling == "mean"
    ids, mask = batch()
    with torch.no_grad():
        hidden = model.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        expected = model.classifier(torch.stack([hidden[0].mean(0), hidden[1, :3].mean(0)]))
        logits = model(input_ids=ids, attention_mask=mask).logits
        alone = model(input_ids=ids[1:, :3], attention_mask=mask[1:, :3]).logits  # the short row unpadded
    torch.testing.assert_close(logits, expected)
    torch.testing.assert_close(logits[1:], alone, rtol=1e-5, atol=1e-5)


def test_threads_sharing_one_mean_pooled_model_each_get_their_own_mask(base: Path) -> None:
    """A Dask worker scores several shards at once with one cached model: no batch may pool with another's mask."""
    from concurrent.futures import ThreadPoolExecutor

    model = apply_pooling(load_classifier(str(base)), "mean").eval()
    ids = torch.tensor([[2, 10, 11, 12, 3], [2, 20, 21, 22, 3]])
    masks = [torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 1]]), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]])]
    with torch.no_grad():
        expected = [model(input_ids=ids, attention_mask=m).logits for m in masks]

    def run(which: int) -> bool:
        with torch.no_grad():
            return all(torch.allclose(model(input_ids=ids, attention_mask=masks[which]).logits, expected[which],
                                      atol=1e-6) for _ in range(60))

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(run, [0, 1, 0, 1]))


def test_the_pooling_is_saved_and_restored_by_load_classifier_only(base: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    model = apply_pooling(load_classifier(str(base)), "mean").eval()
    model.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as weights:
        assert not any(name.startswith("bert.pooler") for name in weights.keys())  # nothing of the unused pooler
    ids, mask = batch()
    loaded = load_classifier(str(tmp_path)).eval()
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=mask).logits
        torch.testing.assert_close(loaded(input_ids=ids, attention_mask=mask).logits, want)
        # why the model card says to load it with load_classifier: plain HF reads [CLS] through a fresh pooler
        assert not torch.allclose(plain(input_ids=ids, attention_mask=mask).logits, want, atol=1e-3)
    assert loaded.config.classifier_pooling == "mean" and isinstance(loaded.bert.pooler, MeanPooling)


def test_only_the_load_report_about_the_left_out_pooler_is_silenced(base: Path, tmp_path: Path) -> None:
    import logging

    apply_pooling(load_classifier(str(base)), "mean").save_pretrained(tmp_path)
    logger, seen = logging.getLogger("transformers.modeling_utils"), []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    level = logger.level
    logger.addHandler(handler), logger.setLevel(logging.WARNING)
    try:
        load_classifier(str(tmp_path))
        assert not [m for m in seen if "LOAD REPORT" in m]  # the pooler is absent on purpose
        load_classifier(str(tmp_path), num_labels=5, ignore_mismatched_sizes=True)
        assert [m for m in seen if "LOAD REPORT" in m and "classifier.weight" in m]  # a real change still reported
    finally:
        logger.removeHandler(handler), logger.setLevel(level)


def test_auto_pools_by_mean_for_multi_label_on_a_mean_pooling_sentence_transformer(base: Path, tmp_path: Path) -> None:
    import shutil

    plain_bert = str(base)
    mean_st = str(as_sentence_transformers(Path(shutil.copytree(base, tmp_path / "mean"))))
    cls_st = str(as_sentence_transformers(Path(shutil.copytree(base, tmp_path / "cls")), "cls"))
    assert base_pools_by_mean(mean_st) and not base_pools_by_mean(cls_st) and not base_pools_by_mean(plain_bert)
    model = load_classifier(plain_bert)
    assert choose_pooling("auto", mean_st, True, model) == "mean"
    assert choose_pooling("auto", mean_st, False, model) == "cls"  # single-label keeps [CLS] until measured there
    assert choose_pooling("auto", cls_st, True, model) == "cls"
    assert choose_pooling("auto", plain_bert, True, model) == "cls"
    assert choose_pooling("mean", plain_bert, False, model) == "mean"
    labels = ["account", "billing", "shipping"]
    trained = new_classifier(mean_st, TrainConfig(), labels, torch.device("cpu"), multi_label=True)
    assert isinstance(trained.bert.pooler, MeanPooling) and trained.config.classifier_pooling == "mean"
    single = new_classifier(mean_st, TrainConfig(), labels, torch.device("cpu"), multi_label=False)
    assert not isinstance(single.bert.pooler, MeanPooling) and single.config.classifier_pooling == "cls"
    forced = new_classifier(plain_bert, TrainConfig(pooling="mean"), labels, torch.device("cpu"))
    assert isinstance(forced.bert.pooler, MeanPooling)

    # a base that is itself a mean-pooled classifier (a model of an earlier night) stays mean-pooled under auto, and
    # cannot be read through [CLS]: its folder has no pooler weights
    trained.save_pretrained(tmp_path / "trained")
    again = new_classifier(str(tmp_path / "trained"), TrainConfig(), labels, torch.device("cpu"), multi_label=False)
    assert isinstance(again.bert.pooler, MeanPooling) and again.config.classifier_pooling == "mean"
    with pytest.raises(ConfigError, match=r"train\.pooling is cls.*trained with mean pooling.*set train\.pooling to mean"):
        new_classifier(str(tmp_path / "trained"), TrainConfig(pooling="cls"), labels, torch.device("cpu"))


def test_mean_pooling_is_refused_for_a_head_that_reads_the_first_token_itself(tmp_path: Path) -> None:
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    config = DistilBertConfig(vocab_size=50, dim=16, n_layers=1, n_heads=2, hidden_dim=32, num_labels=2)
    DistilBertForSequenceClassification(config).save_pretrained(tmp_path)
    as_sentence_transformers(tmp_path)
    model = load_classifier(str(tmp_path))
    assert choose_pooling("auto", str(tmp_path), True, model) == "cls"  # auto falls back to the model's own head
    with pytest.raises(ConfigError, match=r"train\.pooling is mean.*distilbert.*set train\.pooling to cls or auto"):
        choose_pooling("mean", str(tmp_path), True, model)


@pytest.mark.parametrize("own", ["mean", "cls"])
def test_a_model_that_pools_by_its_own_config_keeps_its_choice_under_auto(own: str, tmp_path: Path) -> None:
    from transformers import ModernBertConfig, ModernBertForSequenceClassification

    config = ModernBertConfig(vocab_size=60, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                              num_attention_heads=2, classifier_pooling=own, num_labels=2, pad_token_id=0)
    ModernBertForSequenceClassification(config).save_pretrained(tmp_path)
    model = load_classifier(str(tmp_path))
    assert choose_pooling("auto", str(tmp_path), True, model) == own
    assert choose_pooling("auto", str(tmp_path), False, model) == own
    assert apply_pooling(model, "mean").config.classifier_pooling == "mean"  # its own head does the mean


def test_a_missing_task_head_is_one_line_and_a_damaged_encoder_keeps_transformers_report(
        base: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A base encoder saved without heads (as sentence-transformers ship MiniLM) loads as a classifier, a tagger and
    a masked-LM without transformers' MISSING/UNEXPECTED table or its "This checkpoint seem corrupted" about the
    absent tied head, on every night: one INFO line names what starts fresh. An encoder that lacks its own weights
    is still reported as transformers reports it."""
    import logging

    from safetensors.torch import load_file, save_file
    from transformers import AutoModel, AutoModelForMaskedLM

    from bert_pipeline.modeling.models import load_token_classifier, with_fresh_heads

    encoder = tmp_path / "encoder"
    AutoModel.from_pretrained(base).save_pretrained(encoder)  # the bare encoder: no classifier, no masked-LM head
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (encoder / name).write_bytes((base / name).read_bytes())
    logger, seen = logging.getLogger("transformers.modeling_utils"), []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    level = logger.level
    logger.addHandler(handler), logger.setLevel(logging.WARNING)  # the test session quiets transformers
    try:
        with caplog.at_level(logging.INFO, logger="bert_pipeline.modeling.models"):
            load_classifier(str(encoder), num_labels=3)
            load_token_classifier(str(encoder), num_labels=5)
            with_fresh_heads(str(encoder), lambda: AutoModelForMaskedLM.from_pretrained(
                encoder, use_safetensors=True, output_loading_info=True))
        assert not [m for m in seen if "LOAD REPORT" in m or "corrupted" in m], seen
        fresh = [r.getMessage() for r in caplog.records if "start fresh" in r.getMessage()]
        assert fresh == [
            f"{encoder}: 2 tensors of the BertForSequenceClassification head start fresh (classifier.bias, "
            "classifier.weight)",
            f"{encoder}: 2 tensors of the BertForTokenClassification head start fresh (classifier.bias, "
            "classifier.weight)",
            f"{encoder}: 6 tensors of the BertForMaskedLM head start fresh (cls.predictions.bias, "
            "cls.predictions.decoder.bias, cls.predictions.transform.LayerNorm.bias, "
            "cls.predictions.transform.LayerNorm.weight, cls.predictions.transform.dense.bias, "
            "cls.predictions.transform.dense.weight)"], fresh
        # an encoder layer lost from the file: transformers' own report is passed on
        weights = load_file(str(encoder / "model.safetensors"))
        save_file({k: v for k, v in weights.items() if ".layer.0.attention.self.query." not in k},
                  str(encoder / "model.safetensors"), metadata={"format": "pt"})
        load_classifier(str(encoder), num_labels=3)
        assert [m for m in seen if "LOAD REPORT" in m and "attention.self.query" in m], seen
    finally:
        logger.removeHandler(handler), logger.setLevel(level)
