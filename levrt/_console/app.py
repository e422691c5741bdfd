"""The console's HTTP API: one table of endpoints gives both the routes and the OpenAPI document;
the web pages (``levrt._console.web``) are served beside it.

Why Starlette (with uvicorn): a small, well-kept ASGI toolkit (routing, streaming responses, a
test client) with pure-Python dependencies (anyio, h11), so it travels in the runtime image's
client site like the rest of the SDK and nothing new must be pulled; FastAPI would add pydantic and
its compiled core for a schema we write once here anyway. Each request: the bearer token is
reviewed (401 without a good one), the endpoint's right is asked of the apiserver (403 naming it,
nothing done), then ``levrt._console.service`` acts; levrt's errors map to statuses in one place
(``STATUS_OF``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from levrt._console.auth import Caller, Forbidden, Reviewer, Unauthenticated, bearer_token
from levrt._console.service import MAX_PAGE, Conflict, Console, Invalid, json_value, read_start
from levrt._console.web import CSRF_HEADER, csrf_of, new_csrf_key, page_routes, session_token
from levrt._shapes.registry import ToolName, parse_tool
from levrt._version import __version__
from levrt.errors import LevrtError, RecordNotFound, StoreError

__all__ = ["API_PREFIX", "ENDPOINTS", "create_app", "openapi_document"]

API_PREFIX = "/api/v1"
HEARTBEAT_SECONDS = 15.0
"""An event stream says something at least this often (a comment line), so proxies keep it open."""

Handler = Callable[[Request, Console, Caller], Awaitable[Response]]

STATUS_OF: tuple[tuple[type[BaseException], int], ...] = (
    (Unauthenticated, 401), (Forbidden, 403), (RecordNotFound, 404), (Conflict, 409), (Invalid, 422),
    (StoreError, 503), (LevrtError, 500),
)
"""levrt's errors as HTTP statuses, the first class that matches."""


@dataclasses.dataclass(frozen=True)
class Query:
    """A query parameter an endpoint reads (and the OpenAPI document lists)."""

    name: str
    type: str = "string"
    about: str = ""


@dataclasses.dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    """Under ``API_PREFIX``, Starlette's syntax: ``/jobs/{job:int}``."""
    handler: Handler
    right: tuple[str, str] | None
    """(verb, resource) of ``levrt.io`` asked of the apiserver; None: any signed-in caller."""
    summary: str
    query: tuple[Query, ...] = ()
    body: str | None = None
    """What the JSON body holds, for the document; None: no body."""
    produces: str = "application/json"
    status: int = 200


def _error(status: int, message: str, field: str | None = None) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"status": status, "detail": message, **({"field": field} if field else {})},
                        status_code=status, headers=headers)


def _json(value: Any, status: int = 200) -> Response:
    return Response(json.dumps(value, default=json_value), status_code=status, media_type="application/json")


