"""The console's web pages as HTML text, built from what the API returns: pure, without I/O.

Why plain HTML built here, and no front-end framework: the pages must work from a platform with no
internet (nothing fetched from a CDN), stay small on a slow laptop, and render the same rows the
API and the CLI show. Each page is a function of its data; every value that came from a user, a
tool or a task is escaped (``esc``). The one script (``static/console.js``) only adds what a
static page cannot: live task rows from the event stream, a task's log as it comes, and checks of a
form before it is sent. Forms post to the page routes (``levrt._console.web``) with a CSRF token.
"""

from __future__ import annotations

import html
import json
import shlex
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from levrt._stored import ARTIFACTS, PLACEHOLDER, human_size
from levrt.annot.cats import Attck

__all__ = [
    "ASSET_VERSION",
    "catalogue_page",
    "error_page",
    "esc",
    "job_page",
    "jobs_page",
    "logs_page",
    "results_fragment",
    "schedules_page",
    "sign_in_page",
    "tool_page",
]

ASSET_VERSION = "3"
"""Bumped with the stylesheet or the script, so a browser never keeps a stale copy."""
TACTIC_NAMES = {member.value: member.name.replace("_", " ").title() for member in Attck}
ENDED = frozenset({"succeeded", "failed", "cancelled", "lost"})


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _href(path: str, **query: Any) -> str:
    given = {k: v for k, v in query.items() if v not in (None, "")}
    return esc(path + ("?" + urlencode(given) if given else ""))


def layout(title: str, body: str, *, user: str | None, csrf: str | None, active: str = "") -> str:
    """A whole page: the header (where to go, who is signed in, sign-out) around ``body``."""
    nav = ""
    if user is not None:
        links = "".join(f'<a href="{href}"{" aria-current=page" if key == active else ""}>{label}</a>'
                        for key, href, label in (("tools", "/tools", "Tools"), ("jobs", "/jobs", "Jobs"),
                                                 ("schedules", "/schedules", "Schedules")))
        nav = (f'<nav aria-label="Main">{links}</nav><form class="who" method="post" action="/sign-out">'
               f'<span>{esc(user)}</span><input type="hidden" name="csrf" value="{esc(csrf)}">'
               '<button type="submit">Sign out</button></form>')
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            '<meta name=viewport content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)} · levrt</title>"
            f'<link rel=stylesheet href="/static/console.css?v={ASSET_VERSION}">'
            f'<script src="/static/console.js?v={ASSET_VERSION}" defer></script></head>'
            f'<body><header><a class="brand" href="/tools">levrt</a>{nav}</header>'
            f'<main id="main">{body}</main></body></html>')


def error_page(status: int, message: str, *, user: str | None, csrf: str | None) -> str:
    heading = {401: "Sign in first", 403: "Not allowed", 404: "Not found"}.get(status, "Something went wrong")
    body = f'<h1>{heading}</h1><p class="error" role="alert">{esc(message)}</p>'
    if status == 401:
        body += '<p><a href="/sign-in">Sign in</a></p>'
    return layout(heading, body, user=user, csrf=csrf)


def sign_in_page(*, error: str | None = None, next_path: str = "/tools") -> str:
    alert = f'<p class="error" role="alert" id="token-error">{esc(error)}</p>' if error else ""
    body = (
        "<h1>Sign in</h1>"
        "<p>Paste a token the cluster accepts, for example one made for a ServiceAccount bound to a "
        "levrt Role:</p><pre class=copy>kubectl -n levrt create token analyst</pre>"
        f'<form method="post" action="/sign-in" class="stack">{alert}'
        f'<input type="hidden" name="next" value="{esc(next_path)}">'
        '<label for="token">Token</label>'
        '<textarea id="token" name="token" rows="4" required autocomplete="off" spellcheck="false"'
        f'{" aria-describedby=token-error aria-invalid=true" if error else ""}></textarea>'
        '<button type="submit">Sign in</button></form>'
        "<p class=hint>The token is kept in a cookie only this site reads (HttpOnly, SameSite=Strict) "
        "until you sign out; every page asks the cluster what it allows.</p>")
    return layout("Sign in", body, user=None, csrf=None)


