"""The Prefect flows on a real (temporary) Prefect backend, a tiny offline BERT and a few hundred real tweets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml
from prefect.client.orchestration import get_client

from bert_pipeline.errors import ConfigError, LakeStateError
from bert_pipeline.lake.manifests import Lake, stage_outcome
from flows.nightly import nightly_flow
from flows.stages import curate_flow, ingest_flow, score_flow, tokenize_flow, train_flow
from tests.helpers import read_partition


def write_config(tmp_path: Path, data: dict) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_nightly_flow_fills_every_lake_folder(tmp_path: Path, sample_config: dict) -> None:
    config = write_config(tmp_path, sample_config)
    result = nightly_flow(config=config)
    assert list(result) == ["ingest", "curate", "tokenize", "train", "score", "report"]
    lake = Lake(sample_config["data_root"])
    run_date = sample_config["run_date"]
    raw, curated = read_partition(lake, "raw", run_date), read_partition(lake, "curated", run_date)
    rejects, predictions = read_partition(lake, "rejects", run_date), read_partition(lake, "predictions", run_date)
    assert raw.height == curated.height + rejects.height == 303
    assert predictions.height == curated.height and predictions["doc_id"].n_unique() == curated.height
    assert lake.read_manifest("tokens", run_date)["counts"]["rows"] == curated.height
    assert Path(result["train"]["model_uri"], "metrics.json").exists()
    run_ids = predictions["run_id"].unique().to_list()
    assert len(run_ids) == 1 and len(run_ids[0]) == 36  # the Prefect flow run's UUID

    with get_client(sync_client=True) as client:
        artifacts = {a.key: a for a in sorted(client.read_artifacts(), key=lambda a: a.created) if a.key}  # latest wins
    reasons = json.loads(artifacts["bert-curate-reject-reasons"].data)
    assert sum(row["rows"] for row in reasons) == raw.height  # every raw row: curated or one reject reason
    assert {"exact_duplicate", "near_duplicate", "empty", "(curated)"} <= {row["reason"] for row in reasons}
    assert "bert-train-summary" in artifacts and "bert-score-summary" in artifacts
    for stage in ("tokenize", "train", "score"):  # progress bars, finished
        assert artifacts[f"bert-{stage}-progress"].data == 100.0, stage
    assert artifacts["bert-score-output"].data.endswith(f"predictions/run_date={run_date})")  # a markdown link

    report = Path(result["report"]["report"])
    assert report.parent.name == f"run_date={run_date}" and report.parent.parent.name == "reports"
    text = report.read_text()
    assert f"{raw.height} raw rows = {curated.height} curated" in text
    decision = result["train"]["champion_decision"]
    assert f"Model {result['train']['model_version']} was promoted to champion" in text
    assert f"| {decision['new_validation_macro_f1']:.4f} |  | {decision['baseline_validation_macro_f1']:.4f} |" in text
    assert f"| {run_date} | {result['train']['training_set']['rows_by_night'][run_date]['train']} |" in text
    for plot in ("reject_reasons", "confusion_matrix", "score_distribution", "score_change"):
        assert (report.parent / f"{plot}.png").read_bytes().startswith(b"\x89PNG"), plot
        assert f"({plot}.png)" in text
    assert "bert-nightly-report" in artifacts
    assert all("report" not in result[stage] for stage in ("train", "score"))  # written once, by the nightly

    again = nightly_flow(config=config)
    assert all(summary["skipped"] for stage, summary in again.items() if stage != "report")


def test_each_stage_flow_runs_alone_and_score_reruns_without_duplicates(tmp_path: Path, sample_config: dict,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    sample_config["run_date"] = "2026-11-26"
    sample_config["ingest"]["shard_rows"] = 100  # several shards: the curate flow maps its steps over them
    config = write_config(tmp_path, sample_config)
    summaries = {}
    for stage_flow in (ingest_flow, curate_flow, tokenize_flow, train_flow, score_flow):
        summaries[stage_flow.name] = summary = stage_flow(config=config)
        assert summary["skipped"] is False
    lake = Lake(sample_config["data_root"])
    # Run alone (no nightly to write it), train and score each rewrite the night's report; the other stages do not.
    assert [name for name, summary in summaries.items() if "report" in summary] == ["bert-train", "bert-score"]
    report = Path(summaries["bert-score"]["report"])
    assert report == Path(sample_config["data_root"], "reports", "run_date=2026-11-26", "report.md")
    text = report.read_text()
    assert f"Model {summaries['bert-train']['model_version']} was promoted to champion" in text
    assert f"## Scores\n\n{summaries['bert-score']['rows']} rows scored with" in text and "Not scored" not in text
    curated = lake.read_manifest("curated", "2026-11-26")
    assert len(curated["outputs"]) == 4  # 303 rows in shards of 100: curate mapped its steps over 4 shards
    assert curated["counts"]["raw_rows"] == curated["counts"]["curated_rows"] + curated["counts"]["rejected_rows"]
    assert not Path(sample_config["data_root"], "_work").exists()
    with get_client(sync_client=True) as client:  # the score flow mapped one task per shard
        shard_runs = [r for r in client.read_task_runs() if r.name.startswith("score-shard")]
    assert len(shard_runs) >= 4 and lake.read_manifest("predictions", "2026-11-26")["outputs"] == [
        f"part-{i:05d}.parquet" for i in range(4)]
    before = read_partition(lake, "predictions", "2026-11-26")
    assert score_flow(config=config)["skipped"] is True
    forced = score_flow(config=config, overrides={"score.batch_tokens": 512})  # same model + data: still skipped
    assert forced["skipped"] is True
    after = read_partition(lake, "predictions", "2026-11-26")
    assert after.height == before.height == after["doc_id"].n_unique()

    import flows.stages

    def unwritable(config: dict) -> dict:
        raise PermissionError(13, "Permission denied", f"{config['data_root']}/reports")

    monkeypatch.setattr(flows.stages, "report_task", unwritable)  # a report that cannot be written ...
    rerun = score_flow(config=config)  # ... does not fail the stage: its commit stands, the summary says why
    assert rerun["skipped"] is True and "report" not in rerun
    assert rerun["warnings"][-1].startswith("the report of run_date=2026-11-26 was not rewritten (PermissionError: ")


def test_flows_refuse_bad_parameters_before_work(tmp_path: Path, sample_config: dict) -> None:
    config = write_config(tmp_path, sample_config)
    ingest_flow(config=config)
    curate_flow(config=config)
    with pytest.raises(ConfigError, match="tokenize.max_length"):
        tokenize_flow(config=config, overrides={"tokenize.max_length": 2})
    with pytest.raises(ConfigError, match="train.base_model"):
        tokenize_flow(config=config, overrides={"train.base_model": "./no/such/model"})
    assert not Path(sample_config["data_root"], "tokens").exists()  # refused before any work
    with pytest.raises(LakeStateError, match="run the ingest stage first"):
        curate_flow(config=config, overrides={"run_date": "2020-01-01"})


def test_an_unlabelled_night_then_a_night_of_duplicates(tmp_path: Path, sample_config: dict, sample_csv: Path,
                                                         tiny_model: Path) -> None:
    sample_config["ingest"]["label_column"] = None  # nothing to train on: scored with a given model
    named = tmp_path / "named-model"  # a scoring folder must name its labels (LABEL_0, LABEL_1 are refused)
    shutil.copytree(tiny_model, named)
    model_config = json.loads((named / "config.json").read_text())
    model_config |= {"id2label": {"0": "negative", "1": "positive"}, "label2id": {"negative": 0, "positive": 1}}
    (named / "config.json").write_text(json.dumps(model_config))
    sample_config["score"]["model"] = str(named)
    config = write_config(tmp_path, sample_config)
    first = nightly_flow(config=config)
    assert first["train"]["reason"] == "no labelled training rows"
    # what the CLI and the flow log print: the stage's own reason, not "already committed" (nothing was)
    assert stage_outcome(first["train"]) == "skipped (no labelled training rows)"
    assert stage_outcome(first["ingest"]) == "done"
    assert stage_outcome({"stage": "ingest", "skipped": True}) == "skipped (already committed)"
    assert first["score"]["rows"] == first["curate"]["curated_rows"] > 250
    second = nightly_flow(config=config, overrides={"run_date": "2026-11-28"})  # the same file again
    assert second["curate"]["curated_rows"] == 0 and second["curate"]["rejected_rows"] == 303
    assert second["score"]["rows"] == 0
    lake = Lake(sample_config["data_root"])
    assert lake.read_manifest("predictions", "2026-11-28")["counts"]["rows"] == 0


def test_a_stage_already_running_for_the_date_refuses_a_second_run(tmp_path: Path, sample_config: dict) -> None:
    from bert_pipeline.lake.manifests import stage_lock

    config = write_config(tmp_path, sample_config)
    with stage_lock(sample_config["data_root"], "ingest", sample_config["run_date"]):  # another run holds it
        with pytest.raises(LakeStateError, match="ingest for run_date=2026-11-27 is already running"):
            ingest_flow(config=config)
    assert not Path(sample_config["data_root"], "raw").exists()  # refused without writing
    assert ingest_flow(config=config)["skipped"] is False  # released: the next run goes ahead


def test_a_person_s_answer_rewrites_the_report_of_the_model_s_night(tmp_path: Path, sample_config: dict) -> None:
    """Under train.promotion: approve the night's report says "waiting for a person's approval"; the promote flow's
    answer (approved, rejected, or none within timeouts.approval) rewrites that night's report at once."""
    from prefect import flow

    from bert_pipeline.evaluation import promotion, registry
    from flows.promote import Approval, promote_flow, record_answer

    config, lake = write_config(tmp_path, sample_config), Lake(sample_config["data_root"])
    gate = {"promoted": True, "reason": "validation macro-F1 0.8000 beats the majority class", "validation_rows": 40,
            "new_validation_macro_f1": 0.8, "baseline_validation_macro_f1": 0.3, "previous_champion": None}
    nights = {"2026-11-23": "2026-11-23-aaaaaaaaaa", "2026-11-24": "2026-11-24-bbbbbbbbbb",
              "2026-11-25": "2026-11-25-cccccccccc"}
    for night, version in nights.items():
        registry.commit_model(lake, version, {
            "run_date": night, "promoted": False, "champion_decision": promotion.hold_for_approval(gate, "approve"),
            "metrics": {"model_version": version, "label_names": ["neg", "pos"]},
            "training_set": {"run_dates": [night], "rows_by_night": {night: {"train": 9, "validation": 2, "test": 2}}}})

    @flow(validate_parameters=False)  # the Approval instance goes through as the promote flow passes it
    def answer(version: str, approval: Approval | None) -> dict:
        return record_answer(version, approval, config)

    def report(night: str) -> str:
        return Path(sample_config["data_root"], "reports", f"run_date={night}", "report.md").read_text()

    approved = answer(nights["2026-11-23"], Approval(approve=True, reviewer="ana", note="checked 50 rows"))
    assert approved["state"] == "approved" and approved["report"].endswith("run_date=2026-11-23/report.md")
    assert f"Model {nights['2026-11-23']} was promoted to champion. approved by ana at " in report("2026-11-23")
    rejected = answer(nights["2026-11-24"], Approval(approve=False, reviewer="bo", note="labels look off"))
    assert rejected["state"] == "rejected"
    text = report("2026-11-24")
    assert f"was not promoted (rejected): scoring keeps champion {nights['2026-11-23']}. rejected by bo at " in text
    assert "(labels look off)" in text and "waiting" not in text
    assert answer(nights["2026-11-25"], None)["state"] == "expired"
    assert "was not promoted (expired)" in report("2026-11-25")
    Path(approved["report"]).unlink()  # a retry of a promote run whose answer was recorded (its report failed) ...
    again = promote_flow(nights["2026-11-23"], config=config)  # ... decides nothing and writes the report again
    assert again["state"] == "approved" and "promoted to champion" in report("2026-11-23")
    assert not Path(sample_config["data_root"], "reports", "run_date=2026-11-27").exists()  # only the models' nights


