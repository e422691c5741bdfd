"""Task ends reported by the runtime through the store, on the real cluster.

Why: the engine ends a task on its runtime's report (``levrt.endreports``) when that comes before the
kubelet's relist, and archives the output the report carries instead of reading the log from the
apiserver. With real Pods, the real runtime and the chart's store: the task's output, its child
process's included, is archived whole without a log read; a failure still ends through its Pod with
its traceback; an entry that stores nothing ends as before; and a report forged by another task (the
task database is writable by every task) does not end the task it names.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

import levrt
from levrt import Cr, TaskFailed, lev
from levrt._clients import pods
from levrt.endreports import COLLECTION
from tests.e2e.conftest import BUSYBOX
from tests.e2e.test_warm_pods import sleeps

pytestmark = pytest.mark.cluster

SCHEMA = "test/reports@1.0"


@levrt.remote
def chatty(n: int) -> None:
    import subprocess
    import sys

    print("line from the entry", n, flush=True)
    print("to stderr", file=sys.stderr, flush=True)
    subprocess.run(["sh", "-c", "echo from a child process"], check=True)
    lev.set(n=n)


@levrt.remote
def quiet() -> None:
    print("nothing stored")


@levrt.remote
def fails() -> None:
    lev.set(began=True)
    print("probing the target")
    raise RuntimeError("target unreachable")


@levrt.remote
def forge(job: int, task: int) -> None:
    import os

    from pymongo import MongoClient

    client = MongoClient(os.environ["LEVRT_STORE_URI"], serverSelectionTimeoutMS=5000)
    doc = {"_id": f"lev-j{job}-t{task}", "job": job, "task": task, "exit": 0, "log": "forged\n", "logBytes": 7,
           "mac": "0" * 64}
    client[os.environ["LEVRT_DB"]]["levrt_ends"].insert_one(doc)
    lev.set(forged=True)


@pytest.fixture
def log_reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every log read the engine makes of the apiserver, as (Pod, container)."""
    reads: list[tuple[str, str]] = []
    real = pods.logs

    async def counted(kube: Any, namespace: str, name: str, **kwargs: Any) -> str:
        reads.append((name, str(kwargs.get("container"))))
        return await real(kube, namespace, name, **kwargs)

    monkeypatch.setattr(pods, "logs", counted)
    return reads


async def test_a_task_ends_on_its_report_with_its_whole_output_archived_without_a_log_read(
        job: Any, log_reads: list[tuple[str, str]]) -> None:
    tasks = [Cr(BUSYBOX, SCHEMA, entry=chatty(i)).start() for i in range(3)]
    docs = [await (await task).done() for task in tasks]
    assert [(await doc.get())["n"] for doc in docs] == [0, 1, 2]
    await job.log_archive.close()
    for i, doc in enumerate(docs):
        task_id = doc.filter["_id"]["task"]
        archived = await job.store.get_logs(job.job_id, task_id)
        assert archived is not None
        text = archived["containers"]["main"]["text"]
        assert f"line from the entry {i}" in text and "to stderr" in text and "from a child process" in text
        status = await job.store.collection("levrt_tasks").find_one({"_id": f"{job.job_id}.{task_id}"})
        assert status is not None and status["state"] == "succeeded" and status["exitCode"] == 0
    assert [read for read in log_reads if read[1] == "main"] == []
    assert [doc async for doc in job.store.collection(COLLECTION).find({"job": job.job_id})] == []


async def test_an_entry_that_stores_nothing_ends_through_its_pod(job: Any, log_reads: list[tuple[str, str]]) -> None:
    task = await Cr(BUSYBOX, SCHEMA, entry=quiet()).start()
    await task.done()
    await job.log_archive.close()
    assert (task.pod, "main") in log_reads
    archived = await job.store.get_logs(job.job_id, task.task_id)
    assert "nothing stored" in archived["containers"]["main"]["text"]


async def test_a_failure_ends_through_its_pod_with_its_traceback_and_the_reported_output(
        job: Any, log_reads: list[tuple[str, str]]) -> None:
    task = await Cr(BUSYBOX, SCHEMA, entry=fails()).start()
    with pytest.raises(TaskFailed) as failed:
        await task.done()
    assert failed.value.exit_code == 1
    assert "RuntimeError: target unreachable" in failed.value.logs
    await job.log_archive.close()
    archived = await job.store.get_logs(job.job_id, task.task_id)
    text = archived["containers"]["main"]["text"]
    assert text.startswith("probing the target") and text.rstrip().endswith("RuntimeError: target unreachable")


async def test_a_report_forged_by_another_task_does_not_end_the_task(job: Any,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="lev")
    target = await Cr(BUSYBOX, SCHEMA, entry=sleeps(6)).start()
    forger = await Cr(BUSYBOX, SCHEMA, entry=forge(job.job_id, target.task_id)).start()
    assert (await (await forger.done()).get())["forged"] is True
    record = await (await target.done()).get()
    assert record["finished"] is True  # it ran to its end: the forged report ended nothing
    assert f"the end report of {target.pod} (job {job.job_id}) is not signed" in caplog.text
