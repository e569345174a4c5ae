"""Vocabulary coverage (issue 21): the share of tokens that are the unknown token and of characters hidden behind it,
per Unicode script, measured in the tokenize stage, stored in its manifest and summary, shown in the report, and
`tokenize.on_poor_coverage: refuse` stopping a night before any shard is written.

Inputs are made here: 298 hand-written Chinese product reviews (tests/data/coverage/zh_reviews.txt), short mixed
texts, a hand-made WordPiece vocabulary with exact expected counts, and a byte-level BPE tokenizer trained here."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import polars as pl
import pytest

from bert_pipeline.text import coverage as cov
from bert_pipeline.config import build_config
from bert_pipeline.stages.curate import run_curate
from bert_pipeline.errors import ConfigError
from bert_pipeline.stages.ingest import run_ingest
from bert_pipeline.lake.manifests import Lake
from bert_pipeline.modeling.models import fast_encoder, load_tokenizer, resolve_model_dir
from bert_pipeline.stages.report import coverage_section, write_report
from bert_pipeline.stages.tokenize import run_tokenize

ZH_REVIEWS = Path(__file__).parents[1] / "data" / "coverage" / "zh_reviews.txt"
ENGLISH = ["Great product, fast shipping and the quality is better than I expected!",
           "The charger stopped working after two days. Very disappointed.",
           "Customer service answered quickly and replaced the broken item.",
           "Shoes are comfortable but run a little small, order a size up."]
RUN_DATE = "2026-12-01"


def zh_reviews() -> list[str]:
    return ZH_REVIEWS.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def minilm() -> object:
    """The packaged MiniLM's tokenizer (English uncased WordPiece), as the tokenize stage loads it."""
    return load_tokenizer(resolve_model_dir(""))


def tiny_wordpiece() -> object:
    """A hand-made WordPiece tokenizer (BERT normalizer and pre-tokenizer) whose every count below is worked out by
    hand: it knows hello, world, the letters of both, 好, 评, !, [, ], unk and sep, and nothing else."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "好", "评", "!", "[", "]", "unk", "sep"]
    vocab += sorted(set("helowrd"))
    tok = Tokenizer(models.WordPiece(vocab={t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2),
                                                                                                ("[SEP]", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


def byte_level_tokenizer(texts: list[str]) -> object:
    """A RoBERTa-style byte-level BPE (no unknown token in its model) trained here on texts, 400 pieces."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=special, show_progress=False,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", cls_token="<s>", sep_token="</s>", mask_token="<mask>")


# --- the measurement ---------------------------------------------------------------------------------------------

def test_exact_counts_on_a_hand_made_vocabulary() -> None:
    texts = ["hello world",  # 2 tokens, both known
             "好评！物流很快",  # 好 评 ！ 物 流 很 快: 7 tokens, 5 unknown (！ is full-width, not the vocabulary's !)
             "hello😀world",  # one word to the pre-tokenizer: one [UNK] hiding 11 characters; 😀 alone is unknown
             "[UNK] [SEP]"]  # typed by a user: text ([ unk ] [ sep ]), never the special tokens
    result = cov.measure(tiny_wordpiece(), texts, max_length=64)
    assert result["unknown_token"] == "[UNK]" and result["texts"] == 4 and result["texts_with_unknown"] == 2
    assert (result["tokens"], result["unknown_tokens"]) == (2 + 7 + 1 + 6, 5 + 1)
    assert (result["chars"], result["hidden_chars"]) == (10 + 7 + 11 + 10, 5 + 11)
    assert result["unknown_token_share"] == round(6 / 16, 6) and result["hidden_char_share"] == round(16 / 38, 6)
    han, common, latin = (result["by_script"][s] for s in ("Han", "Common", "Latin"))
    assert (han["tokens"], han["unknown_tokens"], han["chars"], han["hidden_chars"]) == (6, 4, 6, 4)
    # Common: ！ (unknown), the 4 brackets (known), 😀 (hidden inside the Latin-led [UNK])
    assert (common["tokens"], common["unknown_tokens"], common["chars"], common["hidden_chars"]) == (5, 1, 6, 2)
    # Latin: hello world, unk, sep and the [UNK] of "hello😀world" (named by its first letter)
    assert (latin["tokens"], latin["unknown_tokens"], latin["chars"], latin["hidden_chars"]) == (5, 1, 26, 10)
    assert list(result["by_script"]) == ["Latin", "Han", "Common"]  # most characters first
    # ties in code point order; h, e, l, o, w, r, d of "hello😀world" are hidden but known on their own
    assert result["top_unknown_chars"] == [["很", 1], ["快", 1], ["流", 1], ["物", 1], ["！", 1], ["😀", 1]]
    assert result["top_unknown_words"][0] == ["hello😀world", 1]