def named_model(tiny_model: Path, folder: Path, init_seed: int) -> Path:
    """The tiny BERT's tokenizer with weights of its own (init_seed), naming its labels as a scoring folder must."""
    from tests.helpers import build_tiny_model, demo_frame

    return build_tiny_model(folder, demo_frame()["text"].head(3000).to_list(), labels=["negative", "positive"],
                            init_seed=init_seed)


def test_a_new_champion_rescores_the_nights_before_it_within_score_rescore_nights(
        tmp_path: Path, sample_config: dict, tiny_model: Path) -> None:
    """Night 1 is scored by champion A. Night 2's score under champion B also rescores night 1 (score.rescore_nights,
    default 7): every curated row once, all B's, its report rewritten. With rescore_nights 0, or a model picked for
    the run (score.model), nothing earlier changes; a night whose score another run holds is left with a warning."""
    from bert_pipeline.evaluation import registry
    from bert_pipeline.lake.manifests import stage_lock
    from tests.helpers import write_sample_csv

    lake = Lake(sample_config["data_root"])
    first, second = "2026-11-27-aaaaaaaaaa", "2026-11-28-bbbbbbbbbb"
    named_model(tiny_model, Path(lake.model_url(first)), init_seed=1)
    named_model(tiny_model, Path(lake.model_url(second)), init_seed=2)

    def crown(version: str) -> None:
        registry.promote(lake, version, ["negative", "positive"], {"promoted": True})

    write_sample_csv(tmp_path / "night2.csv", seed=1)
    write_sample_csv(tmp_path / "night3.csv", seed=2)
    sample_config["ingest"]["label_column"] = None  # scored by the champions set here: no training in this test
    config = write_config(tmp_path, sample_config)

    def night(date: str, source: str | None = None, **overrides: object) -> dict:
        return nightly_flow(config=config, stages=["ingest", "curate", "score"], overrides={
            "run_date": date, **({"ingest.sources": [source]} if source else {}), **overrides})

    def versions(date: str) -> set[str]:
        return set(read_partition(lake, "predictions", date)["model_version"])

    crown(first)
    one = night("2026-11-27")
    assert versions("2026-11-27") == {first} and "rescored" not in one["score"]
    before = read_partition(lake, "predictions", "2026-11-27")
    crown(second)
    two = night("2026-11-28", str(tmp_path / "night2.csv"))
    assert versions("2026-11-28") == {second}
    curated = read_partition(lake, "curated", "2026-11-27")
    rescored = read_partition(lake, "predictions", "2026-11-27")
    assert set(rescored["model_version"]) == {second}
    assert rescored.height == curated.height == rescored["doc_id"].n_unique() == before.height
    assert sorted(rescored["doc_id"]) == sorted(curated["doc_id"])
    assert two["score"]["rescored"]["2026-11-27"]["rows"] == curated.height
    changed = before.join(rescored, on="doc_id").filter(pl.col("confidence") != pl.col("confidence_right"))
    assert changed.height > curated.height // 2  # other weights: other probabilities, not a relabelled copy
    assert lake.read_manifest("predictions", "2026-11-27")["model_version"] == second
    report = Path(two["score"]["rescored"]["2026-11-27"]["report"]).read_text()
    assert f"{curated.height} rows scored with model {second}" in report
    tonight = Path(two["report"]["report"]).read_text()
    assert (f"The same model's rows also fill 1 earlier night(s): 2026-11-27 ({curated.height:,} rows, rescored "
            "after this night's score).") in tonight

    # night 3 under champion A again but score.rescore_nights 0: the nights before keep B's rows
    crown(first)
    three = night("2026-11-29", str(tmp_path / "night3.csv"), **{"score.rescore_nights": 0})
    assert "rescored" not in three["score"] and versions("2026-11-28") == versions("2026-11-27") == {second}
    text = Path(three["report"]["report"]).read_text()
    assert f"2 earlier night(s) were scored by other models: 2026-11-27 ({second}), 2026-11-28 ({second})" in text
    # a model picked for one run (score.model) scores that night only
    picked = score_flow(config=config, overrides={"run_date": "2026-11-29", "score.model": lake.model_url(second)})
    assert "rescored" not in picked and versions("2026-11-29") == {second} == versions("2026-11-27")
    # the champion's score again, window 1, while another run holds night 2's score: that night is left as it was
    with stage_lock(sample_config["data_root"], "score", "2026-11-28"):
        held = score_flow(config=config, overrides={"run_date": "2026-11-29", "score.rescore_nights": 1})
    assert versions("2026-11-29") == {first} and "rescored" not in held and versions("2026-11-28") == {second}
    assert len(held["warnings"]) == 1 and held["warnings"][0].startswith(
        "score: run_date=2026-11-28 was not rescored (LakeStateError: score for run_date=2026-11-28 is already "
        "running")
    assert held["warnings"][0].endswith("it keeps the rows it had until a later score rescores it")
    again = score_flow(config=config, overrides={"run_date": "2026-11-29", "score.rescore_nights": 1})
    assert list(again["rescored"]) == ["2026-11-28"] and versions("2026-11-28") == {first}
    assert versions("2026-11-27") == {second}  # outside the window of 1
