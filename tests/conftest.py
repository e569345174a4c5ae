from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("MKL_CBWR", "AUTO")  # MKL's reproducible mode: same results run to run on this CPU

from tests.helpers import build_tiny_model, demo_frame, write_other_tsv, write_sample_csv  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = demo_frame()["text"].head(3000).to_list()
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert"), texts)


@pytest.fixture
def sample_csv(tmp_path: Path) -> Path:
    path = tmp_path / "tweets.csv"
    write_sample_csv(path)
    return path


@pytest.fixture
def other_tsv(tmp_path: Path) -> Path:
    path = tmp_path / "reports.tsv"
    write_other_tsv(path)
    return path


@pytest.fixture
def sample_config(tmp_path: Path, sample_csv: Path, tiny_model: Path) -> dict:
    """A full pipeline config for the sample: tiny model, enough steps to beat the majority baseline, a lake in
    tmp_path. No TF-IDF baseline check: on a few hundred tweets TF-IDF beats the tiny BERT (tests/unit/test_baseline.py
    covers that gate), and these tests are about the stages."""
    return {
        "data_root": str(tmp_path / "lake"),
        "run_date": "2026-11-27",
        "ingest": {"sources": [str(sample_csv)], "text_column": "text", "label_column": "sentiment"},
        "tokenize": {"max_length": 64},
        "train": {"base_model": str(tiny_model), "epochs": "auto", "min_steps": 300, "batch_size": 16,
                  "learning_rate": 1e-3, "linear_baseline": False},
        "score": {"batch_tokens": 2048},
    }