def _int_query(request: Request, name: str, default: int, *, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise Invalid(name, f"{name}: a whole number, not {text!r}.") from None
    if not low <= value <= high:
        raise Invalid(name, f"{name}: between {low} and {high}, not {value}.")
    return value


def _page(request: Request) -> tuple[int, int]:
    return (_int_query(request, "limit", 100, low=1, high=MAX_PAGE),
            _int_query(request, "skip", 0, low=0, high=10**9))


def _text_query(request: Request, name: str) -> str | None:
    return request.query_params.get(name) or None


# -- the endpoints ------------------------------------------------------------------------------------


async def list_tools(request: Request, console: Console, caller: Caller) -> Response:
    found = await console.tools(_text_query(request, "q"), tag=_text_query(request, "tag"),
                                cat=_text_query(request, "cat"))
    return _json({"tools": found, "count": len(found)})


def _tool_name(request: Request) -> ToolName:
    text = f"{request.path_params['namespace']}/{request.path_params['tool']}"
    version = _text_query(request, "version")
    try:
        return parse_tool(text + (f"@{version}" if version else ""))
    except ValueError as exc:
        raise RecordNotFound(str(exc)) from None


async def get_tool(request: Request, console: Console, caller: Caller) -> Response:
    return _json(await console.tool(_tool_name(request)))


async def start_job(request: Request, console: Console, caller: Caller) -> Response:
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError as exc:
        raise Invalid("body", f"The body is not JSON: {exc}.") from None
    job = await console.start(caller, read_start(body))
    return _json({"job": job, "owner": caller.name}, status=201)


async def list_jobs(request: Request, console: Console, caller: Caller) -> Response:
    limit, skip = _page(request)
    rows, total = await console.jobs(state=_text_query(request, "state"), owner=_text_query(request, "owner"),
                                     tool=_text_query(request, "tool"), limit=limit, skip=skip,
                                     schedule=_text_query(request, "schedule"))
    return _json({"jobs": rows, "count": total, "limit": limit, "skip": skip})


async def list_schedules(request: Request, console: Console, caller: Caller) -> Response:
    found = await console.schedules()
    return _json({"schedules": found, "count": len(found)})


async def get_job(request: Request, console: Console, caller: Caller) -> Response:
    return _json(await console.job(request.path_params["job"]))


async def cancel_job(request: Request, console: Console, caller: Caller) -> Response:
    job = request.path_params["job"]
    done = await console.cancel(job)
    return _json({"job": job, "cancelling": True, "detail": f"Job {job} is ending: {done}."}, status=202)


async def resume_job(request: Request, console: Console, caller: Caller) -> Response:
    job = await console.resume(caller, request.path_params["job"])
    return _json({"job": job, "owner": caller.name, "resumes": request.path_params["job"]}, status=201)


async def task_logs(request: Request, console: Console, caller: Caller) -> Response:
    follow = (_text_query(request, "follow") or "false").lower() in ("1", "true", "yes")
    found = await console.logs(request.path_params["job"], request.path_params["task"],
                               container=_text_query(request, "container") or "main", follow=follow)
    headers = {"X-Levrt-Log-Source": found.source, **({"X-Levrt-Log-Cut": found.cut} if found.cut else {})}

    async def body() -> AsyncIterator[bytes]:
        async with contextlib.aclosing(found.lines) as lines:  # type: ignore[type-var]
            async for line in lines:
                yield line

    return StreamingResponse(body(), media_type="text/plain; charset=utf-8", headers=headers)


async def job_records(request: Request, console: Console, caller: Caller) -> Response:
    limit, skip = _page(request)
    return _json(await console.records(request.path_params["job"], schema=_text_query(request, "schema"),
                                       ns=_text_query(request, "ns"), limit=limit, skip=skip))


async def get_file(request: Request, console: Console, caller: Caller) -> Response:
    info, chunks = await console.file(request.path_params["sha256"])
    name = str(info.get("filename") or request.path_params["sha256"]).rpartition("/")[2]
    safe = "".join(c if c.isalnum() or c in "._-@" else "_" for c in name) or "file"
    return StreamingResponse(chunks, media_type="application/octet-stream",
                             headers={"Content-Length": str(info.get("length", "")),
                                      "Content-Disposition": f'attachment; filename="{safe}"'})


async def job_events(request: Request, console: Console, caller: Caller) -> Response:
    job = request.path_params["job"]
    await console.job(job)  # 404 before the stream starts

    async def stream() -> AsyncIterator[bytes]:
        last = time.monotonic()
        async with contextlib.aclosing(console.events(job)) as events:  # type: ignore[type-var]
            async for name, data in events:
                if name:
                    last = time.monotonic()
                    yield f"event: {name}\ndata: {json.dumps(data, default=json_value)}\n\n".encode()
                elif time.monotonic() - last > HEARTBEAT_SECONDS:
                    last = time.monotonic()
                    yield b": nothing new\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


PAGE = (Query("limit", "integer", f"at most this many (1-{MAX_PAGE}, default 100)"),
        Query("skip", "integer", "skip this many first"))
ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET", "/tools", list_tools, ("list", "tools"), "Published tools (the newest version of each)",
             (Query("q", about="words in the name, description, tags, categories"), Query("tag"),
              Query("cat", about="an ATT&CK tactic id or name, a BlackArch category"))),
    Endpoint("GET", "/tools/{namespace}/{tool}", get_tool, ("get", "tools"),
             "A published tool: metadata, calls with their parameters, versions",
             (Query("version", about="a version (default: the newest)"),)),
    Endpoint("POST", "/jobs", start_job, ("create", "jobs"), "Start a published tool's mode or workflow",
             body='{"tool": "NS/TOOL[@VERSION]", "mode": "NAME", "params": {...}}', status=201),
    Endpoint("GET", "/jobs", list_jobs, ("list", "jobs"), "Job records, newest first",
             (Query("state", about="running, succeeded, failed, cancelled, lost"), Query("owner"),
              Query("tool", about="NS/TOOL"), Query("schedule", about="the runs of this schedule"), *PAGE)),
    Endpoint("GET", "/schedules", list_schedules, ("list", "jobs"),
             "Schedules (CronJobs made by levrt schedule) with their last runs"),
    Endpoint("GET", "/jobs/{job:int}", get_job, ("get", "jobs"), "A job's record and its tasks"),
    Endpoint("DELETE", "/jobs/{job:int}", cancel_job, ("delete", "jobs"), "Cancel a running job", status=202),
    Endpoint("POST", "/jobs/{job:int}/resume", resume_job, ("create", "jobs"),
             "Run an ended job of a published tool again, its succeeded tasks taken, not run", status=201),
    Endpoint("GET", "/jobs/{job:int}/tasks/{task:int}/logs", task_logs, ("get", "jobs"),
             "A task's output: from its Pod while there (follow=true streams it), then its archive",
             (Query("container", about="main (default), a service's name, levrt-files"),
              Query("follow", "boolean")), produces="text/plain"),
    Endpoint("GET", "/jobs/{job:int}/records", job_records, ("get", "jobs"),
             "The records a job's tasks wrote to a schema (without schema: its schemas and counts)",
             (Query("schema"), Query("ns", about="the namespace they were written in, a/b"), *PAGE)),
    Endpoint("GET", "/jobs/{job:int}/events", job_events, ("get", "jobs"),
             "Server-sent events: task and job state changes, then end", produces="text/event-stream"),
    Endpoint("GET", "/files/{sha256}", get_file, ("get", "jobs"),
             "A stored file: an artifact or a value stored apart, by the sha256 its record names",
             produces="application/octet-stream"),
)


