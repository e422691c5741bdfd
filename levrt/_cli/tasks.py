"""Looking at tasks and results: ``levrt ps``, ``logs``, ``kill`` and ``get`` (records, and with
``--artifact`` a task's artifact or a field stored apart, streamed to a file)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import pathlib
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence, Set
from typing import Any

from levrt._cli.base import (
    EXIT_FAILED,
    EXIT_OK,
    CliError,
    Command,
    add_cluster_options,
    cluster,
    pod_of,
    print_table,
    resolve_pod,
    settings_of,
    task_pod_missing,
)
from levrt._clients import signals
from levrt._clients.api import Forbidden
from levrt._clients.blobs import FileStore
from levrt._clients.lease import expired, kept, lease_job, list_leases
from levrt._clients.store import JOBS, TASKS, Store, resolve_uri
from levrt._shapes.names import ATTEMPT_LABEL, JOB_LABEL, TASK_LABEL, api_path, job_selector
from levrt._shapes.podstatus import parse_timestamp, runs_runtime, summary
from levrt._stored import ARTIFACTS, human_size, placeholder_of, put_back, stored_apart
from levrt.context import DEFAULT_COLLECTION, lev
from levrt.cr import _schema as check_schema
from levrt.errors import LevrtError, NamespaceError, SchemaError

__all__ = ["GET", "KILL", "LOGS", "PS", "elapsed_text", "ps_query", "ps_rows", "ps_table", "table_cell"]


# -- ps -----------------------------------------------------------------------------------------
#
# What ``levrt ps`` lists comes from the store: every task records its status there (``levrt_tasks``,
# ``levrt._core.records``), and those records outlive the Pods, which a job deletes as its tasks end.
# A task whose Pod is still there shows the Pod's state (fresher than the last record); a Pod of a
# job without a record (an orchestration Pod, a record not written yet) is listed from the Pod alone.

RECENT_SECONDS = 3600
"""By default ``levrt ps`` lists the jobs still running and those whose last record is this recent."""
ENDED = {"succeeded": "done", "failed": "failed", "timed-out": "timed-out", "deleted": "deleted"}
"""Final states of a status record, as ``levrt ps`` (and the live display) names them."""
PS_COLUMNS = ("TASK", "NAME", "STATE", "RETRIES", "ELAPSED", "AGE")
PS_WIDE = ("POD", "IMAGE", "HOST", "NODE", "REASON")


def _ps_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "List the tasks of recent jobs from the store's status records, with the state of their Pods "
        f"where those still exist. Default: the jobs still running and those that ended in the last "
        f"{RECENT_SECONDS // 60} minutes; --all: every job in the store; --job N: one job's tasks."
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--job", type=int, help="only the tasks of this job")
    which.add_argument("--all", action="store_true", help="every job in the store, however old")
    parser.add_argument("-o", "--output", choices=("table", "wide", "json"), default="table",
                        help="table (default); wide: also the Pod, image, host, node and reason; json: a list")
    add_cluster_options(parser)


def elapsed_text(seconds: float | None) -> str:
    """``4.2s``, ``3m05s``, ``1h02m``; ``-`` when unknown."""
    if seconds is None or seconds < 0:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def _epoch(value: Any) -> float | None:
    """Seconds since the epoch of a record's time (a float, or a datetime the store gave back)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()
    return None


def _retries(done: Any, allowed: Any) -> str:
    count = done if isinstance(done, int) else 0
    if isinstance(allowed, int) and allowed:
        return f"{count}/{allowed}"
    return str(count) if count else "-"


