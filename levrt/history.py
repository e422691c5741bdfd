"""``levrt.job(N)``: a job opened from its records after the fact — what ran, who ran it, how it
ended, its tasks, their archived logs and the records they wrote.

Why public: a security team looks back (what did last night's sweep find, why did task 7 fail)
from a notebook or a script as often as from ``levrt ps``/``levrt get``, and those commands read
nothing a program could not. Everything here reads what a job left in the store: its record
(``levrt_jobs``), its tasks' status records and log archives, and users' collections. Import-light
by way of ``levrt``: the package loads this module (and the store's client) on first use of
``levrt.job``, never in a task container.

::

    async with levrt.job(12) as job:          # or levrt.job() for your newest job
        print(job.state, job.what, job.task_counts)
        for task in await job.tasks():
            print(task["task"], task["state"])
        for doc in await job.documents("ts/issues@1.0"):
            print(doc.task_id, await doc.get())
        print(await job.logs(3))               # task 12.3's main container, after its Pod is gone
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
from collections.abc import Generator, Mapping, Sequence
from typing import Any

from levrt._clients.blobs import FileStore
from levrt._clients.kube import Kube
from levrt._clients.store import JOB_RECORDS, JOBS, Store, opened
from levrt._core import changes as job_changes
from levrt._core.catalog import collection_of, is_gettable_schema
from levrt._core.history import NoArchive, archived_log, job_collections, live_jobs, no_archive_text
from levrt._core.jobrecords import identify
from levrt._shapes import jobrecord
from levrt._shapes.changes import Changes, parse_key
from levrt._stored import placeholder_of
from levrt.document import Document
from levrt.errors import LevrtError, RecordNotFound
from levrt.settings import Settings

__all__ = ["Changes", "Job", "Log", "changes", "job"]

LATEST = "latest"


def job(which: int | str = LATEST, *, settings: Settings | None = None, kubeconfig: str | None = None) -> Opening:
    """Open job ``which`` (its id, or ``"latest"``: your newest job, as ``levrt ps`` lists first).

    Use it as ``async with levrt.job(12) as job:`` (closed at the end of the block), or
    ``job = await levrt.job(12)`` and ``await job.close()``. Raises ``RecordNotFound`` when the
    store has no record of that job. ``settings``/``kubeconfig`` as for ``levrt.run``.
    """
    if isinstance(which, bool) or not ((isinstance(which, int) and which > 0) or which == LATEST):
        raise LevrtError(f"levrt.job({which!r}): give a job id (a positive int, as `levrt ps` lists them) or "
                         f"{LATEST!r}.")
    return Opening(which, settings or Settings.from_env(), kubeconfig)


class Opening:
    """``levrt.job(...)``: awaitable (the opened ``Job``) and an async context manager (closed at exit)."""

    def __init__(self, which: int | str, settings: Settings, kubeconfig: str | None) -> None:
        self._which, self._settings, self._kubeconfig = which, settings, kubeconfig
        self._job: Job | None = None

    def __await__(self) -> Generator[Any, None, Job]:
        return self._open().__await__()

    async def __aenter__(self) -> Job:
        self._job = await self._open()
        return self._job

    async def __aexit__(self, *exc: object) -> None:
        if self._job is not None:
            await self._job.close()

    async def _open(self) -> Job:


        now = time.time()
        async with contextlib.AsyncExitStack() as cluster, contextlib.AsyncExitStack() as kept:
            try:
                kube: Kube | None = await cluster.enter_async_context(await Kube.connect(kubeconfig=self._kubeconfig))
            except LevrtError:
                if not self._settings.store_uri:
                    raise
                kube = None  # the store is reached without the cluster: who asks and which jobs live is unknown
            store = await kept.enter_async_context(opened(self._settings, kube=kube))
            record = await self._record(store, kube)
            live = None if kube is None else await live_jobs(kube, self._settings.namespace, now=now)
            view = jobrecord.job_view(record, lease_gone=live is not None and record.get("_id") not in live, now=now)
            if view is None:
                raise RecordNotFound(f"levrt.job({self._which!r}): what was found is not a job record: "
                                     f"{record!r:.200}")
            owned = kept.pop_all()  # the Job closes the store (job.close()); the cluster connection closes now
        return Job(store, view, record, closing=owned)

    async def _record(self, store: Store, kube: Kube | None) -> dict[str, Any]:

        if self._which != LATEST:
            record = await store.collection(JOB_RECORDS).find_one({"_id": self._which})
            if record is None:
                raise RecordNotFound(
                    f"levrt.job({self._which}): the store has no record of job {self._which}. Jobs run with "
                    "levrt 2.0 or later have one; `levrt ps --all-users` lists them.")
            return dict(record)
        owner = None if kube is None else (await identify(kube, kubeconfig=self._kubeconfig)).name
        query = {} if owner in (None, "unknown") else {"owner": owner}
        found, _ = await store.newest(JOB_RECORDS, query, limit=1)
        if not found:
            whose = f" of {owner}" if query else ""
            raise RecordNotFound(f"levrt.job(): no job records{whose} in the store yet.")
        return found[0]


class Job:
    """A job as its records tell it. Attributes come from its record; methods read the store."""

    def __init__(self, store: Store, view: Mapping[str, Any], record: Mapping[str, Any], *,
                 closing: contextlib.AsyncExitStack | None = None) -> None:
        self._store = store
        self._closing = closing
        self._files: FileStore = FileStore.of(store)
        self.record: dict[str, Any] = dict(record)
        """The record as stored (``_id`` is the job id)."""
        self.id: int = view["job"]
        self.state: str = view["state"]
        """``running``, ``succeeded``, ``failed``, ``cancelled``, or ``lost`` (its client died without
        writing the end: its Lease is gone)."""
        self.owner: str = view["owner"]
        """The Kubernetes identity that ran it."""
        self.where: str = view["where"]
        """``laptop``, ``in-cluster`` or ``detached``."""
        self.what: str = view["what"]
        """What ran and its arguments as given: ``flows.py:sweep 10.0.0.0/24 ports=22``."""
        self.target: str | None = view["target"]
        self.args: list[str] = view["args"]
        self.started: dt.datetime | None = _when(view["started"])
        self.ended: dt.datetime | None = _when(view["ended"])
        self.duration: float | None = view["duration"]
        """Seconds from start to end (to now, while it runs)."""
        self.error: str | None = view["error"]
        """A failed job's error with its traceback."""
        self.task_counts: dict[str, int] = view["tasks"]
        """Its tasks by how they ended: ``{"done": 12, "failed": 1}`` (written when the job ends)."""

    def __repr__(self) -> str:
        return f"<levrt.Job {self.id} {self.state} {self.what!r} by {self.owner}>"

    async def close(self) -> None:
        """Close its connection to the store (``async with`` does it at the end of the block)."""
        if self._closing is not None:
            await self._closing.aclose()
        else:
            await self._store.close()

    async def value(self) -> Any:
        """What the orchestration returned (None while it runs, or if it failed); a large value is
        read back from the store's file storage."""

        value = self.record.get("value")
        apart = placeholder_of(value)
        if apart is None:
            return value
        return json.loads(await self._files.read(apart[0]))

    async def tasks(self) -> list[dict[str, Any]]:
        """Its tasks' status records, in task order: ``task`` (its index), ``name``, ``image``,
        ``state`` (``submitting``, ``running``, ``succeeded``, ``failed``, ``timed-out``, ``deleted``),
        ``pod``, ``exitCode``, ``reason``, ``submitted``/``updated`` times, ``retries``."""
        return [{key: value for key, value in found.items() if key != "_id"}
                for found in await self._store.task_records(self.id)]

    async def schemas(self) -> dict[str, int]:
        """The collections its tasks wrote records to, and how many records each holds:
        ``{"ts/issues@1.0": 3, "demo|ts/banner@1.0": 1}`` (a namespace prefixes the name)."""

        return {found.name: count for found, count in await job_collections(self._store, self.id)}

    async def documents(self, schema: str, *, ns: str | None = None) -> list[Document]:
        """The records of ``schema`` its tasks wrote, one ``Document`` per task in task order
        (``doc.task_id`` says which). ``ns``: the namespace they were written in, ``a/b`` for
        ``with lev / "a" / "b":``."""

        if not is_gettable_schema(schema):
            raise LevrtError(f"job.documents({schema!r}): not a schema; job.schemas() lists those it wrote to.")
        collection = self._store.collection(collection_of(schema, ns))
        try:
            ids = [found["_id"] async for found in collection.find({"_id.job": self.id}, {"_id": 1})]
        except Exception as exc:
            raise self._store.unreachable(exc) from exc
        tasks = sorted(i["task"] for i in ids if isinstance(i, Mapping) and isinstance(i.get("task"), int))
        return [Document(collection, {"_id": {"job": self.id, "task": task}}, files=self._files) for task in tasks]

    @property
    def doc(self) -> Document:
        """The job's own record: what its orchestration stored with ``await lev.doc.set(...)``."""

        return Document(self._store.collection(JOBS), {"_id": {"job": self.id}}, files=self._files)

    async def logs(self, task: int, container: str = "main") -> Log:
        """The output of ``container`` (``main``, a service's name, ``levrt-files``) of task ``task``,
        as archived when the task ended; ``RecordNotFound`` when there is none. The text is whole
        unless ``.cut`` says where and why it is not."""

        try:
            found = await archived_log(self._store, self.id, task, container)
        except NoArchive as exc:
            raise RecordNotFound(no_archive_text(self.id, task, container, exc)) from None
        return Log(found.text, cut=found.cut, pod=found.pod, archived=found.archived)


