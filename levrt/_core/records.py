"""Task status records, written in order and in batches, off the hot path of a task.

Why: every task records its status three times (submitting, running, its end). Written one
request each, concurrently, a fan-out of thousands sent the store thousands of writes at once,
some of them arriving out of order (a task could end "running" after it had "succeeded") and
two upserts of one new record could collide in the store. Here one writer sends, one request
at a time, every change made since its last request, merged per task in the order it was made.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

from levrt._clients.store import Store
from levrt.errors import StoreError

__all__ = ["CLOSE_TIMEOUT", "StatusRecords"]

CLOSE_TIMEOUT = 60.0
"""Seconds the end of a job waits for the store to take the last status records."""

log = logging.getLogger("lev")


class StatusRecords:
    """``record(task, **fields)`` now, written soon; ``close()`` writes what is left."""

    def __init__(self, store: Store, *, job: int) -> None:
        self._store = store
        self._job = job
        self._pending: dict[int, dict[str, Any]] = {}
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self.writes = 0
        """Requests sent to the store (for tests and benches)."""

    def record(self, task: int, **fields: Any) -> None:
        self._pending.setdefault(task, {}).update(fields, updated=dt.datetime.now(dt.UTC))
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()
            if self._closing:
                return

    async def flush(self) -> None:
        """Write what is pending now (and what is recorded meanwhile)."""
        while self._pending:
            batch, self._pending = self._pending, {}
            try:
                await self._store.record_tasks(job=self._job, updates=batch)
            except StoreError as exc:
                log.warning("could not record the status of %d task(s) of job %d: %s", len(batch), self._job, exc)
            self.writes += 1

    async def close(self, *, timeout: float = CLOSE_TIMEOUT) -> None:
        """Write what is left: the writer finishes the batch it is sending (cancelling it would lose
        that batch), then whatever came since. A store that does not answer within ``timeout``
        loses the rest, with a warning, rather than holding the job open."""
        if self._writer is None:
            return
        self._closing = True
        self._wake.set()
        try:
            await asyncio.wait_for(self._writer, timeout)
        except TimeoutError:
            log.warning("the store did not take the status of %d task(s) of job %d within %.0f s; not recorded",
                        len(self._pending), self._job, timeout)
        self._writer = None
