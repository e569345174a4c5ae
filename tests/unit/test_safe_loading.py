"""Models load from safetensors only: a pickle-only checkpoint is refused with a message before any stage writes;
lake paths cannot be steered out of the lake through parameters."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from bert_pipeline.config import build_config
from bert_pipeline.errors import ConfigError, LakeStateError
from bert_pipeline.lake.manifests import Lake
from bert_pipeline.modeling.models import load_classifier, preflight


def test_a_pickle_only_checkpoint_is_refused(tmp_path: Path, tiny_model: Path) -> None:
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model, folder)
    state = load_classifier(str(folder)).state_dict()
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")  # what an old or untrusted checkpoint looks like
    cfg = build_config({"train": {"base_model": str(folder)}, "score": {"model": str(folder)}})
    with pytest.raises(ConfigError, match=r"train.base_model: .*pytorch_model.bin \(pickle-based weights"):
        preflight(cfg, ["tokenize", "train"])
    with pytest.raises(ConfigError, match=r"score.model: .*safetensors only"):
        preflight(cfg, ["score"])
    with pytest.raises(ConfigError, match="pickle-based"):
        load_classifier(str(folder))


@pytest.mark.parametrize("run_date", ["../2026-01-01", "/etc/passwd", "2026-01-01/../../x", "2026-13-01"])
def test_run_dates_that_would_leave_the_lake_are_refused(run_date: str) -> None:
    with pytest.raises(ConfigError, match="run_date"):
        build_config({"run_date": run_date})


@pytest.mark.parametrize("name", ["../models", "a/b", "..", "/abs"])
def test_model_versions_and_partitions_are_single_path_components(tmp_path: Path, name: str) -> None:
    lake = Lake(str(tmp_path))
    with pytest.raises(LakeStateError, match="not a safe path component"):
        lake.model_url(name)
    with pytest.raises(LakeStateError, match="not a safe path component"):
        lake.partition("raw", name)
