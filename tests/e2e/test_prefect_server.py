"""End to end against a real `prefect server start`: `make deploy`, `make worker`, `prefect deployment run`.

The server runs on a free loopback port with a temporary PREFECT_HOME; every process the test starts is stopped by
its PID (process group) at the end, whatever happened.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from bert_pipeline.lake.manifests import Lake
from tests.helpers import free_port, read_partition

REPO = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))
pytestmark = pytest.mark.slow


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """A background process in its own process group, so stopping it stops its children too."""
    with log.open("ab") as out:
        return subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the whole process group, then SIGKILL to whatever is left of it (children outlive a dead leader)."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and group_alive(proc.pid):
            proc.poll()  # reap the leader so it does not count as alive
            time.sleep(0.2)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_healthy(api_url: str, proc: subprocess.Popen, log: Path, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"prefect server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    pytest.fail(f"prefect server not healthy after {seconds}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def prefect_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real Prefect server, the deployments and both workers, as a user would set them up from the README."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_WORKER_QUERY_SECONDS": "2",
           "PREFECT_WORKER_PREFETCH_SECONDS": "2", "BERT_PIPELINE_TIMEZONE": "Europe/Paris",
           "PREFECT_LOGGING_LEVEL": "INFO"}
    processes: list[subprocess.Popen] = []
    try:
        processes.append(start([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env,
                               home / "server.log"))
        wait_healthy(env["PREFECT_API_URL"], processes[0], home / "server.log")
        deploy = subprocess.run(["make", "deploy"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
        processes.append(start(["make", "worker"], env, home / "worker.log"))
        yield env
    finally:
        for proc in reversed(processes):
            stop(proc)


def prefect(env: dict[str, str], *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([PREFECT, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def run_deployment(env: dict[str, str], name: str, params: dict) -> subprocess.CompletedProcess:
    return prefect(env, "deployment", "run", name, "--params", json.dumps(params), "--watch",
                   "--watch-timeout", "800")


def test_deployments_are_listed_with_the_nightly_schedule(prefect_env: dict[str, str]) -> None:
    listed = prefect(prefect_env, "deployment", "ls")
    for flow in ("bert-nightly", "bert-ingest", "bert-curate", "bert-tokenize", "bert-train", "bert-score"):
        assert flow in listed.stdout, listed.stdout
    nightly = prefect(prefect_env, "deployment", "inspect", "bert-nightly/nightly").stdout
    assert "0 2 * * *" in nightly and "Europe/Paris" in nightly, nightly
    score = prefect(prefect_env, "deployment", "inspect", "bert-score/score").stdout
    assert "'work_pool_name': 'gpu'" in score and "'limit': 1" in score, score


def test_a_bad_parameter_is_refused_at_submission(prefect_env: dict[str, str]) -> None:
    refused = prefect(prefect_env, "deployment", "run", "bert-nightly/nightly", "--params",
                      json.dumps({"overrides": {"train.epochs": "many"}}))
    assert refused.returncode != 0
    assert "train.epochs" in refused.stdout + refused.stderr
    unknown = prefect(prefect_env, "deployment", "run", "bert-score/score", "--params",
                      json.dumps({"overrides": {"score.modle": "x"}}))
    assert unknown.returncode != 0 and "score.modle" in unknown.stdout + unknown.stderr


def test_nightly_deployment_fills_the_lake_and_a_score_rerun_duplicates_nothing(
        prefect_env: dict[str, str], tmp_path: Path, sample_config: dict) -> None:
    config = tmp_path / "nightly.yaml"
    config.write_text(yaml.safe_dump(sample_config))
    params = {"config": str(config), "overrides": {}}
    nightly = run_deployment(prefect_env, "bert-nightly/nightly", params)
    worker_log = Path(prefect_env["PREFECT_HOME"], "worker.log")
    assert nightly.returncode == 0 and "Completed" in nightly.stdout, (
        nightly.stdout[-3000:] + nightly.stderr[-3000:] + worker_log.read_text()[-6000:])

    lake, run_date = Lake(sample_config["data_root"]), sample_config["run_date"]
    curated = lake.read_manifest("curated", run_date)["counts"]
    first = read_partition(lake, "predictions", run_date)
    assert first.height == curated["curated_rows"] == first["doc_id"].n_unique() > 250
    assert Path(sample_config["data_root"], "reports", f"run_date={run_date}", "report.md").exists()

    again = run_deployment(prefect_env, "bert-score/score", params)
    assert again.returncode == 0 and "Completed" in again.stdout, again.stdout[-3000:] + again.stderr[-3000:]
    second = read_partition(lake, "predictions", run_date)
    assert second.height == first.height == second["doc_id"].n_unique()
    assert second["run_id"].to_list() == first["run_id"].to_list()  # committed shards were kept, not rescored


def api(env: dict[str, str], path: str) -> dict:
    with urllib.request.urlopen(f"{env['PREFECT_API_URL']}{path}", timeout=10) as response:
        return json.loads(response.read())


def test_two_score_runs_submitted_together_run_one_after_the_other(
        prefect_env: dict[str, str], tmp_path: Path, sample_config: dict) -> None:
    config = tmp_path / "nightly.yaml"
    config.write_text(yaml.safe_dump(sample_config))
    lake, run_date = Lake(sample_config["data_root"]), sample_config["run_date"]
    nightly = run_deployment(prefect_env, "bert-nightly/nightly", {"config": str(config)})
    assert nightly.returncode == 0, nightly.stdout[-2000:]
    params = json.dumps({"config": str(config), "overrides": {"score.force": True}})
    submitted = [prefect(prefect_env, "deployment", "run", "bert-score/score", "--params", params) for _ in range(2)]
    ids = [next(line.split()[-1] for line in s.stdout.splitlines() if "UUID" in line) for s in submitted]
    deadline, runs = time.monotonic() + 600, []
    while time.monotonic() < deadline:
        runs = [api(prefect_env, f"/flow_runs/{run_id}") for run_id in ids]
        if all(r["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") for r in runs):
            break
        time.sleep(2)
    assert [r["state_type"] for r in runs] == ["COMPLETED", "COMPLETED"], runs
    first, second = sorted(runs, key=lambda r: r["start_time"])
    assert first["end_time"] <= second["start_time"]  # the deployment's concurrency limit queued the second
    scored = read_partition(lake, "predictions", run_date)
    assert scored.height == lake.read_manifest("curated", run_date)["counts"]["curated_rows"] == scored["doc_id"].n_unique()


def api_post(env: dict[str, str], path: str, body: dict) -> list | dict:
    request = urllib.request.Request(f"{env['PREFECT_API_URL']}{path}", data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def runs_by_stage(env: dict[str, str], config: Path) -> dict[str, list[dict]]:
    """The flow runs whose `config` parameter is this file, by deployment name."""
    names = {d["id"]: d["name"] for d in api_post(env, "/deployments/filter", {})}
    runs: dict[str, list[dict]] = {}
    for run in api_post(env, "/flow_runs/filter", {"limit": 200}):
        if (run.get("parameters") or {}).get("config") == str(config):
            runs.setdefault(names.get(run["deployment_id"], "-"), []).append(run)
    return runs


def test_a_stage_run_alone_chains_to_score_and_the_nightly_starts_each_stage_once(
        prefect_env: dict[str, str], tmp_path: Path, sample_config: dict) -> None:
    """ingest run alone -> curate -> tokenize -> score by the deployments' triggers on the lake's events; a nightly
    run beside it (its stage runs say chain: false) starts each of its stages once and nothing else. Both lakes
    score with a small labelled model, so no training is needed."""
    from tests.helpers import build_tiny_model, demo_frame

    model = build_tiny_model(tmp_path / "labelled", demo_frame()["text"].head(2000).to_list(),
                             labels=["negative", "neutral", "positive"])
    configs = {}
    for name in ("chain", "nightly"):
        configs[name] = tmp_path / f"{name}.yaml"
        configs[name].write_text(yaml.safe_dump(sample_config | {"data_root": str(tmp_path / f"lake-{name}"),
                                                                 "score": {"model": str(model)}}))
    started = [prefect(prefect_env, "deployment", "run", "bert-ingest/ingest", "--params",
                       json.dumps({"config": str(configs["chain"])})),
               prefect(prefect_env, "deployment", "run", "bert-nightly/nightly", "--params",
                       json.dumps({"config": str(configs["nightly"]),
                                   "stages": ["ingest", "curate", "tokenize", "score"]}))]
    assert all(s.returncode == 0 for s in started), [s.stdout[-2000:] + s.stderr[-2000:] for s in started]

    def finished(runs: list[dict]) -> bool:
        return bool(runs) and all(r["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") for r in runs)

    deadline, chain, nightly = time.monotonic() + 420, {}, {}
    while time.monotonic() < deadline:
        chain, nightly = runs_by_stage(prefect_env, configs["chain"]), runs_by_stage(prefect_env, configs["nightly"])
        if finished(chain.get("score", [])) and finished(nightly.get("nightly", [])):
            break
        time.sleep(2)
    time.sleep(6)  # a trigger fires within about 3 s of an event: anything started twice would show up by now
    chain, nightly = runs_by_stage(prefect_env, configs["chain"]), runs_by_stage(prefect_env, configs["nightly"])
    worker_log = Path(prefect_env["PREFECT_HOME"], "worker.log")
    states = {name: {stage: [r["state_name"] for r in runs] for stage, runs in got.items()}
              for name, got in (("chain", chain), ("nightly", nightly))}
    assert states["chain"] == {stage: ["Completed"] for stage in ("ingest", "curate", "tokenize", "score")}, (
        states, worker_log.read_text()[-4000:])
    assert all(run["created_by"]["type"] == "AUTOMATION" for s in ("curate", "tokenize", "score") for run in chain[s])
    assert states["nightly"] == {stage: ["Completed"] for stage in ("nightly", "ingest", "curate", "tokenize", "score")}
    assert all(run["parent_task_run_id"] for s in ("ingest", "curate", "tokenize", "score") for run in nightly[s])
    for name in ("chain", "nightly"):
        lake, run_date = Lake(str(tmp_path / f"lake-{name}")), sample_config["run_date"]
        scored = read_partition(lake, "predictions", run_date)
        assert scored.height == lake.read_manifest("curated", run_date)["counts"]["curated_rows"] > 250
        report = Path(lake.root, "reports", f"run_date={run_date}", "report.md").read_text()  # the chain's: by score
        assert f"## Scores\n\n{scored.height} rows scored with" in report, (name, report[:2000])
