"""What ``levrt run`` shows of its job on a terminal: a live display (each task by name and state,
the job's progress bar), ending with a summary: counts by state, wall time, and each failed task
with the last lines of its traceback. The task rows and the summary are also what the plain output
(``levrt._cli.plain``, no terminal) prints.

Why apart: it is the one module that imports rich, and only when a terminal shows it.

Why it is built the way it is: rich's ``Live`` redraws its region by moving the cursor up as many
lines as it drew last time. Anything written to the terminal behind its back (the ``lev`` logger's
lines went straight to the stderr the logging handler held since before ``Live`` started) shifts
the region, and each redraw then left a copy of the title and the table's header above it. So
while the display runs, log records go through rich's console (above the region), and the region
never grows taller than the terminal: the rows that matter (failed, running, the latest done) are
shown, the others counted on one line. At 80 columns the name gives way (cut with an ellipsis):
the id and state columns keep their width.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sys
import time
from collections.abc import Awaitable, Iterator, Sequence
from typing import Any, TypeVar

from levrt._cli.ps import elapsed_text
from levrt._core.engine import Engine
from levrt._shapes.failures import TRACEBACK_LINES, traceback_tail
from levrt._shapes.podstatus import summary
from levrt.concurrent import progress_hook
from levrt.errors import TaskFailed
from levrt.task import Task

__all__ = ["REFRESH_SECONDS", "Row", "TaskClock", "job_table", "left_as", "live_progress", "pick_rows",
           "short_reason", "stop_ticker", "summary_lines", "task_rows"]

T = TypeVar("T")
STATES = ("pending", "running", "done", "cached", "timed-out", "failed", "cancelled", "deleted")
"""The state words counted in the caption; a ``pending(...)`` or ``failed(...)`` counts as its word."""
SETTLED = ("done", "cached", "timed-out", "failed")
"""The words of a task that ended by itself; any other word at the end of a run is what the run left."""
REFRESH_SECONDS = 0.25
FIXED_LINES = 8
"""Lines of the display besides the rows: title, three of the table's frame and header, its bottom,
the caption, the progress bar, and one spare so the last line never scrolls the terminal."""
ACTIVE = ("pending", "running", "retrying", "ending")


@dataclasses.dataclass(frozen=True)
class Row:
    """One task as the display and the summary show it."""

    id: str
    index: int
    name: str
    state: str
    elapsed: float | None
    retries: str
    host: str
    pod: str
    node: str
    reason: str = ""
    """Why it failed, on one line (``RuntimeError: target unreachable``)."""
    details: tuple[str, ...] = ()
    """What the summary shows under a failure: its traceback's last lines, else the Pod's Warning events."""

    @property
    def word(self) -> str:
        """The state without its detail: ``failed(Error)`` → ``failed``."""
        return self.state.split("(", 1)[0]


class TaskClock:
    """When the display first saw each task and when it saw it end (monotonic seconds): a task has
    no clock of its own, and a quarter of a second is all the precision a person reads."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.ended: dict[str, float] = {}

    def elapsed(self, task_id: str, *, ended: bool, now: float) -> float:
        start = self.started.setdefault(task_id, now)
        end = self.ended.setdefault(task_id, now) if ended else now
        return end - start


def _state(engine: Engine, task: Task) -> tuple[str, BaseException | None, str]:
    """(state, failure, node) of a task now: its end once known, else its Pod's, else pending."""
    failure = task.failure or engine.start_failures.get(task.task_id)
    pod = engine.watch.get(task.pod)
    node = str((pod or {}).get("spec", {}).get("nodeName") or "-")
    if failure is not None:
        reason = failure.reason if isinstance(failure, TaskFailed) else type(failure).__name__
        return f"failed({reason})", failure, node
    if task.cached_from is not None:
        return "cached", None, node
    if task.document is not None:
        return ("timed-out" if task.timed_out else "done"), None, node
    if task.timed_out:
        return "timed-out", None, node
    if pod is not None:
        return summary(pod), None, node
    # Not watched: not seen yet (just submitted), or forgotten a moment before done() returns.
    return ("ending" if task.host else "pending"), None, node


def _cause(failure: BaseException, pod: str) -> str:
    """Why a task failed, in one line without what the row says already: the engine's ``Task <pod>
    failed: Error (<the entry's exception>)`` is shown as the exception (``Error`` is Kubernetes' word
    for any non-zero exit); other reasons keep their word (``ErrImagePull (...)``)."""
    text = str(failure).strip().splitlines()
    line = text[0] if text else type(failure).__name__
    line = line.removeprefix(f"Task {pod} failed: ")
    if line.startswith("Error (") and line.endswith(")"):
        line = line[len("Error ("):-1]
    return line


def _details(failure: BaseException) -> tuple[str, ...]:
    """The lines under a failure in the summary: the last of its traceback, else the rest of its
    message (the engine quotes the Pod's Warning events there when there is no traceback)."""
    if isinstance(failure, TaskFailed):
        tail = traceback_tail(failure.logs)
        if tail:
            return tuple(tail)
    return tuple(str(failure).strip().splitlines()[1:][:TRACEBACK_LINES])


