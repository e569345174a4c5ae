"""The pure NER core (bert_pipeline/ner, issue 22): canonical spans and their checks, readers of annotation exports,
tag schemes and CoNLL files, constrained decoding, offset alignment on the packaged MiniLM's real tokenizer, window
merging, entity metrics (against seqeval 1.2.2) and the memorising baseline. Inputs are messy on purpose: CJK without
spaces, astral emoji and ZWJ sequences, combining accents (NFD), URLs, several entity types."""

from __future__ import annotations

import itertools
import random
import subprocess
import sys
import unicodedata
from collections import Counter

import numpy as np
import pytest

from bert_pipeline.curation.labels import check_label_spellings
from bert_pipeline.errors import InputDataError
from bert_pipeline.ner.metrics import MemorisingTagger, entity_scores, type_confusion
from bert_pipeline.ner.readers import read_doccano, read_label_studio, read_span_dicts, read_token_tags
from bert_pipeline.ner.spans import Span, SpanError, check_spans, utf8_to_code_points, utf16_to_code_points
from bert_pipeline.ner.tagging import (
    allowed_transitions, chunks, combine_window_logits, constrained_decode, detect_scheme, join_tokens,
    predict_entities, read_conll, spans_from_tags, spans_from_token_tags, tag_names, tags_from_spans,
    token_labels_for_spans,
)

TYPES = ["LOC", "MISC", "ORG", "PER"]


