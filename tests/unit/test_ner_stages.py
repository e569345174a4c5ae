"""task: ner through ingest and curate: every export style read to one canonical span form, bad spans refused before
anything is written, spans kept true through cleaning, conflicts and corrections across nights as for classes, and
one task per lake. Inputs are small hand-made exports with emoji, CJK, combining accents, HTML and odd whitespace."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bert_pipeline.config import build_config
from bert_pipeline.errors import InputDataError
from bert_pipeline.lake.manifests import Lake
from bert_pipeline.stages.curate import run_curate
from bert_pipeline.stages.ingest import run_ingest, settings_hash
from bert_pipeline.stages.tokenize import run_tokenize
from bert_pipeline.task import preflight
from bert_pipeline.task.ner import decode_spans
from tests.helpers import read_partition


def _cfg(tmp_path: Path, sources: list[Path], run_date: str = "2026-03-01", **ner: object) -> object:
    return build_config({"data_root": str(tmp_path / "lake"), "run_date": run_date, "task": "ner",
                         "ingest": {"sources": [str(s) for s in sources]}, "ner": ner})


def _entities(frame: pl.DataFrame) -> dict[str, list[tuple[str, str]] | None]:
    """text -> [(entity text, type)] read back through the stored offsets (None for an unlabelled row)."""
    return {text: None if label is None else [(text[s.start:s.end], s.label) for s in decode_spans(label)]
            for text, label in zip(frame["text"], frame["label"])}


def _jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


DOCCANO = [
    {"id": 7, "text": "Angela Merkel met Emmanuel Macron in Paris.", "label": [[0, 13, "PER"], [18, 33, "PER"],
                                                                               [37, 42, "LOC"]]},
    {"id": 8, "text": "😀 Zoë Saldaña flew to 東京 on Monday", "label": [[2, 13, "PER"], [22, 24, "LOC"]]},
    {"id": 9, "text": "Cafe\u0301 Noir opened in Zürich", "label": [[0, 10, "ORG"], [21, 27, "LOC"]]},
    {"id": 10, "text": "No entities in this sentence at all", "label": []},
    {"id": 11, "text": "Nobody annotated this row yet"},
]


def test_each_export_style_reads_to_the_same_canonical_spans(tmp_path: Path) -> None:
    doccano = _jsonl(tmp_path / "doccano.jsonl", DOCCANO)
    spacy = _jsonl(tmp_path / "spacy.jsonl", [
        {"text": "Siemens hired  Jürgen Klopp", "spans": [{"start_char": 0, "end_char": 7, "label": "ORG"},
                                                      {"start": 15, "end": 27, "label": "PER", "text": "Jürgen Klopp"}]},
        {"text": "Prodigy rejected this one", "spans": [{"start": 0, "end": 7, "label": "ORG"}], "answer": "reject"},
    ])
    studio = tmp_path / "label-studio.json"  # one JSON array, offsets counted in UTF-16 by the browser
    studio.write_text(json.dumps([
        {"data": {"text": "🎉🎉 Lionel Messi joined Inter Miami"}, "annotations": [{"result": [
            {"value": {"start": 5, "end": 17, "labels": ["PER"], "text": "Lionel Messi"}},
            {"value": {"start": 25, "end": 36, "labels": ["ORG"], "text": "Inter Miami"}},
            {"value": {"choices": ["sports"]}, "type": "choices"}]}]},
        {"data": {"text": "A task someone skipped"}, "annotations": [{"was_cancelled": True, "result": []}]},
    ], ensure_ascii=False), encoding="utf-8")
    conll = tmp_path / "news.conll"
    conll.write_text("-DOCSTART- O\n\nEU S-ORG\nrejects O\nGerman S-MISC\ncall O\n\nPeter B-PER\nBlackburn E-PER\n")
    bmes = tmp_path / "weibo.bmes"
    bmes.write_text("我 O\n在 O\n北 B-LOC\n京 E-LOC\n见 O\n到 O\n李 B-PER\n明 M-PER\n华 E-PER\n")
    tags = tmp_path / "hf.parquet"  # a Hugging Face dataset: tokens and integer tags indexing the feature's names
    pq.write_table(pa.table({"tokens": [["Ada", "Lovelace", "lived", "in", "London"], ["no", "tags", "here"]],
                             "ner_tags": [[1, 2, 0, 0, 3], [0, 0, 0]]}), tags)

    studio_cfg = {"offsets": "utf16"}
    for sources, extra in (([doccano, spacy, conll, bmes], {}), ([studio], studio_cfg),
                           ([tags], {"tag_names": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]})):
        cfg = build_config({"data_root": str(tmp_path / f"lake-{sources[0].stem}"), "run_date": "2026-03-01",
                            "task": "ner", "ingest": {"sources": [str(s) for s in sources]}, "ner": extra})
        summary = run_ingest(cfg)
        assert summary["labelled_rows"] >= 1
    read = {}
    for stem in ("doccano", "label-studio", "hf"):
        lake = Lake(str(tmp_path / f"lake-{stem}" / "ner"))
        read |= _entities(read_partition(lake, "raw", "2026-03-01"))
    assert read["Angela Merkel met Emmanuel Macron in Paris."] == [
        ("Angela Merkel", "PER"), ("Emmanuel Macron", "PER"), ("Paris", "LOC")]
    assert read["😀 Zoë Saldaña flew to 東京 on Monday"] == [("Zoë Saldaña", "PER"), ("東京", "LOC")]
    assert read["Cafe\u0301 Noir opened in Zürich"] == [("Cafe\u0301 Noir", "ORG"), ("Zürich", "LOC")]
    assert read["No entities in this sentence at all"] == []  # annotated, nothing to tag: a negative example
    assert read["Nobody annotated this row yet"] is None  # not annotated: scored only
    assert read["Siemens hired  Jürgen Klopp"] == [("Siemens", "ORG"), ("Jürgen Klopp", "PER")]
    assert read["Prodigy rejected this one"] is None
    assert read["EU rejects German call"] == [("EU", "ORG"), ("German", "MISC")]
    assert read["Peter Blackburn"] == [("Peter Blackburn", "PER")]
    assert read["我在北京见到李明华"] == [("北京", "LOC"), ("李明华", "PER")]  # CJK tokens glue without spaces
    assert read["🎉🎉 Lionel Messi joined Inter Miami"] == [("Lionel Messi", "PER"), ("Inter Miami", "ORG")]
    assert read["A task someone skipped"] is None
    assert read["Ada Lovelace lived in London"] == [("Ada Lovelace", "PER"), ("London", "LOC")]
    assert read["no tags here"] == []

    lake = Lake(str(tmp_path / "lake-doccano" / "ner"))
    manifest = lake.read_manifest("raw", "2026-03-01")
    assert manifest["task"] == "ner"
    assert manifest["counts"]["labels"] == {"PER": 6, "LOC": 4, "ORG": 3, "MISC": 1}  # entities per type
    assert manifest["counts"]["entities"] == 14
    assert manifest["counts"]["rows"] == 10 and manifest["counts"]["labelled_rows"] == 8
    # a Prodigy reject and a cancelled Label Studio task are rows of text, counted as unlabelled, not as skipped
    assert manifest["counts"]["unlabelled_records.answer_reject"] == 1
    studio_counts = Lake(str(tmp_path / "lake-label-studio" / "ner")).read_manifest("raw", "2026-03-01")["counts"]
    assert studio_counts["unlabelled_records.cancelled"] == 1 and studio_counts["rows"] == 2


@pytest.mark.parametrize(("records", "said"), [
    ([{"text": "Ann Lee", "label": [[0, 3, "PER"], [2, 7, "PER"]]}], ["line 1", "overlap"]),
    ([{"text": "ok", "label": []}, {"text": "Ann", "label": [[0, 9, "PER"]]}], ["line 2", "outside"]),
    ([{"text": "Ann Lee", "label": [[4, 4, "PER"]]}], ["line 1"]),
    ([{"text": "Bob and Ann", "spans": [{"start": 0, "end": 3, "label": "PER", "text": "Ann"}]}], ["line 1"]),
    ([{"text": "Ann met Bob", "label": [[0, 3, "PER"], [8, 11, "PER"]]}, {"text": "Sue", "label": []},
      {"text": "Zoë in 東京", "label": [[0, 3, "Per"], [7, 9, "LOC"]]}],
     ['`ner.label_map: {"Per": "PER"}`', "'PER' (2 times, first at ", "bad.jsonl line 1) and 'Per' (1 time, first at ",
      "bad.jsonl line 3)"]),
])
def test_bad_spans_refuse_the_night_naming_the_record_and_write_nothing(tmp_path: Path, records: list[dict],
                                                                         said: list[str]) -> None:
    cfg = _cfg(tmp_path, [_jsonl(tmp_path / "bad.jsonl", records)])
    with pytest.raises(InputDataError) as caught:
        run_ingest(cfg)
    assert all(part in str(caught.value) for part in ["bad.jsonl", *said]), str(caught.value)
    assert Lake.of(cfg).read_manifest("raw", "2026-03-01") is None


def test_a_refusal_names_the_line_of_a_jsonl_file_and_the_record_of_a_json_array(tmp_path: Path) -> None:
    """Blank lines between records (an export edited by hand) make a record's number differ from its line's: the
    message names the line a user's editor shows; a JSON array has no record lines, so its record is named."""
    records = [{"text": "ok", "label": []}, {"text": "Ann", "label": [[0, 9, "PER"]]}]
    spaced = tmp_path / "spaced.jsonl"
    spaced.write_text("\n".join(json.dumps(r) for r in records[:1]) + "\n\n\n" + json.dumps(records[1]) + "\n")
    with pytest.raises(InputDataError, match=r"spaced.jsonl line 4: span .* is outside the text"):
        run_ingest(_cfg(tmp_path, [spaced]))
    array = tmp_path / "array.json"
    array.write_text(json.dumps(records, indent=2))
    with pytest.raises(InputDataError, match=r"array.json record 2: span .* is outside the text"):
        run_ingest(_cfg(tmp_path, [array]))


