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

import logging
from typing import Any

from levrt._clients import resources
from levrt._clients.api import Forbidden
from levrt._clients.batches import Batches
from levrt._clients.kube import Kube, Priority
from levrt._shapes.names import JOB_LABEL, MANAGED_SELECTOR, PAYLOAD_ROLE, ROLE_LABEL, TASK_LABEL
from levrt.errors import LevrtError

__all__ = ["PayloadSweeper", "payload_selector"]

log = logging.getLogger("lev")

BATCH = 100
"""Tasks per request: keeps the label selector (and the URL) short."""

CLOSE_TIMEOUT = 60.0
"""Seconds the end of a job waits for the last sweep."""


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
        self._batches = Batches(self._delete, linger=linger)
        self._refused = False
        self.requests = 0
        self.swept = 0

    def add(self, task: int) -> None:
        """Queue the payload Secret of a task whose Pod is done with it."""
        if not self._refused:
            self._batches.add(task)

    async def _delete(self, batch: dict[int, dict[str, Any]]) -> None:
        tasks = sorted(batch)
        for start in range(0, len(tasks), BATCH):
            chunk = tasks[start:start + BATCH]
            try:
                await resources.delete_collection(self._kube, "Secret", namespace=self._namespace,
                                                  labels=payload_selector(self._job, chunk), priority=Priority.CLEANUP)
            except Forbidden as exc:
                self._refused = True
                self._batches.drop()
                log.info("payload Secrets are left to the garbage collector (no deletecollection right: %s)", exc)
                return
            except LevrtError as exc:
                log.debug("could not sweep %d payload Secret(s): %s; the garbage collector will", len(chunk), exc)
            else:
                self.requests += 1
                self.swept += len(chunk)

    async def close(self) -> None:
        """Sweep what is left and stop (a sweep that outlasts ``CLOSE_TIMEOUT`` is left to the collector)."""
        await self._batches.close(timeout=CLOSE_TIMEOUT)
