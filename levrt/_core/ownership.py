"""A job's ownership of its objects: its id claimed with its Lease, the orchestration Pod it runs
in adopted, and both let go at the end.

Why apart from the engine: the engine runs tasks; who owns what, and what happens to it when the
client dies, is the Lease's story (DESIGN.md "Job ownership"), told here from the job's side and
in ``levrt._clients.lease`` from the apiserver's. The engine calls ``claim_job`` and
``adopt_own_pod`` when a job opens and ``let_go`` when it closes.

A detached orchestration runs under a Kubernetes Job (``levrt._shapes.orchestrator``). Its first
Pod labels that Job with the job it opened; a Pod the Job makes after it (the first was deleted
or evicted) finds the label and takes the same job over: its Lease, then its tasks
(``levrt._shapes.handover``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket

from levrt._clients import pods, resources
from levrt._clients.api import Conflict, Forbidden, NotFound
from levrt._clients.kube import Kube
from levrt._clients.lease import JobLease, adopt_job, adopt_pod, label_pod, release_pod
from levrt._clients.store import Store
from levrt._shapes.names import JOB_LABEL
from levrt._shapes.orchestrator import controller_job
from levrt.errors import ClusterError, LevrtError, OrchestrationError
from levrt.podenv import DETACHED_ENV, POD_NAME_ENV, POD_UID_ENV
from levrt.settings import Settings

__all__ = ["MAX_STALE_IDS", "Claim", "Runner", "adopt_own_pod", "claim_job", "let_go"]

log = logging.getLogger("lev")

MAX_STALE_IDS = 1000
"""Job ids skipped at most because a Lease of that id is still there (the store lost its counter)."""


def _detached() -> bool:
    return os.environ.get(DETACHED_ENV, "").strip().lower() in ("1", "true", "yes")


@dataclasses.dataclass(frozen=True)
class Runner:
    """The Kubernetes Job this orchestration Pod runs under (a detached or scheduled run)."""

    name: str
    uid: str
    job: int | None
    """The levrt job an earlier Pod of it opened (its label), if any."""


@dataclasses.dataclass(frozen=True)
class Claim:
    """The job a run opened or took over, and what owns it."""

    job: int
    lease: JobLease | None
    runner: Runner | None = None
    taken_over: bool = False
    """Whether an earlier Pod of ``runner`` opened the job and this one goes on with it."""


async def claim_job(kube: Kube, settings: Settings, store: Store) -> Claim:
    """The job this run opens: the one an earlier Pod of its Kubernetes Job opened, taken over, or
    else the next job id and its Lease. An id whose Lease exists already belongs to a job from before
    the store lost its counter (reset, restored, replaced): it is skipped, so no two jobs ever
    share the names of their Pods and objects."""
    runner = await _runner(kube, settings)
    if runner is not None and runner.job is not None:
        return Claim(runner.job, await _take_over(kube, settings, runner.job), runner, taken_over=True)
    for _ in range(MAX_STALE_IDS):
        job_id = await store.next_job_id()
        try:
            return Claim(job_id, await _open_lease(kube, settings, job_id), runner)
        except Conflict:
            log.warning("job id %d is taken by a Lease from before the store's counter was reset; "
                        "taking the next one", job_id)
    raise ClusterError(
        f"{MAX_STALE_IDS} job ids in a row are held by Leases of earlier jobs in namespace "
        f"{settings.namespace}: the store's job counter is far behind. Run `levrt gc`, or set the "
        "counter (collection levrt_counters, _id 'job', field seq) above the highest levrt-job-<N> Lease."
    )


async def _runner(kube: Kube, settings: Settings) -> Runner | None:
    """The Kubernetes Job controlling this Pod, read from the Pod's owner; None outside one (or where
    the account may not read Jobs: such a run cannot be taken over, and says so)."""
    name = os.environ.get(POD_NAME_ENV)
    if not name:
        return None
    try:
        pod = await resources.get(kube, "Pod", name, namespace=settings.namespace)
        ref = controller_job(pod)
        if ref is None:
            return None
        found = await resources.get(kube, "Job", ref["name"], namespace=settings.namespace)
    except LevrtError as exc:
        log.warning("cannot read the Kubernetes Job running this Pod (%s): if the Pod is replaced, its "
                    "successor starts the job again. Give levrt-orchestrator the chart's Role (jobs: get, patch).", exc)
        return None
    label = (found["metadata"].get("labels") or {}).get(JOB_LABEL, "")
    return Runner(ref["name"], ref["uid"], int(label) if label.isdigit() else None)


async def _take_over(kube: Kube, settings: Settings, job: int) -> JobLease:
    try:
        lease = await JobLease.take_over(kube, namespace=settings.namespace, job=job, duration=settings.lease_seconds,
                                         holder=f"{socket.gethostname()}/{os.getpid()}")
    except NotFound:
        raise OrchestrationError(
            f"job {job} ended while its orchestration Pod was being replaced (its Lease is gone: cancelled, or "
            "collected by `levrt gc`); there is nothing to go on with.") from None
    lease.start()
    log.info("taking over job %d from the orchestration Pod before this one", job)
    return lease


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


async def adopt_own_pod(kube: Kube, settings: Settings, claim: Claim) -> str | None:
    """In an orchestration Pod: make that Pod one of the job's objects, owned by its Lease; under a
    Kubernetes Job, that Job is owned and labelled instead, and the Pod only labelled."""
    name, uid = os.environ.get(POD_NAME_ENV), os.environ.get(POD_UID_ENV)
    if claim.lease is None or not name or not uid:
        return None
    if claim.runner is not None:
        await adopt_job(kube, settings.namespace, claim.runner.name, uid=claim.runner.uid,
                        owner=claim.lease.reference, job=claim.job)
        await label_pod(kube, settings.namespace, name, job=claim.job)
    else:
        await adopt_pod(kube, settings.namespace, name, uid=uid, owner=claim.lease.reference, job=claim.job)
    return name


async def let_go(kube: Kube, settings: Settings, claim: Claim, own_pod: str | None) -> None:
    """Last step of a job: its Lease goes, and with it whatever of the job is left (a payload
    Secret the sweep missed, a detached run's Kubernetes Job); a kept job's Lease stays, marked kept
    and naming the Pods it keeps, until ``levrt gc``."""
    lease = claim.lease
    if lease is None:
        return
    if own_pod is not None and claim.runner is None and not _detached():
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