def test_utf16_offsets_are_a_setting_never_a_guess(tmp_path: Path) -> None:
    source = _jsonl(tmp_path / "browser.jsonl", [{"text": "👍 Berlin rocks", "label": [[3, 9, "LOC"]]}])
    with pytest.raises(InputDataError, match="ner.offsets"):
        run_ingest(_cfg(tmp_path, [source]))
    run_ingest(_cfg(tmp_path, [source], offsets="utf16"))
    assert _entities(read_partition(Lake(str(tmp_path / "lake" / "ner")), "raw", "2026-03-01")) == {
        "👍 Berlin rocks": [("Berlin", "LOC")]}


def test_a_file_that_counts_code_points_is_refused_under_the_utf16_setting(tmp_path: Path) -> None:
    """The other direction: a spaCy or doccano-API export (code points) in a night set to ner.offsets: utf16 read
    'Angela Merke' and 'es Priya Pa' without a word; now the record is refused with both readings."""
    python_tool = _jsonl(tmp_path / "api.jsonl", [
        {"text": "Nothing before it: Ada Lovelace in London", "label": [[19, 31, "PER"], [35, 41, "LOC"]]},
        {"text": "🔥 Angela Merkel flew to São Paulo on Monday", "label": [[2, 15, "PER"], [24, 33, "LOC"]]}])
    with pytest.raises(InputDataError) as caught:
        run_ingest(_cfg(tmp_path, [python_tool], offsets="utf16"))
    message = str(caught.value)
    assert f"{python_tool} line 2" in message and "' Angela Merke'" in message, message
    assert "'Angela Merkel', 'São Paulo'" in message and "`ner.offsets: code_points`" in message
    assert Lake(str(tmp_path / "lake" / "ner")).read_manifest("raw", "2026-03-01") is None
    run_ingest(_cfg(tmp_path, [python_tool]))  # read as what it is
    assert _entities(read_partition(Lake(str(tmp_path / "lake" / "ner")), "raw", "2026-03-01"))[
        "🔥 Angela Merkel flew to São Paulo on Monday"] == [("Angela Merkel", "PER"), ("São Paulo", "LOC")]


def test_offsets_after_an_emoji_in_text_without_spaces_are_refused_until_a_setting_says_which(tmp_path: Path) -> None:
    """In Chinese every character belongs to a word, so word edges cannot tell code points from UTF-16 units: the
    same entity is [2, 4) counted by Python and [3, 5) counted by a browser, and both readings look like names."""
    plain = {"text": "李伟在东京工作", "label": [[0, 2, "PER"], [3, 5, "LOC"]]}  # no emoji: both counts agree
    python = _jsonl(tmp_path / "python.jsonl", [plain, {"text": "😀 李伟在东京工作，很开心", "label": [[2, 4, "PER"],
                                                                                       [5, 7, "LOC"]]}])
    browser = _jsonl(tmp_path / "browser.jsonl", [plain, {"text": "😀 李伟在东京工作，很开心",
                                                          "label": [[3, 5, "PER"], [6, 8, "LOC"]]}])
    for source, said in ((python, "give '东京' and read as UTF-16 units (an emoji counts 2) give '在东'"),
                         (browser, "give '伟在' and read as UTF-16 units (an emoji counts 2) give '李伟'")):
        with pytest.raises(InputDataError) as caught:
            run_ingest(_cfg(tmp_path, [source]))
        message = str(caught.value)
        assert f"{source} line 2" in message and said in message, message
        assert "`ner.offsets: utf16`" in message and "`ner.ambiguous_offsets: code_points`" in message
        assert Lake(str(tmp_path / "lake" / "ner")).read_manifest("raw", "2026-03-01") is None
    expected = {"李伟在东京工作": [("李伟", "PER"), ("东京", "LOC")],
                "😀 李伟在东京工作，很开心": [("李伟", "PER"), ("东京", "LOC")]}
    trusted = _cfg(tmp_path, [python], ambiguous_offsets="code_points")
    run_ingest(trusted)
    assert _entities(read_partition(Lake(str(tmp_path / "lake" / "ner")), "raw", "2026-03-01")) == expected
    run_ingest(_cfg(tmp_path, [browser], run_date="2026-03-02", offsets="utf16"))
    assert _entities(read_partition(Lake(str(tmp_path / "lake" / "ner")), "raw", "2026-03-02")) == expected
    # what is refused is not what is written: the committed night keeps its fingerprint under either setting
    assert settings_hash(trusted) == settings_hash(_cfg(tmp_path, [python]))
    assert settings_hash(trusted) != settings_hash(_cfg(tmp_path, [python], offsets="utf16"))


