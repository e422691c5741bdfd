"""PodWatch against the fake apiserver: nothing is lost across a dropped connection or 410 Gone.

Why here as well as in test_watch_gone.py: the fake can compact its history, so a watch that
resumed from its stale version instead of listing again would miss what happened meanwhile (and
these tests would time out), and it can delete a Pod during the gap, which only a re-list notices.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from levrt._clients.kube import Kube
from levrt._clients.watch import PodWatch
from levrt._shapes.podstatus import DELETED, finished, main_state, terminated
from tests.fakes import FakeApiServer

SELECTOR = "app.kubernetes.io/managed-by=levrt,levrt.io/job=1"


def pod(name: str, *, job: int = 1) -> dict[str, Any]:
    return {"kind": "Pod", "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "levrt",
                                                                 "levrt.io/job": str(job)}},
            "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]}}


def running(p: dict[str, Any]) -> bool:
    return "running" in main_state(p)


def watch_versions(api: FakeApiServer) -> list[str]:
    """The resourceVersion each watch request started from, in order."""
    return [dict(r.query)["resourceVersion"] for r in api.requests if dict(r.query).get("watch") == "true"]


@contextlib.asynccontextmanager
async def watching(api: FakeApiServer, **bounds: Any) -> AsyncIterator[PodWatch]:
    """A started watch of job 1's Pods over the fake (``bounds``: PodWatch's failure bounds)."""
    kube = Kube(api)
    watch = PodWatch(kube, namespace="levrt", selector=SELECTOR, **bounds)
    await watch.start()
    try:
        yield watch
    finally:
        await watch.close()
        await kube.close()


@pytest.mark.parametrize("http_status", [False, True], ids=["error-event", "http-410"])
async def test_after_410_the_watch_relists_and_sees_what_happened_while_it_was_gone(http_status: bool) -> None:
    api = FakeApiServer()
    api.put(pod("lev-j1-t0"))
    api.put(pod("lev-j1-t1"))
    api.set_running("lev-j1-t0")
    async with watching(api) as watch:
        await watch.wait("lev-j1-t0", running, timeout=1)
        await api.until(lambda: api.watches)  # connected
        listed_at = str(api.rv)
        await watch.close()                    # the watch is gone...
        api.set_terminated("lev-j1-t0", 0)     # ...the Pod finishes meanwhile...
        api.remove("pods", "lev-j1-t1")        # ...another one is deleted...
        api.compact()                          # ...and those events are compacted away.
        if http_status:
            api.gone_once(http_status=True)
        await watch.start_resumed()

        ended = await watch.wait("lev-j1-t0", finished, timeout=1)
        assert terminated(ended)["exitCode"] == 0
        tombstone = await watch.wait("lev-j1-t1", lambda p: p.get(DELETED), timeout=1)
        assert tombstone["metadata"]["name"] == "lev-j1-t1" and finished(tombstone)
        assert watch.relists == 2
        # It watches on from the version of the second list, not the stale one.
        api.put(pod("lev-j1-t2"))
        await watch.wait("lev-j1-t2", lambda p: True, timeout=1)
        first, resumed, relisted = watch_versions(api)
        assert first == resumed == listed_at
        assert int(relisted) > int(listed_at)


async def test_after_a_dropped_connection_the_watch_resumes_without_listing() -> None:
    api = FakeApiServer()
    api.put(pod("lev-j1-t0"))
    async with watching(api) as watch:
        await api.until(lambda: api.watches)
        api.set_running("lev-j1-t0")
        await watch.wait("lev-j1-t0", running, timeout=1)
        seen_at = str(api.rv)
        api.disconnect_watches()
        api.set_terminated("lev-j1-t0", 3)  # while disconnected: replayed on resume
        ended = await watch.wait("lev-j1-t0", finished, timeout=2)
        assert terminated(ended)["exitCode"] == 3
        assert watch.relists == 1
        assert watch_versions(api)[-1] == seen_at


async def test_a_deleted_pod_becomes_a_tombstone_and_other_jobs_are_not_seen() -> None:
    api = FakeApiServer()
    async with watching(api) as watch:
        await api.until(lambda: api.watches)
        api.put(pod("lev-j2-t0", job=2))
        api.put(pod("lev-j1-t0"))
        api.set_running("lev-j1-t0")
        api.remove("pods", "lev-j1-t0")
        tombstone = await watch.wait("lev-j1-t0", finished, timeout=1)
        assert tombstone[DELETED] is True
        assert running(tombstone)  # the last state it was seen in
        await api.settle()
        assert watch.get("lev-j2-t0") is None
