"""Multi-label end to end with `bert-pipeline run`, on support tickets made here over two nights: night 1 gives one
label per ticket (a single-label model is trained and scores it), night 2 gives sets of labels (jsonl lists, a
string among them, `[]` for "none applies", duplicates that agree up to order and one that disagrees). Night 2
trains a multi-label model on both nights; the predictions of both nights read as one table in polars and duckdb."""

from __future__ import annotations

import json
import random
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from bert_pipeline.lake import storage
from bert_pipeline.lake.manifests import Lake
from bert_pipeline.lake.predictions import PREDICTIONS_SCHEMA
from tests.helpers import as_sentence_transformers, build_tiny_model, read_partition
from tests.integration.test_cli import run_cli

TOPICS = {
    "billing": ["refund", "invoice", "charged twice", "payment failed", "账单"],
    "account": ["password", "login", "locked out", "two factor", "mot de passe"],
    "bug": ["crash", "error 500", "freezes", "blank screen"],
    "shipping": ["parcel", "courier", "tracking number", "delivery late"],
}
CHATTER = ["hello", "please help", "third time asking", "thanks", "urgent", "谢谢", "merci", "asap!!", "hi team"]


def ticket(rng: random.Random, labels: list[str], number: int) -> str:
    words = [rng.choice(TOPICS[label]) for label in labels] + rng.sample(CHATTER, 3)
    rng.shuffle(words)
    return f"ticket {number}: " + " ".join(words)


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    rng = random.Random(11)
    folder = tmp_path_factory.mktemp("tickets")
    one = [{"text": ticket(rng, [topic], i), "topic": topic} for i, topic in
           enumerate(rng.choice(sorted(TOPICS)) for _ in range(320))]
    pl.DataFrame(one).write_csv(folder / "night1.csv")
    rows = []
    for i in range(420):
        labels = rng.sample(sorted(TOPICS), rng.choice([0, 1, 2, 2, 3]))
        rows.append({"text": ticket(rng, labels, 1000 + i), "topic": labels})
    rows[5]["topic"] = "bug"  # a plain string among the lists
    pair = next(r for r in rows[6:] if len(r["topic"]) >= 2)
    rows.append({"text": pair["text"], "topic": [*reversed(pair["topic"]), pair["topic"][0]]})  # same set, reordered
    clash = next(r for r in rows[6:] if len(r["topic"]) == 1)
    rows.append({"text": clash["text"], "topic": [*clash["topic"], "bug" if clash["topic"] != ["bug"] else "shipping"]})
    (folder / "night2.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    # a sentence-transformers folder that pools by mean, like the packaged MiniLM: the multi-label night pools by mean
    model = as_sentence_transformers(build_tiny_model(folder / "model", [r["text"] for r in one + rows],
                                                      vocab_size=400))
    config = folder / "tickets.yaml"
    config.write_text(
        f"data_root: {folder / 'lake'}\ningest:\n  label_column: topic\ncurate:\n  near_dedup: false\n"
        f"tokenize:\n  max_length: 32\ntrain:\n  base_model: {model}\n  min_steps: 250\n  batch_size: 16\n"
        "  learning_rate: 0.002\n  linear_baseline: false\nscore:\n  batch_tokens: 2048\n")
    return {"folder": folder, "config": config, "night1": folder / "night1.csv", "night2": folder / "night2.jsonl",
            "pair": pair, "clash": clash}  # type: ignore[dict-item]


def run_night(nights: dict, date: str, source: Path) -> str:
    done = run_cli("run", "--config", str(nights["config"]), "--set", f"run_date={date}",
                   "--set", f"ingest.sources=[{source}]", cwd=nights["folder"])
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


def test_two_nights_single_then_multi_label(nights: dict) -> None:
    first = run_night(nights, "2026-11-01", nights["night1"])
    assert "validation: accuracy" in first and "promoted to champion" in first  # a single-label champion
    second = run_night(nights, "2026-11-02", nights["night2"])
    assert "subset accuracy" in second and "micro-F1" in second

    lake = Lake(str(nights["folder"] / "lake"))
    curated = read_partition(lake, "curated", "2026-11-02")
    by_text = dict(zip(curated["text"].to_list(), curated["label"].to_list()))
    pair, clash = nights["pair"], nights["clash"]
    assert by_text[pair["text"]] == json.dumps(sorted(pair["topic"]), separators=(",", ":"))
    conflicts = curated.filter(pl.col("label_conflict"))["text"].to_list()
    assert conflicts == [clash["text"]]  # the copy whose set differs; the reordered copy of `pair` agrees
    assert curated.filter(pl.col("label") == "[]").height > 30  # "no topic applies" stays a labelled row

    manifest = next(m for m in map(storage.read_json, storage.glob(f"{lake.models}/2026-11-02-*/_manifest.json")))
    metrics = manifest["metrics"]
    assert metrics["problem_type"] == "multi_label" and metrics["label_names"] == sorted(TOPICS)
    assert set(metrics["test"]) >= {"macro_f1", "micro_f1", "accuracy", "per_class", "hamming_loss"}
    decision = manifest["champion_decision"]
    assert decision["baseline_label"] == sorted(TOPICS) and decision["promoted"], decision["reason"]
    assert decision["problem_type_change"] == "single_label -> multi_label"
    assert decision["new_validation_macro_f1"] > decision["baseline_validation_macro_f1"]
    assert metrics["test"]["macro_f1"] >= 0.8, metrics["test"]
    folder = lake.model_url(manifest["metrics"]["model_version"])
    thresholds = storage.read_json(f"{folder}/calibration.json")["thresholds"]
    assert sorted(thresholds) == sorted(TOPICS) and all(0.01 <= t <= 0.99 for t in thresholds.values())
    config = json.loads(Path(folder, "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification" and config["classifier_pooling"] == "mean"
    assert metrics["train"]["pooling"] == "mean" and "mean pooling" in Path(folder, "README.md").read_text()
    night1_model = storage.glob(f"{lake.models}/2026-11-01-*/config.json")[0]
    assert json.loads(Path(night1_model).read_text())["classifier_pooling"] == "cls"  # single-label keeps [CLS]

    # every curated row of each night scored exactly once; night 2 by the multi-label model and its thresholds
    for date in ("2026-11-01", "2026-11-02"):
        scored = read_partition(lake, "predictions", date)
        assert sorted(scored["doc_id"].to_list()) == sorted(read_partition(lake, "curated", date)["doc_id"].to_list())
    night2 = read_partition(lake, "predictions", "2026-11-02")
    for row in night2.head(200).iter_rows(named=True):
        probabilities = dict(row["probabilities"])
        above = sorted((p, k) for k, p in probabilities.items() if p >= thresholds[k])
        assert sorted(row["predicted_labels"]) == sorted(k for _, k in above)
        # the most probable; a tie (sigmoids saturated at 1.0 in float32) goes to the first label in model order
        assert row["predicted_label"] == (min(above, key=lambda pk: (-pk[0], pk[1]))[1] if above else None)
        assert row["confidence"] == pytest.approx(max(probabilities.values()))
    truth = curated.filter(~pl.col("label_conflict")).select("doc_id", "label")
    joined = night2.join(truth, on="doc_id")
    exact = [sorted(p) == sorted(json.loads(t) if t.startswith("[") else [t])
             for p, t in zip(joined["predicted_labels"].to_list(), joined["label"].to_list())]
    # subset accuracy beats the best constant answer for it (always the most frequent label set)
    most_frequent_set = joined["label"].value_counts(sort=True)["count"][0] / joined.height
    assert np.mean(exact) > most_frequent_set + 0.1, (np.mean(exact), most_frequent_set)

    # both nights, one schema: polars and duckdb read them as one table
    root = nights["folder"] / "lake" / "predictions"
    every = pl.read_parquet(f"{root}/**/*.parquet", hive_partitioning=True)
    assert every.group_by("run_date").len().sort("run_date")["len"].to_list() == [
        read_partition(lake, "predictions", d).height for d in ("2026-11-01", "2026-11-02")]
    for path in root.rglob("*.parquet"):
        assert pl.read_parquet_schema(path) == pl.read_parquet_schema(next(root.rglob("*.parquet")))
        import pyarrow.parquet as pq
        assert pq.read_schema(path).remove_metadata() == PREDICTIONS_SCHEMA
    per_label = duckdb.sql(
        f"select run_date, count(*) as n, sum(list_contains(predicted_labels, 'billing')::int) as billing "
        f"from read_parquet('{root}/**/*.parquet', hive_partitioning = true) group by run_date order by run_date"
    ).fetchall()
    assert [n for _, n, _ in per_label] == every.group_by("run_date").len().sort("run_date")["len"].to_list()
    assert all(b > 0 for _, _, b in per_label)

    report = nights["folder"] / "lake" / "reports" / "run_date=2026-11-02"
    assert (report / "per_label_f1.png").exists() and (report / "label_frequency.png").exists()
    assert not (report / "confusion_matrix.png").exists()
    assert "| label | precision | recall | F1 | support | threshold |" in (report / "report.md").read_text()
