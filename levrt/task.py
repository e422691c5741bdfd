"""``Task``: the handle of one running Cr — its Pod, its host, signals, logs and its end.

Why a handle and not the Cr: one Cr may be started many times (each ``start()`` is a new run),
and a run has state a description must not carry: the Pod name, the Pod IP that other tasks
``links`` to, whether the caller already signalled it. What a task *does* (wait, signal, read
logs) is the job's business: the handle asks the ``Runner`` that started it (``levrt._job``).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from levrt._job import Runner
from levrt.errors import TaskFailed

if TYPE_CHECKING:
    from levrt.cr import Cr
    from levrt.document import Document

__all__ = ["Task"]


class Task:
    """A running Cr. ``await task`` (or ``await task.done()``) waits for its ``Document``."""

    def __init__(self, *, runner: Runner, cr: Cr, job_id: int, task_id: int, pod: str, collection: str) -> None:
        self._runner = runner
        self.cr = cr
        self.job_id = job_id
        self.task_id = task_id
        self.pod = pod
        self.collection = collection
        self.host: str | None = None
        """The Pod's IP once it runs (what other tasks put in ``links``)."""
        self.signalled = False
        """Whether the caller signalled it: such a run returns its Document even if it exits non-zero."""
        self.document: Document | None = None
        """The Document, once ``done()`` returned it."""
        self.timed_out = False
        """Whether the run reached its ``timeout`` (``Cr(timeout=...)``): ``done()`` still returns its
        Document, with what the entry stored until then."""
        self.retries = 0
        """How many times an infrastructure failure submitted it again (``Cr(retries=...)``); ``pod``
        names the latest Pod."""
        self.cached_from: str | None = None
        """``JOB.TASK`` whose identical run's record this task took instead of running (``--resume``)."""
        self.warm = False
        """Whether it runs in a warm Pod (``Cr(warm=...)``): ``pod`` names that Pod once the entry runs."""
        self._failure: BaseException | None = None

    @property
    def ended(self) -> bool:
        """Whether ``done()`` saw the end of the run (a Document, or a failure)."""
        return self.document is not None or self._failure is not None

    @property
    def id(self) -> str:
        return f"{self.job_id}.{self.task_id}"

    @property
    def name(self) -> str:
        """What people call it: the mode and arguments that made its Cr (``Cr.origin``)."""
        return self.cr.origin

    @property
    def failure(self) -> BaseException | None:
        """Why ``done()`` failed, once it did (what it raises again)."""
        return self._failure

    def __repr__(self) -> str:
        return f"<Task {self.id} pod={self.pod} host={self.host}>"

    def __await__(self) -> Generator[Any, None, Document]:
        return self.done().__await__()

    async def signal(self, signal: str | int = "SIGINT") -> None:
        """Deliver ``signal`` to the main process of the main container; return once delivered."""
        await self._runner.signal(self, signal)

    async def logs(self, *, tail: int | None = None) -> str:
        """The main container's output so far (the last ``tail`` lines)."""
        return await self._runner.logs(self, tail=tail)

    async def done(self) -> Document:
        """Wait for the end of the run and return its ``Document``; ``TaskFailed`` on failure."""
        if self.document is not None:
            return self.document
        if self._failure is not None:
            raise self._failure
        try:
            self.document = await self._runner.finish(self)
        except TaskFailed as exc:
            self._failure = exc
            raise
        return self.document
