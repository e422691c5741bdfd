"""Reading a job's past: which jobs still run, a task's archived logs, the schemas a job wrote to.

Why apart from the commands: ``levrt ps``, ``levrt logs`` and the SDK's ``levrt.job(N)`` (and the
platform's API after them) read the same evidence the same way. A job record still ``running``
whose Lease is gone is ``lost`` (``levrt._shapes.jobrecord``): which Leases are alive is read here
once. Nothing here writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt

from levrt._clients.api import Forbidden
from levrt._clients.blobs import FileStore
from levrt._clients.kube import Kube
from levrt._clients.lease import expired, kept, lease_job, list_leases
from levrt._clients.store import Store
from levrt._core.catalog import Collection, records_collections
from levrt._core.logarchive import archived_text, read_archive

__all__ = ["ArchivedLog", "NoArchive", "archived_log", "job_collections", "live_jobs", "no_archive_text"]


async def live_jobs(kube: Kube, namespace: str, *, now: float) -> set[int] | None:
    """The jobs whose client still renews their Lease; None when this account may not list Leases
    (then no job can be judged lost)."""
    with contextlib.suppress(Forbidden):
        return {job for lease in await list_leases(kube, namespace)
                if not expired(lease, now=now) and not kept(lease) and (job := lease_job(lease))}
    return None


@dataclasses.dataclass(frozen=True)
class ArchivedLog:
    """One container's log of an ended task, as archived when the task ended."""

    text: str
    cut: str | None
    """Where the archive is incomplete, in words; None: it is whole."""
    pod: str
    container: str
    archived: dt.datetime | None


class NoArchive(LookupError):
    """The task has no archive, or its archive no such container (``containers``: those it has)."""

    def __init__(self, containers: list[str] | None) -> None:
        super().__init__(containers)
        self.containers = containers


async def archived_log(store: Store, job: int, task: int, container: str = "main") -> ArchivedLog:
    """The archived log of ``container`` of task ``job.task``; ``NoArchive`` when there is none."""
    doc = await read_archive(store, job, task)
    if doc is None:
        raise NoArchive(None)
    containers = doc.get("containers") or {}
    entry = containers.get(container)
    if entry is None:
        raise NoArchive(list(containers))
    text, cut = await archived_text(FileStore.of(store), entry)
    archived = doc.get("archived")
    return ArchivedLog(text, cut, str(doc.get("pod") or ""), container,
                       archived if isinstance(archived, dt.datetime) else None)


async def job_collections(store: Store, job: int) -> list[tuple[Collection, int]]:
    """The collections of records that hold records of ``job``, and how many each holds."""
    listed, _ = await records_collections(store)
    counted = []
    for found in listed:
        count = await store.count(found.name, {"_id.job": job})
        if count:
            counted.append((found, count))
    return counted


def no_archive_text(job: int, task: int, container: str, exc: NoArchive) -> str:
    """Why a task's archived log cannot be shown, and what to try."""
    if exc.containers is None:
        return (f"No archived logs of task {job}.{task} in the store. Its Pod ended and was removed without "
                "an archive: the job ran with a levrt older than 2.0 (which archived none), or the store "
                f"refused the archive (the job's client logged a warning). See `levrt ps --job {job}`.")
    return (f"Task {job}.{task}'s archived logs have no container {container!r}; they have: "
            f"{', '.join(exc.containers) or 'none'}.")

