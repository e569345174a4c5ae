"""task: ner end to end over two nights on a tiny BERT: the token classifier is trained, gated against the memorising
baseline and the champion, scores every curated row into the entities table, and learns a later night's correction;
the docs' entities-table readers (polars, duckdb, pandas, pyarrow) run on the lake, and every entity's text is its
stored text's slice, on rows with emoji, CJK and a combining accent."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from bert_pipeline.config import build_config
from bert_pipeline.evaluation.registry import read_champion
from bert_pipeline.lake.entities import ENTITIES_SCHEMA
from bert_pipeline.lake.manifests import Lake
from bert_pipeline.stages.curate import run_curate
from bert_pipeline.stages.ingest import run_ingest
from bert_pipeline.stages.report import write_report
from bert_pipeline.stages.score import run_score
from bert_pipeline.stages.tokenize import run_tokenize
from bert_pipeline.stages.train import run_train
from tests.helpers import build_tiny_model, code_blocks, ner_corpus, read_partition

DOCS = Path(__file__).parents[2] / "docs" / "how-to" / "entities.md"


def _night(root: Path, run_date: str, records: list[dict], model: Path) -> dict:
    source = root / f"annotated-{run_date}.jsonl"
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    cfg = build_config({"data_root": str(root / "lake"), "run_date": run_date, "task": "ner",
                        "ingest": {"sources": [str(source)], "id_column": "id"}, "tokenize": {"max_length": 64},
                        "train": {"base_model": str(model), "learning_rate": 1e-3, "min_steps": 150,
                                  "batch_size": 16}})
    run_ingest(cfg)
    run_curate(cfg)
    run_tokenize(cfg)
    return {"cfg": cfg, "train": run_train(cfg), "score": run_score(cfg), "report": write_report(cfg)}


@pytest.fixture(scope="module")
def two_nights(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("ner-nights")
    first, second = ner_corpus(360, seed=0), ner_corpus(240, seed=1)
    # night 2 re-sends a night-1 text with its annotation fixed: one entity dropped (a correction)
    fixed = dict(next(r for r in first if len(r["label"]) >= 2), id="resent")
    fixed["label"] = fixed["label"][:1]
    model = build_tiny_model(root / "tiny", [r["text"] for r in first + second], vocab_size=700)
    nights = {"root": root, "first_fixed": fixed, "one": _night(root, "2026-03-01", first, model)}
    nights["two"] = _night(root, "2026-03-02", second + [fixed], model)
    return nights


def test_the_first_night_trains_a_tagger_that_beats_the_memorising_baseline(two_nights: dict) -> None:
    train = two_nights["one"]["train"]
    decision, metrics = train["champion_decision"], train["metrics"]
    assert decision["promoted"], decision["reason"]
    assert decision["new_validation_entity_f1"] > decision["memorising_validation_entity_f1"]
    assert metrics["test"]["entity_f1"] > train["baseline"]["test_entity_f1"]  # names unseen in training
    assert set(metrics["test"]["per_type"]) == {"LOC", "ORG", "PER"}
    assert metrics["label_names"] == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    from flows.cli import split_figures

    line = split_figures(metrics["test"], metrics["problem_type"])
    assert line.startswith(f"entity F1 {metrics['test']['entity_f1']:.4f}") and "macro-F1" not in line
    folder = Path(train["model_uri"])
    assert json.loads((folder / "baseline" / "lexicon.json").read_text())["kind"] == "memorising"
    assert "Entity tagger" in (folder / "README.md").read_text()


def test_the_second_night_learns_the_correction_and_faces_the_champion(two_nights: dict) -> None:
    train = two_nights["two"]["train"]
    assert train["training_set"]["corrections_applied"] == 1
    assert train["training_set"]["run_dates"] == ["2026-03-01", "2026-03-02"]
    decision = train["champion_decision"]
    assert decision["previous_champion"] == two_nights["one"]["train"]["model_version"]
    assert decision["champion_run_on_these_rows"] and decision["champion_validation_entity_f1"] is not None
    champion = read_champion(Lake.of(two_nights["one"]["cfg"]))
    assert champion["model_version"] == (train["model_version"] if decision["promoted"]
                                         else two_nights["one"]["train"]["model_version"])


def test_every_curated_row_has_one_entities_row_whose_texts_are_the_stored_slices(two_nights: dict) -> None:
    lake = Lake.of(two_nights["one"]["cfg"])
    for night in ("2026-03-01", "2026-03-02"):
        entities = read_partition(lake, "entities", night)
        curated = read_partition(lake, "curated", night)
        assert sorted(entities["doc_id"]) == sorted(curated["doc_id"])
        assert pl.from_arrow(ENTITIES_SCHEMA.empty_table()).columns == [c for c in entities.columns if c != "run_date"]
        rows = curated.join(entities, on="doc_id").to_dicts()
        found = [(r["text"], e) for r in rows for e in r["entities"]]
        assert found and all(text[e["start"]:e["end"]] == e["text"] for text, e in found)
        for marker in ("😀", "工作", "\u0301"):  # emoji, CJK, a combining accent: offsets stay code points
            assert any(marker in text for text, _ in found), marker
        assert all(0.0 < e["score"] <= 1.0 and e["label"] in {"PER", "LOC", "ORG"} for _, e in found)


def test_an_older_nights_report_says_when_its_model_has_been_replaced_as_champion(two_nights: dict) -> None:
    one, two = two_nights["one"], two_nights["two"]
    assert one["train"]["champion_decision"]["promoted"]
    before = Path(one["report"]["report"]).read_text()  # written that night, when it was the champion
    assert "has since been replaced as champion" not in before
    again = Path(write_report(one["cfg"])["report"]).read_text()  # rewritten after night 2's gate
    champion = read_champion(Lake.of(one["cfg"]))["model_version"]
    replaced = f"It has since been replaced as champion by {two['train']['model_version']}."
    assert champion == two["train"]["model_version"]  # night 2's tagger won: the case this test is about
    assert f"Entity model {one['train']['model_version']} was promoted to champion" in again and replaced in again


def test_the_report_shows_entity_figures_not_classifier_tables(two_nights: dict) -> None:
    report = Path(two_nights["two"]["report"]["report"]).read_text()
    assert "| validation entity F1 | new model |" in report and "memorising baseline" in report
    assert "Test, per type:" in report and "## Entities" in report
    assert "Compared with run_date 2026-03-01" in report
    assert "macro-F1 | ECE" not in report and "TF-IDF" not in report


def test_the_docs_readers_run_on_the_entities_lake(two_nights: dict, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """docs/how-to/entities.md's polars, duckdb, pandas and pyarrow examples, as written, on this lake."""
    monkeypatch.chdir(two_nights["root"])
    lake = Lake("lake/ner")
    every = pl.concat([read_partition(lake, "entities", d) for d in ("2026-03-01", "2026-03-02")])
    per_type = every.explode("entities").drop_nulls("entities").unnest("entities")["label"].value_counts()
    expected = dict(per_type.iter_rows())
    readers = [body for lang, body in code_blocks(DOCS.read_text(encoding="utf-8")) if lang == "python"][:4]
    assert ["pl.read_parquet", "duckdb.sql", "pd.read_parquet", "ds.dataset"] == [
        next(k for k in ("pl.read_parquet", "duckdb.sql", "pd.read_parquet", "ds.dataset") if k in r) for r in readers]
    outputs = []
    for reader in readers:
        exec(compile(reader, str(DOCS), "exec"), {})  # noqa: S102 - the page's own example
        outputs.append(capsys.readouterr().out)
    for label, count in expected.items():
        assert f"{label}" in outputs[0] and str(count) in outputs[0]
    assert outputs[1].strip() == str(sorted(expected.items()))
    assert all(f"{label}    {count}" in outputs[2] for label, count in expected.items()), outputs[2]
    assert outputs[3].split()[0] == str(sum(expected.values())) and f"in {every.height} rows" in outputs[3]


