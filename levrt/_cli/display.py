"""The live table of ``levrt run`` on a terminal: each task's state, and the job's progress bar.

Why apart: it is the one module that imports rich, and only when a terminal shows it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

from levrt._core.engine import Engine
from levrt._shapes.podstatus import summary
from levrt.concurrent import progress_hook

__all__ = ["live_progress"]

T = TypeVar("T")
STATES = ("pending", "running", "done", "timed-out", "failed")


async def live_progress(engine: Engine, main: Awaitable[T]) -> T:
    """Await ``main`` while a live table of the job's tasks and its progress bar is shown."""
    # rich draws the display: imported only when a terminal shows it.
    from rich.live import Live

    fraction = [0.0]

    def on_progress(done: int, total: int) -> None:
        fraction[0] = done / total if total else 0.0

    async def refresh(live: Any) -> None:
        while True:
            live.update(_job_table(engine, fraction[0]))
            await asyncio.sleep(0.25)

    with progress_hook(on_progress), Live(_job_table(engine, 0.0), transient=False) as live:
        ticker = asyncio.create_task(refresh(live))
        try:
            return await main
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            live.update(_job_table(engine, fraction[0]))


def _task_rows(engine: Engine) -> Iterator[tuple[str, str, str, str, str, str]]:
    for task in engine.tasks[-20:]:
        pod = engine.watch.get(task.pod)
        state = summary(pod) if pod else ("done" if task.document is not None else "ended")
        if task.timed_out:
            state = "timed-out"
        # A retried task shows its latest Pod and how many times the cluster's failures replaced it.
        retries = f"{task.retries}/{task.cr.retries}" if task.cr.retries else "-"
        yield task.id, task.pod, task.cr.image, state, retries, task.host or "-"


def _job_table(engine: Engine, fraction: float) -> Any:
    # rich, as in live_progress: loaded only when a terminal shows the table.
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    counts = dict.fromkeys(STATES, 0)
    table = Table(title=f"levrt job {engine.job_id}", expand=False)
    for column in ("task", "pod", "image", "state", "retries", "host"):
        table.add_column(column)
    for row in _task_rows(engine):
        word = row[3].split("(")[0]
        counts[word if word in counts else "done"] += 1
        table.add_row(*row)
    table.caption = " ".join(f"{k}: {v}" for k, v in counts.items())
    grid = Table.grid()
    grid.add_row(table)
    grid.add_row(ProgressBar(total=1.0, completed=fraction, width=50))
    return grid
