"""A job's Lease: the one object that owns everything of a job, renewed while its client lives.

Why: a client killed with ``kill -9`` used to leave its Pods running, with their payload Secrets
and file ConfigMaps, and nothing could tell a dead job's objects from a live one's. Now each job
has a ``coordination.k8s.io/v1`` Lease ``levrt-job-<N>``; every Pod of the job carries an
ownerReference to it (and the Pods own the rest), so deleting the Lease removes the whole job
through the garbage collector. The client renews ``spec.renewTime`` every third of
``leaseDurationSeconds``; a Lease nobody renews any more belongs to a dead client, and the chart's
reaper (``levrt reap``) deletes it (DESIGN.md, "Job ownership").

Why the reaper judges by what it saw change, not by ``renewTime`` against its own clock: the
renewing client may be a laptop whose clock is off by minutes. The reaper remembers when, on its
own monotonic clock, it last saw each Lease's ``renewTime`` change, and reaps one it has seen
standing still for the duration plus a grace. ``levrt gc``, a one-shot command, has no such
history and compares ``renewTime`` with the local clock (with the same grace).

Knows no Cr: a job here is its number and its Lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from levrt._clients import resources
from levrt._clients.api import Forbidden, NotFound
from levrt._clients.kube import Kube, Priority
from levrt._shapes.names import (
    JOB_LABEL,
    KEPT_ANNOTATION,
    LEASE_GROUP,
    MANAGED_BY,
    MANAGED_SELECTOR,
    lease_name,
)
from levrt.errors import LevrtError

__all__ = [
    "KEPT_PODS_ANNOTATION",
    "JobLease",
    "Reaper",
    "adopt_job",
    "adopt_pod",
    "delete_lease",
    "expired",
    "kept_pods",
    "label_pod",
    "lease_job",
    "lease_object",
    "list_leases",
    "owner_reference",
    "release_pod",
    "renewed_at",
]

log = logging.getLogger("lev")

API_VERSION = f"{LEASE_GROUP}/v1"
RENEW_FRACTION = 3
"""Renewals per lease duration: two may fail in a row before the Lease lapses."""
KEPT_PODS_ANNOTATION = "levrt.io/kept-pods"
"""On a kept Lease: the Pods it keeps (comma-separated names), so ``levrt gc`` and ``kubectl`` can say what."""
RETRY_SECONDS = 2.0
"""How soon a failed renewal is tried again (never later than the next regular one)."""


def micro_time(when: float) -> str:
    """A Kubernetes ``MicroTime`` (``2025-01-02T03:04:05.123456Z``)."""
    return dt.datetime.fromtimestamp(when, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_micro_time(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def lease_object(job: int, *, namespace: str, duration: float, holder: str, now: float) -> dict[str, Any]:
    """The Lease of job ``job``, renewed now (pure)."""
    return {
        "apiVersion": API_VERSION, "kind": "Lease",
        "metadata": {"name": lease_name(job), "namespace": namespace, "labels": {**MANAGED_BY, JOB_LABEL: str(job)}},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": max(1, round(duration)),
                 "acquireTime": micro_time(now), "renewTime": micro_time(now)},
    }


def owner_reference(lease: Mapping[str, Any]) -> dict[str, Any]:
    """The ownerReference that makes an object go when the Lease goes. ``blockOwnerDeletion``
    false: a foreground deletion of the Lease need not wait for the Pods' graceful end, and the
    client needs no ``update`` right on the Lease's finalizers to set it."""
    meta = lease["metadata"]
    return {"apiVersion": API_VERSION, "kind": "Lease", "name": meta["name"], "uid": meta["uid"],
            "blockOwnerDeletion": False}


def lease_job(lease: Mapping[str, Any]) -> int | None:
    """The job number a Lease stands for (its label), or None for a Lease not of a job."""
    text = (lease.get("metadata", {}).get("labels") or {}).get(JOB_LABEL, "")
    return int(text) if text.isdigit() else None


def renewed_at(lease: Mapping[str, Any]) -> float | None:
    """When the Lease was last renewed (the renewer's clock), or None when it never was."""
    spec = lease.get("spec") or {}
    stamp = spec.get("renewTime") or spec.get("acquireTime")
    if not stamp:
        return None
    try:
        return parse_micro_time(str(stamp))
    except ValueError:
        return None


def duration_of(lease: Mapping[str, Any]) -> float:
    return float((lease.get("spec") or {}).get("leaseDurationSeconds") or 0)


def expired(lease: Mapping[str, Any], *, now: float, grace: float | None = None) -> bool:
    """Whether a Lease was not renewed for its duration plus ``grace`` (default: one more duration),
    by the clock ``now`` is read from. A kept Lease (``KEPT_ANNOTATION``) never expires: its job
    ended on purpose with its objects kept."""
    if kept(lease):
        return False
    when = renewed_at(lease)
    if when is None:  # no renewTime at all: judge by its age
        created = lease.get("metadata", {}).get("creationTimestamp")
        when = parse_micro_time(created) if created else now
    duration = duration_of(lease)
    return now > when + duration + (duration if grace is None else grace)


