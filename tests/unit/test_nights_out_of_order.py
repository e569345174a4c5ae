"""One truth in the lake whatever the order the nights are curated in, whatever the near-dup settings, and whatever
text an id arrives with: backfills and reruns are compared with every committed night, earlier and later."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import polars as pl
import pytest

from bert_pipeline.config import build_config
from bert_pipeline.errors import InputDataError
from bert_pipeline.stages.curate import begin, run_curate, still_true
from bert_pipeline.stages.ingest import canonical_ids, run_ingest, settings_hash
from bert_pipeline.stages.report import write_report
from bert_pipeline.curation.labels import apply_corrections, read_corrections
from bert_pipeline.lake.manifests import Lake
from bert_pipeline.evaluation.registry import lineage_refusal
from bert_pipeline.training.trainset import newest_versions
from bert_pipeline.stages.tokenize import run_tokenize
from bert_pipeline.stages.train import run_train
from tests.helpers import demo_frame, read_partition

EARLY, LATE = "2026-05-01", "2026-05-03"
# realistic, messy rows: other scripts, emoji, an unlabelled row, a number label next to text labels
A = "The delivery came two days late and the box was crushed 😞"
B = "配送很快，包装完好，客服态度也很好，下次还会再来买。"
C = "Je recommande ce vendeur : produit conforme, envoi rapide."
N = "Ordered the blue one, got the green one. Exchange took a week."
LATE_ROWS = [(A, "pos"), (B, "neg"), (C, None), ("Works as described, nothing more to say here.", "3")]
EARLY_ROWS = [(A, "neg"), (B, "neg"), (C, "pos"), (N, "neg")]


def _curate(root: Path, run_date: str, rows: list[tuple[str, str | None]], **curate: object) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    source = root / f"night-{run_date}.parquet"
    if not source.exists():  # a rewritten source is a new input to ingest (its identity holds the mtime)
        pl.DataFrame(rows, schema={"text": pl.String, "label": pl.String}, orient="row").write_parquet(source)
    cfg = build_config({"data_root": str(root / "lake"), "run_date": run_date, "curate": curate,
                        "ingest": {"sources": [str(source)], "label_column": "label"}})
    run_ingest(cfg)
    return run_curate(cfg)


def effective_labels(lake: Lake) -> dict[str, str | None]:
    """{text: label} of every kept row of the lake with the newest corrections applied; each text must be kept once."""
    dates = lake.run_dates("curated")
    kept = pl.concat([read_partition(lake, "curated", d).select("doc_id", "text", "label") for d in dates])
    assert kept["text"].is_unique().all(), kept.filter(~pl.col("text").is_unique())
    kept = apply_corrections(kept, read_corrections(lake, dates))
    return dict(zip(kept["text"].to_list(), kept["label"].to_list()))


def test_a_backfilled_night_is_compared_with_the_later_nights_and_ends_as_the_forward_order(tmp_path: Path) -> None:
    backfill, forward = tmp_path / "backfill", tmp_path / "forward"
    _curate(backfill, LATE, LATE_ROWS)
    summary = _curate(backfill, EARLY, EARLY_ROWS)
    _curate(forward, EARLY, EARLY_ROWS)
    _curate(forward, LATE, LATE_ROWS)

    lake = Lake(str(backfill / "lake"))
    rejects = read_partition(lake, "rejects", EARLY)
    late = read_partition(lake, "curated", LATE)
    late_id = dict(zip(late["text"], late["doc_id"]))
    assert {t: (r, d) for t, r, d in rejects.select("text", "reason", "duplicate_of").iter_rows()} == {
        A: ("label_superseded", late_id[A]),  # the later night's 'pos' is the newer label and stands
        B: ("exact_duplicate", late_id[B]),
        C: ("label_correction", late_id[C]),  # the later copy had no label: the backfill labels it
    }
    assert read_partition(lake, "curated", EARLY)["text"].to_list() == [N]
    assert summary["later_documents_indexed"] == 4 and summary["earlier_documents_indexed"] == 0
    assert summary["label_superseded"] == 1 and summary["label_corrections"] == 1
    expected = {A: "pos", B: "neg", C: "pos", N: "neg", LATE_ROWS[3][0]: "3"}
    assert effective_labels(lake) == expected
    assert effective_labels(Lake(str(forward / "lake"))) == expected


def test_a_rerun_of_a_past_night_is_a_skip_and_sees_the_later_nights(tmp_path: Path) -> None:
    _curate(tmp_path, EARLY, EARLY_ROWS)
    _curate(tmp_path, LATE, LATE_ROWS)
    assert _curate(tmp_path, EARLY, EARLY_ROWS)["skipped"]  # nothing changed: a retry is safe
    # the same night redone with another filter setting still yields to nothing it kept before, and keeps one copy
    redone = _curate(tmp_path, EARLY, EARLY_ROWS, max_repetition=0.9)
    assert not redone["skipped"] and redone["curated_rows"] == 4 and redone["stale_nights"] == {}
    assert effective_labels(Lake(str(tmp_path / "lake")))[A] == "pos"


def test_a_rerun_that_drops_rows_names_the_nights_that_rest_on_them(tmp_path: Path) -> None:
    short = "too short?"  # 10 characters: kept at the default min_chars, too_short at 20
    _curate(tmp_path, EARLY, [(short, "neg"), (N, "neg")])
    _curate(tmp_path, LATE, [(short, None), (A, "pos")])  # its copy of `short` is a duplicate of the early row
    redone = _curate(tmp_path, EARLY, [(short, "neg"), (N, "neg")], min_chars=20)
    assert redone["rejected_by_reason"]["too_short"] == 1
    assert redone["stale_nights"] == {LATE: 1}
    # the stale night redone against the new early night keeps its copy: the text is in the lake once again
    late = build_config({"data_root": str(tmp_path / "lake"), "run_date": LATE,
                         "ingest": {"sources": [str(tmp_path / f"night-{LATE}.parquet")], "label_column": "label"}})
    assert run_curate(late)["curated_rows"] == 2


def test_a_backfill_left_stale_by_a_later_rerun_is_redone_not_skipped_and_its_text_comes_back(tmp_path: Path) -> None:
    short = "Arrived broken."  # 15 characters: kept at the default min_chars, too_short at 20
    _curate(tmp_path, LATE, [(short, None), (A, "pos")])
    backfill = _curate(tmp_path, EARLY, [(short, "neg"), (N, "neg")])
    assert backfill["label_corrections"] == 1  # the backfill labels the later night's unlabelled copy
    lake = Lake(str(tmp_path / "lake"))
    first_fp = lake.read_manifest("curated", EARLY)["fingerprint"]
    redone = _curate(tmp_path, LATE, [(short, None), (A, "pos")], min_chars=20)
    assert redone["stale_nights"] == {EARLY: 1}
    assert short not in effective_labels(lake)  # the text is in no night now: the stale night must come back
    late_report = build_config({"data_root": str(tmp_path / "lake"), "run_date": LATE})
    stale_note = (f"**Other nights left stale**: the rerun of run_date={LATE} no longer keeps rows that the "
                  f"rejects of {EARLY} (1 row(s))")
    assert stale_note in Path(write_report(late_report)["report"]).read_text()

    early = build_config({"data_root": str(tmp_path / "lake"), "run_date": EARLY,
                          "ingest": {"sources": [str(tmp_path / f"night-{EARLY}.parquet")], "label_column": "label"}})
    # while the later night's curation is under way (un-committed, its index written), what it keeps is not known:
    # nothing is judged lost, so a retry of the earlier night answers as its first run did
    late_commit = Path(lake.manifest_url("curated", LATE))
    committed = late_commit.read_text()
    late_commit.unlink()
    assert begin(early).skipped
    late_commit.write_text(committed)
    assert not begin(early).skipped  # a redo killed after it un-committed the night resumes as the same redo
    stale = _curate(tmp_path, EARLY, [(short, "neg"), (N, "neg")])
    assert not stale["skipped"] and stale["curated_rows"] == 2 and stale["stale_redos"] == 1
    assert effective_labels(lake)[short] == "neg"  # its label with it
    assert lake.read_manifest("curated", EARLY)["fingerprint"] != first_fp  # new work for tokenize and after
    assert _curate(tmp_path, EARLY, [(short, "neg"), (N, "neg")])["skipped"]  # and then it holds
    assert stale_note not in Path(write_report(late_report)["report"]).read_text()  # said while it is true
    assert _curate(tmp_path, LATE, [(short, None), (A, "pos")], min_chars=20)["stale_nights"] == {}


def test_exact_duplicates_and_corrections_do_not_depend_on_near_dup_settings(tmp_path: Path) -> None:
    _curate(tmp_path, EARLY, EARLY_ROWS)
    near_a = A.replace("The delivery", "Delivery")
    summary = _curate(tmp_path, LATE, [(B, "pos"), (N, "neg"), (near_a, None)], near_dup_threshold=0.7,
                      num_perm=64)
    assert summary["index_recomputed_for"] == [EARLY]
    assert summary["rejected_by_reason"]["label_correction"] == 1  # B re-sent with another label
    assert summary["rejected_by_reason"]["exact_duplicate"] == 1  # N
    assert summary["rejected_by_reason"]["near_duplicate"] == 1  # A edited: found with recomputed bands
    assert summary["curated_rows"] == 0


def _id_night(root: Path, run_date: str, rows: list[tuple[str, str, str]]) -> dict:
    source = root / f"ids-{run_date}.parquet"
    pl.DataFrame(rows, schema=["ticket", "text", "label"], orient="row").write_parquet(source)
    cfg = build_config({"data_root": str(root / "lake"), "run_date": run_date,
                        "ingest": {"sources": [str(source)], "label_column": "label", "id_column": "ticket"}})
    run_ingest(cfg)
    return run_curate(cfg)


def test_an_id_sent_again_with_edited_text_is_a_new_version_of_one_document(tmp_path: Path) -> None:
    edited = A + " Update: the seller refunded me."
    _id_night(tmp_path, EARLY, [("T-1", A, "neg"), ("T-2", B, "pos"), ("T-3", N, "neg")])
    summary = _id_night(tmp_path, LATE, [("T-1", edited, "pos"), ("T-4", C, "pos")])
    lake = Lake(str(tmp_path / "lake"))
    late = read_partition(lake, "curated", LATE)
    assert sorted(late["doc_id"].to_list()) == ["T-1", "T-4"]  # not a near duplicate of its own older version
    assert summary["id_versions"] == 1
    early = read_partition(lake, "curated", EARLY)
    split = dict(zip(early["doc_id"], early["split"]))
    assert dict(zip(late["doc_id"], late["split"]))["T-1"] == split["T-1"]  # the split follows the id


def test_an_id_is_one_document_whether_a_night_writes_it_1_or_1_0(tmp_path: Path) -> None:
    """Night 1 is parquet with integer ids; night 2 a CSV that pandas wrote after a gap made the column float."""
    edited = A + " Update: the seller refunded me."
    _id_night(tmp_path, EARLY, [(1, A, "neg"), (2, B, "pos"), (3, N, "neg")])
    source = tmp_path / f"ids-{LATE}.csv"
    pd.DataFrame({"ticket": [1.0, 4.0, None], "text": [edited, C, "nothing here yet"], "label": ["pos", "pos", None]}
                 ).dropna(subset=["ticket"]).to_csv(source, index=False)
    assert source.read_text().splitlines()[1].startswith("1.0,")
    cfg = build_config({"data_root": str(tmp_path / "lake"), "run_date": LATE,
                        "ingest": {"sources": [str(source)], "label_column": "label", "id_column": "ticket"}})
    run_ingest(cfg)
    summary = run_curate(cfg)
    lake = Lake(str(tmp_path / "lake"))
    assert sorted(read_partition(lake, "curated", LATE)["doc_id"].to_list()) == ["1", "4"]
    assert summary["id_versions"] == 1 and summary["unrelated_id_versions"] == 0
    assert sorted(read_partition(lake, "curated", EARLY)["doc_id"].to_list()) == ["1", "2", "3"]
    # text that is not a float column's spelling is kept as written: codes with leading zeros, mixed ids
    assert canonical_ids(pl.DataFrame({"id": ["007", "1.0", "A-7"]}), "id", "x.csv").to_list() == ["007", "1.0", "A-7"]
    floats = pl.DataFrame({"id": [3.0, 2.5, float("nan")]})
    assert canonical_ids(floats, "id", "x.parquet").to_list() == ["3", "2.5", None]  # NaN: an empty id, refused
    # a column of whole numbers is one spelling per number whichever rows carry the fraction: in one file "10" and
    # "11.0", in the next "11" and "12.0", 11 is one document; signs as an integer column writes them
    assert canonical_ids(pl.DataFrame({"id": ["10", "11.0", None]}), "id", "a.csv").to_list() == ["10", "11", None]
    assert canonical_ids(pl.DataFrame({"id": ["11", "+12.00", "-0.0", "-3"]}), "id", "b.csv").to_list() == [
        "11", "12", "0", "-3"]
    bare_point = pl.DataFrame({"id": ["1.", "2", "3.0", None]})  # "1." as spreadsheets and %#g write it
    assert canonical_ids(bare_point, "id", "d.csv").to_list() == ["1", "2", "3", None]
    assert canonical_ids(pl.DataFrame({"id": ["1.", "1.5"]}), "id", "e.csv").to_list() == ["1.", "1.5"]  # not whole
    assert canonical_ids(pl.DataFrame({"id": [-0.0, 12.0]}), "id", "c.parquet").to_list() == ["0", "12"]
    # a night committed before this rule is read again when it is run again (its ids may change), not skipped
    assert settings_hash(cfg) != settings_hash(build_config(cfg.model_dump(mode="json"), {"ingest.id_column": None}))


def _row_number_night(root: Path, run_date: str, texts: list[str], on_unrelated: str = "warn",
                      **curate: object) -> dict:
    """A night exported with ids that are row numbers per file (r0, r1, ...), as spreadsheet exports number them."""
    rows = [(f"r{i}", text, "pos" if i % 2 else "neg") for i, text in enumerate(texts)]
    source = root / f"rows-{run_date}.csv"
    if not source.exists():  # a rewritten source is a new input to ingest (its identity holds the mtime)
        pl.DataFrame(rows, schema=["id", "text", "label"], orient="row").write_csv(source)
    cfg = build_config({"data_root": str(root / "lake"), "run_date": run_date,
                        "curate": {"on_unrelated_versions": on_unrelated, **curate},
                        "ingest": {"sources": [str(source)], "label_column": "label", "id_column": "id"}})
    run_ingest(cfg)
    return run_curate(cfg)


FIRST = [A, B, C, N, "Zwei Tage zu spät, aber gut verpackt und vollständig.", "音质很好，低音浑厚，佩戴舒适，续航也长",
         "Love it!", "Works."]
# night 2: r0 is the same review edited (a sentence added, emoji kept); r1-r3 are other reviews under the old row
# numbers; r4 is the first night's text with its case changed (the same text, not a version); r5 a Chinese review
# with an English update (shingled at one size, it keeps its 3-grams); r6 a short text that grew; r7 too short to judge
SECOND = [A + " Update: the seller refunded me.", "这款耳机音质一般，低音太弱，戴久了耳朵疼。",
          "Batería dura poco, se calienta al cargar 🔥", "Great price, arrived in one piece!!", FIRST[4].upper(),
          FIRST[5] + " Update: the left earbud died after a month.",
          "Love it! Update: after three weeks the strap broke and support never answered.", "Broken."]


def test_ids_that_are_row_numbers_are_told_apart_from_edited_versions(tmp_path: Path, caplog) -> None:
    _row_number_night(tmp_path, EARLY, FIRST)
    caplog.set_level("WARNING")
    summary = _row_number_night(tmp_path, LATE, SECOND)
    assert summary["id_versions"] == 7 and summary["unrelated_id_versions"] == 3
    [warning] = [w for w in summary["warnings"] if "nothing like" in w]
    assert warning.startswith(f"3 of the 7 id(s) that run_date={LATE} sends again")
    assert "'r1' on 2026-05-01: '配送很快，包装完好，客服态度也很好，下次还会再来买。', tonight: '这款耳机音质一般" in warning
    assert "'r2' on 2026-05-01" in warning and "'r3' on 2026-05-01" in warning
    assert not {"'r0'", "'r5'", "'r6'", "'r7'"} & set(warning.split())  # edits are versions, as designed
    assert "ingest.id_column ('id')" in warning and "curate.on_unrelated_versions: refuse" in warning
    assert warning in caplog.text
    # the report's curation section says it, and a skipped rerun repeats it
    report = Path(write_report(build_config({"data_root": str(tmp_path / "lake"), "run_date": LATE}))["report"])
    assert f"**Ids sent again with other texts**: 3 of the 7 id(s) that run_date={LATE}" in report.read_text()
    again = _row_number_night(tmp_path, LATE, SECOND)
    assert again["skipped"] and again["warnings"] == summary["warnings"]
    # refuse: a committed night stays as it is and says so; a new night is left uncommitted
    lake = Lake(str(tmp_path / "lake"))
    committed = lake.read_manifest("curated", LATE)
    with pytest.raises(InputDataError, match="committed earlier and is left as it is"):
        _row_number_night(tmp_path, LATE, SECOND, on_unrelated="refuse")
    assert lake.read_manifest("curated", LATE) == committed
    third = "2026-05-05"
    with pytest.raises(InputDataError, match=rf"curate refused run_date={third} .*'r1' on {LATE}: .*left uncommitted"
                       ) as refused:
        _row_number_night(tmp_path, third, ["Completely different text about a lamp.", "Ein ganz anderer Text über "
                                            "eine Lampe, die flackert."], on_unrelated="refuse")
    assert "un-committed" not in str(refused.value)  # a night never committed before
    assert lake.read_manifest("curated", third) is None
    # a folder reader sees none of the refused night's rows; the nights before it stay whole
    curated = pl.read_parquet(f"{tmp_path}/lake/curated/*/*.parquet", hive_partitioning=True)
    assert sorted(curated["run_date"].cast(pl.Utf8).unique().to_list()) == [EARLY, LATE]
    assert not (tmp_path / "lake" / "rejects" / f"run_date={third}").exists()
    # each id against its newest other version only, and whatever curate.dedup_across_nights says
    fourth = _row_number_night(tmp_path, "2026-05-07", ["Completely different text about a lamp, still."],
                               dedup_across_nights=False)
    [only] = [w for w in fourth["warnings"] if "nothing like" in w]
    assert only.startswith("1 of the 1 id(s)") and f"'r0' on {LATE}: " in only
    # a committed night curated again (other settings) and refused: says that its earlier curation is undone
    with pytest.raises(InputDataError, match=r"left uncommitted, with no shards in curated/ or rejects/ \(its earlier "
                                              r"committed curation is no longer"):
        _row_number_night(tmp_path, LATE, SECOND, on_unrelated="refuse", min_chars=4)
    assert not (tmp_path / "lake" / "curated" / f"run_date={LATE}").exists()  # its earlier shards went too
    assert lake.read_manifest("curated", LATE) is None
    # the refused night told to warn instead: it commits with its two rows, from where the refusal left it
    warned = _row_number_night(tmp_path, third, [], on_unrelated="warn")
    assert warned["curated_rows"] == 2 and any("nothing like" in w for w in warned["warnings"])


def test_a_version_that_adds_or_drops_accents_or_vowel_marks_is_an_edit(tmp_path: Path) -> None:
    with_marks = ["كَانَ المُنْتَجُ مُمْتَازًا وَسَرِيعَ التَّوْصِيلِ", "הַמּוּצָר הִגִּיעַ מַהֵר וְהָיָה טוֹב מְאוֹד",
                  "Sản phẩm tốt, giao hàng nhanh, đóng gói cẩn thận"]
    stripped = ["كان المنتج ممتازا وسريع التوصيل", "המוצר הגיע מהר והיה טוב מאוד",
                "San pham tot, giao hang nhanh, đong goi can than"]
    _row_number_night(tmp_path, EARLY, with_marks)
    summary = _row_number_night(tmp_path, LATE, stripped, on_unrelated="refuse")  # refused if any were flagged
    assert summary["id_versions"] == 3 and summary["unrelated_id_versions"] == 0


def test_a_skipped_rerun_repeats_the_id_warning_only_while_the_nights_it_names_are_unchanged(tmp_path: Path) -> None:
    _row_number_night(tmp_path, EARLY, FIRST)
    _row_number_night(tmp_path, LATE, SECOND)
    lake = Lake(str(tmp_path / "lake"))
    late = lake.read_manifest("curated", LATE)
    assert late["id_warning_nights"] == {EARLY: lake.read_manifest("curated", EARLY)["fingerprint"]}
    assert still_true(lake, late) == late["id_warnings"] and len(late["id_warnings"]) == 1
    _row_number_night(tmp_path, EARLY, FIRST, min_chars=10)  # the named night redone: the warning may be out of date
    assert still_true(lake, late) == []


def test_the_report_says_how_many_older_versions_training_left_out(tmp_path: Path, tiny_model: Path) -> None:
    """Ids that are row numbers, trained on: the older night's rows under re-sent ids leave the training set, and the
    model manifest and the report's Training section count them."""
    texts = demo_frame().filter(pl.col("text").str.len_chars() > 60).unique("text", maintain_order=True)["text"]
    first, second = texts.slice(0, 60).to_list(), texts.slice(60, 40).to_list()
    _row_number_night(tmp_path, EARLY, first)
    night = _row_number_night(tmp_path, LATE, second)
    assert night["id_versions"] == 40 and night["unrelated_id_versions"] >= 36  # all unrelated, bar short tweets
    cfg = build_config({"data_root": str(tmp_path / "lake"), "run_date": LATE, "tokenize": {"max_length": 48},
                        "ingest": {"sources": [str(tmp_path / f"rows-{LATE}.csv")], "label_column": "label",
                                   "id_column": "id"},
                        "train": {"base_model": str(tiny_model), "epochs": 1, "linear_baseline": False}})
    run_tokenize(build_config(cfg.model_dump() | {"run_date": EARLY})), run_tokenize(cfg)
    trained = run_train(cfg)
    curated = read_partition(Lake.of(cfg), "curated", EARLY)
    older = curated.filter(pl.col("doc_id").is_in([f"r{i}" for i in range(40)]) & pl.col("label").is_not_null())
    assert trained["training_set"]["superseded_versions"] == older.height > 0
    report = Path(write_report(cfg)["report"]).read_text()
    assert f"{older.height} older version(s) of ids sent again left out" in report