def test_ner_core_imports_neither_prefect_nor_torch() -> None:
    code = ("import sys\nimport bert_pipeline.ner.spans, bert_pipeline.ner.readers, bert_pipeline.ner.tagging, "
            "bert_pipeline.ner.metrics\nprint(sorted({'prefect', 'torch', 'transformers'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# ---- spans: the canonical form and its checks ----

def test_check_spans_trims_sorts_and_drops_exact_duplicates() -> None:
    text = "Met  Zoë 👩‍💻 at https://t.co/x?y=1 in 東京\u3000today"
    spans = [(38, 41, "LOC"), (4, 8, "PER"), (16, 34, "URL"), (38, 41, "LOC")]  # " Zoë": a leading space
    checked, trimmed = check_spans(text, spans, "row 7", expected_texts=None)
    assert checked == [Span(5, 8, "PER"), Span(16, 34, "URL"), Span(38, 40, "LOC")]  # "東京\u3000" trimmed too
    assert [text[s.start:s.end] for s in checked] == ["Zoë", "https://t.co/x?y=1", "東京"]
    assert trimmed == 2
    from_numpy = check_spans(text, [(np.int64(5), np.int32(8), "PER")], "row 8")  # offsets read through pandas
    assert from_numpy == ([Span(5, 8, "PER")], 0) and type(from_numpy[0][0].start) is int


def _error(text: str, spans: list, expected: list | None = None) -> SpanError:
    with pytest.raises(SpanError) as caught:
        check_spans(text, spans, "reviews.jsonl:12", expected_texts=expected)
    assert isinstance(caught.value, InputDataError) and "reviews.jsonl:12" in str(caught.value)
    return caught.value


def test_span_errors_name_where_span_context_and_setting() -> None:
    text = "🎉 Launch by Zoë at 東京タワー 🗼!"
    error = _error(text, [(19, 28, "LOC")])
    assert error.reason == "outside_text"
    assert "Span(start=19, end=28, label='LOC') is outside the text (27 code points)" in str(error)
    assert "at ⟦東京タワー 🗼!⟧" in str(error) and "`ner.offsets: utf16`" in str(error)  # 28 fits as UTF-16 units
    assert "nothing was written" in str(error)
    assert _error(text, [(5, 5, "X")]).reason == "empty_span"
    assert _error(text, [(8, 9, "X")]).reason == "whitespace_span"
    assert _error(text, [(True, 3, "X")]).reason == "bad_span"
    assert _error(text, [(1.0, 3, "X")]).reason == "bad_span"
    assert _error(text, [(2, 4, "")]).reason == "bad_label"


def test_span_text_disagreement_suggests_what_would_fit() -> None:
    text = "🎉 Launch by Zoë at 東京タワー 🗼!"
    utf16 = _error(text, [(13, 16, "PER")], ["Zoë"])  # Label Studio's offsets: the 🎉 counted twice
    assert utf16.reason == "text_mismatch"
    assert "covers 'oë ' but the annotation says 'Zoë'" in str(utf16)
    assert "it is 'Zoë': set `ner.offsets: utf16`" in str(utf16)
    inclusive = _error(text, [(12, 14, "PER")], ["Zoë"])
    assert "end offset looks inclusive" in str(inclusive) and "utf16" not in str(inclusive)
    nfd = "Met Zoe\u0308 there"  # ë as e + combining diaeresis
    normalization = _error(nfd, [(4, 8, "PER")], ["Zoë"])
    assert "Unicode normalization (NFC/NFD)" in str(normalization)


def test_overlapping_and_nested_spans_are_refused() -> None:
    text = "Bank of 東京 branch in 東京"
    overlap = _error(text, [(0, 10, "ORG"), (8, 10, "LOC"), (9, 19, "LOC")][::2])
    assert overlap.reason == "overlap" and "overlaps Span(start=0, end=10, label='ORG')" in str(overlap)
    nested = _error(text, [(8, 10, "LOC"), (0, 10, "ORG")])
    assert "Span(start=8, end=10, label='LOC') is nested inside Span(start=0, end=10, label='ORG') ('Bank of 東京')" \
        in str(nested)
    assert "keep one of them" in str(nested)
    same_range = _error(text, [(8, 10, "LOC"), (8, 10, "ORG")])  # one range, two types
    assert same_range.reason == "overlap"


def test_entity_type_spellings_are_refused_naming_where_each_first_occurs_and_the_mapping() -> None:
    check_label_spellings(["PER", "LOC", "B-PER", "ORG", "GPE"])  # a tag and a type are not spellings of one another
    counts = {"PER": 2, "per": 1, "LOC": 1, "Loc": 3, "DATE_TIME": 4, "date-time": 1}
    where = {"PER": "ner/train.jsonl row 1", "per": "ner/train.jsonl row 9", "LOC": "run_date=2026-03-01",
             "Loc": "ner/train.jsonl row 12", "DATE_TIME": "ner/train.jsonl row 2", "date-time": "ner/b.conll row 40"}
    with pytest.raises(InputDataError) as caught:
        check_label_spellings(counts, where, "ner.label_map", "ner.label_map", counts)
    message = str(caught.value)
    assert ("'DATE_TIME' (4 times, first at ner/train.jsonl row 2) and 'date-time' (1 time, first at ner/b.conll "
            "row 40)") in message
    assert "'LOC' (1 time, first at run_date=2026-03-01) and 'Loc' (3 times, first at ner/train.jsonl row 12)" in message
    assert "'PER' (2 times, first at ner/train.jsonl row 1) and 'per' (1 time, " in message
    # the mapping keeps the spelling most used
    assert '`ner.label_map: {"date-time": "DATE_TIME", "LOC": "Loc", "per": "PER"}`' in message


def test_utf16_offsets_to_code_points() -> None:
    text = "a😀b👩‍💻c東"  # a, 😀 (2 units), b, 👩 (2), ZWJ, 💻 (2), c, 東
    assert utf16_to_code_points(text, [0, 1, 3, 4, 6, 7, 9, 10, 11]) == [0, 1, 2, 3, 4, 5, 6, 7, 8]
    assert utf16_to_code_points("plain 東京", [0, 6, 8]) == [0, 6, 8]
    for bad in (2, 12, -1):  # inside 😀's surrogate pair; past the end
        with pytest.raises(ValueError, match=f"UTF-16 offset {bad} "):
            utf16_to_code_points(text, [bad])


# ---- readers ----

def test_doccano_label_and_older_labels_and_entities() -> None:
    text = "Zoë → https://x.io/ü?q=東京 and 中国银行 "
    counts: Counter[str] = Counter()
    record = {"id": 3, "text": text, "label": [[30, 35, "ORG"], [0, 4, "PER"], [6, 25, "URL"]]}
    spans = [Span(0, 3, "PER"), Span(6, 25, "URL"), Span(30, 34, "ORG")]
    assert read_doccano(record, "d.jsonl:1", counts=counts) == (text, spans)
    assert counts == Counter(trimmed_spans=2)
    older = {"text": text, "labels": [[0, 3, "PER"], [6, 25, "URL"], [30, 34, "ORG"]]}
    assert read_doccano(older, "d.jsonl:2") == (text, spans)
    relations = {"text": text, "entities": [{"id": 1, "start_offset": 30, "end_offset": 34, "label": "ORG"}],
                 "relations": []}
    assert read_doccano(relations, "d.jsonl:3") == (text, [Span(30, 34, "ORG")])
    with pytest.raises(SpanError, match="d.jsonl:4: 'label' is str; .* text-classification export"):
        read_doccano({"text": text, "label": "positive"}, "d.jsonl:4")


def _ls_task(text: str, results: list, cancelled_first: bool = True) -> dict:
    cancelled = {"id": 1, "was_cancelled": True, "result": [{"value": {"start": 0, "end": 1, "labels": ["X"]}}]}
    kept = {"id": 2, "was_cancelled": False, "result": results}
    return {"id": 9, "data": {"review": text}, "annotations": ([cancelled] if cancelled_first else []) + [kept]}


def test_label_studio_first_non_cancelled_annotation_and_utf16_setting() -> None:
    text = "🎉 Launch by Zoë at 東京タワー 🗼!"
    results = [  # Label Studio counts in the browser: UTF-16 units, so after 🎉 every offset is one more
        {"from_name": "ner", "to_name": "review", "type": "labels",
         "value": {"start": 20, "end": 25, "text": "東京タワー", "labels": ["LOC"]}},
        {"from_name": "ner", "to_name": "review", "type": "labels",
         "value": {"start": 13, "end": 16, "text": "Zoë", "labels": ["PER", "FAN"]}},
        {"from_name": "sentiment", "to_name": "review", "type": "choices", "value": {"choices": ["positive"]}},
        {"type": "relation", "from_id": "a", "to_id": "b"},
    ]
    counts: Counter[str] = Counter()
    got = read_label_studio(_ls_task(text, results), "export.json[0]", text_key="review", offsets="utf16",
                            counts=counts)
    assert got == (text, [Span(12, 15, "PER"), Span(19, 24, "LOC")])
    assert counts == Counter(multi_label_regions=1)
    with pytest.raises(SpanError, match=r"export.json\[0\]: .*set `ner.offsets: utf16`") as caught:
        read_label_studio(_ls_task(text, results), "export.json[0]", text_key="review")
    assert caught.value.reason == "text_mismatch"
    all_cancelled = {"data": {"text": text}, "annotations": [{"was_cancelled": True, "result": []}]}
    assert read_label_studio(all_cancelled, "export.json[1]", counts=counts) is None
    assert read_label_studio({"data": {"text": text}, "annotations": []}, "export.json[2]", counts=counts) is None
    assert counts["unlabelled_records.cancelled"] == 1 and counts["unlabelled_records.unannotated"] == 1
    with pytest.raises(SpanError, match=r"export.json\[3\] \(data\): the record has no text string under 'text'"):
        read_label_studio(_ls_task(text, results), "export.json[3]")


def test_label_studio_annotators_must_agree_unless_one_annotation_is_the_ground_truth() -> None:
    text = "🎉 Ngozi Okonjo at Red Cross"

    def annotation(number: int, *spans: tuple[int, int, str, str], **flags: object) -> dict:
        return {"id": number, "completed_by": 40 + number, **flags, "result": [
            {"type": "labels", "value": {"start": s, "end": e, "text": t, "labels": [label]}} for s, e, label, t in spans]}

    person = (3, 15, "PER", "Ngozi Okonjo")  # UTF-16 units, as the browser counts: 🎉 is 2
    task = {"id": 4, "data": {"text": text}, "annotations": [
        annotation(1, person), annotation(2, (3, 15, "ORG", "Ngozi Okonjo"), (19, 28, "ORG", "Red Cross")),
        annotation(3, was_cancelled=True)]}
    with pytest.raises(SpanError) as caught:
        read_label_studio(task, "export.json[0]", offsets="utf16")
    assert caught.value.reason == "annotations_disagree"
    assert ("export.json[0]: the task has 2 annotations that disagree (annotation 1 by 41: PER 'Ngozi Okonjo'; "
            "annotation 2 by 42: ORG 'Ngozi Okonjo', ORG 'Red Cross'). Mark the one to train on as ground truth") \
        in str(caught.value)
    task["annotations"][1]["ground_truth"] = True  # the reviewer's choice wins
    assert read_label_studio(task, "export.json[0]", offsets="utf16") == (
        text, [Span(2, 14, "ORG"), Span(18, 27, "ORG")])
    task["annotations"][0]["ground_truth"] = True  # two truths that disagree: the advice is about the mark
    with pytest.raises(SpanError) as caught:
        read_label_studio(task, "export.json[0]", offsets="utf16")
    assert "the task has 2 ground-truth annotations that disagree (annotation 1 by 41: PER" in str(caught.value)
    assert "They are all marked as ground truth: keep that mark on the one to train on only, and export again" \
        in str(caught.value)
    counts: Counter[str] = Counter()
    agreeing = {"id": 5, "data": {"text": text}, "annotations": [annotation(1, person), annotation(2, person)]}
    assert read_label_studio(agreeing, "export.json[1]", offsets="utf16", counts=counts) == (
        text, [Span(2, 14, "PER")])
    assert counts["agreeing_annotations"] == 1
    # a browser selection that took the space after the name agrees once trimmed, as the span is read
    spaced = {"id": 6, "data": {"text": text}, "annotations": [annotation(1, person),
                                                               annotation(2, (3, 16, "PER", "Ngozi Okonjo "))]}
    assert read_label_studio(spaced, "export.json[2]", offsets="utf16") == (text, [Span(2, 14, "PER")])


def test_ambiguous_offsets_after_an_emoji_in_text_without_spaces_are_refused_unless_trusted() -> None:
    record = {"text": "😀 李伟在东京工作，很开心", "label": [[5, 7, "LOC"]]}  # code points 东京, UTF-16 units 在东
    with pytest.raises(SpanError) as caught:
        read_doccano(record, "d.jsonl:9")
    assert caught.value.reason == "ambiguous_offsets"
    assert "give '东京' and read as UTF-16 units (an emoji counts 2) give '在东'" in str(caught.value)
    assert read_doccano(record, "d.jsonl:9", ambiguous="code_points") == (record["text"], [Span(5, 7, "LOC")])
    assert read_doccano(record, "d.jsonl:9", offsets="utf16") == (record["text"], [Span(4, 6, "LOC")])
    # a UTF-16 reading that starts with a space (' 李') is no exporter's entity: code points, no setting needed
    assert read_doccano({"text": record["text"], "label": [[2, 4, "PER"]]}, "d.jsonl:10")[1] == [Span(2, 4, "PER")]
    # a Latin name inside Chinese: the UTF-16 reading '在Pari' cuts the word the code points keep whole
    mixed = {"text": "😀 王芳在Paris工作", "label": [[5, 10, "LOC"]]}
    assert read_doccano(mixed, "d.jsonl:11")[1] == [Span(5, 10, "LOC")]
    with pytest.raises(SpanError, match="read as UTF-16 units \\(an emoji counts 2\\) give 'Paris'"):
        read_doccano({"text": mixed["text"], "label": [[6, 11, "LOC"]]}, "d.jsonl:12")  # the browser's [6, 11)


def test_the_no_space_script_pattern_agrees_with_coverage() -> None:
    from bert_pipeline.ner.spans import NO_SPACE_CHAR
    from bert_pipeline.text.coverage import NO_SPACE_SCRIPTS, char_script

    sample = "李伟東京ひらがなカタカナภาษาไทยພາສາລາວភាសាខ្មែរမြန်မာ Zoë Saldaña 한국어 العربية Ελληνικά 123 😀 ー。"
    assert [bool(NO_SPACE_CHAR.match(c)) for c in sample] == [char_script(c) in NO_SPACE_SCRIPTS for c in sample]


def test_word_edges_decide_in_spaced_scripts_and_tags_are_never_doubted() -> None:
    # whole words, words ending in punctuation or digits, sub-word spans in hashtags: read as the code points they
    # are, as before the ambiguity check (their UTF-16 readings are shifted one character left)
    for text, span, entity in (("🎉 Zoë Saldaña flew to Paris", (22, 27), "Paris"),
                               ("🎉 Apple Inc. beat estimates", (2, 12), "Apple Inc."),
                               ("🔥 moving to the U.S.", (16, 20), "U.S."), ("🎉 Formula 1 is back", (2, 11), "Formula 1"),
                               ("😀 #Paris2024 rocks", (3, 8), "Paris")):
        got_text, spans = read_doccano({"text": text, "label": [[*span, "X"]]}, "d.jsonl:11")
        assert [got_text[s.start:s.end] for s in spans] == [entity]
    # a code-point reading that cuts a word where the UTF-16 one does not is still refused with the utf16 advice
    with pytest.raises(SpanError, match="set `ner.offsets: utf16`") as caught:
        read_doccano({"text": "👍 Berlin rocks", "label": [[3, 9, "LOC"]]}, "d.jsonl:12")
    assert caught.value.reason == "utf16_offsets"
    # offsets computed here from tokens (CoNLL, HF token lists) are code points by construction
    tokens = {"tokens": ["😀", "李", "伟", "在", "东", "京"], "ner_tags": ["O", "B-PER", "I-PER", "O", "B-LOC", "I-LOC"]}
    text, spans = read_token_tags(tokens, "weibo.conll:3")
    assert [(text[s.start:s.end], s.label) for s in spans] == [("李伟", "PER"), ("东京", "LOC")]


def test_quoted_offsets_in_doccano_order_are_named_as_offsets_and_argilla_order_still_reads() -> None:
    with pytest.raises(SpanError, match=r"span \('0', '8', 'LOC'\) has offsets '0', '8'; they must be integers"):
        read_doccano({"text": "New York City is big", "label": [["0", "8", "LOC"]]}, "d.jsonl:2")
    argilla = {"text": "New York City is big", "annotation": [["LOC", 0, 13], ["1", 17, 20]]}  # "1": a label
    assert read_span_dicts(argilla, "a.jsonl:1", spans_key="annotation") == (
        argilla["text"], [Span(0, 13, "LOC"), Span(17, 20, "1")])


def test_spacy_prodigy_argilla_span_lists() -> None:
    text = "José (NFD) flew Air 中国 ✈️ to 大阪"
    text = text.replace("José", "Jose\u0301")
    spacy = {"text": text, "ents": [{"start": 0, "end": 5, "label": "PER"}, {"start": 17, "end": 23, "label": "ORG"}]}
    assert read_span_dicts(spacy, "doc 0") == (text, [Span(0, 5, "PER"), Span(17, 23, "ORG")])
    prodigy = {"text": text, "answer": "accept", "spans": [
        {"start": 30, "end": 32, "label": "GPE", "token_start": 7, "token_end": 7},
        {"start_char": 0, "end_char": 5, "label": "PER"}]}
    assert read_span_dicts(prodigy, "p.jsonl:4") == (text, [Span(0, 5, "PER"), Span(30, 32, "GPE")])
    counts: Counter[str] = Counter()
    assert read_span_dicts({**prodigy, "answer": "reject"}, "p.jsonl:5", counts=counts) is None
    assert counts == Counter({"unlabelled_records.answer_reject": 1})
    argilla_v1 = {"text": text, "annotation": [["GPE", 30, 32], ["PER", 0, 5]]}
    assert read_span_dicts(argilla_v1, "a", spans_key="annotation")[1] == [Span(0, 5, "PER"), Span(30, 32, "GPE")]
    with pytest.raises(SpanError, match=r"p.jsonl:6: no list of entities under \['spans', 'entities', 'ents'\]"):
        read_span_dicts({"text": text, "answer": "accept"}, "p.jsonl:6")


def test_token_tags_as_strings_and_as_ints_with_a_label_list() -> None:
    hf_names = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]  # conll2003's order
    record = {"id": "0", "tokens": ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."],
              "ner_tags": [3, 0, 7, 0, 0, 0, 7, 0, 0]}
    text, spans = read_token_tags(record, "train[0]", label_names=hf_names)
    assert text == "EU rejects German call to boycott British lamb ."
    assert spans == [Span(0, 2, "ORG"), Span(11, 17, "MISC"), Span(34, 41, "MISC")]
    mixed = {"tokens": ["在", "東京", "タワー", "で", "Tim", "Cook", "と", "会", "った", "🙂"],
             "tags": ["O", "B-LOC", "I-LOC", "O", "I-PER", "I-PER", "O", "O", "O", "O"]}
    counts: Counter[str] = Counter()
    text, spans = read_token_tags(mixed, "wiki[5]", tags_key="tags", counts=counts)
    assert text == "在東京タワーで Tim Cook と会った🙂"  # Latin words keep their spaces; the emoji, a symbol, none
    assert [(text[s.start:s.end], s.label) for s in spans] == [("東京タワー", "LOC"), ("Tim Cook", "PER")]
    assert counts["malformed_tag_sequences"] == 1  # I-PER after O: read as an entity, counted
    dated = {"tokens": ["2005", "年", "7", "月", "、", "（", "北海道", "）", "で", "iPhone", "を", "買った", "."],
             "tags": ["B-DAT", "I-DAT", "I-DAT", "I-DAT", "O", "O", "B-LOC", "O", "O", "B-ART", "O", "O", "O"]}
    text, spans = read_token_tags(dated, "hironsan[0]", tags_key="tags")  # as Japanese writes it (hironsan corpus)
    assert text == "2005年7月、（北海道）で iPhone を買った."
    assert [(text[s.start:s.end], s.label) for s in spans] == [("2005年7月", "DAT"), ("北海道", "LOC"),
                                                              ("iPhone", "ART")]
    with pytest.raises(SpanError, match=r"train\[1\]: integer tags \[0, 3\] need the tag names they index: set "
                                        r"ner.tag_names"):
        read_token_tags({"tokens": ["a", "b"], "ner_tags": [3, 0]}, "train[1]")


