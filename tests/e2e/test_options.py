"""Per-task run options on the real cluster (issue 11, part 2).

Why end to end: each option is only as good as what the kubelet and the runtime make of it. A
timed-out entry must really be interrupted (and, if it will not stop, ended) with its partial
record kept; a Pod deleted under a running task must really come back as a new Pod writing the
same record; an added capability must really be in the container's effective set; a node
selector nothing matches must fail clearly; resources and tolerations must reach the Pod.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

import levrt
from levrt import Cr, lev
from levrt._shapes.names import ATTEMPT_LABEL, api_path
from levrt.document import Document
from levrt.errors import TaskFailed
from levrt.runtime.timeout import TIMEOUT_GRACE
from tests.e2e.conftest import BUSYBOX

pytestmark = pytest.mark.cluster

NET_ADMIN_BIT = 12  # CAP_NET_ADMIN in capability.h


def schema() -> str:
    """A collection of this test run's own, so "one record" can be counted."""
    return f"test/options-{uuid.uuid4().hex[:8]}@1.0"


# -- (a), (b): timeout ---------------------------------------------------------------------------------


@levrt.remote
def scan_until_interrupted() -> None:
    import time as _time

    done = 0
    try:
        while True:
            done += 1
            lev.set(progress=done)
            _time.sleep(0.2)
    except KeyboardInterrupt:
        lev.set(partial=True, stopped_at=done)


@levrt.remote
def scan_ignoring_interrupts() -> None:
    import time as _time

    done = 0
    while True:
        try:
            done += 1
            lev.set(progress=done)
            _time.sleep(0.2)
        except KeyboardInterrupt:
            lev.set(ignored_interrupt=True)


async def test_a_timed_out_scan_returns_its_partial_record(job: Any) -> None:
    started = time.monotonic()
    task = await Cr(BUSYBOX, schema(), entry=scan_until_interrupted(), timeout=3).start()
    doc = await task
    took = time.monotonic() - started
    assert task.timed_out and doc.timed_out
    record = await doc.get()
    assert record is not None and record["partial"] is True and record["progress"] >= 2
    assert record["stopped_at"] == record["progress"]
    assert took < 3 + TIMEOUT_GRACE + 30  # the interrupt, not the kubelet's backstop, ended it
    # The status record (written in batches, off the hot path) says so too.
    deadline = time.monotonic() + 10
    while True:
        status = await job.store.collection("levrt_tasks").find_one({"_id": f"{job.job_id}.{task.task_id}"})
        if (status or {}).get("state") == "timed-out" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert status is not None and status["state"] == "timed-out"


async def test_an_entry_that_ignores_the_interrupt_is_ended_after_the_grace(job: Any) -> None:
    started = time.monotonic()
    task = await Cr(BUSYBOX, schema(), entry=scan_ignoring_interrupts(), timeout=2).start()
    doc = await task
    took = time.monotonic() - started
    assert task.timed_out
    record = await doc.get()
    assert record is not None and record["ignored_interrupt"] is True and record["progress"] >= 2
    assert 2 + TIMEOUT_GRACE <= took < 2 + TIMEOUT_GRACE + 30


# -- (c): retries ---------------------------------------------------------------------------------------


@levrt.remote
def resumable() -> None:
    import time as _time

    runs = (lev.doc.get() or {}).get("runs", 0) + 1
    lev.set(runs=runs)
    if runs == 1:
        _time.sleep(600)  # the first Pod runs until someone deletes it
    lev.set(done=True)


async def delete_when_running(job: Any, task: Any) -> None:
    """Wait until the entry has written its first run, then delete its Pod as "someone else" would
    (``kubectl delete pod``: graceful, through the API, not through the engine)."""
    doc = Document(job.store.collection(task.collection), {"_id": {"job": task.job_id, "task": task.task_id}})
    deadline = time.monotonic() + 60
    while ((await doc.get()) or {}).get("runs") != 1:
        assert time.monotonic() < deadline, "the entry never started"
        await asyncio.sleep(0.2)
    await job.kube.request("DELETE", api_path("pods", namespace=job.settings.namespace, name=task.pod))


