"""Domain-adaptive pretraining (bert_pipeline/training/adapt.py) on a tiny BERT: it learns, is reused, resumes exactly after a
kill, keeps to its time budget, grows the embeddings for added tokens, and loads as a sequence classifier."""

from __future__ import annotations

import hashlib
import os
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from bert_pipeline.lake import storage
from bert_pipeline.training.adapt import MANIFEST, AdaptationPlan, adapt
from bert_pipeline.modeling.models import load_tokenizer
from tests.helpers import build_tiny_model

ENGLISH = ("the battery dies fast", "delivery was late again", "great price and quality",
           "screen cracked on day two", "customer service never answered", "would buy again",
           "refund took three weeks", "works as described")
CHINESE = ("这个产品很好", "物流太慢了", "质量很差", "客服态度不错", "包装破损", "性价比很高", "用了两天就坏了", "非常满意")
EMOJI = ("😡", "👍", "🙂", "💯", "🤔", "🔥", "")


def messy_texts(rows: int, seed: int = 0) -> list[str]:
    """Reviews mixing Chinese and English, emoji, shouting, URLs, stray whitespace, some empty."""
    rng = random.Random(seed)
    out = []
    for i in range(rows):
        parts = [rng.choice(CHINESE), rng.choice(ENGLISH), rng.choice(EMOJI)]
        rng.shuffle(parts)
        text = " ".join(parts) + rng.choice(["!!", "...", "。", "？", ""])
        if i % 9 == 0:
            text = text.upper() + " see https://shop.example.com/item?id=" + str(rng.randint(1, 999))
        if i % 13 == 0:
            text = "  \n" + text + "\t"
        out.append(text)
    return out + ["", "   ", "\n"]


