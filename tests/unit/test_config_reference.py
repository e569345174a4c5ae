"""One source for every setting: the configuration reference page and `bert-pipeline --help` are generated from the
config models' fields, every field is described, and a changed description shows in both."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from bert_pipeline import config_reference
from bert_pipeline.config import PipelineConfig, TrainConfig, overrides_schema
from flows.cli import build_parser, keys_help
from tests.helpers import code_blocks

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_has_a_description() -> None:
    assert config_reference.undescribed() == [], "describe these fields in bert_pipeline/config.py (Field(description=...))"


def test_the_reference_lists_every_field_once_and_nothing_else() -> None:
    page = config_reference.markdown()
    listed = re.findall(r"^\| `([^`]+)` \|", page, re.M)
    assert len(listed) == len(set(listed))
    # the JSON schema the Prefect UI draws its form from walks the models independently
    assert set(listed) == set(overrides_schema()["properties"])
    assert {"train.epochs", "ingest.on_existing", "curate.near_dup_threshold", "data_root", "runner.address"} <= set(listed)


def test_values_defaults_and_limits_are_read_from_the_models() -> None:
    by_key = {s.key: s for s in config_reference.settings()}
    assert by_key["train.epochs"].kind == "integer | auto" and by_key["train.epochs"].default == "auto"
    assert by_key["curate.validation_fraction"].limits == "≥ 0.0, < 1.0"
    assert by_key["ingest.label_column"].kind == "text or empty" and by_key["ingest.label_column"].default == "empty"
    assert by_key["ingest.on_existing"].kind == "refuse | replace | append"
    assert by_key["ingest.shard_rows"].default == "10_000"
    assert by_key["score.model"].default == '""'
    assert by_key["ingest.sources"].kind == "list of text" and by_key["ingest.sources"].default == "[]"
    assert by_key["run_date"].default.startswith("today")  # not the date the docs were built on
    assert by_key["train.calibrate"].kind == "true | false" and by_key["train.calibrate"].default == "true"


def test_a_changed_description_changes_the_page_and_the_cli_help(monkeypatch: pytest.MonkeyPatch) -> None:
    field = TrainConfig.model_fields["warmup_ratio"]
    monkeypatch.setattr(field, "description", "a brand-new explanation | with a pipe")
    assert "| a brand-new explanation \\| with a pipe |" in config_reference.markdown()
    assert "a brand-new explanation | with a pipe" in keys_help("train")
    assert "a brand-new explanation" not in keys_help("score")  # score --help lists score's keys, not train's


def test_the_rendering_on_a_model_of_our_own() -> None:
    class Inner(BaseModel):
        """Inner things."""

        size: int | None = Field(None, ge=1, le=9, description="how big")

    class Outer(BaseModel):
        name: str = Field("x", description="what to call it")
        inner: Inner = Field(default_factory=Inner)

    page = config_reference.markdown(Outer)
    assert "| `name` | text | x | what to call it |" in page
    assert "## `inner`\nInner things." in page
    assert "| `inner.size` | integer or empty (≥ 1, ≤ 9) | empty | how big |" in page
    assert config_reference.undescribed(Outer) == []


def test_every_bert_pipeline_command_line_in_the_docs_is_valid() -> None:
    """Each `bert-pipeline ...` line a user would paste from the README or the docs names a real command and flags,
    and its --set keys are settings (a renamed key or flag breaks this test, not the user's night)."""
    parser = build_parser()
    keys = {s.key for s in config_reference.settings()}
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    checked = 0
    for page in pages:
        for line in _shell_lines(page.read_text()):
            if not line.startswith("bert-pipeline "):
                continue
            words = [w for w in re.split(r"\s+", line.split("#")[0].strip())[1:] if w]
            if not words or "..." in line or "|" in words or any(w.startswith(("<", "[")) for w in words):
                continue  # a usage pattern, not a command
            args = parser.parse_args([w.strip("'\"") for w in words])
            for item in getattr(args, "overrides", []):
                assert item.split("=")[0] in keys, f"{page.name}: {line}: unknown key"
            checked += 1
    assert checked >= 5


def _shell_lines(text: str) -> list[str]:
    blocks = [body for lang, body in code_blocks(text) if lang in ("", "sh", "bash", "shell", "console")]
    return [line.strip().removeprefix("$ ") for block in blocks for line in block.replace("\\\n", " ").splitlines()]


def test_the_documentation_site_builds_strict(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, env={**_env(), "NO_MKDOCS_2_WARNING": "1",
                                                                             "DISABLE_MKDOCS_2_WARNING": "true"})
    assert done.returncode == 0, done.stderr[-3000:]
    page = (tmp_path / "site" / "reference" / "configuration" / "index.html").read_text()
    for setting in config_reference.settings():
        assert setting.key in page


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_the_deployment_schema_takes_what_the_config_takes_and_refuses_what_it_refuses() -> None:
    """The Prefect server checks `run_deployment(..., parameters=...)` against the flow's parameter schema before
    the run exists: a value the config accepts but the schema refuses never reaches the pipeline."""
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools import validate

    from flows.nightly import nightly_flow

    schema = parameter_schema(nightly_flow).model_dump_for_openapi()

    def refused(overrides: dict) -> list[str]:
        return [error.message for error in validate({"overrides": overrides}, schema)]

    defaults = PipelineConfig().model_dump(mode="json")
    flat = {f"{section}.{key}": value for section, values in defaults.items() if isinstance(values, dict)
            for key, value in values.items()} | {k: v for k, v in defaults.items() if not isinstance(v, dict)}
    assert refused({k: v for k, v in flat.items() if k != "run_date"} | {"run_date": "2026-03-01"}) == []
    one_path = "s3://bucket/exports/night.csv"  # a Python caller's single path: the config makes it a list of one
    assert refused({"ingest.sources": one_path}) == []
    assert PipelineConfig.model_validate({"ingest": {"sources": one_path}}).ingest.sources == [one_path]
    assert refused({"ingest.sources": ["a.csv", "s3://b/c.jsonl"], "train.epochs": "auto"}) == []
    assert refused({"ingest.sources": 3}) and refused({"tokenize.max_length": "long"}) and refused({"nope": 1})
