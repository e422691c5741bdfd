"""What each endpoint of the console does, on the store and the cluster, without HTTP.

Why apart from the routes: these are the platform's operations (find a tool, check and start a
call, read a job, end it, follow its tasks), and they are the CLI's own readers put together (the
registry, ``levrt ps`` rows, the log archive, the published-tool orchestration Pod): a test drives
them directly, and the routes only turn requests into calls and answers into JSON. Rights are not
judged here (``levrt._console.auth``, by the routes); a caller arrives already signed in.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime as dt
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from levrt._cli.callargs import CallError, json_tokens
from levrt._cli.ps import job_rows, ps_rows
from levrt._cli.published import find_call
from levrt._cli.registry import tool_rows
from levrt._clients import lease, pods, resources, submit
from levrt._clients.api import NotFound
from levrt._clients.blobs import FileStore
from levrt._clients.kube import Kube
from levrt._clients.store import JOB_RECORDS, Store
from levrt._console.auth import Caller
from levrt._core.catalog import collection_of, is_gettable_schema
from levrt._core.history import NoArchive, archived_log, job_collections, live_jobs, no_archive_text
from levrt._core.incluster import start_detached
from levrt._core.registry import Registry
from levrt._shapes import jobrecord
from levrt._shapes.names import ROLE_LABEL, TASK_LABEL, lease_name
from levrt._shapes.orchestrator import controller_job, new_run_id, orchestrator_objects
from levrt._shapes.registry import ToolName, parse_tool
from levrt._shapes.schedules import SCHEDULE_LABEL, schedule_row
from levrt._stored import is_sha256
from levrt.errors import LevrtError, RecordNotFound
from levrt.podenv import OWNER_ENV, RESUME_ENV
from levrt.settings import Settings

__all__ = ["Conflict", "Console", "Invalid", "LogStream", "StartRequest", "read_start"]

MAX_PAGE = 1000
"""Records or jobs one request returns at most (``limit``); ``skip`` pages on."""
EVENT_PERIOD = 1.0
"""Seconds between two looks at a job's task records for its event stream."""
CANCEL_GRACE = 35.0
"""Seconds a cancelled job's orchestration has to end its tasks (its Pod's grace is 30 s) before its
Lease is deleted, which ends whatever is left."""
JOB_STATES = ("running", "succeeded", "failed", "cancelled", "lost")
LAST_RUNS = 3
"""A schedule's runs shown with it (``GET /jobs?schedule=`` pages through all)."""


class Invalid(LevrtError):
    """A request the API refuses as it is (HTTP 422): ``field`` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class Conflict(LevrtError):
    """An action the object's state does not allow now (HTTP 409), e.g. cancelling an ended job."""


@dataclasses.dataclass(frozen=True)
class StartRequest:
    """``POST /jobs``: a published tool, one of its modes or workflows, and its parameters."""

    tool: ToolName
    mode: str
    params: Mapping[str, Any]


def read_start(body: Any) -> StartRequest:
    """The body of ``POST /jobs`` checked: ``Invalid`` naming the field."""
    if not isinstance(body, Mapping):
        raise Invalid("body", 'The body is a JSON object: {"tool": "demo/portscan", "mode": "sweep", "params": {...}}.')
    unknown = sorted(set(body) - {"tool", "mode", "params"})
    if unknown:
        raise Invalid(unknown[0], f"Unknown field {unknown[0]!r}: a job is started with tool, mode and params.")
    tool, mode, params = body.get("tool"), body.get("mode"), body.get("params", {})
    if not isinstance(tool, str):
        raise Invalid("tool", "tool: give the published tool's name, NAMESPACE/TOOL[@VERSION] (see GET /tools).")
    try:
        name = parse_tool(tool)
    except ValueError as exc:
        raise Invalid("tool", f"tool: {exc}") from None
    if not isinstance(mode, str) or not mode:
        raise Invalid("mode", "mode: give the name of one of the tool's modes or workflows (see GET /tools/NS/TOOL).")
    if not isinstance(params, Mapping):
        raise Invalid("params", "params: a JSON object of the mode's parameters by name.")
    return StartRequest(name, mode, dict(params))


def tool_view(record: Mapping[str, Any], versions: list[str] | None = None) -> dict[str, Any]:
    """A published tool as the API shows it: ``levrt tools -o json``'s row, its calls, its versions."""
    view = {**tool_rows([dict(record)])[0], "calls": record.get("calls")}
    if versions is not None:
        view["versions"] = versions
    return view


