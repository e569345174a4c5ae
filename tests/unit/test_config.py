from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from bert_pipeline.config import PipelineConfig, load_config, parse_override
from bert_pipeline.errors import ConfigError
from bert_pipeline.storage import exists, resolve_package_url

REPO = Path(__file__).resolve().parents[2]


def test_defaults_are_valid_and_run_date_is_today_utc() -> None:
    cfg = load_config()
    assert cfg.run_date == dt.datetime.now(dt.timezone.utc).date().isoformat()
    assert cfg.ingest.format == "auto" and cfg.tokenize.max_length == 128 and cfg.train.max_train_samples is None


def test_demo_config_is_valid_and_points_at_installed_data() -> None:
    cfg = load_config(REPO / "configs" / "demo.yaml", ["run_date=2026-11-28"])
    assert cfg.ingest.label_column == "sentiment" and cfg.train.base_model == ""
    assert cfg.train.max_train_samples == 8000
    assert all(exists(resolve_package_url(s)) for s in cfg.ingest.sources)


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("ingest.format=xls", "ingest.format: must be one of 'auto', 'csv', 'tsv', 'jsonl', 'parquet' or 'txt'"),
        ("run_date=2026-02-30", "run_date: '2026-02-30' is not a real calendar date"),
        ("run_date=28/11/2026", "run_date: must be a date written YYYY-MM-DD"),
        ("train.epochs=0", "train.epochs: must be auto or a number of epochs from 1 to 1000"),
        ("train.learning_rat=0.1", "train.learning_rat: unknown key"),
        ("score.precision=fp8", "score.precision: must be one of 'auto', 'fp32' or 'bf16'"),
        ("curate.test_fraction=0.95", "validation_fraction + test_fraction must be < 1"),
    ],
)
def test_bad_values_name_the_field(override: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert fragment in str(err.value)


def test_overrides_parse_yaml_values_and_beat_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("run_date: 2026-01-02\ntrain:\n  epochs: 3\n  max_train_samples: 10\n")
    cfg = load_config(path, ["train.epochs=2", "train.max_train_samples=", "ingest.sources=[a.csv, b.csv]"])
    assert cfg.run_date == "2026-01-02"
    assert cfg.train.epochs == 2 and cfg.train.max_train_samples is None
    assert cfg.ingest.sources == ["a.csv", "b.csv"]
    assert load_config(path, {"train.epochs": 5}).train.epochs == 5  # dict overrides, as flows pass them


@pytest.mark.parametrize("item", ["novalue", "=3", "a..b=1"])
def test_malformed_override_is_refused(item: str) -> None:
    with pytest.raises(ConfigError, match="dotted.key=value"):
        parse_override(item)


def test_missing_or_non_mapping_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(bad)


def test_fingerprint_changes_with_the_section_it_covers() -> None:
    a = PipelineConfig(run_date="2026-01-01")
    b = PipelineConfig(run_date="2026-01-01", train={"epochs": 2})
    assert a.fingerprint("ingest") == b.fingerprint("ingest")
    assert a.fingerprint("train") != b.fingerprint("train")


def test_an_unreachable_hub_id_is_a_config_error_not_a_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    from bert_pipeline.errors import is_transient
    from bert_pipeline.models import load_tokenizer, resolve_model_dir

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="not in the local Hugging Face cache"):
        resolve_model_dir("no-such-org/no-such-model-xyz")
    with pytest.raises(ConfigError, match="not a local folder") as err:
        load_tokenizer("no-such-org/no-such-model-xyz")
    assert not is_transient(err.value)
    with pytest.raises(ConfigError, match="neither an existing folder"):
        resolve_model_dir("./missing/folder")


def test_null_and_empty_mean_the_defaults() -> None:
    cfg = load_config(None, ["train.base_model=null", "score.model=", "ingest.label_column=", "ingest.id_column=null"])
    assert cfg.train.base_model == "" and cfg.score.model == ""
    assert cfg.ingest.label_column is None and cfg.ingest.id_column is None


def test_preflight_refuses_missing_model_folders_before_any_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    from bert_pipeline.models import preflight

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="train.base_model: 'models/x' is not a folder"):
        preflight(load_config(None, ["train.base_model=models/x"]), ["train"])
    with pytest.raises(ConfigError, match="score.model"):
        preflight(load_config(None, ["score.model=./nope"]), ["score"])
    preflight(load_config(None, ["train.base_model=models/x"]), ["ingest", "curate"])  # not needed: not checked
