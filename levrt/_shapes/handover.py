"""What a detached job's next orchestration Pod inherits from the one before it.

Why: a detached job runs its workflow again from the top when Kubernetes replaces its Pod
(``levrt._core.ownership``). The workflow asks for the same ``Cr``s again; each one's content key
(``levrt._shapes.cachekey``) says which task of the job it is. A task that succeeded is answered
with its own record (same job, same task id: nothing is copied or run again); a task whose Pod may
still run is followed, not started twice; a task that failed runs again as a new task. Computed
here from the job's task status records, without I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["DONE_STATES", "LIVE_STATES", "Inherited", "LiveTask", "inherited"]

DONE_STATES = frozenset({"succeeded", "cached"})
"""Task states whose record is final and whole: the task is not run again."""
LIVE_STATES = frozenset({"submitting", "running", "retrying"})
"""Task states whose Pod may still be there, running on: followed, not submitted again."""


@dataclasses.dataclass(frozen=True)
class LiveTask:
    """A task whose Pod the previous orchestration Pod left running."""

    task: int
    pod: str
    retries: int


@dataclasses.dataclass
class Inherited:
    """The tasks of a job taken over, by content key; each is handed out once (two identical
    ``Cr``s in one workflow are two tasks, matched in the order they were made)."""

    done: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    live: dict[str, list[LiveTask]] = dataclasses.field(default_factory=dict)
    next_task: int = 0
    """The first task id the new Pod may use (after every one used before)."""

    def take_done(self, key: str | None) -> int | None:
        found = self.done.get(key or "")
        return found.pop(0) if found else None

    def take_live(self, key: str | None) -> LiveTask | None:
        found = self.live.get(key or "")
        return found.pop(0) if found else None

    def pending(self) -> bool:
        """Whether some inherited task was not asked for yet."""
        return any(self.done.values()) or any(self.live.values())

    def left_live(self) -> list[LiveTask]:
        """Live tasks nobody asked for again (the workflow took another path this time)."""
        return [task for tasks in self.live.values() for task in tasks]


def inherited(records: Iterable[Mapping[str, Any]]) -> Inherited:
    """From a job's task status records (``levrt_tasks``: ``task``, ``state``, ``key``, ``pod``,
    ``retries``), what its next orchestration Pod goes on with."""
    out = Inherited()
    for record in sorted(records, key=lambda r: r.get("task", -1) if isinstance(r.get("task"), int) else -1):
        task = record.get("task")
        if not isinstance(task, int):
            continue
        out.next_task = max(out.next_task, task + 1)
        key, state = record.get("key"), record.get("state")
        if not key:
            continue  # made before keys were recorded, or with no key: cannot be recognised
        if state in DONE_STATES:
            out.done.setdefault(str(key), []).append(task)
        elif state in LIVE_STATES and record.get("pod"):
            out.live.setdefault(str(key), []).append(
                LiveTask(task=task, pod=str(record["pod"]), retries=int(record.get("retries") or 0)))
    return out
