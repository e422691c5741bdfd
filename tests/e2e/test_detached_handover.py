"""A detached job outlives its orchestration Pod (issue 25, item 2): the Pod is deleted at about half
of the job, Kubernetes makes the next one, and it takes the job over.

Why on the cluster: the replacement is the Job controller's doing, the Pod's SIGTERM comes from the
kubelet, and what the next Pod goes on with (the job's Lease, its task records, the task Pods the
first one left running) is read from the real apiserver and store. The proof that no task ran twice:
the job ends with exactly one task id per ``Cr`` (a task run again gets a new id, and a new record).
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pymongo
import pytest

from levrt._clients.store import JOB_RECORDS, TASKS, journal_database
from levrt._shapes.names import JOB_LABEL, ROLE_LABEL
from tests.e2e.conftest import BUSYBOX, levrt_cli
from tests.e2e.console_parts import kubectl

pytestmark = pytest.mark.cluster

TASK_COUNT = int(os.environ.get("LEVRT_HANDOVER_TASKS", "30"))
"""30 in CI; the README's figure is from LEVRT_HANDOVER_TASKS=200."""
FLOW = """\
import os

import levrt
from levrt import Concurrent, Cr, lev


@levrt.remote
def step(i):
    import time
    time.sleep(3)
    lev.set(i=i)


async def main(n: int):
    async with Concurrent(limit=8) as steps:
        for i in range(n):
            steps.start(Cr(os.environ["LEVRT_EXAMPLE_IMAGE"], "SCHEMA", entry=step(i)))
    return n
"""


def _orchestrators(kube_cluster: Any, job: int) -> list[dict[str, Any]]:
    found = json.loads(kubectl(kube_cluster, "get", "pods", "-o", "json", "-l",
                               f"{JOB_LABEL}={job},{ROLE_LABEL}=orchestrator"))["items"]
    return [p for p in found if not p["metadata"].get("deletionTimestamp")
            and p["status"].get("phase") not in ("Succeeded", "Failed")]


def test_a_detached_job_whose_pod_is_deleted_goes_on_in_the_next_pod_running_nothing_twice(
        cli_env: dict[str, str], kube_cluster: Any, tmp_path: Path) -> None:
    schema = f"test/handover-{uuid.uuid4().hex[:6]}@1.0"
    flow = tmp_path / "steps.py"
    flow.write_text(FLOW.replace("SCHEMA", schema))
    started = time.monotonic()
    run = levrt_cli(cli_env, "run", f"{flow}:main", str(TASK_COUNT), "--no-progress", "--detach",
                    "-e", f"LEVRT_EXAMPLE_IMAGE={BUSYBOX}")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    job = int(re.search(r"^job (\d+): running detached", run.stdout, re.M).group(1))  # type: ignore[union-attr]
    with pymongo.MongoClient(cli_env["LEVRT_STORE_URI"]) as client:
        tasks, jobs = client[journal_database("levrt")][TASKS], client[journal_database("levrt")][JOB_RECORDS]
        records = client["levrt"][schema]
        deadline = time.monotonic() + 600
        while tasks.count_documents({"job": job, "state": "succeeded"}) < TASK_COUNT // 2:
            assert time.monotonic() < deadline, "the detached job stalled before half of its tasks"
            time.sleep(0.5)
        (first,) = _orchestrators(kube_cluster, job)
        done_then = tasks.count_documents({"job": job, "state": "succeeded"})
        running_then = tasks.count_documents({"job": job, "state": {"$in": ["submitting", "running"]}})
        kubectl(kube_cluster, "delete", "pod", first["metadata"]["name"], "--wait=false")

        while (record := jobs.find_one({"_id": job})) is not None and record["state"] == "running":
            assert time.monotonic() < deadline, f"job {job} did not end: {record}"
            time.sleep(1)
        took = time.monotonic() - started
        assert record is not None
        assert record["state"] == "succeeded" and record["value"] == TASK_COUNT, record
        assert record.get("handovers") == 1, record
        states = {d["task"]: d["state"] for d in tasks.find({"job": job})}
        assert sorted(states) == list(range(TASK_COUNT)), states  # one task id per Cr: none run again
        assert set(states.values()) == {"succeeded"}, states
        assert sorted(d["i"] for d in records.find({"_id.job": job})) == list(range(TASK_COUNT))
        assert record["tasks"] == {"done": TASK_COUNT}, record
    first_exit = json.loads(kubectl(kube_cluster, "get", "pod", first["metadata"]["name"], "-o", "json",
                                    check=False) or "{}")
    print(f"\ndetached job {job}: {TASK_COUNT} tasks; its Pod deleted with {done_then} done and {running_then} "
          f"running; the next Pod went on; ended in {took:.1f} s with {TASK_COUNT} records, no task run twice"
          + (f" (first Pod's state: {first_exit['status'].get('phase')})" if first_exit else ""))
