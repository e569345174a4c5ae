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


def test_library_modules_import_in_one_direction() -> None:
    """No import circles: the stage modules sit above the helpers they use, never the other way round."""
    below = {  # module -> stage modules it must not load (directly or through anything it imports)
        "bert_pipeline.distributed": ["bert_pipeline.train", "bert_pipeline.registry"],
        "bert_pipeline.registry": ["bert_pipeline.train", "bert_pipeline.score"],
        "bert_pipeline.trainset": ["bert_pipeline.train", "bert_pipeline.registry", "bert_pipeline.score"],
        "bert_pipeline.inference": ["bert_pipeline.train", "bert_pipeline.score"],
        "bert_pipeline.labels": ["bert_pipeline.curate", "bert_pipeline.ingest", "bert_pipeline.train"],
    }
    for module, forbidden in below.items():
        code = f"import sys, {module}; print(sorted(set({forbidden!r}) & set(sys.modules)))"
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "[]", f"{module} loads {result.stdout.strip()}"
