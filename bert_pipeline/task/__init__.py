"""The task seam: what differs between classification and named-entity recognition, behind one small interface.

`config.task` names the task; `task_of(cfg)` returns its module's object. The stages, the lake, the registry and the
flows are shared and ask the task for what is its own (issue 22, item 11):

  read_rows      - a source file's columns -> the stored text and the canonical label of each row (ingest)
  label_members  - the names a canonical label counts for: a class (or a set's members), or entity types
  relabel        - the labels of cleaned text (curate: entity spans follow the raw -> clean offset map)
  require        - refuse, before a stage writes anything, a setting the task does not support
  token_label_names, token_table - tokenize: the labels a token shard's label_id indexes, and the shard itself
  output_area    - the lake table score writes (predictions; entities for NER)

The stages that differ more (train's recipe, score's scorer, the report's sections) keep one module per task beside
the stage, chosen by task name: stages/train_entities.py, stages/score_entities.py, stages/report_entities.py.

Canonical labels are strings, so one lake schema holds both tasks: a class name or a sorted JSON array of class names
(multi-label) for classification; a sorted JSON array of [start, end, type] (code points of the stored text; `[]` =
annotated, no entities) for NER. Equal annotations are equal strings, so duplicates, label conflicts and corrections
across nights work for spans exactly as for classes.
"""

from __future__ import annotations

from bert_pipeline.config import PipelineConfig
from bert_pipeline.modeling import models
from bert_pipeline.task.base import RowsRead, Task
from bert_pipeline.task.classification import ClassificationTask
from bert_pipeline.task.ner import NerTask

TASKS: dict[str, Task] = {"classification": ClassificationTask(), "ner": NerTask()}


def task_of(cfg: PipelineConfig) -> Task:
    """The task object `cfg.task` names (the config validates the name)."""
    return TASKS[cfg.task]


def preflight(cfg: PipelineConfig, stages: list[str]) -> None:
    """Before any stage writes: the task supports the settings of every one of `stages` (ConfigError naming the first
    it does not), then the models those stages will load are checked (bert_pipeline/modeling/models.preflight)."""
    for stage in stages:
        task_of(cfg).require(cfg, stage)
    models.preflight(cfg, stages)


__all__ = ["RowsRead", "Task", "TASKS", "preflight", "task_of"]
