"""Task status records, written in order and in batches (``levrt._clients.batches``), off the hot path.

Why: every task records its status three times (submitting, running, its end). Written one
request each, concurrently, a fan-out of thousands sent the store thousands of writes at once,
some of them arriving out of order (a task could end "running" after it had "succeeded") and
two upserts of one new record could collide in the store. Here one writer sends, one request
at a time, every change made since its last request, merged per task in the order it was made.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from levrt._clients.batches import Batches
from levrt._clients.store import MAX_UPDATES_PER_REQUEST, Store
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
        self._batches = Batches(self._write, max_batch=MAX_UPDATES_PER_REQUEST)
        self.writes = 0
        """Requests sent to the store (for tests and benches)."""

    def record(self, task: int, **fields: Any) -> None:
        self._batches.add(task, **fields, updated=dt.datetime.now(dt.UTC))

    async def _write(self, batch: dict[int, dict[str, Any]]) -> None:
        try:
            await self._store.record_tasks(job=self._job, updates=batch)
        except StoreError as exc:
            log.warning("could not record the status of %d task(s) of job %d: %s", len(batch), self._job, exc)
        self.writes += 1

    async def close(self, *, timeout: float = CLOSE_TIMEOUT) -> None:
        """Write what is left. A store that does not take it within ``timeout`` loses the rest, with
        a warning, rather than holding the job open. The warning tells what was never sent (not
        recorded) from what was sent without an answer (the store may well have taken it)."""
        sending = 0 if await self._batches.close(timeout=timeout) else self._batches.unanswered
        unsent = self._batches.pending
        if unsent or sending:
            log.warning("the store did not answer within %.0f s: the status of %d task(s) of job %d was not sent "
                        "(not recorded)%s", timeout, unsent, self._job,
                        f", and {sending} more were sent without an answer (the store may have taken them)"
                        if sending else "")
