from __future__ import annotations

import polars as pl
import pytest

from bert_pipeline.config import build_config
from bert_pipeline.curation.clean import alpha_ratio, clean_text, dedup_key
from bert_pipeline.stages.curate import assign_split, curate_frame


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("The Mona Lisa doesnÃ¢â‚¬â„¢t have eyebrows.", "The Mona Lisa doesn’t have eyebrows."),  # as written: ’
        ("fish &amp; chips &lt;3", "fish & chips <3"),
        ("<b>bold</b> and <a href='x'>link</a>", "bold and link"),
        ("tab\there\x00nul\x07bell  \n\n spaces", "tab here nul bell spaces"),
        ("   ", ""),
        (None, ""),
    ],
)
def test_clean_text(raw: str | None, clean: str) -> None:
    assert clean_text(raw) == clean


def test_dedup_key_ignores_case_width_and_whitespace() -> None:
    assert dedup_key("Hello  World") == dedup_key("hello world") == dedup_key("ＨＥＬＬＯ world ")
    assert dedup_key("hello world") != dedup_key("hello world!")


def _raw(rows: list[tuple[str, str | None, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        {"doc_id": [r[0] for r in rows], "text": [r[1] for r in rows], "label": [r[2] for r in rows],
         "split": [None] * len(rows), "source": ["s"] * len(rows), "source_row": list(range(len(rows))),
         "run_date": ["2026-01-01"] * len(rows)},
        schema_overrides={"text": pl.String, "label": pl.String, "split": pl.String},
    )


def test_curate_conserves_rows_dedups_and_flags_conflicts() -> None:
    raw = _raw([
        ("b", "Great product!", "pos"),
        ("a", "great   PRODUCT!", "pos"),
        ("c", "GREAT product!", "neg"),
        ("d", "", "pos"),
        ("e", "ok", "neg"),
        ("f", "this text is far too long to keep here, truly it is", "neg"),
        ("g", "Terrible service", None),
    ])
    cfg = build_config({"curate": {"min_chars": 3, "max_chars": 40}})
    curated, rejects, _ = curate_frame(raw, cfg)
    assert curated.height + rejects.height == raw.height
    assert set(curated["doc_id"]) | set(rejects["doc_id"]) == set(raw["doc_id"])
    reasons = dict(zip(rejects["doc_id"], rejects["reason"]))
    assert reasons == {"d": "empty", "e": "too_short", "f": "too_long", "a": "exact_duplicate", "c": "exact_duplicate"}
    # the first copy to arrive is kept (raw order, not the smallest id): an append never displaces a committed row
    assert set(rejects.filter(pl.col("reason") == "exact_duplicate")["duplicate_of"]) == {"b"}
    kept = curated.filter(pl.col("doc_id") == "b").row(0, named=True)
    assert kept["label_conflict"] and kept["duplicates"] == 3 and kept["cluster_id"] == "b"
    assert set(rejects.filter(pl.col("duplicate_of") == "b")["cluster_id"]) == {"b"}
    assert curated.filter(pl.col("doc_id") == "g")["label"].to_list() == [None]
    assert rejects.filter(pl.col("doc_id") == "a")["original_text"].to_list() == ["great   PRODUCT!"]


def test_splits_are_deterministic_by_text_and_honour_given_splits() -> None:
    assert assign_split("k1", 0, 0.1, 0.1) == assign_split("k1", 0, 0.1, 0.1)
    keys = [dedup_key(f"text {i}") for i in range(5000)]
    splits = [assign_split(k, 0, 0.1, 0.2) for k in keys]
    assert abs(splits.count("test") / 5000 - 0.2) < 0.03 and abs(splits.count("validation") / 5000 - 0.1) < 0.03
    raw = _raw([("a", "first text", "x"), ("b", "second text", "y")]).with_columns(split=pl.Series(["test", None]))
    curated, _, _ = curate_frame(raw, build_config({}))
    assert curated.filter(pl.col("doc_id") == "a")["split"].to_list() == ["test"]


def test_curate_of_all_duplicates_and_of_one_row() -> None:
    curated, rejects, _ = curate_frame(_raw([(str(i), "same text", "l") for i in range(5)]), build_config({}))
    assert curated.height == 1 and rejects.height == 4
    curated, rejects, _ = curate_frame(_raw([("only", "single row", None)]), build_config({}))
    assert curated.height == 1 and rejects.height == 0


def test_quality_filters_reject_symbols_and_repetition() -> None:
    raw = _raw([
        ("a", "!!! ??? ### $$$ %%% 123 456", None),
        ("b", "buy now " * 30, None),
        ("c", "A perfectly ordinary sentence about the weather, which was mild and grey all afternoon long today.", None),
    ])
    curated, rejects, _ = curate_frame(raw, build_config({"curate": {"max_chars": 10_000}}))
    assert dict(zip(rejects["doc_id"], rejects["reason"])) == {"a": "low_alpha", "b": "repetitive"}
    assert curated["doc_id"].to_list() == ["c"]


@pytest.mark.parametrize(("text", "ratio"), [
    ("😡😡😡", 1.0),                          # an emoji-only review carries its verdict
    ("👨\u200d👩\u200d👧 🇫🇷 👍🏽 ok", 1.0),   # joiners, flags' halves and skin tones belong to their emoji
    ("हिन्दी में", 1.0),                       # vowel signs and the virama belong to their syllable
    ("ดีมาก", 1.0),                           # a Thai vowel mark too
    ("★★★★☆ ♡", 1.0),                         # a star rating and a heart, which Unicode does not call emoji
    ("→ ① ✓", 0.0),                           # arrows, numbers in circles and ticks are not content
    ("48215-B", 1 / 7),                       # an order code: one letter in seven
    ("!!! 123", 0.0),
    ("   ", 0.0),
])
def test_alpha_ratio_counts_letters_and_emoji_as_a_reader_sees_characters(text: str, ratio: float) -> None:
    assert alpha_ratio(text) == pytest.approx(ratio)


def test_emoji_hindi_and_two_character_chinese_reviews_are_kept_while_codes_and_ok_are_rejected() -> None:
    raw = _raw([("a", "😍😍🎉 👍🏽", "pos"), ("b", "💔😭😭😤", "neg"), ("c", "बहुत अच्छा है", "pos"),
                ("d", "#4821-7 / 0099", None), ("e", "👎🙄", "neg"), ("f", "好评", "pos"), ("g", "最高", "pos"),
                ("h", "ok", "pos"), ("i", "😂", "pos"), ("j", "no!", "neg"), ("k", "ठीक", "pos"), ("l", "แย่", "neg"),
                ("m", "❤️❤️", "pos"), ("n", "🇯🇵🇯🇵", "pos"), ("o", "★★★★★", "pos"), ("p", "★☆☆☆☆", "neg")])
    curated, rejects, _ = curate_frame(raw, build_config({}))
    assert curated["doc_id"].to_list() == ["a", "b", "c", "e", "f", "g", "j", "k", "l", "m", "n", "o", "p"]
    # curate.min_chars (3) counts code points, a wide character (CJK, emoji) at least two: "好评" is a review, "ok" is
    # not, and Hindi or Thai vowel signs keep counting as they always did
    assert dict(zip(rejects["doc_id"], rejects["reason"])) == {"d": "low_alpha", "h": "too_short", "i": "too_short"}


@pytest.mark.parametrize(("text", "judged"), [
    ("🤦🏽\u200d♀️" * 4, 0.0),   # 4 characters as a reader sees them (20 code points): too short to judge
    ("👍🏽" * 10, 0.0), ("🇺🇸" * 10, 0.0),
    ("😂" * 25, pytest.approx(22 / 23)),  # 25 characters, 3-grams: all but the first repeat
    ("hahahahahahahahahahahahaha", pytest.approx(22 / 24)),
])
def test_repetition_counts_characters_as_a_reader_sees_them(text: str, judged: object) -> None:
    from bert_pipeline.curation.clean import repetition

    assert repetition(text) == judged


def test_bad_inputs_end_kept_or_rejected_never_crash() -> None:
    big = ("word " * 200_000).strip() + " end"  # ~1 MB, and repetitive
    raw = _raw([("a", "", None), ("b", "   \t ", None), ("c", "nul\x00byte\x00text here", None), ("d", big, None),
                ("e", None, None), ("f", "bad \ufffd\ufffd bytes but words", None)])
    curated, rejects, _ = curate_frame(raw, build_config({"curate": {"max_chars": 2_000_000}}))
    reasons = dict(zip(rejects["doc_id"], rejects["reason"]))
    assert reasons == {"a": "empty", "b": "empty", "d": "repetitive", "e": "empty"}
    assert curated.filter(pl.col("doc_id") == "c")["text"].to_list() == ["nul byte text here"]
    assert curated.height + rejects.height == raw.height


@pytest.mark.parametrize("text", ["hahahahahahahahahahahahaha", "no no no no no no no no no no", "!!!!!!!!!!!!!!!!!!!!!!!!!"])
def test_short_repetitive_texts_are_rejected(text: str) -> None:
    _, rejects, _ = curate_frame(_raw([("a", text, None)]), build_config({}))
    assert rejects["reason"].to_list() in (["repetitive"], ["low_alpha"])


@pytest.mark.parametrize("text", ["I loved the flight, thanks!", "@united where is my bag? Flight 123 landed an hour ago"])
def test_ordinary_short_texts_are_kept(text: str) -> None:
    curated, _, _ = curate_frame(_raw([("a", text, None)]), build_config({}))
    assert curated.height == 1
