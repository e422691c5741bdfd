"""A job's ownership of its objects: its id claimed with its Lease, the orchestration Pod it runs
in adopted, and both let go at the end.

Why apart from the engine: the engine runs tasks; who owns what, and what happens to it when the
client dies, is the Lease's story (DESIGN.md "Job ownership"), told here from the job's side and
in ``levrt._clients.lease`` from the apiserver's. The engine calls ``claim_job`` and
``adopt_own_pod`` when a job opens and ``let_go`` when it closes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from levrt._clients import pods
from levrt._clients.api import Conflict, Forbidden
from levrt._clients.kube import Kube
from levrt._clients.lease import JobLease, adopt_pod, release_pod
from levrt._clients.store import Store
from levrt.errors import ClusterError, LevrtError
from levrt.podenv import DETACHED_ENV, POD_NAME_ENV, POD_UID_ENV
from levrt.settings import Settings

__all__ = ["MAX_STALE_IDS", "adopt_own_pod", "claim_job", "let_go"]

log = logging.getLogger("lev")

MAX_STALE_IDS = 1000
"""Job ids skipped at most because a Lease of that id is still there (the store lost its counter)."""


def _detached() -> bool:
    return os.environ.get(DETACHED_ENV, "").strip().lower() in ("1", "true", "yes")


async def claim_job(kube: Kube, settings: Settings, store: Store) -> tuple[int, JobLease | None]:
    """The next job id and its Lease. An id whose Lease exists already belongs to a job from before
    the store lost its counter (reset, restored, replaced): it is skipped, so no two jobs ever
    share the names of their Pods and objects."""
    for _ in range(MAX_STALE_IDS):
        job_id = await store.next_job_id()
        try:
            return job_id, await _open_lease(kube, settings, job_id)
        except Conflict:
            log.warning("job id %d is taken by a Lease from before the store's counter was reset; "
                        "taking the next one", job_id)
    raise ClusterError(
        f"{MAX_STALE_IDS} job ids in a row are held by Leases of earlier jobs in namespace "
        f"{settings.namespace}: the store's job counter is far behind. Run `levrt gc`, or set the "
        "counter (collection levrt_counters, _id 'job', field seq) above the highest levrt-job-<N> Lease."
    )


async def _open_lease(kube: Kube, settings: Settings, job: int) -> JobLease | None:
    """Create and start renewing the job's Lease; None (logged) where the account may not create one."""
    try:
        lease = await JobLease.create(kube, namespace=settings.namespace, job=job, duration=settings.lease_seconds,
                                      holder=f"{socket.gethostname()}/{os.getpid()}")
    except Forbidden as exc:
        log.warning("job %d runs without a Lease (%s): a client that dies leaves its Pods to `levrt gc`. "
                    "Give the account the chart's Role (leases: create, patch, delete).", job, exc)
        return None
    lease.start()
    return lease


async def adopt_own_pod(kube: Kube, settings: Settings, job: int, lease: JobLease | None) -> str | None:
    """In an orchestration Pod: make that Pod one of the job's objects, owned by its Lease."""
    name, uid = os.environ.get(POD_NAME_ENV), os.environ.get(POD_UID_ENV)
    if lease is None or not name or not uid:
        return None
    await adopt_pod(kube, settings.namespace, name, uid=uid, owner=lease.reference, job=job)
    return name


async def let_go(kube: Kube, settings: Settings, lease: JobLease | None, own_pod: str | None) -> None:
    """Last step of a job: its Lease goes, and with it whatever of the job is left (a payload
    Secret the sweep missed); a kept job's Lease stays, marked kept and naming the Pods it keeps,
    until ``levrt gc``."""
    if lease is None:
        return
    if own_pod is not None and not _detached():
        # An attached in-cluster run: the client following it deletes this Pod itself once it
        # has read its exit code; the Lease must not take it first.
        try:
            await release_pod(kube, settings.namespace, own_pod)
        except LevrtError as exc:
            log.warning("could not release the orchestration Pod %s from the job's Lease: %s", own_pod, exc)
    kept = await _kept_pods(kube, settings, lease.job, own_pod) if settings.keep else []
    await asyncio.shield(lease.close(keep=settings.keep, kept=kept))


async def _kept_pods(kube: Kube, settings: Settings, job: int, own_pod: str | None) -> list[str]:
    """The task Pods a kept job leaves (not those being deleted, not the orchestration Pod)."""
    try:
        found = await pods.job_pods(kube, settings.namespace, job)
    except LevrtError as exc:
        log.warning("could not list the Pods job %d keeps (%s); its Lease will not name them", job, exc)
        return []
    return sorted(p["metadata"]["name"] for p in found
                  if p["metadata"]["name"] != own_pod and not p["metadata"].get("deletionTimestamp"))
