"""The Prefect flows. Importing any of them makes Prefect log a refusal (a PipelineError) by its message alone,
without the traceback it adds to a bug's (tasks/logs.py)."""

from tasks.logs import show_refusals_without_tracebacks

show_refusals_without_tracebacks()
