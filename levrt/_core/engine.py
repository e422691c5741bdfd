"""The engine: one job's clients, its task counter, and the life of each task's Pod.

Why here and not in ``Cr`` or ``Task``: those are pure descriptions and handles (SPEC 1, "lazy");
running them needs a cluster connection, a store connection and a job id, which belong to one
orchestration run. ``session()`` opens an ``Engine`` and installs it as the current job's
``Runner`` (``levrt._job``); ``Cr.start`` and ``Task.done`` call down through that seam.

Submitting follows DESIGN.md (``levrt._clients.submit``): a task's payload Secret and files first,
owned by the job's Lease, then its Pod. The end of a task comes from the Pod's status, or sooner
from its runtime's report through the store (``levrt._core.ends``). What the end means is decided
here too: which exits count as success, what is recorded, and when the Pod is deleted. A run that
reached its timeout is not a failure (its Document is returned,
``Task.timed_out`` set); a Pod the cluster ended (deleted by someone else, evicted, its node lost,
a pull hiccup) is submitted again as a new Pod of the same task, up to ``Cr.retries`` times.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any, TypeVar

from levrt import _job, context
from levrt._clients import pods, resources, signals, submit
from levrt._clients.blobs import FileStore
from levrt._clients.kube import Kube
from levrt._clients.lease import JobLease
from levrt._clients.store import JOBS, TASKS, Store, resolve_uri, task_credentials
from levrt._clients.sweep import PayloadSweeper, PodSweeper
from levrt._clients.watch import PodWatch
from levrt._core import ownership, runtime_mode
from levrt._core.ends import Report, ReportedEnds
from levrt._core.jobrecords import JobRecord, identify, task_states
from levrt._core.localfiles import plan_task_files
from levrt._core.logarchive import MAIN, LogArchive
from levrt._core.records import StatusRecords
from levrt._core.runtime_mode import Decision
from levrt._core.uploads import Uploads
from levrt._core.warm import WarmPools
from levrt._shapes import handover, podstatus
from levrt._shapes.build import TaskObjects, build_task, with_attempt
from levrt._shapes.cachekey import content_key
from levrt._shapes.failures import failure_text, traceback_tail
from levrt._shapes.files import FilePlan
from levrt._shapes.handover import DONE_STATES, Inherited, LiveTask
from levrt._shapes.names import job_selector, task_of_pod
from levrt.cr import Cr
from levrt.document import Document
from levrt.endreports import succeeded
from levrt.errors import LevrtError, TaskFailed
from levrt.settings import Settings
from levrt.task import Task

__all__ = ["Engine", "session"]

log = logging.getLogger("lev")
_T = TypeVar("_T")

POLL_SECONDS = 5.0
"""How often a starting task's Pod is looked at again when no event came (deadlines, scheduling)."""
RETRY_BACKOFF = 2.0
"""Seconds before a task's first retry; doubled for each further one, at most ``RETRY_BACKOFF_MAX``."""
RETRY_BACKOFF_MAX = 30.0
SUBMITTING = 64
"""Tasks built and being created at once; the others wait to be built. Far more than the rate limit
lets through in the time one create takes, so it never slows a fan-out."""
HANDOVER_CHECK = 5.0
"""Seconds a Pod told to stop waits to learn whether its job goes on (``Engine.job_goes_on``)."""