def ps_rows(records: Sequence[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]], *, running_jobs: Set[int],
            now: float) -> list[dict[str, Any]]:
    """One row per task, sorted by job and task: the store's record, the live Pod's state over a
    state the record has not ended in yet; Pods without a record after the records."""
    by_name = {pod["metadata"]["name"]: pod for pod in pods}
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for record in records:
        job, task = record.get("job"), record.get("task")
        if not isinstance(job, int) or not isinstance(task, int):
            continue
        pod_name = str(record.get("pod") or "")
        pod = by_name.get(pod_name)
        seen.add(pod_name)
        recorded = str(record.get("state") or "unknown")
        submitted, updated = _epoch(record.get("submitted")), _epoch(record.get("updated"))
        if recorded in ENDED:
            state, end = ENDED[recorded], updated
            if recorded == "failed" and record.get("reason"):
                state = f"failed({record['reason']})"
        elif pod is not None:
            state, end = summary(pod), None
        elif job in running_jobs:
            state, end = ("pending" if recorded == "submitting" else recorded), None
        else:  # not ended, and neither its Pod nor its job is there: its client went away
            state, end = "lost", updated
        rows.append({
            "task": f"{job}.{task}", "job": job, "name": record.get("name") or record.get("image") or "-",
            "state": state, "retries": record.get("retries") or 0, "maxRetries": record.get("maxRetries"),
            "elapsed": None if submitted is None else round((end if end is not None else now) - submitted, 1),
            "submitted": submitted, "pod": pod_name or "-", "image": record.get("image") or "-",
            "host": record.get("host") or _pod_ip(pod), "node": record.get("node") or _pod_node(pod),
            "reason": record.get("reason") or record.get("retryReason") or "",
        })
    for pod in pods:
        name = pod["metadata"]["name"]
        if name in seen:
            continue
        labels = pod["metadata"].get("labels", {})
        job_text, task_text = labels.get(JOB_LABEL, "?"), labels.get(TASK_LABEL, "?")
        created = pod["metadata"].get("creationTimestamp")
        submitted = parse_timestamp(created) if created else None
        rows.append({
            "task": f"{job_text}.{task_text}", "job": int(job_text) if job_text.isdigit() else None, "name": name,
            "state": summary(pod), "retries": int(labels.get(ATTEMPT_LABEL, "0") or 0), "maxRetries": None,
            "elapsed": None if submitted is None else round(now - submitted, 1), "submitted": submitted,
            "pod": name, "image": next((c["image"] for c in pod["spec"]["containers"] if c["name"] == "main"), "-"),
            "host": _pod_ip(pod), "node": _pod_node(pod), "reason": "",
        })

    def order(row: dict[str, Any]) -> tuple[int, int, str]:
        job_part, _, task_part = row["task"].partition(".")
        big = 1 << 62
        return (int(job_part) if job_part.isdigit() else big, int(task_part) if task_part.isdigit() else big,
                row["pod"])

    return sorted(rows, key=order)


def _pod_ip(pod: Mapping[str, Any] | None) -> str:
    return str((pod or {}).get("status", {}).get("podIP") or "-")


def _pod_node(pod: Mapping[str, Any] | None) -> str:
    return str((pod or {}).get("spec", {}).get("nodeName") or "-")


def ps_table(rows: Sequence[Mapping[str, Any]], *, wide: bool, now: float) -> tuple[list[list[str]], list[str]]:
    """The table cells of ``ps_rows``, and its header."""
    header = [*PS_COLUMNS, *(PS_WIDE if wide else ())]
    cells = []
    for row in rows:
        submitted = row.get("submitted")
        line = [row["task"], table_cell(row["name"]) if not wide else str(row["name"]), row["state"],
                _retries(row["retries"], row["maxRetries"]), elapsed_text(row["elapsed"]),
                _age(None if submitted is None else now - submitted)]
        if wide:
            line += [row["pod"], row["image"], row["host"], row["node"], row["reason"].splitlines()[0][:80]
                     if row["reason"] else "-"]
        cells.append(line)
    return cells, header


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(int(seconds), 0)}s"


def ps_query(args: argparse.Namespace, recent_jobs: Set[int] | None) -> dict[str, Any]:
    """The status records ``levrt ps`` reads: one job's, every job's, or those of ``recent_jobs``."""
    if args.job is not None:
        return {"job": args.job}
    if args.all or recent_jobs is None:
        return {}
    return {"job": {"$in": sorted(recent_jobs)}}


