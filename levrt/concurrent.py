"""``Concurrent(limit)``: run many awaitables (Crs, coroutines) with at most ``limit`` at once.

Why not ``asyncio.TaskGroup``: a scan of 500 targets must not stop because target 17 failed —
a failure here does not cancel siblings; all failures are raised together (``ExceptionGroup``)
once every child has finished. And a long run needs a bound (the cluster, the targets) and
progress: each finished child logs ``progress: <fraction>`` on logger ``lev`` and calls the
progress hooks (the CLI's progress bar installs one with ``progress_hook``).

A child that returns an awaitable (an ``async def`` mode returning a ``Cr``) has that awaited
too. Leaving the block waits for every child; cancelling the block (or an error in its own body)
cancels the children.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from levrt.errors import LevrtError

__all__ = ["Concurrent", "ProgressHook", "progress_hook"]

log = logging.getLogger("lev")

T = TypeVar("T")
ProgressHook = Callable[[int, int], None]
"""Called as ``hook(done, total)`` each time a child of a ``Concurrent`` block finishes."""

_hooks: contextvars.ContextVar[tuple[ProgressHook, ...]] = contextvars.ContextVar(
    "levrt_progress_hooks", default=()
)


@contextlib.contextmanager
def progress_hook(hook: ProgressHook) -> Iterator[None]:
    """Call ``hook(done, total)`` for every ``Concurrent`` block run in this context (the CLI's bar)."""
    token = _hooks.set((*_hooks.get(), hook))
    try:
        yield
    finally:
        _hooks.reset(token)


async def _run_through(aw: Awaitable[T]) -> T:
    """Await ``aw``; if it gives back something awaitable (1.x authors write ``async def`` modes
    that return a ``Cr``), await that too, so ``c.start(mode(x))`` runs the Cr either way."""
    result: Any = await aw
    if inspect.isawaitable(result):
        result = await result
    return result  # type: ignore[no-any-return]


class Concurrent:
    """``async with Concurrent(limit=5) as c: c.start(aw)`` — bounded, failure-tolerant fan-out."""

    def __init__(self, limit: int | None = None, *, on_progress: ProgressHook | None = None) -> None:
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise LevrtError(
                f"Concurrent(limit={limit!r}): the limit is a whole number >= 1, or None for no limit."
            )
        self.limit = limit
        self.on_progress = on_progress
        self._semaphore: asyncio.Semaphore | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._done = 0
        self._open = False
        self._closed = False

    @property
    def total(self) -> int:
        return len(self._tasks)

    @property
    def done(self) -> int:
        return self._done

    async def __aenter__(self) -> Concurrent:
        if self._open or self._closed:
            raise LevrtError("This Concurrent was already used; create a new Concurrent() for each block.")
        self._open = True
        self._semaphore = asyncio.Semaphore(self.limit) if self.limit else None
        return self

    def start(self, aw: Awaitable[T]) -> asyncio.Task[T]:
        """Schedule ``aw`` (a ``Cr``, a coroutine, any awaitable); returns its ``asyncio.Task``."""
        if not self._open:
            if inspect.iscoroutine(aw):
                aw.close()
            raise LevrtError(
                "Concurrent.start() is only allowed inside its block: "
                "`async with Concurrent(limit=5) as c: c.start(...)`."
            )
        if not inspect.isawaitable(aw):
            hint = " Did you forget parentheses, c.start(scan(url))?" if callable(aw) else ""
            raise LevrtError(f"Concurrent.start({aw!r:.60}) needs an awaitable (a Cr or a coroutine).{hint}")
        task: asyncio.Task[T] = asyncio.get_running_loop().create_task(self._run(aw))
        self._tasks.append(task)
        task.add_done_callback(self._finished)
        return task

    async def _run(self, aw: Awaitable[T]) -> T:
        started = False
        try:
            if self._semaphore is None:
                started = True
                return await _run_through(aw)
            async with self._semaphore:
                started = True
                return await _run_through(aw)
        finally:
            if not started and inspect.iscoroutine(aw):
                aw.close()  # cancelled while waiting for a slot: never ran, don't warn

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._done += 1
        done, total = self._done, len(self._tasks)
        log.info("progress: %s", f"{done / total:.4g}")
        for hook in _hooks.get():
            self._call(hook, done, total)
        if self.on_progress is not None:
            self._call(self.on_progress, done, total)

    @staticmethod
    def _call(hook: Callable[..., None], *args: Any) -> None:
        try:
            hook(*args)
        except Exception:  # a broken progress display must not break the run
            log.exception("progress hook %r failed", hook)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        try:
            if exc is not None:
                self._cancel()
            await self._wait_all()
        except asyncio.CancelledError:
            self._cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            raise
        finally:
            self._open = False
            self._closed = True
        if exc is not None:
            return  # the block's own error propagates
        failures = [
            t.exception() for t in self._tasks if t.done() and not t.cancelled() and t.exception() is not None
        ]
        errors = [e for e in failures if isinstance(e, Exception)]
        if errors:
            raise ExceptionGroup(f"{len(errors)} of {len(self._tasks)} tasks in Concurrent failed", errors)

    async def _wait_all(self) -> None:
        # Children may start more children: wait until no unfinished task is left.
        while pending := [t for t in self._tasks if not t.done()]:
            await asyncio.wait(pending)

    def _cancel(self) -> None:
        for task in self._tasks:
            task.cancel()

    def __repr__(self) -> str:
        return f"<Concurrent limit={self.limit} {self._done}/{len(self._tasks)} done>"