def test_join_tokens_glues_only_chinese_and_japanese_and_keeps_space_tokens() -> None:
    assert join_tokens(["東京", "タワー", "は", "Tokyo", "Tower", "です", "。"]) == (
        "東京タワーは Tokyo Tower です。", [(0, 2), (2, 5), (5, 6), (7, 12), (13, 18), (19, 21), (21, 22)])
    korean = ["서울", "에", " ", "갔", "다"]  # KLUE-style: the space is a token
    assert join_tokens(korean)[0] == "서울 에 갔 다"  # Hangul words are spaced
    assert join_tokens(korean, glue_scripts=("Han", "Hangul"))[0] == "서울에 갔다"
    # a digit beside Han is written without a space ("2020年"); digits beside each other keep theirs (each token
    # may be a number: a character-level file is joined with separator "", ner.token_separator auto)
    assert join_tokens(["中", "国", "2", "0", "2", "0", "年"])[0] == "中国2 0 2 0年"
    assert join_tokens(["中", "国", "2", "0", "2", "0", "年"], separator="")[0] == "中国2020年"


# ---- tag schemes and CoNLL files ----

def test_detect_scheme() -> None:
    assert detect_scheme([["I-PER", "I-PER", "O", "I-LOC"], ["I-ORG", "B-ORG", "O"]]) == "IOB1"
    assert detect_scheme(["B-PER", "I-PER", "O", "B-LOC"]) == "IOB2"
    assert detect_scheme(["B-PER", "O", "I-LOC"]) == "IOB2"  # a malformed IOB2 file is still IOB2
    assert detect_scheme([["O"], ["B-PER"]]) == "IOB2"
    assert detect_scheme(["S-PER", "B-LOC", "I-LOC", "E-LOC"]) == "BIOES"
    assert detect_scheme(["U-PER", "B-LOC", "L-LOC"]) == "BILOU"
    assert detect_scheme(["B-ORG", "M-ORG", "E-ORG", "S-PER"]) == "BMES"
    with pytest.raises(SpanError, match=r"f.txt: tag prefixes \['I', 'M'\] fit no scheme"):
        detect_scheme(["M-ORG", "I-ORG"], "f.txt")
    with pytest.raises(SpanError, match="tag 'PER-B' is neither O nor PREFIX-TYPE"):
        detect_scheme(["PER-B"])