def ps_command(args: argparse.Namespace) -> int:
    now = time.time()

    async def go() -> tuple[list[dict[str, Any]], list[dict[str, Any]], set[int]]:
        async with cluster(args) as (kube, settings):
            listing = await kube.request("GET", api_path("pods", namespace=settings.namespace),
                                         query={"labelSelector": job_selector(args.job)})
            pods = list(listing["items"])
            running = {job for job in (_pod_job(p) for p in pods) if job is not None}
            with contextlib.suppress(Forbidden):  # an account that may not list Leases: the Pods tell
                running |= {job for lease in await list_leases(kube, settings.namespace)
                            if not expired(lease, now=now) and not kept(lease) and (job := lease_job(lease))}
            uri = settings.store_uri or await resolve_uri(kube, settings)
        store = Store.connect(uri, database=settings.database)
        try:
            recent: set[int] | None = None
            if args.job is None and not args.all:
                since = dt.datetime.fromtimestamp(now - RECENT_SECONDS, dt.UTC)
                cursor = store.collection(TASKS).find({"updated": {"$gte": since}}, {"job": 1})
                recent = {doc["job"] for doc in await _all(store, cursor) if isinstance(doc.get("job"), int)}
                recent |= running
            records = []
            if recent is None or recent:
                records = await _all(store, store.collection(TASKS).find(ps_query(args, recent)))
        finally:
            await store.close()
        return records, pods, running

    records, pods, running = asyncio.run(go())
    rows = ps_rows(records, pods, running_jobs=running, now=now)
    if args.output == "json":
        for row in rows:  # a time people and jq both read
            when = row["submitted"]
            row["submitted"] = None if when is None else dt.datetime.fromtimestamp(when, dt.UTC).isoformat()
        print(json.dumps(rows, indent=2, default=str))
    elif rows:
        cells, header = ps_table(rows, wide=args.output == "wide", now=now)
        print_table(cells, header)
    else:
        where = f"job {args.job}" if args.job is not None else (
            "the store" if args.all else f"jobs running or ended in the last {RECENT_SECONDS // 60} minutes")
        print(f"No levrt tasks in {where}.", file=sys.stderr)
    return EXIT_OK


def _pod_job(pod: Mapping[str, Any]) -> int | None:
    text = pod["metadata"].get("labels", {}).get(JOB_LABEL, "")
    return int(text) if text.isdigit() else None


async def _all(store: Store, cursor: Any) -> list[dict[str, Any]]:
    try:
        return [doc async for doc in cursor]
    except Exception as exc:
        raise store.unreachable(exc) from exc


# -- logs ---------------------------------------------------------------------------------------


def _logs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", help="JOB.TASK or Pod name (see `levrt ps`)")
    parser.add_argument("-f", "--follow", action="store_true", help="stream new output until the task ends")
    parser.add_argument("--tail", type=int, help="only the last N lines")
    parser.add_argument("-c", "--container", default="main", help="container (main, or a service name)")
    add_cluster_options(parser)


def logs_command(args: argparse.Namespace) -> int:
    pod = pod_of(args.task)

    async def go() -> None:
        async with cluster(args) as (kube, settings):
            name = await resolve_pod(kube, settings.namespace, args.task)
            path = api_path("pods", namespace=settings.namespace, name=name, sub="log")
            query = {"container": args.container, "tailLines": args.tail}
            if not args.follow:
                sys.stdout.write(await kube.request("GET", path, query=query))
                return
            await kube.follow(path, query=query, out=sys.stdout)

    with task_pod_missing(pod):
        asyncio.run(go())
    return EXIT_OK


# -- kill ---------------------------------------------------------------------------------------


def _kill_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", help="JOB.TASK or Pod name (see `levrt ps`)")
    parser.add_argument("-s", "--signal", default="SIGINT", help="signal name or number (default: SIGINT)")
    add_cluster_options(parser)


def kill_command(args: argparse.Namespace) -> int:
    pod_name = pod_of(args.task)
    try:
        signum = signals.signal_number(args.signal)
    except LevrtError as exc:
        raise CliError(str(exc)) from None

    async def go() -> int:
        async with cluster(args) as (kube, settings):
            name = await resolve_pod(kube, settings.namespace, args.task)
            pod = await kube.request("GET", api_path("pods", namespace=settings.namespace, name=name))
            result = await signals.deliver(kube, settings.namespace, name, signum, runtime=runs_runtime(pod))
            if result.exit_code != 0:
                print(result.stderr.decode(errors="replace"), file=sys.stderr)
                return EXIT_FAILED
            print(f"{signals.signal_name(signum)} delivered to {name}")
            return EXIT_OK

    with task_pod_missing(pod_name):
        return asyncio.run(go())


