"""Resume on the real cluster (issue 25, item 1): a workflow whose client is killed after about half
its tasks is resumed; no finished task runs again and every record is there once.

Why on the cluster: the first run is a real client killed with SIGKILL (its job is lost, its Pods
reaped), and the resumed job reads the first one's task status and records from the store.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pymongo
import pytest

from levrt._clients.store import JOB_RECORDS, TASKS, journal_database
from tests.e2e.conftest import BUSYBOX, REPO, levrt_cli

pytestmark = pytest.mark.cluster

TASK_COUNT = 10
FLOW = """\
import os

import levrt
from levrt import Cr, lev


@levrt.remote
def step(i):
    import time
    time.sleep(1)
    lev.set(i=i)


async def main(n: int):
    for i in range(n):
        await Cr(os.environ["LEVRT_EXAMPLE_IMAGE"], "SCHEMA", entry=step(i))
"""


def test_a_killed_workflow_resumed_runs_only_what_had_not_succeeded(cli_env: dict[str, str], tmp_path: Path) -> None:
    schema = f"test/resume-{uuid.uuid4().hex[:6]}@1.0"
    flow = tmp_path / "steps.py"
    flow.write_text(FLOW.replace("SCHEMA", schema))
    env = dict(cli_env, LEVRT_EXAMPLE_IMAGE=BUSYBOX)
    first = subprocess.Popen([sys.executable, "-m", "levrt", "run", f"{flow}:main", str(TASK_COUNT), "--no-progress"],
                             cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    with first, pymongo.MongoClient(cli_env["LEVRT_STORE_URI"]) as client:
        tasks, jobs = client[journal_database("levrt")][TASKS], client[journal_database("levrt")][JOB_RECORDS]
        records = client["levrt"][schema]
        assert first.stderr is not None
        try:
            job = next(int(m.group(1)) for line in first.stderr if (m := re.match(r"^job: (\d+)$", line)))
            deadline = time.monotonic() + 240
            # Half of its tasks ended as the client saw them (their status records), then the client dies.
            while tasks.count_documents({"job": job, "state": "succeeded"}) < TASK_COUNT // 2:
                assert first.poll() is None and time.monotonic() < deadline, "the first run ended or stalled"
                time.sleep(0.2)
        finally:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
        succeeded = tasks.count_documents({"job": job, "state": "succeeded"})
        assert TASK_COUNT // 2 <= succeeded < TASK_COUNT, succeeded

        start = time.monotonic()
        resumed = levrt_cli(cli_env, "run", f"{flow}:main", str(TASK_COUNT), "--resume", str(job), "--no-progress")
        took = time.monotonic() - start
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        again = int(re.search(r"^job: (\d+)$", resumed.stderr, re.M).group(1))  # type: ignore[union-attr]
        states = [d["state"] for d in tasks.find({"job": again})]
        assert states.count("cached") == succeeded and states.count("succeeded") == TASK_COUNT - succeeded, states
        mine = sorted(d["i"] for d in records.find({"_id.job": again}))
        assert mine == list(range(TASK_COUNT))  # every record of the resumed job, once
        record = jobs.find_one({"_id": again})
        assert record is not None and record["what"]["resume"] == job
        assert record["tasks"] == {"cached": succeeded, "done": TASK_COUNT - succeeded}
    print(f"\nresumed job {again}: {succeeded} tasks taken from job {job}, {TASK_COUNT - succeeded} run, "
          f"in {took:.1f} s")