def task_rows(engine: Engine, clock: TaskClock, *, now: float | None = None, left: str | None = None,
              details: bool = False) -> list[Row]:
    """Every task of the job as a ``Row``, in the order of their ids. ``left``: the word for tasks
    that have not ended (the run is over and they were cancelled or deleted; see ``left_as``).
    ``details``: each failure's traceback or events too (for the summary; not read at each refresh)."""
    now = time.monotonic() if now is None else now
    rows = []
    for task in sorted(engine.tasks, key=lambda t: t.task_id):
        state, failure, node = _state(engine, task)
        over = left is not None and state.split("(", 1)[0] not in SETTLED
        if left is not None and over:
            state = left
        # A retried task shows its latest Pod and how many times the cluster's failures replaced it.
        retries = f"{task.retries}/{task.cr.retries}" if task.cr.retries else "-"
        elapsed = clock.elapsed(task.id, ended=task.ended or failure is not None or over, now=now)
        rows.append(Row(id=task.id, index=task.task_id, name=task.name, state=state, elapsed=elapsed, retries=retries,
                        host=task.host or "-", pod=task.pod, node=node,
                        reason="" if failure is None else _cause(failure, task.pod),
                        details=_details(failure) if failure is not None and details else ()))
    return rows


def left_as(engine: Engine, outcome: BaseException | None) -> str | None:
    """What the tasks still going when the orchestration ended are now. The session deletes the
    Pods of a job that was interrupted or raised, and of tasks never awaited unless ``--keep``."""
    if isinstance(outcome, asyncio.CancelledError | KeyboardInterrupt):
        return "cancelled"
    if outcome is not None or not engine.settings.keep:
        return "deleted"
    return None  # kept: they run on, and the summary says so


def pick_rows(rows: Sequence[Row], limit: int) -> tuple[list[Row], list[Row]]:
    """At most ``limit`` rows to show, and the rest. When they do not all fit: the failed first, then
    those still going, then the latest that ended; shown in the order of their ids."""
    if len(rows) <= limit:
        return list(rows), []
    limit = max(limit - 1, 0)  # one line says what is left out

    def rank(row: Row) -> tuple[int, int]:
        if row.word == "failed":
            return 0, row.index
        if row.word in ACTIVE:
            return 1, row.index
        return 2, -row.index

    chosen = sorted(rows, key=rank)[:limit]
    shown = {row.index for row in chosen}
    return sorted(chosen, key=lambda r: r.index), [r for r in rows if r.index not in shown]


def counts(rows: Sequence[Row]) -> dict[str, int]:
    found = dict.fromkeys(STATES, 0)
    for row in rows:
        word = row.word if row.word in found else ("pending" if row.word in ACTIVE else "done")
        found[word] += 1
    return found


NAME_MAX = 70
"""The widest the name column gets, however wide the terminal."""
NAME_MIN = 12
"""Below this the name says too little: the optional columns go first (pod, host, retries, elapsed)."""
OPTIONAL = ("pod", "host", "retries", "elapsed")
"""Columns in the order they give up their room to the name."""


def _columns(width: int) -> list[str]:
    """The columns a terminal ``width`` wide has room for: name and state always, host and Pod when wide."""
    columns = ["task", "name", "state", "elapsed", "retries"]
    if width >= 110:
        columns.append("host")
    if width >= 150:
        columns.append("pod")
    return columns


def _cells(row: Row, columns: Sequence[str]) -> list[str]:
    values = {"task": row.id, "name": row.name, "state": row.state, "elapsed": elapsed_text(row.elapsed),
              "retries": row.retries, "host": row.host, "pod": row.pod}
    return [values[c] for c in columns]


def _layout(lines: Sequence[Sequence[str]], width: int) -> tuple[list[str], int]:
    """The columns to show and the name's width, for the table's ``lines`` (header first) in ``width``
    columns. Every column but the name is as wide as its widest cell, so ids and states are never
    cut: the name takes what is left (an optional column goes when that would be under ``NAME_MIN``;
    in a terminal too narrow for even id and state, rich narrows every column).
    Each column costs its cells, a space either side and its left border; the table one more border."""
    from rich.cells import cell_len  # rich, as in job_table: only when a terminal shows the table

    full = _columns(width)
    widest = {column: max(cell_len(line[i]) for line in lines) for i, column in enumerate(full)}
    columns = list(full)
    for optional in OPTIONAL:
        room = width - 1 - sum(widest[c] + 3 for c in columns if c != "name") - 3
        if room >= NAME_MIN or optional not in columns:
            continue
        columns.remove(optional)
    room = width - 1 - sum(widest[c] + 3 for c in columns if c != "name") - 3
    return columns, max(min(room, NAME_MAX), 1)