# -- get ----------------------------------------------------------------------------------------


def _get_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("schema", help="schema of the records, e.g. ts/issues@1.0 (or 'default')")
    parser.add_argument("--ns", help="levrt namespace path, e.g. example or httpbin/org")
    parser.add_argument("--job", type=int, help="only the records of this job")
    parser.add_argument("--task", type=int, help="only the record of this task (with --job)")
    parser.add_argument("--artifact", metavar="NAME",
                        help="write the artifact NAME (lev.put), or a field stored apart, to the file given "
                             "with -o (needs --job; --task when the job has several records)")
    parser.add_argument("-o", "--output", default=None, metavar="FORMAT|FILE",
                        help="json (default): a JSON list of the records; table: their top-level fields; "
                             "with --artifact: the file to write (- for standard output)")
    parser.add_argument("--limit", type=int, default=100, help="at most this many records (default 100)")
    add_cluster_options(parser)


def _collection(schema: str, ns: str | None) -> str:
    """The collection ``levrt get --ns a/b SCHEMA`` reads: what ``with lev / "a" / "b":`` writes."""
    parts = [part for part in (ns or "").split("/") if part]
    if not parts:
        return schema
    namespace = lev / parts[0]
    for part in parts[1:]:
        namespace = namespace / part
    return namespace.prefix + schema


def _check_schema(name: str) -> None:
    """Reject what no task can have written, with the SDK's own message (``Cr(schema=...)``):
    a schema, ``default`` (tasks without one) or ``jobs`` (the orchestrations' own records)."""
    if name in (DEFAULT_COLLECTION, JOBS):
        return
    try:
        check_schema(name)
    except SchemaError as exc:
        raise CliError(f"{exc} ('{DEFAULT_COLLECTION}' and '{JOBS}' are accepted too.)") from None


def get_command(args: argparse.Namespace) -> int:
    _check_schema(args.schema)
    if args.limit < 1:
        raise CliError(f"--limit {args.limit}: give a number of records, 1 or more.")
    try:
        collection = _collection(args.schema, args.ns)
    except NamespaceError as exc:
        raise CliError(f"--ns {args.ns!r}: {exc}") from None
    if args.task is not None and args.job is None:
        raise CliError("--task needs --job: a task id is counted within its job (levrt get SCHEMA --job 3 --task 0).")
    if args.artifact is not None:
        return _get_artifact(args, collection)
    output = args.output or "json"
    if output not in ("json", "table"):
        raise CliError(f"-o {output!r}: records print as json or table (-o FILE goes with --artifact NAME).")

    async def go() -> list[dict[str, Any]]:
        async with _store(args) as store:
            cursor = store.collection(collection).find(_record_query(args)).limit(args.limit)
            try:
                return [doc async for doc in cursor]
            except Exception as exc:
                raise store.unreachable(exc) from exc

    records = [_shown(record, args) for record in asyncio.run(go())]
    if output == "json":
        print(json.dumps(records, indent=2, default=str, ensure_ascii=False))
    elif records:
        keys = sorted({k for r in records for k in r if k != "_id"})
        rows = [[f"{r['_id'].get('job')}.{r['_id'].get('task')}", *(table_cell(r.get(k)) for k in keys)]
                for r in records]
        print_table(rows, ["TASK", *keys])
    if not records:
        print(f"No records in {collection!r}.", file=sys.stderr)
    return EXIT_OK


@contextlib.asynccontextmanager
async def _store(args: argparse.Namespace) -> AsyncIterator[Store]:
    """The store this machine reaches: ``LEVRT_STORE_URI``, else the platform's Secret."""
    settings = settings_of(args)
    uri = settings.store_uri
    if not uri:
        async with cluster(args) as (kube, _):
            uri = await resolve_uri(kube, settings)
    store = Store.connect(uri, database=settings.database)
    try:
        yield store
    finally:
        await store.close()


def _record_query(args: argparse.Namespace) -> dict[str, Any]:
    query: dict[str, Any] = {}
    if args.job is not None:
        query["_id.job"] = args.job
    if args.task is not None:
        query["_id.task"] = args.task
    return query