def test_long_texts_are_read_in_windows_whose_logits_are_combined_before_decoding(two_nights: dict) -> None:
    """score.long_text: chunk on the trained tagger: a text that fits one window gives exactly the unwindowed
    entities; a text of many windows gets every entity of every part once and whole, where truncation stops."""
    from bert_pipeline.lake.predictions import ScoredBy
    from bert_pipeline.stages.score_entities import EntityScorer

    folder = two_nights["one"]["train"]["model_uri"]
    chunk, truncate = (EntityScorer(folder, 64, None, "fp32", "cpu", mode) for mode in ("chunk", "truncate"))
    sentences = [r["text"] for r in ner_corpus(40, seed=7) if r["label"]][:12]
    long_text = " ".join(sentences)
    texts = [sentences[0], long_text]
    by = ScoredBy("v", "h", "r")
    windowed = chunk.table(pl.Series(["a", "b"]).to_arrow(), texts, by).to_pylist()
    truncated = truncate.table(pl.Series(["a", "b"]).to_arrow(), texts, by).to_pylist()
    assert windowed[0]["entities"] == truncated[0]["entities"] and windowed[0]["windows"] == 1  # exactly the same
    assert windowed[1]["windows"] > 2 and truncated[1]["truncated"] and not windowed[1]["truncated"]
    found = windowed[1]["entities"]
    assert all(long_text[e["start"]:e["end"]] == e["text"] for e in found)
    assert all(a["end"] <= b["start"] for a, b in zip(found, found[1:]))  # each once: sorted, never overlapping
    assert found[-1]["start"] > max(e["end"] for e in truncated[1]["entities"])  # past the first window
    tail = sentences[-1]
    expected_tail = {(e["text"], e["label"]) for e in chunk.table(pl.Series(["t"]).to_arrow(), [tail], by).to_pylist()[0]["entities"]}
    offset = long_text.rindex(tail)
    assert expected_tail <= {(e["text"], e["label"]) for e in found if e["start"] >= offset}
