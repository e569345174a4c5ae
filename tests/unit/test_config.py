from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from bert_pipeline.config import PipelineConfig, load_config, parse_override
from bert_pipeline.errors import ConfigError
from bert_pipeline.lake.storage import exists, resolve_package_url

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
        ("ingest.format=xls", "ingest.format: must be one of 'auto', 'csv', 'tsv', 'jsonl', 'json', 'parquet', 'txt' or 'conll'"),
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
    assert load_config(path, ["ingest.sources=data/night 1.csv"]).ingest.sources == ["data/night 1.csv"]  # one path
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
    from bert_pipeline.modeling.models import load_tokenizer, resolve_model_dir

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
    from bert_pipeline.modeling.models import preflight

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="train.base_model: 'models/x' is not a folder"):
        preflight(load_config(None, ["train.base_model=models/x"]), ["train"])
    with pytest.raises(ConfigError, match="score.model"):
        preflight(load_config(None, ["score.model=./nope"]), ["score"])
    preflight(load_config(None, ["train.base_model=models/x"]), ["ingest", "curate"])  # not needed: not checked


# --- YAML 1.2 core schema: values mean what they say, whatever YAML 1.1 (PyYAML's safe_load) would have made of them


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("12", 12), ("+12", 12), ("-3", -3), ("0", 0), ("5e-5", 5e-5), ("5.0e-5", 5e-5), ("1e3", 1000.0),
        ("0.25", 0.25), ("0x1f", 31), ("0o17", 15), ("true", True), ("False", False), ("null", None), ("~", None),
        ("yes", "yes"), ("no", "no"), ("on", "on"), ("Off", "Off"),  # YAML 1.1: booleans
        # YAML 1.1: 1000, 90, a date, 5
        ("1_000", "1_000"), ("1:30", "1:30"), ("2026-11-28", "2026-11-28"), ("0b101", "0b101"),
        ("'012'", "012"), ("[a, 'b']", ["a", "b"]), ("{x: 1}", {"x": 1}),
    ],
)
def test_override_values_are_read_by_the_yaml_1_2_core_schema(raw: str, value: object) -> None:
    key, parsed = parse_override(f"some.key={raw}")
    assert key == "some.key" and parsed == value and type(parsed) is type(value)


def test_special_floats_are_floats() -> None:
    assert parse_override("k=.inf")[1] == float("inf") and parse_override("k=-.inf")[1] == float("-inf")
    nan = parse_override("k=.nan")[1]
    assert isinstance(nan, float) and nan != nan


@pytest.mark.parametrize(("raw", "octal", "number"), [("012", "10", "12"), ("-012", "-10", "-12"), ("00", "0", "0"),
                                                       ("08", "the text '08'", "8")])
def test_a_leading_zero_integer_override_is_refused_naming_the_key(raw: str, octal: str, number: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"train.seed={raw}"])
    assert str(err.value) == (
        f"override train.seed: {raw} is ambiguous: YAML 1.1 reads a leading 0 as octal ({raw} would be {octal}), "
        f"YAML 1.2 as decimal; write {number} for the number, or quote it if you meant the text '{raw}': "
        f"--set \"train.seed='{raw}'\"")


def test_a_leading_zero_inside_an_override_list_names_its_place() -> None:
    with pytest.raises(ConfigError, match=r"^override ingest\.sources\[1\]: 012 is ambiguous: .* write 12 for the "
                                          r"number, or quote it if you meant the text '012': '012' inside the value$"):
        parse_override("ingest.sources=[a.csv, 012]")


def test_yaml_1_1_lookalikes_take_the_type_of_their_key() -> None:
    cfg = load_config(None, ["ingest.text_column=yes", "ingest.label_column=off", "curate.near_dedup=no",
                             "curate.dedup_across_nights=on", "train.class_weights=off", "curate.max_chars=1_000",
                             "ingest.id_column=1:30", "ingest.split_column='012'", "train.seed=12",
                             "train.learning_rate=5e-5", "train.max_train_samples=null", "train.calibrate=false",
                             "run_date=2026-11-28"])
    assert (cfg.ingest.text_column, cfg.ingest.label_column, cfg.ingest.id_column) == ("yes", "off", "1:30")
    assert cfg.ingest.split_column == "012"
    assert cfg.curate.near_dedup is False and cfg.curate.dedup_across_nights is True
    assert cfg.train.class_weights is False
    assert cfg.curate.max_chars == 1000 and cfg.train.seed == 12 and cfg.run_date == "2026-11-28"
    assert cfg.train.learning_rate == 5e-5 and cfg.train.max_train_samples is None and cfg.train.calibrate is False
    with pytest.raises(ConfigError, match="train.seed: Input should be a valid integer, unable to parse string"):
        load_config(None, ["train.seed=1:30"])  # YAML 1.1: 90, silently


