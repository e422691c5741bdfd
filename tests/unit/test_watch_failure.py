"""A watch that cannot recover fails every waiter with a ClusterError; one that can, recovers.

Why with the fake apiserver: it refuses (403), stops answering or compacts its history on cue, so
both sides of the line are tested in milliseconds: a refusal that lasts, or silence past the
bound, must end every ``wait`` (and ``Task.done()``) with an error that says what to check; a
refusal that passes, or an outage shorter than the bound, must lose nothing.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from levrt import Cr
from levrt._clients.api import Response
from levrt._clients.kube import use_transport
from levrt._clients.store import use_client
from levrt._shapes.podstatus import finished, terminated
from levrt.errors import ClusterError
from levrt.run import session
from levrt.settings import Settings
from tests.fakes import FakeApiServer, FakeMongo
from tests.unit.test_watch_fake import pod, running, watching

PODS = "/api/v1/namespaces/levrt/pods"




def unreachable() -> Response:
    raise ClusterError("Cannot reach the Kubernetes API at https://fake-apiserver: connection refused")


async def test_a_lasting_refusal_fails_every_waiter_with_what_to_check() -> None:
    api = FakeApiServer()
    for name in ("lev-j1-t0", "lev-j1-t1"):
        api.put(pod(name))
    async with watching(api, confirm_after=0.3) as watch:
        await api.until(lambda: api.watches)
        waiters = [asyncio.create_task(watch.wait(name, finished)) for name in ("lev-j1-t0", "lev-j1-t1")]
        await asyncio.sleep(0.01)
        api.fail("GET", PODS, 403, 'pods is forbidden: User "system:serviceaccount:levrt:x" cannot watch '
                                   'resource "pods"', times=1000)  # the RoleBinding is gone...
        api.disconnect_watches()                                     # ...and the watch must start again
        began = time.monotonic()
        results = await asyncio.wait_for(asyncio.gather(*waiters, return_exceptions=True), timeout=10)
        seconds = time.monotonic() - began
        assert all(isinstance(r, ClusterError) for r in results), results
        text = str(results[0])
        assert "HTTP 403" in text and "kubectl auth can-i watch pods -n levrt" in text
        assert 0.3 <= seconds < 10  # confirmed, not at the first refusal; and not forever
        assert watch.failure is not None
        # A waiter that comes later fails at once too; what is known still answers.
        with pytest.raises(ClusterError, match="refused to keep watching"):
            await asyncio.wait_for(watch.wait("lev-j1-t0", finished), timeout=1)
        assert (await watch.wait("lev-j1-t1", lambda p: True, timeout=1))["metadata"]["name"] == "lev-j1-t1"


async def test_a_refusal_that_passes_loses_nothing() -> None:
    api = FakeApiServer()
    api.put(pod("lev-j1-t0"))
    async with watching(api, confirm_after=5.0) as watch:
        await api.until(lambda: api.watches)
        api.fail("GET", PODS, 403, "forbidden while the authorizer loads", times=2)  # a starting apiserver
        api.disconnect_watches()
        api.set_running("lev-j1-t0")
        api.set_terminated("lev-j1-t0", 0)
        ended = await watch.wait("lev-j1-t0", finished, timeout=5)
        assert terminated(ended)["exitCode"] == 0 and watch.failure is None


async def test_silence_past_the_bound_fails_the_waiters() -> None:
    api = FakeApiServer()
    api.put(pod("lev-j1-t0"))
    async with watching(api, give_up_after=0.5) as watch:
        await api.until(lambda: api.watches)
        api.before("GET", PODS, unreachable, times=1000)
        api.disconnect_watches()
        with pytest.raises(ClusterError, match=r"did not answer for 0 s.*kubectl get --raw /readyz") as caught:
            await asyncio.wait_for(watch.wait("lev-j1-t0", finished), timeout=10)
        assert "connection refused" in str(caught.value)


async def test_an_outage_shorter_than_the_bound_is_ridden_out_and_a_relist_sees_what_ended() -> None:
    """An apiserver restart: nothing answers for a while, its history is gone (410), the Pod
    ended meanwhile; the watch lists again and the waiter sees the end, once."""
    api = FakeApiServer()
    api.put(pod("lev-j1-t0"))
    api.put(pod("lev-j1-t1"))
    api.set_running("lev-j1-t0")
    async with watching(api, give_up_after=30.0) as watch:
        await watch.wait("lev-j1-t0", running, timeout=1)
        await api.until(lambda: api.watches)
        api.before("GET", PODS, unreachable, times=3)  # down for a few attempts
        api.disconnect_watches()
        api.set_terminated("lev-j1-t0", 0)  # while it is down
        api.remove("pods", "lev-j1-t1")
        api.compact()                       # and the restarted apiserver does not know the old version
        ended = await watch.wait("lev-j1-t0", finished, timeout=20)
        assert terminated(ended)["exitCode"] == 0
        assert (await watch.wait("lev-j1-t1", finished, timeout=1))["metadata"]["name"] == "lev-j1-t1"
        assert watch.failure is None and watch.relists == 2


async def test_task_done_never_hangs_when_the_watch_is_refused_for_good() -> None:
    api = FakeApiServer(namespaces=["levrt"])
    mongo = FakeMongo()
    settings = Settings(store_uri="mongodb://127.0.0.1:30017/", runtime_image="levrt.local/runtime:t")
    with use_transport(lambda: api), use_client(mongo.client):
        with pytest.raises(ClusterError, match="refused to keep watching"):
            async with session(settings=settings) as engine:
                engine.watch.confirm_after = 0.2
                starting = asyncio.create_task(Cr("busybox:1.36").start())
                await api.until(lambda: (p := api.get("pods", "lev-j1-t0")) is not None
                                and not p["spec"].get("schedulingGates"))
                api.set_running("lev-j1-t0")
                task = await starting
                api.fail("GET", PODS, 403, "forbidden", times=1000)
                api.disconnect_watches()
                await asyncio.wait_for(task.done(), timeout=10)
