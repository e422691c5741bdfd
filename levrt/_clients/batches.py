"""Changes keyed by task, merged in the order they were made and handed on in batches by one writer.

Why: bookkeeping a job does for every task (status records in the store, deleting payload Secrets)
would otherwise be one request per task, sent concurrently: thousands at once in a fan-out, and
out of order. Both go through this: ``add`` returns at once; one writer hands ``send`` everything
added since its last call, one call at a time, so a later change never overtakes an earlier one.
Closing lets the writer finish the batch it is sending (cancelling it would lose that batch).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["Batches", "Send"]

Send = Callable[[dict[int, dict[str, Any]]], Awaitable[None]]
"""Takes one batch (task → its merged fields); handles its own errors (a raise stops the writer)."""


class Batches:
    """``add(task, **fields)`` now, sent soon; ``linger`` seconds gather changes made together, cut short
    once ``full`` tasks are pending; ``max_batch`` tasks at most per ``send`` (None: everything pending)."""

    def __init__(self, send: Send, *, linger: float = 0.0, max_batch: int | None = None,
                 full: int | None = None) -> None:
        self._send = send
        self._linger = linger
        self._max_batch = max_batch
        self._full = full
        self._pending: dict[int, dict[str, Any]] = {}
        self._sending = 0
        self.unanswered = 0
        """Tasks of the batch that was being sent when ``close`` gave up: sent, never answered."""
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._filled = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Tasks with changes not handed to ``send`` yet."""
        return len(self._pending)

    def add(self, task: int, **fields: Any) -> None:
        self._pending.setdefault(task, {}).update(fields)
        if self._full is not None and len(self._pending) >= self._full:
            self._filled.set()
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()

    def drop(self) -> None:
        """Forget what is pending (``send`` learnt that it can never be sent)."""
        self._pending.clear()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if self._linger and not self._filled.is_set():
                await self._wait_linger()
            # Cut short by a full batch: only full batches go; the rest waits for more, or its linger.
            full_only = self._filled.is_set() and not self._closing.is_set()
            self._wake.clear()
            self._filled.clear()
            await self.flush(full_only=full_only)
            if self._closing.is_set():
                return
            if self._pending:
                self._wake.set()

    async def _wait_linger(self) -> None:
        """``linger`` seconds, or less: closing, or a full batch, cuts it short."""
        ends = [asyncio.ensure_future(self._closing.wait()), asyncio.ensure_future(self._filled.wait())]
        try:
            await asyncio.wait(ends, timeout=self._linger, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for end in ends:
                end.cancel()

    async def flush(self, *, full_only: bool = False) -> None:
        """Hand ``send`` what is pending now (and what is added meanwhile); with ``full_only``, only as
        long as a full batch is pending."""
        while self._pending and not (full_only and self._full is not None and len(self._pending) < self._full):
            if self._max_batch is None or len(self._pending) <= self._max_batch:
                batch, self._pending = self._pending, {}
            else:  # the oldest changes first: a dict keeps the order tasks were first added in
                keys = list(itertools.islice(self._pending, self._max_batch))
                batch = {key: self._pending.pop(key) for key in keys}
            self._sending = len(batch)
            try:
                await self._send(batch)
            finally:
                self._sending = 0

    async def close(self, *, timeout: float) -> bool:
        """Send what is left; False if that took longer than ``timeout``: ``pending`` were not sent,
        ``unanswered`` were sent without an answer."""
        if self._writer is None:
            return True
        self._closing.set()
        self._wake.set()
        writer = self._writer
        try:
            done, _ = await asyncio.wait({writer}, timeout=timeout)
            if writer in done:
                writer.result()
                return True
            self.unanswered = self._sending  # read before cancelling the send clears it
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            return False
        finally:
            self._writer = None
            self._closing.clear()