class _ClusterEnded(Exception):
    """An attempt that the cluster, not the task, ended before it started (a retry may succeed)."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


@contextlib.asynccontextmanager
async def session(*, settings: Settings | None = None, kubeconfig: str | None = None,
                  what: Mapping[str, Any] | None = None, resume: int | None = None) -> AsyncIterator[Engine]:
    """Open a job: connect to the cluster and the store, allocate the job id, clean up at the end.
    ``what`` (``{"target": "FILE:FUNC", "args": [...]}``) goes into the job's record. ``resume``: a
    job whose succeeded tasks are not run again (``levrt._shapes.cachekey``); their records are taken."""
    engine = await Engine.open(settings=settings or Settings.from_env(), kubeconfig=kubeconfig, what=what,
                               resume=resume)
    raised: BaseException | None = None
    try:
        with _job.running(engine):
            yield engine
    except BaseException as exc:
        raised = exc
        raise
    finally:
        if engine.handing_over:  # this Pod goes away; the job goes on in the next one
            await asyncio.shield(engine.hand_over())
        else:
            # Tasks started but never awaited would run on unobserved; a job owns its Pods to the end.
            await asyncio.shield(engine.close(delete_pods=raised is not None or not engine.settings.keep,
                                              outcome=raised))


async def resumable(store: Store, job: int) -> dict[str, int]:
    """The tasks of job ``job`` that succeeded, by content key (only those recorded with one): run
    there, or taken there from a job it resumed (their records are that job's too)."""
    try:
        found = [doc async for doc in store.collection(TASKS).find({"job": job, "state": {"$in": sorted(DONE_STATES)}})]
    except Exception as exc:
        raise store.unreachable(exc) from exc
    if not found and await store.count(TASKS, {"job": job}) == 0:
        raise LevrtError(f"--resume {job}: the store has no task of job {job} (`levrt ps --all-users` lists jobs).")
    return {str(doc["key"]): int(doc["task"]) for doc in found if doc.get("key") and isinstance(doc.get("task"), int)}


class Engine:
    """One job. Create with ``await Engine.open(...)``; end with ``await engine.close()``."""

    def __init__(self, *, settings: Settings, kube: Kube, store: Store, watch: PodWatch, job_id: int,
                 runtime: Decision | None = None, claim: ownership.Claim | None = None, own_pod: str | None = None,
                 job_record: JobRecord | None = None, inherited: Inherited | None = None) -> None:
        self.settings = settings
        self.job_record = job_record or JobRecord(store, job_id)
        """The job's record (``levrt_jobs``); its ``value`` is set by whoever awaits the orchestration."""
        self.claim = claim or ownership.Claim(job_id, None)
        """How the job was opened (or taken over) and what owns it."""
        self.lease = self.claim.lease
        """The job's Lease, owner of its Pods (None: the apiserver refused it; logged at open)."""
        self.inherited = inherited or Inherited()
        """A job taken over: its tasks from the orchestration Pod before this one (``levrt._shapes.handover``)."""
        self.handing_over = False
        """This orchestration Pod goes away and the job goes on in the next one: from now on nothing
        is recorded, deleted or ended here (``hand_over``)."""
        self.own_pod = own_pod
        """The orchestration Pod this job runs in, when the Lease adopted it (``levrt run --in-cluster``)."""
        self.runtime = runtime or Decision(settings.runtime_mode, "as configured")
        """How this job's tasks get the runtime, and why (``levrt._core.runtime_mode``)."""
        self.kube = kube
        self.store = store
        self.watch = watch
        self.job_id = job_id
        self._task_index = itertools.count(self.inherited.next_task)
        self.status = StatusRecords(store, job=job_id)
        self.tasks: list[Task] = []
        self.sweeper = PayloadSweeper(kube, namespace=settings.namespace, job=job_id)
        """Deletes finished tasks' payload Secrets in batches (the job's Lease is the backstop)."""
        self.pod_sweeper = PodSweeper(kube, namespace=settings.namespace, job=job_id, refused=self._delete_one_by_one)
        """Deletes finished tasks' Pods in batches (one request for every task that ended since the last)."""
        self.files = FileStore.of(store)
        self.uploads = Uploads(self.files)
        """Content tasks need in the store's file storage, uploaded once per job (``levrt._core.uploads``)."""
        self.log_archive = LogArchive(kube, store, self.files, namespace=settings.namespace, job=job_id)
        """Each ended task's container logs, kept in the store once its Pod is gone (``levrt._core.logarchive``)."""
        self.warm = WarmPools(kube=kube, store=store, watch=watch, settings=settings, job=job_id, owner=self._owner,
                              record=self.record, archive=self.log_archive, delete_pod=self.delete_pod,
                              wait_started=lambda name: self._wait_started(name, need_ready=False))
        """The job's warm Pods and the entries out in them (``Cr(warm=...)``, ``levrt._core.warm``)."""
        self._submit_slots = asyncio.Semaphore(SUBMITTING)
        self.ends = ReportedEnds(store, job=job_id)
        """What the tasks' runtimes report of their ends through the store (``levrt._core.ends``)."""
        self._kept: set[str] = set()
        """Pods of ended tasks that ``keep`` keeps, also when the job fails (``delete_job_pods`` spares them)."""
        self._deleted: set[str] = set()
        """Pods this job deleted itself: their deletion is no failure of the cluster to retry."""
        self._first_objects: dict[int, TaskObjects] = {}
        """The first attempt's objects of each task that may be retried (renamed for a retry)."""
        self.resumed: int | None = None
        """The job this one resumes (``--resume``)."""
        self.cached: dict[str, int] = {}
        """The tasks of ``resumed`` that succeeded, by content key: a task asked again takes their record."""
        self.start_failures: dict[int, TaskFailed] = {}
        """Why a task whose Pod never ran failed (``start()`` raised it; no ``Task.done()`` saw it)."""

    @classmethod
    async def open(cls, *, settings: Settings, kubeconfig: str | None = None,
                   what: Mapping[str, Any] | None = None, resume: int | None = None) -> Engine:
        kube = await Kube.connect(kubeconfig=kubeconfig)
        store: Store | None = None
        watch: PodWatch | None = None
        lease: JobLease | None = None
        claim: ownership.Claim | None = None
        try:
            version = await kube.server_version()
            version.require_supported()
            runtime = await runtime_mode.decide(kube, settings, server=version.git_version, minor=version.minor)
            if runtime.mode in ("image", "copy"):
                settings = settings.replace(runtime_mode=runtime.mode)
            settings = await task_credentials(kube, settings)
            store = Store.connect(await resolve_uri(kube, settings), database=settings.database)
            cached = await resumable(store, resume) if resume is not None else {}
            claim = await ownership.claim_job(kube, settings, store)
            job_id, lease = claim.job, claim.lease
            own_pod = await ownership.adopt_own_pod(kube, settings, claim)
            if claim.taken_over:
                job_record = await JobRecord.take_over(store, job=job_id)
                inherited = handover.inherited(await store.task_records(job_id))
            else:
                job_record = await JobRecord.open(store, job=job_id,
                                                  identity=await identify(kube, kubeconfig=kubeconfig),
                                                  what={**(what or {}), **({"resume": resume} if resume else {})},
                                                  lease=lease is not None)
                inherited = Inherited()
            watch = PodWatch(kube, namespace=settings.namespace, selector=job_selector(job_id))
            await watch.start()
        except BaseException:
            if lease is not None and claim is not None and claim.taken_over:
                # The job is not this Pod's to end: the next Pod of its Kubernetes Job may go on with it.
                await asyncio.shield(lease.stop())
            elif lease is not None:  # nothing of a job that never opened may stay (the Lease would own its Pod)
                await asyncio.shield(lease.close())
            if watch is not None:
                await watch.close()
            if store is not None:
                await store.close()
            await kube.close()
            raise
        log.info("job: %d", job_id)
        log.debug("runtime: %s (%s)", runtime.mode, runtime.reason)
        engine = cls(settings=settings, kube=kube, store=store, watch=watch, job_id=job_id, runtime=runtime,
                     claim=claim, own_pod=own_pod, job_record=job_record, inherited=inherited)
        if claim.taken_over:
            log.info("job %d taken over: %d of its tasks are done and %d may still run; they are not run again "
                     "if the workflow asks for them again", job_id, sum(map(len, inherited.done.values())),
                     len(inherited.left_live()))
        engine.resumed, engine.cached = resume, cached
        if resume is not None:
            log.info("resuming job %d: %d of its tasks succeeded and are not run again if asked again", resume,
                     len(cached))
        return engine

    async def close(self, *, delete_pods: bool = False, outcome: BaseException | None = None) -> None:
        """Stop watching and close connections; with ``delete_pods`` remove this job's Pods. The job's
        record ends as ``outcome`` says (what the orchestration raised; None: it succeeded)."""
        try:
            left_live = self.inherited.left_live()  # the workflow did not ask for them again
            for left in left_live:
                self.record(task=left.task, state="deleted", reason="not asked for again after the job was taken over")
            await self.warm.close()
            await self.ends.close()
            await self.pod_sweeper.close()  # the ended tasks' Pods, before what is left is deleted one by one
            if delete_pods or left_live:
                await self.delete_job_pods()
            if delete_pods:
                for task in self.tasks:  # started, never awaited to the end: their Pods are gone now
                    if not task.ended and task.task_id not in self.start_failures:
                        self.record(task=task.task_id, state="deleted", reason="the job ended before the task")
            await self.log_archive.close()
            await self.status.close()
            await self.sweeper.close()
        finally:
            # Before the Lease goes: a record still `running` without its Lease reads as lost.
            await self.job_record.close(exc=outcome, states=task_states(self.tasks, self.start_failures),
                                        store_apart=self.upload)
            await ownership.let_go(self.kube, self.settings, self.claim, self.own_pod)
            await self.watch.close()
            await self.store.close()
            await self.kube.close()

    async def job_goes_on(self) -> bool:
        """Whether this Pod, told to stop (SIGTERM), should hand the job over rather than end it: it
        runs under a Kubernetes Job that is not being deleted, so the Pod is being deleted or evicted
        on its own and the Job will make the next one. A cancel deletes the Job (``levrt._console``,
        ``levrt gc --job``: the Lease takes it along). When the Job cannot be read, the job ends."""
        runner = self.claim.runner
        if runner is None:
            return False
        try:
            found = await asyncio.wait_for(resources.get(self.kube, "Job", runner.name,
                                                         namespace=self.settings.namespace), HANDOVER_CHECK)
        except (LevrtError, TimeoutError) as exc:
            log.warning("cannot tell whether job %d goes on (%s): it ends here", self.job_id, exc)
            return False
        return not found["metadata"].get("deletionTimestamp") and found["metadata"].get("uid") == runner.uid

    async def hand_over(self) -> None:
        """Leave the job to the next orchestration Pod: what was recorded is written, the Lease is no
        longer renewed here (the next Pod takes it over), and the task Pods and the job's record stay
        as they are."""
        try:
            await self.warm.close()  # its entries run again under the next Pod (warm Pods are not followed)
            await self.ends.close(delete=False)
            await self.status.close()
            await self.log_archive.close()
            await self.sweeper.close()
            await self.pod_sweeper.close()  # tasks that ended here: their Pods are done with
        finally:
            if self.lease is not None:
                await self.lease.stop()
            await self.watch.close()
            await self.store.close()
            await self.kube.close()
        log.info("job %d handed over: this orchestration Pod goes away and the next one goes on with it", self.job_id)

    async def delete_job_pods(self) -> None:
        """Delete every task Pod of this job still present (one DELETE each: the chart's Role grants
        ``delete``, not ``deletecollection``). Not the orchestration Pod this job runs in: it carries
        the job's label too (adopted by the job's Lease), and deleting it would end this process."""
        with contextlib.suppress(LevrtError):
            found = await pods.job_pods(self.kube, self.settings.namespace, self.job_id)
            doomed = [pod for pod in found
                      if pod["metadata"]["name"] != self.own_pod and pod["metadata"]["name"] not in self._kept]
            await self.log_archive.cut_short(doomed, {task.pod: task.task_id for task in self.tasks
                                                      if not task.ended and task.pod and not task.warm})
            names = [pod["metadata"]["name"] for pod in doomed]
            await asyncio.gather(*(self.delete_pod(name) for name in names))
            if names:
                log.info("deleted %d remaining Pod(s) of job %d", len(names), self.job_id)

    def record(self, *, task: int, **fields: Any) -> None:
        """Record a task's status (``levrt_tasks``), written off the hot path and in order; nothing
        once handing over (a task cancelled here goes on, as the next Pod will find it)."""
        if not self.handing_over:
            self.status.record(task, **fields)

    # -- the Runner of levrt._job ------------------------------------------------------------

    async def start(self, cr: Cr) -> Task:
        # Task ids follow the order the Crs were started in (before anything is awaited); a job taken
        # over gives one only to a Cr that is not one of its inherited tasks.
        index = None if self.inherited.pending() else next(self._task_index)
        collection = context.collection_name(cr.schema)
        # The local files read or hashed in a thread: a missing one fails here, before anything is created.
        plan = await asyncio.to_thread(plan_task_files, cr, hashes=self.uploads.hashes)
        key = content_key(cr, {name: {f.target: f.sha256 for f in files} for name, files in plan.containers.items()},
                          collection=collection)
        # A run with ports is something other tasks connect to while it runs (a target, a service):
        # what it is for is being up, not its record, so it is never taken from an earlier run.
        reusable = key if not cr.ports else None
        done = self.inherited.take_done(reusable)
        if done is not None:
            return self._inherited_done(cr, done, collection)
        live = self.inherited.take_live(key)
        if live is not None:
            if self.watch.get(live.pod) is not None and task_of_pod(live.pod) is not None:  # not a warm Pod's
                return await self._follow(cr, live, collection, plan)
            self.record(task=live.task, state="lost", reason="its Pod was gone when the job was taken over")
        if index is None:
            index = next(self._task_index)
        if reusable is not None and reusable in self.cached:
            assert self.resumed is not None
            return await self._take_cached(cr, index, collection, reusable, (self.resumed, self.cached[reusable]))
        if reusable is not None and cr.cache is not None and (hit := await self._cache_hit(reusable, cr.cache)):
            return await self._take_cached(cr, index, collection, reusable, hit)
        if cr.warm is not None:
            return self._start_warm(cr, index, collection, key)
        name = await self._submit_new(cr, index, collection, plan, key)
        task = Task(runner=self, cr=cr, job_id=self.job_id, task_id=index, pod=name, collection=collection)
        self.tasks.append(task)
        return await self._running(task)

    async def _submit_new(self, cr: Cr, index: int, collection: str, plan: FilePlan, key: str | None) -> str:
        """Build task ``index``'s objects and create them; its Pod's name. A task is built only once one
        of ``SUBMITTING`` slots is free: a thousand tasks started at once would otherwise each hold its
        objects (its payload Secret is as large as its pickled call) while they queue for the rate limit."""
        async with self._submit_slots:
            objects = build_task(cr, job=self.job_id, task=index, collection=collection, settings=self.settings,
                                 plan=plan, report_key=self.ends.key(index))
            # Large files and Digests: in the store before anything is created (an unknown Digest fails here).
            await self.uploads.ensure(plan.stored)
            self.record(task=index, state="submitting", pod=objects.name, image=cr.image, collection=collection,
                        submitted=time.time(), name=cr.origin, maxRetries=cr.retries, key=key)
            self._expect_report(objects)
            await submit.submit(self.kube, self.settings.namespace, objects, owner=self._owner())
        if cr.retries:
            self._first_objects[index] = objects
        return objects.name

    def _start_warm(self, cr: Cr, index: int, collection: str, key: str | None) -> Task:
        """A warm entry: handed to a warm Pod of its pool, through the store (``levrt._core.warm``)."""
        task = Task(runner=self, cr=cr, job_id=self.job_id, task_id=index, pod="-", collection=collection)
        task.warm = True
        fields = {"pod": "-", "image": cr.image, "collection": collection, "submitted": time.time(),
                  "name": cr.origin, "maxRetries": cr.retries, "key": key, "warm": True}
        try:  # a payload too large fails here, with nothing made or recorded
            self.warm.start(cr, task=task)
        except TaskFailed as exc:  # its pool's Pods could not start: it fails as they did
            self.start_failures[index] = exc
            self.record(task=index, state="failed", reason=exc.reason, **fields)
            raise
        self.record(task=index, state="submitting", **fields)
        self.tasks.append(task)
        return task

    def _expect_report(self, objects: TaskObjects) -> None:
        """A Pod whose runtime has a reporting key may report its end through the store."""
        if objects.reports:
            self.ends.expect(objects.name)

    async def _unless_reported(self, work: Awaitable[_T], pod: str) -> tuple[_T | None, Report | None]:
        """``work``'s result, or, when ``pod``'s runtime reports its end first, that report (and
        ``work`` cancelled): a runtime that reported has run, whatever the kubelet has posted yet."""
        working = asyncio.ensure_future(work)
        if not self.ends.expects(pod):
            return await working, None
        reported = self.ends.reported(pod)
        try:
            either: list[asyncio.Future[Any]] = [working, reported]
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not working.done():
                working.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await working
        if not working.cancelled():
            return working.result(), None
        return None, reported.result()

    async def _running(self, task: Task) -> Task:
        try:
            await self._wait_running(task)
        except TaskFailed as exc:  # it never ran: this is its end, not something the job's close deletes
            self.start_failures[task.task_id] = exc
            self.record(task=task.task_id, state="failed", reason=exc.reason)
            raise
        return task

    def _inherited_done(self, cr: Cr, index: int, collection: str) -> Task:
        """A task this job ran to success before it was taken over: its own record, nothing run."""
        task = Task(runner=self, cr=cr, job_id=self.job_id, task_id=index, pod="-", collection=collection)
        task.document = Document(self.store.collection(collection), {"_id": {"job": self.job_id, "task": index}},
                                 files=self.files)
        self.tasks.append(task)
        return task

    async def _follow(self, cr: Cr, live: LiveTask, collection: str, plan: FilePlan) -> Task:
        """A task whose Pod the previous orchestration Pod left running: followed to its end as if
        this Pod had started it (a retry builds its objects afresh, as the first attempt's)."""
        task = Task(runner=self, cr=cr, job_id=self.job_id, task_id=live.task, pod=live.pod, collection=collection)
        task.retries = live.retries
        self.tasks.append(task)
        if cr.retries:
            self._first_objects[live.task] = build_task(cr, job=self.job_id, task=live.task, collection=collection,
                                                        settings=self.settings, plan=plan)
        log.debug("task %s: following its Pod %s, left running by the previous orchestration Pod", task.id, live.pod)
        return await self._running(task)

    async def _cache_hit(self, key: str, age: float) -> tuple[int, int] | None:
        """``Cr(cache=age)``: the newest task of another job with the same content key that ran and
        succeeded less than ``age`` seconds ago, as ``(job, task)``; None when there is none. A task
        that was itself taken from a cache does not count: its result is as old as its source."""
        since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=age)
        try:
            found = [doc async for doc in self.store.collection(TASKS).find(
                {"key": key, "state": "succeeded", "updated": {"$gte": since},
                 "job": {"$ne": self.job_id}}).sort("updated", -1).limit(1)]
        except Exception as exc:
            raise self.store.unreachable(exc) from exc
        return (int(found[0]["job"]), int(found[0]["task"])) if found else None

    async def _take_cached(self, cr: Cr, index: int, collection: str, key: str, source: tuple[int, int]) -> Task:
        """A task whose identical run succeeded before (in the resumed job, or within its ``cache``
        age): that run's record ``source`` (job, task) becomes this task's (the same fields, under
        this job and task), and no Pod is made."""
        source_job, source_task = source
        cached_from = f"{source_job}.{source_task}"
        records = self.store.collection(collection)
        try:
            found = await records.find_one({"_id": {"job": source_job, "task": source_task}})
            if found is not None:
                # An insert: the task id is new. An upsert by a document _id costs FerretDB on SQLite
                # two collection scans (~100 ms at 2,500 records, bench/resume.py); an insert, one index probe.
                await records.insert_one({**found, "_id": {"job": self.job_id, "task": index}})
        except Exception as exc:
            raise self.store.unreachable(exc) from exc
        self.record(task=index, state="cached", pod="-", image=cr.image, collection=collection, submitted=time.time(),
                    name=cr.origin, key=key, cachedFrom=cached_from)
        task = Task(runner=self, cr=cr, job_id=self.job_id, task_id=index, pod="-", collection=collection)
        task.cached_from = cached_from
        task.document = Document(records, {"_id": {"job": self.job_id, "task": index}}, files=self.files)
        self.tasks.append(task)
        return task

    async def _wait_running(self, task: Task) -> None:
        """Wait until the task's Pod runs; a start the cluster spoiled is submitted again (retries)."""
        while True:
            try:
                started = self._wait_started(task.pod, need_ready=bool(task.cr.ports),
                                             retry=task.retries < task.cr.retries)
                pod, _ = await self._unless_reported(started, task.pod)
                pod = pod if pod is not None else self.watch.get(task.pod) or {}
            except _ClusterEnded as ended:
                await self._resubmit(task, ended.cause)
                continue
            except TaskFailed:  # it ended before it ran: what its containers said may be why
                await asyncio.shield(self._end_pod(task, self.watch.get(task.pod)))
                raise
            except BaseException:
                await asyncio.shield(self.delete_pod(task.pod))
                raise
            task.host = pod.get("status", {}).get("podIP")
            self.record(task=task.task_id, state="running", host=task.host,
                        node=pod.get("spec", {}).get("nodeName"))
            return

    async def _resubmit(self, task: Task, cause: str) -> None:
        """Replace the task's Pod by a new one (same task id, same record, ``-r<n>`` name)."""
        attempt = task.retries + 1
        old = task.pod
        objects = with_attempt(self._first_objects[task.task_id], attempt)
        await asyncio.shield(self.delete_pod(old))
        self.watch.forget(old)
        self.ends.forget(old)
        delay = min(RETRY_BACKOFF * 2 ** (attempt - 1), RETRY_BACKOFF_MAX)
        log.warning("task %s: %s; submitting it again as %s in %.0f s (retry %d of %d)",
                    task.id, cause, objects.name, delay, attempt, task.cr.retries)
        task.pod, task.retries, task.host = objects.name, attempt, None
        self.record(task=task.task_id, state="retrying", pod=objects.name, retries=attempt, retryReason=cause)
        await asyncio.sleep(delay)
        self._expect_report(objects)
        await submit.submit(self.kube, self.settings.namespace, objects, owner=self._owner())

    async def finish(self, task: Task) -> Document:
        """Wait for the end; a non-zero exit is a failure unless the caller signalled the task or it
        reached its timeout. A Pod the cluster ended is replaced while ``task.cr.retries`` allow."""
        if task.warm:
            return await self.warm.finish(task)
        while True:
            pod, report = await self._finished(task)
            if succeeded(report):  # its runtime says so
                cause = None
                break
            cause = podstatus.infrastructure_failure(pod, deleted_by_us=task.pod in self._deleted)
            if cause is None or task.signalled or task.retries >= task.cr.retries:
                break
            try:
                await self._resubmit(task, cause)
                await self._wait_running(task)
            except TaskFailed as exc:  # the new Pod never ran (and is deleted): the end of the task
                self.record(task=task.task_id, state="failed", reason=exc.reason)
                self._ended(task)
                raise
        ended = podstatus.failure(pod)
        exit_code = ended.exit_code
        # Read beside the rest of the task's end; what the runtime reported of main's output is not read again.
        carried = {MAIN: str(report.get("log") or "")} if report is not None else None
        logs_read = self.log_archive.begin(task.task_id, pod, carried=carried)
        try:
            if succeeded(report):
                self.record(task=task.task_id, state="succeeded", exitCode=0)
            elif podstatus.timed_out(pod):
                task.timed_out = True
                self.record(task=task.task_id, state="timed-out", exitCode=exit_code)
                timeout = task.cr.timeout if task.cr.timeout is not None else self.settings.timeout
                log.warning("task %s timed out after %s s; its record keeps what it stored until then",
                            task.id, timeout)
            elif not podstatus.succeeded(pod) and not task.signalled:
                reason, detail = ended.reason, ended.message
                if cause is not None:  # the cluster ended it and no retry is left: say so
                    reason, _, detail = cause.partition(": ")
                    if task.retries:
                        detail += f"; after {task.retries} retr{'y' if task.retries == 1 else 'ies'}"
                self.record(task=task.task_id, state="failed", exitCode=exit_code, reason=reason)
                raise await self.failure(task.pod, reason=reason, detail=detail, exit_code=exit_code, task=task)
            else:
                self.record(task=task.task_id, state="succeeded", exitCode=exit_code)
        finally:
            await self.log_archive.wait_read(logs_read)
            if self.settings.keep:
                self._kept.add(task.pod)
            elif not self.handing_over:  # ended: deleted with the others that ended about now
                self._deleted.add(task.pod)
                self.pod_sweeper.add(task.task_id, pod=task.pod)
            self._ended(task)
        return Document(self.store.collection(task.collection), {"_id": {"job": task.job_id, "task": task.task_id}},
                        timed_out=task.timed_out, files=self.files)

    async def _finished(self, task: Task) -> tuple[dict[str, Any], Report | None]:
        """The task's Pod once it finished, with its runtime's report if one came; or, when the
        runtime reported a success before the kubelet posted the end, the Pod as last seen and it."""
        pod, report = await self._unless_reported(self.watch.wait(task.pod, podstatus.finished), task.pod)
        if succeeded(report):
            self.ends.take(task.pod)
            return self.watch.get(task.pod) or {"metadata": {"name": task.pod}}, report
        if pod is None:  # a failure reported: what the Pod says of it (its reason, events) comes with its end
            pod = await self.watch.wait(task.pod, podstatus.finished)
        else:  # the kubelet was first: the report, if any, is in the store by now
            await self.ends.look(task.pod)
        return pod, self.ends.take(task.pod)

    async def _end_pod(self, task: Task, pod: dict[str, Any] | None) -> None:
        """The end of a task whose Pod never ran: its logs (an init container's) archived, the Pod
        deleted, also with ``keep`` (a Pod still waiting for a node would start later, unobserved)."""
        if pod is not None:
            await self.log_archive.wait_read(self.log_archive.begin(task.task_id, pod))
        await self.delete_pod(task.pod)

    def _ended(self, task: Task) -> None:
        """Forget a task that ended (its Pod deleted, unless kept): payloads to sweep, watch entry."""
        if not self.settings.keep and (
            task.cr.entry is not None or any(svc.entry is not None for svc in task.cr.services.values())
        ):
            self.sweeper.add(task.task_id)
        self.watch.forget(task.pod)
        self.ends.forget(task.pod)
        self._first_objects.pop(task.task_id, None)

    async def signal(self, task: Task, signal: str | int) -> None:
        signum = signals.signal_number(signal)
        if task.warm:
            await self.warm.signal(task, signum)
            return
        pod = self.watch.get(task.pod)
        # None: finish() has forgotten it (the task ended and its Pod was deleted).
        if pod is None or "terminated" in podstatus.main_state(pod) or pod.get(podstatus.DELETED):
            log.debug("task %s already ended; signal %s not sent", task.id, signal)
            return
        task.signalled = True
        result = await signals.deliver(
            self.kube, self.settings.namespace, task.pod, signum, runtime=task.cr.entry is not None
        )
        if result.exit_code != 0:
            raise LevrtError(
                f"Could not deliver {signals.signal_name(signum)} to task {task.id}: "
                f"{(result.stderr or result.stdout).decode(errors='replace').strip()}. "
                "An image without an entry needs a `kill` command for signals."
            )

    async def logs(self, task: Task, *, tail: int | None = None) -> str:
        if task.warm:
            return await self.warm.logs(task, tail=tail)
        return await self.pod_logs(task.pod, tail=tail)

    def job_document(self) -> Document:
        return Document(self.store.collection(JOBS), {"_id": {"job": self.job_id}}, files=self.files)

    async def upload(self, source: bytes | str | os.PathLike[str]) -> str:
        """``levrt.upload`` in this job: store content in the file storage; its sha256."""
        return await self.uploads.upload(source)

    # -- Pods --------------------------------------------------------------------------------

    def _owner(self) -> dict[str, Any] | None:
        return None if self.lease is None else self.lease.reference

    async def _delete_one_by_one(self, batch: Mapping[int, Mapping[str, Any]]) -> None:
        """The Pods of ended tasks, where the account may not delete them by collection."""
        await asyncio.gather(*(self.delete_pod(str(fields["pod"])) for fields in batch.values() if fields.get("pod")))

    async def delete_pod(self, name: str) -> None:
        if self.handing_over:  # the next orchestration Pod follows it
            return
        self._deleted.add(name)
        await submit.delete_pod(self.kube, self.settings.namespace, name)

    async def _wait_started(self, name: str, *, need_ready: bool, retry: bool = False) -> dict[str, Any]:
        """Wait until the main container runs (and is Ready when it has ports).

        ``start_timeout`` counts from the moment the Pod has a node: a fan-out larger than the
        cluster queues in the scheduler, and waiting there is not a slow start. A Pod the scheduler
        cannot place fails after ``schedule_timeout``, unless it only waits for room that this job's
        own running Pods will free (``Too many pods``, ``Insufficient cpu``): that is a queue
        draining, so it waits on. With ``retry``, a start the cluster spoiled (the Pod deleted by
        someone else, a pull that may be a hiccup) raises ``_ClusterEnded`` instead of failing.
        """
        bound: float | None = None  # when we saw it on a node (our clock: no skew with the cluster's)
        room_seen: float | None = None  # when another Pod of the job last held a node
        while True:
            if bound is None and podstatus.on_node(self.watch.get(name) or {}):
                bound = time.monotonic()
            remaining = POLL_SECONDS
            if bound is not None:
                remaining = bound + self.settings.start_timeout - time.monotonic()
                if remaining <= 0:
                    raise await self.failure(name, reason="StartTimeout",
                                             detail=f"not started {self.settings.start_timeout:.0f}s after "
                                                    "it was given a node")
            try:
                pod = await self.watch.wait(name, lambda p: podstatus.start_state(p, need_ready=need_ready),
                                            timeout=min(remaining, POLL_SECONDS))
            except TimeoutError:
                pod = self.watch.get(name) or {}
                waiting = podstatus.unschedulable_since(pod)
                if waiting is None:
                    continue
                if podstatus.waits_for_room(pod):
                    if self._holds_room(besides=name):
                        room_seen = time.monotonic()
                    # The scheduler retries a queued Pod a moment after room frees up; until then
                    # its condition still says "full", so the job's own Pods count for a while.
                    if room_seen is not None and time.monotonic() - room_seen <= self.settings.schedule_timeout:
                        continue
                if time.time() - waiting > self.settings.schedule_timeout:
                    raise await self.failure(
                        name, reason="Unschedulable",
                        detail=str(podstatus.condition(pod, "PodScheduled").get("message", "")),
                    ) from None
                continue
            state = podstatus.start_state(pod, need_ready=need_ready)
            if isinstance(state, podstatus.StartFailure):
                if retry and (
                    podstatus.pull_may_recover(state) or (state.reason == "PodDeleted" and name not in self._deleted)
                ):
                    raise _ClusterEnded(f"{state.reason}: {state.detail}")
                raise await self.failure(name, reason=state.reason, detail=state.detail)
            return pod

    def _holds_room(self, *, besides: str) -> bool:
        """Whether another Pod of this job is on a node and will end (so room frees up)."""
        return any(podstatus.holds_room(pod) for pod in self.watch.pods()
                   if pod.get("metadata", {}).get("name") != besides)

    async def failure(self, name: str, *, reason: str, detail: str, exit_code: int | None = None,
                      task: Task | None = None) -> TaskFailed:
        """A ``TaskFailed`` with the tail of the Pod's logs; its message quotes the Pod's Warning events
        when the logs hold no traceback (a Pod that never ran: the events are all there is to say why).
        The ``Normal`` events (scheduled, pulled, started) say nothing about a failure."""
        logs = await self.pod_logs(name, tail=40)
        warnings: list[str] = []
        if not traceback_tail(logs):
            events = await self.events(name, uid=(self.watch.get(name) or {}).get("metadata", {}).get("uid"))
            warnings = [e for e in events if e.startswith("Warning ")]
        text = failure_text(name, reason=reason, detail=detail, warnings=warnings)
        return TaskFailed(text, exit_code=exit_code, reason=reason, logs=logs, task=task)

    async def pod_logs(self, name: str, *, tail: int | None = None, container: str = "main") -> str:
        """A container's output, or ``""`` when it cannot be read (a failure's report goes on without it)."""
        try:
            return await pods.logs(self.kube, self.settings.namespace, name, container=container, tail=tail)
        except LevrtError:
            return ""

    async def events(self, name: str, *, uid: str | None = None) -> list[str]:
        """The events of the Pod ``name`` (of this very Pod when its ``uid`` is known), one line each."""
        try:
            found = await pods.events(self.kube, self.settings.namespace, name, uid=uid)
        except LevrtError:
            return []
        return [f"{e.get('type', '')} {e.get('reason', '')}: {e.get('message', '').strip()}" for e in found]
