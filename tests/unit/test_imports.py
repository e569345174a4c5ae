"""flows -> tasks -> bert_pipeline, one way: the library never imports prefect."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import bert_pipeline

SOURCE_DIRS = ("bert_pipeline", "flows", "tasks", "deployments", "benchmarks", "tests")


def test_no_bert_pipeline_module_imports_prefect() -> None:
    modules = sorted(m.name for m in pkgutil.walk_packages(bert_pipeline.__path__, "bert_pipeline."))
    assert {"bert_pipeline.config", "bert_pipeline.stages.score", "bert_pipeline.stages.train"} <= set(modules)
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
        "bert_pipeline.training.distributed": ["bert_pipeline.stages.train", "bert_pipeline.evaluation.registry"],
        "bert_pipeline.evaluation.registry": ["bert_pipeline.stages.train", "bert_pipeline.stages.score"],
        "bert_pipeline.training.trainset": ["bert_pipeline.stages.train", "bert_pipeline.evaluation.registry", "bert_pipeline.stages.score"],
        "bert_pipeline.modeling.inference": ["bert_pipeline.stages.train", "bert_pipeline.stages.score"],
        "bert_pipeline.curation.labels": ["bert_pipeline.stages.curate", "bert_pipeline.stages.ingest", "bert_pipeline.stages.train"],
        "bert_pipeline.training.adapt": ["bert_pipeline.stages.train"],
        "bert_pipeline.modeling.pooling": ["bert_pipeline.modeling.models"],
    }
    for module, forbidden in below.items():
        code = f"import sys, {module}; print(sorted(set({forbidden!r}) & set(sys.modules)))"
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "[]", f"{module} loads {result.stdout.strip()}"


# The sub-packages in the order they may import each other: each only from those before it (and the top-level
# config, errors, progress, schedule modules); docs/reference/layout.md draws the same.
LAYERS = ["lake", "curation", "ner", "modeling", "text", "training", "evaluation", "task", "stages"]


def test_sub_packages_import_only_the_layers_below_them() -> None:
    import ast
    from pathlib import Path

    root = Path(__file__).parents[2] / "bert_pipeline"
    wrong = []
    for layer, package in enumerate(LAYERS):
        for path in sorted((root / package).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = ([node.module] if isinstance(node, ast.ImportFrom) and node.module else
                         [a.name for a in node.names] if isinstance(node, ast.Import) else [])
                for name in names:
                    parts = name.split(".")
                    if parts[0] == "bert_pipeline" and len(parts) > 1 and parts[1] in LAYERS \
                            and LAYERS.index(parts[1]) > layer:
                        wrong.append(f"{path.relative_to(root.parent)} imports {name}")
    assert not wrong, wrong


def test_no_source_file_is_hidden_from_git() -> None:
    """A fresh clone (what CI runs) must hold every module: a too-broad .gitignore pattern once hid a package."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    sources = [p.relative_to(root).as_posix() for d in SOURCE_DIRS for p in (root / d).rglob("*.py") if "__pycache__" not in p.parts]
    assert len(sources) > 50
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *sources], cwd=root, capture_output=True, text=True)
    assert ignored.stdout.split() == [], f"ignored by .gitignore: {ignored.stdout.split()}"