def _shown(record: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """A record with each field stored apart shown as its size and the command that fetches it."""
    ident = record.get("_id")
    job, task = (ident.get("job"), ident.get("task")) if isinstance(ident, dict) else (None, None)
    shown = dict(record)
    ns = f" --ns {args.ns}" if args.ns else ""
    for path, _ in stored_apart(record):
        ref = placeholder_of(_at(record, path))
        size = human_size(ref[1]) if ref is not None else "?"
        put_back(shown, path, f"<stored apart: {size} — levrt get {args.schema}{ns} --job {job} --task {task} "
                              f"--artifact {'.'.join(path)} -o FILE>")
    return shown


def _at(record: Any, path: tuple[str, ...] | list[str]) -> Any:
    """The value at ``path`` in nested dicts, or None."""
    for key in path:
        record = record.get(key) if isinstance(record, dict) else None
    return record


def _get_artifact(args: argparse.Namespace, collection: str) -> int:
    if args.job is None:
        raise CliError(f"--artifact {args.artifact!r} needs --job N (and --task T when the job has several tasks).")
    if not args.output:
        raise CliError(f"--artifact {args.artifact!r} needs -o FILE (or -o - for standard output).")

    async def go() -> tuple[int, str]:
        async with _store(args) as store:
            try:
                records = [doc async for doc in store.collection(collection).find(_record_query(args)).limit(2)]
            except Exception as exc:
                raise store.unreachable(exc) from exc
            if not records:
                where = f"job {args.job}" + (f" task {args.task}" if args.task is not None else "")
                raise CliError(f"No record of {where} in {collection!r}.")
            if len(records) > 1:
                raise CliError(f"Job {args.job} has several records in {collection!r}: give --task T.")
            record = records[0]
            files = FileStore.of(store)
            listed = {a.get("name"): a for a in record.get(ARTIFACTS) or [] if isinstance(a, dict)}
            if args.artifact in listed:
                sha = str(listed[args.artifact]["sha256"])
                if args.output == "-":
                    size = 0
                    async for block in files.chunks(sha):
                        sys.stdout.buffer.write(block)
                        size += len(block)
                    sys.stdout.buffer.flush()
                    return size, "standard output"
                return await files.download(sha, args.output), args.output
            path = [args.artifact] if args.artifact in record else args.artifact.split(".")
            if path[0] not in ("_id", ARTIFACTS) and _at(record, path) is not None:
                value = _at(record, path)
                ref = placeholder_of(value)
                if ref is not None:
                    value = await files.load_value(ref[0])
                return _write_value(value, args.output), "standard output" if args.output == "-" else args.output
            names = sorted(str(n) for n in listed) + sorted(k for k in record if k not in ("_id", ARTIFACTS))
            raise CliError(f"{args.artifact!r} is neither an artifact nor a field of that record "
                           f"(it has: {', '.join(names) or 'nothing'}).")

    size, where = asyncio.run(go())
    print(f"wrote {human_size(size)} to {where}", file=sys.stderr)
    return EXIT_OK


def _write_value(value: Any, output: str) -> int:
    """A field's value as a file: bytes as they are, str as UTF-8 text, anything else as JSON."""
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str):
        data = value.encode("utf-8")
    else:
        data = json.dumps(value, indent=2, default=str, ensure_ascii=False).encode("utf-8")
    if output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        try:
            pathlib.Path(output).write_bytes(data)
        except OSError as exc:
            raise CliError(f"-o {output!r}: cannot write it: {exc.strerror or exc}.") from None
    return len(data)


def table_cell(value: Any) -> str:
    """A value as one bounded line of a table cell."""
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    text = text.replace("\r", "\\r").replace("\n", "\\n")  # one record, one line
    return text if len(text) <= 40 else text[:37] + "..."


PS = Command("ps", "list the tasks of recent jobs (running, or ended within the hour; --all, --job N)",
             _ps_arguments, ps_command)
LOGS = Command("logs", "print a task's output", _logs_arguments, logs_command)
KILL = Command("kill", "send a signal to a task's main process", _kill_arguments, kill_command)
GET = Command("get", "print stored records of a schema", _get_arguments, get_command)