def test_a_germeval_file_is_refused_until_its_tag_column_is_chosen_and_then_read_from_it(tmp_path: Path) -> None:
    """GermEval 2014's .tsv (index, token, outer, nested tags) read as CoNLL: refused before anything is written,
    naming both tag columns and the setting; read from the chosen one, which is part of ingest's fingerprint."""
    from tests.unit.test_ner_core import GERMEVAL

    source = tmp_path / "NER-de-train.tsv"
    source.write_text("\n".join(GERMEVAL) + "\n", encoding="utf-8")
    base = {"data_root": str(tmp_path / "lake"), "run_date": "2026-03-01", "task": "ner",
            "ingest": {"sources": [str(source)], "format": "conll"}}
    as_table = build_config(base, {"ingest.format": "tsv"})  # read as a table, and refused as one
    with pytest.raises(InputDataError, match=r"NER-de-train.tsv: line 2 has 4 fields, the header has 1.*look like a "
                                             r"CoNLL column file .*for entities set ingest.format: conll$"):
        run_ingest(as_table)  # task: ner is set already: the message asks only for what is missing
    # under format auto a .tsv or .txt of token and tag lines is never read as a table or as one text per line: a
    # classifier refuses it, an entity task reads it as the CoNLL it is (hironsan's Japanese iob_sents.txt)
    plain = tmp_path / "conll03.txt"
    plain.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\n")
    for path in (source, plain):
        with pytest.raises(InputDataError, match=rf"{path.name}: its lines look like a CoNLL column file.*set task: "
                                                 r"ner and ingest.format: conll"):
            run_ingest(build_config(base, {"ingest.format": "auto", "ingest.sources": [str(path)],
                                           "task": "classification"}))
    with pytest.raises(InputDataError, match=r"NER-de-train.tsv: columns 3 and 4 both hold entity tags"):
        run_ingest(build_config(base, {"ingest.format": "auto"}))  # read as CoNLL, refused as CoNLL
    run_ingest(build_config(base, {"ingest.format": "auto", "ingest.sources": [str(plain)],
                                   "data_root": str(tmp_path / "auto")}))
    assert _entities(read_partition(Lake(str(tmp_path / "auto" / "ner")), "raw", "2026-03-01")) == {
        "EU rejects": [("EU", "ORG")], "Peter": [("Peter", "PER")]}
    run_ingest(build_config(base, {"ingest.format": "conll", "ingest.sources": [str(plain)],
                                   "data_root": str(tmp_path / "plain")}))
    assert _entities(read_partition(Lake(str(tmp_path / "plain" / "ner")), "raw", "2026-03-01")) == {
        "EU rejects": [("EU", "ORG")], "Peter": [("Peter", "PER")]}
    with pytest.raises(InputDataError, match=r"NER-de-train.tsv: columns 3 and 4 both hold entity tags"):
        run_ingest(build_config(base))
    assert not (tmp_path / "lake" / "ner" / "raw").exists() or not any((tmp_path / "lake" / "ner" / "raw").iterdir())
    summary = run_ingest(build_config(base, {"ner.conll_tag_column": 3}))
    assert summary["labels"] == {"LOC": 1, "LOCderiv": 1, "ORG": 1}
    assert _entities(read_partition(Lake(str(tmp_path / "lake" / "ner")), "raw", "2026-03-01")) == {
        "Aachen ist die Stadt der RWTH Aachen": [("Aachen", "LOC"), ("RWTH Aachen", "ORG")],
        "Berliner sagen 1": [("Berliner", "LOCderiv")]}
    assert settings_hash(build_config(base)) != settings_hash(build_config(base, {"ner.conll_tag_column": 3}))


def test_a_character_level_file_keeps_latin_words_and_numbers_whole(tmp_path: Path) -> None:
    """Resume/MSRA-style corpora put every character on a line of its own, Latin letters and digits too: joined with
    a space between non-Han characters they would read "M B A" and "1 9 6 6". A file whose tokens are nearly all
    single characters is joined with nothing; a word-level file next to it keeps its spaces."""
    chars = [("高", "B-NAME"), ("勇", "E-NAME"), ("：", "O"), ("男", "O"), ("，", "O"), ("1", "O"), ("9", "O"),
             ("6", "O"), ("6", "O"), ("年", "O"), ("出", "O"), ("生", "O"), ("，", "O"), ("M", "B-EDU"),
             ("B", "M-EDU"), ("A", "E-EDU"), ("。", "O"), ("", ""), ("现", "O"), ("任", "O"), ("I", "B-ORG"),
             ("B", "M-ORG"), ("M", "M-ORG"), ("中", "M-ORG"), ("国", "E-ORG"), ("C", "B-TITLE"), ("E", "M-TITLE"),
             ("O", "E-TITLE")]
    resume = tmp_path / "resume.bmes"
    resume.write_text("".join(f"{c} {t}\n" if c else "\n" for c, t in chars), encoding="utf-8")
    words = _jsonl(tmp_path / "words.jsonl", [{"tokens": ["Peter", "Blackburn", "joined", "IBM", "in", "1966"],
                                               "ner_tags": ["B-PER", "I-PER", "O", "B-ORG", "O", "O"]}])
    summary = run_ingest(_cfg(tmp_path, [resume, words]))
    assert summary["labels"] == {"EDU": 1, "NAME": 1, "ORG": 2, "PER": 1, "TITLE": 1}
    assert _entities(read_partition(Lake(str(tmp_path / "lake" / "ner")), "raw", "2026-03-01")) == {
        "高勇：男，1966年出生，MBA。": [("高勇", "NAME"), ("MBA", "EDU")],
        "现任IBM中国CEO": [("IBM中国", "ORG"), ("CEO", "TITLE")],
        "Peter Blackburn joined IBM in 1966": [("Peter Blackburn", "PER"), ("IBM", "ORG")]}
    spaced = run_ingest(_cfg(tmp_path, [resume], run_date="2026-03-02", token_separator=" "))
    assert spaced["labels"]["EDU"] == 1
    assert "M B A" in read_partition(Lake(str(tmp_path / "lake" / "ner")), "raw", "2026-03-02")["text"][0]


