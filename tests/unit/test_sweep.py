"""The payload sweeper against the fake apiserver: one deletecollection per batch of finished tasks,
only their payload Secrets (never a shared file object, never another job's), and a refusal that
leaves the rest to the garbage collector without failing the job."""

from __future__ import annotations

import asyncio
import logging

import pytest

import levrt
from levrt import Cr
from levrt._clients.kube import Kube, use_transport
from levrt._clients.store import use_client
from levrt._clients.sweep import BATCH, PayloadSweeper, PodSweeper, payload_selector, pod_selector
from levrt.run import session
from levrt.settings import Settings
from tests.fakes import FakeApiServer, FakeMongo

SECRETS = "/api/v1/namespaces/levrt/secrets"


def payload(job: int, task: int) -> dict[str, object]:
    return {"kind": "Secret", "metadata": {"name": f"lev-j{job}-t{task}-payload", "labels": {
        "app.kubernetes.io/managed-by": "levrt", "levrt.io/role": "payload",
        "levrt.io/job": str(job), "levrt.io/task": str(task)}}}


def deletes(api: FakeApiServer) -> list[str]:
    return [dict(r.query).get("labelSelector", "") for r in api.requests if r.method == "DELETE" and r.path == SECRETS]


def test_the_selector_names_the_tasks_of_one_job() -> None:
    assert payload_selector(7, [3, 1]) == (
        "app.kubernetes.io/managed-by=levrt,levrt.io/role=payload,levrt.io/job=7,levrt.io/task in (1,3)"
    )


async def test_one_request_deletes_the_payloads_of_the_tasks_that_finished() -> None:
    api = FakeApiServer(namespaces=["levrt"])
    for task in range(4):
        api.put(payload(1, task))
    api.put(payload(2, 1))
    shared = {"kind": "Secret", "metadata": {"name": "levrt-f-abc", "labels": {
        "app.kubernetes.io/managed-by": "levrt", "levrt.io/job": "1", "levrt.io/task": "1"}}}
    api.put(shared)
    sweeper = PayloadSweeper(Kube(api), namespace="levrt", job=1, linger=0.01)
    for task in (0, 1, 3):
        sweeper.add(task)
    await api.until(lambda: sweeper.swept == 3)
    assert sorted(api.names("secrets")) == ["lev-j1-t2-payload", "lev-j2-t1-payload", "levrt-f-abc"]
    assert len(deletes(api)) == 1 and sweeper.requests == 1
    await sweeper.close()
    assert len(deletes(api)) == 1  # nothing left to sweep: no request


async def test_a_large_batch_is_split_so_the_selector_stays_short() -> None:
    api = FakeApiServer(namespaces=["levrt"])
    total = 2 * BATCH + 5
    for task in range(total):
        api.put(payload(1, task))
    sweeper = PayloadSweeper(Kube(api), namespace="levrt", job=1, linger=60)
    for task in range(total):
        sweeper.add(task)
    await sweeper.close()  # close sweeps what is queued without waiting for the linger
    assert api.names("secrets") == [] and sweeper.requests == 3


async def test_a_full_batch_goes_at_once_and_the_rest_waits_for_more() -> None:
    """A fan-out ending many tasks a second sends full batches at once (one request each); the few
    tasks left over wait for others, or the linger, rather than going in a request of their own."""
    api = FakeApiServer(namespaces=["levrt"])
    for task in range(BATCH + 3):
        api.put(payload(1, task))
    sweeper = PayloadSweeper(Kube(api), namespace="levrt", job=1, linger=60)
    for task in range(BATCH + 3):
        sweeper.add(task)
    await api.until(lambda: sweeper.swept == BATCH)
    await asyncio.sleep(0.2)
    assert len(api.names("secrets")) == 3 and sweeper.requests == 1
    await sweeper.close()  # the job's end sweeps the rest without waiting for the linger
    assert api.names("secrets") == [] and sweeper.requests == 2


