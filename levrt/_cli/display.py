"""The live display of ``levrt run`` on a terminal: each task by name and state, the job's progress
bar, and a summary at the end.

Why apart: it is the one module that imports rich, and only when a terminal shows it.

Why it is built the way it is: rich's ``Live`` redraws its region by moving the cursor up as many
lines as it drew last time. Anything written to the terminal behind its back (the ``lev`` logger's
lines went straight to the stderr the logging handler held since before ``Live`` started) shifts
the region, and each redraw then left a copy of the title and the table's header above it. So
while the display runs, log records go through rich's console (above the region), and the region
never grows taller than the terminal: the rows that matter (failed, running, the latest done) are
shown, the others counted on one line.
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

from levrt._cli.tasks import elapsed_text
from levrt._core.engine import Engine
from levrt._shapes.podstatus import summary
from levrt.concurrent import progress_hook
from levrt.errors import TaskFailed
from levrt.task import Task

__all__ = ["Row", "TaskClock", "job_table", "live_progress", "pick_rows", "summary_lines",
           "task_rows"]

T = TypeVar("T")
STATES = ("pending", "running", "done", "timed-out", "failed")
"""The state words counted in the caption; a ``pending(...)`` or ``failed(...)`` counts as its word."""
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


def _state(engine: Engine, task: Task) -> tuple[str, str, str]:
    """(state, reason, node) of a task now: its end once known, else its Pod's, else pending."""
    failure = task.failure
    pod = engine.watch.get(task.pod)
    node = str((pod or {}).get("spec", {}).get("nodeName") or "-")
    if failure is not None:
        reason = failure.reason if isinstance(failure, TaskFailed) else type(failure).__name__
        return f"failed({reason})", _one_line(failure), node
    if task.document is not None:
        return ("timed-out" if task.timed_out else "done"), "", node
    if task.timed_out:
        return "timed-out", "", node
    if pod is not None:
        return summary(pod), "", node
    # Not watched: not seen yet (just submitted), or forgotten a moment before done() returns.
    return ("ending" if task.host else "pending"), "", node


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def task_rows(engine: Engine, clock: TaskClock, *, now: float | None = None) -> list[Row]:
    """Every task of the job as a ``Row``, in the order of their ids."""
    now = time.monotonic() if now is None else now
    rows = []
    for task in sorted(engine.tasks, key=lambda t: t.task_id):
        state, reason, node = _state(engine, task)
        # A retried task shows its latest Pod and how many times the cluster's failures replaced it.
        retries = f"{task.retries}/{task.cr.retries}" if task.cr.retries else "-"
        elapsed = clock.elapsed(task.id, ended=task.ended, now=now)
        rows.append(Row(id=task.id, index=task.task_id, name=task.name, state=state, elapsed=elapsed, retries=retries,
                        host=task.host or "-", pod=task.pod, node=node, reason=reason))
    return rows


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


def _columns(width: int) -> list[str]:
    """The columns a terminal ``width`` wide shows: name and state always, host and Pod when there is room."""
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


def job_table(job_id: int, rows: Sequence[Row], *, fraction: float, height: int, width: int) -> Any:
    """The display for a terminal ``height`` lines by ``width`` columns: never taller than it, each
    task on one line (a wrapped cell would break the count)."""
    # rich, as in live_progress: loaded only when a terminal shows the table.
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    columns = _columns(width)
    shown, hidden = pick_rows(rows, max(height - FIXED_LINES, 1))
    table = Table(title=Text(f"levrt job {job_id}", no_wrap=True, overflow="ellipsis"), expand=False)
    for column in columns:
        table.add_column(column, no_wrap=True, overflow="ellipsis", max_width=70 if column == "name" else None)
    for row in shown:
        table.add_row(*_cells(row, columns))
    if hidden:
        left = counts(hidden)
        table.add_row("...", f"{len(hidden)} more: " + ", ".join(f"{n} {w}" for w, n in left.items() if n),
                      *([""] * (len(columns) - 2)))
    # One line whatever the width: a wrapped caption would be a line the height did not count.
    tally = " ".join(f"{k}: {v}" for k, v in counts(rows).items() if v) or "no tasks yet"
    table.caption = Text(tally, no_wrap=True, overflow="ellipsis")
    grid = Table.grid()
    grid.add_row(table)
    grid.add_row(ProgressBar(total=1.0, completed=fraction, width=min(50, max(width - 2, 10))))
    return grid


def summary_lines(job_id: int, rows: Sequence[Row], *, wall: float) -> list[str]:
    """The end of a run in a few lines: counts by state, the wall time, each failed task and why."""
    found = {word: n for word, n in counts(rows).items() if n}
    tally = ", ".join(f"{n} {word}" for word, n in found.items()) or "no tasks"
    lines = [f"job {job_id}: {len(rows)} task{'s' if len(rows) != 1 else ''} ({tally}) in {elapsed_text(wall)}"]
    for row in rows:
        if row.word == "failed":
            reason = row.reason or row.state
            lines.append(f"  failed {row.id} {row.name}: {reason[:160]}")
    return lines


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

    def frame() -> Any:
        return job_table(engine.job_id, task_rows(engine, clock), fraction=fraction[0],
                         height=console.size.height, width=console.size.width)

    async def refresh(live: Any) -> None:
        while True:
            live.update(frame(), refresh=True)
            await asyncio.sleep(REFRESH_SECONDS)

    with progress_hook(on_progress), _logs_through(console):
        try:
            with Live(frame(), console=console, auto_refresh=False, transient=False,
                      vertical_overflow="crop") as live:
                ticker = asyncio.create_task(refresh(live))
                try:
                    return await main
                finally:
                    ticker.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await ticker
                    live.update(frame(), refresh=True)
        finally:
            for line in summary_lines(engine.job_id, task_rows(engine, clock), wall=time.monotonic() - began):
                console.print(line, highlight=False, markup=False)