def test_every_scheme_reads_the_same_entities() -> None:
    offsets = [(0, 3), (4, 9), (10, 12), (13, 18), (19, 20), (21, 24)]
    written = {
        "IOB1": ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG"],
        "IOB2": ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "B-ORG"],
        "BIOES": ["B-PER", "E-PER", "O", "S-LOC", "S-LOC", "S-ORG"],
        "BILOU": ["B-PER", "L-PER", "O", "U-LOC", "U-LOC", "U-ORG"],
        "BMES": ["B-PER", "E-PER", "O", "S-LOC", "S-LOC", "S-ORG"],
    }
    expected = [Span(0, 9, "PER"), Span(13, 18, "LOC"), Span(19, 20, "LOC"), Span(21, 24, "ORG")]
    for scheme, tags in written.items():
        assert spans_from_tags(offsets, tags, scheme) == (expected, 0), scheme
        assert tags_from_spans(offsets, expected, scheme) == tags, scheme


def test_malformed_sequences_are_read_as_seqeval_reads_them_and_counted() -> None:
    iob2 = ["O", "I-PER", "I-PER", "O", "B-LOC", "I-ORG", "B-MISC"]
    assert chunks(iob2, "IOB2") == ([("PER", 1, 2), ("LOC", 4, 4), ("ORG", 5, 5), ("MISC", 6, 6)], 2)
    bioes = ["B-PER", "I-PER", "O", "E-LOC", "S-ORG", "B-MISC", "E-MISC"]
    assert chunks(bioes, "BIOES") == ([("PER", 0, 1), ("LOC", 3, 3), ("ORG", 4, 4), ("MISC", 5, 6)], 2)
    bmes = ["M-ORG", "E-ORG", "B-PER", "S-LOC"]
    assert chunks(bmes, "BMES") == ([("ORG", 0, 1), ("PER", 2, 2), ("LOC", 3, 3)], 2)
    assert chunks(["B-LOC", "I-LOC", "O", "I-LOC"], "IOB1") == ([("LOC", 0, 1), ("LOC", 3, 3)], 1)
    with pytest.raises(SpanError, match="tag 'E-LOC' is not in scheme IOB2"):
        chunks(["B-LOC", "E-LOC"], "IOB2")


def test_chunking_agrees_with_seqeval_default_mode_on_random_sequences() -> None:
    get_entities = pytest.importorskip("seqeval.metrics.sequence_labeling").get_entities
    as_seqeval = {"L": "E", "U": "S", "M": "I"}
    prefixes = {"IOB1": "BI", "IOB2": "BI", "BIOES": "BIES", "BILOU": "BILU", "BMES": "BMES"}
    rng = random.Random(22)
    for scheme, marks in prefixes.items():
        for _ in range(400):
            vocabulary = ["O"] + [f"{m}-{t}" for m in marks for t in ("A", "B")]
            tags = [rng.choice(vocabulary) for _ in range(rng.randint(0, 9))]
            mapped = [t if t == "O" else f"{as_seqeval.get(t[0], t[0])}{t[1:]}" for t in tags]
            assert chunks(tags, scheme)[0] == get_entities(mapped), (scheme, tags)


def test_spans_to_tags_to_spans_round_trip_in_every_scheme() -> None:
    rng = random.Random(5)
    for scheme in ("IOB1", "IOB2", "BIOES", "BILOU", "BMES"):
        for _ in range(200):
            n = rng.randint(0, 12)
            offsets = [(2 * i, 2 * i + 1) for i in range(n)]
            spans = _random_token_spans(rng, n)
            tags = tags_from_spans(offsets, spans, scheme)
            assert spans_from_tags(offsets, tags, scheme) == (spans, 0), (scheme, tags)


def _random_token_spans(rng: random.Random, n: int, offsets=None) -> list[Span]:
    """Non-overlapping spans over tokens i -> (2i, 2i+1), adjacent entities of one type included."""
    spans, i = [], 0
    while i < n:
        if rng.random() < 0.4:
            length = rng.randint(1, min(3, n - i))
            spans.append(Span(2 * i, 2 * (i + length) - 1, rng.choice(TYPES)))
            i += length
        else:
            i += rng.randint(0, 1)
    return spans


CONLL = [
    "-DOCSTART- -X- -X- O",
    "",
    "EU NNP B-NP B-ORG",
    "rejects VBZ B-VP O",
    "German JJ B-NP B-MISC",
    "call NN I-NP O",
    ". . O O",
    "",
    "",
    "# id 42\tdomain=en",
    "Peter\tB-PER\r\n",
    "Blackburn\tI-PER\r\n",
    "\t\n",
    "-DOCSTART-\tO",
    "我\tO",
    "爱\tO",
    "北\tB-LOC",
    "京\tI-LOC",
    "天\tB-LOC",
    "安\tI-LOC",
    "门\tI-LOC",
    "😀\tO",
    "",
    "said O",
    "Smith I-PER",
    "",
    "# O",
    "NLP B-MISC",
]


def test_read_conll_file() -> None:
    read = read_conll(CONLL, "wiki.conll")
    assert (read.scheme, read.malformed, read.documents) == ("IOB2", 1, 2)
    assert read.sentences == [
        ("EU rejects German call .", (Span(0, 2, "ORG"), Span(11, 17, "MISC")), 3),
        ("Peter Blackburn", (Span(0, 15, "PER"),), 11),
        ("我爱北京天安门😀", (Span(2, 4, "LOC"), Span(4, 7, "LOC")), 15),
        ("said Smith", (Span(5, 10, "PER"),), 24),
        ("# NLP", (Span(2, 5, "MISC"),), 27),  # '#' with a tag is a token, not a comment
    ]
    with pytest.raises(SpanError, match=r"wiki.conll:2: line 'Peter' needs a token in the first column and a tag"):
        read_conll(["EU B-ORG", "Peter", ""], "wiki.conll")
    with pytest.raises(SpanError, match=r"wiki.conll:3: tag 'B_PER' is neither O nor PREFIX-TYPE"):
        read_conll(["EU B-ORG", "", "Peter B_PER"], "wiki.conll")
    with pytest.raises(SpanError, match=r"wiki.conll:3 \(sentence\): tag 'E-PER' is not in scheme IOB2"):
        read_conll(["EU B-ORG", "", "Peter B-PER", "Smith E-PER"], "wiki.conll", scheme="BIO")


GERMEVAL = [  # GermEval 2014's layout: a running index, the token, outer entities, nested entities
    "# http://de.wikipedia.org/wiki/Manfred_Korfmann [2009-10-17]",
    "1\tAachen\tB-LOC\tO",
    "2\tist\tO\tO",
    "3\tdie\tO\tO",
    "4\tStadt\tO\tO",
    "5\tder\tO\tO",
    "6\tRWTH\tB-ORG\tO",
    "7\tAachen\tI-ORG\tB-LOC",
    "",
    "# http://de.wikipedia.org/wiki/Berlin [2009-10-18]",
    "1\tBerliner\tB-LOCderiv\tO",
    "2\tsagen\tO\tO",
    "3\t1\tO\tO",
]
CONLL_2003 = ["-DOCSTART- -X- -X- O", "", "EU NNP B-NP I-ORG", "rejects VBZ B-VP O", "German JJ B-NP I-MISC",
              "call NN I-NP O", ". . O O", "", "12 CD B-NP O", "Peter NNP B-NP I-PER", "Blackburn NNP I-NP I-PER"]


