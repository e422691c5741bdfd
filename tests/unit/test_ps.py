"""``levrt ps --job N``: a job's tasks from the store's status records, merged with the Pods that
are still there, like ``kubectl get``. (``levrt ps`` without ``--job`` lists jobs: test_ps_jobs.py.)

Why from the store: a job deletes each task's Pod as the task ends, so a listing of Pods said
"No levrt tasks" for a job that had just run a thousand of them (issue 13). The records stay.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Mapping
from typing import Any

import pytest

from levrt import Cr
from levrt._cli import main
from levrt._cli.ps import ps_rows, ps_table
from levrt._clients.lease import lease_object
from levrt._clients.store import TASKS
from levrt._shapes.build import build_task
from levrt.settings import Settings
from tests import fakes
from tests.fakes import FakeApiServer, FakeMongo

NOW = time.time()


def matches_with_operators(doc: Mapping[str, Any], query: Mapping[str, Any]) -> bool:
    """The fake store's matching, plus the two operators ``levrt ps`` sends (``$gte``, ``$in``)."""
    for key, want in query.items():
        if isinstance(want, Mapping) and set(want) <= {"$gte", "$in"} and want:
            value = fakes.get_path(doc, key)
            if "$in" in want and value not in want["$in"]:
                return False
            if "$gte" in want and (value is None or not value >= want["$gte"]):
                return False
        elif not plain_matches(doc, {key: want}):
            return False
    return True