def job_table(job_id: int, rows: Sequence[Row], *, fraction: float, height: int, width: int) -> Any:
    """The display for a terminal ``height`` lines by ``width`` columns: never taller than it, each
    task on one line (a wrapped cell would break the count), never wider (the name is cut first)."""
    # rich, as in live_progress: loaded only when a terminal shows the table.
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    full = _columns(width)
    shown, hidden = pick_rows(rows, max(height - FIXED_LINES, 1))
    lines = [full] + [_cells(row, full) for row in shown]
    if hidden:
        left = counts(hidden)
        lines.append(["...", f"{len(hidden)} more: " + ", ".join(f"{n} {w}" for w, n in left.items() if n),
                      *([""] * (len(full) - 2))])
    columns, name_width = _layout(lines, width)
    table = Table(title=Text(f"levrt job {job_id}", no_wrap=True, overflow="ellipsis"), expand=False)
    for column in columns:
        table.add_column(column, no_wrap=True, overflow="ellipsis", max_width=name_width if column == "name" else None)
    for line in lines[1:]:
        table.add_row(*(cell for column, cell in zip(full, line, strict=True) if column in columns))
    # One line whatever the width: a wrapped caption would be a line the height did not count.
    tally = " ".join(f"{k}: {v}" for k, v in counts(rows).items() if v) or "no tasks yet"
    table.caption = Text(tally, no_wrap=True, overflow="ellipsis")
    grid = Table.grid()
    grid.add_row(table)
    grid.add_row(ProgressBar(total=1.0, completed=fraction, width=min(50, max(width - 2, 10))))
    return grid


REASON_MAX = 160
"""The most of a failure's one-line reason a summary or a state line shows."""


def short_reason(text: str) -> str:
    return text if len(text) <= REASON_MAX else text[:REASON_MAX - 3] + "..."


def summary_lines(job_id: int, rows: Sequence[Row], *, wall: float) -> list[str]:
    """The end of a run in a few lines: counts by state, the wall time, each failed task, why, and
    under it the last lines of its traceback (else the Pod's Warning events)."""
    found = {word: n for word, n in counts(rows).items() if n}
    tally = ", ".join(f"{n} {word}" for word, n in found.items()) or "no tasks"
    lines = [f"job {job_id}: {len(rows)} task{'s' if len(rows) != 1 else ''} ({tally}) in {elapsed_text(wall)}"]
    for row in rows:
        if row.word == "failed":
            lines.append(f"  failed {row.id} {row.name}: {short_reason(row.reason or row.state)}")
            lines.extend(f"    {line}" for line in row.details)
    return lines


async def stop_ticker(ticker: asyncio.Task[None]) -> None:
    ticker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await ticker


class _ConsoleHandler(logging.Handler):
    """Log records printed through rich's console, above the live region (``progress:`` lines are
    left out: the bar shows them)."""

    def __init__(self, console: Any, formatter: logging.Formatter | None, level: int) -> None:
        super().__init__(level)
        self.console = console
        self.setFormatter(formatter or logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if record.name == "lev" and record.getMessage().startswith("progress: "):
                return
            # Not markup: a log line may hold brackets ("[Errno 111]") rich would take for styles.
            self.console.print(self.format(record), markup=False, highlight=False, emoji=False)
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def _logs_through(console: Any) -> Iterator[None]:
    """While the display runs, the handlers that write to the terminal write through ``console``."""
    root = logging.getLogger()
    terminal = (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)
    moved = [h for h in root.handlers
             if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) in terminal]
    if not moved:
        yield
        return
    handler = _ConsoleHandler(console, moved[0].formatter, moved[0].level)
    for old in moved:
        root.removeHandler(old)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        for old in moved:
            root.addHandler(old)


async def live_progress(engine: Engine, main: Awaitable[T]) -> T:
    """Await ``main`` while the job's tasks and its progress bar are shown on stderr; then a summary."""
    # rich draws the display: imported only when a terminal shows it.
    from rich.console import Console
    from rich.live import Live

    console = Console(stderr=True)
    clock = TaskClock()
    fraction = [0.0]
    began = time.monotonic()

    def on_progress(done: int, total: int) -> None:
        fraction[0] = done / total if total else 0.0

    def frame(left: str | None = None) -> Any:
        return job_table(engine.job_id, task_rows(engine, clock, left=left), fraction=fraction[0],
                         height=console.size.height, width=console.size.width)

    async def refresh(live: Any) -> None:
        while True:
            live.update(frame(), refresh=True)
            await asyncio.sleep(REFRESH_SECONDS)

    outcome: BaseException | None = None
    with progress_hook(on_progress), _logs_through(console):
        try:
            with Live(frame(), console=console, auto_refresh=False, transient=False,
                      vertical_overflow="crop") as live:
                ticker = asyncio.create_task(refresh(live))
                try:
                    return await main
                except BaseException as exc:
                    outcome = exc
                    raise
                finally:
                    await stop_ticker(ticker)
                    live.update(frame(left_as(engine, outcome)), refresh=True)
        finally:
            rows = task_rows(engine, clock, left=left_as(engine, outcome), details=True)
            for line in summary_lines(engine.job_id, rows, wall=time.monotonic() - began):
                # soft_wrap: a traceback line wider than the terminal is wrapped by it, not cut into lines
                console.print(line, highlight=False, markup=False, soft_wrap=True)
