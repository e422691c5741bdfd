"""In-memory stand-ins for the Kubernetes apiserver and the MongoDB store, for fast tests.

Why: the watch, the gated submit, the engine and every CLI command reach the cluster through one
seam (``use_transport`` of ``levrt._clients.kube``) and the store through another (``use_client``
of ``levrt._clients.store``). These fakes plug into them, so those layers are tested in
milliseconds without a cluster, and the tests can provoke what a real cluster does only rarely:
``410 Gone`` after compaction, a 409 on a shared ConfigMap, an object garbage-collected between
two calls, a forbidden verb, an old server version.

They model only what levrt uses, the way the apiserver does it: ``Status`` bodies for errors,
one resourceVersion counter, watch events, and the garbage collector (an object whose owners are
all gone is deleted). Anything else answers 404, as an apiserver does for an unknown path.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import unquote

# Only the wire types come from levrt: paths, labels and statuses are written out here as a
# cluster has them, so the fake cannot share a mistake with the code it tests.
from levrt._clients.api import ExecResult, Request, Response, api_error

__all__ = [
    "BulkWriteError",
    "DuplicateKeyError",
    "ExecCall",
    "FakeApiServer",
    "FakeMongo",
    "RemoteCommand",
    "ServerSelectionTimeoutError",
    "WatchEvent",
    "status_body",
]

Obj = dict[str, Any]
KINDS = {"pods": "Pod", "secrets": "Secret", "configmaps": "ConfigMap", "events": "Event", "nodes": "Node",
         "leases": "Lease", "cronjobs": "CronJob", "jobs": "Job"}
REASONS = {400: "BadRequest", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed", 409: "AlreadyExists",
           410: "Expired", 415: "UnsupportedMediaType", 422: "Invalid", 500: "InternalError"}
CORE_PATH = re.compile(
    r"^/api(?:s/coordination\.k8s\.io|s/batch)?/v1"  # the core group, the Leases' and the CronJobs' groups
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[a-z]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[a-z]+))?$"
)
SSAR_PATH = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
SSR_PATH = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
TOKEN_REVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"
SAR_PATH = "/apis/authorization.k8s.io/v1/subjectaccessreviews"


def status_body(code: int, message: str, *, reason: str | None = None, name: str | None = None,
                kind: str | None = None) -> Obj:
    """An error answer as the apiserver writes it (a ``Status`` object)."""
    body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
                 "reason": reason or REASONS.get(code, "Unknown"), "code": code}
    if name is not None or kind is not None:
        body["details"] = {"name": name, "kind": kind}
    return body


def now_stamp(age: float = 0.0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - age))


class Reject(Exception):
    """Raised inside the fake to answer an error status."""

    def __init__(self, code: int, message: str, **details: Any) -> None:
        super().__init__(message)
        self.response = Response(code, status_body(code, message, **details))


@dataclasses.dataclass(frozen=True)
class WatchEvent:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    plural: str
    namespace: str | None
    object: Obj


@dataclasses.dataclass(frozen=True)
class ExecCall:
    namespace: str
    pod: str
    container: str
    command: tuple[str, ...]
    stdin: bool = False
    """Opened with ``exec_stream`` (stdin connected), not run to the end with ``exec``."""


@dataclasses.dataclass
class Hook:
    method: str
    path: str
    action: Callable[[], Response | None]
    times: int


class FakeApiServer:
    """An apiserver in memory, implementing ``levrt._clients.api.Transport``.

    Install it with ``use_transport(lambda: api)``. What it saw is public: ``requests`` (every
    call, in order), ``history`` (the watch events), ``exec_calls``. What it answers is set with
    ``logs``, ``exec_result``, ``denied``, ``version``, ``fail``/``before``, ``compact``/``gone_once``
    and the Pod-status helpers (``set_running``, ``set_terminated``, ``set_waiting``).
    """

    def __init__(self, *, namespaces: Iterable[str] | None = None, version: str = "v1.31.2") -> None:
        self.namespaces = None if namespaces is None else set(namespaces)
        """When set, creating in another namespace answers 404 (``namespaces "x" not found``)."""
        self.version = version
        self.objects: dict[tuple[str, str | None, str], Obj] = {}
        self.rv = 0
        self.history: list[WatchEvent] = []
        self.compacted = 0
        self.requests: list[Request] = []
        self.denied: set[tuple[str, str, str]] = set()
        """(verb, resource, subresource) that a SelfSubjectAccessReview answers "not allowed"."""
        self.identity: str | None = "tester"
        """The user name a SelfSubjectReview answers with; None: it is refused (403)."""
        self.tokens: dict[str, str] = {}
        """Bearer tokens a TokenReview accepts, and the user name each one is."""
        self.rights: set[tuple[str, str, str, str]] = set()
        """(user, verb, API group, resource) a SubjectAccessReview allows in any namespace."""
        self.logs: dict[str, str] = {}
        """The text of each Pod's log, by Pod name (any container's, unless ``container_logs`` has it)."""
        self.container_logs: dict[tuple[str, str], str] = {}
        """The text of one container's log, by (Pod name, container name)."""
        self.exec_calls: list[ExecCall] = []
        self.exec_result = ExecResult(0, b"", b"")
        self.exec_handler: Callable[[RemoteCommand], Awaitable[int | None]] | None = None
        """Plays the command of an ``exec_stream`` (reads its stdin, writes its output) and returns
        its exit code (None: the connection ends without one). Unset: ``exec_result`` is written."""
        self.exec_protocol = "v5.channel.k8s.io"
        """The exec subprotocol the server agrees to: with v4 stdin cannot be closed."""
        self.on_ungated: Callable[[Obj], None] | None = None
        """Called with each Pod that may start: created without a gate through the API, or ungated."""
        """Called with the Pod when its scheduling gates are lifted (a stand-in kubelet)."""
        self.closed = 0
        self.watches: list[WatchStream] = []
        self._hooks: list[Hook] = []
        self._gone: bool | None = None  # next watch answers 410: as an ERROR event (False) or a status (True)

    # -- Transport ------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return "https://fake-apiserver"

    async def send(self, request: Request, *, timeout: float) -> Response:
        await asyncio.sleep(0)  # the way to the server: other tasks run, as during real I/O
        self.requests.append(request)
        try:
            return self._hooked(request) or self._route(request)
        except Reject as exc:
            return exc.response

    @contextlib.asynccontextmanager
    async def stream(self, request: Request, *, timeout: float | None) -> AsyncIterator[Any]:
        await asyncio.sleep(0)
        self.requests.append(request)
        query = dict(request.query)
        try:
            hooked = self._hooked(request)
            if hooked is not None:
                yield TextStream(hooked.status, hooked.body, "")
                return
            plural, ns, name, sub = self._parse(request.path)
            stream: WatchStream | TextStream
            if query.get("watch") == "true" and name is None:
                stream = self._open_watch(plural, ns, query)
            elif sub == "log" and query.get("follow") == "true":
                stream = TextStream(200, "", self._log(ns, name, query))
            else:
                raise Reject(400, f"fake apiserver: cannot stream {request.path}")
        except Reject as exc:
            yield TextStream(exc.response.status, exc.response.body, "")
            return
        if isinstance(stream, WatchStream):
            self.watches.append(stream)
        try:
            yield stream
        finally:
            if stream in self.watches:
                self.watches.remove(stream)

    async def exec(self, request: Request, *, timeout: float) -> ExecResult:
        await asyncio.sleep(0)
        self.requests.append(request)
        try:
            hooked = self._hooked(request)
            if hooked is not None and hooked.status >= 400:
                raise api_error(hooked.status, hooked.body, method="EXEC", path=request.path)
            _, ns, name, _ = self._parse(request.path)
            pod = self._get("pods", ns, name)
            container = dict(request.query).get("container", "")
            if container not in {c["name"] for c in pod["spec"].get("containers", [])}:
                raise Reject(400, f"container {container} is not valid for pod {name}")
        except Reject as exc:
            raise api_error(exc.response.status, exc.response.body, method="EXEC", path=request.path) from None
        command = tuple(value for key, value in request.query if key == "command")
        self.exec_calls.append(ExecCall(str(ns), str(name), container, command))
        return self.exec_result

    @contextlib.asynccontextmanager
    async def exec_stream(self, request: Request, *, timeout: float) -> AsyncIterator[FakeExecStream]:
        await asyncio.sleep(0)
        self.requests.append(request)
        call = self._exec_call(request, stdin=True)
        remote = RemoteCommand(call)
        handler = self.exec_handler or self._play_exec_result
        stream = FakeExecStream(remote, self.exec_protocol)

        async def run() -> None:
            try:
                stream.code = await handler(remote)
            finally:
                remote.output.put_nowait(None)

        task = asyncio.create_task(run())
        try:
            yield stream
        finally:
            remote.disconnected = True
            remote.stdin.put_nowait(None)  # a client that goes away ends the command's input too
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _exec_call(self, request: Request, *, stdin: bool) -> ExecCall:
        """Check an exec request as the apiserver does and record it."""
        try:
            hooked = self._hooked(request)
            if hooked is not None and hooked.status >= 400:
                raise api_error(hooked.status, hooked.body, method="EXEC", path=request.path)
            _, ns, name, _ = self._parse(request.path)
            pod = self._get("pods", ns, name)
            container = dict(request.query).get("container", "")
            names = {c["name"] for c in [*pod["spec"].get("containers", []), *pod["spec"].get("initContainers", [])]}
            if container not in names:
                raise Reject(400, f"container {container} is not valid for pod {name}")
        except Reject as exc:
            raise api_error(exc.response.status, exc.response.body, method="EXEC", path=request.path) from None
        command = tuple(value for key, value in request.query if key == "command")
        call = ExecCall(str(ns), str(name), container, command, stdin=stdin)
        self.exec_calls.append(call)
        return call

    async def _play_exec_result(self, remote: RemoteCommand) -> int | None:
        remote.write(self.exec_result.stdout)
        remote.write(self.exec_result.stderr, channel=2)
        return self.exec_result.exit_code

    async def close(self) -> None:
        self.closed += 1

    # -- what a test sets up --------------------------------------------------------------------

    def before(self, method: str, path: str, action: Callable[[], Response | None], *, times: int = 1) -> None:
        """Run ``action`` before the next ``times`` requests ``method path``; a Response it returns
        is the answer (the request is then not handled)."""
        self._hooks.append(Hook(method, path, action, times))

    def fail(self, method: str, path: str, code: int, message: str = "injected failure", *, times: int = 1,
             retry_after: float | None = None) -> None:
        """Answer the next ``times`` requests ``method path`` with error ``code`` (and a ``Retry-After``
        of ``retry_after`` seconds, as the apiserver sends with a 429)."""
        def answer() -> Response:
            body = status_body(code, message)
            if retry_after is not None:
                body["details"] = {"retryAfterSeconds": int(retry_after)}
            return Response(code, body, retry_after)

        self.before(method, path, answer, times=times)

    def put(self, obj: Mapping[str, Any], *, namespace: str | None = "levrt", age: float = 0.0) -> Obj:
        """Store ``obj`` as if created ``age`` seconds ago (no faults, no namespace check)."""
        plural = next(p for p, k in KINDS.items() if k == obj["kind"])
        return self._create(plural, None if plural == "nodes" else namespace, copy.deepcopy(dict(obj)), age=age)

    def get(self, plural: str, name: str, *, namespace: str | None = "levrt") -> Obj | None:
        found = self.objects.get((plural, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def names(self, plural: str, *, namespace: str | None = "levrt") -> list[str]:
        return sorted(name for (p, ns, name) in self.objects if p == plural and ns == namespace)

    def remove(self, plural: str, name: str, *, namespace: str | None = "levrt") -> None:
        """Delete an object behind levrt's back (a user, the garbage collector)."""
        self._delete(plural, namespace, name)

    def set_status(self, name: str, status: Mapping[str, Any], *, namespace: str = "levrt") -> Obj:
        """Replace a Pod's status (a MODIFIED event), as the kubelet does."""
        pod = copy.deepcopy(self._get("pods", namespace, name))
        pod["status"] = copy.deepcopy(dict(status))
        return self._commit("MODIFIED", "pods", namespace, pod)

    def set_running(self, name: str, *, ip: str = "10.244.0.7", ready: bool = True, namespace: str = "levrt") -> Obj:
        flag = "True" if ready else "False"
        return self.set_status(name, {
            "phase": "Running", "podIP": ip,
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": flag}],
            "containerStatuses": [{"name": "main", "ready": ready, "state": {"running": {"startedAt": now_stamp()}}}],
        }, namespace=namespace)

    def set_terminated(self, name: str, exit_code: int, *, reason: str | None = None, message: str = "",
                       namespace: str = "levrt") -> Obj:
        """The main container ended with ``exit_code`` (phase Succeeded or Failed)."""
        ended: Obj = {"exitCode": exit_code, "reason": reason or ("Completed" if exit_code == 0 else "Error"),
                      "finishedAt": now_stamp()}
        if message:
            ended["message"] = message
        previous = self._get("pods", namespace, name).get("status", {})
        return self.set_status(name, {
            "phase": "Succeeded" if exit_code == 0 else "Failed", "podIP": previous.get("podIP"),
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "main", "ready": False, "state": {"terminated": ended}}],
        }, namespace=namespace)

    def set_waiting(self, name: str, reason: str, message: str = "", *, namespace: str = "levrt") -> Obj:
        """The main container waits (``ErrImagePull``, ``ContainerCreating``...)."""
        return self.set_status(name, {
            "phase": "Pending",
            "containerStatuses": [{"name": "main", "ready": False,
                                   "state": {"waiting": {"reason": reason, "message": message}}}],
        }, namespace=namespace)

    def autorun(self, exit_code: int = 0, *, ip: str = "10.244.0.7") -> None:
        """From now on every ungated Pod runs at once and ends with ``exit_code``."""
        def kubelet(pod: Obj) -> None:
            meta = pod["metadata"]
            self.set_running(meta["name"], ip=ip, namespace=meta["namespace"])
            self.set_terminated(meta["name"], exit_code, namespace=meta["namespace"])

        self.on_ungated = kubelet

    def disconnect_watches(self) -> None:
        """Drop every open watch connection (the client resumes from the last version it saw)."""
        for stream in self.watches:
            stream.disconnect()

    def compact(self) -> None:
        """Forget the event history, as etcd compaction does, and drop open watches: a watch
        resumed from an older resourceVersion is answered with an ERROR event, code 410."""
        self.compacted = self.rv
        self.history.clear()
        self.disconnect_watches()

    def gone_once(self, *, http_status: bool = False) -> None:
        """Answer the next watch with 410 Gone: an ERROR event, or with ``http_status`` the status itself."""
        self._gone = http_status

    async def until(self, predicate: Callable[[], Any], *, timeout: float = 2.0) -> None:
        """Wait (polling) until ``predicate()`` holds; ``TimeoutError`` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.001)

    async def settle(self, *, timeout: float = 2.0) -> None:
        """Wait until every open watch has handed out every event and its reader asked for more."""
        await self.until(lambda: all(s.idle and s.position >= self.rv for s in self.watches), timeout=timeout)

    # -- the apiserver ----------------------------------------------------------------------------

    def _hooked(self, request: Request) -> Response | None:
        for hook in self._hooks:
            if hook.times > 0 and hook.method == request.method and hook.path == request.path:
                hook.times -= 1
                return hook.action()
        return None

    def _parse(self, path: str) -> tuple[str, str | None, str | None, str | None]:
        match = CORE_PATH.match(path)
        if match is None or match["plural"] not in KINDS:
            raise Reject(404, "the server could not find the requested resource")
        ns, name = match["ns"], match["name"]
        return match["plural"], unquote(ns) if ns else None, unquote(name) if name else None, match["sub"]

    def _route(self, request: Request) -> Response:
        method, query = request.method, dict(request.query)
        if request.path == "/version" and method == "GET":
            major, minor = split_version(self.version)
            return Response(200, {"major": major, "minor": minor, "gitVersion": self.version})
        if request.path == SSAR_PATH and method == "POST":
            review = json.loads(request.body or b"{}")
            attrs = review["spec"]["resourceAttributes"]
            allowed = (attrs["verb"], attrs["resource"], attrs.get("subresource", "")) not in self.denied
            return Response(201, {**review, "status": {"allowed": allowed}})
        if request.path == TOKEN_REVIEW_PATH and method == "POST":
            review = json.loads(request.body or b"{}")
            user = self.tokens.get(review["spec"]["token"])
            status = {"authenticated": True, "user": {"username": user, "uid": f"uid-{user}",
                                                      "groups": ["system:authenticated"]}} if user else {}
            return Response(201, {**review, "status": status})
        if request.path == SAR_PATH and method == "POST":
            review = json.loads(request.body or b"{}")
            attrs = review["spec"]["resourceAttributes"]
            key = (review["spec"]["user"], attrs["verb"], attrs["group"], attrs["resource"])
            return Response(201, {**review, "status": {"allowed": key in self.rights}})
        if request.path == SSR_PATH and method == "POST":
            if self.identity is None:
                raise Reject(403, 'selfsubjectreviews.authentication.k8s.io is forbidden')
            review = json.loads(request.body or b"{}")
            return Response(201, {**review, "status": {"userInfo": {"username": self.identity,
                                                                     "groups": ["system:authenticated"]}}})
        plural, ns, name, sub = self._parse(request.path)
        if sub == "log" and method == "GET":
            return Response(200, "".join(self._log(ns, name, query)))
        if sub is not None:
            raise Reject(404, "the server could not find the requested resource")
        if name is None and method == "GET":
            items = [copy.deepcopy(obj) for (p, n, _), obj in sorted(self.objects.items())
                     if p == plural and n == ns and selected(obj, query)]
            return Response(200, {"kind": f"{KINDS[plural]}List", "apiVersion": "v1",
                                  "metadata": {"resourceVersion": str(self.rv)}, "items": items})
        if name is None and method == "POST":
            if self.namespaces is not None and ns not in self.namespaces:
                raise Reject(404, f'namespaces "{ns}" not found', name=ns, kind="namespaces")
            created = self._create(plural, ns, json.loads(request.body or b"{}"))
            if plural == "pods" and not created.get("spec", {}).get("schedulingGates") and self.on_ungated is not None:
                self.on_ungated(copy.deepcopy(created))  # created without a gate: the kubelet may start it now
            return Response(201, created)
        if name is not None and method == "GET":
            return Response(200, copy.deepcopy(self._get(plural, ns, name)))
        if name is not None and method == "DELETE":
            return Response(200, self._delete(plural, ns, name))
        if name is None and method == "DELETE":  # deletecollection
            doomed = [n for (p, o, n), obj in sorted(self.objects.items())
                      if p == plural and o == ns and selected(obj, query)]
            gone = [self._delete(plural, ns, n) for n in doomed]
            return Response(200, {"kind": f"{KINDS[plural]}List", "apiVersion": "v1", "items": gone})
        if name is not None and method == "PATCH":
            return Response(200, self._patch(plural, ns, name, request))
        raise Reject(405, f"method {method} not allowed on {request.path}")

    def _get(self, plural: str, ns: str | None, name: str | None) -> Obj:
        found = self.objects.get((plural, ns, str(name)))
        if found is None:
            raise Reject(404, f'{plural} "{name}" not found', name=name, kind=plural)
        return found

    def _create(self, plural: str, ns: str | None, obj: Obj, *, age: float = 0.0) -> Obj:
        meta = obj.setdefault("metadata", {})
        name = meta.get("name")
        if not name:
            raise Reject(422, f"{KINDS[plural]} is invalid: metadata.name: Required value")
        if meta.get("namespace", ns) != ns:
            raise Reject(400, "the namespace of the provided object does not match the namespace sent on the request")
        if (plural, ns, name) in self.objects:
            raise Reject(409, f'{plural} "{name}" already exists', name=name, kind=plural)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now_stamp(age))
        if ns is not None:
            meta["namespace"] = ns
        obj.setdefault("apiVersion", "v1")
        obj.setdefault("kind", KINDS[plural])
        if plural == "pods":
            obj.setdefault("status", {"phase": "Pending"})
        created = self._commit("ADDED", plural, ns, obj)
        self._collect_garbage()
        return created

    def _delete(self, plural: str, ns: str | None, name: str) -> Obj:
        gone = self._commit("DELETED", plural, ns, copy.deepcopy(self._get(plural, ns, name)))
        self._collect_garbage()
        return gone

    def _patch(self, plural: str, ns: str | None, name: str, request: Request) -> Obj:
        old = self._get(plural, ns, name)
        obj, patch = copy.deepcopy(old), json.loads(request.body or b"null")
        if request.content_type == "application/json-patch+json":
            for op in patch:
                json_patch(obj, op)
        elif request.content_type == "application/strategic-merge-patch+json":
            obj = merge(obj, patch, strategic=True)
        elif request.content_type == "application/merge-patch+json":
            obj = merge(obj, patch, strategic=False)
        else:
            raise Reject(415, f"unsupported patch type {request.content_type}")
        if old.get("immutable") and any(old.get(k) != obj.get(k) for k in ("data", "binaryData")):
            raise Reject(422, f'{KINDS[plural]} "{name}" is invalid: data: Forbidden: field is immutable '
                              "when `immutable` is set")
        patched = self._commit("MODIFIED", plural, ns, obj)
        if plural == "pods" and old["spec"].get("schedulingGates") and not obj["spec"].get("schedulingGates"):
            if self.on_ungated is not None:
                self.on_ungated(copy.deepcopy(patched))
        return patched

    def _commit(self, kind: str, plural: str, ns: str | None, obj: Obj) -> Obj:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        key = (plural, ns, obj["metadata"]["name"])
        if kind == "DELETED":
            self.objects.pop(key, None)
        else:
            self.objects[key] = obj
        self.history.append(WatchEvent(self.rv, kind, plural, ns, copy.deepcopy(obj)))
        for stream in self.watches:
            stream.wake()
        return copy.deepcopy(obj)

    def _collect_garbage(self) -> None:
        """Delete every object whose owners are all gone, as the garbage collector does."""
        while True:
            uids = {obj["metadata"]["uid"] for obj in self.objects.values()}
            orphans = [key for key, obj in self.objects.items()
                       if obj["metadata"].get("ownerReferences")
                       and not any(ref["uid"] in uids for ref in obj["metadata"]["ownerReferences"])]
            if not orphans:
                return
            for plural, ns, name in orphans:
                self._commit("DELETED", plural, ns, copy.deepcopy(self.objects[(plural, ns, name)]))

    def _log(self, ns: str | None, name: str | None, query: Mapping[str, str]) -> list[str]:
        pod = self._get("pods", ns, name)
        container = query.get("container", "main")
        spec = pod["spec"]
        if container not in {c["name"] for c in [*spec.get("containers", []), *spec.get("initContainers", [])]}:
            raise Reject(400, f"container {container} is not valid for pod {name}")
        text = self.container_logs.get((str(name), container), self.logs.get(str(name), ""))
        limit = query.get("limitBytes")
        if limit:
            text = text.encode()[:int(limit)].decode(errors="ignore")
        lines = text.splitlines(keepends=True)
        tail = query.get("tailLines")
        return lines[-int(tail):] if tail else lines

    def _open_watch(self, plural: str, ns: str | None, query: Mapping[str, str]) -> WatchStream:
        since = int(query.get("resourceVersion") or 0)
        gone, self._gone = self._gone, None
        if gone is None and 0 < since < self.compacted:
            gone = False
        if gone:
            raise Reject(410, f"too old resource version: {since} ({self.compacted})")
        stream = WatchStream(self, plural, ns, query, since)
        if gone is False:
            stream.error = status_body(410, f"too old resource version: {since} ({self.compacted})")
        return stream


def split_version(git_version: str) -> tuple[str, str]:
    major, minor = git_version.lstrip("v").split(".")[:2]
    return major, minor


def selected(obj: Mapping[str, Any], query: Mapping[str, str]) -> bool:
    """Whether ``obj`` matches the ``labelSelector`` (``k=v``, ``k!=v``, ``k``, ``k in (a,b)``,
    ``k notin (a,b)``) and the equality ``fieldSelector`` (``involvedObject.name=x``) of ``query``."""
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in selector_terms(query.get("labelSelector", "")):
        if " in (" in term or " notin (" in term:
            key, op, rest = term.split(" ", 2)
            values = {v.strip() for v in rest.strip("()").split(",")}
            if (labels.get(key) in values) != (op == "in"):
                return False
        elif "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term not in labels:
            return False
    for term in filter(None, query.get("fieldSelector", "").split(",")):
        path, value = term.replace("==", "=").split("=", 1)
        found: Any = obj
        for part in path.split("."):
            found = found.get(part) if isinstance(found, Mapping) else None
        if str(found) != value:
            return False
    return True


def selector_terms(selector: str) -> list[str]:
    """The terms of a label selector: split at the commas outside ``( )``."""
    terms, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(current.strip())
            current = ""
        else:
            current += char
    terms.append(current.strip())
    return [term for term in terms if term]


def json_patch(obj: Obj, op: Mapping[str, Any]) -> None:
    """Apply one RFC 6902 operation (add, replace, remove) to ``obj``."""
    *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
    target: Any = obj
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target.get(part)
        if target is None:
            raise Reject(422, f"the server rejected our request: path {op['path']} does not exist")
    if op["op"] == "remove":
        if (isinstance(target, list) and not int(last) < len(target)) or (isinstance(target, dict)
                                                                          and last not in target):
            raise Reject(422, f"the server rejected our request: unable to remove nonexistent key {op['path']}")
        del target[int(last) if isinstance(target, list) else last]
    elif op["op"] in ("add", "replace"):
        if isinstance(target, list):
            target.insert(len(target) if last == "-" else int(last), copy.deepcopy(op["value"]))
        else:
            target[last] = copy.deepcopy(op["value"])
    else:
        raise Reject(422, f"fake apiserver: json-patch op {op['op']!r} is not modelled")


def merge(obj: Any, patch: Any, *, strategic: bool) -> Any:
    """A merge patch; ``strategic``: lists of ownerReferences merge by uid (the field's patch strategy)."""
    if not isinstance(patch, Mapping) or not isinstance(obj, Mapping):
        return copy.deepcopy(patch)
    out = dict(obj)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif strategic and key == "ownerReferences" and isinstance(value, list):
            refs = {ref["uid"]: ref for ref in out.get(key) or []}
            refs.update({ref["uid"]: copy.deepcopy(ref) for ref in value})
            out[key] = list(refs.values())
        else:
            out[key] = merge(out.get(key), value, strategic=strategic)
    return out


class RemoteCommand:
    """The container's side of an ``exec_stream``, for a test's ``exec_handler`` to play."""

    def __init__(self, call: ExecCall) -> None:
        self.call = call
        self.stdin: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.output: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        self.received = b""
        """Everything the client sent so far."""
        self.stdin_closed = False
        """The client closed stdin (v5), or went away."""
        self.disconnected = False
        self._pending = b""

    async def read(self) -> bytes:
        """The next bytes sent to stdin; ``b""`` at its end."""
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        if self.stdin_closed:
            return b""
        data = await self.stdin.get()
        if data is None:
            self.stdin_closed = True
            return b""
        return data

    async def readline(self) -> bytes:
        """The next line sent to stdin (with its newline); ``b""`` at its end."""
        line = b""
        while b"\n" not in line:
            chunk = await self.read()
            if not chunk:
                return line
            line += chunk
        line, _, self._pending = line.partition(b"\n")
        return line + b"\n"

    def write(self, data: bytes, *, channel: int = 1) -> None:
        """Output of the command: channel 1 (stdout) or 2 (stderr)."""
        if data:
            self.output.put_nowait((channel, data))


class FakeExecStream:
    """The client's side of an ``exec_stream``: ``levrt._clients.api.ExecStream``."""

    def __init__(self, remote: RemoteCommand, protocol: str) -> None:
        self.remote = remote
        self.protocol = protocol
        self.code: int | None = None
        self._ended = False

    @property
    def can_close_stdin(self) -> bool:
        return self.protocol == "v5.channel.k8s.io"

    async def send(self, data: bytes) -> None:
        await asyncio.sleep(0)
        if data and not self._ended and not self.remote.stdin_closed:
            self.remote.received += data
            self.remote.stdin.put_nowait(data)

    async def close_stdin(self) -> None:
        await asyncio.sleep(0)
        if self.can_close_stdin and not self._ended:
            self.remote.stdin.put_nowait(None)

    async def receive(self) -> tuple[int, bytes] | None:
        if self._ended:
            return None
        item = await self.remote.output.get()
        if item is None:
            self._ended = True
        return item

    @property
    def exit_code(self) -> int | None:
        return self.code if self._ended else None


class TextStream:
    """A streaming answer that is a fixed text (a followed log, or an error)."""

    def __init__(self, status: int, body: Any, lines: Iterable[str]) -> None:
        self.status = status
        self._body = body
        self._lines = list(lines)

    async def read(self) -> Any:
        return self._body

    async def lines(self) -> AsyncIterator[bytes]:
        for line in self._lines:
            yield line.encode()


class WatchStream:
    """One open watch: the events after ``since`` that match, then each new one as it happens."""

    status = 200

    def __init__(self, server: FakeApiServer, plural: str, ns: str | None, query: Mapping[str, str],
                 since: int) -> None:
        self.server, self.plural, self.namespace, self.query = server, plural, ns, dict(query)
        self.position = since
        self.error: Obj | None = None
        self.idle = False
        self._disconnected = False
        self._wakeup: asyncio.Event | None = None

    async def read(self) -> Any:
        return {}

    def wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    def disconnect(self) -> None:
        self._disconnected = True
        self.wake()

    async def lines(self) -> AsyncIterator[bytes]:
        self._wakeup = asyncio.Event()
        if self.error is not None:
            yield self._line("ERROR", self.error)
            return
        if self.position == 0:  # no resourceVersion: the current objects first, as ADDED
            self.position = self.server.rv
            for (plural, ns, _), obj in sorted(self.server.objects.items()):
                if (plural, ns) == (self.plural, self.namespace) and selected(obj, self.query):
                    yield self._line("ADDED", copy.deepcopy(obj))
        while not self._disconnected:
            event = next((e for e in self.server.history if e.rv > self.position), None)
            if event is None:
                self.idle = True
                await self._wakeup.wait()
                self._wakeup.clear()
                self.idle = False
                continue
            self.position = event.rv
            if (event.plural, event.namespace) == (self.plural, self.namespace) and selected(event.object, self.query):
                yield self._line(event.type, copy.deepcopy(event.object))

    @staticmethod
    def _line(kind: str, obj: Obj) -> bytes:
        return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


# -- the store ------------------------------------------------------------------------------------


class ServerSelectionTimeoutError(Exception):
    """What PyMongo raises when no server answers (named after pymongo.errors')."""


class FakeMongo:
    """A MongoDB in memory; ``use_client(mongo.client)`` makes ``Store.connect`` use it.

    Every client it makes shares its databases (``mongo["levrt"]["coll"]``). ``uris``: what
    ``Store.connect`` was given. With ``unreachable`` set, every operation raises.
    ``sync_client`` makes a synchronous client (pymongo's ``MongoClient`` face, as the in-task
    runtime uses) over the same databases: what a task writes, the client reads.
    """

    def __init__(self) -> None:
        self.databases: dict[str, FakeDatabase] = {}
        self.uris: list[str] = []
        self.clients: list[FakeMongoClient] = []
        self.unreachable: str | None = None

    def client(self, uri: str) -> FakeMongoClient:
        self.uris.append(uri)
        self.clients.append(FakeMongoClient(self))
        return self.clients[-1]

    def sync_client(self, uri: str) -> SyncFakeMongoClient:
        self.uris.append(uri)
        return SyncFakeMongoClient(self)

    def __getitem__(self, name: str) -> FakeDatabase:
        return self.databases.setdefault(name, FakeDatabase(self, name))


class FakeMongoClient:
    def __init__(self, mongo: FakeMongo) -> None:
        self.mongo = mongo
        self.closed = False

    def __getitem__(self, name: str) -> FakeDatabase:
        return self.mongo[name]

    async def close(self) -> None:
        self.closed = True


class FakeDatabase:
    def __init__(self, mongo: FakeMongo, name: str) -> None:
        self.mongo, self.name = mongo, name
        self.collections: dict[str, FakeCollection] = {}

    def __getitem__(self, name: str) -> FakeCollection:
        return self.collections.setdefault(name, FakeCollection(self.mongo, f"{self.name}.{name}", name))

    async def list_collection_names(self) -> list[str]:
        """The collections holding documents (MongoDB creates one with its first document)."""
        if self.mongo.unreachable is not None:
            raise ServerSelectionTimeoutError(self.mongo.unreachable)
        return [name for name, coll in self.collections.items() if coll.docs]

    async def command(self, name: str, value: Any) -> dict[str, Any]:
        """``collStats`` only: the documents' count and their BSON size."""
        if name != "collStats":
            raise ValueError(f"fake store: no command {name!r}")
        docs = self[value].docs
        return {"ns": f"{self.name}.{value}", "count": len(docs), "size": sum(len(bson_encode(d)) for d in docs)}


class DuplicateKeyError(Exception):
    """What PyMongo raises for a second document with the same ``_id`` (code 11000)."""

    code = 11000


class BulkWriteError(Exception):
    """What PyMongo raises when some documents of an ``insert_many`` were refused."""

    def __init__(self, details: Obj) -> None:
        super().__init__(f"batch op errors occurred: {details}")
        self.details = details


class FakeCollection:
    """The part of an ``AsyncCollection`` levrt uses: equality queries (dotted keys, ``$and``),
    ``$set``/``$inc``/``$max`` updates with upsert, inserts refusing a duplicate ``_id``, replace, and
    cursors with ``sort``/``limit``. ``fail_inserts_after``: the number of further documents
    ``insert_many`` accepts before the connection "drops" (an upload cut short)."""

    def __init__(self, mongo: FakeMongo, full_name: str, name: str) -> None:
        self.mongo, self.full_name, self.name = mongo, full_name, name
        self.docs: list[Obj] = []
        self.bulk_writes = 0
        self.statements: list[int] = []
        """Statements in each bulk write, in the order sent."""
        self.fail_inserts_after: int | None = None
        self.calls: list[str] = []

    def _reach(self) -> None:
        if self.mongo.unreachable is not None:
            raise ServerSelectionTimeoutError(self.mongo.unreachable)

    # -- the synchronous core (the async methods and SyncFakeCollection share it) -------------------

    def _by_id(self, ident: Any) -> Obj | None:
        return next((d for d in self.docs if d.get("_id") == ident), None)

    def insert_one_now(self, doc: Mapping[str, Any]) -> None:
        self._reach()
        self.calls.append("insert_one")
        if "_id" in doc and self._by_id(doc["_id"]) is not None:
            raise DuplicateKeyError(f"E11000 duplicate key error collection: {self.full_name} dup key: {doc['_id']}")
        self.docs.append(copy.deepcopy(dict(doc)))

    def insert_many_now(self, docs: list[Mapping[str, Any]], ordered: bool = True) -> None:
        self._reach()
        self.calls.append("insert_many")
        errors = []
        for index, doc in enumerate(docs):
            if self.fail_inserts_after is not None:
                if self.fail_inserts_after <= 0:
                    raise ServerSelectionTimeoutError("connection closed")
                self.fail_inserts_after -= 1
            if "_id" in doc and self._by_id(doc["_id"]) is not None:
                errors.append({"index": index, "code": 11000, "errmsg": "E11000 duplicate key error"})
                if ordered:
                    break
                continue
            self.docs.append(copy.deepcopy(dict(doc)))
        if errors:
            raise BulkWriteError({"writeErrors": errors, "writeConcernErrors": []})

    def replace_one_now(self, query: Mapping[str, Any], doc: Mapping[str, Any], upsert: bool = False) -> None:
        self._reach()
        self.calls.append("replace_one")
        for index, found in enumerate(self.docs):
            if matches(found, query):
                self.docs[index] = {"_id": found.get("_id"), **copy.deepcopy(dict(doc))}
                return
        if upsert:
            self.docs.append(copy.deepcopy(dict(doc)))

    def find_one_now(self, query: Mapping[str, Any] | None = None, projection: Any = None) -> Obj | None:
        self._reach()
        self.calls.append("find_one")
        found = next((d for d in self.docs if matches(d, query or {})), None)
        return project(found, projection) if found is not None else None

    def update_one_now(self, query: Mapping[str, Any], update: Mapping[str, Any], upsert: bool = False) -> None:
        self._reach()
        self.calls.append("update_one")
        self._update(query, update, upsert=upsert)

    # -- the async face (AsyncCollection) --------------------------------------------------------

    async def insert_one(self, doc: Mapping[str, Any]) -> None:
        self.insert_one_now(doc)

    async def insert_many(self, docs: list[Mapping[str, Any]], ordered: bool = True) -> None:
        self.insert_many_now(docs, ordered)

    async def delete_one(self, query: Mapping[str, Any]) -> Any:
        self._reach()
        found = next((d for d in self.docs if matches(d, query)), None)
        if found is not None:
            self.docs.remove(found)
        return dataclasses.make_dataclass("DeleteResult", [("deleted_count", int)])(int(found is not None))

    async def delete_many(self, query: Mapping[str, Any]) -> Any:
        self._reach()
        found = [d for d in self.docs if matches(d, query)]
        self.docs[:] = [d for d in self.docs if d not in found]
        return dataclasses.make_dataclass("DeleteResult", [("deleted_count", int)])(len(found))

    async def replace_one(self, query: Mapping[str, Any], doc: Mapping[str, Any], upsert: bool = False) -> None:
        self.replace_one_now(query, doc, upsert)

    async def find_one(self, query: Mapping[str, Any] | None = None, projection: Any = None) -> Obj | None:
        return self.find_one_now(query, projection)

    async def update_one(self, query: Mapping[str, Any], update: Mapping[str, Any], upsert: bool = False) -> None:
        self.update_one_now(query, update, upsert)

    async def find_one_and_update(self, query: Mapping[str, Any], update: Mapping[str, Any], upsert: bool = False,
                                  return_document: bool = False) -> Obj | None:
        self._reach()
        before = next((copy.deepcopy(d) for d in self.docs if matches(d, query)), None)
        after = self._update(query, update, upsert=upsert)
        return copy.deepcopy(after) if return_document else before

    async def bulk_write(self, requests: list[Any], ordered: bool = True) -> None:
        """``UpdateOne`` requests only (what levrt sends), applied in order."""
        self._reach()
        self.bulk_writes += 1
        self.statements.append(len(requests))
        for op in requests:
            self._update(op._filter, op._doc, upsert=op._upsert)

    def find(self, query: Mapping[str, Any] | None = None, projection: Any = None,
             batch_size: int = 0) -> FakeCursor:
        return FakeCursor(self, dict(query or {}), projection)

    async def count_documents(self, query: Mapping[str, Any]) -> int:
        self._reach()
        self.calls.append("count_documents")
        return sum(1 for d in self.docs if matches(d, query))

    def find_now(self, query: Mapping[str, Any] | None = None, projection: Any = None) -> list[Obj]:
        self._reach()
        self.calls.append("find")
        return [project(d, projection) for d in self.docs if matches(d, query or {})]

    def _update(self, query: Mapping[str, Any], update: Mapping[str, Any], *, upsert: bool) -> Obj | None:
        doc = next((d for d in self.docs if matches(d, query)), None)
        if doc is None:
            if not upsert:
                return None
            doc = {}
            for key, value in query.items():
                if not key.startswith("$"):
                    set_path(doc, key, copy.deepcopy(value))
            self.docs.append(doc)
        for key, value in update.get("$set", {}).items():
            set_path(doc, key, copy.deepcopy(value))
        for key, value in update.get("$inc", {}).items():
            set_path(doc, key, (get_path(doc, key) or 0) + value)
        for key, value in update.get("$max", {}).items():
            set_path(doc, key, value if get_path(doc, key) is None else max(get_path(doc, key), value))
        return doc


MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
"""MongoDB's document limit, which the runtime-side fake enforces on updates."""


class WriteError(Exception):
    """What PyMongo raises when the server refuses a write (with the server's error code)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class SyncFakeMongoClient:
    """pymongo's ``MongoClient`` face of a ``FakeMongo`` (``client[db][coll]``, ``close()``)."""

    def __init__(self, mongo: FakeMongo) -> None:
        self.mongo = mongo
        self.closed = False

    def __getitem__(self, name: str) -> SyncFakeDatabase:
        return SyncFakeDatabase(self.mongo[name])

    def close(self) -> None:
        self.closed = True


class SyncFakeDatabase:
    def __init__(self, database: FakeDatabase) -> None:
        self.database = database

    def __getitem__(self, name: str) -> SyncFakeCollection:
        return SyncFakeCollection(self.database[name])


class SyncFakeCollection:
    """A ``FakeCollection`` through pymongo's synchronous ``Collection`` methods."""

    def __init__(self, coll: FakeCollection) -> None:
        self.coll = coll
        self.name = coll.name

    def insert_one(self, doc: Mapping[str, Any]) -> None:
        self.coll.insert_one_now(doc)

    def insert_many(self, docs: list[Mapping[str, Any]], ordered: bool = True) -> None:
        self.coll.insert_many_now(docs, ordered)

    def replace_one(self, query: Mapping[str, Any], doc: Mapping[str, Any], upsert: bool = False) -> None:
        self.coll.replace_one_now(query, doc, upsert)

    def find_one(self, query: Mapping[str, Any] | None = None, projection: Any = None) -> Obj | None:
        return self.coll.find_one_now(query, projection)

    def find(self, query: Mapping[str, Any] | None = None, projection: Any = None,
             batch_size: int = 0, sort: list[tuple[str, int]] | None = None) -> Iterator[Obj]:
        found = self.coll.find_now(query, projection)
        for key, direction in reversed(sort or []):
            found.sort(key=lambda d: (get_path(d, key) is not None, get_path(d, key)), reverse=direction < 0)
        return iter(found)

    def find_one_and_update(self, query: Mapping[str, Any], update: Mapping[str, Any]) -> Obj | None:
        """The document before the update (pymongo's default). No projection: FerretDB takes none."""
        found = self.coll.find_one_now(query)
        self.coll.update_one_now(query, update)
        return found

    def update_one(self, query: Mapping[str, Any], update: Mapping[str, Any], upsert: bool = False) -> None:
        bson_encode(update)  # a value the driver cannot encode fails as it would for real
        saved = copy.deepcopy(self.coll.docs)
        self.coll.update_one_now(query, update, upsert)
        changed = next((d for d in self.coll.docs if matches(d, query)), None)
        if changed is not None and len(bson_encode(changed)) > MAX_DOCUMENT_BYTES:
            self.coll.docs[:] = saved
            raise WriteError(10334, "BSONObjectTooLarge: the update would make the document too large")


def bson_encode(doc: Mapping[str, Any]) -> bytes:
    import bson  # pymongo's; only the runtime-side fakes encode

    return bson.encode(dict(doc))


class FakeCursor:
    def __init__(self, coll: FakeCollection, query: Obj, projection: Any) -> None:
        self.coll, self.query, self.projection = coll, query, projection
        self._limit = 0
        self._skip = 0
        self._sort: list[tuple[str, int]] = []

    def limit(self, n: int) -> FakeCursor:
        self._limit = n
        return self

    def skip(self, n: int) -> FakeCursor:
        self._skip = n
        return self

    def sort(self, key: str | list[tuple[str, int]], direction: int = 1) -> FakeCursor:
        """One key and its direction, or a list of ``(key, direction)`` (the first one decides first)."""
        self._sort = [(key, direction)] if isinstance(key, str) else list(key)
        return self

    async def __aiter__(self) -> AsyncIterator[Obj]:
        self.coll._reach()
        docs = [d for d in self.coll.docs if matches(d, self.query)]
        for key, direction in reversed(self._sort):  # stable sorts, the last key first
            # A missing field sorts before any value, as in MongoDB.
            docs.sort(key=lambda d: (get_path(d, key) is not None, get_path(d, key)), reverse=direction < 0)
        docs = docs[self._skip:]
        for doc in docs[: self._limit or None]:
            yield project(doc, self.projection)


def get_path(doc: Any, path: str) -> Any:
    for part in path.split("."):
        doc = doc.get(part) if isinstance(doc, Mapping) else None
    return doc


def set_path(doc: Obj, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        doc = doc.setdefault(part, {})
    doc[last] = value


def matches(doc: Mapping[str, Any], query: Mapping[str, Any]) -> bool:
    """MongoDB's match for what levrt sends: equality (an array field matches a value it holds),
    ``$and``, ``$regex`` on a string or an array of strings, ``$lt`` on a number, ``$gte`` on a
    number or a date, ``$ne`` and ``$in``."""
    for key, want in query.items():
        if key == "$and":
            if not all(matches(doc, q) for q in want):
                return False
            continue
        have = get_path(doc, key)
        if isinstance(want, Mapping) and set(want) == {"$in"}:
            if have not in want["$in"]:
                return False
        elif isinstance(want, Mapping) and set(want) == {"$lt"}:
            if not (isinstance(have, int | float) and have < want["$lt"]):
                return False
        elif isinstance(want, Mapping) and set(want) == {"$gte"}:  # numbers or dates, as the store compares
            if have is None or type(have) is not type(want["$gte"]) or not have >= want["$gte"]:
                return False
        elif isinstance(want, Mapping) and set(want) == {"$ne"}:
            if have == want["$ne"]:
                return False
        elif isinstance(want, Mapping) and set(want) == {"$regex"}:
            texts = have if isinstance(have, list) else [have]
            if not any(isinstance(t, str) and re.search(want["$regex"], t) for t in texts):
                return False
        elif have != want and not (isinstance(have, list) and not isinstance(want, list) and want in have):
            return False
    return True


def project(doc: Mapping[str, Any], projection: Any) -> Obj:
    """MongoDB's projection: fields included (with ``_id`` unless ``_id: 0``), or fields excluded."""
    out = copy.deepcopy(dict(doc))
    if projection is None:
        return out
    spec = dict(projection) if isinstance(projection, Mapping) else {k: 1 for k in projection}
    included = {k for k, v in spec.items() if v and k != "_id"}
    excluded = {k for k, v in spec.items() if not v and k != "_id"}
    if included:
        out = {k: v for k, v in out.items() if k in included or k == "_id"}
    else:
        out = {k: v for k, v in out.items() if k not in excluded}
    if "_id" in spec and not spec["_id"]:
        out.pop("_id", None)
    return out