plain_matches = fakes.matches


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in os.environ if v.startswith("LEVRT_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("LEVRT_STORE_URI", "mongodb://127.0.0.1:30017/")
    monkeypatch.setattr(fakes, "matches", matches_with_operators)


def task_pod(job: int, task: int, *, namespace: str = "levrt", attempt: int = 0) -> dict[str, Any]:
    cr = Cr("busybox:1.36")
    return build_task(cr, job=job, task=task, collection="default", settings=Settings(namespace=namespace),
                      attempt=attempt).pod


def record(job: int, task: int, state: str, *, age: float, took: float = 2.0, **fields: Any) -> dict[str, Any]:
    """A status record as the engine leaves it (``levrt._core.records``), submitted ``age`` seconds ago."""
    ended = NOW - age + took
    return {"_id": f"{job}.{task}", "job": job, "task": task, "state": state, "pod": f"lev-j{job}-t{task}",
            "image": "busybox:1.36", "collection": "default", "submitted": NOW - age,
            "updated": dt.datetime.fromtimestamp(ended, dt.UTC), "name": f"tcpscan.scan(10.0.0.{task}, 1-1024)",
            "maxRetries": 0, **fields}


def put_records(mongo: FakeMongo, *records: dict[str, Any]) -> None:
    mongo["levrt_journal"][TASKS].docs.extend(records)


def out_err(capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    captured = capsys.readouterr()
    return captured.out, captured.err


# -- the rows (pure) ---------------------------------------------------------------------------------


def test_records_and_live_pods_merge_into_one_row_per_task() -> None:
    live = task_pod(3, 1)
    live["status"] = {"phase": "Running", "podIP": "10.244.0.9",
                      "containerStatuses": [{"name": "main", "state": {"running": {}}}]}
    orchestrator = task_pod(3, 0)
    orchestrator["metadata"]["name"] = "lev-orch-3-abc"
    orchestrator["metadata"]["labels"].pop("levrt.io/task", None)
    records = [
        record(3, 1, "running", age=30, host="10.244.0.9"),
        record(3, 0, "succeeded", age=40, exitCode=0),
        record(3, 2, "failed", age=35, reason="Error", exitCode=3),
        record(3, 3, "retrying", age=20, retries=1, maxRetries=2, retryReason="PodDeleted: gone"),
    ]
    rows = ps_rows(records, [live, orchestrator], running_jobs={3}, now=NOW)
    assert [(r["task"], r["state"]) for r in rows] == [
        ("3.0", "done"), ("3.1", "running"), ("3.2", "failed(Error)"), ("3.3", "retrying"), ("3.?", "pending"),
    ]
    assert rows[0]["elapsed"] == 2.0 and rows[1]["elapsed"] == 30.0  # ended: until its end; running: until now
    assert rows[4]["name"] == "lev-orch-3-abc"  # a Pod without a record is named by the Pod
    cells, header = ps_table(rows, wide=False, now=NOW)
    assert header == ["TASK", "NAME", "STATE", "RETRIES", "ELAPSED", "AGE"]
    assert cells[3] == ["3.3", "tcpscan.scan(10.0.0.3, 1-1024)", "retrying", "1/2", "20.0s", "20s"]
    wide, header = ps_table(rows, wide=True, now=NOW)
    assert header[6:] == ["POD", "IMAGE", "HOST", "NODE", "REASON"]
    assert wide[2][6:] == ["lev-j3-t2", "busybox:1.36", "-", "-", "Error"]


def test_a_task_whose_job_is_gone_without_its_end_recorded_is_lost() -> None:
    rows = ps_rows([record(5, 0, "running", age=600)], [], running_jobs=set(), now=NOW)
    assert rows[0]["state"] == "lost"
    rows = ps_rows([record(5, 0, "submitting", age=6)], [], running_jobs={5}, now=NOW)
    assert rows[0]["state"] == "pending"


# -- the command -------------------------------------------------------------------------------------


def test_ps_lists_a_jobs_tasks_after_its_pods_are_gone(api: FakeApiServer, mongo: FakeMongo,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    put_records(mongo, *(record(8, t, "succeeded", age=100) for t in range(3)), record(8, 3, "failed", age=90,
                reason="Error"))
    assert main(["ps", "--job", "8"]) == 0
    out, err = out_err(capsys)
    lines = out.splitlines()
    assert lines[0].split() == ["TASK", "NAME", "STATE", "RETRIES", "ELAPSED", "AGE"] and err == ""
    assert [line.split()[0] for line in lines[1:]] == ["8.0", "8.1", "8.2", "8.3"]
    assert "tcpscan.scan(10.0.0.3," in lines[4] and "failed(Error)" in lines[4]


def test_ps_job_json_judges_a_running_task_by_its_jobs_lease(api: FakeApiServer, mongo: FakeMongo,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    put_records(mongo, record(3, 0, "running", age=3600 * 3, took=0), record(3, 1, "succeeded", age=120))
    # Job 3's client still renews its Lease (renewed now, not at import: the fast tier may reach this
    # test minutes later); its record was last updated hours ago.
    api.put(lease_object(3, namespace="levrt", duration=30, holder="laptop/1", now=time.time()))
    assert main(["ps", "--job", "3", "-o", "json"]) == 0
    rows = json.loads(out_err(capsys)[0])
    assert [r["task"] for r in rows] == ["3.0", "3.1"]
    assert rows[0]["state"] == "running"  # no Pod to ask: the record says running, and its job runs
    assert rows[0]["submitted"].endswith("+00:00")


def test_ps_shows_live_pods_over_records_in_another_namespace(api: FakeApiServer, mongo: FakeMongo,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    api.put(task_pod(4, 0, namespace="scans"), namespace="scans")
    api.put(task_pod(4, 1, namespace="scans", attempt=2), namespace="scans")
    api.set_running("lev-j4-t0", namespace="scans", ip="10.244.0.7")
    api.set_terminated("lev-j4-t0", 137, reason="OOMKilled", namespace="scans")
    put_records(mongo, record(4, 0, "running", age=10))
    assert main(["ps", "-o", "wide", "--job", "4", "-n", "scans"]) == 0
    lines = out_err(capsys)[0].splitlines()
    assert [line.split()[:3] for line in lines[1:]] == [["4.0", "tcpscan.scan(10.0.0.0,", "1-1024)"],
                                                        ["4.1", "lev-j4-t1-r2", "pending"]]
    assert "failed(OOMKilled)" in lines[1] and "10.244.0.7" in lines[1] and "lev-j4-t0" in lines[1]
    assert lines[2].split()[3] == "2"  # the retry's attempt, from its Pod's label


def test_ps_without_tasks_says_so_on_stderr(api: FakeApiServer, mongo: FakeMongo,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    put_records(mongo, record(1, 0, "succeeded", age=3600 * 5))
    assert main(["ps", "--job", "9"]) == 0
    assert out_err(capsys) == ("", "No levrt tasks in job 9.\n")