def test_read_conll_finds_the_token_after_a_running_index_and_refuses_two_tag_layers() -> None:
    """A running index is not the token (GermEval 2014, CoNLL-U); two columns of tags of the same entity types are
    two annotation layers and which one to read is asked for, with the setting; CoNLL-2003's chunk tags (NP, VP)
    before its NER column are not entity types, so its last column is read as it always was."""
    with pytest.raises(SpanError, match=r"germeval.tsv: columns 3 and 4 both hold entity tags \(LOC, LOCderiv, ORG; "
                                        r"LOC\): two annotation layers.*Set ner.conll_tag_column") as refused:
        read_conll(GERMEVAL, "germeval.tsv")
    assert refused.value.reason == "ambiguous_columns"
    # a night whose nested layer is empty is as ambiguous: never read from the nested column
    flat_night = [line.rsplit("\t", 1)[0] + "\tO" if "\t" in line else line for line in GERMEVAL]
    with pytest.raises(SpanError, match=r"columns 3 and 4 both hold entity tags \(LOC, LOCderiv, ORG; O only\)"):
        read_conll(flat_night, "germeval.tsv")
    outer = read_conll(GERMEVAL, "germeval.tsv", tag_column=3)
    assert outer.sentences == [("Aachen ist die Stadt der RWTH Aachen", (Span(0, 6, "LOC"), Span(25, 36, "ORG")), 2),
                               ("Berliner sagen 1", (Span(0, 8, "LOCderiv"),), 11)]
    nested = read_conll(GERMEVAL, "germeval.tsv", tag_column=4)
    assert nested.sentences[0][1] == (Span(30, 36, "LOC"),)
    assert read_conll(GERMEVAL, "germeval.tsv", token_column=1, tag_column=3).sentences[0][0] == "1 2 3 4 5 6 7"
    with pytest.raises(SpanError, match=r"germeval.tsv:2: line .* needs a token in column 2 and a tag in column 9"):
        read_conll(GERMEVAL, "germeval.tsv", tag_column=9)
    # an index counted from 0, over the whole file, or with CoNLL-U's multiword range is still not the token
    for index in (lambda i, n: str(i - 1), lambda i, n: str(n + 1), lambda i, n: "4-5" if i == 4 else str(i)):
        lines, n = [], 0
        for i, (token, tag) in enumerate([("EU", "B-ORG"), ("rejects", "O"), ("German", "B-MISC"), ("call", "O")], 1):
            lines.append(f"{index(i, n)}\t{token}\t_\t{tag}")
            n += 1
        assert read_conll(lines, "ud.conllu").sentences[0][:2] == (
            "EU rejects German call", (Span(0, 2, "ORG"), Span(11, 17, "MISC")))
    from bert_pipeline.ner.tagging import looks_like_conll

    assert looks_like_conll("EU\tB-ORG\t\nrejects\tO\t\n") and not looks_like_conll("great flight\nlost my bag\n")
    # a trailing tab is not an empty tag column; a tab-separated space token (KLUE) stays a token
    assert read_conll(["EU\tB-ORG\t", "said\tO\t"], "trail.conll").sentences[0][:2] == ("EU said", (Span(0, 2, "ORG"),))
    assert read_conll(["서울\tB-LC", " \tO", "간다\tO"], "klue.tsv").sentences[0][:2] == ("서울 간다", (Span(0, 2, "LC"),))
    # the German CoNLL-2003 data's chunk tags (I-NC, I-VC) are phrases too: its last column is read
    german = read_conll(["Ereignis Ereignis NN I-NC O", "in in APPR I-PC O", "Deutschland Deutschland NE I-NC I-LOC",
                         "läuft laufen VVFIN I-VC O"], "deu.train")
    assert german.sentences[0][:2] == ("Ereignis in Deutschland läuft", (Span(12, 23, "LOC"),))
    conll = read_conll(CONLL_2003, "eng.train")
    assert (conll.scheme, conll.documents) == ("IOB1", 1)
    assert conll.sentences == [("EU rejects German call .", (Span(0, 2, "ORG"), Span(11, 17, "MISC")), 3),
                               ("12 Peter Blackburn", (Span(3, 18, "PER"),), 9)]  # "12" with a tag is a token


def test_read_conll_bmes_chinese() -> None:
    lines = ["中 B-ORG", "国 M-ORG", "银 M-ORG", "行 E-ORG", "在 O", "2 O", "0 O", "2 O", "0 O", "年 O", "李 S-PER"]
    read = read_conll(lines, "msra.bmes")
    assert (read.scheme, read.malformed) == ("BMES", 0)
    assert read.sentences == [("中国银行在2 0 2 0年李", (Span(0, 4, "ORG"), Span(13, 14, "PER")), 1)]
    flat = read_conll(lines, "msra.bmes", separator="")
    assert flat.sentences == [("中国银行在2020年李", (Span(0, 4, "ORG"), Span(10, 11, "PER")), 1)]


# ---- the model side ----

def test_tag_names_and_allowed_transitions() -> None:
    names = tag_names(["PER", "LOC", "PER"])
    assert names == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    allowed, start = allowed_transitions(names)
    assert allowed.astype(int).tolist() == [
        [1, 1, 0, 1, 0],  # after O: no I-
        [1, 1, 1, 1, 0],  # after B-LOC: I-LOC
        [1, 1, 1, 1, 0],
        [1, 1, 0, 1, 1],  # after B-PER: I-PER
        [1, 1, 0, 1, 1],
    ]
    assert start.tolist() == [True, True, False, True, False]


def _brute_force(log_probs: np.ndarray, allowed: np.ndarray, start: np.ndarray) -> tuple[float, list[int]]:
    best: tuple[float, list[int]] = (-np.inf, [])
    for path in itertools.product(range(log_probs.shape[1]), repeat=len(log_probs)):
        if not start[path[0]] or not all(allowed[a, b] for a, b in zip(path, path[1:])):
            continue
        score = float(sum(log_probs[i, t] for i, t in enumerate(path)))
        if score > best[0]:
            best = (score, list(path))
    return best


def test_constrained_viterbi_is_the_best_allowed_path() -> None:
    names = tag_names(["LOC", "PER"])
    allowed, start = allowed_transitions(names)
    # argmax per token is O I-PER I-PER (an I- without its B-): the constrained path must not be
    log_probs = np.log(np.array([[0.6, 0.1, 0.1, 0.15, 0.05], [0.1, 0.1, 0.1, 0.2, 0.5], [0.1, 0.1, 0.1, 0.2, 0.5]]))
    assert log_probs.argmax(axis=1).tolist() == [0, 4, 4]
    assert constrained_decode(log_probs, allowed, start) == [0, 3, 4]
    assert constrained_decode(np.zeros((0, 5)), allowed, start) == []
    rng = np.random.default_rng(0)
    for n in range(1, 6):
        for _ in range(20):
            scores = np.log(rng.dirichlet(np.ones(5), size=n))
            path = constrained_decode(scores, allowed, start)
            best_score, _ = _brute_force(scores, allowed, start)
            assert sum(scores[i, t] for i, t in enumerate(path)) == pytest.approx(best_score, abs=1e-12)
            assert start[path[0]] and all(allowed[a, b] for a, b in zip(path, path[1:]))
    with pytest.raises(ValueError, match="NaN"):
        constrained_decode(np.full((2, 5), np.nan), allowed, start)


def test_spans_from_token_tags_skips_special_tokens_and_averages_scores() -> None:
    names = tag_names(["LOC", "PER"])  # O B-LOC I-LOC B-PER I-PER
    offsets = [(0, 0), (0, 3), (3, 5), (6, 8), (9, 12), (12, 14), (0, 0)]
    tags = [3, 3, 4, 0, 2, 2, 1]  # [CLS] B-PER I-PER O I-LOC I-LOC [SEP]: the I-LOC after O starts an entity
    scores = [0.99, 0.9, 0.7, 0.8, 0.6, 0.4, 0.1]
    got = spans_from_token_tags(tags, offsets, names, scores)
    assert [(e.start, e.end, e.label) for e in got] == [(0, 5, "PER"), (9, 14, "LOC")]
    assert [e.score for e in got] == [pytest.approx(0.8), pytest.approx(0.5)]


@pytest.fixture(scope="module")
def tokenizer():
    transformers = pytest.importorskip("transformers")
    from bert_pipeline.modeling.models import resolve_model_dir

    return transformers.AutoTokenizer.from_pretrained(resolve_model_dir(""))


MESSY = "東京大学のYamada Tarōが https://example.com/path?q=1 😀 を見た。Jose\u0301 Martí 👍🏽 visited 東京タワー🗼 and Zürich"
MESSY_ENTITIES = [("東京大学", "ORG"), ("Yamada Tarō", "PER"), ("https://example.com/path?q=1", "URL"),
                  ("Jose\u0301", "PER"), ("Martí", "PER"), ("東京タワー", "LOC"), ("Zürich", "LOC")]


