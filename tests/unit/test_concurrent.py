"""Concurrent: the limit holds, failures don't cancel siblings and are grouped, progress is logged."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from levrt import Concurrent
from levrt.concurrent import progress_hook
from levrt.errors import LevrtError


class Recorder:
    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.events: list[tuple[str, int]] = []

    async def job(self, i: int, *, delay: float = 0.01, fail: bool = False) -> int:
        self.running += 1
        self.peak = max(self.peak, self.running)
        self.events.append(("start", i))
        try:
            await asyncio.sleep(delay)
            if fail:
                raise ValueError(f"job {i} failed")
            return i
        finally:
            self.running -= 1
            self.events.append(("end", i))


@pytest.mark.parametrize("limit", [1, 3, 5])
async def test_observed_max_concurrency_equals_limit(limit: int) -> None:
    rec = Recorder()
    async with Concurrent(limit=limit) as c:
        tasks = [c.start(rec.job(i)) for i in range(12)]
    assert rec.peak == limit
    assert [t.result() for t in tasks] == list(range(12))


async def test_no_limit_runs_all_at_once() -> None:
    rec = Recorder()
    async with Concurrent() as c:
        for i in range(20):
            c.start(rec.job(i))
    assert rec.peak == 20


async def test_failures_do_not_cancel_siblings_and_are_grouped() -> None:
    rec = Recorder()
    with pytest.raises(ExceptionGroup) as info:
        async with Concurrent(limit=2) as c:
            c.start(rec.job(0, delay=0.0, fail=True))
            slow = c.start(rec.job(1, delay=0.05))
            c.start(rec.job(2, delay=0.01, fail=True))
            c.start(rec.job(3, delay=0.02))
    assert sorted(str(e) for e in info.value.exceptions) == ["job 0 failed", "job 2 failed"]
    assert "2 of 4" in str(info.value)
    assert slow.result() == 1 and not slow.cancelled()
    assert sorted(i for kind, i in rec.events if kind == "end") == [0, 1, 2, 3]


async def test_progress_is_logged_and_hooked(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[tuple[int, int]] = []
    hooked: list[tuple[int, int]] = []
    rec = Recorder()
    with caplog.at_level(logging.INFO, logger="lev"), progress_hook(lambda d, t: hooked.append((d, t))):
        async with Concurrent(limit=1, on_progress=lambda d, t: calls.append((d, t))) as c:
            for i in range(4):
                c.start(rec.job(i))
    messages = [r.getMessage() for r in caplog.records if r.name == "lev"]
    assert messages == ["progress: 0.25", "progress: 0.5", "progress: 0.75", "progress: 1"]
    assert calls == hooked == [(1, 4), (2, 4), (3, 4), (4, 4)]


async def test_cancelling_the_block_cancels_children() -> None:
    rec = Recorder()
    entered = asyncio.Event()

    async def orchestration() -> None:
        async with Concurrent(limit=2) as c:
            for i in range(5):
                c.start(rec.job(i, delay=10))
            entered.set()

    outer = asyncio.create_task(orchestration())
    await entered.wait()
    await asyncio.sleep(0.01)
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert rec.running == 0
    assert [i for kind, i in rec.events if kind == "start"] == [0, 1]  # the rest never started


async def test_children_may_start_more_children() -> None:
    rec = Recorder()

    async with Concurrent(limit=2) as c:

        async def parent() -> None:
            await rec.job(0)
            c.start(rec.job(1))

        c.start(parent())
    assert sorted(i for kind, i in rec.events if kind == "end") == [0, 1]


async def test_misuse() -> None:
    c = Concurrent()
    with pytest.raises(LevrtError, match="inside its block"):
        c.start(asyncio.sleep(0))
    async with c:
        with pytest.raises(LevrtError, match="parentheses"):
            c.start(asyncio.sleep)  # type: ignore[arg-type]
    with pytest.raises(LevrtError, match="already used"):
        async with c:
            pass


async def test_an_async_mode_returning_an_awaitable_has_it_run() -> None:
    # 1.x authors write `async def` modes that return a Cr: c.start(mode(x)) runs the Cr too.
    class Run:
        def __init__(self, target: str) -> None:
            self.target = target

        def __await__(self) -> Any:
            async def done() -> str:
                return f"document of {self.target}"

            return done().__await__()

    async def mode(target: str) -> Run:
        return Run(target)

    async with Concurrent(limit=2) as c:
        tasks = [c.start(mode(t)) for t in ("a", "b")]
    assert [await t for t in tasks] == ["document of a", "document of b"]