def test_weibo_word_position_marks_are_read_as_segmentation_not_text(tmp_path: Path) -> None:
    """Weibo NER's second release writes each character with its position in its word (科0 技1 = 科技), digits and
    Latin letters included (2 0 1 3 as 20 01 12 03): under auto such a file is read as its characters, said in a
    warning and counted; a file of codes next to it (A1 B2, positions that do not count up from 0) is not touched;
    ner.position_marks: keep reads the tokens as written."""
    weibo = [("我0", "O"), ("在0", "O"), ("北0", "B-GPE.NAM"), ("京1", "I-GPE.NAM"), ("见0", "O"), ("到1", "O"),
             ("李0", "B-PER.NAM"), ("明1", "I-PER.NAM"), ("华2", "I-PER.NAM"), ("20", "O"), ("01", "O"), ("12", "O"),
             ("33", "O"), ("年0", "O"), ("～0", "O"), ("", ""), ("去0", "O"), ("i0", "B-ORG.NAM"), ("P1", "I-ORG.NAM"),
             ("h2", "I-ORG.NAM"), ("o3", "I-ORG.NAM"), ("n4", "I-ORG.NAM"), ("e5", "I-ORG.NAM"), ("店0", "O"),
             ("h0", "O"), ("t1", "O"), ("t2", "O"), ("p3", "O"), ("：4", "O"), ("/5", "O"), ("/6", "O"), ("t7", "O"),
             ("·8", "O"), ("c9", "O"), ("n10", "O"), ("😂0", "O")]
    marked = tmp_path / "weiboNER_2nd_conll.train"
    marked.write_text("".join(f"{c}\t{t}\n" if c else "\n" for c, t in weibo), encoding="utf-8")
    codes = _jsonl(tmp_path / "codes.jsonl", [{"tokens": ["Gate", "A1", "to", "B2", "via", "C3", "and", "D4", "E5"],
                                               "ner_tags": ["O", "B-LOC", "O", "B-LOC", "O", "B-LOC", "O", "O", "O"]}])
    def night(run_date: str, source: Path, **ner: object) -> dict:
        return run_ingest(_cfg(tmp_path, [source], run_date=run_date, **ner))

    summary = night("2026-03-01", marked)  # .train names no format: its lines are CoNLL columns
    assert _entities(read_partition(Lake(str(tmp_path / "lake" / "ner")), "raw", "2026-03-01")) == {
        "我在北京见到李明华2013年～": [("北京", "GPE.NAM"), ("李明华", "PER.NAM")],
        "去iPhone店http：//t·cn😂": [("iPhone", "ORG.NAM")]}
    assert [w for w in summary["warnings"] if "position in its word" in w] == [
        f"{marked}: 35 of 35 tokens are one character followed by its position in its word (我0 在0 北0 京1 见0 到1 "
        "...: Weibo NER's word segmentation marks, not text), so each is read as its character alone and the text "
        "has no such numbers; ner.position_marks: keep reads the tokens as written"]
    manifest = Lake(str(tmp_path / "lake" / "ner")).read_manifest("raw", "2026-03-01")
    assert manifest["counts"]["position_marks_dropped"] == 35
    kept = night("2026-03-02", marked, position_marks="keep")
    assert "warnings" not in kept or not any("position" in w for w in kept["warnings"])
    assert read_partition(Lake(str(tmp_path / "lake" / "ner")), "raw", "2026-03-02")["text"].to_list()[0] == \
        "我0在0北0京1见0到1李0明1华2 20 01 12 33年0 ～0"  # a digit beside Han: no space (join_tokens)
    notes = tmp_path / "README.train"  # an extension that names no format, and lines that are not CoNLL
    notes.write_text("Weibo NER, second release.\nSplits: train, dev, test.\n", encoding="utf-8")
    with pytest.raises(InputDataError, match="cannot tell the format from the extension; set ingest.format"):
        night("2026-03-05", notes)
    untouched = run_ingest(_cfg(tmp_path, [codes], run_date="2026-03-03"))
    assert "warnings" not in untouched
    assert _entities(read_partition(Lake(str(tmp_path / "lake" / "ner")), "raw", "2026-03-03")) == {
        "Gate A1 to B2 via C3 and D4 E5": [("A1", "LOC"), ("B2", "LOC"), ("C3", "LOC")]}
    run_ingest(_cfg(tmp_path, [codes], run_date="2026-03-04", position_marks="strip"))
    assert read_partition(Lake(str(tmp_path / "lake" / "ner")), "raw", "2026-03-04")["text"].to_list() == [
        "Gate A to B via C and D E"]


def test_label_map_joins_spellings_before_the_case_check(tmp_path: Path) -> None:
    source = _jsonl(tmp_path / "mixed.jsonl", [{"text": "Ann met Bob", "label": [[0, 3, "PER"], [8, 11, "Per"]]}])
    run_ingest(_cfg(tmp_path, [source], label_map={"Per": "PER"}))
    assert _entities(read_partition(Lake(str(tmp_path / "lake" / "ner")), "raw", "2026-03-01")) == {
        "Ann met Bob": [("Ann", "PER"), ("Bob", "PER")]}


def test_types_of_two_annotation_guides_are_warned_of_and_the_label_map_joins_them(tmp_path: Path) -> None:
    conll_style = _jsonl(tmp_path / "a.jsonl", [{"text": "李伟在东京工作", "label": [[0, 2, "PER"], [3, 5, "LOC"]]}])
    ontonotes_style = _jsonl(tmp_path / "b.jsonl", [{"text": "Angela Merkel visited Paris 🇫🇷",
                                                      "label": [[0, 13, "PERSON"], [22, 27, "GPE"]]}])
    summary = run_ingest(_cfg(tmp_path, [conll_style, ontonotes_style]))
    assert summary["labels"] == {"GPE": 1, "LOC": 1, "PER": 1, "PERSON": 1}
    [warning] = summary["warnings"]
    assert warning.startswith("ner.label_map: 'PER' (") and "a.jsonl line 1) and 'PERSON' (" in warning
    assert 'ner.label_map: {"PER": "PERSON"}' in warning
    joined = run_ingest(_cfg(tmp_path, [conll_style, ontonotes_style], label_map={"PER": "PERSON"}))
    assert joined["labels"] == {"PERSON": 2, "GPE": 1, "LOC": 1} and "warnings" not in joined


def test_curation_keeps_every_span_on_the_same_characters(tmp_path: Path) -> None:
    source = _jsonl(tmp_path / "web.jsonl", [
        {"id": "a", "text": "I met  <b>Paris</b> Hilton at AT&amp;T\u00a0today", "label": [[7, 26, "PER"], [30, 38, "ORG"]]},
        {"id": "b", "text": "cafe\u0301 in  Zürich, \r\n\tsaid Ã©mile", "label": [[0, 5, "ORG"], [10, 16, "LOC"],
                                                                               [26, 32, "PER"]]},
        {"id": "c", "text": "The tag &lt;b&gt; marks bold text here", "label": [[8, 17, "CODE"]]},
        {"id": "c2", "text": "Use <br> to break lines", "label": [[4, 8, "CODE"]]},
        {"id": "d", "text": "  Trailing spaces around Oslo   ", "label": [[25, 29, "LOC"]]},
        {"id": "e", "text": "just text to score, nobody tagged it"},
    ])
    cfg = build_config({"data_root": str(tmp_path / "lake"), "run_date": "2026-03-01", "task": "ner",
                        "ingest": {"sources": [str(source)], "id_column": "id"}})
    run_ingest(cfg)
    summary = run_curate(cfg)
    lake = Lake.of(cfg)
    curated = read_partition(lake, "curated", "2026-03-01")
    rejects = read_partition(lake, "rejects", "2026-03-01")
    assert curated.height + rejects.height == 6
    by_id = dict(zip(curated["doc_id"], curated["text"]))
    assert _entities(curated) == {
        by_id["a"]: [("Paris Hilton", "PER"), ("AT&T", "ORG")],
        by_id["b"]: [("café", "ORG"), ("Zürich", "LOC"), ("émile", "PER")],
        by_id["c"]: [("<b>", "CODE")],  # an escaped tag is text that shows a tag: kept, and its span with it
        by_id["d"]: [("Oslo", "LOC")],
        by_id["e"]: None,
    }
    assert by_id["a"] == "I met Paris Hilton at AT&T today"
    # the entity's text is an HTML tag, which cleaning strips: the row cannot keep a true span
    assert rejects.select("doc_id", "reason").rows() == [("c2", "span_unmappable")]
    assert rejects["label"].to_list() == ['[[4,8,"CODE"]]']  # as sent, beside its original text
    assert summary["rejected_by_reason"]["span_unmappable"] == 1


