"""The console's web pages: sign-in, the catalogue, a tool's page and run form, jobs, a job live, logs.

Why a module apart from the API routes: a browser signs in once (the token kept in an HttpOnly,
SameSite=Strict cookie) and sends forms, so it needs what an API client does not: redirects to the
sign-in page, a CSRF token on every change, errors shown on the page next to the field. The pages
act through the same ``Console`` operations and the same rights (each page asks the apiserver
through ``Reviewer``), and are built by ``levrt._console.pages``.

CSRF: every form that changes something carries ``csrf``, an HMAC of the session's token under a
key the server draws at start; the API takes a cookie-signed-in request that changes something
only with that value in ``X-CSRF-Token``, and a form post only from this site's own origin.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from levrt._console import pages
from levrt._console.auth import Caller, Forbidden, Reviewer, Unauthenticated
from levrt._console.service import Conflict, Console, Invalid, StartRequest
from levrt._shapes.registry import parse_tool
from levrt.errors import LevrtError, RecordNotFound

__all__ = ["CSRF_HEADER", "SESSION_COOKIE", "STATIC", "Session", "csrf_of", "page_routes", "session_token"]

SESSION_COOKIE = "levrt_session"
CSRF_HEADER = "x-csrf-token"
STATIC = Path(__file__).with_name("static")
ASSETS = {"console.css": "text/css", "console.js": "text/javascript"}
RECORDS_SHOWN = 100
"""Records of each schema a job page shows (the rest: the API's JSON, paged)."""


def csrf_of(key: bytes, token: str) -> str:
    """The CSRF value of a session: an HMAC of its token, so it is bound to that sign-in."""
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()[:40]


MAX_FORM_BYTES = 256 * 1024


async def form_of(request: Request) -> dict[str, str]:
    """A posted form (``application/x-www-form-urlencoded``, all the pages send), read without a
    multipart parser: nothing here uploads files. Repeated names keep their last value."""
    if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
        return {}
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise Invalid("body", f"A form of {len(body)} bytes is more than the console reads ({MAX_FORM_BYTES}).")
    return dict(parse_qsl(body.decode(errors="replace"), keep_blank_values=True))


def session_token(request: Request) -> str | None:
    return request.cookies.get(SESSION_COOKIE) or None


@dataclasses.dataclass(frozen=True)
class Session:
    caller: Caller
    token: str
    csrf: str


PageHandler = Callable[[Request, Console, Reviewer, Session], Awaitable[Response]]


def _html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=status, headers={
        "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "Cache-Control": "no-store"})


def _same_origin(request: Request) -> bool:
    """A form post from this site: its Origin (or Referer) names this host."""
    origin = request.headers.get("origin") or request.headers.get("referer") or ""
    return bool(origin) and urlsplit(origin).netloc == request.headers.get("host")


def _page(handler: PageHandler, *, changes: bool = False) -> Callable[[Request], Awaitable[Response]]:
    async def serve(request: Request) -> Response:
        parts = request.app.state.parts
        token = session_token(request)
        key: bytes = request.app.state.csrf_key
        session: Session | None = None
        try:
            if token is None:
                raise Unauthenticated("Sign in first.")
            caller = await parts.reviewer.authenticate(token)
            session = Session(caller, token, csrf_of(key, token))
            if changes:
                form = await form_of(request)
                if not _same_origin(request) or not hmac.compare_digest(str(form.get("csrf") or ""), session.csrf):
                    return _html(pages.error_page(403, "This form is stale or came from another site: reload the page "
                                                  "and try again.", user=caller.name, csrf=session.csrf), 403)
            return await handler(request, parts.console, parts.reviewer, session)
        except Unauthenticated:
            if request.method == "GET":
                wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse("/sign-in?" + urlencode({"next": wanted}), status_code=303)
            return RedirectResponse("/sign-in", status_code=303)
        except LevrtError as exc:
            status = 403 if isinstance(exc, Forbidden) else 404 if isinstance(exc, RecordNotFound) else (
                409 if isinstance(exc, Conflict) else 422 if isinstance(exc, Invalid) else 500)
            user = session.caller.name if session else None
            return _html(pages.error_page(status, str(exc), user=user, csrf=session.csrf if session else None), status)

    return serve


# -- signing in and out ----------------------------------------------------------------------------------


def _next_path(text: Any) -> str:
    """Where to go after signing in: a path of this site only (never another host)."""
    path = str(text or "")
    return path if path.startswith("/") and not path.startswith("//") and "\\" not in path else "/tools"


async def sign_in_form(request: Request) -> Response:
    return _html(pages.sign_in_page(next_path=_next_path(request.query_params.get("next"))))


async def sign_in(request: Request) -> Response:
    form = await form_of(request)
    next_path = _next_path(form.get("next"))
    if not _same_origin(request):
        return _html(pages.sign_in_page(error="Sign in from this site's own page.", next_path=next_path), 403)
    token = str(form.get("token") or "").strip()
    try:
        if not token:
            raise Unauthenticated("Paste a token.")
        await request.app.state.parts.reviewer.authenticate(token)
    except Unauthenticated as exc:
        return _html(pages.sign_in_page(error=str(exc), next_path=next_path), 401)
    answer = RedirectResponse(next_path, status_code=303)
    answer.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict", path="/",
                      secure=request.url.scheme == "https")
    return answer


async def sign_out(request: Request, console: Console, reviewer: Reviewer, session: Session) -> Response:
    answer = RedirectResponse("/sign-in", status_code=303)
    answer.delete_cookie(SESSION_COOKIE, path="/")
    return answer


# -- tools ------------------------------------------------------------------------------------------------------


async def catalogue(request: Request, console: Console, reviewer: Reviewer, session: Session) -> Response:
    await reviewer.require(session.caller, "list", "tools")
    q, tag, cat = (request.query_params.get(k, "") for k in ("q", "tag", "cat"))
    everything = await console.tools(None, tag=None, cat=None)
    found = everything if not (q or tag or cat) else await console.tools(q or None, tag=tag or None, cat=cat or None)
    return _html(pages.catalogue_page(found, pages.facets_of(everything), q=q, tag=tag, cat=cat,
                                      user=session.caller.name, csrf=session.csrf))


async def tool(request: Request, console: Console, reviewer: Reviewer, session: Session) -> Response:
    await reviewer.require(session.caller, "get", "tools")
    name = f"{request.path_params['namespace']}/{request.path_params['tool']}"
    try:
        wanted = parse_tool(name)
    except ValueError as exc:
        raise RecordNotFound(str(exc)) from None
    return _html(pages.tool_page(await console.tool(wanted), user=session.caller.name, csrf=session.csrf))


async def run_tool(request: Request, console: Console, reviewer: Reviewer, session: Session) -> Response:
    form = await form_of(request)
    name = f"{request.path_params['namespace']}/{request.path_params['tool']}"
    version = str(form.get("version") or "")
    mode = str(form.get("mode") or "")
    values = {key[2:]: value for key, value in form.items() if key.startswith("p.")}
    params = {key: value for key, value in values.items() if value.strip() != ""}
    try:
        wanted = parse_tool(name + (f"@{version}" if version else ""))
    except ValueError as exc:
        raise RecordNotFound(str(exc)) from None

    async def again(status: int, errors: Mapping[str, str], notice: str | None = None) -> Response:
        shown = await console.tool(wanted)
        return _html(pages.tool_page(shown, user=session.caller.name, csrf=session.csrf, errors=errors,
                                     values=values, failed_call=mode, notice=notice), status)

    if not await reviewer.allowed(session.caller, "create", "jobs"):
        message = (f"{session.caller.name} may not create jobs.levrt.io in namespace {reviewer.namespace}: ask for "
                   "the levrt-runner Role.")
        return await again(403, {"": message}, notice=message)
    try:
        job = await console.start(session.caller, StartRequest(wanted, mode, params))
    except Invalid as exc:
        field = exc.field.removeprefix("params.") if exc.field.startswith("params.") else ""
        return await again(422, {field: str(exc)})
    return RedirectResponse(f"/jobs/{job}", status_code=303)


# -- jobs -------------------------------------------------------------------------------------------------------


async def jobs(request: Request, console: Console, reviewer: Reviewer, session: Session) -> Response:
    await reviewer.require(session.caller, "list", "jobs")
    query = request.query_params
    owner = query["owner"] if "owner" in query else session.caller.name  # yours, unless asked otherwise
    state, tool_name, schedule = query.get("state", ""), query.get("tool", ""), query.get("schedule", "")
    try:
        skip = max(0, int(query.get("skip") or 0))
    except ValueError:
        skip = 0
    limit = 25
    rows, total = await console.jobs(state=state or None, owner=owner or None, tool=tool_name or None, limit=limit,
                                     skip=skip, schedule=schedule or None)
    return _html(pages.jobs_page(rows, total=total, state=state, tool=tool_name, owner=owner, skip=skip, limit=limit,
                                 user=session.caller.name, csrf=session.csrf))


async def schedules(request: Request, console: Console, reviewer: Reviewer, session: Session) -> Response:
    await reviewer.require(session.caller, "list", "jobs")
    return _html(pages.schedules_page(await console.schedules(), user=session.caller.name, csrf=session.csrf))


async def _results(console: Console, job: int, view: Mapping[str, Any]) -> str:
    found = await console.records(job, schema=None, ns=None, limit=RECORDS_SHOWN, skip=0)
    records = {}
    for name in found["schemas"]:
        ns, _, schema = name.rpartition("|")
        page = await console.records(job, schema=schema, ns=ns.replace("|", "/") or None, limit=RECORDS_SHOWN, skip=0)
        records[name] = {**page, "job": job}
    value = view.get("value")
    return pages.results_fragment(value=value, error=view.get("error"), records=records, state=str(view["state"]))


async def job(request: Request, console: Console, reviewer: Reviewer, session: Session) -> Response:
    await reviewer.require(session.caller, "get", "jobs")
    number = request.path_params["job"]
    view = await console.job(number)
    results = await _results(console, number, view)
    return _html(pages.job_page(view, results=results, user=session.caller.name, csrf=session.csrf))


async def job_results(request: Request, console: Console, reviewer: Reviewer, session: Session) -> Response:
    await reviewer.require(session.caller, "get", "jobs")
    number = request.path_params["job"]
    return _html(await _results(console, number, await console.job(number)))


async def cancel(request: Request, console: Console, reviewer: Reviewer, session: Session) -> Response:
    await reviewer.require(session.caller, "delete", "jobs")
    number = request.path_params["job"]
    try:
        await console.cancel(number)
    except Conflict as exc:
        view = await console.job(number)
        return _html(pages.job_page(view, results=await _results(console, number, view), user=session.caller.name,
                                    csrf=session.csrf, notice=str(exc)), 409)
    return RedirectResponse(f"/jobs/{number}", status_code=303)


async def resume(request: Request, console: Console, reviewer: Reviewer, session: Session) -> Response:
    await reviewer.require(session.caller, "create", "jobs")
    number = request.path_params["job"]
    try:
        started = await console.resume(session.caller, number)
    except Conflict as exc:
        view = await console.job(number)
        return _html(pages.job_page(view, results=await _results(console, number, view), user=session.caller.name,
                                    csrf=session.csrf, notice=str(exc)), 409)
    return RedirectResponse(f"/jobs/{started}", status_code=303)


async def logs(request: Request, console: Console, reviewer: Reviewer, session: Session) -> Response:
    await reviewer.require(session.caller, "get", "jobs")
    number, task = request.path_params["job"], request.path_params["task"]
    await console.job(number)
    container = request.query_params.get("container") or "main"
    return _html(pages.logs_page(number, task, containers=["main"], container=container,
                                 user=session.caller.name, csrf=session.csrf))


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in ASSETS:
        return Response("no such file\n", status_code=404, media_type="text/plain")
    return FileResponse(STATIC / name, media_type=ASSETS[name], headers={"Cache-Control": "max-age=86400"})


async def home(request: Request) -> Response:
    return RedirectResponse("/tools", status_code=303)


def page_routes() -> list[Route]:
    return [
        Route("/", home), Route("/static/{name}", asset),
        Route("/sign-in", sign_in_form, methods=["GET"]), Route("/sign-in", sign_in, methods=["POST"]),
        Route("/sign-out", _page(sign_out, changes=True), methods=["POST"]),
        Route("/tools", _page(catalogue)), Route("/tools/{namespace}/{tool}", _page(tool)),
        Route("/tools/{namespace}/{tool}/run", _page(run_tool, changes=True), methods=["POST"]),
        Route("/jobs", _page(jobs)), Route("/jobs/{job:int}", _page(job)), Route("/schedules", _page(schedules)),
        Route("/jobs/{job:int}/results", _page(job_results)),
        Route("/jobs/{job:int}/cancel", _page(cancel, changes=True), methods=["POST"]),
        Route("/jobs/{job:int}/resume", _page(resume, changes=True), methods=["POST"]),
        Route("/jobs/{job:int}/tasks/{task:int}/logs", _page(logs)),
    ]


def new_csrf_key() -> bytes:
    return secrets.token_bytes(32)
