"""bert-pipeline: the library behind the Prefect flows. Plain Python; it never imports prefect."""

__version__ = "0.3.0"
