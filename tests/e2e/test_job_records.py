"""Job records on the real cluster (issue 22, items 1 and 3): ``levrt ps`` lists jobs after they ended.

Why: the unit tests write and read records against fakes; here a real ``levrt run`` records who
ran what and how it ended (the owner from the apiserver's SelfSubjectReview), and a detached run
that fails in its Pod before any task (its file's import fails there) is a failed job with its error,
where it used to leave no trace.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import BUSYBOX

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
FLOWS = """
import os

from levrt import Cr

if os.environ.get("FAIL_AT_IMPORT"):  # set with -e only in the orchestration Pod
    raise RuntimeError("this file cannot be imported in the Pod")


async def twice(word: str) -> dict:
    first = await Cr(os.environ["LEVRT_EXAMPLE_IMAGE"], cmd=["echo", word])
    second = await Cr(os.environ["LEVRT_EXAMPLE_IMAGE"], cmd=["echo", word])
    return {"tasks": [first.task_id, second.task_id]}
"""


def levrt(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "levrt", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def job_of(output: str) -> int:
    for line in output.splitlines():
        if line.startswith("job: "):
            return int(line.split()[1])
        if line.startswith("job ") and ": running detached" in line:
            return int(line.split()[1].rstrip(":"))
    raise AssertionError(f"no job id in {output[-2000:]}")


def jobs(env: dict[str, str]) -> list[dict[str, Any]]:
    listed = levrt(env, "ps", "-o", "json", "--all")
    assert listed.returncode == 0, listed.stderr[-3000:]
    return list(json.loads(listed.stdout))


def test_a_run_is_listed_by_ps_with_its_owner_what_state_and_tasks(cli_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "flows.py").write_text(FLOWS)
    env = dict(cli_env, LEVRT_EXAMPLE_IMAGE=BUSYBOX)
    run = levrt(env, "run", "--no-progress", f"{tmp_path / 'flows.py'}:twice", "hello")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    job = job_of(run.stderr)
    (row,) = [r for r in jobs(env) if r["job"] == job]  # listed as your own: owner == your identity
    assert row["owner"] not in ("", "unknown") and row["where"] == "laptop"
    assert row["what"] == f"{tmp_path / 'flows.py'}:twice hello"
    assert (row["state"], row["tasks"], row["error"]) == ("succeeded", {"done": 2}, None)
    assert row["started"] and row["ended"]


def test_a_detached_run_that_fails_in_its_pod_is_a_failed_job(cli_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "flows.py").write_text(FLOWS)
    env = dict(cli_env, LEVRT_EXAMPLE_IMAGE=BUSYBOX)
    run = levrt(env, "run", "--no-progress", f"{tmp_path / 'flows.py'}:twice", "hello", "--detach",
                "-e", "FAIL_AT_IMPORT=1", "-e", f"LEVRT_EXAMPLE_IMAGE={BUSYBOX}")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    job = job_of(run.stdout)
    deadline = time.monotonic() + 120
    while True:
        found = [r for r in jobs(env) if r["job"] == job]
        if (found and found[0]["state"] != "running") or time.monotonic() > deadline:
            break
        time.sleep(2)
    (row,) = found
    assert (row["state"], row["where"], row["tasks"]) == ("failed", "detached", {})
    assert "this file cannot be imported in the Pod" in row["error"]
    # Listed without --all-users: the Pod's job is owned by this client's identity, not the Pod's account.
    assert row["owner"] not in ("", "unknown")