# -- the catalogue ----------------------------------------------------------------------------------


def _facet_label(kind: str, value: str) -> str:
    if kind == "cat" and value.upper() in TACTIC_NAMES:
        return f"{value.upper()} {TACTIC_NAMES[value.upper()]}"
    return value


TACTIC_WORDS = {name.replace(" ", "_").lower() for name in TACTIC_NAMES.values()}
"""A tool's ``cats`` hold each tactic's name beside its id (for search); shown once, by id."""


def facets_of(tools: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """How many tools have each tag, each ATT&CK tactic (by id) and each other category."""
    counts: dict[str, dict[str, int]] = {"tag": {}, "tactic": {}, "cat": {}}
    for tool in tools:
        for tag in tool.get("tags") or ():
            counts["tag"][str(tag)] = counts["tag"].get(str(tag), 0) + 1
        for cat in tool.get("cats") or ():
            text = str(cat)
            if text.upper() in TACTIC_NAMES:
                counts["tactic"][text.upper()] = counts["tactic"].get(text.upper(), 0) + 1
            elif text.replace(" ", "_").lower() not in TACTIC_WORDS:
                counts["cat"][text] = counts["cat"].get(text, 0) + 1
    return counts


def catalogue_page(tools: Sequence[Mapping[str, Any]], facets: Mapping[str, Mapping[str, int]], *, q: str,
                   tag: str, cat: str, user: str, csrf: str) -> str:
    search = (f'<form role="search" method="get" action="/tools" class="row"><label for="q">Search tools</label>'
              f'<input id="q" name="q" type="search" value="{esc(q)}" placeholder="name, description, tag, tactic">'
              f'<input type="hidden" name="tag" value="{esc(tag)}"><input type="hidden" name="cat" value="{esc(cat)}">'
              '<button type="submit">Search</button></form>')
    groups = []
    for kind, title, param in (("tag", "Tags", "tag"), ("tactic", "ATT&CK tactics", "cat"),
                               ("cat", "Categories", "cat")):
        chosen = tag if param == "tag" else cat
        items = "".join(
            f'<li><a href="{_href("/tools", q=q, **{param: "" if value.lower() == chosen.lower() else value})}"'
            f'{" aria-current=true" if value.lower() == chosen.lower() else ""}>'
            f'{esc(_facet_label("cat" if kind == "tactic" else kind, value))} <span class=count>{n}</span></a></li>'
            for value, n in sorted(facets.get(kind, {}).items()))
        if items:
            groups.append(f'<section aria-label="{esc(title)}"><h2>{esc(title)}</h2><ul class=facets>{items}</ul>'
                          "</section>")
    cards = "".join(_tool_card(tool) for tool in tools) or '<p class="empty">No published tool matches.</p>'
    body = (f"<h1>Tools</h1>{search}<div class=catalogue><aside>{''.join(groups)}</aside>"
            f'<section aria-label="Results"><p class=hint>{len(tools)} tool{"s" if len(tools) != 1 else ""}</p>'
            f'<ul class=cards id="tools">{cards}</ul></section></div>')
    return layout("Tools", body, user=user, csrf=csrf, active="tools")


def _tool_card(tool: Mapping[str, Any]) -> str:
    calls = ", ".join(esc(call.get("name")) for call in tool.get("calls") or ())
    tags = "".join(f"<span class=tag>{esc(t)}</span>" for t in tool.get("tags") or ())
    return (f'<li class=card><h2><a href="/tools/{esc(tool["name"])}">{esc(tool["name"])}</a> '
            f'<span class=version>{esc(tool.get("version"))}</span></h2><p>{esc(tool.get("desc"))}</p>'
            f"<p class=meta>{tags} · runs: {calls or '-'} · by {esc(tool.get('publisher'))}</p></li>")


# -- a tool and its run forms ---------------------------------------------------------------------------


def _input(call: str, param: Mapping[str, Any], value: str, error: str | None) -> str:
    name = str(param["name"])
    ident = f"{call}-{name}".replace(".", "-")
    kind = str(param.get("type") or "STR")
    holder = param.get("placeholder")
    suggestions = [str(h) for h in holder] if isinstance(holder, list) else []
    shown = suggestions[0] if suggestions else (str(holder) if holder else "")
    attrs = [f'id="{esc(ident)}"', f'name="p.{esc(name)}"']
    if param.get("required"):
        attrs.append("required")
    if param.get("regex"):
        attrs.append(f"data-regex='{esc(json.dumps(param['regex']))}'")
    described = [f"{ident}-hint"] + ([f"{ident}-error"] if error else [])
    attrs.append(f'aria-describedby="{" ".join(described)}"')
    if error:
        attrs.append('aria-invalid="true"')
    choices = kind.split("|")
    if kind == "BOOL":
        options = "".join(f'<option value="{v}"{" selected" if value == v else ""}>{label}</option>'
                          for v, label in (("", "(default)"), ("true", "true"), ("false", "false")))
        control = f"<select {' '.join(attrs)}>{options}</select>"
    elif len(choices) > 1 and not {"INT", "FLOAT", "STR", "BOOL", "PATH", "JSON"} & set(choices):
        options = '<option value="">(default)</option>' if not param.get("required") else ""
        options += "".join(f'<option{" selected" if value == c else ""}>{esc(c)}</option>' for c in choices)
        control = f"<select {' '.join(attrs)}>{options}</select>"
    elif kind == "JSON":
        control = f'<textarea {" ".join(attrs)} rows=3 placeholder="{esc(shown)}">{esc(value)}</textarea>'
    else:
        number = {"INT": ' type="number" step="1"', "FLOAT": ' type="number" step="any"'}.get(kind, ' type="text"')
        listed = f' list="{esc(ident)}-list"' if suggestions else ""
        control = (f'<input{number} {" ".join(attrs)} value="{esc(value)}" placeholder="{esc(shown)}"{listed}>'
                   + (f'<datalist id="{esc(ident)}-list">'
                      + "".join(f'<option value="{esc(s)}">' for s in suggestions) + "</datalist>"
                      if suggestions else ""))
    hint = [str(param.get("desc") or "")]
    hint.append({"INT": "a whole number", "FLOAT": "a number", "BOOL": "true or false"}.get(
        kind, "comma-separated" if kind.endswith(",...") else ""))
    if "default" in param:
        hint.append(f"default {param['default']}")
    star = ' <abbr title="required">*</abbr>' if param.get("required") else ""
    return (f'<div class="field{" invalid" if error else ""}"><label for="{esc(ident)}">{esc(name)}{star}</label>'
            f"{control}"
            f'<p class=hint id="{esc(ident)}-hint">{esc(" · ".join(h for h in hint if h))}</p>'
            f'<p class=error id="{esc(ident)}-error" role="alert">{esc(error or "")}</p></div>')


def _example_value(param: Mapping[str, Any]) -> str:
    holder = param.get("placeholder")
    value = holder[0] if isinstance(holder, list) and holder else holder
    return str(value) if value else {"INT": "1", "FLOAT": "1.0", "BOOL": "true"}.get(str(param.get("type")), "VALUE")


def _run_lines(tool: Mapping[str, Any], call: Mapping[str, Any]) -> str:
    """How to run the same from the CLI, the SDK and the API (copyable)."""
    required = [p for p in call.get("params") or () if p.get("required") and p.get("given") != "names"]
    words = [f"{p['name']}={_example_value(p)}" for p in required]
    cli = " ".join(["levrt", "run", f"{tool['name']}:{call['name']}", *(shlex.quote(w) for w in words)])
    module, _, func = str(call["name"]).rpartition(".")
    package = "lev." + str(tool["name"]).replace("/", ".") + (f".{module}" if module else "")
    sdk_args = ", ".join(f"{p['name']}={_example_value(p)!r}" for p in required)
    sdk = f"import levrt\nfrom {package} import {func}\n\nlevrt.run({func}({sdk_args}))" if call.get(
        "kind") == "workflow" else (f"import levrt\nfrom {package} import {func}\n\nasync def main():\n"
                                    f"    return await (await {func}({sdk_args})).get()\n\nlevrt.run(main())")
    body = json.dumps({"tool": tool["name"], "mode": call["name"],
                       "params": {p["name"]: _example_value(p) for p in required}})
    api = (f"curl -H \"Authorization: Bearer $TOKEN\" -d {shlex.quote(body)} "
           "http://127.0.0.1:8080/api/v1/jobs")
    return ("<details class=lines><summary>Run it from the CLI, the SDK or the API</summary>"
            f"<pre class=copy>{esc(cli)}</pre><pre class=copy>{esc(sdk)}</pre><pre class=copy>{esc(api)}</pre>"
            "</details>")


def tool_page(tool: Mapping[str, Any], *, user: str, csrf: str, errors: Mapping[str, str] | None = None,
              values: Mapping[str, str] | None = None, failed_call: str | None = None,
              notice: str | None = None) -> str:
    errors, values = errors or {}, values or {}
    meta = tool.get("meta") or {}
    cats = " ".join(f"<span class=tag>{esc(_facet_label('cat', c))}</span>" for c in tool.get("cats") or ()
                    if str(c).replace(" ", "_").lower() not in TACTIC_WORDS)
    sections = []
    for call in tool.get("calls") or ():
        name = str(call["name"])
        mine = name == failed_call
        fields = "".join(_input(name, param, values.get(param["name"], "") if mine else "",
                                errors.get(param["name"]) if mine else None)
                         for param in call.get("params") or () if param.get("given") != "names")
        general = errors.get("") if mine else None
        sections.append(
            f'<section class=call id="call-{esc(name)}" aria-labelledby="h-{esc(name)}">'
            f'<h2 id="h-{esc(name)}">{esc(name)} <span class=kind>{esc(call.get("kind"))}</span></h2>'
            f'<p>{esc(call.get("desc"))}</p>'
            f'<form method="post" action="/tools/{esc(tool["name"])}/run" class="run stack" novalidate>'
            f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
            f'<input type="hidden" name="mode" value="{esc(name)}">'
            f'<input type="hidden" name="version" value="{esc(tool.get("version"))}">'
            f"{fields or '<p class=hint>No parameters.</p>'}"
            f'<p class=error role="alert">{esc(general or "")}</p>'
            f'<button type="submit">Run {esc(name)}</button></form>{_run_lines(tool, call)}</section>')
    versions = ", ".join(esc(v) for v in tool.get("versions") or ())
    alert = f'<p class="error" role="alert">{esc(notice)}</p>' if notice else ""
    body = (f'<h1>{esc(tool["name"])} <span class=version>{esc(tool.get("version"))}</span></h1>{alert}'
            f'<p>{esc(tool.get("desc") or meta.get("desc"))}</p>'
            f'<p class=meta>{cats} · published by {esc(tool.get("publisher"))} on {esc(tool.get("published"))}'
            f" · versions: {versions}</p>" + ("".join(sections) or "<p>This tool offers no mode or workflow.</p>"))
    return layout(str(tool["name"]), body, user=user, csrf=csrf, active="tools")


# -- jobs -------------------------------------------------------------------------------------------------


def _state(state: Any) -> str:
    text = str(state or "-")
    return f'<span class="state s-{esc(text.split("(")[0])}">{esc(text)}</span>'


def _seconds(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    minutes, seconds = divmod(float(value), 60)
    return f"{int(minutes)}m{seconds:04.1f}s" if minutes else f"{seconds:.1f}s"


def jobs_page(rows: Sequence[Mapping[str, Any]], *, total: int, state: str, tool: str, owner: str, skip: int,
              limit: int, user: str, csrf: str) -> str:
    states = "".join(f'<option{" selected" if s == state else ""}>{s}</option>'
                     for s in ("", "running", "succeeded", "failed", "cancelled", "lost"))
    filters = (f'<form method="get" action="/jobs" class="row filters"><label for="f-state">State</label>'
               f'<select id="f-state" name="state">{states}</select>'
               f'<label for="f-tool">Tool</label><input id="f-tool" name="tool" value="{esc(tool)}" '
               'placeholder="namespace/tool">'
               f'<label for="f-owner">Owner</label><input id="f-owner" name="owner" value="{esc(owner)}" '
               'placeholder="everyone">'
               '<button type="submit">Filter</button></form>')
    lines = "".join(
        f'<tr><td><a href="/jobs/{row["job"]}">{row["job"]}</a></td><td class=what>{esc(row["what"])}</td>'
        f'<td>{esc(row["owner"])}</td><td>{_state(row["state"])}</td>'
        f'<td>{esc(" ".join(f"{n} {k}" for k, n in (row.get("tasks") or {}).items()) or "-")}</td>'
        f'<td>{esc(row.get("started") or "-")}</td><td class=num>{_seconds(row.get("duration"))}</td></tr>'
        for row in rows)
    table = (f"<table class=jobs><caption>{total} job{'s' if total != 1 else ''}, newest first</caption>"
             "<thead><tr><th scope=col>Job</th><th scope=col>What</th><th scope=col>Owner</th><th scope=col>State</th>"
             "<th scope=col>Tasks</th><th scope=col>Started</th><th scope=col>Duration</th></tr></thead>"
             f"<tbody>{lines}</tbody></table>") if rows else '<p class="empty">No jobs match.</p>'
    pager = []
    if skip > 0:
        pager.append(f'<a href="{_href("/jobs", state=state, tool=tool, owner=owner, skip=max(0, skip - limit))}">'
                     "Newer</a>")
    if skip + limit < total:
        pager.append(f'<a href="{_href("/jobs", state=state, tool=tool, owner=owner, skip=skip + limit)}">Older</a>')
    body = f"<h1>Jobs</h1>{filters}{table}<nav aria-label=Pages class=pager>{' '.join(pager)}</nav>"
    return layout("Jobs", body, user=user, csrf=csrf, active="jobs")


def task_row(row: Mapping[str, Any], job: int) -> str:
    """One task's row; the script replaces its cells in place as events come (same ids)."""
    task = str(row["task"]).rpartition(".")[2]
    done = row.get("retries") or 0
    retries = f"{done}/{row['maxRetries']}" if row.get("maxRetries") else str(done)
    return (f'<tr id="task-{esc(row["task"])}"><td>{esc(row["task"])}</td><td class=what>{esc(row.get("name"))}</td>'
            f'<td class=st>{_state(row.get("state"))}</td><td class="num el">{_seconds(row.get("elapsed"))}</td>'
            f'<td class="num re">{esc(retries)}</td>'
            f'<td><a href="/jobs/{job}/tasks/{esc(task)}/logs">logs</a></td></tr>')


def job_page(view: Mapping[str, Any], *, results: str, user: str, csrf: str, notice: str | None = None) -> str:
    job = int(view["job"])
    running = view["state"] == "running"
    action = (f'<form method="post" action="/jobs/{job}/cancel" class=inline><input type="hidden" name="csrf" '
              f'value="{esc(csrf)}"><button type="submit" class=danger>Cancel job</button></form>' if running else "")
    what = view.get("what")
    if view["state"] in ENDED - {"succeeded"} and isinstance(what, Mapping) and what.get("sha256"):
        # Only a published tool's job: its code is in the registry (a file's job resumes where its file is).
        action = (f'<form method="post" action="/jobs/{job}/resume" class=inline><input type="hidden" name="csrf" '
                  f'value="{esc(csrf)}"><button type="submit">Resume job</button></form>'
                  '<span class=hint> runs it again as a new job; its succeeded tasks are taken, not run</span>')
    rows = "".join(task_row(row, job) for row in view.get("taskList") or ())
    alert = f'<p class="error" role="alert">{esc(notice)}</p>' if notice else ""
    body = (f'<h1>Job {job} {_state(view["state"])}</h1>{alert}'
            f'<dl class=facts><dt>What</dt><dd>{esc(view.get("what") and _what(view))}</dd>'
            f'<dt>Owner</dt><dd>{esc(view.get("owner"))}</dd><dt>Where</dt><dd>{esc(view.get("where"))}</dd>'
            f'<dt>Started</dt><dd>{esc(view.get("started") or "-")}</dd>'
            f'<dt>Duration</dt><dd id="duration">{_seconds(view.get("duration"))}</dd></dl>{action}'
            f'<table class=tasks id="tasks" data-job="{job}" data-live="{"1" if running else "0"}">'
            "<caption>Tasks</caption><thead><tr><th scope=col>Task</th><th scope=col>Name</th>"
            "<th scope=col>State</th><th scope=col>Elapsed</th><th scope=col>Retries</th><th scope=col>Logs</th>"
            f'</tr></thead><tbody>{rows}</tbody></table><p class=hint id="live" aria-live="polite"></p>'
            f'{_changes(view.get("changes") or [])}'
            f'<section id="results" aria-label="Results" data-job="{job}">{results}</section>')
    return layout(f"Job {job}", body, user=user, csrf=csrf, active="jobs")


def _changes(entries: Sequence[Mapping[str, Any]]) -> str:
    """What this job found against earlier runs (``levrt diff``), one row per schema."""
    if not entries:
        return ""
    rows = "".join(
        f'<tr><td>{esc(e.get("schema"))}{esc(" (ns " + str(e["ns"]) + ")" if e.get("ns") else "")}</td>'
        f'<td><a href="/jobs/{esc(e.get("since"))}">{esc(e.get("since"))}</a></td>'
        f'<td>{esc(",".join(e.get("key") or ()))}</td><td class=num>{esc(e.get("added"))}</td>'
        f'<td class=num>{esc(e.get("removed"))}</td><td class=num>{esc(e.get("changed"))}</td></tr>'
        for e in entries if isinstance(e, Mapping))
    return ("<table class=changes><caption>What changed since an earlier run (levrt diff)</caption><thead><tr>"
            "<th scope=col>Schema</th><th scope=col>Since job</th><th scope=col>Key</th><th scope=col>Added</th>"
            f"<th scope=col>Removed</th><th scope=col>Changed</th></tr></thead><tbody>{rows}</tbody></table>")


def _what(view: Mapping[str, Any]) -> str:
    what = view.get("what")
    if isinstance(what, Mapping):
        return " ".join([str(what.get("target") or "-"), *(str(a) for a in what.get("args") or ())])
    return str(what or "-")


def _cell(value: Any) -> str:
    """A record's value in a table cell: scalars as text, stored-apart values and nested ones readable."""
    if isinstance(value, Mapping) and PLACEHOLDER in value and isinstance(value[PLACEHOLDER], Mapping):
        blob = value[PLACEHOLDER]
        return (f'<a href="/api/v1/files/{esc(blob.get("sha256"))}" download>stored apart, '
                f'{esc(human_size(int(blob.get("size") or 0)))}</a>')
    if isinstance(value, Mapping) and set(value) == {"$base64"}:
        return f"<code>{esc(len(str(value['$base64'])) * 3 // 4)} bytes</code>"
    if isinstance(value, Mapping | list):
        text = json.dumps(value, indent=1, default=str)
        short = text if len(text) <= 20_000 else text[:20_000] + " …"
        return f"<pre class=nested>{esc(short)}</pre>"
    return esc(value)


def results_fragment(*, value: Any, error: str | None, records: Mapping[str, Mapping[str, Any]],
                     state: str) -> str:
    """The job's return value or error, its records by schema (a table, and the JSON), its artifacts."""
    parts = []
    if state == "running":
        parts.append("<p class=hint>Results appear here when the job ends.</p>")
    if error:
        parts.append(f'<h2>Error</h2><pre class="error-text">{esc(error)}</pre>')
    elif state != "running":
        text = json.dumps(value, indent=2, default=str)
        short = text.count("\n") < 15
        parts.append(f"<h2>Returned</h2><details{' open' if short else ''}><summary>The orchestration's return "
                     f"value ({len(text)} characters of JSON)</summary><pre class=value>{esc(text)}</pre></details>")
    for schema, found in records.items():
        rows = found.get("records") or []
        columns: list[str] = []
        for row in rows:
            columns += [k for k in row if k not in columns and k != ARTIFACTS]
        head = "".join(f"<th scope=col>{esc(c)}</th>" for c in columns)
        body = "".join("<tr>" + "".join(f"<td>{_cell(row.get(c))}</td>" for c in columns) + "</tr>" for row in rows)
        artifacts = "".join(
            f'<li><a href="/api/v1/files/{esc(a.get("sha256"))}" download="{esc(a.get("name"))}">{esc(a.get("name"))}'
            f'</a> ({esc(human_size(int(a.get("size") or 0)))}, sha256 {esc(str(a.get("sha256"))[:12])})</li>'
            for row in rows for a in row.get(ARTIFACTS) or () if isinstance(a, Mapping))
        more = (f'<p class=hint>{len(rows)} of {found.get("count")} records: '
                f'<a href="/api/v1/jobs/{esc(found.get("job"))}/records?{esc(urlencode({"schema": schema}))}">'
                "all as JSON</a>"
                "</p>" if found.get("count", 0) > len(rows) else "")
        parts.append(
            f'<section class=schema aria-label="{esc(schema)}"><h2>Records: {esc(schema)}</h2>'
            f'<div class=scroll><table class=records><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
            f"{more}" + (f'<h3>Artifacts</h3><ul class="artifacts">{artifacts}</ul>' if artifacts else "")
            + f"<details><summary>JSON</summary><pre>{esc(json.dumps(rows, indent=1, default=str))}</pre></details>"
            "</section>")
    return "".join(parts)


def logs_page(job: int, task: int, *, containers: Sequence[str], container: str, user: str, csrf: str) -> str:
    choices = " ".join(f'<a href="{_href(f"/jobs/{job}/tasks/{task}/logs", container=c)}"'
                       f'{" aria-current=true" if c == container else ""}>{esc(c)}</a>' for c in containers)
    source = f"/api/v1/jobs/{job}/tasks/{task}/logs?" + urlencode({"container": container, "follow": "true"})
    body = (f'<h1>Task {job}.{task}: {esc(container)}</h1><p><a href="/jobs/{job}">Back to job {job}</a> {choices}</p>'
            f'<p class=hint id="log-source" aria-live="polite"></p>'
            f'<pre class=log id="log" data-source="{esc(source)}" tabindex="0">Loading…</pre>')
    return layout(f"Task {job}.{task}", body, user=user, csrf=csrf, active="jobs")


def schedules_page(schedules: Sequence[Mapping[str, Any]], *, user: str, csrf: str) -> str:
    """The schedules (``levrt schedule list``) with their last runs."""
    lines = []
    for row in schedules:
        runs = " ".join(f'<a href="/jobs/{run["job"]}">{run["job"]}</a> {_state(run["state"])}'
                        for run in row.get("lastRuns") or ()) or "-"
        cron = str(row.get("cron") or "") + (f" ({row['timeZone']})" if row.get("timeZone") else "")
        runs_link = esc("/jobs?" + urlencode({"schedule": row["name"], "owner": ""}))  # everyone's runs of it
        lines.append(f'<tr><td><a href="{runs_link}">{esc(row["name"])}</a></td>'
                     f"<td><code>{esc(cron)}</code></td><td>{'suspended' if row.get('suspended') else 'active'}</td>"
                     f'<td class=what>{esc(row.get("what"))}</td><td>{runs}</td>'
                     f'<td class=num>{esc(row.get("runs", 0))}</td></tr>')
    table = ("<table class=schedules><caption>Schedules: recurring runs (levrt schedule create)</caption><thead><tr>"
             "<th scope=col>Name</th><th scope=col>Cron</th><th scope=col>State</th><th scope=col>What</th>"
             f"<th scope=col>Last runs</th><th scope=col>Runs</th></tr></thead><tbody>{''.join(lines)}</tbody></table>"
             if lines else '<p class="empty">No schedules: <code>levrt schedule create NAME FILE[:FUNC] --cron EXPR'
                           "</code> makes one.</p>")
    return layout("Schedules", f"<h1>Schedules</h1>{table}", user=user, csrf=csrf, active="schedules")