def test_span_conflicts_and_corrections_across_nights(tmp_path: Path) -> None:
    night1 = _jsonl(tmp_path / "n1.jsonl", [
        {"text": "Jordan visited Jordan last spring", "label": [[0, 6, "PER"], [15, 21, "LOC"]]},
        {"text": "Apple opened a store in Milan", "label": [[0, 5, "ORG"], [24, 29, "LOC"]]},
        {"text": "Apple opened a store in Milan", "label": [[0, 5, "ORG"]]},  # same text, other spans: a conflict
    ])
    cfg1 = _cfg(tmp_path, [night1])
    run_ingest(cfg1)
    run_curate(cfg1)
    lake = Lake.of(cfg1)
    first = read_partition(lake, "curated", "2026-03-01")
    assert first.filter(pl.col("text") == "Apple opened a store in Milan")["label_conflict"].to_list() == [True]

    night2 = _jsonl(tmp_path / "n2.jsonl", [  # the annotator fixes night 1's first row: the second Jordan is a LOC
        {"text": "Jordan visited Jordan last spring", "label": [[0, 6, "PER"]]},
        {"text": "A brand new sentence about Lisbon", "label": [[27, 33, "LOC"]]},
    ])
    cfg2 = _cfg(tmp_path, [night2], run_date="2026-03-02")
    run_ingest(cfg2)
    summary = run_curate(cfg2)
    rejects = read_partition(lake, "rejects", "2026-03-02")
    corrected = rejects.filter(pl.col("reason") == "label_correction")
    assert corrected["label"].to_list() == ['[[0,6,"PER"]]']
    assert corrected["duplicate_of"].to_list() == first.filter(
        pl.col("text") == "Jordan visited Jordan last spring")["doc_id"].to_list()
    assert summary["rejected_by_reason"]["label_correction"] == 1
    same_again = _jsonl(tmp_path / "n3.jsonl", [
        {"text": "A brand new sentence about Lisbon", "label": [[27, 33, "LOC"]]}])  # same spans: a duplicate
    cfg3 = _cfg(tmp_path, [same_again], run_date="2026-03-03")
    run_ingest(cfg3)
    assert run_curate(cfg3)["rejected_by_reason"]["exact_duplicate"] == 1


def test_near_duplicates_agree_when_their_spans_are_the_same_entities_shifted(tmp_path: Path) -> None:
    """A near duplicate with a prefix shifts every span: the same entities, not a conflict (the kept row trains);
    one whose entity has another type is a conflict; a re-sent exact copy whose spans agree is a duplicate."""
    a = "Angela Merkel met Emmanuel Macron in Paris on Monday to talk about the budget for next year"
    b = "Zoë Saldaña flew from Lagos to Nairobi last week for the premiere of her newest film there 😀"
    night = _jsonl(tmp_path / "n1.jsonl", [
        {"id": "a1", "text": a, "label": [[0, 13, "PER"], [18, 33, "PER"], [37, 42, "LOC"]]},
        {"id": "a2", "text": "BREAKING: " + a, "label": [[10, 23, "PER"], [28, 43, "PER"], [47, 52, "LOC"]]},
        {"id": "b1", "text": b, "label": [[0, 11, "PER"], [22, 27, "LOC"], [31, 38, "LOC"]]},
        {"id": "b2", "text": b + " https://t.co/x1", "label": [[0, 11, "PER"], [22, 27, "ORG"], [31, 38, "LOC"]]},
    ])
    cfg = build_config({**_cfg(tmp_path, [night]).model_dump(mode="json"), "ingest": {"sources": [str(night)],
                                                                                       "id_column": "id"}})
    run_ingest(cfg)
    assert run_curate(cfg)["rejected_by_reason"]["near_duplicate"] == 2
    lake = Lake.of(cfg)
    curated = read_partition(lake, "curated", "2026-03-01")
    assert dict(zip(curated["text"], curated["label_conflict"])) == {a: False, b: True}
    assert _entities(curated.filter(pl.col("text") == a))[a] == [
        ("Angela Merkel", "PER"), ("Emmanuel Macron", "PER"), ("Paris", "LOC")]

    again = _jsonl(tmp_path / "n2.jsonl", [{"id": "a3", "text": a,
                                            "label": [[0, 13, "PER"], [18, 33, "PER"], [37, 42, "LOC"]]}])
    cfg2 = build_config({**cfg.model_dump(mode="json"), "run_date": "2026-03-02",
                         "ingest": {"sources": [str(again)], "id_column": "id"}})
    run_ingest(cfg2)
    reasons = run_curate(cfg2)["rejected_by_reason"]
    assert (reasons["exact_duplicate"], reasons["label_correction"]) == (1, 0)


def test_one_data_root_holds_both_tasks_side_by_side_and_entities_support_every_setting(tmp_path: Path) -> None:
    source = _jsonl(tmp_path / "n.jsonl", DOCCANO[:2])
    cfg = _cfg(tmp_path, [source])
    run_ingest(cfg)
    csv = tmp_path / "classes.csv"
    pl.DataFrame({"text": ["good flight", "bad food"], "label": ["pos", "neg"]}).write_csv(csv)
    classes = build_config({"data_root": cfg.data_root, "run_date": "2026-03-01",
                            "ingest": {"sources": [str(csv)], "label_column": "label"}})
    run_ingest(classes)  # the same night of the same data_root: each task in its own lake, its own champion
    entities, labels = Lake.of(cfg), Lake.of(classes)
    assert (labels.root, entities.root) == (cfg.data_root, str(tmp_path / "lake" / "ner"))
    assert entities.read_manifest("raw", "2026-03-01")["counts"]["labels"] == {"PER": 3, "LOC": 2}
    assert labels.read_manifest("raw", "2026-03-01")["counts"]["labels"] == {"neg": 1, "pos": 1}
    assert entities.champion_url != labels.champion_url
    assert run_ingest(cfg)["skipped"] and run_ingest(classes)["skipped"]

    # an entity lake written at the top of its data_root before both tasks could share one stays where it is
    old = tmp_path / "old-entities"
    shutil.copytree(entities.root, old)
    old_cfg = build_config({**cfg.model_dump(mode="json"), "data_root": str(old)})
    assert Lake.of(old_cfg).root == str(old) and run_ingest(old_cfg)["skipped"]
    with pytest.raises(InputDataError, match="holds task: ner .*written at the top of data_root"):
        run_ingest(build_config({**classes.model_dump(mode="json"), "data_root": str(old)}))
    assert Lake(str(old)).read_manifest("raw", "2026-03-01")["task"] == "ner"  # nothing written over it
    # a re-ingest that died after un-committing the one raw night (writer.begin) leaves no raw manifest: the
    # entities it scored still say whose lake the top is, so the next run does not start an empty one beside it
    (old / "_manifests" / "entities").mkdir(parents=True)
    (old / "_manifests" / "entities" / "run_date=2026-03-01.json").write_text('{"fingerprint": "x", "outputs": []}')
    (old / "_manifests" / "raw" / "run_date=2026-03-01.json").unlink()
    assert Lake.of(old_cfg).root == str(old)

    every = build_config({**cfg.model_dump(mode="json"), "train": {"long_text": "chunk"},
                          "score": {"long_text": "chunk", "fallback": "baseline"}})
    preflight(every, ["ingest", "curate", "tokenize", "train", "score"])  # entities support every setting