def test_truncated_text_counts_only_what_the_model_reads() -> None:
    # max_length 8 = [CLS] + 6 characters + [SEP]: the last 4 characters are never read, so they are not counted
    result = cov.measure(tiny_wordpiece(), ["好评好评好评好评好评"], max_length=8)
    assert (result["tokens"], result["chars"], result["unknown_tokens"]) == (6, 6, 0)
    result = cov.measure(tiny_wordpiece(), ["物流物流物流物流物流"], max_length=8)
    assert (result["tokens"], result["chars"], result["unknown_tokens"], result["hidden_chars"]) == (6, 6, 6, 6)


def test_minilm_hides_most_of_chinese_reviews_and_almost_nothing_of_english(minilm: object) -> None:
    zh = cov.measure(minilm, zh_reviews(), max_length=128)
    assert zh["texts"] == 298 and zh["unknown_token_share"] > 0.6 and zh["hidden_char_share"] > 0.6
    assert zh["by_script"]["Han"]["unknown_token_share"] > 0.7 and zh["by_script"]["Han"]["hidden_char_share"] > 0.7
    assert list(zh["by_script"])[0] == "Han"
    assert zh["top_unknown_chars"][0] == ["很", 235] and len(zh["top_unknown_chars"]) == cov.TOP
    en = cov.measure(minilm, ENGLISH, max_length=128)
    assert en["unknown_tokens"] == 0 and en["unknown_token_share"] == 0.0 and en["hidden_char_share"] == 0.0
    assert set(en["by_script"]) == {"Latin", "Common"} and en["by_script"]["Latin"]["tokens"] > 40


def test_mixed_scripts_emoji_and_literal_special_tokens(minilm: object) -> None:
    texts = ["Great phone 不好 👍👍 شكرا جزيلا", "hello [UNK] [SEP] world [CLS] [MASK]"]
    result = cov.measure(minilm, texts, max_length=128)
    by = result["by_script"]
    assert by["Latin"]["unknown_tokens"] == 0 and by["Arabic"]["unknown_tokens"] == 0  # letters in its vocabulary
    assert by["Han"]["unknown_tokens"] == 1 and by["Han"]["hidden_chars"] == 1  # 好; 不 is in the vocabulary
    assert by["Common"]["unknown_tokens"] == 1 and by["Common"]["hidden_chars"] == 2  # 👍👍 is one [UNK]
    assert result["unknown_tokens"] == 2 and result["texts_with_unknown"] == 1  # the typed [UNK] is text
    assert dict(map(tuple, result["top_unknown_words"])) == {"好": 1, "👍👍": 1}


# Hand-written reviews in scripts the packaged MiniLM knows letter by letter (no [UNK], but a word in 4-8 pieces)
RUSSIAN = ["Доставка быстрая, упаковка целая, но зарядка перестала работать через неделю.",
           "Отличный горшок для цветов, купила ещё два в подарок маме 😍",
           "Продавец не отвечает на сообщения, деньги вернули только через месяц!",
           "Качество так себе: ткань тонкая, швы кривые, размер маломерит.",
           "Всё понравилось, рекомендую этот магазин друзьям и знакомым.",
           "Мой кот разбил вазу в первый же день, но это не вина магазина :)"]
GREEK = ["Το προϊόν ήρθε γρήγορα και είναι πολύ καλό, το συνιστώ ανεπιφύλακτα.",
         "Κακή ποιότητα υλικών, επέστρεψα το παραγγελθέν μετά από δύο εβδομάδες."]