def test_a_number_where_text_is_meant_says_to_quote_it() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, ["ingest.text_column=0x1f"])
    assert ("ingest.text_column: must be text, got 31: YAML read the value as a number; to mean the text, quote it "
            "as written") in str(err.value)


def test_the_config_file_is_read_by_the_same_rule(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("run_date: 2026-01-02\ningest:\n  sources: [a.csv]\n  text_column: no\ncurate:\n  near_dedup: off\n"
                    "train:\n  seed: 12\n  learning_rate: 5e-5\n  max_train_samples: null\n  calibrate: true\n")
    cfg = load_config(path)
    assert cfg.run_date == "2026-01-02" and cfg.ingest.sources == ["a.csv"] and cfg.ingest.text_column == "no"
    assert cfg.curate.near_dedup is False and cfg.train.seed == 12 and cfg.train.learning_rate == 5e-5
    assert cfg.train.max_train_samples is None and cfg.train.calibrate is True

    path.write_text("run_date: 2026-01-02\ntrain:\n  epochs: 2\n  seed: 012\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == (
        f"config file {path} line 4: train.seed: 012 is ambiguous: YAML 1.1 reads a leading 0 as octal (012 would be "
        "10), YAML 1.2 as decimal; write 12 for the number, or quote it if you meant the text '012': seed: '012'")
    path.write_text("ingest:\n  sources:\n    - a.csv\n    - 0042\n")
    with pytest.raises(ConfigError, match=r"line 4: ingest\.sources\[1\]: 0042 is ambiguous: .*42 for the number"):
        load_config(path)
    path.write_text("train:\n  seed: '012'\n")  # quoted: the text, which the integer key reads as 12
    assert load_config(path).train.seed == 12


def test_the_cli_refuses_a_leading_zero_before_any_run_and_passes_typed_overrides(
        capsys: pytest.CaptureFixture[str]) -> None:
    from flows.cli import main, typed_overrides

    assert main(["ingest", "--set", "train.seed=012"]) == 2
    assert capsys.readouterr().err == (
        "bert-pipeline: override train.seed: 012 is ambiguous: YAML 1.1 reads a leading 0 as octal (012 would be 10), "
        "YAML 1.2 as decimal; write 12 for the number, or quote it if you meant the text '012': "
        "--set \"train.seed='012'\"\n")
    overrides = dict(parse_override(item) for item in ["curate.near_dedup=yes", "curate.max_chars=1_000",
                                                       "ingest.text_column=no", "train.learning_rate=5e-5"])
    assert typed_overrides(load_config(None, overrides), overrides) == {
        "curate.near_dedup": True, "curate.max_chars": 1000, "ingest.text_column": "no", "train.learning_rate": 5e-5}


def test_entity_tagging_keeps_the_models_dropout_and_a_higher_rate_unless_the_config_sets_them(tmp_path: Path) -> None:
    classifier = load_config(None, [])
    assert (classifier.train.hidden_dropout, classifier.train.attention_dropout) == (0.0, 0.0)
    assert classifier.train.learning_rate == 5e-5
    tagger = load_config(None, ["task=ner"])
    assert (tagger.train.hidden_dropout, tagger.train.attention_dropout) == (0.1, 0.1)
    assert tagger.train.learning_rate == 1e-4
    assert load_config(None, ["task=ner", "train.learning_rate=3e-5"]).train.learning_rate == 3e-5
    # what the user wrote stands, in a file or an override, a number or empty (the model's own)
    path = tmp_path / "ner.yaml"
    path.write_text("task: ner\ntrain:\n  hidden_dropout: 0.0\n", encoding="utf-8")
    mixed = load_config(str(path), ["train.attention_dropout=null"])
    assert (mixed.train.hidden_dropout, mixed.train.attention_dropout) == (0.0, None)
    # the resolved values are what the train fingerprint hashes, and a dumped config reloads to the same
    unset_off = load_config(None, ["task=ner", "train.hidden_dropout=0.0"])
    assert tagger.fingerprint("train") != unset_off.fingerprint("train")
    assert PipelineConfig.model_validate(tagger.model_dump()).train == tagger.train


def test_ingest_label_map_is_read_in_the_labels_canonical_form_and_refused_where_it_cannot_apply() -> None:
    cfg = load_config(None, ["ingest.label_map={0: neg, 1.0: pos, ' Pos ': pos, 7: '007'}"])
    assert cfg.ingest.label_map == {"0": "neg", "1": "pos", "Pos": "pos", "7": "007"}
    with pytest.raises(ConfigError, match=r"ingest.label_map: maps one label to one label"):
        load_config(None, ["ingest.label_map={refund: [billing, refund]}"])
    with pytest.raises(ConfigError, match=r"ingest.label_map: spellings and labels may not be empty"):
        load_config(None, ["ingest.label_map={0: ''}"])
    with pytest.raises(ConfigError, match=r"under task: ner, entity types are rewritten by ner.label_map"):
        load_config(None, ["task=ner", "ingest.label_map={Per: PER}"])
