"""Vocabulary extension (issue 21, item 3a): the night's unknown characters and words become tokens, the embedding
matrix grows, the extended tokenizer lives in the lake and goes with the model, and token shards of different
tokenizers are never mixed.

Inputs are made here: the 298 hand-written Chinese reviews of tests/data/coverage, mixed with Russian, emoji, a
user's literal "[SEP]", split over two nights; a tiny BERT whose WordPiece vocabulary was built from English tweets
(so it reads almost no Chinese, as the packaged MiniLM does not)."""

from __future__ import annotations

import math

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.compute as pc
import pytest
import torch

from bert_pipeline.text import coverage as cov
from bert_pipeline.text import vocabulary
from bert_pipeline.config import EXTENDED_EMBEDDING_LR, build_config
from bert_pipeline.stages.curate import run_curate
from bert_pipeline.stages.ingest import run_ingest
from bert_pipeline.lake.manifests import Lake
from bert_pipeline.modeling.models import fast_encoder, load_tokenizer, resolve_model_dir, tokenizer_hash
from bert_pipeline.stages.report import coverage_section, write_report
from bert_pipeline.stages.score import run_score
from bert_pipeline.stages.tokenize import read_arrow, run_tokenize
from bert_pipeline.stages.train import run_train
from tests.helpers import build_tiny_model, demo_frame
from tests.unit.test_coverage import byte_level_tokenizer, tiny_wordpiece, zh_reviews

NIGHTS = ("2026-12-01", "2026-12-02")
SEP_TEXT = "质量很好 [SEP] 物流也快"  # a user's literal [SEP]: must stay text, never end the sequence


def counted(tokenizer: object, texts: list[str]) -> cov.CoverageCounter:
    counter = cov.CoverageCounter(fast_encoder(tokenizer, 128))
    cov.measure(counter.encoder, texts, counter=counter)
    return counter


def test_characters_and_whole_words_above_the_minimum_count_are_added() -> None:
    tok = tiny_wordpiece()  # knows hello, world, their letters, 好, 评, !, [, ], unk, sep
    texts = ["hello 很好 xyz", "很 xyz world", "很很 XYZ", "hello 差 😀", "😀 😀 [SEP]", "qq"]
    additions = vocabulary.choose_additions(counted(tok, texts), min_count=3, max_new=100)
    got = {(a.text, a.count, a.word) for a in additions}
    # 很 x4; x, y, z x3 each (xyz, xyz, XYZ: lowercased alike); the word xyz x3; 😀 x3; 差 and q too rare
    assert got == {("很", 4, False), ("x", 3, False), ("y", 3, False), ("z", 3, False), ("xyz", 3, True),
                   ("😀", 3, False)}
    assert [a.text for a in additions][0] == "很"  # most frequent first
    assert vocabulary.choose_additions(counted(tok, texts), min_count=3, max_new=2) == additions[:2]


def test_an_extended_tokenizer_reads_them_and_keeps_special_strings_as_text() -> None:
    tok = tiny_wordpiece()
    texts = ["hello 很好 xyz", "很 xyz world", "很很 XYZ", "😀 😀 😀 [SEP]"]
    additions = vocabulary.choose_additions(counted(tok, texts), min_count=3, max_new=100)
    before = len(tok)
    assert vocabulary.extend(tok, additions) == len(additions)
    assert len(tok) == before + len(additions)
    assert vocabulary.added_texts(tok) == [a.text for a in additions]
    encoder = fast_encoder(tok, 64)
    encoding = encoder.encode("Hello 很 XYZ 😀 [SEP] xyzzy")
    assert encoding.tokens[0] == "[CLS]" and encoding.tokens[-1] == "[SEP]"
    middle = encoding.ids[1:-1]
    assert tok.convert_tokens_to_ids("很") in middle and tok.convert_tokens_to_ids("xyz") in middle
    assert tok.convert_tokens_to_ids("😀") in middle and tok.sep_token_id not in middle  # "[", "sep", "]"
    assert tok.convert_tokens_to_ids("xyz") not in encoder.encode("xyzzy").ids  # a whole word only
    assert cov.measure(encoder, texts)["unknown_token_share"] == 0.0


def test_a_byte_level_tokenizer_gets_nothing_added() -> None:
    tok = byte_level_tokenizer(["hello world"])
    assert vocabulary.choose_additions(counted(tok, zh_reviews()[:20] + ["😀 😀 😀"]), 1, 100) == []


