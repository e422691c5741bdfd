"""Cleanup keeps up with dispatch on the real cluster: the client itself deletes finished tasks'
payload Secrets, in batches (``levrt._clients.sweep``), before the garbage collector would."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import levrt
from levrt import Concurrent, Cr, lev
from levrt._shapes.names import PAYLOAD_ROLE, ROLE_LABEL, api_path, job_selector
from levrt.run import session
from tests.e2e.conftest import BUSYBOX

pytestmark = pytest.mark.cluster


@levrt.remote
def mark(i: int) -> None:
    lev.set(i=i)


async def test_the_client_sweeps_payload_secrets_in_batches(kube_cluster: Any, levrt_settings: Any) -> None:
    async with session(settings=levrt_settings, kubeconfig=kube_cluster.kubeconfig) as job:
        async with Concurrent() as c:
            for i in range(6):
                c.start(Cr(BUSYBOX, entry=mark(i)))
        for _ in range(100):  # the sweep lingers half a second to batch
            if job.sweeper.swept == 6:
                break
            await asyncio.sleep(0.1)
        assert job.sweeper.swept == 6
        assert job.sweeper.requests < 6  # batched: fewer requests than tasks
        selector = f"{job_selector(job.job_id)},{ROLE_LABEL}={PAYLOAD_ROLE}"
        listing = await job.kube.request("GET", api_path("secrets", namespace=levrt_settings.namespace),
                                         query={"labelSelector": selector})
        assert listing["items"] == []
        for _ in range(100):  # status records are written off the hot path
            records = await job.store.collection("levrt_tasks").find({"job": job.job_id}).to_list(None)
            if {r["state"] for r in records} == {"succeeded"} and len(records) == 6:
                break
            await asyncio.sleep(0.1)
        assert sorted(r["_id"] for r in records) == [f"{job.job_id}.{i}" for i in range(6)]
        assert {r["state"] for r in records} == {"succeeded"}
