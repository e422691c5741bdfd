"""Fault: kube-apiserver restarted while a 20-task job runs. Figure: tasks lost or doubled (target 0).

Why: the apiserver is the one thing every client depends on, and it restarts at every control-plane
upgrade. The job's watch loses its connection and, after the restart, its resourceVersion; it must
resume or list again, see every Pod end (also those that ended while it was away) and submit
nothing twice. Disrupts the cluster for everyone: run ONLY under the exclusive lock
(``flock -x /tmp/levrt-cluster.lock python3 -m pytest tests/faults/test_apiserver_restart.py``).
The tasks are all started before the restart: a create sent while nothing listens fails with a
ClusterError (levrt does not re-send a create it cannot know the fate of).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from levrt import Cr
from levrt._clients.kube import Kube
from levrt._clients.store import TASKS
from levrt._shapes.names import job_selector
from levrt.run import session
from tests.e2e.conftest import BUSYBOX

TASKS_IN_JOB = 20
SLEEP = 12  # long enough that most tasks end while the apiserver is down or just back


async def test_a_job_survives_an_apiserver_restart(kube_cluster: Any, levrt_settings: Any) -> None:
    if not kube_cluster.own:
        pytest.skip("restarts the test cluster's own kube-apiserver")
    from tests.cluster import node

    settings = levrt_settings.replace(keep=True)  # the Pods stay, so every Pod the job made is counted
    pods: list[str] = []
    job_id = -1
    outage = 0.0
    try:
        async with session(settings=settings, kubeconfig=kube_cluster.kubeconfig) as engine:
            job_id = engine.job_id
            crs = [Cr(BUSYBOX, cmd=["sh", "-c", f"sleep {SLEEP}; echo task {i}"]) for i in range(TASKS_IN_JOB)]
            tasks = await asyncio.gather(*(cr.start() for cr in crs))
            began = time.monotonic()
            outage = await asyncio.to_thread(node.restart_apiserver, down_for=3.0)
            results = await asyncio.wait_for(asyncio.gather(*(t.done() for t in tasks), return_exceptions=True),
                                             timeout=180)
            print(f"\napiserver restart: down {outage:.1f} s; every task awaited "
                  f"{time.monotonic() - began:.1f} s after the restart began")
            errors = [r for r in results if isinstance(r, BaseException)]
            relists = engine.watch.relists
        kube = await Kube.connect(kubeconfig=kube_cluster.kubeconfig)
        try:
            listing = await kube.request("GET", f"/api/v1/namespaces/{settings.namespace}/pods",
                                         query={"labelSelector": job_selector(job_id)})
            pods = [item["metadata"]["name"] for item in listing["items"]]
        finally:
            await kube.close()
        from levrt._clients.store import Store

        store = Store.connect(settings.store_uri, database=settings.database)
        try:
            records = [doc async for doc in store.collection(TASKS).find({"job": job_id})]
        finally:
            await store.close()
        states = sorted(r.get("state", "?") for r in records)
        per_task = {r["task"] for r in records}
        lost = TASKS_IN_JOB - len([s for s in states if s == "succeeded"])
        doubled = len(pods) - len(set(pods)) + max(0, len(pods) - TASKS_IN_JOB)
        print(f"apiserver restart: {TASKS_IN_JOB} tasks, lost {lost}, doubled {doubled} "
              f"({len(pods)} Pods, {len(records)} status records, watch listed {relists} times)")
        assert errors == [], errors
        assert sorted(pods) == sorted(f"lev-j{job_id}-t{i}" for i in range(TASKS_IN_JOB))  # one Pod per task
        assert per_task == set(range(TASKS_IN_JOB)) and len(records) == TASKS_IN_JOB
        assert (lost, doubled) == (0, 0), states
    finally:
        await asyncio.to_thread(_cleanup, kube_cluster.kubeconfig, settings.namespace, job_id)


def _cleanup(kubeconfig: str, namespace: str, job_id: int) -> None:
    """The apiserver answers again (restart it if a failure left it down) and the job's Pods go."""
    from tests.cluster import node

    if not node.healthy() and node._pid("kube-apiserver") is None:
        pytest.fail("kube-apiserver left stopped: run `python3 -m tests.cluster up`")
    if job_id >= 0:
        node.kubectl("-n", namespace, "delete", "pods", "-l", job_selector(job_id), "--wait=false",
                     "--grace-period=0", kubeconfig=kubeconfig, check=False)