def test_the_embedding_matrix_learns_at_its_own_rate_and_only_there() -> None:
    from transformers import BertConfig, BertForMaskedLM

    from bert_pipeline.training.optimization import make_optimizer

    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=32, max_position_embeddings=16))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = make_optimizer(model, 1e-4, 0.0, embedding_learning_rate=1e-2)
    embeddings = model.get_input_embeddings().weight
    # the tied output layer is the same tensor: it is in the embeddings' group once, not also in the body's
    assert [len(g["params"]) for g in optimizer.param_groups][-1] == 1
    assert sum(any(p is embeddings for p in g["params"]) for g in optimizer.param_groups) == 1
    ids = torch.tensor([[1, 5, 7, 9, 2]])
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    # Adam's first step moves each weight with a gradient by about its group's rate
    moved = (embeddings.detach() - before["bert.embeddings.word_embeddings.weight"]).abs()
    assert 0.5e-2 < moved[5].max() <= 1.01e-2
    body = (model.bert.encoder.layer[0].attention.self.query.weight.detach()
            - before["bert.encoder.layer.0.attention.self.query.weight"]).abs()
    assert 0.5e-4 < body.max() <= 1.01e-4
    # without the setting: two groups, every weight at the one rate
    assert len(make_optimizer(model, 1e-4, 0.0).param_groups) == 2


def test_new_embedding_rows_start_from_the_pieces_they_were_spelt_with(tmp_path: Path) -> None:
    from transformers import BertForSequenceClassification

    folder = build_tiny_model(tmp_path / "tiny", demo_frame()["text"].head(400).to_list())
    base = load_tokenizer(str(folder))
    model = BertForSequenceClassification.from_pretrained(folder)
    old = model.get_input_embeddings().weight.detach().clone()
    extended = load_tokenizer(str(folder))
    vocabulary.extend(extended, [vocabulary.Addition("很", 9, False), vocabulary.Addition("thanksgivingly", 5, True)])
    assert vocabulary.grow_embeddings(model, extended, base) == 2
    weight = model.get_input_embeddings().weight.detach()
    assert weight.shape == (len(extended), old.shape[1]) and model.config.vocab_size == len(extended)
    assert torch.equal(weight[:len(old)], old)  # the base rows never move
    pieces = base("thanksgivingly", add_special_tokens=False)["input_ids"]
    assert base.unk_token_id not in pieces
    assert torch.allclose(weight[extended.convert_tokens_to_ids("thanksgivingly")], old[pieces].mean(dim=0))
    han = weight[extended.convert_tokens_to_ids("很")]  # unspellable: HF mean_resizing, near the old rows' mean
    assert torch.isfinite(han).all() and not torch.allclose(han, old[base.unk_token_id])
    assert vocabulary.grow_embeddings(model, extended, base) == 0