def test_a_script_spelled_letter_by_letter_is_poor_coverage_though_nothing_is_unknown(minilm: object) -> None:
    """Cyrillic and Greek through the English MiniLM: almost no [UNK], but more than four tokens per word, which
    the report, the summary and auto judge as they judge hidden text; English and Chinese have no such figure to
    trip (Chinese has no words between spaces), and a night that is mostly English stays fine."""
    ru = cov.measure(minilm, RUSSIAN * 3 + GREEK * 4, max_length=128)
    assert ru["unknown_token_share"] < 0.01 and ru["hidden_char_share"] < 0.01
    cyrillic, greek = ru["by_script"]["Cyrillic"], ru["by_script"]["Greek"]
    assert cyrillic["words"] == 3 * sum(len([w for w in t.split() if w[0].isalpha()]) for t in RUSSIAN)
    assert cyrillic["tokens_per_word"] > 4.5 and greek["tokens_per_word"] > 4
    assert ru["spelled_in_pieces_char_share"] == round((cyrillic["chars"] + greek["chars"]) / ru["chars"], 6) > 0.9
    assert cov.is_poor(ru, 0.05) and cov.pieces_line(ru).startswith("Cyrillic ")
    message = cov.poor_coverage_message(ru, 0.05, RUN_DATE, "the packaged MiniLM")
    assert "spells 9" in message and "more than 4 tokens per word" in message and "hidden from the model" not in message
    assert "a base model whose vocabulary covers Cyrillic and Greek: a multilingual encoder" in message
    en = cov.measure(minilm, ENGLISH * 10, max_length=128)
    assert en["by_script"]["Latin"]["tokens_per_word"] < 1.6 and en["spelled_in_pieces_char_share"] == 0.0
    assert not cov.is_poor(en, 0.05) and cov.pieces_line(en) == ""
    mostly_english = cov.measure(minilm, ENGLISH * 40 + RUSSIAN[:1], max_length=128)
    assert mostly_english["by_script"]["Latin"]["words"] > 10 * 50 and not cov.is_poor(mostly_english, 0.05)
    assert "tokens_per_word" not in cov.measure(minilm, zh_reviews(), max_length=128)["by_script"]["Han"]
    # a text the model reads only the start of counts only the words it reads
    section = coverage_section({"coverage": ru, "counts": {"rows": 26}}, 0.05)
    assert "\nSpelled in pieces (more than 4 tokens per word, though no token is unknown; " in section
    assert "**Poor coverage**" in section and "| tokens per word |" in section
    assert f"{cyrillic['hidden_char_share']:.2%} | {cyrillic['tokens_per_word']} |" in section
    # the long-text warning says what makes such texts long
    from bert_pipeline.stages.tokenize import truncation_warning

    [long] = truncation_warning({"rows": 10, "truncated": 6}, build_config({"run_date": RUN_DATE}), coverage=ru)
    assert "They are long in tokens because the vocabulary spells their words in pieces (Cyrillic " in long
    [plain] = truncation_warning({"rows": 10, "truncated": 6}, build_config({"run_date": RUN_DATE}), coverage=en)
    assert "in pieces" not in plain and plain.startswith("tokenize: 6 of 10 texts")
    [mostly] = truncation_warning({"rows": 10, "truncated": 6}, build_config({"run_date": RUN_DATE}),
                                  coverage=mostly_english)  # a few pieced words do not make the texts long
    assert "in pieces" not in mostly
    cut = cov.measure(minilm, [" ".join(RUSSIAN) * 3] * 10, max_length=64)["by_script"]["Cyrillic"]
    assert 60 < cut["words"] < 150 and abs(cut["tokens_per_word"] - cyrillic["tokens_per_word"]) < 1.5