def _messy_spans() -> list[Span]:
    return [Span(MESSY.index(s), MESSY.index(s) + len(s), label) for s, label in MESSY_ENTITIES]


def test_offset_alignment_round_trip_on_the_real_tokenizer(tokenizer) -> None:
    offsets = np.array(tokenizer(MESSY, return_offsets_mapping=True)["offset_mapping"])
    names = tag_names(["LOC", "ORG", "PER", "URL"])
    labels, mismatches = token_labels_for_spans(offsets, _messy_spans(), names)
    assert mismatches == 1  # 東京タワー: the vocabulary has no タワー, one [UNK] covers タワー🗼
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(MESSY)["input_ids"])
    shown = [(tok, names[i] if i >= 0 else "-") for tok, i in zip(tokens, labels)]
    assert shown[:12] == [("[CLS]", "-"), ("東", "B-ORG"), ("京", "I-ORG"), ("大", "I-ORG"), ("学", "I-ORG"),
                          ("の", "O"), ("##yama", "B-PER"), ("##da", "I-PER"), ("tar", "I-PER"), ("##o", "I-PER"),
                          ("##か", "O"), ("https", "B-URL")]  # が is か + a dakuten the normalizer dropped
    assert shown[-1] == ("[SEP]", "-")
    # a model that predicts exactly these labels gets the entities back, sliced from the text as stored
    logits = np.where(np.arange(len(names))[None, :] == np.maximum(labels, 0)[:, None], 5.0, 0.0)
    found = predict_entities(logits, offsets, names, text=MESSY)
    assert [(MESSY[e.start:e.end], e.label) for e in found] == [
        ("東京大学", "ORG"), ("Yamada Tarō", "PER"), ("https://example.com/path?q=1", "URL"), ("Jose\u0301", "PER"),
        ("Martí", "PER"), ("東京タワー🗼", "LOC"), ("Zürich", "LOC")]  # the one mismatch comes back a token wider
    assert {round(e.score, 6) for e in found} == {round(np.exp(5) / (np.exp(5) + len(names) - 1), 6)}
    # without the text, the NFD accent the normalizer dropped from 'jose' is lost
    bare = predict_entities(logits, offsets, names)
    assert [MESSY[e.start:e.end] for e in bare][3] == "Jose"


def test_a_span_edge_inside_a_token_is_counted_and_the_token_labelled() -> None:
    names = tag_names(["LOC", "ORG"])
    offsets = [(0, 0), (0, 6), (6, 9), (10, 14), (0, 0)]  # [CLS] "Berlin" "##ers" "club" [SEP]
    labels, mismatches = token_labels_for_spans(offsets, [Span(0, 7, "LOC"), Span(8, 14, "ORG")], names)
    assert labels.tolist() == [-100, 1, 2, 3, -100]  # the shared token stays in the first span; ORG starts with B-
    assert mismatches == 2
    labels, mismatches = token_labels_for_spans(offsets, [Span(15, 17, "LOC")], names)  # covers no token
    assert (labels.tolist(), mismatches) == ([-100, 0, 0, 0, -100], 1)
    with pytest.raises(SpanError, match="label 'PER' is not among the model's tags"):
        token_labels_for_spans(offsets, [Span(0, 6, "PER")], names)


def test_each_token_takes_the_window_that_reads_it_in_most_context() -> None:
    names = tag_names(["PER"])  # O B-PER I-PER
    rng = np.random.default_rng(3)
    whole = rng.normal(size=(7, 3)).astype(np.float32)
    assert np.array_equal(combine_window_logits([whole], [0], 7), whole)  # one window: exactly its logits
    assert combine_window_logits([whole], [0], 7).dtype == np.float32
    o, b, i = np.eye(3, dtype=np.float32) * 4.0
    offsets = [(2 * t, 2 * t + 1) for t in range(13)]
    # tokens 0..12, a PER entity on tokens 4..5 ("São Paulo"); window A = tokens 0..7, window B = tokens 5..12
    window_a = np.stack([o, o, o, o, b, i, o, o])
    window_b = np.stack([b * 2, o, o, o, o, o, o, o])  # token 5 first, without its left context: a new name
    merged = combine_window_logits([window_a, window_b], [0, 5], 13)
    assert merged[5].tolist() == i.tolist()  # 2 tokens of context each side in A, none on its left in B
    assert merged[8].tolist() == o.tolist() and merged[4].tolist() == b.tolist()
    assert [(e.start, e.end, e.label) for e in predict_entities(merged, offsets, names)] == [(8, 11, "PER")]
    mean = (window_a[5:] + window_b[:3]) / 2  # what averaging the windows gave: the entity split in two
    averaged = np.concatenate([window_a[:5], mean, window_b[3:]])
    assert [(e.start, e.end) for e in predict_entities(averaged, offsets, names)] == [(8, 9), (10, 11)]
    with pytest.raises(ValueError, match=r"tokens \[6, 7\]\.\.\. are in no window"):
        combine_window_logits([window_a[:6], window_b[:0]], [0, 8], 8)


# ---- metrics and the baseline ----

def test_entity_scores_and_type_confusion_by_hand() -> None:
    gold = [[Span(0, 5, "PER"), Span(10, 15, "LOC")], [(0, 2, "ORG")], []]
    pred = [[Span(0, 5, "PER"), Span(10, 15, "ORG")], [(0, 3, "ORG", 0.9)], []]
    scores = entity_scores(gold, pred)
    third = pytest.approx(1 / 3)
    assert scores["micro"] == {"precision": third, "recall": third, "f1": third, "support": 3, "predicted": 3,
                               "correct": 1}
    assert scores["per_type"] == {
        "LOC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
        "ORG": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
        "PER": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
    }
    assert scores["macro"] == {"precision": third, "recall": third, "f1": third, "support": 3}
    assert type_confusion(gold, pred) == Counter({("LOC", "ORG"): 1})
    assert entity_scores([[]], [[]])["micro"]["f1"] == 0.0
    with pytest.raises(ValueError, match="2 gold documents but 1 predicted"):
        entity_scores([[], []], [[]])


def _seqeval_report(gold_tags: list[list[str]], pred_tags: list[list[str]], strict: bool) -> dict:
    seqeval_metrics = pytest.importorskip("seqeval.metrics")
    iob2 = pytest.importorskip("seqeval.scheme").IOB2
    kwargs = {"mode": "strict", "scheme": iob2} if strict else {}
    return seqeval_metrics.classification_report(gold_tags, pred_tags, output_dict=True, zero_division=0, **kwargs)


SEQEVAL_KEY = {"f1": "f1-score"}


def _assert_same(mine: dict, theirs: dict) -> None:
    for label, values in mine["per_type"].items():
        for key in ("precision", "recall", "f1", "support"):
            assert values[key] == pytest.approx(theirs[label][SEQEVAL_KEY.get(key, key)], abs=1e-12), (label, key)
    assert set(mine["per_type"]) == set(theirs) - {"micro avg", "macro avg", "weighted avg"}
    for mine_key, their_key in (("micro", "micro avg"), ("macro", "macro avg")):
        for key in ("precision", "recall", "f1", "support"):
            expected = theirs[their_key][SEQEVAL_KEY.get(key, key)]
            assert mine[mine_key][key] == pytest.approx(expected, abs=1e-12), (mine_key, key)


def _perturb(rng: random.Random, spans: list[Span], n: int) -> list[Span]:
    """A plausible prediction: entities dropped, retyped, one token longer, or invented; never overlapping."""
    out: list[Span] = []
    for span in spans + [s for s in _random_token_spans(rng, n) if rng.random() < 0.2]:
        roll = rng.random()
        if roll < 0.15:
            continue
        if roll < 0.3:
            span = Span(span.start, span.end, rng.choice(TYPES))
        elif roll < 0.45 and span.end + 2 <= 2 * n - 1:
            span = Span(span.start, span.end + 2, span.label)
        if all(span.end <= kept.start or kept.end <= span.start for kept in out):
            out.append(span)
    return sorted(out)