# --- the stages over two nights ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_nights(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two nights of Chinese reviews (labels pos/neg alternate) with Russian and emoji rows, ingested, curated and
    tokenized with a tiny BERT whose vocabulary was built from English tweets; night 2 holds characters night 1
    never had. Returns the config dict of night 2."""
    root = tmp_path_factory.mktemp("vocab")
    model = build_tiny_model(root / "tiny-en", demo_frame()["text"].head(2000).to_list())
    reviews = zh_reviews()
    extra = ["Привет, доставка быстрая 😀"] * 4 + [SEP_TEXT] * 3
    nights = {NIGHTS[0]: reviews[:150] + extra, NIGHTS[1]: reviews[150:] + ["龘龘龘 鱻鱻鱻 饕餮饕餮饕餮"] * 3}
    data: dict = {}
    for run_date, rows in nights.items():
        path = root / f"{run_date}.csv"
        pl.DataFrame({"text": rows, "label": ["pos" if i % 2 else "neg" for i in range(len(rows))]}).write_csv(path)
        data = {"data_root": str(root / "lake"), "run_date": run_date,
                "ingest": {"sources": [str(path)], "label_column": "label"}, "curate": {"near_dedup": False},
                "tokenize": {"max_length": 64},
                "train": {"base_model": str(model), "epochs": 1, "min_steps": 1, "batch_size": 16,
                          "linear_baseline": False, "calibrate": False, "adaptation_max_passes": 2}}
        cfg = build_config(data)
        run_ingest(cfg), run_curate(cfg)
        data["summary"] = run_tokenize(cfg)
    return data


def test_a_poorly_covered_night_extends_the_vocabulary_and_records_it(two_nights: dict) -> None:
    lake = Lake(two_nights["data_root"])
    first = lake.read_manifest("tokens", NIGHTS[0])
    words = first["vocabulary"]
    assert words["extend_vocabulary"] == "auto" and words["extended"]
    # characters seen fewer than tokenize.vocabulary_min_count (3) times in 157 texts stay unknown
    assert words["unknown_token_share_before"] > 0.55 and words["unknown_token_share_after"] < 0.3
    assert first["coverage"]["unknown_token_share"] == words["unknown_token_share_after"]
    assert words["added_tonight"]["by_script"]["Han"] > 100 and words["added_total"] == words["added_tonight"]["added"]
    assert ["很", 235] not in words["added_tonight"]["top"]  # 235 is over all 298 reviews; night 1 has 150
    folder = first["tokenizer"]["folder"]
    tokenizer = vocabulary.load_extension(folder, first["tokenizer"]["hash"])
    assert tokenizer_hash(tokenizer) == first["tokenizer"]["hash"] != first["tokenizer"]["base_hash"]
    assert first["tokenizer"]["vocab_size"] == len(tokenizer)
    # the user's literal [SEP] stays three text tokens in its shard row; only the post-processor's [SEP] ends it
    shard = read_arrow(lake.shard_urls("tokens", NIGHTS[0], first)[0])
    curated = pl.from_arrow(lake.dataset("curated", {NIGHTS[0]: lake.read_manifest("curated", NIGHTS[0])}).to_table())
    sep_doc = curated.filter(pl.col("text") == SEP_TEXT)["doc_id"][0]
    ids = shard.filter(pc.equal(shard["doc_id"], sep_doc))["input_ids"][0].as_py()
    assert ids.count(tokenizer.sep_token_id) == 1 and ids[-1] == tokenizer.sep_token_id
    assert tokenizer.convert_tokens_to_ids("质") in ids


def test_the_next_night_grows_the_same_extension_and_never_reuses_other_shards(two_nights: dict) -> None:
    lake = Lake(two_nights["data_root"])
    first, second = (lake.read_manifest("tokens", night) for night in NIGHTS)
    one = vocabulary.load_extension(first["tokenizer"]["folder"], first["tokenizer"]["hash"])
    two = vocabulary.load_extension(second["tokenizer"]["folder"], second["tokenizer"]["hash"])
    added_one, added_two = vocabulary.added_texts(one), vocabulary.added_texts(two)
    assert added_two[:len(added_one)] == added_one and len(added_two) > len(added_one)  # append-only: ids stay
    assert {"龘", "鱻", "饕", "餮"} <= set(added_two) - set(added_one)
    assert second["vocabulary"]["added_total"] == len(added_two)
    assert vocabulary.current_extension(lake.root, first["tokenizer"]["base_hash"])["hash"] == second["tokenizer"]["hash"]
    # a rerun of night 1 is a skip: its committed shards stand (train re-encodes them with night 2's tokenizer)
    night_one = {k: v for k, v in two_nights.items() if k != "summary"} | {"run_date": NIGHTS[0]}
    again = run_tokenize(build_config(night_one))
    assert again["skipped"]


def test_the_model_grows_its_embeddings_carries_the_tokenizer_and_rescores_older_nights(two_nights: dict) -> None:
    data = {k: v for k, v in two_nights.items() if k != "summary"}
    cfg = build_config(data)
    summary = run_train(cfg)
    lake = Lake.of(cfg)
    tokens = lake.read_manifest("tokens", NIGHTS[1])
    manifest = storage_manifest(summary["model_uri"])
    assert manifest["tokenizer_hash"] == tokens["tokenizer"]["hash"]
    # domain adaptation ran first (auto: the vocabulary was extended), on the lake's text, and lowered the held-out
    # masked-LM loss; the fine-tuned model started from the adapted folder
    adaptation = summary["metrics"]["adaptation"]
    # auto: the extended embedding matrix learns at its own, higher rate, in adaptation (in its key) and fine-tuning
    assert summary["metrics"]["train"]["embedding_learning_rate"] == EXTENDED_EMBEDDING_LR
    assert adaptation["reason"] == "auto: tonight's tokenizer is the lake's extended vocabulary"
    # train.adaptation_max_passes: 2 passes over the texts in batches of 16, then it stopped for want of data
    assert adaptation["stopped_by"] == "data" and adaptation["steps"] == 2 * math.ceil(adaptation["texts"] / 16)
    assert adaptation["heldout_loss_after"] < adaptation["heldout_loss_before"]
    assert adaptation["embedding_rows_added"] == len(vocabulary.added_texts(load_tokenizer(adaptation["folder"])))
    assert storage_manifest(adaptation["folder"])["key"] == adaptation["key"]
    model_dir = resolve_model_dir(summary["model_uri"])
    saved = load_tokenizer(model_dir)
    assert tokenizer_hash(saved) == tokens["tokenizer"]["hash"]
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(model_dir).vocab_size == len(saved) == tokens["tokenizer"]["vocab_size"]
    # the model scores night 1 (tokenized with the older extension) through its own tokenizer
    run_score(build_config(data | {"run_date": NIGHTS[0], "score": {"model": summary["model_uri"]}}))
    predictions = pl.from_arrow(lake.dataset("predictions", {NIGHTS[0]: lake.read_manifest("predictions", NIGHTS[0])})
                                .to_table())
    assert predictions.height == lake.read_manifest("tokens", NIGHTS[0])["counts"]["rows"]
    assert set(predictions["model_version"]) == {summary["model_version"]}
    # the report says what the extension and the adaptation did
    report = Path(write_report(cfg)["report"]).read_text(encoding="utf-8")
    words = tokens["vocabulary"]
    assert (f"The night was read with the lake's extended vocabulary (`tokenize.extend_vocabulary`: auto): the "
            f"unknown token share went from {words['unknown_token_share_before']:.2%} (the tokenizer it started "
            f"from) to {words['unknown_token_share_after']:.2%}; {words['added_tonight']['added']:,} tokens added "
            "tonight (Han ") in report
    assert f"{words['added_total']:,} added to the base tokenizer in all" in report
    assert (f"Domain adaptation (auto: tonight's tokenizer is the lake's extended vocabulary): {adaptation['steps']} "
            f"masked-LM steps over {adaptation['texts']:,} of the lake's texts") in report
    first = Lake.of(cfg).read_manifest("tokens", NIGHTS[0])["vocabulary"]
    assert (f"the unknown token share went from {first['unknown_token_share_before']:.2%}"
            in coverage_section(Lake.of(cfg).read_manifest("tokens", NIGHTS[0]), 0.05))


def storage_manifest(model_uri: str) -> dict:
    from bert_pipeline.lake import storage

    return storage.read_json(storage.join(model_uri, "_manifest.json"))


def test_off_keeps_the_base_tokenizer(tmp_path: Path) -> None:
    rows = zh_reviews()[:60]
    path = tmp_path / "zh.csv"
    pl.DataFrame({"text": rows}).write_csv(path)
    cfg = build_config({"data_root": str(tmp_path / "lake"), "run_date": NIGHTS[0], "ingest": {"sources": [str(path)]},
                        "tokenize": {"extend_vocabulary": "off"}})
    run_ingest(cfg), run_curate(cfg)
    summary = run_tokenize(cfg)
    manifest = Lake.of(cfg).read_manifest("tokens", NIGHTS[0])
    assert manifest["tokenizer"]["folder"] is None and manifest["tokenizer"]["hash"] == manifest["tokenizer"]["base_hash"]
    assert not manifest["vocabulary"]["extended"] and "vocabulary" not in summary
    assert manifest["coverage"]["unknown_token_share"] > 0.6
    assert not (tmp_path / "lake" / "tokenizers").exists()
    assert np.isclose(manifest["coverage"]["unknown_token_share"], summary["coverage"]["unknown_token_share"])


def test_auto_judges_the_whole_night_not_its_first_shard_and_on_redoes_a_committed_night(tmp_path: Path) -> None:
    """An English file listed before a Chinese one: the sample that decides `auto` is spread over every curated
    shard. A night committed without an extension is made again under `on`, not skipped."""
    english = tmp_path / "a-english.csv"
    demo_frame().select("text").head(300).write_csv(english)
    chinese = tmp_path / "b-chinese.csv"
    pl.DataFrame({"text": zh_reviews()[:120]}).write_csv(chinese)
    base = {"data_root": str(tmp_path / "lake"), "run_date": NIGHTS[0],
            "ingest": {"sources": [str(english), str(chinese)], "shard_rows": 100}}
    cfg = build_config(base)
    run_ingest(cfg), run_curate(cfg)
    assert len(Lake.of(cfg).read_manifest("curated", NIGHTS[0])["outputs"]) >= 3  # English fills the first shards
    summary = run_tokenize(cfg)
    words = Lake.of(cfg).read_manifest("tokens", NIGHTS[0])["vocabulary"]
    assert words["extended"] and words["added_tonight"]["by_script"]["Han"] > 100
    assert words["coverage_before"]["by_script"]["Han"]["hidden_char_share"] > 0.5  # what the base tokenizer hid
    assert summary["coverage"]["unknown_token_share"] < words["unknown_token_share_before"]

    off = build_config(base, {"data_root": str(tmp_path / "lake-off"), "tokenize.extend_vocabulary": "off"})
    run_ingest(off), run_curate(off)
    assert not run_tokenize(off)["skipped"]
    assert run_tokenize(build_config(off.model_dump(mode="json"), {"tokenize.extend_vocabulary": "auto"}))["skipped"]
    again = run_tokenize(build_config(off.model_dump(mode="json"), {"tokenize.extend_vocabulary": "on"}))
    assert not again["skipped"] and Lake.of(off).read_manifest("tokens", NIGHTS[0])["vocabulary"]["extended"]


def test_a_night_of_nothing_but_emoji_is_kept_and_its_emoji_become_tokens(tmp_path: Path) -> None:
    """Emoji-only reviews pass curate (emoji are content) and the packaged MiniLM, which reads each as [UNK], gets
    them added: the night's shards then hold no unknown token, and a skin tone stays apart from its hand."""
    import random

    rng = random.Random(0)
    moods = {"pos": ["😂", "😍", "🥰", "👍", "🎉", "❤️", "😊", "👍🏽", "🙌", "✨"],
             "neg": ["😡", "😭", "👎", "💔", "😤", "🤮", "😞", "😢", "🙄", "👎🏿"]}
    labels = ["pos" if i % 2 else "neg" for i in range(240)]
    texts = ["".join(rng.choice(moods[label]) for _ in range(rng.randint(3, 6))) for label in labels]
    path = tmp_path / "emoji.csv"
    pl.DataFrame({"text": texts, "label": labels}).write_csv(path)
    cfg = build_config({"data_root": str(tmp_path / "lake"), "run_date": NIGHTS[0],
                        "ingest": {"sources": [str(path)], "label_column": "label"}})
    run_ingest(cfg)
    curated = run_curate(cfg)
    assert curated["curated_rows"] + curated["rejected_rows"] == 240 and curated["curated_rows"] >= 230
    run_tokenize(cfg)
    manifest = Lake.of(cfg).read_manifest("tokens", NIGHTS[0])
    words = manifest["vocabulary"]
    assert words["coverage_before"]["hidden_char_share"] > 0.9 and words["extended"]
    tokenizer = vocabulary.load_extension(manifest["tokenizer"]["folder"], manifest["tokenizer"]["hash"])
    assert {"😡", "👍", "🏽", "🏿"} <= set(vocabulary.added_texts(tokenizer))
    assert manifest["coverage"]["unknown_token_share"] == 0.0
    assert tokenizer.tokenize("👍🏽😡") == ["👍", "🏽", "😡"]


