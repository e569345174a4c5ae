"""The console script on data that is not the demo's: TSV, other columns, multi-line fields, four labels."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl

from bert_pipeline.lake.manifests import Lake
from tests.helpers import read_partition

BIN = Path(sys.executable).parent / "bert-pipeline"


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)  # embedded mode, like `make demo`
    return subprocess.run([str(BIN), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_cli_runs_another_dataset_and_score_reruns_cleanly(tmp_path: Path, other_tsv: Path, tiny_model: Path) -> None:
    config = tmp_path / "reports.yaml"
    config.write_text(
        "data_root: ./lake\nrun_date: 2026-11-20\n"
        f"ingest:\n  sources: ['{tmp_path}/*.tsv']\n  text_column: body\n  label_column: category\n  id_column: uid\n"
        "  quote_char: '\"'\n"  # this TSV quotes its multi-line values; TSV is read unquoted unless told
        f"train:\n  base_model: {tiny_model}\n  min_steps: 120\n  learning_rate: 0.002\n  batch_size: 16\n"
        "  linear_baseline: false\n"  # a tiny BERT loses to TF-IDF on four topics; this tests the CLI, not quality
    )
    done = run_cli("run", "--config", str(config), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "test:" in done.stdout and "macro-F1" in done.stdout and "predictions/run_date=2026-11-20" in done.stdout
    lake = Lake(str(tmp_path / "lake"))
    predictions = read_partition(lake, "predictions", "2026-11-20")
    curated = lake.read_manifest("curated", "2026-11-20")["counts"]
    assert curated["raw_rows"] == 144 and curated["curated_rows"] >= 140
    assert predictions.height == curated["curated_rows"] == predictions["doc_id"].n_unique()
    keys = predictions.select(pl.col("probabilities").map.keys()).to_series().to_list()
    assert all(k == ["food", "sport", "tech", "weather"] for k in keys)
    raw = pl.read_parquet(lake.shard_urls("raw", "2026-11-20", lake.read_manifest("raw", "2026-11-20"))[0])
    assert raw["text"][0].count("\n") == 1 and '"quotes"' in raw["text"][0]

    rerun = run_cli("score", "--config", str(config), cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    # a score run alone rewrites the night's report (data_root as the config gives it: relative)
    assert "report    written                      ./lake/reports/run_date=2026-11-20/report.md" in rerun.stdout
    assert (tmp_path / "lake" / "reports" / "run_date=2026-11-20" / "report.md").exists()
    again = read_partition(lake, "predictions", "2026-11-20")
    assert again.height == curated["curated_rows"] == again["doc_id"].n_unique()


def test_cli_refuses_a_bad_config_with_the_field_name(tmp_path: Path, other_tsv: Path) -> None:
    source = f"ingest.sources=[{other_tsv}]"
    done = run_cli("ingest", "--set", source, "--set", "ingest.format=xls", "--set", "run_date=yesterday", cwd=tmp_path)
    assert done.returncode == 2
    assert "ingest.format: must be one of" in done.stderr and "run_date: must be a date" in done.stderr
    missing = run_cli("run", "--set", source, "--set", "ingest.text_column=body", "--set", "train.base_model=./nope",
                      cwd=tmp_path)
    assert missing.returncode == 2 and "train.base_model: ./nope is neither an existing folder" in missing.stderr
    assert not (tmp_path / "lake").exists()  # the same sources with a good config would have been ingested


def test_help_lists_commands_and_keys(tmp_path: Path) -> None:
    done = run_cli("train", "--help", cwd=tmp_path)
    assert done.returncode == 0
    for text in ("--config", "--set KEY=VALUE", "train.max_train_samples", "data_root", "timeouts.train"):
        assert text in done.stdout
    assert "  score.model  [" not in done.stdout  # each command lists the keys it reads
    everything = run_cli("run", "--help", cwd=tmp_path)
    for text in ("train.max_train_samples", "score.model", "ingest.split_column", "runner.address"):
        assert text in everything.stdout


def test_a_refused_night_prints_its_message_without_tracebacks(tmp_path: Path) -> None:
    """A refusal (a PipelineError) is a message for the user: Prefect logs it once per task and flow run, with the
    message and the exception's name, and without the 190 lines of frames it adds to a bug's log (tasks/logs.py)."""
    source = tmp_path / "night.csv"
    source.write_text('id,text,label\n7,"Das Essen war gut, gern wieder",pos\n8,夜景很美,pos\n'
                      "7,The soup was cold,neg\n")  # id 7 twice, with other texts and labels
    done = run_cli("ingest", "--set", f"ingest.sources=[{source}]", "--set", "ingest.id_column=id",
                   "--set", "run_date=2026-12-01", "--set", "data_root=./lake", cwd=tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    assert "bert-pipeline ingest failed: the ids in ingest.id_column 'id' are not unique" in done.stderr
    assert "night.csv line 2 and" in done.stderr and "night.csv line 4" in done.stderr
    assert "InputDataError" in output  # Prefect's own lines still say which run failed and with what
    assert "Traceback" not in output and 'File "' not in output, output[-3000:]
    assert not (tmp_path / "lake" / "raw").exists()


def test_a_bug_keeps_its_traceback_and_a_refusal_loses_only_its_own() -> None:
    import importlib
    import logging
    import sys

    importlib.import_module("flows")  # importing the flows installs the filter
    from bert_pipeline.errors import InputDataError
    from tasks.logs import RUN_LOGGERS, RefusalsWithoutTraceback

    for name in RUN_LOGGERS:
        assert sum(isinstance(f, RefusalsWithoutTraceback) for f in logging.getLogger(name).filters) == 1
    records = []
    for error in (InputDataError("a.csv line 3: empty id"), KeyError("label")):
        try:
            raise error
        except Exception:
            record = logging.LogRecord("prefect.task_runs", logging.ERROR, __file__, 1, "failed: %r", (error,),
                                       sys.exc_info())
        assert RefusalsWithoutTraceback().filter(record)  # every record passes
        records.append(record)
    refusal, bug = records
    assert refusal.exc_info is None and refusal.getMessage() == "failed: InputDataError('a.csv line 3: empty id')"
    assert bug.exc_info is not None and "Traceback" in logging.Formatter().format(bug)


def _children(pid: int) -> list[int]:
    """The live processes whose parent is pid (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_sigterm_ends_a_run_as_ctrl_c_does_and_stops_the_server_it_started(
        tmp_path: Path, sample_config: dict) -> None:
    """A scheduler's timeout or `kill` sends SIGTERM: the run stops with 143, releases its stage lock, and the
    temporary Prefect server it started goes with it instead of living on, orphaned."""
    import signal
    import time

    import yaml

    config = tmp_path / "night.yaml"
    config.write_text(yaml.safe_dump(sample_config))
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)  # embedded mode: the run starts its own server
    process = subprocess.Popen([str(BIN), "run", "--config", str(config)], cwd=tmp_path, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = []
    deadline = time.monotonic() + 300
    for line in process.stdout:  # type: ignore[union-attr]
        lines.append(line)
        if "Beginning subflow run 'train-" in line or time.monotonic() > deadline:
            break
    assert any("Beginning subflow run 'train-" in line for line in lines), "".join(lines)[-3000:]
    time.sleep(2)  # inside the train stage, its lock held
    servers = [pid for pid in _children(process.pid)
               if b"prefect.server" in (Path("/proc") / str(pid) / "cmdline").read_bytes()]
    assert servers, "the run started no temporary server"
    assert list((tmp_path / "lake" / "_locks").glob("train-*.lock"))
    process.send_signal(signal.SIGTERM)
    rest, _ = process.communicate(timeout=120)
    assert process.returncode == 143, ("".join(lines) + rest)[-3000:]
    for _ in range(100):  # the server's atexit stop waits for it to end
        if not any(_alive(pid) for pid in servers):
            break
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in servers), "the temporary Prefect server outlived the run"
    assert not list((tmp_path / "lake" / "_locks").glob("*.lock"))  # released, not left for the next run to judge
