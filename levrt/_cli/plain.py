"""What ``levrt run`` prints of its job without a terminal (``--no-progress``, output piped, an
orchestration Pod whose output is read with ``levrt logs``): one line each time a task's state
changes, then the summary the live display ends with (``levrt._cli.display``).

Why lines: a log is read after the fact, top to bottom, so nothing in it is redrawn and nothing
goes backwards (the ``progress: <fraction>`` lines of each ``Concurrent`` block started again from 0
at each block; they are left out, the task lines say more).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
import time
from collections.abc import Awaitable, Iterator, Sequence
from typing import IO, TypeVar

from levrt._cli.display import (
    REFRESH_SECONDS,
    Row,
    TaskClock,
    left_as,
    short_reason,
    stop_ticker,
    summary_lines,
    task_rows,
)
from levrt._cli.ps import elapsed_text
from levrt._core.engine import Engine

__all__ = ["StateLines", "plain_progress"]

T = TypeVar("T")


class StateLines:
    """The plain record of a run: a line each time a task's state (its word, and its retry) changes,
    ``12.3 tcpscan.scan(10.0.0.1, 2200-2219): running``, ``...: done in 3.1s``. A moment's state
    between two looks (``ending``: its Pod ended, its result being read; ``failed`` before its
    reason is known) is no change."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[str, str]] = {}

    def changes(self, rows: Sequence[Row], *, final: bool = False) -> list[str]:
        """The lines for what changed since the last look. Until ``final``, a task whose Pod ended
        failed while the engine still reads why (no reason yet) waits for the reason: its line is
        printed once, with the entry's exception."""
        lines = []
        for row in rows:
            if row.word == "ending" or (row.word == "failed" and not row.reason and not final):
                continue
            now = (row.word, row.retries)
            if self.seen.get(row.id) != now:
                self.seen[row.id] = now
                lines.append(f"{row.id} {row.name}: {self.state_text(row)}")
        return lines

    @staticmethod
    def state_text(row: Row) -> str:
        took = elapsed_text(row.elapsed)
        if row.word == "done":
            return f"done in {took}"
        if row.word == "timed-out":
            return f"timed out after {took}"
        if row.word == "failed":
            return f"failed in {took} ({short_reason(row.reason or row.state)})"
        retried = row.retries.split("/", 1)[0]
        return row.word + (f" (retry {row.retries})" if retried not in ("-", "0") else "")


FRACTION = re.compile(r"progress: [0-9.e+-]+")
"""A ``Concurrent`` block's ``progress: <fraction>`` line (each block counts from 0 again)."""


def _is_fraction(record: logging.LogRecord) -> bool:
    return record.name == "lev" and FRACTION.fullmatch(record.getMessage()) is not None


@contextlib.contextmanager
def _without_fractions() -> Iterator[None]:
    """While the plain lines are printed, the ``lev`` logger leaves out the blocks' fractions."""
    lev = logging.getLogger("lev")

    def keep(record: logging.LogRecord) -> bool:
        return not _is_fraction(record)

    lev.addFilter(keep)
    try:
        yield
    finally:
        lev.removeFilter(keep)


async def plain_progress(engine: Engine, main: Awaitable[T], *, out: IO[str] | None = None) -> T:
    """Await ``main`` while each task's state changes are printed as lines (to ``out``, stderr by
    default); then the summary the live display prints."""
    stream = sys.stderr if out is None else out
    clock = TaskClock()
    lines = StateLines()
    began = time.monotonic()

    def show(rows: Sequence[Row], *, final: bool = False) -> None:
        for line in lines.changes(rows, final=final):
            print(line, file=stream, flush=True)

    async def follow() -> None:
        while True:
            show(task_rows(engine, clock))
            await asyncio.sleep(REFRESH_SECONDS)

    outcome: BaseException | None = None
    with _without_fractions():
        ticker = asyncio.create_task(follow())
        try:
            return await main
        except BaseException as exc:
            outcome = exc
            raise
        finally:
            await stop_ticker(ticker)
            rows = task_rows(engine, clock, left=left_as(engine, outcome), details=True)
            show(rows, final=True)
            for line in summary_lines(engine.job_id, rows, wall=time.monotonic() - began):
                print(line, file=stream, flush=True)
