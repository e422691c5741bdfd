"""A job's warm Pods (``Cr(warm=...)``): entries handed to a few long-lived Pods through the store.

Why: a tiny entry in a Pod of its own spends about a second of the cluster's work (create, schedule,
sandbox, runtime start) and two requests to the apiserver; here it spends one insert and a share of
one poll of the store. The engine keeps what it does for a task Pod, only the transport changes:
each entry is still a task with its own id, status record (``submitting``, ``running``, then its
end), record collection, log archive and ``Task`` (``done``, ``signal``, ``logs``).

How, in short:

- Crs whose Pods would be alike apart from the entry share a pool (``levrt._shapes.warm.pool_key``);
  a pool grows to ``Cr.warm`` Pods while entries wait, each Pod owned by the job's Lease.
- Each entry is addressed to one Pod (``levrt.warmqueue``), at most ``DEPTH`` per Pod at a time (one
  running, one ready to start), the rest waiting here: no two Pods ever race for an entry. Each is
  signed under its pool's key (``entry_mac``): the queue is in the task database, which tasks write.
- One loop reads the ends of every entry of the job, ``POLL`` seconds apart while any is out.
- A Pod that is lost (deleted by someone else, evicted, its node gone) gives its entries back: those
  not seen running go to another Pod as they are (an entry says it runs after half a second, so one
  lost in its first half second runs again without counting a retry); one seen running runs again
  elsewhere, up to ``Cr.retries`` times and at least once. A Pod that cannot start fails the entries waiting for
  its pool with the reason, as a task Pod's start failure would.
- A Pod with nothing to do for ``IDLE`` seconds is deleted; the job's end deletes the rest.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from levrt import payload
from levrt._clients import submit
from levrt._clients.kube import Kube
from levrt._clients.store import Store
from levrt._clients.watch import PodWatch
from levrt._core.logarchive import LogArchive
from levrt._shapes import podstatus
from levrt._shapes.build import TaskObjects
from levrt._shapes.failures import failure_text
from levrt._shapes.warm import entry_end, pool_key, worker_pod
from levrt.cr import Cr
from levrt.document import Document
from levrt.errors import LevrtError, TaskFailed
from levrt.settings import Settings
from levrt.task import Task
from levrt.warmqueue import ENDED, QUEUE, QUEUED, RUNNING, entry_id, entry_mac

__all__ = ["DEPTH", "IDLE", "POLL", "POLL_BUSY", "WarmPools"]

log = logging.getLogger("lev")

DEPTH = 2
"""Entries addressed to one warm Pod at a time: the running one and the next, so a Pod never waits
for the engine's next look between two entries."""
POLL = 0.02
"""Seconds between two looks at the ends of a job's entries while each waits in a Pod of its own."""
POLL_BUSY = 0.1
"""Seconds between two looks while more entries are out than Pods run them: a store that commits
each write on its own (FerretDB on SQLite) gets fewer, larger batches of ends, logs and statuses."""
IDLE = 30.0
"""Seconds a warm Pod may have nothing to do before it is deleted."""


@dataclasses.dataclass(eq=False)
class _WarmPod:
    name: str
    pool: _Pool
    entries: set[int] = dataclasses.field(default_factory=set)
    idle_since: float = dataclasses.field(default_factory=time.monotonic)
    ip: str | None = None
    node: str | None = None
    gone: bool = False


@dataclasses.dataclass(eq=False)
class _Pool:
    key: str
    cr: Cr
    size: int
    pods: dict[str, _WarmPod] = dataclasses.field(default_factory=dict)
    waiting: collections.deque[_Entry] = dataclasses.field(default_factory=collections.deque)
    made: int = 0
    broken: TaskFailed | None = None
    secret: str = dataclasses.field(default_factory=lambda: secrets.token_hex(32))
    """The key its Pods check each entry's signature with (``levrt.warmqueue.entry_mac``)."""


@dataclasses.dataclass(eq=False)
class _Entry:
    task: Task
    pool: _Pool
    body: dict[str, Any]
    result: asyncio.Future[Document]
    attempt: int = 0
    lost_runs: int = 0
    pod: _WarmPod | None = None
    started: bool = False
    signal: list[int] | None = None

    @property
    def key(self) -> str:
        return f"{entry_id(self.task.job_id, self.task.task_id)}.{self.attempt}"


