"""The engine end to end against the fakes, with the Pod's life driven by the test: start waits
for the running main container, done() returns the Document or raises TaskFailed, and the Pod
is deleted either way."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from levrt import Cr, TaskFailed
from levrt._clients.kube import use_transport
from levrt._clients.store import use_client
from levrt._core import engine as engine_module
from levrt._core.engine import Engine
from levrt.run import session
from levrt.settings import Settings
from tests.fakes import FakeApiServer, FakeMongo, now_stamp

SETTINGS = Settings(store_uri="mongodb://127.0.0.1:30017/", runtime_image="levrt.local/runtime:t")
POD = "lev-j1-t0"


@pytest.fixture
def api() -> FakeApiServer:
    return FakeApiServer(namespaces=["levrt"])


@pytest.fixture
def mongo() -> FakeMongo:
    return FakeMongo()


@contextlib.asynccontextmanager
async def open_job(api: FakeApiServer, mongo: FakeMongo) -> AsyncIterator[Engine]:
    with use_transport(lambda: api), use_client(mongo.client):
        async with session(settings=SETTINGS) as engine:
            yield engine


def ungated(api: FakeApiServer, name: str) -> bool:
    pod = api.get("pods", name)
    return pod is not None and not pod["spec"].get("schedulingGates")


async def started(api: FakeApiServer, cr: Cr, *, ip: str = "10.244.0.9") -> asyncio.Task:  # type: ignore[type-arg]
    """Start ``cr``; once its Pod is ungated, the test's kubelet runs it."""
    starting = asyncio.create_task(cr.start())
    await api.until(lambda: ungated(api, POD))
    assert not starting.done()  # start() waits for the main container to run
    api.set_running(POD, ip=ip)
    return starting


async def test_a_task_runs_to_its_document_and_its_pod_is_deleted(api: FakeApiServer, mongo: FakeMongo) -> None:
    async with open_job(api, mongo) as engine:
        task = await (await started(api, Cr("busybox:1.36", "ts/echo@1.0")))
        assert (task.id, task.pod, task.host) == ("1.0", POD, "10.244.0.9")
        api.set_terminated(POD, 0)
        doc = await task.done()
        assert doc.filter == {"_id": {"job": 1, "task": 0}} and doc.coll.name == "ts/echo@1.0"
        assert await task.done() is doc  # a second await returns the same Document
        await api.until(lambda: api.get("pods", POD) is None, timeout=5)  # with the others that ended about then
        assert engine.job_id == 1
    record = mongo["levrt_journal"]["levrt_tasks"].docs[0]
    assert (record["state"], record["exitCode"], record["host"]) == ("succeeded", 0, "10.244.0.9")
    assert api.closed == 1 and mongo.clients[0].closed


async def test_a_task_never_awaited_is_recorded_deleted_when_the_job_ends(api: FakeApiServer,
                                                                         mongo: FakeMongo) -> None:
    async with open_job(api, mongo):
        await (await started(api, Cr("busybox:1.36")))  # started, left running
    assert api.get("pods", POD) is None
    record = mongo["levrt_journal"]["levrt_tasks"].docs[0]
    assert (record["state"], record["reason"]) == ("deleted", "the job ended before the task")


async def test_a_failed_task_raises_with_its_reason_logs_and_events(api: FakeApiServer, mongo: FakeMongo) -> None:
    async with open_job(api, mongo):
        task = await (await started(api, Cr("busybox:1.36")))
        api.logs[POD] = "starting\nboom: no such host\n"
        uid = api.get("pods", POD)["metadata"]["uid"]  # type: ignore[index]
        api.put({"kind": "Event", "metadata": {"name": f"{POD}.1"}, "involvedObject": {"name": POD, "uid": uid},
                 "type": "Warning", "reason": "BackOff", "message": "Back-off restarting"})
        # An older Pod of the same name (a job id reused after the store lost its counter): not quoted.
        api.put({"kind": "Event", "metadata": {"name": f"{POD}.0"}, "involvedObject": {"name": POD, "uid": "old"},
                 "type": "Warning", "reason": "FailedMount", "message": "an older Pod's trouble"})
        api.set_terminated(POD, 1)
        with pytest.raises(TaskFailed) as caught:
            await task.done()
        failed = caught.value
        assert (failed.exit_code, failed.reason, failed.task) == (1, "Error", task)
        assert "boom: no such host" in failed.logs
        assert "Task lev-j1-t0 failed: Error" in str(failed) and "Warning BackOff: Back-off restarting" in str(failed)
        assert "an older Pod's trouble" not in str(failed)
        with pytest.raises(TaskFailed):
            await task  # the same failure again, without waiting
        await api.until(lambda: api.get("pods", POD) is None, timeout=5)
    record = mongo["levrt_journal"]["levrt_tasks"].docs[0]
    assert (record["state"], record["exitCode"], record["reason"]) == ("failed", 1, "Error")


async def test_an_image_that_cannot_be_pulled_fails_start_and_deletes_the_pod(api: FakeApiServer,
                                                                              mongo: FakeMongo) -> None:
    async with open_job(api, mongo):
        starting = asyncio.create_task(Cr("busybox:nope").start())
        await api.until(lambda: ungated(api, POD))
        api.set_waiting(POD, "ErrImagePull", "pull access denied for busybox:nope")
        with pytest.raises(TaskFailed, match=r"ErrImagePull.*Check the image name and tag") as caught:
            await starting
        assert caught.value.reason == "ErrImagePull"
        assert api.get("pods", POD) is None