def test_a_word_is_a_run_of_one_scripts_letters_and_truncation_counts_only_the_words_read(minilm: object) -> None:
    """Words that begin with @, # or a quote, or that are glued to another script (OPPO手机), are words of their
    letters' script, so English tweets and Chinese reviews with brand names are not called spelled in pieces; a
    text cut mid-word counts the word it began once, and never a word it did not read."""
    tweets = ['@anna_k #sale "great" (really) iPhone手机 OPPO手机, 10/10 would buy again!!'] * 60
    latin = cov.measure(minilm, tweets, max_length=128)["by_script"]["Latin"]
    assert latin["words"] == 60 * 10 and latin["tokens_per_word"] < 2  # anna, k, sale, great ... again
    assert cov.script_words("OPPO手机拍照效果不错 «горшок»дом ё\u0308лка café") == ["OPPO", "горшок", "дом",
                                                                              "ё\u0308лка", "café"]
    counter = cov.CoverageCounter(fast_encoder(minilm, 8))
    cov.measure(minilm, ["достопримечательность достопримечательность"] * 3, max_length=8, counter=counter)
    assert int(counter.word_starts.sum()) == 3  # one word each: the first, cut inside; the second never read
    counter = cov.CoverageCounter(fast_encoder(minilm, 8))
    cov.measure(minilm, ["yes no yes no yes no yes no"] * 3, max_length=8, counter=counter)
    assert int(counter.word_starts.sum()) == 3 * 6  # six one-token words read; the tail starts at a word
    counter = cov.CoverageCounter(fast_encoder(minilm, 8))
    cov.measure(minilm, ["да нет да нет да нет да нет"] * 3, max_length=8, counter=counter)
    assert int(counter.word_starts.sum()) == 3 * 3  # д ##а н ##е ##т д: да, нет and the да it cut


def test_letters_the_uncased_normaliser_reads_as_others_are_named(minilm: object) -> None:
    """й reads as и and が as か through the uncased MiniLM (мой and мои are one word to it): named with their
    counts, in the manifest and the report (they are not hidden: coverage stays as it is); Latin accents, Hangul (not
    folded) and English are not named."""
    texts = ["Мой кот съел ёлку, но мои соседи не против.", "Мой заказ пришёл вовремя.", "がんばって ください",
             "Café naïve résumé", "한국어 리뷰 좋아요", "Shoes run small."]
    result = cov.measure(minilm, texts, max_length=128)
    assert result["folded_chars"] == [["й", "и", 2], ["ё", "е", 2], ["が", "か", 1], ["だ", "た", 1], ["ば", "は", 1]]
    assert "folded_chars" not in cov.measure(minilm, ENGLISH + ["Café naïve résumé", "한국어 리뷰"], max_length=128)
    section = coverage_section({"coverage": result, "counts": {"rows": 6}}, 0.05)
    assert ("The tokenizer's normaliser reads these letters as others (so words that differ only there read the "
            "same; a cased or multilingual base model keeps them apart): `й` as `и` 2, `ё` as `е` 2, `が` as `か` 1, "
            "`だ` as `た` 1, `ば` as `は` 1.") in section


def test_a_night_of_nothing_but_emoji(minilm: object) -> None:
    result = cov.measure(minilm, ["😀😂👍", "🎉🎉", "❤️🔥"], max_length=128)
    assert result["unknown_token_share"] == 1.0 and result["hidden_char_share"] == 1.0
    assert set(result["by_script"]) <= {"Common", "Inherited"}  # ❤️ carries U+FE0F, an Inherited variation selector
    assert ["🎉", 2] in result["top_unknown_chars"]
    assert "byte-level BPE model such as `roberta-base`" in cov.advice(result)


def test_byte_level_tokenizer_has_full_coverage_of_any_script() -> None:
    tokenizer = byte_level_tokenizer(ENGLISH)  # never saw a Han character: its bytes are still in the vocabulary
    result = cov.measure(tokenizer, zh_reviews()[:50] + ENGLISH + ["😀😂👍 [UNK]"], max_length=128)
    assert result["unknown_token"] is None and result["unknown_tokens"] == 0
    assert result["unknown_token_share"] == 0.0 and result["hidden_char_share"] == 0.0
    assert result["top_unknown_chars"] == [] and result["top_unknown_words"] == []
    assert result["by_script"]["Han"]["chars"] > 500
    assert result["by_script"][cov.BYTE_PIECES]["tokens"] > 500  # a Han character is 3 bytes: pieces of it
    assert result["tokens"] == sum(r["tokens"] for r in result["by_script"].values())


