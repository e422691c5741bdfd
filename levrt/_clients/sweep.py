"""Delete finished tasks' Pods and payload Secrets in batches, so cleanup keeps up with dispatch.

Why: one DELETE per task is a request per task that a raw create loop does not spend, and the
garbage collector (for a payload Secret owned by the job's Lease, or by its Pod) shares the
controller manager's small request budget (20 QPS by default), so a fan-out of thousands would
leave it a growing queue. One ``deletecollection`` for every task that finished since the last
sweep costs one request per batch instead, and ownership stays as the backstop when a client dies.

A sweep is best effort. Payload Secrets it cannot delete (no ``deletecollection`` right, an error)
go with the job's Lease; Pods it may not delete by collection are deleted one by one
(``refused``), as before this module existed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from levrt._clients import resources
from levrt._clients.api import Forbidden
from levrt._clients.batches import Batches
from levrt._clients.kube import Kube, Priority
from levrt._shapes.names import JOB_LABEL, MANAGED_SELECTOR, PAYLOAD_ROLE, ROLE_LABEL, TASK_LABEL

__all__ = ["PayloadSweeper", "PodSweeper", "Sweeper", "payload_selector", "pod_selector"]

log = logging.getLogger("lev")

BATCH = 100
"""Tasks per request: keeps the label selector (and the URL) short."""

POD_BATCH = 25
"""Pods per request: the apiserver deletes a collection one object after another, and a request
that outlasts the client's timeout under load would let the next batch grow behind it."""

LINGER = 2.0
"""Seconds the objects of an ended task may wait for the next sweep, unless a full batch goes first:
at the default client limit a fan-out ends about 25 tasks a second, so each request takes a full
batch (a raw loop spends one request a task)."""

CLOSE_TIMEOUT = 60.0
"""Seconds the end of a job waits for the last sweep."""


def _tasks(tasks: list[int]) -> str:
    return ",".join(str(task) for task in sorted(tasks))


def payload_selector(job: int, tasks: list[int]) -> str:
    """The label selector of the payload Secrets of some tasks of one job."""
    return f"{MANAGED_SELECTOR},{ROLE_LABEL}={PAYLOAD_ROLE},{JOB_LABEL}={job},{TASK_LABEL} in ({_tasks(tasks)})"


def pod_selector(job: int, tasks: list[int]) -> str:
    """The label selector of the Pods of some tasks of one job (every attempt of each; never the
    orchestration Pod, which has no task)."""
    return f"{MANAGED_SELECTOR},{JOB_LABEL}={job},{TASK_LABEL} in ({_tasks(tasks)})"


Refused = Callable[[Mapping[int, Mapping[str, Any]]], Awaitable[None]]


class Sweeper:
    """Collects finished tasks and deletes their objects of one kind, ``linger`` seconds apart at most
    (sooner once ``batch`` tasks wait: one request's worth)."""

    def __init__(self, kube: Kube, *, namespace: str, job: int, kind: str, selector: Callable[[int, list[int]], str],
                 what: str, query: Mapping[str, Any] | None = None, refused: Refused | None = None,
                 linger: float = LINGER, batch: int = BATCH) -> None:
        self._kube = kube
        self._namespace = namespace
        self._job = job
        self._kind = kind
        self._selector = selector
        self._what = what
        self._query = dict(query or {})
        self._on_refused = refused
        self._batch = batch
        self._batches = Batches(self._delete, linger=linger, max_batch=batch, full=batch)
        self._refused = False
        self.requests = 0
        self.swept = 0

    def add(self, task: int, **fields: Any) -> None:
        """Queue the objects of a task that is done with them (``fields``: what ``refused`` needs)."""
        if self._refused and self._on_refused is None:
            return
        self._batches.add(task, **fields)

    async def _delete(self, batch: dict[int, dict[str, Any]]) -> None:
        if self._refused:
            assert self._on_refused is not None
            await self._on_refused(batch)
            return
        tasks = sorted(batch)
        for start in range(0, len(tasks), self._batch):
            chunk = tasks[start:start + self._batch]
            try:
                await resources.delete_collection(self._kube, self._kind, namespace=self._namespace,
                                                  labels=self._selector(self._job, chunk), query=self._query,
                                                  priority=Priority.CLEANUP)
            except Forbidden as exc:
                self._refused = True
                if self._on_refused is None:
                    self._batches.drop()
                    log.info("%s are left to the garbage collector (no deletecollection right: %s)", self._what, exc)
                    return
                log.info("%s are deleted one by one (no deletecollection right: %s)", self._what, exc)
                await self._on_refused({task: batch[task] for task in tasks[start:]})
                return
            except Exception as exc:  # best effort (an error, a timeout under load): never the end of the job
                log.debug("could not sweep the %s of %d task(s): %s", self._what, len(chunk), exc)
            else:
                self.requests += 1
                self.swept += len(chunk)

    async def close(self) -> None:
        """Sweep what is left and stop (a sweep that outlasts ``CLOSE_TIMEOUT`` is left to the collector)."""
        await self._batches.close(timeout=CLOSE_TIMEOUT)


class PayloadSweeper(Sweeper):
    """The payload Secrets of finished tasks."""

    def __init__(self, kube: Kube, *, namespace: str, job: int, linger: float = LINGER) -> None:
        super().__init__(kube, namespace=namespace, job=job, kind="Secret", selector=payload_selector,
                         what="payload Secrets", linger=linger)


class PodSweeper(Sweeper):
    """The Pods of finished tasks, deleted at once (no grace: they have ended); ``refused`` deletes
    them one by one (each task queued with its ``pod=NAME``)."""

    def __init__(self, kube: Kube, *, namespace: str, job: int, refused: Refused, linger: float = LINGER) -> None:
        super().__init__(kube, namespace=namespace, job=job, kind="Pod", selector=pod_selector, what="finished Pods",
                         query={"gracePeriodSeconds": 0}, refused=refused, linger=linger, batch=POD_BATCH)
