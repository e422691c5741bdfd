"""``PodWatch``: the latest state of every Pod matching one selector, kept current by one watch.

Why one watch: a job may run hundreds of tasks; one watch per job, shared by every task, keeps
the apiserver load flat. It resumes after a disconnect from the last resourceVersion it saw and
lists again on ``410 Gone``, so no change is lost; a Pod that disappeared while nobody watched is
reported once as a tombstone. Written by hand because the client libraries' watches either
re-start from a stale version or never re-list (see DESIGN.md).

Why it can fail: a watch that can never recover (the apiserver refuses it with 401/403/404 again
and again, as after RBAC is revoked, or nothing answers for ``give_up_after`` seconds) would leave
every waiter waiting forever. It fails them all instead, with a ``ClusterError`` saying what
happened and what to check; transient trouble (410, a dropped connection, an apiserver restart)
is ridden out. Each watch request lasts at most ``window`` seconds, so a revocation that the
apiserver does not apply to an open watch is noticed at the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from levrt._clients import resources
from levrt._clients.api import ApiError, Forbidden, Gone, NotFound, Unauthorized, api_error
from levrt._clients.kube import Kube
from levrt._shapes.podstatus import DELETED
from levrt.errors import ClusterError

__all__ = ["GIVE_UP_SECONDS", "WINDOW_SECONDS", "PodWatch"]

log = logging.getLogger("lev")

Pod = dict[str, Any]

GIVE_UP_SECONDS = 60.0
"""How long the watch keeps trying while nothing answers (no list, no watch accepted) before it
fails its waiters: an apiserver restart takes seconds, a lost cluster does not come back."""
CONFIRM_SECONDS = 3.0
"""A refusal (401, 403, 404) fails the waiters once it is repeated this long after the first: a
starting apiserver may refuse for a moment before its authorizer has loaded the roles."""
WINDOW_SECONDS = 60
"""The longest one watch request lasts (``timeoutSeconds``); then it resumes from where it was.
The apiserver checks RBAC when a watch starts, not while it streams, so this bounds how long a
revoked permission goes unnoticed. One request a minute per job is nothing to the apiserver."""
_REFUSED = (Unauthorized, Forbidden, NotFound)


class PodWatch:
    """The Pods of one namespace matching ``selector``.

    ``wait(name, predicate)`` returns the first observed Pod for which ``predicate`` holds.
    A Pod that disappears is reported once with the key ``"levrt/deleted": True`` (``DELETED``)
    so waiters can stop.
    """

    def __init__(self, kube: Kube, *, namespace: str, selector: str, give_up_after: float | None = None,
                 confirm_after: float | None = None, window: int | None = None) -> None:
        self._kube = kube
        # None: the module's bounds as they are now (a fault test shortens them for a whole job).
        self.give_up_after = GIVE_UP_SECONDS if give_up_after is None else give_up_after
        self.confirm_after = CONFIRM_SECONDS if confirm_after is None else confirm_after
        self.window = WINDOW_SECONDS if window is None else window
        self.namespace = namespace
        self.selector = selector
        self._path = resources.prepare("list", "Pod", namespace=namespace).path
        self._pods: dict[str, Pod] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self._forgotten: set[str] = set()  # forgotten Pods whose deletion the watch has not reported yet
        self._resource_version = ""
        self._runner: asyncio.Task[None] | None = None
        self.relists = 0
        """How many times the watch listed (once at start, again after each 410 Gone)."""
        self.failure: ClusterError | None = None
        """Why the watch gave up (every waiter gets a ClusterError with this message); None while it runs."""
        self._need_relist = False
        self._trouble_since: float | None = None  # first failure since the apiserver last answered
        self._refused_since: float | None = None  # first refusal (401/403/404) since then

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
        """Wait until the Pod ``name`` satisfies ``predicate``; ``TimeoutError`` after ``timeout``,
        ``ClusterError`` as soon as the watch has failed for good (``failure``)."""
        async with asyncio.timeout(timeout):
            while True:
                event = self._changed.setdefault(name, asyncio.Event())
                pod = self._pods.get(name)
                if pod is not None and predicate(pod):
                    return pod
                if self.failure is not None:
                    # A new exception for each waiter: one instance raised in many tasks would
                    # gather all their tracebacks.
                    raise ClusterError(str(self.failure)) from self.failure.__cause__
                await event.wait()

    def forget(self, name: str) -> None:
        """Drop what is known of a Pod once nobody will ask about it again."""
        self._pods.pop(name, None)
        self._changed.pop(name, None)
        self._forgotten.add(name)

    def _update(self, pod: Pod) -> None:
        # Which client set which field: nothing here reads it, and it is often the largest part of a Pod.
        pod["metadata"].pop("managedFields", None)
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
        request = resources.prepare("list", "Pod", namespace=self.namespace, query={"labelSelector": self.selector})
        listing = await resources.send(self._kube, request)
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
                if self._need_relist:
                    await self._relist()
                    self._need_relist = False
                    self._answered()
                await self._watch_once()  # the window ended, or the connection dropped: resume
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except Gone:
                log.debug("pod watch: resourceVersion expired, re-listing")
                self._need_relist = True
                continue
            except _REFUSED as exc:
                if self._refused(exc):
                    return
            except Exception as exc:
                if self._troubled(exc):
                    return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def _answered(self) -> None:
        """The apiserver answered (a list, or a watch accepted): whatever troubled it is over."""
        self._trouble_since = self._refused_since = None

    def _refused(self, exc: ApiError) -> bool:
        """A refusal: fail the waiters once it is confirmed (True), else retry."""
        now = time.monotonic()
        if self._refused_since is None:
            self._refused_since = now
            self._trouble_since = self._trouble_since or now
        if now - self._refused_since < self.confirm_after:
            log.warning("pod watch on %s refused (%s); retrying", self.namespace, exc)
            return False
        if isinstance(exc, NotFound):
            check = (f"Check that the namespace {self.namespace!r} still exists (kubectl get namespace "
                     f"{self.namespace}); deleting it deletes the job's Pods too.")
        else:
            check = (f"Check that the account in your kubeconfig still may list and watch Pods in namespace "
                     f"{self.namespace!r} (kubectl auth can-i watch pods -n {self.namespace}; `levrt doctor`): "
                     "a Role or RoleBinding was probably removed or its token expired.")
        self._fail(exc, f"The apiserver refused to keep watching this job's Pods in namespace "
                        f"{self.namespace!r} (HTTP {exc.status}: {exc}), so their ends cannot be seen. {check}")
        return True

    def _troubled(self, exc: Exception) -> bool:
        """A transient failure: retry until nothing answered for ``give_up_after`` (then True)."""
        now = time.monotonic()
        if self._trouble_since is None:
            self._trouble_since = now
        if now - self._trouble_since < self.give_up_after:
            if isinstance(exc, ApiError):
                log.warning("pod watch on %s failed (%s); retrying", self.namespace, exc)
            else:
                log.debug("pod watch on %s disconnected (%r); resuming", self.namespace, exc)
            return False
        self._fail(exc, f"Lost the watch on this job's Pods in namespace {self.namespace!r}: the apiserver "
                        f"at {self._kube.host} did not answer for {self.give_up_after:.0f} s (last error: "
                        f"{exc}). Check that the cluster is up and reachable from here (kubectl get --raw "
                        "/readyz); the job's Pods may still be running (levrt ps).")
        return True

    def _fail(self, cause: Exception, message: str) -> None:
        """Give up: every waiter, present and future, gets a ``ClusterError`` with ``message``."""
        error = ClusterError(message)
        error.__cause__ = cause
        self.failure = error
        log.error("%s", message)
        for event in self._changed.values():
            event.set()
        self._changed.clear()

    async def _watch_once(self) -> None:
        query = {
            "labelSelector": self.selector,
            "watch": True,
            "resourceVersion": self._resource_version,
            "allowWatchBookmarks": True,
            "timeoutSeconds": self.window,
        }
        lines = self._kube.lines(self._path, query=query, timeout=self.window + 30, opened=self._answered)
        async with contextlib.aclosing(lines):
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
