"""How Prefect's run loggers show a refusal: its message, without its traceback.

A `PipelineError` is a refusal the product chose to make: its message says what is wrong, where, and which setting
would help. Prefect logs a failed run with the exception's traceback (`exc_info`) once for the task, once for each
flow around it, so a night refused for repeated ids printed 190 lines of Prefect's and our frames around four copies
of one message (the Quranic verses, 2026-12-05). `RefusalsWithoutTraceback` keeps every record and its message and
drops the traceback of a `PipelineError` only; any other exception (a bug, a lost connection) keeps its traceback.
"""

from __future__ import annotations

import logging

from bert_pipeline.errors import PipelineError

RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")  # what Prefect's engines log failed runs through


class RefusalsWithoutTraceback(logging.Filter):
    """Passes every record; one whose exception is a PipelineError loses its traceback (exc_info, exc_text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], PipelineError):
            record.exc_info, record.exc_text = None, None
        return True


def show_refusals_without_tracebacks() -> None:
    """Install the filter on Prefect's run loggers (once; idempotent). flows/__init__.py calls it, so the CLI, the
    tests and a worker running a deployment all log refusals the same way."""
    for name in RUN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RefusalsWithoutTraceback) for f in logger.filters):
            logger.addFilter(RefusalsWithoutTraceback())