def test_a_han_addition_is_held_as_written_so_that_hf_token_classification_reads_its_words_as_ours() -> None:
    """The packaged MiniLM's normaliser writes 如 as ' 如 ' (spaces around CJK characters). An addition held that way
    made Hugging Face's token-classification pipeline take every added Chinese character for a subword (its token
    is 3 characters long, its text 1) and merge a sentence into one word under aggregation_strategy="first". Han
    additions are now held as written and tokenize exactly as a normalised addition does; kana, whose other
    spellings an uncased normaliser folds into them (が into か), stay normalised."""
    from tokenizers import AddedToken
    from transformers import BertConfig, BertForTokenClassification, pipeline
    from transformers.pipelines.token_classification import AggregationStrategy

    chars = ["如", "果", "鱻", "很", "好", "😡", "ゑ"]
    held, normalised = (load_tokenizer(resolve_model_dir("")) for _ in range(2))
    vocabulary.extend(held, [vocabulary.Addition(c, 5, False) for c in chars])
    normalised.add_tokens([AddedToken(c, normalized=True, special=False) for c in chars])
    assert vocabulary.written_one_way("如") and not vocabulary.written_one_way("ゑ")
    assert not vocabulary.written_one_way("\uf900") and not vocabulary.written_one_way("如果")  # compatibility form
    assert not vocabulary.written_one_way("\u8c48")  # 豈, which BERT's NFD makes of U+F900: it must still match it
    texts = ["如果很好😡 iPhone如何？", "鱻很好，ゑ\tゑ", "如\u0301果 [SEP] 好"]
    for text in texts:  # the same ids and offsets as before: models trained on either read the same tokens
        ours, before = (t(text, return_offsets_mapping=True) for t in (held, normalised))
        assert ours.input_ids == before.input_ids and ours.offset_mapping == before.offset_mapping
    assert held.convert_ids_to_tokens(held.convert_tokens_to_ids(["如", "鱻"])) == ["如", "鱻"]
    assert normalised.convert_ids_to_tokens(normalised.convert_tokens_to_ids(["如"]))[0].strip() == "如"
    model = BertForTokenClassification(BertConfig(vocab_size=len(held), hidden_size=16, num_hidden_layers=1,
                                                  num_attention_heads=2, intermediate_size=32, num_labels=3))
    text = texts[0]

    def han_words(tokenizer: object) -> list[dict]:
        tagger = pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="first")
        encoding = tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
        pre = tagger.gather_pre_entities(text, np.array(encoding.input_ids), np.zeros((len(encoding.input_ids), 3)),
                                         encoding.offset_mapping, np.array(encoding.special_tokens_mask),
                                         AggregationStrategy.FIRST)
        return [p for p in pre if p["word"].strip() in chars]

    assert [p["word"] for p in han_words(held)] == ["如", "果", "很", "好", "😡", "如"]
    assert not any(p["is_subword"] for p in han_words(held))  # each a word of its own, as our scorer reads them
    # how it was: every added Han character a subword of the word before it
    assert [p["is_subword"] for p in han_words(normalised)] == [True] * 4 + [False, True]


