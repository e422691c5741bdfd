"""The running job, as the public API sees it: a context variable and the small interface behind it.

Why a seam below ``Cr`` and ``Task``: both are public and import-light, yet ``cr.start()`` must
submit a Pod and ``task.done()`` must wait for one. Instead of reaching up into the engine, they
call the ``Runner`` that the current job installed here (``levrt._core.engine`` implements it and
``levrt.run`` opens it). Standard library only; the types below are named for readers and type
checkers, never imported at run time.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from levrt.errors import LevrtError

if TYPE_CHECKING:
    from levrt.cr import Cr
    from levrt.document import Document
    from levrt.task import Task

__all__ = ["Runner", "current", "current_or_none", "running"]


class Runner(Protocol):
    """What a job does for its Crs and Tasks."""

    async def start(self, cr: Cr) -> Task:
        """Submit ``cr`` and return its Task once the main container runs (and is Ready)."""
        ...

    async def finish(self, task: Task) -> Document:
        """Wait for the end of ``task``, apply the end-of-task policy, return its Document."""
        ...

    async def signal(self, task: Task, signal: str | int) -> None:
        """Deliver ``signal`` to the task's main process."""
        ...

    async def logs(self, task: Task, *, tail: int | None = None) -> str:
        """The main container's output so far."""
        ...

    @property
    def job_id(self) -> int: ...

    def job_document(self) -> Document:
        """The job's own record (``lev.doc`` in an orchestration)."""
        ...

    async def upload(self, source: bytes | str | os.PathLike[str]) -> str:
        """Store content in the job's store's file storage (``levrt.upload``); its sha256."""
        ...


_current: contextvars.ContextVar[Runner | None] = contextvars.ContextVar("levrt_job", default=None)


def current() -> Runner:
    """The job running in this context."""
    runner = _current.get()
    if runner is None:
        raise LevrtError(
            "No levrt job is running here. Run your orchestration with levrt.run(main()), "
            "or open a job yourself: `from levrt.run import session`, then `async with session():`."
        )
    return runner


def current_or_none() -> Runner | None:
    return _current.get()


@contextlib.contextmanager
def running(runner: Runner) -> Iterator[None]:
    """Make ``runner`` the current job within this context."""
    token = _current.set(runner)
    try:
        yield
    finally:
        _current.reset(token)
