"""Several nights: the training set accumulates, labels keep one identity whatever their type, corrections count and
their newest label is trained on, unseen labels are refused, colliding spellings are refused before any write."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from bert_pipeline.config import build_config
from bert_pipeline.stages.curate import run_curate
from bert_pipeline.errors import InputDataError
from bert_pipeline.stages.ingest import run_ingest
from bert_pipeline.stages.report import write_report
from bert_pipeline.lake.manifests import Lake
from bert_pipeline.modeling.models import fast_encoder, load_tokenizer
from bert_pipeline.stages.tokenize import run_tokenize
from bert_pipeline.stages.train import run_train
from bert_pipeline.training.trainset import load_training_set, plan_training_set
from tests.helpers import demo_frame, read_partition

SENTIMENT_CODE = {"negative": 0, "neutral": 1, "positive": 2}
NIGHT1, NIGHT2 = "2026-03-01", "2026-03-02"


def tweets(skip: int, rows: int) -> pl.DataFrame:
    """Distinct longer demo tweets (few near duplicates among them) with their sentiment as an int code."""
    frame = demo_frame().filter(pl.col("text").str.len_chars() > 60).unique("text", maintain_order=True)
    frame = frame.sample(fraction=1.0, shuffle=True, seed=0)  # the corpus is sorted by label
    return frame.slice(skip, rows).select("text", label=pl.col("sentiment").replace_strict(SENTIMENT_CODE,
                                                                                          return_dtype=pl.Int64))


def night_config(root: Path, run_date: str, source: Path, model: Path, **train: object) -> dict:
    return {"data_root": str(root / "lake"), "run_date": run_date,
            "ingest": {"sources": [str(source)], "label_column": "label"}, "tokenize": {"max_length": 48},
            "train": {"base_model": str(model), "epochs": 2, "batch_size": 16, "learning_rate": 1e-3,
                      "linear_baseline": False, **train}}  # the tiny BERT is no match for TF-IDF here


def run_night(config: dict) -> dict:
    cfg = build_config(config)
    return {"ingest": run_ingest(cfg), "curate": run_curate(cfg), "tokenize": run_tokenize(cfg),
            "train": run_train(cfg)}


@pytest.fixture(scope="module")
def two_nights(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> dict:
    """Night 1: int64 labels. Night 2: the same labels as float64 with NaN gaps, 30 texts of night 1 sent again
    (10 with a corrected label), and one new text sent twice with two labels (a conflict within the night)."""
    root = tmp_path_factory.mktemp("nights")
    first = tweets(0, 240)
    first.write_parquet(root / "night1.parquet")
    one = run_night(night_config(root, NIGHT1, root / "night1.parquet", tiny_model))
    kept = read_partition(Lake(str(root / "lake")), "curated", NIGHT1).filter(pl.col("label").is_not_null())
    kept = kept.filter(~pl.col("label_conflict")).head(30)
    resent = kept.select("text", label=pl.col("label").cast(pl.Int64))
    corrected = resent.head(10).with_columns(label=(pl.col("label") + 1) % 3)
    new = tweets(240, 200)
    new = new.with_columns(label=pl.when(pl.int_range(pl.len()) % 5 == 0).then(None).otherwise(pl.col("label")))
    conflict = pl.DataFrame({"text": ["this exact sentence arrives twice tonight with two labels"] * 2,
                             "label": [0, 1]})
    second = pl.concat([corrected, resent.slice(10), new, conflict]).with_columns(
        label=pl.col("label").cast(pl.Float64).fill_null(float("nan")))
    second.write_parquet(root / "night2.parquet")
    two = run_night(night_config(root, NIGHT2, root / "night2.parquet", tiny_model))
    return {"root": root, "lake": Lake(str(root / "lake")), "model": tiny_model, "one": one, "two": two,
            "corrected": dict(zip(corrected["text"], corrected["label"].cast(pl.String)))}


def test_float_labels_with_gaps_are_the_same_labels_as_ints(two_nights: dict) -> None:
    lake = two_nights["lake"]
    labels1 = set(read_partition(lake, "raw", NIGHT1)["label"].drop_nulls())
    labels2 = set(read_partition(lake, "raw", NIGHT2)["label"].drop_nulls())
    assert labels1 == labels2 == {"0", "1", "2"}
    assert lake.read_manifest("raw", NIGHT2)["counts"]["labels"].keys() == {"0", "1", "2"}
    trained = two_nights["two"]["train"]
    assert trained["metrics"]["label_names"] == ["0", "1", "2"]


def test_corrections_are_counted_and_the_newest_label_is_trained_on(two_nights: dict) -> None:
    lake, curate = two_nights["lake"], two_nights["two"]["curate"]
    rejects = read_partition(lake, "rejects", NIGHT2)
    corrections = rejects.filter(pl.col("reason") == "label_correction")
    assert curate["label_corrections"] == curate["rejected_by_reason"]["label_correction"] == corrections.height == 10
    assert lake.read_manifest("curated", NIGHT2)["counts"]["label_corrections"] == 10
    night1 = read_partition(lake, "curated", NIGHT1)
    by_text = dict(zip(night1["text"], night1["doc_id"]))
    assert sorted(corrections["duplicate_of"]) == sorted(by_text[t] for t in two_nights["corrected"])
    assert rejects.filter(pl.col("reason") == "exact_duplicate").height >= 20  # the unchanged re-sends
    conflicted = read_partition(lake, "curated", NIGHT2).filter(pl.col("label_conflict"))
    assert conflicted["text"].to_list() == ["this exact sentence arrives twice tonight with two labels"]
    index = read_partition(lake, "dedup_index", NIGHT2).filter(pl.col("doc_id").is_in(conflicted["doc_id"]))
    assert index["label"].to_list() == [None]  # a later night's single label for it will be a correction

    training = two_nights["two"]["train"]["training_set"]
    assert training["corrections_applied"] == 10
    trained_labels = training_labels(two_nights, NIGHT2)
    for text, label in two_nights["corrected"].items():
        assert trained_labels[by_text[text]] == label  # the newest label, not night 1's


def training_labels(two_nights: dict, run_date: str, **train: object) -> dict[str, str]:
    """{doc_id: label} of every row of every split of the training set that train builds for run_date."""
    config = night_config(two_nights["root"], run_date, two_nights["root"] / "unused", two_nights["model"], **train)
    cfg = build_config(config)
    lake = Lake.of(cfg)
    plan = plan_training_set(cfg, lake.read_manifest("tokens", run_date))
    data = load_training_set(cfg, plan, fast_encoder(load_tokenizer(str(two_nights["model"])), 48))
    return {doc: data.label_names[label] for split in data.splits.values()
            for doc, label in zip(split.doc_ids, split.labels.tolist())}


def test_each_night_trains_on_every_labelled_row_to_date(two_nights: dict) -> None:
    lake = two_nights["lake"]
    expected: dict[str, str] = {}
    for date in (NIGHT1, NIGHT2):  # every labelled, conflict-free curated row to date, then the corrections
        curated = read_partition(lake, "curated", date).filter(pl.col("label").is_not_null() & ~pl.col("label_conflict"))
        expected.update(zip(curated["doc_id"], curated["label"]))
    night1 = read_partition(lake, "curated", NIGHT1)
    expected.update({doc: two_nights["corrected"][text] for doc, text in zip(night1["doc_id"], night1["text"])
                     if text in two_nights["corrected"]})
    assert training_labels(two_nights, NIGHT2) == expected

    training = two_nights["two"]["train"]["training_set"]
    assert training["run_dates"] == [NIGHT1, NIGHT2]
    assert sum(sum(c.values()) for c in training["rows_by_night"].values()) == len(expected)
    assert training["token_source"] == {NIGHT1: "token shards", NIGHT2: "token shards"}
    first = two_nights["one"]["train"]["training_set"]
    assert first["run_dates"] == [NIGHT1] and sum(first["rows"].values()) < len(expected)
    card = (Path(two_nights["two"]["train"]["model_uri"]) / "README.md").read_text()
    assert f"| {NIGHT1} | {training['rows_by_night'][NIGHT1]['train']} |" in card


def test_window_and_cap_bound_the_history(two_nights: dict) -> None:
    tonight_only = training_labels(two_nights, NIGHT2, window_days=1)
    night2 = read_partition(two_nights["lake"], "curated", NIGHT2)
    assert set(tonight_only) == set(night2.filter(pl.col("label").is_not_null() & ~pl.col("label_conflict"))["doc_id"])
    capped = training_labels(two_nights, NIGHT2, max_train_samples=50)
    assert len(capped) < len(training_labels(two_nights, NIGHT2))


def test_an_older_night_is_tokenized_again_for_another_max_length(two_nights: dict) -> None:
    root, model = two_nights["root"], two_nights["model"]
    cfg = build_config(night_config(root, NIGHT2, root / "night2.parquet", model) | {"tokenize": {"max_length": 16}})
    run_tokenize(cfg)  # tonight at 16 tokens; night 1's shards hold 48-token rows
    lake = Lake.of(cfg)
    plan = plan_training_set(cfg, lake.read_manifest("tokens", NIGHT2))
    assert [night.tokens is None for night in plan.nights] == [True, False]
    data = load_training_set(cfg, plan, fast_encoder(load_tokenizer(str(model)), 16))
    assert max(len(s) for split in data.splits.values() for s in split.sequences) == 16
    run_tokenize(build_config(night_config(root, NIGHT2, root / "night2.parquet", model)))  # back to 48


def test_labels_without_training_rows_are_refused_or_dropped(tmp_path: Path, tiny_model: Path) -> None:
    rows = tweets(0, 120).with_columns(label=pl.col("label").cast(pl.String), split=pl.lit("train"))
    rows = rows.with_columns(split=pl.when(pl.int_range(pl.len()) % 4 == 0).then(pl.lit("validation"))
                             .otherwise(pl.col("split")))
    odd = pl.DataFrame({"text": [f"a rare kind of tweet, number {i}, about something else" for i in range(3)],
                        "label": ["sarcastic"] * 3, "split": ["validation", "validation", "test"]})
    pl.concat([rows, odd]).write_csv(tmp_path / "given.csv")
    config = night_config(tmp_path, NIGHT1, tmp_path / "given.csv", tiny_model)
    config["ingest"]["split_column"] = "split"
    config["curate"] = {"near_dedup": False}
    cfg = build_config(config)
    run_ingest(cfg), run_curate(cfg), run_tokenize(cfg)
    with pytest.raises(InputDataError, match=r"'sarcastic': \{'train': 0, 'validation': 2, 'test': 1\}.*"
                                             r"train.drop_unseen_labels"):
        run_train(cfg)
    trained = run_train(build_config(config, {"train.drop_unseen_labels": True}))
    assert trained["training_set"]["dropped_unseen_labels"] == {"sarcastic": {"train": 0, "validation": 2, "test": 1}}
    assert "sarcastic" not in trained["metrics"]["label_names"]


def test_spellings_that_collide_are_refused_before_any_write(tmp_path: Path) -> None:
    pl.DataFrame({"text": ["a good day for a walk", "a sad day indoors"], "label": ["positive", "negative"]}).write_csv(
        tmp_path / "one.csv")
    pl.DataFrame({"text": ["more good news today", "nothing much happened"], "label": ["Positive", "none"]}).write_csv(
        tmp_path / "two.csv")
    pl.DataFrame({"text": ["x y z", "z y x"], "label": ["None", "none"]}).write_csv(tmp_path / "three.csv")
    base = {"data_root": str(tmp_path / "lake"), "ingest": {"label_column": "label"}}
    run_ingest(build_config(base, {"run_date": NIGHT1, "ingest.sources": [str(tmp_path / "one.csv")]}))
    with pytest.raises(InputDataError) as caught:
        run_ingest(build_config(base, {"run_date": NIGHT2, "ingest.sources": [str(tmp_path / "two.csv")]}))
    assert "'Positive' (1 time, first at " in str(caught.value)
    assert "two.csv line 2) and 'positive' (first at run_date=2026-03-01)" in str(caught.value)
    # the mapping keeps the spelling the committed night holds: mapping that one away would leave the clash
    assert '`ingest.label_map: {"Positive": "positive"}`' in str(caught.value)
    with pytest.raises(InputDataError, match=r"'None' \(1 time, first at .*three.csv line 2\) and 'none' \(1 time, "
                                             r"first at .*three.csv line 3\).*`ingest.label_map: \{\"none\": \"None\"\}`"):
        run_ingest(build_config(base, {"run_date": "2026-03-03", "ingest.sources": [str(tmp_path / "three.csv")]}))
    assert Lake(str(tmp_path / "lake")).run_dates("raw") == [NIGHT1]
    assert not (tmp_path / "lake" / "raw" / f"run_date={NIGHT2}").exists()


def test_labels_that_are_numbers_beside_words_are_told_and_ingest_label_map_merges_them(tmp_path: Path,
                                                                                        caplog) -> None:
    # night 1 spells the classes as words; night 2's export writes some rows' class as its id, as a float column
    # would hold them after a spreadsheet round trip (1.0), and one row as a label set
    pl.DataFrame({"text": ["配送很快，包装完好", "Akku hält kaum einen Tag 😞", "great value, would buy again"],
                  "label": ["pos", "neg", "pos"]}).write_csv(tmp_path / "one.csv")
    pl.DataFrame({"text": ["低音太弱，戴久了耳朵疼", "arrived broken, no reply from support", "works fine",
                           "cheap and cheerful 👍"], "label": ["0", "0.0", "1.0", "pos"]}).write_csv(tmp_path / "two.csv")
    base = {"data_root": str(tmp_path / "lake"), "ingest": {"label_column": "label"}}
    night1 = {"run_date": NIGHT1, "ingest.sources": [str(tmp_path / "one.csv")]}
    night2 = {"run_date": NIGHT2, "ingest.sources": [str(tmp_path / "two.csv")]}
    assert "warnings" not in run_ingest(build_config(base, night1))
    caplog.set_level("WARNING")
    summary = run_ingest(build_config(base, night2))
    assert summary["labels"] == {"0": 2, "1": 1, "pos": 1}
    [warning] = summary["warnings"]
    assert warning.startswith("ingest.label_column: the labels '0' (")
    assert "two.csv line 2), '1' (" in warning and f"'neg' (run_date={NIGHT1}), 'pos' (" in warning
    assert 'ingest.label_map: {"0": <its class>, "1": <its class>}' in warning and warning in caplog.text
    assert run_ingest(build_config(base, night2))["warnings"] == [warning]  # a skipped rerun says it again
    run_curate(build_config(base, night2))
    report = Path(write_report(build_config(base, night2))["report"]).read_text()
    assert f"**Labels**: {warning}." in report
    # the same sources under another config are read again in place, the classes merged, nothing to warn of
    mapped = run_ingest(build_config(base, night2 | {"ingest.label_map": {0: "neg", 1: "pos"}}))
    assert not mapped["skipped"] and mapped["labels"] == {"neg": 2, "pos": 2} and "warnings" not in mapped
    raw = read_partition(Lake(str(tmp_path / "lake")), "raw", NIGHT2)
    assert raw.sort("source_row")["label"].to_list() == ["neg", "neg", "pos", "pos"]
    # a label that begins another (a shortening, a plural) is the same kind of look-alike
    pl.DataFrame({"text": ["rien à signaler, colis conforme", "très déçu du service"],
                  "label": ["pos", "negative"]}).write_csv(tmp_path / "four.csv")
    four = run_ingest(build_config(base, {"run_date": "2026-03-04", "ingest.sources": [str(tmp_path / "four.csv")]}))
    [alike] = four["warnings"]
    assert alike.startswith(f"ingest.label_column: 'neg' (run_date={NIGHT1}) and 'negative' (")
    assert "four.csv line 3) look like one label spelt two ways" in alike
    assert 'ingest.label_map: {"neg": "negative"}' in alike
    pl.DataFrame({"text": ["livraison rapide", "service client absent"], "label": ["pos", "negative"]}).write_csv(
        tmp_path / "five.csv")
    five = run_ingest(build_config(base, {"run_date": "2026-03-06", "ingest.sources": [str(tmp_path / "five.csv")]}))
    assert "warnings" not in five  # told on the night 'negative' came; not again every night
    # without a mapping, spellings that differ in case are refused with the setting that merges them
    pl.DataFrame({"text": ["so so", "meh"], "label": ["Pos", "neg"]}).write_csv(tmp_path / "three.csv")
    with pytest.raises(InputDataError, match=r"map the other spellings to one with `ingest\.label_map: \{\"Pos\": \"pos\"\}`"):
        run_ingest(build_config(base, {"run_date": "2026-03-05", "ingest.sources": [str(tmp_path / "three.csv")]}))


def test_the_suggested_label_map_is_yaml_that_means_what_it_says(tmp_path: Path) -> None:
    """YAML reads an unquoted {Yes: yes} as booleans: the map a refusal suggests is pasted into the config as given
    and must merge the spellings."""
    import yaml

    pl.DataFrame({"text": ["ja, gerne wieder", "nein danke", "sí, claro", "non merci", "yes please"],
                  "label": ["Yes", "No", "yes", "no", "yes"]}).write_csv(tmp_path / "answers.csv")
    base = {"data_root": str(tmp_path / "lake"), "run_date": NIGHT1,
            "ingest": {"label_column": "label", "sources": [str(tmp_path / "answers.csv")]}}
    with pytest.raises(InputDataError) as caught:
        run_ingest(build_config(base))
    suggested = str(caught.value).split("`ingest.label_map: ")[1].split("`")[0]
    assert suggested == '{"no": "No", "Yes": "yes"}'  # the spelling tonight holds most of is kept (a tie: the first)
    config = yaml.safe_load(f"ingest:\n  label_map: {suggested}\n")
    summary = run_ingest(build_config(base, {"ingest.label_map": config["ingest"]["label_map"]}))
    assert summary["labels"] == {"yes": 3, "No": 2}


def test_spellings_apart_on_committed_nights_only_are_told_not_refused(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A lake written before label_key joined 'N/A' and 'NA' holds one on each night: tonight cannot change them, so
    a night of other labels is ingested with a warning that says how to merge them, not refused."""
    import bert_pipeline.stages.ingest as ingest

    def night(date: str, labels: list[str], **settings: object) -> dict:
        path = tmp_path / f"{date}.csv"
        pl.DataFrame({"text": [f"ticket {i} from {date}, nothing to report" for i in range(len(labels))],
                      "label": labels}).write_csv(path)
        return run_ingest(build_config({"data_root": str(tmp_path / "lake"), "run_date": date, "ingest": {
            "label_column": "label", "sources": [str(path)], **settings}}))

    night(NIGHT1, ["N/A", "ok", "N/A"])
    with monkeypatch.context() as old_rule:  # the older version, which kept the two spellings apart
        old_rule.setattr(ingest, "spelling_clashes", lambda labels: [])
        night(NIGHT2, ["NA", "ok"])
    third = night("2026-03-03", ["ok", "broken"])
    [warning] = third["warnings"]
    assert warning.startswith(f"ingest.label_column: 'N/A' (first at run_date={NIGHT1}) and 'NA' (first at run_date="
                              f"{NIGHT2}) are different spellings of what would be one label")
    assert warning.endswith('`ingest.label_map: {"NA": "N/A"}`, and run the nights that hold the other spellings '
                            'again from ingest: training refuses them until then')
    with pytest.raises(InputDataError, match=r"'OK' \(1 time.* and 'ok' \(first at run_date=2026-03-01\).*"
                                             r'\{"OK": "ok"\}`. Nothing was written'):  # tonight's own: refused
        night("2026-03-04", ["OK", "broken"])
    # the remedy as told: night 2 again with the map; then nothing is left to tell
    assert night(NIGHT2, ["NA", "ok"], label_map={"NA": "N/A"})["labels"] == {"N/A": 1, "ok": 1}
    assert "warnings" not in night("2026-03-03", ["ok", "broken"])


def test_a_model_for_an_older_night_does_not_replace_a_champion_that_saw_newer_ones(two_nights: dict) -> None:
    """A past night trained again (a rerun with another seed, or a backfill) is scored like any model, but even a
    tie or a win on validation does not put its older view of the lake in charge."""
    lake, root, model = two_nights["lake"], two_nights["root"], two_nights["model"]
    champion_file = Path(lake.champion_url)
    before = champion_file.read_text() if champion_file.exists() else None
    newer = two_nights["two"]["train"]["model_version"]
    champion_file.write_text(json.dumps({"model_version": newer, "label_names": ["0", "1", "2"]}))
    try:
        old = run_train(build_config(night_config(root, NIGHT1, root / "night1.parquet", model, seed=7,
                                                  champion_tolerance=1.0)))
        decision = old["champion_decision"]
        assert old["model_version"].startswith(NIGHT1)
        assert decision["promoted"] is False and decision["lineage_refused"] is True
        assert f"older than champion {newer}'s {NIGHT2}" in decision["reason"]
        assert json.loads(champion_file.read_text())["model_version"] == newer
    finally:
        champion_file.write_text(before) if before is not None else champion_file.unlink()