def test_a_night_spelled_letter_by_letter_gets_its_frequent_words_as_tokens(tmp_path: Path) -> None:
    """Russian through the packaged MiniLM has no [UNK] but takes about six tokens a word: auto extends the
    vocabulary with the night's frequent words (whole words only, normalised as the tokenizer reads them), so that
    they are one token each, the night's tokens per word fall, and nothing else changes meaning: a user's [SEP] is
    text, and a Cyrillic word seen less than vocabulary_min_count times keeps its pieces."""
    from tests.unit.test_coverage import RUSSIAN, night_config

    rows = [f"{RUSSIAN[i % len(RUSSIAN)]} Заказ {1000 + i}, оценка {i % 5 + 1}." for i in range(120)]
    rows += ["Редкостный экземпляр [SEP] доставка"]
    cfg = build_config(night_config(tmp_path, rows))
    run_ingest(cfg), run_curate(cfg)
    summary = run_tokenize(cfg)
    manifest = Lake.of(cfg).read_manifest("tokens", cfg.run_date)
    words = manifest["vocabulary"]
    before = words["coverage_before"]["by_script"]["Cyrillic"]["tokens_per_word"]
    after = manifest["coverage"]["by_script"]["Cyrillic"]["tokens_per_word"]
    assert words["extended"] and before > 4.5 and after < 2.0, (before, after)
    assert words["unknown_token_share_before"] < 0.01  # poor by its pieces, not by [UNK]
    tokenizer = vocabulary.load_extension(manifest["tokenizer"]["folder"], manifest["tokenizer"]["hash"])
    added = set(vocabulary.added_texts(tokenizer))
    assert {"доставка", "заказ", "горшок", "магазина"} <= added and "редкостныи" not in added  # й folds to и
    assert tokenizer.tokenize("ДОСТАВКА быстрая") == ["доставка", "быстрая"]
    assert "достав" not in added and tokenizer.tokenize("доставками")[0] != "доставка"  # whole words only
    encoder = fast_encoder(tokenizer, 64)
    assert tokenizer.sep_token_id not in encoder.encode(rows[-1]).ids[1:-1]
    assert not any("poor vocabulary coverage" in w for w in summary.get("warnings", []))  # read well after it