def char_bpe_without_unknown(texts: list[str]) -> object:
    """A character-level BPE with no unknown token and no byte fallback, trained here on texts: a character it never
    saw becomes no token at all (the tokenizers library's BPE drops it)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "<pad>", "</s>"],
                                                       show_progress=False))
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   cls_token="<s>", sep_token="</s>")


def test_a_tokenizer_that_drops_what_it_cannot_spell_hides_it() -> None:
    tokenizer = char_bpe_without_unknown(ENGLISH * 5)  # never saw Kana, Han or emoji
    japanese = ["この商品は最高です。また買いたい！", "配送が遅くて残念でした", "品質 good だけど 値段 高い 😀"] * 40
    result = cov.measure(tokenizer, ENGLISH * 20 + japanese, max_length=128)
    assert result["unknown_token"] is None and result["drops_text"] is True
    assert result["by_script"]["Han"]["hidden_char_share"] == 1.0  # every Han character became no token
    assert result["by_script"]["Hiragana"]["hidden_char_share"] == 1.0
    assert result["by_script"]["Latin"]["hidden_chars"] == 0  # "good" is spelt from what it saw
    assert result["hidden_char_share"] == 0.25 and cov.is_poor(result, 0.05)  # 1,520 of 6,080 characters
    assert result["top_unknown_chars"][:2] == [["い", 120], ["た", 120]] and ["品", 80] in result["top_unknown_chars"]
    assert ["配送が遅くて残念でした", 40] in result["top_unknown_words"]
    assert "drops what its vocabulary cannot spell" in cov.poor_coverage_message(result, 0.05, RUN_DATE, "x")
    section = coverage_section({"coverage": result, "tokenizer": {"source": "char-bpe"}}, 0.05)
    assert "has no unknown token, and what its vocabulary cannot spell becomes no token at all" in section
    assert "coverage 100%" not in section and "**Poor coverage**" in section
    # a byte-level tokenizer is told apart by the same probe: it reads every character
    assert "drops_text" not in cov.measure(byte_level_tokenizer(ENGLISH), japanese[:3], max_length=128)


def test_korean_through_an_uncased_vocabulary_is_poor_by_its_hidden_characters(minilm: object) -> None:
    """The uncased normaliser splits each Hangul syllable into jamo, most of which the vocabulary holds, so a night
    whose words are [UNK] has few unknown tokens among many: the hidden character share tells."""
    korean = ["배송이 빨라서 좋아요 최고예요", "최악이에요 고장났어요 환불해 주세요", "가격 대비 괜찮아요 추천합니다",
              "포장이 엉망이었어요 다시는 안 사요", "색상이 사진이랑 똑같아요 만족합니다"] * 20
    result = cov.measure(minilm, korean + ENGLISH * 30, max_length=128)
    assert result["unknown_token_share"] < 0.05 < result["hidden_char_share"]  # judged on tokens alone: not poor
    assert cov.is_poor(result, 0.05)
    assert result["by_script"]["Hangul"]["hidden_char_share"] > 0.4  # 680 of 1,460: 좋아요, 최고예요, ...


def test_marks_the_uncased_normaliser_strips_are_hidden_though_their_tokens_look_known(minilm: object) -> None:
    """Devanagari vowel signs and the virama vanish in the uncased BERT's accent stripping (बहुत reads as बहत): the
    model never sees them, whatever its vocabulary holds. Latin accents fold to their letter and stay counted as
    read."""
    hindi = ["बहुत अच्छा उत्पाद है", "डिलीवरी बहुत धीमी थी"] * 30
    result = cov.measure(minilm, hindi + ["Café crème brûlée, naïve résumé"] * 30, max_length=128)
    virama, u_sign, ai_sign = "\u094d", "\u0941", "\u0948"
    assert [virama, sum(t.count(virama) for t in hindi)] in result["top_stripped_chars"]
    assert [u_sign, sum(t.count(u_sign) for t in hindi)] in result["top_stripped_chars"]
    assert not {virama, u_sign, ai_sign} & {c for c, _ in result["top_unknown_chars"]}  # no token is unknown
    assert result["stripped_chars"] == sum(t.count(c) for t in hindi for c in (virama, u_sign, ai_sign)) == 150
    assert result["by_script"]["Latin"]["hidden_chars"] == 0  # é, è, û, ï: folded to a letter, not lost
    assert result["by_script"]["Devanagari"]["hidden_chars"] <= result["by_script"]["Devanagari"]["chars"]


def test_arabic_vowel_signs_the_normaliser_deletes_are_said_not_hidden(minilm: object) -> None:
    """Vowelled Arabic (the Quran's text, children's books) through the uncased MiniLM: the harakat (script
    Inherited) vanish in accent stripping, as Arabic is usually written: counted apart and said in the report, not
    called hidden or unknown. A Quranic pause mark (script Arabic) is deleted too and is hidden, listed as deleted by
    the normaliser, not as an unknown character."""
    vowelled = ["يَا حَسْرَةً عَلَى الْعِبَادِ ۚ مَا يَأْتِيهِمْ مِنْ رَسُولٍ", "وَالشَّمْسِ وَضُحَاهَا ۖ وَالْقَمَرِ إِذَا تَلَاهَا"] * 20
    result = cov.measure(minilm, vowelled, max_length=128)
    harakat = {c for text in vowelled for c in text if "\u064b" <= c <= "\u0652"}
    assert result["removed_marks"] == sum(text.count(c) for text in vowelled for c in harakat) > 0
    assert {c for c, _ in result["top_removed_marks"]} == harakat
    pause = {"\u06da", "\u06d6"}  # ۚ ۖ
    assert result["stripped_chars"] == 40 and {c for c, _ in result["top_stripped_chars"]} == pause
    assert not (pause | harakat) & {c for c, _ in result["top_unknown_chars"]}
    assert result["by_script"]["Arabic"]["hidden_chars"] >= 40
    assert result["by_script"]["Inherited"]["hidden_chars"] == 0
    section = coverage_section({"coverage": result}, 0.05)
    assert "Deleted by the tokenizer's normaliser before its vocabulary reads the text, so hidden though no token " \
           "is unknown: 40 characters, most often `\u25ccۖ` 20, `\u25ccۚ` 20." in section
    assert f"{result['hidden_char_share']:.2%} of 1,960 characters are hidden (behind it, or deleted by the " \
           "normaliser); 0 of 40 texts hold at least one" in section
    assert (f"The normaliser also deletes {result['removed_marks']:,} combining marks "
            f"({result['removed_marks'] / result['chars']:.1%} of the characters), most often `\u25cc") in section
    assert "Most frequent unknown characters" not in section


def test_the_counter_switches_to_offsets_when_most_texts_need_them(minilm: object) -> None:
    encoder = fast_encoder(minilm, 128)
    counter = cov.CoverageCounter(encoder)
    texts = zh_reviews()
    one_by_one = cov.measure(encoder, texts, batch_size=100, counter=counter)
    assert counter.wants_offsets  # after 256 texts all needing offsets
    assert one_by_one == cov.measure(encoder, texts, batch_size=1000)  # same counts either way


# --- the advice --------------------------------------------------------------------------------------------------

def shares(**hidden: int) -> dict:
    return {"by_script": {s: {"hidden_chars": n, "hidden_char_share": 0.5, "chars": 2 * n} for s, n in hidden.items()}}


def test_advice_names_a_model_family_by_script() -> None:
    assert "`bert-base-chinese`" in cov.advice(shares(Han=10, Common=2))
    japanese = cov.advice({"by_script": {**shares(Han=10)["by_script"], "Hiragana": {"hidden_chars": 0, "chars": 5,
                                                                                     "hidden_char_share": 0}}})
    assert "bert-base-chinese" not in japanese and "`xlm-roberta-base`" in japanese
    for script in ("Hangul", "Thai", "Arabic", "Cyrillic", "Devanagari", "Katakana"):
        text = cov.advice(shares(**{script: 5}))
        assert script in text and "`bert-base-multilingual-cased`" in text and "`train.base_model`" in text
    assert "roberta-base" in cov.advice(shares(Common=5))


# --- the tokenize stage, its manifest and summary, warn and refuse ------------------------------------------------

def night_config(root: Path, rows: list[str], **tokenize: object) -> dict:
    pl.DataFrame({"text": rows, "label": ["pos" if i % 2 else "neg" for i in range(len(rows))]}).write_csv(
        root / "reviews.csv")
    return {"data_root": str(root / "lake"), "run_date": RUN_DATE,
            "ingest": {"sources": [str(root / "reviews.csv")], "label_column": "label"},
            "curate": {"near_dedup": False}, "tokenize": {"max_length": 64, **tokenize}}


@pytest.fixture(scope="module")
def chinese_night(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    """Ingest and curate of the Chinese reviews, tokenized with the packaged MiniLM (warn) as it is (no vocabulary
    extension, which tests/unit/test_vocabulary.py covers): (config, summary)."""
    data = night_config(tmp_path_factory.mktemp("zh"), zh_reviews(), extend_vocabulary="off")
    cfg = build_config(data)
    run_ingest(cfg), run_curate(cfg)
    return data, run_tokenize(cfg)


def test_poor_coverage_is_in_the_manifest_the_summary_and_a_warning(chinese_night: tuple[dict, dict]) -> None:
    data, summary = chinese_night
    manifest = Lake(data["data_root"]).read_manifest("tokens", RUN_DATE)
    coverage = manifest["coverage"]
    assert coverage["texts"] == manifest["counts"]["rows"] == 298
    assert coverage["unknown_token_share"] > 0.6 and coverage["by_script"]["Han"]["unknown_token_share"] > 0.7
    assert coverage["tokens"] == manifest["counts"]["tokens"] - 2 * 298  # without [CLS] and [SEP]
    assert summary["coverage"] == {**coverage, "top_unknown_chars": coverage["top_unknown_chars"][:10],
                                   "top_unknown_words": coverage["top_unknown_words"][:10]}
    [warning] = summary["warnings"]
    assert warning.startswith(f"poor vocabulary coverage for run_date={RUN_DATE}: "
                              f"{coverage['unknown_token_share']:.1%} of the tokens are the unknown token [UNK]")
    for part in ("(tokenize.max_unknown_share, 5.0%, bounds both shares)", "Most affected: Han ", "'很' x235",
                 "`bert-base-chinese`", "`xlm-roberta-base`", "set `train.base_model` to that folder",
                 "tokenize.on_poor_coverage (warn, or refuse"):
        assert part in warning, part


def test_a_rerun_with_only_the_coverage_settings_changed_is_still_a_skip(chinese_night: tuple[dict, dict],
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    data, summary = chinese_night
    lenient = build_config(data, {"tokenize.max_unknown_share": 0.95})
    rerun = run_tokenize(lenient)
    assert rerun["skipped"] and "warnings" not in rerun and rerun["coverage"] == summary["coverage"]
    with caplog.at_level(logging.WARNING, logger="bert_pipeline.stages.tokenize"):
        again = run_tokenize(build_config(data))
    assert again["skipped"] and again["warnings"] == summary["warnings"]  # a skipped rerun still says it
    assert any("poor vocabulary coverage" in r.getMessage() for r in caplog.records)
    with pytest.raises(ConfigError) as refused:
        run_tokenize(build_config(data, {"tokenize.on_poor_coverage": "refuse"}))
    assert "committed earlier and is left as it is" in str(refused.value)
    assert Lake(data["data_root"]).read_manifest("tokens", RUN_DATE) is not None


def test_the_coverage_settings_leave_the_tokenize_fingerprint_as_before() -> None:
    cfg = build_config({"tokenize": {"max_unknown_share": 0.5, "on_poor_coverage": "refuse", "extend_vocabulary": "on",
                                     "vocabulary_min_count": 7, "vocabulary_max_new": 9}})
    before = {"tokenize": {"max_length": 128, "shard_rows": 50_000, "batch_size": 2_048}}  # the fields up to 0.3.0
    assert cfg.fingerprint("tokenize") == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:16]


def test_refuse_stops_before_any_shard_is_written(tmp_path: Path) -> None:
    cfg = build_config(night_config(tmp_path, zh_reviews()[:40], on_poor_coverage="refuse", extend_vocabulary="off"))
    run_ingest(cfg), run_curate(cfg)
    with pytest.raises(ConfigError) as refused:
        run_tokenize(cfg)
    message = str(refused.value)
    assert message.startswith(f"tokenize refused run_date={RUN_DATE} (tokenize.on_poor_coverage: refuse): ")
    for part in ("above tokenize.max_unknown_share 5.0%", "no token shard was written", "`bert-base-chinese`",
                 "set tokenize.on_poor_coverage: warn or raise tokenize.max_unknown_share"):
        assert part in message, part
    folder = tmp_path / "lake" / "tokens"
    assert not folder.exists() or not [p for p in folder.rglob("*") if p.is_file()]
    ok = run_tokenize(build_config(night_config(tmp_path, zh_reviews()[:40], max_unknown_share=1.0,
                                                on_poor_coverage="refuse", extend_vocabulary="off")))
    assert not ok["skipped"] and "warnings" not in ok and ok["coverage"]["unknown_token_share"] > 0.6


def test_a_byte_level_base_model_folder_tokenizes_with_full_coverage(tmp_path: Path) -> None:
    import torch
    from transformers import RobertaConfig, RobertaForSequenceClassification

    folder = tmp_path / "tiny-roberta"
    tokenizer = byte_level_tokenizer(ENGLISH)
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=37, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        RobertaForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    data = night_config(tmp_path, zh_reviews()[:60] + ENGLISH, on_poor_coverage="refuse")
    cfg = build_config(data, {"train.base_model": str(folder)})
    run_ingest(cfg), run_curate(cfg)
    summary = run_tokenize(cfg)
    coverage = Lake.of(cfg).read_manifest("tokens", RUN_DATE)["coverage"]
    assert not summary["skipped"] and "warnings" not in summary
    assert coverage["unknown_token"] is None and coverage["unknown_token_share"] == 0.0
    assert coverage["hidden_char_share"] == 0.0 and coverage["texts"] == 64
    text = coverage_section(Lake.of(cfg).read_manifest("tokens", RUN_DATE), 0.05)
    assert "has no unknown token (byte-level): it reads every character" in text and "coverage 100%" in text


# --- the report --------------------------------------------------------------------------------------------------

def test_the_report_shows_coverage_and_the_advice(chinese_night: tuple[dict, dict]) -> None:
    data, _ = chinese_night
    summary = write_report(build_config(data))
    text = Path(summary["report"]).read_text(encoding="utf-8")
    coverage = Lake(data["data_root"]).read_manifest("tokens", RUN_DATE)["coverage"]
    section = text[text.index("## Coverage"):]
    assert (f"{coverage['unknown_token_share']:.2%} of {coverage['tokens']:,} tokens are the unknown token `[UNK]` "
            "(threshold `tokenize.max_unknown_share` 5.00%)") in section
    assert f"{coverage['hidden_char_share']:.2%} of {coverage['chars']:,} characters are hidden behind it" in section
    assert "**Poor coverage**" in section and "`bert-base-chinese`" in section
    assert ("| script | tokens | unknown tokens | unknown share | characters | hidden characters | hidden share |"
            in section)
    han = coverage["by_script"]["Han"]
    assert (f"| Han | {han['tokens']:,} | {han['unknown_tokens']:,} | {han['unknown_token_share']:.2%} | "
            f"{han['chars']:,} | {han['hidden_chars']:,} | {han['hidden_char_share']:.2%} |") in section
    assert "Most frequent unknown characters: `很` 235, " in section
    lenient = coverage_section(Lake(data["data_root"]).read_manifest("tokens", RUN_DATE), 0.95)
    assert "Poor coverage" not in lenient and "| Han |" in lenient


def test_the_report_of_a_night_tokenized_before_coverage_says_not_measured() -> None:
    old = {"stage": "tokenize", "counts": {"rows": 3, "tokens": 30}, "tokenizer": {"source": "packaged MiniLM"}}
    assert coverage_section(old, 0.05).startswith("## Coverage\n\nNot measured: the token partition of this night "
                                                  "was committed before bert-pipeline measured vocabulary coverage")