def test_tokenize_aligns_spans_to_subword_tokens_and_counts_what_it_cannot_keep(tmp_path: Path) -> None:
    from bert_pipeline.ner.tagging import spans_from_token_tags
    from bert_pipeline.stages.tokenize import read_arrow
    from tests.helpers import build_tiny_model

    long_text = "Ann " + " ".join(f"item{i}" for i in range(60)) + " then Oslo"  # ~200 tokens
    records = DOCCANO + [
        {"id": 12, "text": "Parisian cafes are full of Parisians", "label": [[0, 5, "LOC"]]},  # an edge inside a word
        {"id": 13, "text": long_text, "label": [[0, 3, "PER"], [len(long_text) - 4, len(long_text), "LOC"]]},
        {"id": 14, "text": "Ann and Bob", "label": [[0, 3, "PER"]]},
        {"id": 15, "text": "Ann and Bob", "label": [[0, 3, "PER"], [8, 11, "PER"]]},  # a conflict: not trainable
    ]
    source = _jsonl(tmp_path / "n.jsonl", records)
    model = build_tiny_model(tmp_path / "tiny", [r["text"] for r in records], vocab_size=400)
    cfg = build_config({"data_root": str(tmp_path / "lake"), "run_date": "2026-03-01", "task": "ner",
                        "ingest": {"sources": [str(source)], "id_column": "id"},
                        "tokenize": {"max_length": 64}, "train": {"base_model": str(model)}})
    run_ingest(cfg)
    run_curate(cfg)
    summary = run_tokenize(cfg)
    assert summary["label_names"] == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert summary["boundary_mismatches"] == 1  # "Paris" in "parisian"
    assert summary["entities"] == 10  # the trainable rows' spans (not the unlabelled row, not the conflict)
    assert any("1 of 10 entity spans of run_date=2026-03-01 have an edge inside a token" in w
               for w in summary["warnings"]), summary.get("warnings")
    assert summary["entities_cut"] == 1  # Oslo, past 64 tokens
    # one cause, one warning: the truncated texts' warning counts the entity they cut
    cut = [w for w in summary["warnings"] if "max_length" in w]
    assert len(cut) == 1 and "1 of 8 texts of run_date=2026-03-01 (12.5%) are longer than" in cut[0], cut
    assert "Training never sees 1 of the night's 10 entity spans, which lie past it." in cut[0]
    # with few texts cut (none warned of), entities past max_length still warn on their own
    from bert_pipeline.task import task_of

    few = {"rows": 100, "truncated": 2, "entities": 50, "entities_cut": 3, "boundary_mismatches": 0}
    assert task_of(cfg).token_warnings(few, cfg) == [
        "tokenize: 3 of 50 entity spans of run_date=2026-03-01 lie past tokenize.max_length (training never sees "
        "them); see train.long_text: chunk to train on every window, and score.long_text: chunk to find them when "
        "scoring"]
    assert task_of(cfg).token_warnings(few, cfg, texts_cut_warned=True) == []
    lake = Lake.of(cfg)
    manifest = lake.read_manifest("tokens", "2026-03-01")
    table = pa.concat_tables(read_arrow(u) for u in lake.shard_urls("tokens", "2026-03-01", manifest))
    rows = {row["doc_id"]: row for row in table.to_pylist()}
    assert rows["11"]["tag_ids"] is None and rows["11"]["label_id"] == -1  # unlabelled: scored only
    assert rows["14"]["label_id"] == -1 and "15" not in rows  # a conflict: kept once, not trained on
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    for doc_id, text, expected in [("7", DOCCANO[0]["text"], [("angela merkel", "PER"), ("emmanuel macron", "PER"),
                                                              ("paris", "LOC")]),
                                   ("8", DOCCANO[1]["text"], [("zoë saldaña", "PER"), ("東京", "LOC")])]:
        offsets = tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
        tags = rows[doc_id]["tag_ids"]
        assert len(tags) == len(offsets) and tags[0] == tags[-1] == -100  # [CLS], [SEP]
        content = [(t, o) for t, o in zip(tags, offsets) if t != -100]
        found = spans_from_token_tags([t for t, _ in content], [o for _, o in content], summary["label_names"],
                                      [1.0] * len(content), text=text)
        assert [(text[e.start:e.end].lower(), e.label) for e in found] == expected