def kept(lease: Mapping[str, Any]) -> bool:
    return (lease.get("metadata", {}).get("annotations") or {}).get(KEPT_ANNOTATION) == "true"


def kept_pods(lease: Mapping[str, Any]) -> list[str]:
    """The Pods a kept Lease says it keeps (``KEPT_PODS_ANNOTATION``); [] when it names none."""
    text = (lease.get("metadata", {}).get("annotations") or {}).get(KEPT_PODS_ANNOTATION) or ""
    return [name for name in text.split(",") if name]


async def list_leases(kube: Kube, namespace: str) -> list[dict[str, Any]]:
    """The job Leases of the namespace."""
    found = await resources.list_objects(kube, "Lease", namespace=namespace, labels=MANAGED_SELECTOR)
    return [item for item in found if lease_job(item) is not None]


async def delete_lease(kube: Kube, namespace: str, name: str) -> bool:
    """Delete a Lease; the garbage collector then deletes what it owns (background propagation).
    False when it was gone already."""
    try:
        await resources.delete(kube, "Lease", name, namespace=namespace, query={"propagationPolicy": "Background"},
                               priority=Priority.CLEANUP)
    except NotFound:
        return False
    return True


class JobLease:
    """The Lease of one open job: ``await JobLease.create(...)``, ``start()`` the renewals,
    ``await close()`` at the end (deletes it, or with ``keep`` marks it kept)."""

    def __init__(self, kube: Kube, *, namespace: str, job: int, lease: Mapping[str, Any], duration: float,
                 clock: Callable[[], float] = time.time) -> None:
        self._kube = kube
        self.namespace = namespace
        self.job = job
        self.lease = dict(lease)
        self.duration = duration
        self._clock = clock
        self._renewer: asyncio.Task[None] | None = None
        self.renewals = 0
        """Renewals that reached the apiserver."""
        self.failures = 0
        """Renewals that failed (logged; the next one is tried soon)."""
        self.lost = False
        """The Lease was deleted by someone else (``levrt gc --job N``, the reaper): the job's objects are going."""

    @property
    def name(self) -> str:
        return str(self.lease["metadata"]["name"])

    @property
    def reference(self) -> dict[str, Any]:
        return owner_reference(self.lease)

    @classmethod
    async def create(cls, kube: Kube, *, namespace: str, job: int, duration: float, holder: str,
                     clock: Callable[[], float] = time.time) -> JobLease:
        body = lease_object(job, namespace=namespace, duration=duration, holder=holder, now=clock())
        created = await resources.create(kube, "Lease", body, namespace=namespace)
        return cls(kube, namespace=namespace, job=job, lease=created, duration=duration, clock=clock)

    @classmethod
    async def take_over(cls, kube: Kube, *, namespace: str, job: int, duration: float, holder: str,
                        clock: Callable[[], float] = time.time) -> JobLease:
        """The Lease of job ``job``, now held by ``holder``: a detached job's next orchestration Pod
        goes on with the job its predecessor opened. ``NotFound`` when the job has ended (or was
        collected) in between: then nothing is taken over."""
        now = micro_time(clock())
        taken = await resources.patch(kube, "Lease", lease_name(job), {
            "spec": {"holderIdentity": holder, "acquireTime": now, "renewTime": now},
        }, namespace=namespace)
        return cls(kube, namespace=namespace, job=job, lease=taken, duration=duration, clock=clock)

    @property
    def interval(self) -> float:
        return self.duration / RENEW_FRACTION

    def start(self) -> None:
        """Renew in the background until ``close``."""
        if self._renewer is None:
            self._renewer = asyncio.get_running_loop().create_task(self._renew_loop(), name=f"levrt-lease-{self.job}")

    async def renew(self) -> None:
        """One renewal (raises what the apiserver answered)."""
        await resources.patch(self._kube, "Lease", self.name, {"spec": {"renewTime": micro_time(self._clock())}},
                              namespace=self.namespace)
        self.renewals += 1

    async def _renew_loop(self) -> None:
        delay = self.interval
        while True:
            await asyncio.sleep(delay)
            try:
                await self.renew()
            except NotFound:
                self.lost = True
                log.error("the Lease %s of job %d was deleted (levrt gc --job %d, or the reaper after the "
                          "client went silent): the job's Pods are being removed", self.name, self.job, self.job)
                return
            except Exception as exc:  # never the end of the job by itself: retried soon
                self.failures += 1
                delay = min(RETRY_SECONDS, self.interval)
                log.warning("could not renew the Lease %s of job %d (%s); retrying in %.0f s",
                            self.name, self.job, exc, delay)
            else:
                delay = self.interval

    async def stop(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None

    async def close(self, *, keep: bool = False, kept: Sequence[str] = ()) -> None:
        """End the job's ownership: delete the Lease (whatever of the job is left goes with it), or
        with ``keep`` mark it kept, naming the Pods ``kept`` (the reaper leaves it; ``levrt gc``
        removes it). Logged, never raised."""
        await self.stop()
        try:
            if keep:
                await resources.patch(self._kube, "Lease", self.name, {
                    "metadata": {"annotations": {KEPT_ANNOTATION: "true", KEPT_PODS_ANNOTATION: ",".join(kept)}},
                    "spec": {"renewTime": micro_time(self._clock())},
                }, namespace=self.namespace)
            else:
                await delete_lease(self._kube, self.namespace, self.name)
        except NotFound:
            pass
        except LevrtError as exc:
            log.warning("could not %s the Lease %s of job %d: %s; the reaper will end it after %.0f s",
                        "mark kept" if keep else "delete", self.name, self.job, exc, 2 * self.duration)


@dataclasses.dataclass
class _Seen:
    renew: str
    since: float


class Reaper:
    """Deletes the Leases of jobs whose client stopped renewing them (``levrt reap``).

    A Lease is reaped once this reaper has seen its ``renewTime`` stand still for its
    ``leaseDurationSeconds`` plus ``grace`` (default: one more duration) on its own monotonic
    clock; so the renewer's clock does not matter, and a reaper that just started waits one such
    period before reaping anything it finds."""

    def __init__(self, kube: Kube, *, namespace: str, grace: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._kube = kube
        self.namespace = namespace
        self.grace = grace
        self._clock = clock
        self._seen: dict[str, _Seen] = {}
        self.forbidden = False

    async def sweep(self) -> list[tuple[str, float]]:
        """One pass: the Leases deleted, each with the seconds it had stood still."""
        now = self._clock()
        try:
            leases = await list_leases(self._kube, self.namespace)
        except Forbidden as exc:
            if not self.forbidden:
                log.error("the reaper may not list Leases in %s (%s); give its ServiceAccount the chart's Role",
                          self.namespace, exc)
            self.forbidden = True
            return []
        present = {lease["metadata"]["name"] for lease in leases}
        for gone in set(self._seen) - present:
            del self._seen[gone]
        reaped: list[tuple[str, float]] = []
        for lease in leases:
            name = lease["metadata"]["name"]
            renew = str((lease.get("spec") or {}).get("renewTime") or "") + (
                "|kept" if kept(lease) else "")
            seen = self._seen.get(name)
            if seen is None or seen.renew != renew:
                self._seen[name] = _Seen(renew, now)
                continue
            if kept(lease):
                continue
            duration = duration_of(lease)
            still = now - seen.since
            if still <= duration + (duration if self.grace is None else self.grace):
                continue
            try:
                deleted = await delete_lease(self._kube, self.namespace, name)
            except LevrtError as exc:
                log.warning("could not reap Lease %s: %s", name, exc)
                continue
            self._seen.pop(name, None)
            if deleted:
                reaped.append((name, still))
                log.info("reaped job %s: Lease %s not renewed for %.0f s (duration %.0f s); its objects "
                         "go with it", lease_job(lease), name, still, duration)
        return reaped

    async def run(self, *, period: float) -> None:
        """Sweep every ``period`` seconds, forever (errors are logged, the loop goes on)."""
        while True:
            try:
                await self.sweep()
            except LevrtError as exc:
                log.warning("reaper: %s", exc)
            await asyncio.sleep(period)


async def adopt_pod(kube: Kube, namespace: str, pod: str, *, uid: str, owner: Mapping[str, Any], job: int) -> None:
    """Make a Pod that already runs (an attached in-cluster orchestration) one of the job's objects:
    owned by its Lease and labelled with its job (``levrt ps --job N`` lists it)."""
    await _adopt(kube, "Pod", namespace, pod, uid=uid, owner=owner, job=job)


async def adopt_job(kube: Kube, namespace: str, name: str, *, uid: str, owner: Mapping[str, Any],
                    job: int) -> None:
    """Make the Kubernetes Job running a detached orchestration one of the job's objects: owned by
    its Lease (it goes, with its Pod, when the job ends) and labelled with the job, which is how its
    next Pod knows which job to take over."""
    await _adopt(kube, "Job", namespace, name, uid=uid, owner=owner, job=job)


async def _adopt(kube: Kube, kind: str, namespace: str, name: str, *, uid: str, owner: Mapping[str, Any],
                 job: int) -> None:
    # The uid makes the patch fail on a namesake made since (optimistic: never another's object).
    body = {"metadata": {"uid": uid, "labels": {JOB_LABEL: str(job)}, "ownerReferences": [dict(owner)]}}
    await resources.patch(kube, kind, name, body, namespace=namespace, patch_type="strategic")


async def label_pod(kube: Kube, namespace: str, pod: str, *, job: int) -> None:
    """Label a Pod with its job (``levrt ps --job N`` lists it) without owning it (its Job does)."""
    await resources.patch(kube, "Pod", pod, {"metadata": {"labels": {JOB_LABEL: str(job)}}}, namespace=namespace)


async def release_pod(kube: Kube, namespace: str, pod: str) -> None:
    """Undo ``adopt_pod``'s ownership: the Pod outlives the Lease (its client deletes it)."""
    await resources.patch(kube, "Pod", pod, {"metadata": {"ownerReferences": None}}, namespace=namespace)