def test_entity_scores_agree_with_seqeval_strict_iob2_on_random_documents() -> None:
    rng = random.Random(2024)
    for trial in range(30):
        sizes = [rng.randint(0, 14) for _ in range(rng.randint(1, 25))]
        gold = [_random_token_spans(rng, n) for n in sizes]
        pred = [_perturb(rng, g, n) for g, n in zip(gold, sizes)]
        if not any(gold) or not any(pred):
            continue
        offsets = [[(2 * i, 2 * i + 1) for i in range(n)] for n in sizes]
        gold_tags = [tags_from_spans(o, g) for o, g in zip(offsets, gold)]
        pred_tags = [tags_from_spans(o, p) for o, p in zip(offsets, pred)]
        _assert_same(entity_scores(gold, pred), _seqeval_report(gold_tags, pred_tags, strict=True))


def test_entity_scores_agree_with_seqeval_on_random_raw_tag_sequences() -> None:
    """Random tags, malformed ones included: our lenient reading + entity_scores equals seqeval's default mode."""
    rng = random.Random(7)
    vocabulary = ["O", "O", "O"] + [f"{p}-{t}" for p in "BI" for t in TYPES[:3]]
    for trial in range(30):
        sizes = [rng.randint(1, 12) for _ in range(rng.randint(1, 20))]
        gold_tags = [[rng.choice(vocabulary) for _ in range(n)] for n in sizes]
        pred_tags = [[t if rng.random() < 0.7 else rng.choice(vocabulary) for t in g] for g in gold_tags]
        if not any(t != "O" for g in gold_tags for t in g):
            continue
        offsets = [[(2 * i, 2 * i + 1) for i in range(n)] for n in sizes]
        gold = [spans_from_tags(o, t, "IOB2")[0] for o, t in zip(offsets, gold_tags)]
        pred = [spans_from_tags(o, t, "IOB2")[0] for o, t in zip(offsets, pred_tags)]
        _assert_same(entity_scores(gold, pred), _seqeval_report(gold_tags, pred_tags, strict=False))


def test_entity_scores_agree_with_seqeval_strict_on_hand_made_tags() -> None:
    gold_tags = [["B-PER", "I-PER", "O", "B-LOC", "B-LOC"], ["B-ORG", "I-ORG", "I-ORG", "O"], ["O", "B-MISC"]]
    pred_tags = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC"], ["B-ORG", "I-ORG", "O", "O"], ["O", "B-PER"]]
    offsets = [[(i, i + 1) for i in range(len(t))] for t in gold_tags]
    gold = [spans_from_tags(o, t, "IOB2")[0] for o, t in zip(offsets, gold_tags)]
    pred = [spans_from_tags(o, t, "IOB2")[0] for o, t in zip(offsets, pred_tags)]
    mine = entity_scores(gold, pred)
    _assert_same(mine, _seqeval_report(gold_tags, pred_tags, strict=True))
    assert (mine["micro"]["correct"], mine["micro"]["predicted"], mine["micro"]["support"]) == (1, 4, 5)
    assert type_confusion(gold, pred) == Counter({("MISC", "PER"): 1})


def test_memorising_tagger() -> None:
    train_texts = ["Tim Cook visited 東京 and Apple Park 🍎", "Apple shares rose", "Apple Park opened near Apple",
                   "東京大学で学ぶ", "Apple again"]
    train_spans = [
        [Span(0, 8, "PER"), Span(17, 19, "LOC"), Span(24, 34, "LOC")],
        [Span(0, 5, "ORG")],
        [Span(0, 10, "FAC"), Span(23, 28, "LOC")],  # "Apple Park": LOC once, FAC once -> the tie goes to FAC
        [Span(0, 4, "ORG")],
        [Span(0, 5, "ORG")],  # "Apple": ORG twice, LOC once -> ORG
    ]
    tagger = MemorisingTagger().fit(train_texts, train_spans)
    assert tagger.lexicon == {"Tim Cook": "PER", "東京": "LOC", "Apple Park": "FAC", "Apple": "ORG", "東京大学": "ORG"}
    text = "Apple Park sits near 東京大学 and 東京; Applebee's, tim cook, Tim Cook😀 and Apple."
    got = tagger.predict([text, ""])
    assert [(text[s.start:s.end], s.label) for s in got[0]] == [
        ("Apple Park", "FAC"), ("東京大学", "ORG"), ("東京", "LOC"), ("Tim Cook", "PER"), ("Apple", "ORG")]
    assert got[1] == []


def test_the_entity_gate_holds_a_model_to_the_memorising_baseline_but_a_perfect_tie_is_not_too_little() -> None:
    from bert_pipeline.stages.train_entities import entity_gate  # imports torch: only this test needs it

    gold = [[Span(0, 8, "PER"), Span(17, 19, "LOC")], [Span(0, 5, "ORG")], []]
    partial = [[Span(0, 8, "PER")], [Span(0, 5, "ORG")], []]  # 2 of 3 entities, no false one: F1 0.8
    refused = entity_gate(gold, partial, gold, None, None, 0.0)
    assert refused["promoted"] is False and refused["new_validation_entity_f1"] == pytest.approx(0.8)
    assert refused["reason"].startswith("validation entity F1 0.8000 does not beat the memorising baseline 1.0000")
    tied = entity_gate(gold, partial, partial, None, None, 0.0)  # a tie below 1.0 tells nothing: refused
    assert tied["promoted"] is False and "learned too little" in tied["reason"]
    perfect = entity_gate(gold, gold, gold, None, None, 0.0)  # every validation entity was seen in training
    assert perfect["promoted"] is True and "learned too little" not in perfect["reason"]
    assert perfect["reason"].startswith("validation entity F1 1.0000 ties the memorising baseline at a perfect 1.0000 "
                                        "(these validation rows cannot tell the model from it;")
    assert perfect["reason"].endswith("; no champion yet")
    champion = {"model_version": "2026-03-01-abc"}
    kept = entity_gate(gold, gold, gold, champion, partial, 0.0)
    assert kept["promoted"] is True and "beats or ties champion 2026-03-01-abc at 0.8000" in kept["reason"]
    assert kept["reason"].endswith("curate.validation_fraction, would)")
    # the CRF baseline: a model that beats the lexicon but not the CRF is refused, naming both figures and what to do
    empty = [[], [], []]
    below_crf = entity_gate(gold, partial, empty, None, None, 0.0, crf=gold)
    assert below_crf["promoted"] is False and below_crf["crf_validation_entity_f1"] == 1.0
    assert below_crf["reason"].startswith("validation entity F1 0.8000 does not beat the CRF baseline 1.0000 (a "
                                          "linear-chain CRF on word features, trained on the same rows) on 3 ")
    assert "score.fallback: baseline scores with the CRF" in below_crf["reason"] and "train.base_model" in below_crf["reason"]
    # below both: both named, each with what it is, and the advice of each (the CRF scores while no champion)
    below_both = entity_gate(gold, partial, gold, None, None, 0.0, crf=gold)
    assert below_both["reason"].startswith(
        "validation entity F1 0.8000 does not beat the memorising baseline 1.0000 (every string seen as an entity in "
        "training, tagged with its most frequent type) nor the CRF baseline 1.0000 (a linear-chain CRF on word "
        "features, trained on the same rows) on 3 validation entities: the model learned too little to be trusted")
    assert "score.fallback: baseline scores with the CRF" in below_both["reason"]
    above_crf = entity_gate(gold, partial, empty, None, None, 0.0, crf=[[Span(0, 8, "PER")], [], []])
    assert above_crf["promoted"] is True and "beats the CRF baseline 0.5000" in above_crf["reason"]


