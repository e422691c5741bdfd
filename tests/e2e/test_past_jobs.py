"""``levrt.job(N)`` on the real cluster: a job run by ``levrt run`` is opened afterwards from a
second process, with its record, tasks, records per schema (each saying which task wrote it) and
a failed task's archived traceback after its Pod is gone (issue 22, item 7).

Why on the cluster: every part read here was written by the real parts — the job record by the
client, the status records by the engine, the records by ``lev.set`` in task containers on the
real store (FerretDB: its query operators, not the fake's), the archive from the real ``pods/log``
— and the Pods are really gone when it is read.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import levrt
from levrt.settings import Settings
from tests.e2e.conftest import BUSYBOX

REPO = Path(__file__).resolve().parents[2]
FLOW = """\
import os

import levrt
from levrt import Concurrent, Cr, lev

IMAGE = os.environ["LEVRT_EXAMPLE_IMAGE"]


@levrt.remote
def scan(port):
    levrt.lev.set(port=port, open=port != 23)


@levrt.remote
def broken():
    print("checking the banner")
    raise RuntimeError("banner grab refused")


async def sweep(first: int = 21):
    async with Concurrent() as c:
        for port in range(first, first + 3):
            c.start(Cr(IMAGE, "ts/ports@1.0", entry=scan(port)))
    with lev / "edge":
        await Cr(IMAGE, "ts/ports@1.0", entry=scan(80))
    try:
        await Cr(IMAGE, entry=broken())
    except levrt.TaskFailed:
        pass
    return {"swept": 4}
"""


def test_a_finished_job_is_opened_from_its_records(cli_env: dict[str, str], tmp_path: Path) -> None:
    flow = tmp_path / "past.py"
    flow.write_text(FLOW)
    env = dict(cli_env, LEVRT_EXAMPLE_IMAGE=BUSYBOX)
    run = subprocess.run([sys.executable, "-m", "levrt", "run", f"{flow}:sweep", "first=21", "--no-progress"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    job_id = int(re.search(r"^job: (\d+)$", run.stderr, re.M).group(1))  # type: ignore[union-attr]
    settings = Settings.from_env(env)

    async def read() -> dict[str, Any]:
        async with levrt.job(job_id, settings=settings, kubeconfig=env["KUBECONFIG"]) as job:
            seen: dict[str, Any] = {
                "head": (job.id, job.state, job.where, job.what, job.task_counts, job.error),
                "owner": job.owner, "value": await job.value(),
                "tasks": [(t["task"], t["state"]) for t in await job.tasks()],
                "schemas": await job.schemas(),
            }
            docs = await job.documents("ts/ports@1.0")
            seen["docs"] = [(d.task_id, await d.get()) for d in docs]
            seen["edge"] = [(d.task_id, await d.get()) for d in await job.documents("ts/ports@1.0", ns="edge")]
            seen["open"] = [(rec.task, rec["port"]) async for rec in docs[0].all({"open": True}, ["port"])]
            seen["log"] = await job.logs(4)
        async with levrt.job(settings=settings, kubeconfig=env["KUBECONFIG"]) as latest:
            seen["latest"] = (latest.id, latest.owner)
        with pytest.raises(levrt.RecordNotFound, match="no record of job 999999999"):
            await levrt.job(999999999, settings=settings, kubeconfig=env["KUBECONFIG"])
        return seen

    seen = asyncio.run(read())
    assert seen["head"] == (job_id, "succeeded", "laptop", f"{flow}:sweep first=21",
                            {"done": 4, "failed": 1}, None)
    assert seen["owner"] not in ("", "unknown") and seen["latest"] == (job_id, seen["owner"])
    assert seen["value"] == {"swept": 4}
    assert seen["tasks"] == [(0, "succeeded"), (1, "succeeded"), (2, "succeeded"), (3, "succeeded"), (4, "failed")]
    assert seen["schemas"] == {"ts/ports@1.0": 3, "edge|ts/ports@1.0": 1}
    assert seen["docs"] == [(0, {"port": 21, "open": True}), (1, {"port": 22, "open": True}),
                            (2, {"port": 23, "open": False})]
    assert seen["edge"] == [(3, {"port": 80, "open": True})]
    assert seen["open"] == [(0, 21), (1, 22)]  # the store's own query, each record naming its task
    log = seen["log"]
    assert log.pod == f"lev-j{job_id}-t4" and log.cut is None
    assert "checking the banner" in log and "RuntimeError: banner grab refused" in log
    assert 'past.py", line 17, in broken' in log, log
