"""``PodWatch``: the latest state of every Pod matching one selector, kept current by one watch.

Why one watch: a job may run hundreds of tasks; one watch per job, shared by every task, keeps
the apiserver load flat. It resumes after a disconnect from the last resourceVersion it saw and
lists again on ``410 Gone``, so no change is lost; a Pod that disappeared while nobody watched is
reported once as a tombstone. Written by hand because the client libraries' watches either
re-start from a stale version or never re-list (see DESIGN.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from levrt._clients.api import ApiError, Gone, api_error
from levrt._clients.kube import Kube
from levrt._shapes.names import api_path
from levrt._shapes.podstatus import DELETED

__all__ = ["PodWatch"]

log = logging.getLogger("lev")

Pod = dict[str, Any]


class PodWatch:
    """The Pods of one namespace matching ``selector``.

    ``wait(name, predicate)`` returns the first observed Pod for which ``predicate`` holds.
    A Pod that disappears is reported once with the key ``"levrt/deleted": True`` (``DELETED``)
    so waiters can stop.
    """

    def __init__(self, kube: Kube, *, namespace: str, selector: str) -> None:
        self._kube = kube
        self.namespace = namespace
        self.selector = selector
        self._path = api_path("pods", namespace=namespace)
        self._pods: dict[str, Pod] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self._forgotten: set[str] = set()  # forgotten Pods whose deletion the watch has not reported yet
        self._resource_version = ""
        self._runner: asyncio.Task[None] | None = None
        self.relists = 0
        """How many times the watch listed (once at start, again after each 410 Gone)."""

    async def start(self) -> None:
        await self._relist()
        await self.start_resumed()

    async def start_resumed(self) -> None:
        """Watch again from the last resourceVersion seen (after ``close``), without listing."""
        self._runner = asyncio.get_running_loop().create_task(self._run(), name=f"levrt-watch-{self.namespace}")

    async def close(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None

    def get(self, name: str) -> Pod | None:
        return self._pods.get(name)

    def pods(self) -> list[Pod]:
        """The Pods seen and not forgotten, as last seen."""
        return list(self._pods.values())

    async def wait(self, name: str, predicate: Callable[[Pod], Any], *, timeout: float | None = None) -> Pod:
        """Wait until the Pod ``name`` satisfies ``predicate``; ``TimeoutError`` after ``timeout``."""
        async with asyncio.timeout(timeout):
            while True:
                event = self._changed.setdefault(name, asyncio.Event())
                pod = self._pods.get(name)
                if pod is not None and predicate(pod):
                    return pod
                await event.wait()

    def forget(self, name: str) -> None:
        """Drop what is known of a Pod once nobody will ask about it again."""
        self._pods.pop(name, None)
        self._changed.pop(name, None)
        self._forgotten.add(name)

    def _update(self, pod: Pod) -> None:
        name = pod["metadata"]["name"]
        if name in self._forgotten:
            if pod.get(DELETED):
                self._forgotten.discard(name)  # its last event: nothing more will come
            return
        self._pods[name] = pod
        event = self._changed.pop(name, None)
        if event is not None:
            event.set()

    def _mark_deleted(self, pod: Pod) -> None:
        self._update({**pod, DELETED: True})

    async def _relist(self) -> None:
        listing = await self._kube.request("GET", self._path, query={"labelSelector": self.selector})
        seen = set()
        for pod in listing.get("items", []):
            seen.add(pod["metadata"]["name"])
            self._update(pod)
        for name, pod in list(self._pods.items()):
            if name not in seen and not pod.get(DELETED):
                self._mark_deleted(pod)
        self._forgotten &= seen  # deleted while the watch was gone: their DELETED event will not come
        self._resource_version = listing["metadata"]["resourceVersion"]
        self.relists += 1

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            try:
                await self._watch_once()
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except Gone:
                log.debug("pod watch: resourceVersion expired, re-listing")
                await self._relist_quietly()
                continue
            except ApiError as exc:
                log.warning("pod watch on %s failed (%s); retrying", self.namespace, exc)
            except Exception as exc:
                log.debug("pod watch on %s disconnected (%r); resuming", self.namespace, exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _relist_quietly(self) -> None:
        try:
            await self._relist()
        except Exception as exc:
            log.warning("pod watch on %s could not re-list (%s); retrying", self.namespace, exc)
            await asyncio.sleep(1.0)

    async def _watch_once(self) -> None:
        query = {
            "labelSelector": self.selector,
            "watch": True,
            "resourceVersion": self._resource_version,
            "allowWatchBookmarks": True,
            "timeoutSeconds": 300,
        }
        async with contextlib.aclosing(self._kube.lines(self._path, query=query, timeout=330)) as lines:
            async for line in lines:
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object", {})
                if kind == "ERROR":
                    raise api_error(obj.get("code", 500), obj, method="WATCH", path=self._path)
                rv = obj.get("metadata", {}).get("resourceVersion")
                if rv:
                    self._resource_version = rv
                if kind in ("ADDED", "MODIFIED"):
                    self._update(obj)
                elif kind == "DELETED":
                    self._mark_deleted(obj)
