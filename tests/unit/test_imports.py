"""flows -> tasks -> bert_pipeline, one way: the library never imports prefect."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import bert_pipeline


def test_no_bert_pipeline_module_imports_prefect() -> None:
    modules = sorted(m.name for m in pkgutil.walk_packages(bert_pipeline.__path__, "bert_pipeline."))
    assert {"bert_pipeline.config", "bert_pipeline.score", "bert_pipeline.train"} <= set(modules)
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "    assert 'prefect' not in sys.modules, f'{name} imported prefect'\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_tasks_do_not_import_flows() -> None:
    code = "import sys, tasks.stages; assert not any(m.startswith('flows') for m in sys.modules); print('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