# -- the application -----------------------------------------------------------------------------------


def _route(endpoint: Endpoint) -> Route:
    async def serve(request: Request) -> Response:
        try:
            parts: Parts = request.app.state.parts
            caller = await parts.reviewer.authenticate(_token(request))
            if endpoint.right is not None:
                await parts.reviewer.require(caller, *endpoint.right)
            return await endpoint.handler(request, parts.console, caller)
        except LevrtError as exc:
            status = next(code for kind, code in STATUS_OF if isinstance(exc, kind))
            return _error(status, str(exc), getattr(exc, "field", None))

    return Route(API_PREFIX + endpoint.path, serve, methods=[endpoint.method])


def _token(request: Request) -> str:
    """The caller's token: the bearer header, else the console's session cookie; a change signed in
    by the cookie (a page's script) must carry its CSRF value, which another site cannot read."""
    header = request.headers.get("authorization")
    token = session_token(request) if header is None else None
    if token is None:
        return bearer_token(header)
    if request.method not in ("GET", "HEAD") and not hmac.compare_digest(
            request.headers.get(CSRF_HEADER, ""), csrf_of(request.app.state.csrf_key, token)):
        raise Forbidden(f"A change signed in by the console's cookie needs the page's CSRF value in {CSRF_HEADER}.")
    return token


@dataclasses.dataclass
class Parts:
    """What the endpoints act with: the operations and the apiserver's reviews."""

    console: Console
    reviewer: Reviewer


def create_app(parts: Callable[[], contextlib.AbstractAsyncContextManager[Parts]]) -> Starlette:
    """The ASGI application; ``parts`` opens the console and the reviewer for the app's lifetime
    (``levrt._console.__main__`` connects them to the cluster; a test may give its own)."""

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document())

    async def healthz(request: Request) -> Response:
        return Response("ok\n", media_type="text/plain")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with parts() as opened:
            app.state.parts = opened
            yield

    routes = [Route(f"{API_PREFIX}/openapi.json", openapi), Route("/healthz", healthz),
              *(_route(endpoint) for endpoint in ENDPOINTS), *page_routes()]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.csrf_key = new_csrf_key()
    return app


# -- the OpenAPI document ----------------------------------------------------------------------------------

ERRORS = {401: "No token, or one the cluster does not accept", 403: "The caller lacks the right (named)",
          404: "No such tool, mode, job, task or file", 409: "Not now (e.g. the job is not running)",
          422: "A bad parameter or body (the field is named)", 503: "The store cannot be reached"}


def _openapi_path(path: str) -> tuple[str, list[dict[str, Any]]]:
    """``/jobs/{job:int}`` as OpenAPI writes it, and its path parameters."""
    params = []
    parts = []
    for part in path.split("/"):
        if part.startswith("{") and part.endswith("}"):
            name, _, kind = part[1:-1].partition(":")
            params.append({"name": name, "in": "path", "required": True,
                           "schema": {"type": "integer" if kind == "int" else "string"}})
            part = "{" + name + "}"
        parts.append(part)
    return "/".join(parts), params


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``ENDPOINTS`` (served at ``/api/v1/openapi.json``)."""
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in ENDPOINTS:
        path, params = _openapi_path(endpoint.path)
        params += [{"name": q.name, "in": "query", "required": False, "description": q.about,
                    "schema": {"type": q.type}} for q in endpoint.query]
        responses: dict[str, Any] = {str(endpoint.status): {
            "description": "OK", "content": {endpoint.produces: {"schema": {} if endpoint.produces != "text/plain"
                                                                 else {"type": "string"}}}}}
        responses.update({str(code): {"description": text} for code, text in ERRORS.items()})
        operation: dict[str, Any] = {
            "summary": endpoint.summary, "parameters": params, "responses": responses,
            "description": ("Needs the right to " + " ".join(endpoint.right) + ".levrt.io in levrt's namespace."
                            if endpoint.right else "Needs a signed-in caller."),
        }
        if endpoint.body:
            operation["requestBody"] = {"required": True, "description": endpoint.body,
                                        "content": {"application/json": {"schema": {"type": "object"}}}}
        paths.setdefault(API_PREFIX + path, {})[endpoint.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "levrt console API", "version": __version__,
                 "description": "Every request carries `Authorization: Bearer TOKEN`, a token the cluster accepts; "
                                "rights are Kubernetes RBAC on the API group levrt.io (resources tools, jobs)."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": paths,
    }