async def test_a_signalled_task_returns_its_document_even_with_a_non_zero_exit(api: FakeApiServer,
                                                                               mongo: FakeMongo) -> None:
    async with open_job(api, mongo):
        task = await (await started(api, Cr("busybox:1.36")))
        await task.signal("SIGTERM")
        assert api.exec_calls[0].command == ("kill", "-s", "TERM", "1")
        api.set_terminated(POD, 143)
        doc = await task.done()
        assert doc.task_id == 0


async def test_pods_of_a_job_that_raised_are_deleted(api: FakeApiServer, mongo: FakeMongo) -> None:
    with pytest.raises(RuntimeError, match="orchestration bug"):
        async with open_job(api, mongo):
            await (await started(api, Cr("busybox:1.36")))
            raise RuntimeError("orchestration bug")
    assert api.names("pods") == []


async def test_a_finished_task_leaves_nothing_in_the_watch(api: FakeApiServer, mongo: FakeMongo) -> None:
    # PodWatch.forget() drops a finished Pod; the DELETED event of the Pod's own deletion arrives
    # after it and must not bring the Pod back (one stale entry per task, for the job's lifetime).
    async with open_job(api, mongo) as engine:
        task = await (await started(api, Cr("busybox:1.36")))
        api.set_terminated(POD, 0)
        await task.done()
        await api.settle()
        assert engine.watch.get(POD) is None


async def test_signalling_a_task_that_ended_does_nothing(api: FakeApiServer, mongo: FakeMongo) -> None:
    # Engine.signal skips a task whose main container ended; once done() returned, the watch has
    # forgotten the Pod (and it was deleted): that must read as "ended", not be sent to a Pod gone.
    async with open_job(api, mongo):
        task = await (await started(api, Cr("busybox:1.36")))
        api.set_terminated(POD, 0)
        await task.done()
        await task.signal("SIGTERM")
        assert api.exec_calls == []


# -- waiting for a node ----------------------------------------------------------------------------


def unschedulable(message: str, *, age: float = 3600) -> dict[str, object]:
    return {"phase": "Pending", "conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
        "lastTransitionTime": now_stamp(age)}]}


@contextlib.asynccontextmanager
async def quick_job(api: FakeApiServer, mongo: FakeMongo, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Engine]:
    monkeypatch.setattr(engine_module, "POLL_SECONDS", 0.02)
    settings = SETTINGS.replace(start_timeout=0.3, schedule_timeout=0.1)
    with use_transport(lambda: api), use_client(mongo.client):
        async with session(settings=settings) as engine:
            yield engine


async def test_time_queued_for_a_node_is_not_a_slow_start(
        api: FakeApiServer, mongo: FakeMongo, monkeypatch: pytest.MonkeyPatch) -> None:
    async with quick_job(api, mongo, monkeypatch):
        starting = asyncio.create_task(Cr("busybox:1.36").start())
        await api.until(lambda: ungated(api, POD))
        await asyncio.sleep(0.6)  # twice the start timeout without a node: still waiting
        assert not starting.done()
        api.set_status(POD, {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]})
        with pytest.raises(TaskFailed, match="StartTimeout") as caught:
            await asyncio.wait_for(starting, 5)
        assert "after it was given a node" in str(caught.value)


@pytest.mark.parametrize("message", [
    "0/1 nodes are available: 1 node(s) didn't match Pod's node selector.",  # never fits
    "0/1 nodes are available: 1 Too many pods.",  # full, and nothing of the job on it to free room
])
async def test_an_unschedulable_pod_fails_after_the_schedule_timeout(
        api: FakeApiServer, mongo: FakeMongo, monkeypatch: pytest.MonkeyPatch, message: str) -> None:
    async with quick_job(api, mongo, monkeypatch):
        starting = asyncio.create_task(Cr("busybox:1.36").start())
        await api.until(lambda: ungated(api, POD))
        api.set_status(POD, unschedulable(message))
        with pytest.raises(TaskFailed, match="Unschedulable") as caught:
            await asyncio.wait_for(starting, 5)
        assert message in str(caught.value)


async def test_a_fan_out_larger_than_the_cluster_queues_behind_its_own_tasks(
        api: FakeApiServer, mongo: FakeMongo, monkeypatch: pytest.MonkeyPatch) -> None:
    async with quick_job(api, mongo, monkeypatch):
        first = await (await started(api, Cr("busybox:1.36")))  # on the node, running
        second = asyncio.create_task(Cr("busybox:1.36").start())
        await api.until(lambda: ungated(api, "lev-j1-t1"))
        api.set_status("lev-j1-t1", unschedulable("0/1 nodes are available: 1 Too many pods."))
        await asyncio.sleep(0.5)  # well past the schedule timeout: the job's own Pod will free room
        assert not second.done()
        api.set_terminated(POD, 0)
        await first.done()  # its Pod is deleted: room
        api.set_running("lev-j1-t1")
        task = await asyncio.wait_for(second, 5)
        assert task.pod == "lev-j1-t1"
        api.set_terminated("lev-j1-t1", 0)
        await task.done()