@dataclasses.dataclass
class LogStream:
    """A task's output: ``lines`` from its Pod (``source`` ``pod``) or its archive (``archive``, with
    where it was ``cut`` when incomplete)."""

    source: str
    lines: AsyncIterator[bytes]
    cut: str | None = None


class Console:
    """The platform's operations on one namespace: ``kube`` is the console's own account, ``store``
    the results database, ``registry`` the tool registry (read: the application user may not write it)."""

    def __init__(self, *, kube: Kube, settings: Settings, store: Store, registry: Registry) -> None:
        self.kube = kube
        self.settings = settings
        self.store = store
        self.registry = registry
        self.files = FileStore.of(store)
        self._ending: set[asyncio.Task[None]] = set()

    # -- tools -------------------------------------------------------------------------------------

    async def tools(self, text: str | None, *, tag: str | None, cat: str | None) -> list[dict[str, Any]]:
        return [tool_view(record) for record in await self.registry.find(text, tag=tag, cat=cat)]

    async def tool(self, tool: ToolName) -> dict[str, Any]:
        versions = await self.registry.versions(tool)  # one scan of the registry, not two
        record = versions[0] if versions and not tool.version else await self.registry.get(tool)
        return tool_view(record, [str(r.get("version")) for r in versions])

    # -- starting a job ----------------------------------------------------------------------------

    async def start(self, caller: Caller, request: StartRequest) -> int:
        """Check ``request`` against the published tool's calls, then start it in the cluster as a
        detached orchestration owned by ``caller``; the job's id. Nothing is created when the
        request is wrong (``RecordNotFound`` for an unknown tool or mode, ``Invalid`` naming a
        parameter)."""
        record = await self.registry.get(request.tool)
        calls = record.get("calls")
        pinned = f"{record['name']}@{record['version']}"
        if not isinstance(calls, list):
            raise Conflict(f"{pinned} was published by a levrt that did not keep its calls' parameters: publish it "
                           "again (same content, nothing else changes) to run it through the API.")
        call = find_call(calls, request.mode)
        if call is None:
            raise RecordNotFound(f"{pinned} has no mode or workflow {request.mode!r}; it has: "
                                 f"{', '.join(str(c.get('name')) for c in calls) or 'none'}.")
        named = str(call["name"])
        try:
            words = json_tokens(call.get("params") or [], request.params, target=f"{pinned}:{named}")
        except CallError as exc:
            raise Invalid(f"params.{exc.field}" if exc.field else "params", str(exc)) from None
        return await self._start(caller, record, named, words)

    async def _start(self, caller: Caller, record: Mapping[str, Any], named: str, words: list[str], *,
                     resume: int | None = None) -> int:
        objects = orchestrator_objects(
            sources={}, entry=f"{record['name']}@{record['version']}", func=named, args=words,
            settings=self.settings, run_id=new_run_id(str(record["sha256"]).encode()), detach=True,
            env={OWNER_ENV: caller.name, **({RESUME_ENV: str(resume)} if resume is not None else {})},
            published=str(record["sha256"]))
        return await start_detached(self.kube, objects, settings=self.settings)

    async def resume(self, caller: Caller, job: int) -> int:
        """Run ended job ``job`` again as a new detached job owned by ``caller``: the same published
        tool (the very archive), mode and parameters, with its succeeded tasks taken, not run
        (``levrt run --resume``). A job that still runs, or that ran a file rather than a published
        tool (its file is not here), cannot be resumed here (``Conflict`` saying what to do)."""
        what = (await self._record(job)).get("what") or {}
        if await self._live(job):
            raise Conflict(f"Job {job} is still running: resume it once it has ended (or cancel it first).")
        target = str(what.get("target") or "")
        if not what.get("sha256") or not what.get("tool") or ":" not in target:
            raise Conflict(f"Job {job} ran {target or 'a file'}, not a published tool, so its code is not in the "
                           f"registry: resume it where its file is, with `levrt run FILE --resume {job}`.")
        record = await self.registry.get(parse_tool(f"{what['tool']}@{what.get('version')}"))
        if record.get("sha256") != what["sha256"]:
            raise Conflict(f"{what['tool']}@{what.get('version')} was published again with other content since "
                           f"job {job} ran: resuming would run other code. Start it anew instead.")
        return await self._start(caller, record, target.rpartition(":")[2], [str(a) for a in what.get("args") or ()],
                                 resume=job)

    # -- jobs --------------------------------------------------------------------------------------

    async def _live(self, job: int) -> bool:
        """Whether job ``job``'s Lease is there (its client, or its orchestration, still runs it)."""
        try:
            await resources.get(self.kube, "Lease", lease_name(job), namespace=self.settings.namespace)
            return True
        except NotFound:
            return False

    async def jobs(self, *, state: str | None, owner: str | None, tool: str | None, limit: int,
                   skip: int, schedule: str | None = None) -> tuple[list[dict[str, Any]], int]:
        """Job rows as ``levrt ps -o json`` prints them, newest first, filtered; and how many match."""
        if state is not None and state not in JOB_STATES:
            raise Invalid("state", f"state: one of {', '.join(JOB_STATES)}.")
        query: dict[str, Any] = {}
        if owner:
            query["owner"] = owner
        if tool:
            query["what.tool"] = tool
        if schedule:
            query["what.schedule"] = schedule
        now = time.time()
        live = await live_jobs(self.kube, self.settings.namespace, now=now)  # as `levrt ps` reads them
        records, total = await self.store.newest(JOB_RECORDS, query, limit=0 if state else skip + limit)
        rows = job_rows(records, live_jobs=live, now=now)
        if state:
            rows = [row for row in rows if row["state"] == state]
            total = len(rows)
        return rows[skip:skip + limit], total

    async def schedules(self) -> list[dict[str, Any]]:
        """The schedules (``levrt schedule list`` rows), each with its last runs' job rows."""
        found = await resources.list_objects(self.kube, "CronJob", namespace=self.settings.namespace,
                                             labels=SCHEDULE_LABEL)
        rows = sorted((schedule_row(item) for item in found), key=lambda row: str(row["name"]))
        for row in rows:
            row["lastRuns"], row["runs"] = await self.jobs(state=None, owner=None, tool=None, limit=LAST_RUNS, skip=0,
                                                           schedule=str(row["name"]))
        return rows

    async def _record(self, job: int) -> dict[str, Any]:
        found, _ = await self.store.newest(JOB_RECORDS, {"_id": job}, limit=1)
        if not found:
            raise RecordNotFound(f"No job {job} in the store (GET /jobs lists them).")
        return found[0]

    async def job(self, job: int) -> dict[str, Any]:
        """The job's row with its tasks (``levrt ps --job N -o json`` rows)."""
        record = await self._record(job)
        live = await self._live(job)
        now = time.time()
        view = jobrecord.job_view(record, lease_gone=not live, now=now)
        assert view is not None
        view["what"] = record.get("what")
        view["changes"] = record.get("changes") or []  # what `levrt diff`/`levrt.changes` found against earlier runs
        tasks = await self.store.task_records(job)
        # Task Pods only: the job's orchestration Pod is the job itself, not one of its tasks.
        job_pods = [p for p in await pods.job_pods(self.kube, self.settings.namespace, job)
                    if TASK_LABEL in (p["metadata"].get("labels") or {})] if live else []
        view["taskList"] = [row for row in ps_rows(tasks, job_pods, running_jobs={job} if live else set(), now=now)
                            if row["job"] == job]
        return view

    async def cancel(self, job: int) -> str:
        """End running job ``job``: its orchestration Pod is deleted gracefully, with its Kubernetes
        Job when it has one (SIGTERM: the job ends its tasks and records that it was cancelled), and
        its Lease after ``CANCEL_GRACE`` if still there; a job run from a laptop (no such Pod) loses
        its Lease now. What was done, in words."""
        record = await self._record(job)
        if not await self._live(job):
            raise Conflict(f"Job {job} is not running ({record.get('state') or 'no Lease'}): nothing to cancel.")
        ns = self.settings.namespace
        mine = [p for p in await pods.job_pods(self.kube, ns, job)
                if (p["metadata"].get("labels") or {}).get(ROLE_LABEL) == "orchestrator"]
        if not mine:
            await lease.delete_lease(self.kube, ns, lease_name(job))
            return "its Lease was deleted: its Pods go with it"
        for pod in mine:
            runner = controller_job(pod)
            if runner is not None:  # a detached run: without its Kubernetes Job it ends rather than hands over
                await submit.delete_job(self.kube, ns, str(runner["name"]))
            else:
                await submit.delete_pod(self.kube, ns, pod["metadata"]["name"], graceful=True)
        ending = asyncio.create_task(self._end_later(job))
        self._ending.add(ending)
        ending.add_done_callback(self._ending.discard)
        return "its orchestration was signalled (SIGTERM) and ends its tasks"

    async def _end_later(self, job: int) -> None:
        await asyncio.sleep(CANCEL_GRACE)
        with contextlib.suppress(LevrtError):
            await lease.delete_lease(self.kube, self.settings.namespace, lease_name(job))

    async def close(self) -> None:
        for ending in list(self._ending):
            ending.cancel()

    # -- what a job left -----------------------------------------------------------------------------

    async def logs(self, job: int, task: int, *, container: str, follow: bool) -> LogStream:
        """The output of ``container`` of task ``job.task``: from its Pod while it is there (``follow``:
        as it comes, to the container's end), else from the archive written when it ended."""
        record = next((r for r in await self.store.task_records(job) if r.get("task") == task), None)
        if record is None:
            await self._record(job)
            raise RecordNotFound(f"Job {job} has no task {task} (GET /jobs/{job} lists its tasks).")
        pod = str(record.get("pod") or "")
        if pod:
            try:
                await pods.get(self.kube, self.settings.namespace, pod)
                lines = pods.log_lines(self.kube, self.settings.namespace, pod, container=container, follow=follow)
                return LogStream("pod", lines)
            except NotFound:
                pass
        try:
            found = await archived_log(self.store, job, task, container)
        except NoArchive as exc:
            raise RecordNotFound(no_archive_text(job, task, container, exc)) from None

        async def text() -> AsyncIterator[bytes]:
            yield found.text.encode()

        return LogStream("archive", text(), cut=found.cut)

    async def records(self, job: int, *, schema: str | None, ns: str | None, limit: int,
                      skip: int) -> dict[str, Any]:
        """The records job ``job``'s tasks wrote to ``schema`` (in task order, each with its ``task``);
        without ``schema``, the schemas it wrote to and their counts."""
        await self._record(job)
        if schema is None:
            return {"schemas": {found.name: count for found, count in await job_collections(self.store, job)}}
        if not is_gettable_schema(schema):
            raise Invalid("schema", f"schema: {schema!r} is not a schema (GET /jobs/{job}/records lists them).")
        collection = self.store.collection(collection_of(schema, ns))
        query = {"_id.job": job}
        try:
            total = await collection.count_documents(query)
            found = [doc async for doc in collection.find(query).sort("_id.task", 1).skip(skip).limit(limit)]
        except Exception as exc:
            raise self.store.unreachable(exc) from exc
        rows = []
        for doc in found:
            ident = doc.pop("_id", {})
            rows.append({"task": ident.get("task") if isinstance(ident, Mapping) else None, **doc})
        return {"schema": schema, "ns": ns, "count": total, "records": rows}

    async def file(self, sha256: str) -> tuple[dict[str, Any], AsyncIterator[bytes]]:
        """A stored file (an artifact, a value stored apart): its files document and its content."""
        if not is_sha256(sha256):
            raise Invalid("sha256", f"{sha256!r} is not a sha256 (64 hex digits, as a record's placeholder names it).")
        info = await self.files.info(sha256)
        if info is None:
            raise RecordNotFound(f"No stored file {sha256} (it was never stored, or was collected).")
        return info, self.files.chunks(sha256)

    async def events(self, job: int) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """``(event, data)`` as job ``job`` goes on: a ``task`` event each time a task's state or
        retries change, a ``job`` event when the job's own state or counts change, and ``end`` once
        it ended (every task event before it); ``("", {})`` after a look that found nothing new (the
        stream's heartbeat)."""
        seen: dict[str, tuple[Any, ...]] = {}
        last_job: tuple[Any, ...] | None = None
        while True:
            view = await self.job(job)
            news = False
            for row in view["taskList"]:
                key = (row["state"], row["retries"])
                if seen.get(row["task"]) != key:
                    seen[row["task"]], news = key, True
                    yield "task", {k: row[k] for k in ("task", "name", "state", "retries", "elapsed", "reason")}
            summary = (view["state"], tuple(sorted(view["tasks"].items())))
            if summary != last_job:
                last_job, news = summary, True
                yield "job", {k: view[k] for k in ("job", "state", "tasks", "duration", "error")}
            if view["state"] != "running":
                yield "end", {"job": job, "state": view["state"]}
                return
            if not news:
                yield "", {}
            await asyncio.sleep(EVENT_PERIOD)


def json_value(value: Any) -> Any:
    """A stored value as JSON can carry it (``json.dumps(default=...)``): times in ISO 8601, bytes as
    ``{"$base64": ...}``, anything else by its text."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return {"$base64": base64.b64encode(bytes(value)).decode()}
    return str(value)