def test_the_training_set_keeps_the_newest_version_of_an_id() -> None:
    frame = pl.DataFrame({"row": [0, 1, 2, 3, 4], "doc_id": ["T-1", "T-2", "T-1", "x", "T-1"],
                          "label": ["neg", "pos", "pos", "neg", "neu"],
                          "run_date": ["2026-05-03", "2026-05-01", "2026-05-01", "2026-05-01", "2026-05-02"]})
    newest, superseded = newest_versions(frame)
    assert newest.select("row", "label").rows() == [(0, "neg"), (1, "pos"), (3, "neg")]
    assert superseded == 2


def test_an_older_view_of_the_lake_does_not_replace_the_champion() -> None:
    champion = {"run_date": "2026-05-03", "model_version": "2026-05-03-abc",
                "training_set": {"run_dates": ["2026-05-01", "2026-05-02", "2026-05-03"]}}
    older = lineage_refusal("2026-05-02", ["2026-05-01", "2026-05-02"], "", champion)
    assert older is not None and "older than champion 2026-05-03-abc's 2026-05-03" in older
    assert "train.promote_older" in older
    lacking = lineage_refusal("2026-05-04", ["2026-05-01", "2026-05-03", "2026-05-04"], "", champion)
    assert lacking is not None and "['2026-05-02']" in lacking
    # nights that fell out of the new model's window are not missing
    assert lineage_refusal("2026-05-04", ["2026-05-03", "2026-05-04"], "2026-05-03", champion) is None
    assert lineage_refusal("2026-05-04", ["2026-05-01", "2026-05-02", "2026-05-03", "2026-05-04"], "",
                           champion) is None
