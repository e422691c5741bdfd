"""Warm Pods on the real cluster: entries in a few long-lived Pods, each still a task of its own.

Why: ``Cr(warm=...)`` changes how an entry reaches a container (through the store, into a Pod that
runs many) but must keep what a Cr promises. Here, with real Pods, the real runtime and the chart's
store: each entry's record, its own process, its logs in the archive, a failure that ends only its
entry, its timeout, a signal, a Pod deleted under running entries, and the nmap tool over 200
targets. The ``job`` fixture then checks that nothing of the job is left behind.
"""

from __future__ import annotations

import asyncio
import time
from types import ModuleType
from typing import Any

import pytest

import levrt
from levrt import Cr, TaskFailed, lev
from levrt._shapes.names import ROLE_LABEL
from levrt._shapes.warm import WARM_ROLE, worker_name
from tests.e2e.conftest import BUSYBOX
from tests.e2e.test_nmap import HTTPD, nmap  # noqa: F401 - the fixture

pytestmark = pytest.mark.cluster

SCHEMA = "test/warm@1.0"


@levrt.remote
def tag(i: int) -> None:
    import os
    import socket

    print("tag", i, flush=True)
    lev.set(i=i, pid=os.getpid(), pod=socket.gethostname())


@levrt.remote
def boom() -> None:
    raise ValueError("nope")


@levrt.remote
def sleeps(seconds: float) -> None:
    import time

    lev.set(began=True)
    time.sleep(seconds)
    lev.set(finished=True)


@levrt.remote
def interruptible() -> None:
    import time

    try:
        time.sleep(300)
    except KeyboardInterrupt:
        lev.set(interrupted=True)


async def warm_pods(job: Any) -> list[str]:
    listing = await job.kube.request("GET", f"/api/v1/namespaces/{job.settings.namespace}/pods",
                                     query={"labelSelector": f"levrt.io/job={job.job_id},{ROLE_LABEL}={WARM_ROLE}"})
    return [item["metadata"]["name"] for item in listing["items"]]


async def until(predicate: Any, *, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_entries_share_three_pods_and_each_keeps_what_a_task_promises(job: Any) -> None:
    runs = [asyncio.ensure_future(Cr(BUSYBOX, SCHEMA, entry=tag(i), warm=3).done()) for i in range(40)]
    failing = asyncio.ensure_future(Cr(BUSYBOX, SCHEMA, entry=boom(), warm=3).done())
    late = asyncio.ensure_future(Cr(BUSYBOX, SCHEMA, entry=sleeps(60), warm=3, timeout=2).done())
    signalled = await Cr(BUSYBOX, SCHEMA, entry=interruptible(), warm=3).start()
    await until(lambda: signalled.host is not None)  # said once it ran half a second
    await signalled.signal("SIGINT")
    assert await (await asyncio.wait_for(signalled.done(), 60)).get() == {"interrupted": True}

    docs = await asyncio.wait_for(asyncio.gather(*runs), 180)
    listed = await warm_pods(job)
    (pool,) = job.warm.pools.values()
    made = {worker_name(job.job_id, pool.key, i) for i in range(pool.made)}
    records = [await doc.get() for doc in docs]
    assert [r["i"] for r in records] == list(range(40))
    assert len({(r["pod"], r["pid"]) for r in records}) == 40  # a process each (pids count per Pod)
    pods = {r["pod"] for r in records}
    assert pool.made <= 3 and pods <= made and set(listed) <= made, (pods, made, listed)  # not a Pod each

    with pytest.raises(TaskFailed) as failed:
        await asyncio.wait_for(failing, 60)
    assert "ValueError: nope" in str(failed.value) and "Traceback" in failed.value.logs

    timed_out = await asyncio.wait_for(late, 60)
    assert timed_out.timed_out and await timed_out.get() == {"began": True}  # what it stored until then

    # Each entry's output is its own in the log archive, after the Pods are gone too.
    await job.log_archive.close()
    archived = await job.store.get_logs(job.job_id, docs[7].filter["_id"]["task"])
    assert archived["containers"]["main"]["text"] == "tag 7\n" and archived["pod"] in pods
    states = {r["task"]: r["state"] for r in await job.store.task_records(job.job_id)}
    assert sorted(states.values()).count("succeeded") == 41 and "failed" in states.values()
    assert "timed-out" in states.values()


async def test_a_deleted_warm_pod_gives_its_entries_to_another(job: Any) -> None:
    runs = [asyncio.ensure_future(Cr(BUSYBOX, SCHEMA, entry=sleeps(3), warm=2).done()) for _ in range(6)]
    await until(lambda: any(e.started for e in job.warm.entries.values()))
    running = next(e for e in job.warm.entries.values() if e.started and not e.result.done())
    victim = running.pod.name
    # Deleted by someone else, as an eviction or a drain would: its worker gets SIGTERM.
    await job.kube.request("DELETE", f"/api/v1/namespaces/{job.settings.namespace}/pods/{victim}")
    docs = await asyncio.wait_for(asyncio.gather(*runs), 240)
    assert [await doc.get() for doc in docs] == [{"began": True, "finished": True}] * 6
    statuses = {r["task"]: r for r in await job.store.task_records(job.job_id)}
    retried = [r for r in statuses.values() if r.get("retries")]
    assert retried and all(victim in r["retryReason"] and r["pod"] != victim for r in retried)
    assert all(r["state"] == "succeeded" for r in statuses.values())


async def test_nmap_tcp_mode_over_200_targets_in_warm_pods(job: Any, nmap: ModuleType) -> None:  # noqa: F811
    http = await Cr(BUSYBOX, cmd=["sh", "-c", HTTPD], ports=[8080]).start()
    assert http.host
    # The httpd target, and 199 loopback addresses of the warm Pod itself (nothing listens there).
    targets = [http.host, *(f"127.0.0.{i}" for i in range(1, 200))]
    began = time.monotonic()
    docs = await asyncio.wait_for(asyncio.gather(*(nmap.tcp(t, "8080").options(warm=4) for t in targets)), 600)
    took = time.monotonic() - began
    records = [await doc.get() for doc in docs]
    states = {}
    for target, record in zip(targets, records, strict=True):
        assert record["complete"] and record["exit_code"] == 0, record.get("stderr")
        ports = [p for h in record["hosts"] for p in h["ports"]]
        states[target] = [(p["port"], p["state"]) for p in ports]
    assert states[http.host] == [(8080, "open")]
    assert all(states[t] == [(8080, "closed")] for t in targets[1:]), states
    pods = {r.get("pod") for r in await job.store.task_records(job.job_id) if r.get("warm")}
    assert 1 <= len(pods) <= 4
    print(f"nmap tcp over {len(targets)} targets in {len(pods)} warm Pods: {took:.1f} s")
