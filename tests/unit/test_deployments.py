"""deployments/: prefect.yaml names every flow and the Kubernetes GPU job template is self-consistent."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

DEPLOYMENTS = Path(__file__).resolve().parents[2] / "deployments"


def test_every_flow_has_a_deployment_and_gpu_stages_run_one_at_a_time() -> None:
    spec = yaml.safe_load((DEPLOYMENTS / "prefect.yaml").read_text())
    by_name = {d["name"]: d for d in spec["deployments"]}
    assert set(by_name) == {"nightly", "ingest", "curate", "tokenize", "train", "score"}
    for name, deployment in by_name.items():
        module, _, function = deployment["entrypoint"].partition(":")
        assert function in (DEPLOYMENTS.parent / module).read_text(), name
        assert deployment["parameters"] == {"config": "configs/demo.yaml", "overrides": {}}
    for gpu_stage in ("train", "score"):
        assert by_name[gpu_stage]["work_pool"]["name"] == "gpu"
        assert by_name[gpu_stage]["concurrency_limit"]["limit"] == 1
    (schedule,) = by_name["nightly"]["schedules"]
    assert schedule["cron"] == "0 2 * * *" and schedule["timezone"] == "{{ $BERT_PIPELINE_TIMEZONE }}"


def test_kubernetes_job_template_defines_every_variable_it_uses() -> None:
    template = json.loads((DEPLOYMENTS / "kubernetes" / "gpu-base-job-template.json").read_text())
    used = set(re.findall(r"\{\{ (\w+) \}\}", json.dumps(template["job_configuration"])))
    assert used <= set(template["variables"]["properties"])
    container = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "{{ gpus }}"
