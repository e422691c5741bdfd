"""The ends that a job's task runtimes report through the store (``levrt.endreports``).

Why: a task Pod's end reaches the engine through the kubelet, which notices a container's exit on
its next relist (about a second) and then posts the Pod's status; its logs are one more read from
the apiserver. The runtime writes both to the store as the entry ends, so one loop here reads the
reports of every task of the job, ``POLL`` seconds apart while any task is expected to report
(``POLL_QUIET`` once nothing started or ended for a while).

A report is taken only when its signature holds under the task's key, which is derived from a
secret of this job alone (``task_key``) and reaches the task through its payload Secret: the
collection is in the task database, which every task may write. A report that does not verify is
deleted and logged. Each report read is deleted; the job's end deletes any left (a task that ended
after its job). A store that does not answer costs nothing but time: the Pod's own end still comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import time
from collections.abc import Mapping
from typing import Any

from levrt._clients.store import Store
from levrt.endreports import COLLECTION, report_mac, task_key

__all__ = ["POLL", "POLL_AWAY", "POLL_QUIET", "Report", "ReportedEnds"]

log = logging.getLogger("lev")

POLL = 0.05
"""Seconds between two reads of the reports while tasks start or end."""
POLL_QUIET = 0.5
"""Seconds between two reads once no task started or reported for ``QUIET`` seconds (long scans
running): the store is not read twenty times a second for hours."""
QUIET = 30.0
POLL_AWAY = 1.0
"""Seconds before the next read after the store did not answer."""

Report = Mapping[str, Any]


class ReportedEnds:
    """The reports of one job's tasks: ``expect`` a Pod's report, wait for it on ``reported``, ``take``
    what came; ``look`` reads at once (the Pod ended first)."""

    def __init__(self, store: Store, *, job: int, secret: bytes | None = None) -> None:
        self.store, self.job = store, job
        self.secret = secret if secret is not None else secrets.token_bytes(32)
        self.reports = store.collection(COLLECTION)
        self._expected: dict[str, asyncio.Future[Report]] = {}
        """Pods that may report, and their report once it came (verified)."""
        self._poller: asyncio.Task[None] | None = None
        """Started by the first ``expect``: no reports to delete at the end of a job that expected none."""
        self._stirred = time.monotonic()
        """When a task last started or reported."""

    def key(self, task: int) -> str:
        """Task ``task``'s reporting key, for its payload Secret."""
        return task_key(self.secret, self.job, task)

    def expect(self, pod: str) -> None:
        """The task Pod ``pod`` (its runtime has its key) may report its end."""
        self._stirred = time.monotonic()
        if pod not in self._expected:
            self._expected[pod] = asyncio.get_running_loop().create_future()
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll(), name=f"levrt-ends-{self.job}")

    def expects(self, pod: str) -> bool:
        return pod in self._expected

    def reported(self, pod: str) -> asyncio.Future[Report]:
        """Done with ``pod``'s report once it came (never, for a Pod that was not expected)."""
        future = self._expected.get(pod)
        if future is None:
            future = asyncio.get_running_loop().create_future()
        return future

    def take(self, pod: str) -> Report | None:
        """``pod``'s report if it came, and stop expecting it."""
        future = self._expected.pop(pod, None)
        if future is None or not future.done() or future.cancelled():
            return None
        return future.result()

    async def look(self, pod: str) -> None:
        """Read the reports now, if ``pod`` may report and its report has not come: its Pod has ended,
        so what its runtime reported is in the store already (it wrote before it exited)."""
        future = self._expected.get(pod)
        if future is not None and not future.done():
            with contextlib.suppress(Exception):  # the apiserver's log is the fallback
                await self._read()

    def forget(self, pod: str) -> None:
        self._expected.pop(pod, None)

    async def close(self, *, delete: bool = True) -> None:
        """Stop reading; with ``delete``, delete this job's reports still in the store (bounded, never
        raises). A job handed over keeps them: the next orchestration Pod follows its tasks."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._poller
        self._expected.clear()
        if self._poller is not None and delete:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(10):
                    await self.reports.delete_many({"job": self.job})

    def _waiting(self) -> bool:
        return any(not future.done() for future in self._expected.values())

    async def _poll(self) -> None:
        while self._waiting():
            try:
                await self._read()
            except Exception as exc:  # the Pods' own ends still come through the kubelet
                log.debug("cannot read the end reports of job %d: %s", self.job, exc)
                await asyncio.sleep(POLL_AWAY)
                continue
            await asyncio.sleep(POLL if time.monotonic() - self._stirred < QUIET else POLL_QUIET)

    async def _read(self) -> None:
        found = [doc async for doc in self.reports.find({"job": self.job})]
        if not found:
            return
        self._stirred = time.monotonic()
        for doc in found:
            pod = str(doc.get("_id"))
            future = self._expected.get(pod)
            if future is None or future.done():
                continue  # a Pod no longer waited for, or one this job's previous Pod started: deleted
            if self._verified(doc):
                future.set_result(doc)
            else:
                log.warning("the end report of %s (job %d) is not signed with its task's key: ignored", pod, self.job)
        await self.reports.delete_many({"_id": {"$in": [doc["_id"] for doc in found]}})

    def _verified(self, doc: Report) -> bool:
        try:
            key = self.key(int(doc["task"]))
        except (KeyError, TypeError, ValueError):
            return False
        return hmac.compare_digest(str(doc.get("mac", "")), report_mac(key, doc))