async def test_without_the_right_the_garbage_collector_is_left_to_it(caplog: pytest.LogCaptureFixture) -> None:
    api = FakeApiServer(namespaces=["levrt"])
    api.put(payload(1, 0))
    api.fail("DELETE", SECRETS, 403, 'secrets is forbidden: cannot deletecollection')
    sweeper = PayloadSweeper(Kube(api), namespace="levrt", job=1, linger=0.01)
    with caplog.at_level(logging.INFO, logger="lev"):
        sweeper.add(0)
        await sweeper.close()
        sweeper.add(1)  # refused once: no more requests
        await sweeper.close()
    assert api.names("secrets") == ["lev-j1-t0-payload"]
    assert len(deletes(api)) == 1
    assert "left to the garbage collector" in caplog.text


@levrt.remote
def entry() -> None:
    pass


async def test_a_job_sweeps_the_payloads_of_its_finished_tasks() -> None:
    api, mongo = FakeApiServer(namespaces=["levrt"]), FakeMongo()
    api.autorun(0)
    settings = Settings(store_uri="mongodb://127.0.0.1:30017/", runtime_image="levrt.local/runtime:t")
    with use_transport(lambda: api), use_client(mongo.client):
        async with session(settings=settings):
            for _ in range(3):
                await Cr("busybox:1.36", entry=entry())
            await Cr("busybox:1.36")  # no entry, no payload: nothing to sweep for it
    swept = deletes(api)
    assert swept and all("levrt.io/job=1," in s and "levrt.io/role=payload" in s for s in swept)
    named = {t for s in swept for t in s.split("in (")[1].rstrip(")").split(",")}
    assert named == {"0", "1", "2"}


PODS = "/api/v1/namespaces/levrt/pods"


def task_pod(job: int, task: int, attempt: str = "") -> dict[str, object]:
    return {"kind": "Pod", "metadata": {"name": f"lev-j{job}-t{task}{attempt}", "labels": {
        "app.kubernetes.io/managed-by": "levrt", "levrt.io/job": str(job), "levrt.io/task": str(task)}}, "spec": {}}


async def test_ended_pods_go_in_one_request_every_attempt_of_them_never_the_orchestration_pod() -> None:
    api = FakeApiServer(namespaces=["levrt"])
    for task in range(3):
        api.put(task_pod(1, task))
    api.put(task_pod(1, 1, "-r1"))
    api.put({"kind": "Pod", "metadata": {"name": "lev-orch", "labels": {
        "app.kubernetes.io/managed-by": "levrt", "levrt.io/job": "1", "levrt.io/role": "orchestrator"}}, "spec": {}})

    async def one_by_one(batch: object) -> None:
        raise AssertionError("not refused: no one-by-one deletes")

    sweeper = PodSweeper(Kube(api), namespace="levrt", job=1, refused=one_by_one, linger=0.01)
    sweeper.add(0, pod="lev-j1-t0")
    sweeper.add(1, pod="lev-j1-t1-r1")
    await sweeper.close()
    assert sorted(api.names("pods")) == ["lev-j1-t2", "lev-orch"]
    (swept,) = [r for r in api.requests if r.method == "DELETE" and r.path == PODS]
    query = dict(swept.query)
    assert query["labelSelector"] == pod_selector(1, [0, 1]) and query["gracePeriodSeconds"] == "0"


async def test_without_the_right_ended_pods_are_deleted_one_by_one() -> None:
    api = FakeApiServer(namespaces=["levrt"])
    for task in range(3):
        api.put(task_pod(1, task))
    api.fail("DELETE", PODS, 403, "pods is forbidden: cannot deletecollection")
    deleted: list[str] = []

    async def one_by_one(batch: dict[int, dict[str, object]]) -> None:
        deleted.extend(str(fields["pod"]) for fields in batch.values())

    sweeper = PodSweeper(Kube(api), namespace="levrt", job=1, refused=one_by_one, linger=0.01)
    sweeper.add(0, pod="lev-j1-t0")
    await sweeper.close()
    sweeper.add(2, pod="lev-j1-t2")  # refused once: one by one from then on, no more collection requests
    await sweeper.close()
    assert deleted == ["lev-j1-t0", "lev-j1-t2"]
    assert len([r for r in api.requests if r.method == "DELETE" and r.path == PODS]) == 1
