"""Cleaning keeps what the user wrote: only mojibake, HTML markup, control characters, whitespace and NFC are touched.
Width, quotes and ligatures are folded in the dedup key alone."""

from __future__ import annotations

import pytest

from bert_pipeline.curation.clean import clean_text, dedup_key
from bert_pipeline.curation.neardup import normal_form


@pytest.mark.parametrize("raw, cleaned", [
    # Chinese: full-width punctuation and curly quotes stay as typed
    ("这个产品很好，真的！价格：（含税）一百元。你觉得呢？", "这个产品很好，真的！价格：（含税）一百元。你觉得呢？"),
    ("他说“不错”，我说‘一般’。", "他说“不错”，我说‘一般’。"),
    # Japanese: corner brackets, full-width ？ and （）, full-width letters and digits
    ("「すごい」と言った。本当？（笑）ＯＫ１２３", "「すごい」と言った。本当？（笑）ＯＫ１２３"),
    # English: curly quotes and the ﬁ ligature stay
    ("“Great” product, it’s ﬁne", "“Great” product, it’s ﬁne"),
    # repairs: mojibake, HTML entities and tags, control characters, whitespace, NFC
    ("cafÃ© au lait", "café au lait"),
    ("the â€œbestâ€\x9d one", "the “best” one"),
    ("Fish &amp; <b>chips</b>", "Fish & chips"),
    ("<p>好吃&amp;便宜！</p>", "好吃&便宜！"),
    ("bad\x07bell\x00nul\u200bzw", "bad bell nul zw"),
    ("  spaced \t out\n\nlines  ", "spaced out lines"),
    ("cafe\u0301 and e&#x301;", "café and é"),
    ("a < b and <3", "a < b and <3"),
    # only HTML's elements are markup: other text in angle brackets is the user's, and so is an escaped tag
    ("press <Enter> to save, then <Ctrl+S>", "press <Enter> to save, then <Ctrl+S>"),
    ("if x<y and y>z the app crashes", "if x<y and y>z the app crashes"),
    ("returns List<String> or Map<K, V>", "returns List<String> or Map<K, V>"),
    ("write to <jane.doe@example.com>", "write to <jane.doe@example.com>"),
    ("the model filled <mask> and <pad>", "the model filled <mask> and <pad>"),
    ("a &lt;b&gt; tag shows as &lt;b&gt;", "a <b> tag shows as <b>"),
    ('<DIV class="x">商品<BR/>很好</DIV><!-- tracking\npixel --><img src=x>', "商品 很好"),
    ("<!DOCTYPE html><a href='/p?id=1&amp;x=2'>Ümlaut</a>", "Ümlaut"),
])
def test_clean_text_keeps_what_the_user_wrote(raw: str, cleaned: str) -> None:
    assert clean_text(raw) == cleaned


def test_clean_text_of_nothing_is_empty() -> None:
    assert clean_text(None) == "" and clean_text("") == "" and clean_text(" \x07 ") == ""


@pytest.mark.parametrize("one, other", [
    ("ＡＢＣ", "ABC"),
    ("“Great” product, it’s ﬁne", '"Great" product, it\'s fine'),
    ("很好，真的！（含税）", "很好,真的!(含税)"),
    ("ＯＫ　Ｄｅａｌ", "ok deal"),
])
def test_the_dedup_key_still_folds_width_quotes_and_ligatures(one: str, other: str) -> None:
    assert clean_text(one) != clean_text(other)  # stored as written ...
    assert normal_form(clean_text(one)) == normal_form(clean_text(other))  # ... compared folded
    assert dedup_key(clean_text(one)) == dedup_key(clean_text(other))