def test_the_entities_how_to_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """docs/how-to/entities.md: its config and its doccano file through ingest and curate, then its annotation
    reader (its entities-table readers run in test_ner_nights.py, on a lake with a model)."""
    from bert_pipeline.config import load_config
    from tests.helpers import code_blocks

    blocks = code_blocks((Path(__file__).parents[2] / "docs" / "how-to" / "entities.md").read_text(encoding="utf-8"))
    (config,), (data,) = ([body for lang, body in blocks if lang == kind] for kind in ("yaml", "json"))
    commands = next(body for lang, body in blocks if lang == "sh" and "--config ner.yaml" in body)
    reader = [body for lang, body in blocks if lang == "python"][-1]
    assert "curated" in reader and commands.split() == ["bert-pipeline", "run", "--config", "ner.yaml"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ner.yaml").write_text(config)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "annotated.jsonl").write_text(data, encoding="utf-8")
    cfg = load_config("ner.yaml", {"run_date": "2026-03-01"})
    run_ingest(cfg)
    run_curate(cfg)
    exec(compile(reader, "entities.md", "exec"), {})  # noqa: S102 - the page's own example
    assert capsys.readouterr().out.splitlines() == [
        "PER Angela Merkel", "PER Emmanuel Macron", "LOC Paris", "PER Zoë Saldaña", "LOC 東京"]


def test_without_a_champion_the_memorising_baseline_can_score_the_night(tmp_path: Path) -> None:
    """score.fallback: baseline for task: ner: a refused entity model leaves no champion; the memorising baseline
    stored beside it scores every curated row (model_version <version>+memorising-baseline), with the lexicon of the
    training rows (the default); with score.fallback: none nothing is written and the reason names the memorising
    baseline; a model given later replaces the partition. (train.linear_baseline: false, so no CRF is stored.)"""
    from bert_pipeline.stages.report import write_report
    from bert_pipeline.stages.score import run_score
    from bert_pipeline.stages.train import run_train
    from tests.helpers import build_tiny_model, ner_corpus

    unlabelled = [{"id": "u1", "text": "Zalando hired Olga Petrova in São Paulo 😀"},
                  {"id": "u2", "text": "Parisian cafés near Lyon, 在Osaka工作"}]
    records = ner_corpus(120, seed=3)
    source = _jsonl(tmp_path / "night.jsonl", records + unlabelled)
    model = build_tiny_model(tmp_path / "tiny", [r["text"] for r in records + unlabelled], vocab_size=600)
    settings = {"data_root": str(tmp_path / "lake"), "run_date": "2026-03-01", "task": "ner",
                "ingest": {"sources": [str(source)], "id_column": "id"}, "tokenize": {"max_length": 48},
                "train": {"base_model": str(model), "learning_rate": 1e-7, "min_steps": 4, "batch_size": 16,
                          "linear_baseline": False}}  # no CRF: the lexicon is what the fallback has
    cfg = build_config(settings)
    run_ingest(cfg)
    run_curate(cfg)
    run_tokenize(cfg)
    trained = run_train(cfg)
    assert not trained["champion_decision"]["promoted"]  # learned nothing at lr 1e-7: the baseline wins
    assert trained["champion_decision"]["crf_validation_entity_f1"] is None

    nothing = run_score(build_config({**settings, "score": {"fallback": "none"}}))
    assert nothing["skipped"] and "memorising baseline" in nothing["reason"] and "TF-IDF" not in nothing["reason"]
    lake = Lake.of(cfg)
    assert lake.read_manifest("entities", "2026-03-01") is None

    fallback = cfg  # score.fallback: baseline is the default
    scored = run_score(fallback)
    assert scored["rows"] == lake.read_manifest("curated", "2026-03-01")["counts"]["curated_rows"]
    entities = read_partition(lake, "entities", "2026-03-01")
    assert set(entities["model_version"]) == {trained["model_version"] + "+memorising-baseline"}
    curated = read_partition(lake, "curated", "2026-03-01")
    assert sorted(entities["doc_id"]) == sorted(curated["doc_id"])
    # the lexicon, worked out here: every entity string of the curated training rows (the pools never share a name)
    train_rows = curated.filter((pl.col("split") == "train") & pl.col("label").is_not_null())
    lexicon = {text[s.start:s.end]: s.label for text, label in zip(train_rows["text"], train_rows["label"])
               for s in decode_spans(label)}
    by_text = dict(zip(curated.join(entities, on="doc_id")["text"], curated.join(entities, on="doc_id")["entities"]))
    expected = [(name, lexicon[name]) for name in ("Zalando", "Olga Petrova", "São Paulo") if name in lexicon]
    assert expected and [(e["text"], e["label"]) for e in by_text[unlabelled[0]["text"]]] == expected
    found_u2 = [(e["text"], e["label"]) for e in by_text[unlabelled[1]["text"]]]
    assert ("Paris", "LOC") not in found_u2  # "Parisian": a match never cuts a word
    assert found_u2 == [(name, lexicon[name]) for name in ("Lyon", "Osaka") if name in lexicon]  # 在Osaka工作: no word edges needed
    assert all(text[e["start"]:e["end"]] == e["text"] and e["score"] == 1.0 for text, found in by_text.items()
               for e in found)
    report = Path(write_report(fallback)["report"]).read_text()
    assert "with the memorising baseline stored with model" in report

    with_model = build_config({**settings, "score": {"model": trained["model_uri"]}})
    run_score(with_model)
    assert set(read_partition(lake, "entities", "2026-03-01")["model_version"]) != {
        trained["model_version"] + "+memorising-baseline"}


def test_a_model_that_loses_to_the_crf_is_refused_and_the_crf_scores_the_night(tmp_path: Path) -> None:
    """train.linear_baseline (the default): a CRF fitted on the same training rows is stored beside the entity
    model, its figures are in metrics.json and the report, and the gate holds the model to it. With no champion,
    score.fallback: baseline scores with the CRF (model_version <version>+crf-baseline), in preference to the
    memorising lexicon, and every entity's text is its slice of the stored text, whole units."""
    import os

    from bert_pipeline.ner.crf import CRF_FILE, CrfTagger
    from bert_pipeline.ner.metrics import entity_scores
    from bert_pipeline.stages.report import write_report
    from bert_pipeline.stages.score import run_score
    from bert_pipeline.stages.train import run_train
    from tests.helpers import build_tiny_model, ner_corpus

    records = ner_corpus(160, seed=4)
    unlabelled = [{"id": "u1", "text": "Yesterday Olga Petrova flew from Lyon to 東京 😀"}]
    source = _jsonl(tmp_path / "night.jsonl", records + unlabelled)
    model = build_tiny_model(tmp_path / "tiny", [r["text"] for r in records + unlabelled], vocab_size=600)
    cfg = build_config({"data_root": str(tmp_path / "lake"), "run_date": "2026-03-01", "task": "ner",
                        "ingest": {"sources": [str(source)], "id_column": "id"}, "tokenize": {"max_length": 48},
                        "train": {"base_model": str(model), "learning_rate": 1e-4, "min_steps": 4, "batch_size": 16}})
    run_ingest(cfg), run_curate(cfg), run_tokenize(cfg)
    trained = run_train(cfg)
    decision, crf = trained["champion_decision"], trained["metrics"]["baseline"]["crf"]
    assert not decision["promoted"] and decision["crf_validation_entity_f1"] == crf["validation"]["entity_f1"]
    assert crf["validation"]["entity_f1"] > decision["new_validation_entity_f1"]
    assert os.path.exists(os.path.join(trained["model_uri"], "baseline", CRF_FILE))
    # the stored CRF answers as the figures say: its test entity F1 worked out again from the curated test rows
    lake = Lake.of(cfg)
    curated = read_partition(lake, "curated", "2026-03-01")
    test = curated.filter((pl.col("split") == "test") & pl.col("label").is_not_null() & ~pl.col("label_conflict"))
    stored = CrfTagger.load(os.path.join(trained["model_uri"], "baseline"))
    assert entity_scores([decode_spans(x) for x in test["label"]], stored.predict(test["text"].to_list()))[
        "micro"]["f1"] == pytest.approx(crf["test"]["entity_f1"])

    scored = run_score(cfg)
    assert scored["rows"] == curated.height
    entities = read_partition(lake, "entities", "2026-03-01")
    assert set(entities["model_version"]) == {trained["model_version"] + "+crf-baseline"}
    by_text = dict(zip(curated.join(entities, on="doc_id")["text"], curated.join(entities, on="doc_id")["entities"]))
    found = [(e["text"], e["label"]) for e in by_text[unlabelled[0]["text"]]]
    assert ("Olga Petrova", "PER") in found and ("Lyon", "LOC") in found
    assert all(text[e["start"]:e["end"]] == e["text"] and 0.0 < e["score"] <= 1.0 for text, doc in by_text.items()
               for e in doc)
    report = Path(write_report(cfg)["report"]).read_text()
    assert "with the CRF baseline stored with model" in report and "| CRF baseline |" in report


def test_the_fallback_is_the_newest_model_s_best_baseline_not_an_older_model_s_crf(tmp_path: Path) -> None:
    """Model v1 stored a CRF; v2, newer (train.linear_baseline: false), only its lexicon: the fallback scores with
    v2's lexicon, as "the baseline stored with the newest trained model" says; with a CRF beside it, whichever of
    v2's two read the validation rows better."""
    from bert_pipeline.ner.crf import CRF_FILE
    from bert_pipeline.ner.metrics import LEXICON_FILE
    from bert_pipeline.stages.score import FALLBACKS, newest_baseline

    lake = Lake(str(tmp_path / "lake"))
    for version, committed, files in (("2026-03-01-aaa", "2026-03-01T00:00:00", (CRF_FILE, LEXICON_FILE)),
                                      ("2026-03-02-bbb", "2026-03-02T00:00:00", (LEXICON_FILE,))):
        folder = Path(lake.model_url(version))
        (folder / "baseline").mkdir(parents=True)
        for name in files:
            (folder / "baseline" / name).write_text("{}")
        (folder / "_manifest.json").write_text(json.dumps({"committed_at": committed, "metrics": {
            "model_version": version, "baseline": {"kind": "memorising"}}}))
    url, version, fallback = newest_baseline(lake, FALLBACKS["ner"])
    assert (version, fallback.suffix) == ("2026-03-02-bbb", "+memorising-baseline") and url.endswith(version)
    (Path(lake.model_url("2026-03-02-bbb")) / "baseline" / CRF_FILE).write_text("{}")
    assert newest_baseline(lake, FALLBACKS["ner"])[1:] == ("2026-03-02-bbb", FALLBACKS["ner"][0])
    # with both stored, the one that read the validation rows better (the hironsan corpus's night 1: the lexicon
    # 0.535, the CRF 0.488); ties, and a manifest without the figures (older models), keep the CRF
    manifest = Path(lake.model_url("2026-03-02-bbb")) / "_manifest.json"
    for crf, lexicon, suffix in ((0.488, 0.535, "+memorising-baseline"), (0.6871, 0.5875, "+crf-baseline"),
                                 (0.5, 0.5, "+crf-baseline"), (None, 0.5, "+memorising-baseline")):
        written = json.loads(manifest.read_text()) | {"champion_decision": {
            "crf_validation_entity_f1": crf, "memorising_validation_entity_f1": lexicon}}
        manifest.write_text(json.dumps(written))
        assert newest_baseline(lake, FALLBACKS["ner"])[2].suffix == suffix, (crf, lexicon)


def test_train_long_text_chunk_learns_entities_past_the_first_window(tmp_path: Path) -> None:
    """Every entity sits after a filler longer than max_length: truncated, training would see none of them. Under
    train.long_text: chunk each window is a training row with its own tokens' tags, validation and test decode
    whole texts from windowed logits, and score.long_text: chunk finds the entities in the later windows."""
    from bert_pipeline.stages.score import run_score
    from bert_pipeline.stages.train import run_train
    from tests.helpers import build_tiny_model, ner_corpus

    filler = ("Notes from the weekly call, read aloud before anything else was said by anyone there, and then "
              "read once more for those who came late to the call: ")
    records = [{"id": r["id"], "text": filler + r["text"],
                "label": [[s + len(filler), e + len(filler), t] for s, e, t in r["label"]]}
               for r in ner_corpus(300, seed=5)]
    source = _jsonl(tmp_path / "long.jsonl", records)
    model = build_tiny_model(tmp_path / "tiny", [r["text"] for r in records], vocab_size=700)
    cfg = build_config({"data_root": str(tmp_path / "lake"), "run_date": "2026-03-01", "task": "ner",
                        "ingest": {"sources": [str(source)], "id_column": "id"}, "tokenize": {"max_length": 24},
                        # enough validation entities that the gate's nested figure can tell the model from the
                        # memorising baseline (at 0.1, 9 entities: halves of 4 and 5); a CRF reads these
                        # template sentences better than a tiny BERT, and this test is about windows
                        "curate": {"validation_fraction": 0.25},
                        "train": {"base_model": str(model), "learning_rate": 1e-3, "min_steps": 150,
                                  "batch_size": 16, "long_text": "chunk", "linear_baseline": False},
                        "score": {"long_text": "chunk"}})
    run_ingest(cfg)
    run_curate(cfg)
    tokens = run_tokenize(cfg)
    assert tokens["entities_cut"] == tokens["entities"] > 0  # past max_length in the (truncated) token shards
    trained = run_train(cfg)
    metrics = trained["metrics"]
    train_rows = metrics["train"]["rows"]
    assert metrics["train"]["long_text"] == "chunk" and metrics["train"]["training_rows"] > 2 * train_rows
    gold_validation = sum(len(decode_spans(r["label"])) for r in read_partition(Lake.of(cfg), "curated",
                          "2026-03-01").filter((pl.col("split") == "validation") & ~pl.col("label_conflict")
                                                 & pl.col("label").is_not_null()).to_dicts())
    assert metrics["validation"]["entities"] == gold_validation  # every entity is scored, none cut
    assert metrics["validation"]["entity_f1"] > 0.3 and trained["champion_decision"]["promoted"]

    run_score(cfg)
    entities = read_partition(Lake.of(cfg), "entities", "2026-03-01")
    found = [e for row in entities["entities"].to_list() for e in row]
    assert len(found) > 100 and all(e["start"] >= len(filler) for e in found)
    assert set(entities["windows"]) - {1}  # texts took more than one window


def test_tags_that_break_their_scheme_are_read_leniently_and_said_with_the_first_record(tmp_path: Path) -> None:
    """An I- that no B- begins (a hand-edited IOB2 file, the Japanese hironsan corpus), or a file whose first
    sentences are BIOES and the rest IOB2, is read as seqeval reads it: entities kept, counted, and ingest says so
    naming the scheme it read by and the first record (not only a count in the raw manifest)."""
    iob2 = tmp_path / "ja.conll"
    iob2.write_text("東京\tB-LOC\nに\tO\n行く\tO\n\nこの\tI-LOC\n公園\tI-LOC\nは\tO\n広い\tO\n\n"
                    "Ann\tB-PER\nmet\tO\nBob\tB-PER\n", encoding="utf-8")
    cfg = _cfg(tmp_path, [iob2])
    summary = run_ingest(cfg)
    raw = read_partition(Lake.of(cfg), "raw", "2026-03-01")
    assert _entities(raw)["この公園は広い"] == [("この公園", "LOC")]  # an I- after O begins an entity
    assert Lake.of(cfg).read_manifest("raw", "2026-03-01")["counts"]["malformed_tag_sequences"] == 1
    said = [w for w in summary["warnings"] if "break the" in w]
    assert said == [f"{iob2}: 1 of its 4 entities have tags that break the IOB2 scheme (detected over the file "
                    "(ner.tag_scheme: auto)), the first in the record at line 5: an I- that no B- begins, or a type "
                    "that changes inside an entity. They are read as seqeval's default mode reads them (an I- after "
                    "O begins an entity) and counted as malformed_tag_sequences in the raw manifest; if the file is "
                    "written in another scheme, set ner.tag_scheme"], summary["warnings"]
    # schemes mixed in one file: BIOES detected (S-), so IOB2's B- without E- breaks it, and is said
    mixed = tmp_path / "mixed" / "en.conll"
    mixed.parent.mkdir()
    mixed.write_text("Ann\tB-PER\nmet\tO\nBob\tB-PER\n\nParis\tS-LOC\n", encoding="utf-8")
    told = run_ingest(_cfg(tmp_path / "mixed", [mixed]))
    assert [w[:w.index(":", len(str(mixed)) + 1)] for w in told["warnings"] if "break the" in w] == [
        f"{mixed}: 2 of its 3 entities have tags that break the BIOES scheme (detected over the file (ner.tag_scheme"]
    assert "the first in the record at line 1" in " ".join(told["warnings"])
    # a well-formed file says nothing of it
    clean = tmp_path / "clean" / "en.conll"
    clean.parent.mkdir()
    clean.write_text("Ann\tB-PER\nmet\tO\nBob\tB-PER\n\nParis\tB-LOC\n", encoding="utf-8")
    quiet = run_ingest(_cfg(tmp_path / "clean", [clean]))
    assert not [w for w in quiet.get("warnings") or [] if "break the" in w]


def test_a_spelling_clash_in_a_conll_file_names_the_line_of_each_tag_not_of_its_sentence(tmp_path: Path) -> None:
    """A CoNLL sentence spans lines: the refusal names the line an editor shows each spelling's first tag on (the
    hironsan corpus with one 'B-Loc': its first 'B-LOC' is line 8 of a sentence that starts on line 1)."""
    source = tmp_path / "ja.conll"
    source.write_text("2005\tB-DAT\n年\tI-DAT\nに\tO\n# not a comment inside a sentence\tO\n東京\tB-ORG\nの\tO\n"
                      "会議\tO\n大阪\tB-LOC\n\n京都\tB-Loc\nへ\tO\n\n札幌\tB-LOC\n", encoding="utf-8")
    with pytest.raises(InputDataError) as caught:
        run_ingest(_cfg(tmp_path, [source]))
    assert (f"'LOC' (2 times, first at {source} line 8) and 'Loc' (1 time, first at {source} line 10)"
            in str(caught.value)), str(caught.value)
