"""The short kill -9 run of `make test` (2 trials per stage, for a classifier and for an entity tagger; `make
reliability` runs 10), and a check that the harness's comparisons do catch lost, duplicated and changed rows and
broken manifests."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import polars as pl
import pytest

from bert_pipeline.lake.manifests import Lake
from tests.reliability.crash_harness import (
    CRASHED, Outcome, check_manifests, compare_rows, crash_stage, harness_config, run_in_process,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("crash")


@pytest.mark.parametrize("stage", CRASHED)
def test_kill_9_then_rerun_loses_and_duplicates_nothing(stage: str, workdir: Path) -> None:
    outcome = crash_stage(stage, harness_config(workdir), workdir, trials=2, rng=random.Random(CRASHED.index(stage)))
    assert outcome.trials == 2 and outcome.killed >= 1  # at least one trial really died mid-stage
    assert outcome.clean, outcome


@pytest.mark.parametrize("stage", ["tokenize", "train", "score"])
def test_kill_9_of_an_entity_night_loses_and_duplicates_nothing(stage: str, workdir: Path) -> None:
    """task: ner: tag ids, the token classifier's weights and the entities table come back identical after a
    kill -9 and a rerun (the stages' own NER parts: span alignment, the tagger's loop, decoding into entities)."""
    config = harness_config(workdir / "ner", "ner")
    outcome = crash_stage(stage, config, workdir / "ner", trials=2, rng=random.Random(10 + CRASHED.index(stage)))
    assert outcome.trials == 2 and outcome.killed >= 1
    assert outcome.clean, outcome


def test_the_comparisons_catch_damage(workdir: Path) -> None:
    reference = pl.DataFrame({"doc_id": ["a", "b", "c"], "text": ["x", "y", "z"]})
    damaged = pl.DataFrame({"doc_id": ["a", "a", "c"], "text": ["x", "x", "CHANGED"]})
    outcome = Outcome("curate")
    compare_rows(reference, damaged, ["doc_id", "text"], outcome)
    assert (outcome.rows_lost, outcome.rows_duplicated, outcome.mismatches) == (1, 1, 1)

    config = harness_config(workdir)
    lake_dir = workdir / "damaged-lake"
    shutil.rmtree(lake_dir, ignore_errors=True)
    for stage in ("ingest", "curate"):
        run_in_process(stage, {**config, "data_root": str(lake_dir)})
    lake = Lake(str(lake_dir))
    next(Path(lake.partition("curated", config["run_date"])).glob("part-*")).unlink()
    outcome = Outcome("curate")
    check_manifests(lake, config["run_date"], outcome)
    assert outcome.manifest_errors and "curated: missing" in outcome.manifest_errors[0]
