from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from bert_pipeline.config import build_config
from bert_pipeline.errors import ConfigError, InputDataError
from bert_pipeline.stages.ingest import decode_text, expand_sources, read_source, run_ingest
from bert_pipeline.lake.manifests import Lake
from tests.helpers import read_partition

CSV = 'id,text,label\n1,"first line\nsecond line, with comma",pos\n2,"he said ""hi""",neg\n3,plain,\n'


def ingest(tmp_path: Path, sources: list[str], **ingest_cfg) -> tuple[dict, pl.DataFrame]:
    cfg = build_config({"data_root": str(tmp_path / "lake"), "run_date": "2026-01-01",
                        "ingest": {"sources": sources, **ingest_cfg}})
    summary = run_ingest(cfg)
    lake = Lake.of(cfg)
    frame = read_partition(lake, "raw", cfg.run_date)
    return summary, frame


def test_csv_with_quoted_newlines_and_quotes(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(CSV)
    summary, raw = ingest(tmp_path, [str(tmp_path / "a.csv")], label_column="label", id_column="id")
    assert summary["rows"] == 3 and summary["labelled_rows"] == 2
    assert raw["text"].to_list() == ["first line\nsecond line, with comma", 'he said "hi"', "plain"]
    assert raw["doc_id"].to_list() == ["1", "2", "3"]
    assert raw["label"].to_list() == ["pos", "neg", None]
    assert raw.columns == ["doc_id", "text", "label", "split", "source", "source_row", "invalid_utf8",
                           "ingested_at", "run_date"]


@pytest.mark.parametrize("fmt", ["tsv", "jsonl", "parquet", "txt", "csv.gz", "jsonl.zst"])
def test_every_format_reads_the_same_texts(tmp_path: Path, fmt: str) -> None:
    texts = ["alpha beta", "gamma, delta", "epsilon"]
    path = tmp_path / f"data.{fmt}"
    if fmt == "tsv":
        path.write_text("text\n" + "\n".join(texts) + "\n")
    elif fmt == "jsonl":
        path.write_text("\n".join(json.dumps({"text": t, "n": i}) for i, t in enumerate(texts)) + "\n")
    elif fmt == "parquet":
        pq.write_table(pa.table({"text": texts}), path)
    elif fmt == "txt":
        path.write_text("\n".join(texts) + "\n")
    elif fmt == "csv.gz":
        path.write_bytes(gzip.compress(("text\n" + "\n".join(f'"{t}"' for t in texts) + "\n").encode()))
    else:
        lines = "\n".join(json.dumps({"text": t}) for t in texts) + "\n"
        path.write_bytes(zstandard.ZstdCompressor().compress(lines.encode()))
    _, raw = ingest(tmp_path, [str(path)])
    assert raw["text"].to_list() == texts
    assert raw["source_row"].to_list() == [0, 1, 2]


def test_invalid_utf8_is_replaced_counted_and_flagged(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b"text\nfine \xe2\x9c\x93\nbroken \xff\xfe here\nreal \xef\xbf\xbd char\n")
    summary, raw = ingest(tmp_path, [str(path)])
    assert summary["invalid_utf8_replaced"] == 2  # \xff and \xfe; the genuine U+FFFD is not counted
    assert raw["text"][1] == "broken \ufffd\ufffd here"
    assert raw["invalid_utf8"].to_list() == [False, True, True]  # a row holding U+FFFD is flagged


def test_boms_and_utf16() -> None:
    assert decode_text(b"\xef\xbb\xbftext\nx\n") == ("text\nx\n", 0)
    assert decode_text("text\nü\n".encode("utf-16")) == ("text\nü\n", 0)


def test_missing_column_lists_the_columns_that_exist(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(CSV)
    with pytest.raises(InputDataError) as err:
        ingest(tmp_path, [str(tmp_path / "a.csv")], text_column="body")
    assert "a.csv: ingest.text_column is 'body'" in str(err.value) and "id, text, label" in str(err.value)
    assert not (tmp_path / "lake").exists()  # nothing written before the error


def test_glob_matching_nothing_and_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="matches no file"):
        expand_sources([str(tmp_path / "*.csv")])
    (tmp_path / "x.xlsx").write_text("x")
    with pytest.raises(InputDataError, match="set ingest.format"):
        ingest(tmp_path, [str(tmp_path / "x.xlsx")])


def test_derived_ids_are_stable_and_unique_even_for_repeated_texts(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("text\nsame\nsame\nother\n")
    _, first = ingest(tmp_path, [str(tmp_path / "a.csv")])
    assert first["doc_id"].n_unique() == 3
    cfg = build_config({"ingest": {"sources": [str(tmp_path / "a.csv")]}})
    again, _ = read_source(expand_sources(cfg.ingest.sources)[0], cfg)
    assert again["doc_id"].to_list() == first["doc_id"].to_list()


def test_empty_ids_are_refused_naming_their_lines(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text('id,text\n1,a\n,"b\nstill b"\n3,c\n,d\n')
    with pytest.raises(InputDataError) as failure:
        ingest(tmp_path, [str(tmp_path / "a.csv")], id_column="id")
    assert f"{tmp_path / 'a.csv'}: ingest.id_column 'id' has 2 empty ids, at line 3, line 6: give every row an id" \
        in str(failure.value)
    pq.write_table(pa.table({"id": ["1", None], "text": ["a", "b"]}), tmp_path / "b.parquet")
    with pytest.raises(InputDataError, match="has 1 empty ids, at row 2: "):  # no lines in parquet: its rows
        ingest(tmp_path, [str(tmp_path / "b.parquet")], id_column="id")


def test_duplicate_given_ids_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text('id,text\n1,a\n2,"b\nstill b"\n1,c\n')  # a quoted value over two lines
    with pytest.raises(InputDataError, match="not unique") as failure:
        ingest(tmp_path, [str(tmp_path / "a.csv")], id_column="id")
    assert f"'1' is {tmp_path / 'a.csv'} line 2 and {tmp_path / 'a.csv'} line 5 with other texts or labels. " \
        "An id names one" in str(failure.value)
    assert "leave ingest.id_column empty (doc_ids are then derived from the text). Nothing was written" in str(
        failure.value)
    assert "with other texts or labels" in str(failure.value)  # '1,a' and '1,c' are two documents
    assert not (tmp_path / "lake").exists()


def test_rows_that_repeat_another_exactly_are_kept_once(tmp_path: Path) -> None:
    """A night exported twice over (id 7 and 8 again, same text and label; 9 without a label, twice): one of each is
    kept and the copies are counted and said; the same id with another label is still refused."""
    (tmp_path / "b.csv").write_text("id,text,label\n7,Доставка быстрая,pos\n8,Слабо,neg\n9,Без оценки,\n"
                                    "7,Доставка быстрая,pos\n8,Слабо,neg\n9,Без оценки,\n")
    summary, raw = ingest(tmp_path, [str(tmp_path / "b.csv")], id_column="id", label_column="label")
    assert raw.select("doc_id", "label", "source_row").rows() == [("7", "pos", 0), ("8", "neg", 1), ("9", None, 2)]
    assert summary["rows"] == 3 and summary["repeated_rows"] == 3
    assert summary["warnings"] == [
        f"3 row(s) repeat an earlier row exactly (ingest.id_column 'id', text and label), as a file concatenated "
        f"twice or an export that overlaps the one before leaves them, the first at {tmp_path / 'b.csv'} line 5 "
        "(id '7'): one of each is kept, the copies are left out (`repeated_rows` in the raw manifest)"]
    assert Lake(str(tmp_path / "lake")).read_manifest("raw", "2026-01-01")["counts"]["repeated_rows"] == 3
    (tmp_path / "c.csv").write_text("id,text,label\n7,Доставка быстрая,pos\n7,Доставка быстрая,neg\n")
    with pytest.raises(InputDataError, match="with other texts or labels"):
        ingest(tmp_path / "c", [str(tmp_path / "c.csv")], id_column="id", label_column="label")


def test_split_column_is_normalised_and_checked(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("text,s\na,TRAIN\nb,dev\nc,Test\nd,\n")
    _, raw = ingest(tmp_path, [str(tmp_path / "a.csv")], split_column="s")
    assert raw["split"].to_list() == ["train", "validation", "test", None]
    (tmp_path / "b.csv").write_text("text,s\na,holdout\n")
    with pytest.raises(InputDataError, match="holdout"):
        ingest(tmp_path, [str(tmp_path / "b.csv")], split_column="s")


def test_a_retry_is_skipped_and_a_config_change_rereads_the_same_sources(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("text,label\none,x\ntwo,y\n")
    first, raw = ingest(tmp_path, [str(path)])
    assert not first["skipped"] and ingest(tmp_path, [str(path)])[0]["skipped"]
    assert ingest(tmp_path, [str(path)], on_existing="append")[0]["skipped"]  # the policy is no reading setting
    path.touch()  # a new mtime, the same bytes: the same source
    again, reread = ingest(tmp_path, [str(path)], label_column="label")
    assert not again["skipped"] and reread["label"].to_list() == ["x", "y"]
    assert reread["doc_id"].to_list() == raw["doc_id"].to_list()


def night(tmp_path: Path, name: str, body: str, **ingest_cfg) -> tuple[dict, pl.DataFrame]:
    """Ingest one csv (written with `body`) into the one run_date every night of these tests lands on."""
    path = tmp_path / name
    path.write_text(body)
    return ingest(tmp_path, [str(path)], **ingest_cfg)


def committed(tmp_path: Path) -> tuple[dict, pl.DataFrame]:
    lake = Lake(str(tmp_path / "lake"))
    return lake.read_manifest("raw", "2026-01-01") or {}, read_partition(lake, "raw", "2026-01-01")


def test_other_sources_for_a_committed_run_date_are_refused_before_writing(tmp_path: Path) -> None:
    night(tmp_path, "monday.csv", "text,label\nfirst night,pos\nalso first,neg\n", label_column="label")
    manifest, rows = committed(tmp_path)
    with pytest.raises(InputDataError) as failure:
        night(tmp_path, "tuesday.csv", "text,label\nsecond night,pos\n", label_column="label")
    message = str(failure.value)
    assert f"raw run_date=2026-01-01 is already committed from {tmp_path / 'monday.csv'} (2 rows)" in message
    assert f"tonight's sources are {tmp_path / 'tuesday.csv'} (1 row)" in message
    assert "ingest.on_existing: append" in message and "ingest.on_existing: replace" in message
    assert committed(tmp_path)[0] == manifest and committed(tmp_path)[1].equals(rows)  # nothing written


def test_a_changed_file_of_a_committed_name_is_refused_unless_replace_is_asked(tmp_path: Path) -> None:
    night(tmp_path, "latest.csv", "text\none\ntwo\n")
    with pytest.raises(InputDataError, match=r"latest.csv \(3 rows, changed since it was committed\)"):
        night(tmp_path, "latest.csv", "text\none\ntwo\nthree\n")
    summary, raw = night(tmp_path, "latest.csv", "text\nthree\n", on_existing="replace")
    assert raw["text"].to_list() == ["three"] and summary["rows"] == 1
    assert summary["warnings"] == [f"ingest.on_existing: replace: the rows committed from {tmp_path / 'latest.csv'} "
                                   f"(2 rows) were replaced by tonight's from {tmp_path / 'latest.csv'} (1 row, "
                                   "changed since it was committed)"]


def test_append_keeps_the_committed_rows_and_is_a_no_op_when_repeated(tmp_path: Path) -> None:
    night(tmp_path, "monday.csv", "text,label\n周一 review 😀,pos\nsame text,neg\n", label_column="label")
    first_manifest, first = committed(tmp_path)
    shard = tmp_path / "lake" / "raw" / "run_date=2026-01-01" / first_manifest["outputs"][0]
    shard_bytes = shard.read_bytes()
    summary, raw = night(tmp_path, "tuesday.csv", "text,label\nsame text,neg\ntuesday,pos\n", label_column="label",
                         on_existing="append")
    assert summary["rows"] == 4 and summary["appended_rows"] == 2 and summary["labels"] == {"neg": 2, "pos": 2}
    assert raw["text"].to_list() == ["周一 review 😀", "same text", "same text", "tuesday"]
    assert raw["source"].to_list() == [str(tmp_path / "monday.csv")] * 2 + [str(tmp_path / "tuesday.csv")] * 2
    assert raw.head(2).drop("run_date").equals(first.drop("run_date"))  # doc_ids, ingested_at: as committed
    assert raw["doc_id"].n_unique() == 4 and shard.read_bytes() == shard_bytes  # the committed shard untouched
    manifest, _ = committed(tmp_path)
    assert [i["name"] for i in manifest["inputs"]] == [str(tmp_path / "monday.csv"), str(tmp_path / "tuesday.csv")]
    assert manifest["outputs"] == [first_manifest["outputs"][0], "part-00001.parquet"]
    assert ingest(tmp_path, [str(tmp_path / "tuesday.csv")], label_column="label", on_existing="append")[0]["skipped"]
    for policy in ("refuse", "append"):  # monday retried after tuesday appended: its rows are there already
        again, _ = ingest(tmp_path, [str(tmp_path / "monday.csv")], label_column="label", on_existing=policy)
        assert again["skipped"] and again["rows"] == 4
        assert again["reason"] == ("tonight's sources are already in the committed partition, which also holds "
                                   f"{tmp_path / 'tuesday.csv'} (2 rows)")
    assert committed(tmp_path)[0] == manifest


def test_an_appended_copy_of_a_committed_text_never_takes_its_kept_place(tmp_path: Path) -> None:
    """Curate keeps the first copy to arrive: the committed row (already scored under its id), not the appended
    copy whose id happens to sort first."""
    from bert_pipeline.stages.curate import run_curate

    body = "id,text,label\nm-9,\"Arrived broken, box crushed.\",neg\nm-7,Works fine so far,pos\n"
    night(tmp_path, "monday.csv", body, id_column="id", label_column="label")
    cfg = build_config({"data_root": str(tmp_path / "lake"), "run_date": "2026-01-01",
                        "ingest": {"sources": [str(tmp_path / "monday.csv")], "id_column": "id",
                                   "label_column": "label"}})
    assert run_curate(cfg)["curated_rows"] == 2
    night(tmp_path, "tuesday.csv", "id,text,label\na-1,\"Arrived broken,  box crushed.\",neg\n", id_column="id",
          label_column="label", on_existing="append")
    redone = run_curate(build_config({**cfg.model_dump(mode="json"),
                                      "ingest": {**cfg.ingest.model_dump(mode="json"),
                                                 "sources": [str(tmp_path / "tuesday.csv")],
                                                 "on_existing": "append"}}))
    assert redone["curated_rows"] == 2 and redone["rejected_by_reason"]["exact_duplicate"] == 1
    lake = Lake(str(tmp_path / "lake"))
    assert sorted(read_partition(lake, "curated", "2026-01-01")["doc_id"]) == ["m-7", "m-9"]
    assert read_partition(lake, "rejects", "2026-01-01").select("doc_id", "duplicate_of").row(0) == ("a-1", "m-9")


def test_append_of_a_changed_file_of_the_same_name_continues_its_ids(tmp_path: Path) -> None:
    night(tmp_path, "latest.csv", "text\nhello\nfirst\n")
    _, before = committed(tmp_path)
    _, raw = night(tmp_path, "latest.csv", "text\nhello\nsecond\n", on_existing="append")
    assert raw["text"].to_list() == ["hello", "first", "hello", "second"]
    assert raw["doc_id"].n_unique() == 4 and raw["doc_id"].head(2).equals(before["doc_id"])


def test_append_refuses_an_id_the_partition_already_holds(tmp_path: Path) -> None:
    night(tmp_path, "monday.csv", "id,text\n7,seven\n8,eight\n", id_column="id")
    manifest, _ = committed(tmp_path)
    with pytest.raises(InputDataError) as failure:
        night(tmp_path, "tuesday.csv", "id,text\n9,nine\n7,seven again\n", id_column="id", on_existing="append")
    message = str(failure.value)
    assert ("the ids in ingest.id_column 'id' are not unique across the committed partition and tonight's sources"
            in message)
    assert (f"'7' is {tmp_path / 'monday.csv'} row 1 (already committed) and {tmp_path / 'tuesday.csv'} line 3"
            in message)
    assert committed(tmp_path)[0] == manifest
    # an export that overlaps the committed one: the overlap is left out, the new row appended
    summary, raw = night(tmp_path, "overlap.csv", "id,text\n9,nine\n7,seven\n", id_column="id",
                         on_existing="append")
    assert raw["doc_id"].to_list() == ["7", "8", "9"] and summary["repeated_rows"] == 1
    assert f"the first at {tmp_path / 'overlap.csv'} line 3 (id '7')" in summary["warnings"][0]


def test_on_existing_is_checked() -> None:
    with pytest.raises(ConfigError, match="ingest.on_existing") as failure:
        build_config({"ingest": {"on_existing": "merge"}})
    assert "append" in str(failure.value) and "replace" in str(failure.value)


def test_empty_files_are_sources_with_no_rows(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "a.csv").write_text("text,label\nhello,x\n")
    summary, raw = ingest(tmp_path, [str(tmp_path / "empty.csv"), str(tmp_path / "a.csv")], label_column="label")
    assert summary["rows"] == 1 and raw["text"].to_list() == ["hello"]


def test_txt_sources_refuse_label_columns(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one\ntwo\n")
    with pytest.raises(InputDataError, match="txt source holds only text"):
        ingest(tmp_path, [str(tmp_path / "a.txt")], label_column="label")


def test_relative_sources_keep_their_name_and_ids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.csv").write_text("text\nhello\n")
    monkeypatch.chdir(tmp_path)
    cfg = build_config({"ingest": {"sources": ["d/a.csv"]}})
    frame, _ = read_source(expand_sources(cfg.ingest.sources)[0], cfg)
    assert frame["source"].to_list() == ["d/a.csv"]


def test_a_night_kept_as_committed_under_other_reading_settings_says_so(tmp_path: Path) -> None:
    """A retried night whose partition holds its sources among others is skipped, and an append adds to the
    committed rows: neither reads the committed rows again, so when they were read under other settings (here a
    label_map added since) the summary says so and names the setting that reads them again."""
    night(tmp_path, "monday.csv", "text,label\nArrived broken 😞,neg\n很好用,pos\n", label_column="label")
    night(tmp_path, "tuesday.csv", "text,label\nworks fine,pos\n", label_column="label", on_existing="append")
    manifest, before = committed(tmp_path)
    mapped = {"label_column": "label", "label_map": {"pos": "positive", "neg": "negative"}}
    again, _ = ingest(tmp_path, [str(tmp_path / "monday.csv")], **mapped)
    assert again["skipped"] and len(again["warnings"]) == 1
    assert again["warnings"][0].startswith("raw run_date=2026-01-01: committed rows of it were read under other "
                                           "ingest settings than tonight's")
    assert again["warnings"][0].endswith("run it with all of its sources and ingest.on_existing: replace")
    # it names the settings that differ, each with both values
    assert ('tonight\'s (ingest.label_map.neg: unset then, "negative" tonight, ingest.label_map.pos: unset then, '
            '"positive" tonight); they stay') in again["warnings"][0]
    assert committed(tmp_path)[0] == manifest
    summary, raw = night(tmp_path, "wednesday.csv", "text,label\nnot bad,pos\n", on_existing="append", **mapped)
    assert summary["appended_rows"] == 1 and any("other ingest settings" in w for w in summary["warnings"])
    assert raw.head(3)["label"].to_list() == before["label"].to_list() == ["neg", "pos", "pos"]  # as they were read
    # the partition now holds rows read under both: a retry under either is told of the other, and what differs
    appended = committed(tmp_path)[0]
    assert len(appended["read_under"]) == 2 and set(manifest["read_under"]) < set(appended["read_under"])
    assert set(appended["readings"]) == set(appended["read_under"])
    for settings, label_map in (({"label_column": "label"}, '"negative" then, unset tonight'),
                                (mapped, 'unset then, "negative" tonight')):
        retried, _ = ingest(tmp_path, [str(tmp_path / "monday.csv")], **settings)
        assert retried["skipped"] and any(f"ingest.label_map.neg: {label_map}" in w for w in retried["warnings"])
    assert len(manifest["read_under"]) == 1  # tuesday was appended under monday's settings: one reading


def test_a_night_read_before_its_settings_were_recorded_names_the_reading_hashes(tmp_path: Path) -> None:
    """A manifest that recorded its reading hashes but not the settings behind them (written by the version before
    `readings`) still draws the warning, naming the hashes instead of the settings."""
    night(tmp_path, "monday.csv", "text,label\nArrived broken,neg\n", label_column="label")
    manifest_url = tmp_path / "lake" / "_manifests" / "raw" / "run_date=2026-01-01.json"
    old = json.loads(manifest_url.read_text())
    del old["readings"]
    manifest_url.write_text(json.dumps(old))
    summary, _ = night(tmp_path, "tuesday.csv", "text,label\nworks fine,pos\n", label_column="label",
                       label_map={"pos": "positive", "neg": "negative"}, on_existing="append")
    [warning] = [w for w in summary["warnings"] if "other ingest settings" in w]
    assert f"(reading hash {old['read_under'][0]}, tonight " in warning and "label_map" not in warning


def test_an_append_to_a_night_committed_before_readings_were_recorded_does_not_claim_its_rows(tmp_path: Path) -> None:
    """A manifest written by an older version records no reading: after an append it says that some rows were read
    under unrecorded settings, instead of claiming every row for tonight's."""
    night(tmp_path, "monday.csv", "text,label\nArrived broken,neg\n", label_column="label")
    manifest_url = tmp_path / "lake" / "_manifests" / "raw" / "run_date=2026-01-01.json"
    old = json.loads(manifest_url.read_text())
    del old["read_under"], old["readings"]
    manifest_url.write_text(json.dumps(old))
    summary, raw = night(tmp_path, "tuesday.csv", "text,label\nworks fine,pos\n", label_column="label",
                         on_existing="append", shard_rows=7)  # shard_rows cuts files, reads nothing
    assert summary["appended_rows"] == 1 and "warnings" not in summary and raw.height == 2
    recorded = committed(tmp_path)[0]["read_under"]
    assert len(recorded) == 2 and "unrecorded" in recorded


def test_the_report_says_when_a_night_holds_rows_read_under_several_settings(tmp_path: Path) -> None:
    """An append under another label_map leaves a partition read two ways; the night's report says so, with what
    differs, for as long as it holds; a replace under one setting reads the night one way and the note goes."""
    from bert_pipeline.stages.curate import run_curate
    from bert_pipeline.stages.report import write_report

    def report(**ingest_cfg) -> str:
        cfg = build_config({"data_root": str(tmp_path / "lake"), "run_date": "2026-01-01",
                            "ingest": {"sources": [str(tmp_path / "tuesday.csv")], **ingest_cfg}})
        run_curate(cfg)
        return Path(write_report(cfg)["report"]).read_text()

    night(tmp_path, "monday.csv", "text,label\nArrived broken 😞,neg\n很好用，物流很快,pos\n", label_column="label")
    mapped = {"label_column": "label", "label_map": {"neg": "negative"}}
    night(tmp_path, "tuesday.csv", "text,label\nworks fine for me,neg\n", on_existing="append", **mapped)
    text = report(**mapped)
    assert ("**Read under several settings**: raw run_date=2026-01-01 holds rows read under 2 ingest settings, "
            "appended under other settings than the committed rows (ingest.label_map.neg: ") in text
    assert '"negative" in another' in text or '"negative" in one reading' in text
    both = [str(tmp_path / "monday.csv"), str(tmp_path / "tuesday.csv")]
    ingest(tmp_path, both, on_existing="replace", **mapped)
    assert "Read under several settings" not in report(**mapped)
    assert committed(tmp_path)[1]["label"].to_list() == ["negative", "pos", "negative"]


def test_the_report_plots_curation_outcomes_only_when_rows_were_rejected(tmp_path: Path) -> None:
    """A chart of one bar (every row curated) says nothing the sentence above it does not: it is left out."""
    from bert_pipeline.stages.curate import run_curate
    from bert_pipeline.stages.report import write_report

    texts = ["Arrived broken and nobody answered my emails", "很好用，物流很快，包装也很仔细",
             "Works fine for me, battery lasts two days"]
    for run_date, rows in (("2026-01-01", texts), ("2026-01-02", texts + [texts[0]])):  # the second: a duplicate
        source = tmp_path / f"{run_date}.csv"
        pl.DataFrame({"text": rows}).write_csv(source)
        cfg = build_config({"data_root": str(tmp_path / "lake"), "run_date": run_date,
                            "ingest": {"sources": [str(source)]}})
        ingest_only = run_ingest(cfg)
        assert ingest_only["rows"] == len(rows)
        run_curate(cfg)
        written = write_report(cfg)
        text = Path(written["report"]).read_text()
        rejected = run_date == "2026-01-02"
        assert ("reject_reasons.png" in written["plots"]) is rejected
        assert ("![reject_reasons.png](reject_reasons.png)" in text) is rejected