def test_utf8_byte_offsets_are_converted_when_set_and_refused_with_advice_when_not() -> None:
    text = "José visited Zürich and 北京 😀 today"
    encoded = text.encode("utf-8")
    for word in ("José", "Zürich", "北京", "😀", "today"):
        start = encoded.find(word.encode("utf-8"))
        begin, end = utf8_to_code_points(text, [start, start + len(word.encode("utf-8"))])
        assert text[begin:end] == word
    for inside in (4, encoded.find("北".encode()) + 1, len(encoded) + 1, -1):  # inside é, inside 北, outside
        with pytest.raises(ValueError, match="UTF-8 offset"):
            utf8_to_code_points(text, [inside])

    # a Go tool's export: byte offsets, no entity text; read as code points they cut words after 'José'
    record = {"text": text, "label": [[0, 5, "PER"], [14, 21, "LOC"], [26, 32, "LOC"]]}
    with pytest.raises(SpanError) as caught:
        read_doccano(record, "go.jsonl:3")
    assert caught.value.reason == "utf8_offsets"
    assert "go.jsonl:3: span Span(start=14, end=21, label='LOC') cuts a word ('ürich a')" in str(caught.value)
    assert "Read as UTF-8 bytes (é counts 2 and 中 3, as Go, Rust and C tools count) it is 'Zürich': set " \
           "`ner.offsets: utf8`" in str(caught.value)
    assert read_doccano(record, "go.jsonl:3", offsets="utf8") == (
        text, [Span(0, 4, "PER"), Span(13, 19, "LOC"), Span(24, 26, "LOC")])
    # the user who says the tool counts code points is trusted (a sub-word entity is theirs to keep)
    assert read_doccano(record, "go.jsonl:3", ambiguous="code_points")[1][1] == Span(14, 21, "LOC")
    # a tool that stores entity texts is compared, and the advice names the unit that reads them
    stored = {"text": text, "entities": [{"start": 14, "end": 21, "label": "LOC", "text": "Zürich"}]}
    with pytest.raises(SpanError) as caught:
        read_span_dicts(stored, "go.json[0]")
    assert caught.value.reason == "text_mismatch" and "set `ner.offsets: utf8`" in str(caught.value)
    assert read_span_dicts(stored, "go.json[0]", offsets="utf8") == (text, [Span(13, 19, "LOC")])
    with pytest.raises(SpanError, match="go.jsonl:4: UTF-8 offset 1 is outside the text .* or inside a character"):
        read_doccano({"text": "é x", "label": [[1, 3, "X"]]}, "go.jsonl:4", offsets="utf8")


def test_code_point_spans_after_accents_are_not_doubted() -> None:
    """Correct code-point spans in accented text are not refused as UTF-8 or UTF-16 offsets, including sub-word
    entities (a hashtag's city, a compound's first part) whose byte reading happens to fall on other words' edges:
    one cut edge is what a sub-word entity makes, and half a flag or 'Köln.' is no entity."""
    cases = [("Café #Paris2024 avec Zoë à Montréal", ["Paris", "Zoë", "Montréal"]),
             ("Allez 🇫🇷 #LyonFans", ["Lyon"]),  # its byte reading: half a flag emoji
             ("Merci à tous ❤️ #Paris2024", ["Paris"]),
             ("Jürgen fährt nach München. Schöne Grüße aus Köln. Bayernbesucher war toll.", ["Bayern"]),
             ("Great food and nice people. #MadridCentro à bientôt", ["Madrid"]),  # accents only after the span
             ("On a mangé une crêpe au café. Le musée était fermé. #NiceMatin", ["Nice"]),  # bytes: 'fermé'
             ("太棒了 #INYCForever", ["NYC"]),  # bytes: '了', between two Han characters any edge fits
             ("すごい試合でした #WeMadridLove", ["Madrid"]),
             (unicodedata.normalize("NFD", "déjà été été été #GoHabsGo"), ["Habs"]),  # bytes: 'té', half of été
             ("😂😂😂😂😂😂😂 night #Paris2024", ["Paris"]),  # UTF-16: 'night'; one cut edge is no evidence
             ("🇫🇷🇫🇷🇫🇷 Allez team #Nice2024", ["Nice"])]
    for number, (text, words) in enumerate(cases):
        spans = [[text.index(w), text.index(w) + len(w), "X"] for w in words]
        _, read = read_doccano({"text": text, "label": spans}, f"fr.jsonl:{number}")
        assert [text[s.start:s.end] for s in read] == words
    # an entity text the tool stored, read right by code points after multi-byte text, proves the unit
    text = "太棒了 比赛非常精彩 #realDonaldTrump 和 Zoë"
    stored = {"text": text, "entities": [{"start": 16, "end": 22, "label": "PER"},
                                         {"start": 30, "end": 33, "label": "PER", "text": "Zoë"}]}
    assert read_span_dicts(stored, "x.json[0]")[1] == [Span(16, 22, "PER"), Span(30, 33, "PER")]
    # the same offsets under two labels are an overlap, not evidence counted twice for another unit
    with pytest.raises(SpanError) as caught:
        read_doccano({"text": "déjà Théo и Noël Léa #RomeFans", "label": [[22, 26, "LOC"], [22, 26, "ORG"]]}, "y")
    assert caught.value.reason == "overlap"


def test_a_byte_offset_record_is_told_its_unit_even_with_emoji_and_with_every_span_shown() -> None:
    text = "Léa aime Lyon ce soir"  # two entities in bytes: 'Léa ' and 'yon ' read as code points
    with pytest.raises(SpanError) as caught:
        read_doccano({"text": text, "label": [[0, 4, "PER"], [10, 14, "LOC"]]}, "go.jsonl:7")
    assert caught.value.reason == "utf8_offsets"
    assert "(all 2 of its spans that read otherwise in bytes read as whole words: 'Léa', 'Lyon')" in str(caught.value)
    # UTF-8 bytes in text with an emoji: the UTF-16 reading ('adore ') is no entity, so the advice is utf8
    text = "Zoë et Théo sont à Montréal 😍 Renée adore Nîmes"
    start = len(text[:text.index("Renée")].encode())
    with pytest.raises(SpanError) as caught:
        read_doccano({"text": text, "label": [[start, start + len("Renée".encode()), "PER"]]}, "go.jsonl:8")
    assert caught.value.reason == "utf8_offsets" and "it is 'Renée': set `ner.offsets: utf8`" in str(caught.value)
    # past the end: every unit that fits is named
    with pytest.raises(SpanError) as caught:
        read_doccano({"text": "ééééé Lyon 😀😀😀", "label": [[11, 15, "LOC"]]}, "go.jsonl:9")
    assert "it is '😀😀': set `ner.offsets: utf16`. Or: Read as UTF-8 bytes" in str(caught.value)
    assert "it is 'Lyon': set `ner.offsets: utf8`." in str(caught.value)


def test_the_crf_baseline_learns_from_units_of_every_script_and_reads_back_what_it_saved(tmp_path) -> None:
    """CrfTagger on made-up rows in Latin, Han (no spaces: one unit per character) and with emoji: it tags held-out
    names it never saw by their context, every span is whole units, and a saved model answers the same."""
    from bert_pipeline.ner.crf import CrfTagger, units
    from bert_pipeline.ner.metrics import entity_scores

    people = ["Olga Petrova", "Jean Dupont", "Ana Silva", "Li Wei", "Omar Haddad", "Sara Cohen", "Ivan Horvat",
              "Mia Jensen"]
    cities = ["北京", "上海", "广州", "深圳", "成都", "杭州", "南京", "武汉"]
    def row(person: str, city: str) -> tuple[str, list[Span]]:
        text = f"Yesterday {person} said 😀 hello . 我在{city}工作"
        start, at = len("Yesterday "), text.index(city)
        return text, [Span(start, start + len(person), "PER"), Span(at, at + 2, "LOC")]

    train = [row(people[i % 6], cities[(i * 5) % 6]) for i in range(48)]
    held_out = [row(person, city) for person in people[6:] for city in cities[6:]]  # names and cities never seen
    crf = CrfTagger().fit([t for t, _ in train], [g for _, g in train])
    predicted = crf.predict([t for t, _ in held_out])
    assert entity_scores([g for _, g in held_out], predicted)["micro"]["f1"] == 1.0
    assert units("我在北京 OK😀") == [(0, 1), (1, 2), (2, 3), (3, 4), (5, 7), (7, 8)]
    assert units("서울에서 봐") == [(0, 1), (1, 2), (2, 3), (3, 4), (5, 6)]  # a particle glues to a Korean name
    crf.save(str(tmp_path))
    again = CrfTagger.load(str(tmp_path))
    assert again.predict([t for t, _ in held_out]) == predicted and again.labels() == ["LOC", "PER"]
    scored = again.predict_scored(["Yesterday Mia Jensen said 😀 hello . 我在成都工作"])[0]
    assert [(s.label, round(score, 2) > 0.5) for s, score in scored] == [("PER", True), ("LOC", True)]
    with pytest.raises(ValueError, match="no training text holds a unit"):
        CrfTagger().fit(["   "], [[]])
