"""Delete finished tasks' payload Secrets in batches, so cleanup keeps up with dispatch.

Why: a payload Secret is owned by its Pod, so the garbage collector would delete it after the Pod;
but the collector shares the controller manager's small request budget (20 QPS by default), and a
fan-out of thousands of tasks would leave it a growing queue. Deleting the Secrets ourselves, one
``deletecollection`` for every task that finished since the last sweep, costs one request per
batch instead of one per task, and ownership stays as the backstop when a client dies.

The sweep is best effort: a Secret it cannot delete (no ``deletecollection`` right, an error) is
still removed by the garbage collector with its Pod. A refusal is logged once and sweeping stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from levrt._clients.api import Forbidden
from levrt._clients.kube import Kube, Priority
from levrt._shapes.names import JOB_LABEL, MANAGED_SELECTOR, PAYLOAD_ROLE, ROLE_LABEL, TASK_LABEL, api_path
from levrt.errors import LevrtError

__all__ = ["PayloadSweeper", "payload_selector"]

log = logging.getLogger("lev")

BATCH = 100
"""Tasks per request: keeps the label selector (and the URL) short."""


def payload_selector(job: int, tasks: list[int]) -> str:
    """The label selector of the payload Secrets of some tasks of one job."""
    listed = ",".join(str(task) for task in sorted(tasks))
    return f"{MANAGED_SELECTOR},{ROLE_LABEL}={PAYLOAD_ROLE},{JOB_LABEL}={job},{TASK_LABEL} in ({listed})"


class PayloadSweeper:
    """Collects finished tasks and deletes their payload Secrets, ``linger`` seconds apart at most."""

    def __init__(self, kube: Kube, *, namespace: str, job: int, linger: float = 0.5) -> None:
        self._kube = kube
        self._namespace = namespace
        self._job = job
        self._linger = linger
        self._pending: list[int] = []
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._refused = False
        self.requests = 0
        self.swept = 0

    def add(self, task: int) -> None:
        """Queue the payload Secret of a task whose Pod is done with it."""
        if self._refused:
            return
        self._pending.append(task)
        if self._loop is None:
            self._loop = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._linger)  # gather the tasks that finish together
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Delete what is queued now."""
        while self._pending and not self._refused:
            batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
            try:
                await self._kube.request(
                    "DELETE", api_path("secrets", namespace=self._namespace),
                    query={"labelSelector": payload_selector(self._job, batch)}, priority=Priority.CLEANUP,
                )
            except Forbidden as exc:
                self._refused = True
                self._pending.clear()
                log.info("payload Secrets are left to the garbage collector (no deletecollection right: %s)", exc)
            except LevrtError as exc:
                log.debug("could not sweep %d payload Secret(s): %s; the garbage collector will", len(batch), exc)
            else:
                self.requests += 1
                self.swept += len(batch)

    async def close(self) -> None:
        """Sweep what is left and stop."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        await self.flush()
