"""The core: one job's clients, its task counter, and the life of each task's Pod.

Why here and not in ``Cr``: a ``Cr`` is a pure description (SPEC 1, "lazy"); running it needs a
cluster connection, a store connection and a job id, which belong to one orchestration run.
``levrt.run`` (or ``async with session():``) opens an ``Engine`` and puts it in a context
variable; ``Cr.start()`` finds it there.

Submitting follows DESIGN.md: the Pod is created behind a scheduling gate, the objects it
owns are created with an ownerReference to it, then the gate is lifted. Any failure in between
deletes the Pod, and the garbage collector removes whatever it owned, so nothing half-created
stays behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from levrt import context, submit
from levrt.errors import ClusterError, LevrtError, StoreError, TaskFailed
from levrt.kube import ApiError, Kube, PodWatch
from levrt.settings import Settings
from levrt.store import Store

if TYPE_CHECKING:
    from levrt.cr import Cr
    from levrt.task import Task

__all__ = ["Engine", "current", "session", "start"]

log = logging.getLogger("lev")

MANAGED = "app.kubernetes.io/managed-by=levrt"
MIN_MINOR = 29

# Waiting reasons after which a container will not start without a change by the user.
FATAL_WAITING = {
    "ErrImagePull": "the image could not be pulled",
    "ImagePullBackOff": "the image could not be pulled",
    "InvalidImageName": "the image name is invalid",
    "ErrImageNeverPull": "the image is not on the node and imagePullPolicy is Never",
    "CreateContainerConfigError": "the container configuration is invalid",
    "CreateContainerError": "the container could not be created",
    "RunContainerError": "the container could not be started",
}

_current: contextvars.ContextVar[Engine | None] = contextvars.ContextVar("levrt_engine", default=None)


def current() -> Engine:
    """The engine of the job running in this context."""
    engine = _current.get()
    if engine is None:
        raise LevrtError(
            "No levrt job is running here. Run your orchestration with levrt.run(main()), "
            "or open a job yourself with `async with levrt.engine.session():`."
        )
    return engine


async def start(cr: Cr) -> Task:
    """Submit ``cr`` in the current job and return its running ``Task`` (``Cr.start``)."""
    return await current().start(cr)


@contextlib.asynccontextmanager
async def session(
    *, settings: Settings | None = None, kubeconfig: str | None = None
) -> AsyncIterator[Engine]:
    """Open a job: connect to the cluster and the store, allocate the job id, clean up at the end."""
    engine = await Engine.open(settings=settings or Settings.from_env(), kubeconfig=kubeconfig)
    token = _current.set(engine)
    failed = True
    try:
        yield engine
        failed = False
    finally:
        _current.reset(token)
        # Tasks started but never awaited would run on unobserved; a job owns its Pods to the end.
        await asyncio.shield(engine.close(delete_pods=failed or not engine.settings.keep))


class Engine:
    """One job. Create with ``await Engine.open(...)``; end with ``await engine.close()``."""

    def __init__(self, *, settings: Settings, kube: Kube, store: Store, watch: PodWatch, job_id: int) -> None:
        self.settings = settings
        self.kube = kube
        self.store = store
        self.watch = watch
        self.job_id = job_id
        self._task_index = itertools.count()
        self._background: set[asyncio.Task[Any]] = set()
        self.tasks: list[Task] = []

    @classmethod
    async def open(cls, *, settings: Settings, kubeconfig: str | None = None) -> Engine:
        kube = await Kube.connect(kubeconfig=kubeconfig)
        store: Store | None = None
        watch: PodWatch | None = None
        try:
            await _check_cluster(kube)
            uri = settings.store_uri or await _store_uri_from_secret(kube, settings)
            store = Store.connect(uri, database=settings.database)
            job_id = await store.next_job_id()
            watch = PodWatch(kube, namespace=settings.namespace, selector=f"{MANAGED},levrt.io/job={job_id}")
            await watch.start()
        except BaseException:
            if watch is not None:
                await watch.close()
            if store is not None:
                await store.close()
            await kube.close()
            raise
        log.info("job: %d", job_id)
        return cls(settings=settings, kube=kube, store=store, watch=watch, job_id=job_id)

    async def close(self, *, delete_pods: bool = False) -> None:
        """Stop watching and close connections; with ``delete_pods`` remove this job's Pods."""
        try:
            if delete_pods:
                await self.delete_job_pods()
            if self._background:
                await asyncio.gather(*self._background, return_exceptions=True)
        finally:
            await self.watch.close()
            await self.store.close()
            await self.kube.close()

    async def delete_job_pods(self) -> None:
        """Delete every Pod of this job still present (one DELETE each: the chart's Role grants
        ``delete``, not ``deletecollection``)."""
        ns = self.settings.namespace
        with contextlib.suppress(LevrtError):
            listing = await self.kube.request(
                "GET", f"/api/v1/namespaces/{ns}/pods", query={"labelSelector": f"{MANAGED},levrt.io/job={self.job_id}"}
            )
            names = [item["metadata"]["name"] for item in listing.get("items", [])]
            await asyncio.gather(*(self.delete_pod(name) for name in names))
            if names:
                log.info("deleted %d remaining Pod(s) of job %d", len(names), self.job_id)

    def later(self, coro: Any) -> None:
        """Run bookkeeping off the hot path; ``close`` waits for it."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def record(self, *, task: int, **fields: Any) -> None:
        async def write() -> None:
            try:
                await self.store.record_task(job=self.job_id, task=task, **fields)
            except StoreError as exc:
                log.warning("could not record the status of task %d: %s", task, exc)

        self.later(write())

    # -- submitting ------------------------------------------------------------------------

    async def start(self, cr: Cr) -> Task:
        from levrt.build import build_task, read_files
        from levrt.task import Task

        index = next(self._task_index)
        collection = context.collection_name(cr.schema)
        files = await asyncio.to_thread(read_files, cr)
        objects = build_task(
            cr, job=self.job_id, task=index, collection=collection, settings=self.settings,
            file_contents=files,
        )
        name = objects.pod["metadata"]["name"]
        self.record(task=index, state="submitting", pod=name, image=cr.image, collection=collection,
                    submitted=time.time())
        await self._submit(objects)
        task = Task(engine=self, cr=cr, job_id=self.job_id, task_id=index, pod=name, collection=collection)
        self.tasks.append(task)
        try:
            pod = await self._wait_started(name, need_ready=bool(cr.ports))
        except BaseException:
            await asyncio.shield(self.delete_pod(name))
            raise
        task._started(pod)
        self.record(task=index, state="running", host=task.host)
        return task

    async def _submit(self, objects: Any) -> None:
        await submit.submit(self.kube, self.settings.namespace, objects)

    async def delete_pod(self, name: str) -> None:
        await submit.delete_pod(self.kube, self.settings.namespace, name)

    # -- watching --------------------------------------------------------------------------

    async def _wait_started(self, name: str, *, need_ready: bool) -> dict[str, Any]:
        """Wait until the main container runs (and is Ready when it has ports)."""
        deadline = time.monotonic() + self.settings.start_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise await self.failure(name, reason="StartTimeout",
                                         detail=f"not started after {self.settings.start_timeout:.0f}s")
            try:
                pod = await self.watch.wait(
                    name, lambda p: start_state(p, need_ready=need_ready) is not None,
                    timeout=min(remaining, 5.0),
                )
            except TimeoutError:
                pod = self.watch.get(name) or {}
                unschedulable = unschedulable_since(pod)
                if unschedulable is not None and time.time() - unschedulable > self.settings.schedule_timeout:
                    raise await self.failure(name, reason="Unschedulable",
                                             detail=_condition_message(pod, "PodScheduled")) from None
                continue
            state = start_state(pod, need_ready=need_ready)
            if state is not None and state.startswith("failed:"):
                reason, _, detail = state[len("failed:"):].partition(":")
                raise await self.failure(name, reason=reason, detail=detail)
            return pod

    async def failure(self, name: str, *, reason: str, detail: str, exit_code: int | None = None,
                      task: Task | None = None) -> TaskFailed:
        """A ``TaskFailed`` quoting the Pod's events and the tail of its logs."""
        logs = await self.logs(name, tail=40)
        events = await self.events(name)
        text = f"Task {name} failed: {reason}"
        if detail:
            text += f" ({detail.strip()})"
        if reason in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"):
            text += (". Check the image name and tag; on a cluster without a registry, build the "
                     "image and load it into the node (kind load docker-image ...)")
        if events:
            text += "\nEvents:\n" + "\n".join(f"  {e}" for e in events[-8:])
        return TaskFailed(text, exit_code=exit_code, reason=reason, logs=logs, task=task)

    async def logs(self, name: str, *, tail: int | None = None, container: str = "main") -> str:
        try:
            text = await self.kube.request(
                "GET", f"/api/v1/namespaces/{self.settings.namespace}/pods/{name}/log",
                query={"container": container, "tailLines": tail},
            )
        except LevrtError:
            return ""
        return text if isinstance(text, str) else str(text)

    async def events(self, name: str) -> list[str]:
        try:
            listing = await self.kube.request(
                "GET", f"/api/v1/namespaces/{self.settings.namespace}/events",
                query={"fieldSelector": f"involvedObject.name={name}"},
            )
        except LevrtError:
            return []
        items = sorted(listing.get("items", []), key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
        return [f"{e.get('type', '')} {e.get('reason', '')}: {e.get('message', '').strip()}" for e in items]


# -- reading Pod status (pure) ---------------------------------------------------------------


def container_status(pod: Mapping[str, Any], name: str = "main") -> Mapping[str, Any]:
    status = pod.get("status", {})
    for key in ("containerStatuses", "initContainerStatuses"):
        for cs in status.get(key) or []:
            if cs.get("name") == name:
                return cs
    return {}


def start_state(pod: Mapping[str, Any], *, need_ready: bool) -> str | None:
    """``"started"``, ``"failed:<reason>:<detail>"``, or None while still starting."""
    if pod.get("levrt/deleted"):
        return "failed:PodDeleted:the Pod was deleted before it started"
    status = pod.get("status", {})
    phase = status.get("phase")
    if phase in ("Succeeded", "Failed"):
        return "started"
    for key in ("initContainerStatuses", "containerStatuses"):
        for cs in status.get(key) or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in FATAL_WAITING:
                detail = waiting.get("message") or FATAL_WAITING[waiting["reason"]]
                return f"failed:{waiting['reason']}:container {cs.get('name')}: {detail}"
    state = container_status(pod).get("state") or {}
    if "terminated" in state:
        return "started"
    if "running" in state and status.get("podIP"):
        if not need_ready or _condition(pod, "Ready") == "True":
            return "started"
    return None


def finished(pod: Mapping[str, Any]) -> bool:
    if pod.get("levrt/deleted"):
        return True
    if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
        return True
    return "terminated" in (container_status(pod).get("state") or {})


def unschedulable_since(pod: Mapping[str, Any]) -> float | None:
    import datetime as dt

    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "Unschedulable":
            stamp = cond.get("lastTransitionTime")
            if stamp:
                return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
            return time.time()
    return None


def _condition(pod: Mapping[str, Any], kind: str) -> str | None:
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond.get("status")
    return None


def _condition_message(pod: Mapping[str, Any], kind: str) -> str:
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == kind:
            return str(cond.get("message", ""))
    return ""


async def _check_cluster(kube: Kube) -> None:
    version = await kube.request("GET", "/version")
    minor = int("".join(ch for ch in str(version.get("minor", "0")) if ch.isdigit()) or 0)
    if int(version.get("major", 0) or 0) == 1 and minor < MIN_MINOR:
        raise ClusterError(
            f"The cluster runs Kubernetes {version.get('gitVersion')}; levrt needs 1.{MIN_MINOR} or newer "
            "(native sidecar containers). Upgrade the cluster, or use kind with a recent node image."
        )


async def _store_uri_from_secret(kube: Kube, settings: Settings) -> str:
    import base64

    try:
        secret = await kube.request(
            "GET", f"/api/v1/namespaces/{settings.namespace}/secrets/{settings.store_secret}"
        )
    except ApiError as exc:
        raise StoreError(
            f"LEVRT_STORE_URI is not set and the Secret {settings.namespace}/{settings.store_secret} "
            f"could not be read ({exc}). Set LEVRT_STORE_URI to a store address this machine reaches."
        ) from exc
    return base64.b64decode(secret.get("data", {}).get("uri", "")).decode()