class Log(str):
    """A task's archived log: the text itself, with where it came from and whether it is whole."""

    cut: str | None
    """Where the archive is incomplete, in words (None: it is whole)."""
    pod: str
    archived: dt.datetime | None

    def __new__(cls, text: str, *, cut: str | None, pod: str, archived: dt.datetime | None) -> Log:
        made = super().__new__(cls, text)
        made.cut, made.pod, made.archived = cut, pod, archived
        return made


def _when(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text)


async def changes(schema: str, *, key: str | Sequence[str], job: int, since: int | None = None, ns: str | None = None,
                  settings: Settings | None = None, kubeconfig: str | None = None) -> Changes:
    """What job ``job`` found in ``schema`` that job ``since`` did not, by ``key`` (field names, or
    ``"host,port"``): ``.added``, ``.removed`` and ``.changed`` records, ``.counts()``. ``since``
    defaults to the newest earlier job of the same tool or workflow that wrote ``schema``; the counts
    are kept in job ``job``'s record. E.g. feed only new hosts on::

        new = await levrt.changes("demo/nmap@1.0", key="targets", job=job_id)
        await levrt.Concurrent(deeper(r["targets"]) for r in new.added)
    """
    fields = parse_key(key) if isinstance(key, str) else tuple(key)
    if not fields:
        raise LevrtError("levrt.changes(key=...): name at least one field.")
    if not is_gettable_schema(schema):
        raise LevrtError(f"levrt.changes({schema!r}): not a schema (e.g. ts/issues@1.0).")
    async with opened(settings or Settings.from_env(), kubeconfig=kubeconfig) as store:
        found, _ = await job_changes.diff(store, schema, job=job, key=fields, since=since, ns=ns)
    return found