async def test_a_pod_deleted_under_a_running_task_is_retried_and_the_job_succeeds(job: Any) -> None:
    collection = schema()
    task = await Cr(BUSYBOX, collection, entry=resumable(), retries=1).start()
    first = task.pod
    ending = asyncio.create_task(task.done())
    await delete_when_running(job, task)
    doc = await asyncio.wait_for(ending, 180)
    assert task.retries == 1 and task.pod == f"{first}-r1" and not task.timed_out
    assert await doc.get() == {"runs": 2, "done": True}  # the same record, written by both Pods
    records = [r async for r in doc.coll.find({"_id.job": job.job_id})]
    assert len(records) == 1


async def test_without_retries_a_deleted_pod_fails_the_task(job: Any) -> None:
    task = await Cr(BUSYBOX, schema(), entry=resumable()).start()
    ending = asyncio.create_task(task.done())
    await delete_when_running(job, task)
    with pytest.raises(TaskFailed) as caught:
        await asyncio.wait_for(ending, 180)
    assert caught.value.reason == "PodDeleted" and "deleted by someone else" in str(caught.value)
    assert task.retries == 0


# -- (d): capabilities ----------------------------------------------------------------------------------


@levrt.remote
def effective_capabilities() -> None:
    for line in open("/proc/self/status"):
        if line.startswith("CapEff:"):
            lev.set(cap_eff=int(line.split()[1], 16))


async def test_an_added_capability_is_in_the_effective_set(job: Any) -> None:
    with_cap, without = await asyncio.gather(
        Cr(BUSYBOX, schema(), entry=effective_capabilities(), capabilities=["NET_ADMIN"]),
        Cr(BUSYBOX, schema(), entry=effective_capabilities()),
    )
    assert (await with_cap.get() or {})["cap_eff"] >> NET_ADMIN_BIT & 1 == 1
    assert (await without.get() or {})["cap_eff"] >> NET_ADMIN_BIT & 1 == 0


# -- (e): placement and resources -----------------------------------------------------------------------


@pytest.fixture
async def quick_job(kube_cluster: Any, levrt_settings: Any) -> AsyncIterator[Any]:
    """A job that gives up on an unschedulable Pod after 5 s instead of the default 120 s."""
    from levrt.run import session

    async with session(settings=levrt_settings.replace(schedule_timeout=5.0),
                       kubeconfig=kube_cluster.kubeconfig) as engine:
        yield engine


async def test_a_node_selector_nothing_matches_fails_clearly(quick_job: Any) -> None:
    cr = Cr(BUSYBOX, cmd=["true"], node_selector={"levrt.io/test-no-such-node": "true"})
    with pytest.raises(TaskFailed) as caught:
        await asyncio.wait_for(cr.start(), 120)
    assert caught.value.reason == "Unschedulable"
    assert "node selector" in str(caught.value) or "node affinity" in str(caught.value), str(caught.value)


@levrt.remote
def hold(seconds: float) -> None:
    import time as _time

    _time.sleep(seconds)


async def test_resources_tolerations_and_node_selector_reach_the_pod(job: Any) -> None:
    toleration = {"key": "levrt.io/test-dedicated", "operator": "Exists", "effect": "NoSchedule"}
    cr = Cr(BUSYBOX, entry=hold(30), retries=1,
            resources={"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "256Mi"}},
            node_selector={"kubernetes.io/os": "linux"}, tolerations=[toleration])
    task = await cr.start()
    try:
        pod = await job.kube.request("GET", api_path("pods", namespace=job.settings.namespace, name=task.pod))
        main = next(c for c in pod["spec"]["containers"] if c["name"] == "main")
        assert main["resources"] == {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "256Mi"}}
        assert toleration in pod["spec"]["tolerations"]
        assert pod["spec"]["nodeSelector"]["kubernetes.io/os"] == "linux"
        assert ATTEMPT_LABEL not in pod["metadata"]["labels"]
    finally:
        await task.signal("SIGINT")
        await task