class WarmPools:
    """The warm Pods of one job and the entries out in them."""

    def __init__(self, *, kube: Kube, store: Store, watch: PodWatch, settings: Settings, job: int,
                 owner: Callable[[], Mapping[str, Any] | None], record: Callable[..., None], archive: LogArchive,
                 delete_pod: Callable[[str], Awaitable[None]],
                 wait_started: Callable[[str], Awaitable[dict[str, Any]]]) -> None:
        self.kube, self.store, self.watch, self.settings, self.job = kube, store, watch, settings, job
        self.owner, self.record, self.archive = owner, record, archive
        self.delete_pod, self.wait_started = delete_pod, wait_started
        self.queue = store.collection(QUEUE)
        self.pools: dict[str, _Pool] = {}
        self.entries: dict[int, _Entry] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._outbox: list[_Entry] = []
        """Entries addressed to a Pod, to be inserted together."""
        self._poller: asyncio.Task[None] | None = None
        self._closing = False

    # -- what the engine asks -------------------------------------------------------------------

    def start(self, cr: Cr, *, task: Task) -> None:
        """Hand ``cr``'s entry, task ``task``, to a warm Pod of its pool (made when needed)."""
        assert cr.entry is not None and cr.warm is not None
        blob = payload.dumps_call(cr.entry)  # over the payload limit: a PayloadError, nothing made
        key = pool_key(cr, self.settings)
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = _Pool(key=key, cr=cr, size=cr.warm)
        if pool.broken is not None:
            raise pool.broken
        timeout = cr.timeout if cr.timeout is not None else self.settings.timeout
        body = {"job": self.job, "task": task.task_id, "payload": blob, "argv": list(cr.cmd),
                "env": dict(item.partition("=")[::2] for item in cr.env), "collection": task.collection,
                "timeout": timeout}
        entry = _Entry(task=task, pool=pool, body=body, result=asyncio.get_running_loop().create_future())
        self.entries[task.task_id] = entry
        pool.waiting.append(entry)
        self._dispatch(pool)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll(), name=f"levrt-warm-{self.job}")

    async def finish(self, task: Task) -> Document:
        return await asyncio.shield(self.entries[task.task_id].result)

    async def signal(self, task: Task, signum: int) -> None:
        entry = self.entries.get(task.task_id)
        if entry is None or entry.result.done():
            log.debug("task %s already ended; signal %d not sent", task.id, signum)
            return
        task.signalled = True
        count = (entry.signal[1] if entry.signal else 0) + 1
        entry.signal = [signum, count]
        if entry.pod is not None:
            await self.queue.update_one({"_id": entry.key}, {"$set": {"signal": entry.signal}})

    async def logs(self, task: Task, *, tail: int | None = None) -> str:
        """A warm entry's output so far (the worker copies it every few seconds), or all of it once ended."""
        entry = self.entries.get(task.task_id)
        text = ""
        if entry is not None and entry.pod is not None and not entry.result.done():
            found = await self.queue.find_one({"_id": entry.key}, {"tail": 1})
            text = str((found or {}).get("tail") or "")
        else:
            archived = await self.store.get_logs(self.job, task.task_id)
            text = str(((archived or {}).get("containers") or {}).get("main", {}).get("text") or "")
        return text if tail is None else "\n".join(text.splitlines()[-tail:])

    async def close(self) -> None:
        """The job ends: no more entries; its warm Pods and queue documents go."""
        self._closing = True
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        pods = [pod.name for pool in self.pools.values() for pod in pool.pods.values()]
        await asyncio.gather(*(self.delete_pod(name) for name in pods))
        for entry in self.entries.values():
            if not entry.result.done():
                entry.result.cancel()
        if self.entries:
            with contextlib.suppress(Exception):
                await self.queue.delete_many({"job": self.job})

    # -- handing entries to Pods -----------------------------------------------------------------

    def _dispatch(self, pool: _Pool) -> None:
        """Address waiting entries to the pool's Pods: an idle Pod first, then a new Pod while the
        pool may grow, then a Pod with room for one more."""
        while pool.waiting and not self._closing:
            live = [pod for pod in pool.pods.values() if not pod.gone]
            idle = [pod for pod in live if not pod.entries]
            if idle:
                pod = idle[0]
            elif len(live) < pool.size:
                pod = self._new_pod(pool)
            else:
                room = [pod for pod in live if len(pod.entries) < DEPTH]
                if not room:
                    return
                pod = min(room, key=lambda p: len(p.entries))
            entry = pool.waiting.popleft()
            entry.pod = pod
            pod.entries.add(entry.task.task_id)
            if not self._outbox:  # one insert for all the entries addressed before the loop's next turn
                asyncio.get_running_loop().call_soon(lambda: self._spawn(self._send(), f"levrt-warm-send-{self.job}"))
            self._outbox.append(entry)

    async def _send(self) -> None:
        batch, self._outbox = self._outbox, []
        docs = []
        for entry in batch:
            assert entry.pod is not None
            doc = {**entry.body, "_id": entry.key, "attempt": entry.attempt, "worker": entry.pod.name,
                   "state": QUEUED, "queued": time.time()}
            if entry.signal:
                doc["signal"] = entry.signal
            doc["mac"] = entry_mac(entry.pool.secret, doc)
            docs.append(doc)
        try:
            await self.queue.insert_many(docs, ordered=False)
        except Exception as exc:
            refused = {e.get("index") for e in (getattr(exc, "details", None) or {}).get("writeErrors") or []}
            for index, entry in enumerate(batch):
                if not refused or index in refused:
                    self._fail(entry, TaskFailed(f"Task {entry.task.id} could not be handed to its warm Pod: the "
                                                 f"store refused it ({exc})", reason="StoreError", task=entry.task))

    def _new_pod(self, pool: _Pool) -> _WarmPod:
        index = pool.made
        pool.made += 1
        body = worker_pod(pool.cr, job=self.job, pool=pool.key, index=index, settings=self.settings,
                          key=pool.secret)
        pod = _WarmPod(name=body["metadata"]["name"], pool=pool)
        pool.pods[pod.name] = pod
        self._spawn(self._tend(pod, body), f"levrt-warm-pod-{pod.name}")
        return pod

    async def _tend(self, pod: _WarmPod, body: dict[str, Any]) -> None:
        """Create the warm Pod, wait for it to run, and give its entries back when it is gone."""
        try:
            await submit.submit(self.kube, self.settings.namespace, TaskObjects(pod=body, owned=[]), owner=self.owner())
            running = await self.wait_started(pod.name)
        except TaskFailed as exc:
            await self._cannot_start(pod, exc)
            return
        except LevrtError as exc:
            await self._cannot_start(pod, TaskFailed(f"Warm Pod {pod.name} could not be created: {exc}",
                                                     reason="CreateFailed"))
            return
        pod.ip = running.get("status", {}).get("podIP")
        pod.node = running.get("spec", {}).get("nodeName")
        log.debug("warm Pod %s runs on %s", pod.name, pod.node)
        ended = await self.watch.wait(pod.name, podstatus.finished)
        if not self._closing:
            await self._lost(pod, podstatus.failure(ended).reason or "PodEnded")

    async def _cannot_start(self, pod: _WarmPod, exc: TaskFailed) -> None:
        """A warm Pod that never ran fails its entries and those waiting for its pool (the pool's next
        Pod would meet the same image or placement), and every later entry of the pool."""
        pool = pod.pool
        pod.gone = True
        pool.broken = exc
        await self.delete_pod(pod.name)
        doomed = [self.entries[t] for t in pod.entries] + list(pool.waiting)
        pool.waiting.clear()
        for entry in doomed:
            self._fail(entry, exc)

    async def _lost(self, pod: _WarmPod, cause: str) -> None:
        """The warm Pod ended while entries were addressed to it: their ends are read once more, and
        the others go to another Pod (one that had started runs again while its retries allow)."""
        pod.gone = True
        pod.pool.pods.pop(pod.name, None)
        self.watch.forget(pod.name)
        if not pod.entries:
            return
        log.warning("warm Pod %s ended (%s) with %d entries out: they go to another Pod", pod.name, cause,
                    len(pod.entries))
        with contextlib.suppress(Exception):  # the store away: the entries run again rather than wait
            await self._read_ends()
        for task_id in sorted(pod.entries):
            entry = self.entries[task_id]
            if entry.result.done():
                continue
            with contextlib.suppress(Exception):
                await self.queue.delete_one({"_id": entry.key})
            if entry.started:
                entry.lost_runs += 1
                allowed = max(entry.task.cr.retries, 1)
                if entry.lost_runs > allowed:
                    self._fail(entry, TaskFailed(
                        f"Task {entry.task.id} failed: its warm Pod {pod.name} was lost while it ran ({cause}); "
                        f"after {allowed} retr{'y' if allowed == 1 else 'ies'}", reason="PodLost", task=entry.task))
                    continue
                entry.task.retries = entry.lost_runs
                self.record(task=task_id, state="retrying", retries=entry.lost_runs,
                            retryReason=f"its warm Pod {pod.name} was lost: {cause}")
            entry.attempt += 1
            entry.started, entry.pod = False, None
            entry.pool.waiting.appendleft(entry)
        pod.entries.clear()
        self._dispatch(pod.pool)

    # -- reading ends ----------------------------------------------------------------------------

    async def _poll(self) -> None:
        while not self._closing:
            if not self._outstanding():
                await self._retire_idle()
                await asyncio.sleep(1.0)
                if not self._outstanding() and not any(pool.pods for pool in self.pools.values()):
                    return
                continue
            try:
                await self._read_ends()
            except Exception as exc:  # the store is away a moment: the entries wait for it
                log.warning("cannot read the ends of job %d's warm entries: %s", self.job, exc)
                await asyncio.sleep(1.0)
            await self._retire_idle()
            pods = sum(len(pool.pods) for pool in self.pools.values())
            await asyncio.sleep(POLL if self._outstanding() <= pods else POLL_BUSY)

    def _outstanding(self) -> int:
        """Entries handed out or waiting whose end is not known yet."""
        return sum(1 for entry in self.entries.values() if not entry.result.done())

    async def _read_ends(self) -> None:
        found = [doc async for doc in self.queue.find({"job": self.job, "state": {"$in": [RUNNING, ENDED]}},
                                                      {"payload": 0, "tail": 0})]
        ended: list[str] = []
        logs: dict[int, tuple[str, dict[str, str], dict[str, str]]] = {}
        for doc in found:
            entry = self.entries.get(int(doc.get("task", -1)))
            if entry is None or doc["_id"] != entry.key or entry.result.done():
                continue
            if not entry.started:
                entry.started = True
                pod = entry.pod
                entry.task.pod = pod.name if pod else entry.task.pod
                entry.task.host = pod.ip if pod else None
                self.record(task=entry.task.task_id, state="running", pod=entry.task.pod, host=entry.task.host,
                            node=pod.node if pod else None)
            if doc["state"] == ENDED:
                ended.append(doc["_id"])
                cuts = {"main": str(doc["logCut"])} if doc.get("logCut") else {}
                logs[entry.task.task_id] = (entry.task.pod, {"main": str(doc.get("log") or "")}, cuts)
                self._end(entry, doc)
        if logs:
            self.archive.keep(logs)
        if ended:
            await self.queue.delete_many({"_id": {"$in": ended}})

    def _end(self, entry: _Entry, doc: Mapping[str, Any]) -> None:
        task = entry.task
        code = int(doc.get("exit", 1))
        reason = str(doc.get("reason") or "")
        end = entry_end(code, reason, signalled=task.signalled)
        text = str(doc.get("log") or "")
        self._release(entry)
        if end.state == "failed":
            self.record(task=task.task_id, state="failed", exitCode=code, reason=end.reason)
            name = f"{task.id} (in warm Pod {task.pod})"
            entry.result.set_exception(TaskFailed(failure_text(name, reason=end.reason, detail=end.detail),
                                                  exit_code=code, reason=end.reason, logs=text[-20000:], task=task))
            return
        if end.state == "timed-out":
            task.timed_out = True
        self.record(task=task.task_id, state=end.state, exitCode=code)
        entry.result.set_result(Document(self.store.collection(task.collection),
                                         {"_id": {"job": task.job_id, "task": task.task_id}},
                                         timed_out=task.timed_out, files=self.archive.files))

    def _fail(self, entry: _Entry, exc: TaskFailed) -> None:
        if entry.result.done():
            return
        self._release(entry)
        self.record(task=entry.task.task_id, state="failed", reason=exc.reason)
        entry.result.set_exception(exc)

    def _release(self, entry: _Entry) -> None:
        """An entry ended: its Pod has room again for the next one."""
        pod = entry.pod
        if pod is not None:
            pod.entries.discard(entry.task.task_id)
            if not pod.entries:
                pod.idle_since = time.monotonic()
            self._dispatch(pod.pool)

    async def _retire_idle(self) -> None:
        """Delete the warm Pods that had nothing to do for ``IDLE`` seconds."""
        now = time.monotonic()
        for pool in self.pools.values():
            for pod in list(pool.pods.values()):
                if not pod.entries and not pool.waiting and now - pod.idle_since > IDLE:
                    pod.gone = True
                    pool.pods.pop(pod.name, None)
                    log.debug("warm Pod %s idle for %.0f s: deleted", pod.name, now - pod.idle_since)
                    await self.delete_pod(pod.name)

    def _spawn(self, work: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(work)
        task.set_name(name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
