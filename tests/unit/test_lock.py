"""stage_lock: one writer per (stage, run_date); the second is refused with a message, a dead holder is taken over."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bert_pipeline.errors import LakeStateError
from bert_pipeline.lake.manifests import lock_url, stage_lock

HOLD = """
import sys, time
from bert_pipeline.lake.manifests import stage_lock
try:
    with stage_lock(sys.argv[1], "score", "2026-11-27"):
        print("HELD", flush=True)
        time.sleep(3)
    print("DONE")
except Exception as exc:
    print("REFUSED", exc)
"""


def test_a_second_writer_is_refused_while_the_first_holds_the_lock(tmp_path: Path) -> None:
    with stage_lock(str(tmp_path), "score", "2026-11-27") as owner:
        with pytest.raises(LakeStateError, match=rf"score for run_date=2026-11-27 is already running \(pid {owner['pid']}"):
            with stage_lock(str(tmp_path), "score", "2026-11-27"):
                pass
        with stage_lock(str(tmp_path), "curate", "2026-11-27"):  # other stages and dates are independent
            pass
    assert not Path(lock_url(str(tmp_path), "score", "2026-11-27")).exists()
    with stage_lock(str(tmp_path), "score", "2026-11-27"):  # free again
        pass


def test_two_processes_started_together_one_runs_one_is_refused(tmp_path: Path) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = sorted(p.communicate(timeout=60)[0] for p in procs)
    assert ["HELD" in o and "DONE" in o for o in outputs].count(True) == 1, outputs
    assert ["REFUSED" in o and "already running" in o for o in outputs].count(True) == 1, outputs


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    url = Path(lock_url(str(tmp_path), "train", "2026-11-27"))
    url.parent.mkdir(parents=True)
    import socket
    import time

    url.write_text(json.dumps({"token": "x", "pid": int(dead.stdout), "host": socket.gethostname(),
                               "since_epoch": time.time(), "since": "earlier"}))
    with stage_lock(str(tmp_path), "train", "2026-11-27") as owner:
        assert json.loads(url.read_text())["token"] == owner["token"]


def test_lock_names_are_validated(tmp_path: Path) -> None:
    with pytest.raises(LakeStateError, match="not a safe path component"):
        with stage_lock(str(tmp_path), "score", "../../etc"):
            pass