TEXTS = messy_texts(240)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Any:
    """Tiny matrices on a shared 2-core machine: a second thread only waits (35 s instead of 1 s for 20 steps)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("adapt-base"), TEXTS, vocab_size=300)


def tokenizer_of(folder: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def make_plan(base: Path, root: Path, **kwargs: Any) -> AdaptationPlan:
    settings: dict[str, Any] = {"max_steps": 60, "max_minutes": 10.0, "batch_size": 16, "max_length": 48,
                                "learning_rate": 2e-3, "seed": 3, "checkpoint_every_steps": 10, "precision": "fp32"}
    settings.update(kwargs)
    return AdaptationPlan(base_dir=str(base), tokenizer=settings.pop("tokenizer", None) or tokenizer_of(base),
                          key=settings.pop("key", "k1"), out_url=str(root / "adapted"), work_url=str(root / "work"),
                          **settings)


def weights(folder: str) -> dict[str, torch.Tensor]:
    return load_file(os.path.join(folder, "model.safetensors"))


def test_adaptation_lowers_heldout_loss_and_loads_as_a_classifier(base: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    plan = make_plan(base, tmp_path, max_steps=120, max_passes=20, learning_rate=5e-3)
    calls: list[tuple[str, float]] = []
    manifest = adapt(plan, TEXTS, "cpu", progress=lambda message, fraction: calls.append((message, fraction)))

    assert manifest["stopped_by"] == "steps" and manifest["steps"] == 120 and manifest["resumed_from_step"] == 0
    assert manifest["texts"] + manifest["heldout_texts"] == 240 and manifest["heldout_texts"] == 12  # 3 empty dropped
    assert manifest["heldout_loss_after"] < manifest["heldout_loss_before"] - 1.0, manifest  # a real drop, in nats
    assert manifest["mlm_loss_last"] < manifest["mlm_loss_first"] - 1.0, manifest
    assert manifest["mlm_head"] == "fresh" and manifest["pooler_from_base"] and manifest["tokens_seen"] > 120 * 16 * 5
    assert storage.read_json(os.path.join(plan.out_url, MANIFEST)) == manifest
    assert not os.path.exists(plan.work_url)  # checkpoints cleared once committed
    assert 18 <= len(calls) <= 22 and calls[0][0] == "adapting to the lake's text: step 6/120"
    assert [f for _, f in calls] == sorted(f for _, f in calls) and calls[-1][1] == 1.0

    # the train stage loads the adapted folder as a classifier: adapted encoder, base pooler, fresh 3-label head
    adapted, original = weights(plan.out_url), weights(str(base))
    model, info = AutoModelForSequenceClassification.from_pretrained(plan.out_url, num_labels=3,
                                                                     output_loading_info=True)
    assert set(info["missing_keys"]) == {"classifier.weight", "classifier.bias"}
    embeddings = model.bert.embeddings.word_embeddings.weight
    assert torch.equal(embeddings, adapted["bert.embeddings.word_embeddings.weight"])
    assert not torch.allclose(embeddings, original["bert.embeddings.word_embeddings.weight"])
    assert torch.equal(model.bert.pooler.dense.weight, original["bert.pooler.dense.weight"])
    assert model.classifier.weight.shape == (3, 32)
    assert tokenizer_of(Path(plan.out_url)).get_vocab() == plan.tokenizer.get_vocab()


def test_same_key_is_reused_and_another_key_adapts_again(base: Path, tmp_path: Path) -> None:
    plan = make_plan(base, tmp_path, max_steps=20)
    first = adapt(plan, TEXTS, "cpu")
    path = os.path.join(plan.out_url, "model.safetensors")
    stamp, digest = os.stat(path).st_mtime_ns, hashlib.sha256(Path(path).read_bytes()).hexdigest()

    calls: list[tuple[str, float]] = []
    again = adapt(replace(plan, max_steps=500), TEXTS[:50], "cpu", progress=lambda m, f: calls.append((m, f)))
    assert again == first | {"reused": True}  # the same key: nothing run, whatever the texts or settings now
    assert "reused" not in first
    from bert_pipeline.stages.report import adaptation_line

    line = adaptation_line({"reason": "auto", "folder": plan.out_url, **again})
    assert line.startswith(f"Domain adaptation (auto): reused the model adapted on {first['committed_at'][:10]} "
                           f"for the same base model, tokenizer and settings ({first['steps']} masked-LM steps")
    assert "tonight adapted nothing and read none of tonight's texts for it" in line
    assert "reused the model" not in adaptation_line({"reason": "auto", "folder": plan.out_url, **first})
    assert calls == [(f"adapting to the lake's text: reused {plan.out_url}", 1.0)]
    assert os.stat(path).st_mtime_ns == stamp and not os.path.exists(plan.work_url)

    other = adapt(replace(plan, key="k2", max_steps=10), TEXTS, "cpu")
    assert other["key"] == "k2" and other["steps"] == 10
    assert hashlib.sha256(Path(path).read_bytes()).hexdigest() != digest
    assert storage.read_json(os.path.join(plan.out_url, MANIFEST))["key"] == "k2"


class Killed(Exception):
    pass


def test_a_killed_run_resumes_to_the_same_weights(base: Path, tmp_path: Path) -> None:
    whole = adapt(make_plan(base, tmp_path / "whole", max_steps=40), TEXTS, "cpu")

    plan = make_plan(base, tmp_path / "killed", max_steps=40)  # progress every 2 steps, checkpoints every 10

    def kill_at_24(message: str, fraction: float) -> None:
        if message.endswith("step 24/40"):
            raise Killed  # a kill after the checkpoint of step 20: steps 21-24 are lost
    with pytest.raises(Killed):
        adapt(plan, TEXTS, "cpu", progress=kill_at_24)
    assert storage.read_json(os.path.join(plan.work_url, "progress.json"))["step"] == 20
    assert storage.read_json(os.path.join(plan.out_url, MANIFEST)) is None

    resumed = adapt(plan, TEXTS, "cpu")
    assert resumed["resumed_from_step"] == 20 and resumed["steps"] == whole["steps"] == 40
    assert resumed["tokens_seen"] == whole["tokens_seen"]
    assert resumed["heldout_loss_before"] == whole["heldout_loss_before"]
    assert resumed["heldout_loss_after"] == pytest.approx(whole["heldout_loss_after"], abs=1e-5)
    a, b = weights(str(tmp_path / "whole" / "adapted")), weights(plan.out_url)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=0, msg=name)


def test_minutes_budget_stops_early(base: Path, tmp_path: Path) -> None:
    plan = make_plan(base, tmp_path, max_steps=100_000, max_passes=10_000, max_minutes=0.03)
    manifest = adapt(plan, TEXTS, "cpu")
    assert manifest["stopped_by"] == "minutes"
    assert 0 < manifest["steps"] < plan.max_steps and manifest["seconds"] >= 1.8


def test_data_cap_stops_after_max_passes_and_urls_work(base: Path, tmp_path: Path) -> None:
    plan = replace(make_plan(base, tmp_path, max_steps=1000, max_passes=1, batch_size=64, checkpoint_every_steps=2),
                   out_url="memory://adapt-test/adapted", work_url="memory://adapt-test/work")
    manifest = adapt(plan, TEXTS, "cpu")
    assert manifest["stopped_by"] == "data" and manifest["steps"] == 4  # ceil(228 / 64)
    assert storage.read_json(storage.join(plan.out_url, MANIFEST)) == manifest
    assert storage.exists(storage.join(plan.out_url, "model.safetensors"))
    assert storage.exists(storage.join(plan.out_url, "tokenizer.json")) and not storage.exists(plan.work_url)
    storage.remove(["memory://adapt-test"])


def test_added_tokens_grow_the_embeddings(tmp_path: Path) -> None:
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

    without = [t.replace("的", "").replace("很", "") for t in TEXTS]
    folder = build_tiny_model(tmp_path / "base", without, vocab_size=300)
    tokenizer = tokenizer_of(folder)
    before = len(tokenizer)
    assert tokenizer.add_tokens(["的", "很"]) == 2 and len(tokenizer) == before + 2
    grown: list[int] = []

    def grow(model: Any, tok: Any) -> None:
        model.resize_token_embeddings(len(tok), mean_resizing=True)
        grown.append(len(tok))

    texts = [t + " 的很" for t in TEXTS[:60]]
    plan = make_plan(folder, tmp_path, max_steps=8, tokenizer=tokenizer)
    manifest = adapt(plan, texts, "cpu", grow_embeddings=grow)
    assert grown == [before + 2] and manifest["embedding_rows_added"] == 2 and manifest["vocab_size"] == before + 2
    assert weights(plan.out_url)["bert.embeddings.word_embeddings.weight"].shape == (before + 2, 32)
    assert len(tokenizer_of(Path(plan.out_url))) == before + 2
    assert AutoModelForMaskedLM.from_pretrained(plan.out_url).config.vocab_size == before + 2
    classifier = AutoModelForSequenceClassification.from_pretrained(plan.out_url, num_labels=2)
    assert classifier.get_input_embeddings().weight.shape == (before + 2, 32)

    default = adapt(replace(plan, key="default", out_url=str(tmp_path / "default")), texts, "cpu")  # no callback
    assert default["embedding_rows_added"] == 2
    assert weights(str(tmp_path / "default"))["bert.embeddings.word_embeddings.weight"].shape == (before + 2, 32)


def test_the_loss_over_masked_positions_only_equals_the_models_own(tmp_path: Path) -> None:
    """masked_lm_loss runs the head on the masked positions alone; the loss is the one the model computes itself."""
    from transformers import AutoModelForMaskedLM, DataCollatorForLanguageModeling

    from bert_pipeline.training.adapt import masked_lm_loss

    folder = build_tiny_model(tmp_path / "tiny", TEXTS)
    model = AutoModelForMaskedLM.from_pretrained(folder).eval()
    tokenizer = load_tokenizer(str(folder))
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.3, seed=3)
    batch = collator([{"input_ids": tokenizer(t)["input_ids"]} for t in TEXTS[:8]])
    batch = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
    assert int((batch["labels"] != -100).sum()) > 5
    with torch.no_grad():
        assert torch.allclose(masked_lm_loss(model, batch), model(**batch).loss, atol=1e-5)
