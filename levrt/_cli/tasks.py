"""Looking at tasks and results: ``levrt ps``, ``logs``, ``kill`` and ``get``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from levrt._cli.base import (
    EXIT_FAILED,
    EXIT_OK,
    CliError,
    Command,
    add_cluster_options,
    age,
    cluster,
    pod_of,
    print_table,
    settings_of,
    task_pod_missing,
)
from levrt._clients import signals
from levrt._clients.store import Store, resolve_uri
from levrt._shapes.names import JOB_LABEL, TASK_LABEL, api_path, job_selector
from levrt._shapes.podstatus import runs_runtime, summary
from levrt.context import lev
from levrt.errors import LevrtError, NamespaceError

__all__ = ["GET", "KILL", "LOGS", "PS", "table_cell"]


# -- ps -----------------------------------------------------------------------------------------


def _ps_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--job", type=int, help="only the tasks of this job")
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")
    add_cluster_options(parser)


def ps_command(args: argparse.Namespace) -> int:
    async def go() -> list[dict[str, Any]]:
        async with cluster(args) as (kube, settings):
            listing = await kube.request("GET", api_path("pods", namespace=settings.namespace),
                                         query={"labelSelector": job_selector(args.job)})
            return list(listing["items"])

    pods = asyncio.run(go())
    rows = []
    for pod in sorted(pods, key=lambda p: p["metadata"]["creationTimestamp"]):
        labels = pod["metadata"].get("labels", {})
        image = next((c["image"] for c in pod["spec"]["containers"] if c["name"] == "main"), "-")
        rows.append([f"{labels.get(JOB_LABEL, '?')}.{labels.get(TASK_LABEL, '?')}",
                     pod["metadata"]["name"], image, summary(pod), pod.get("status", {}).get("podIP") or "-",
                     age(pod["metadata"].get("creationTimestamp"))])
    if args.output == "json":
        keys = ("task", "pod", "image", "state", "host", "age")
        print(json.dumps([dict(zip(keys, r, strict=True)) for r in rows], indent=2))
    elif rows:
        print_table(rows, ["TASK", "POD", "IMAGE", "STATE", "HOST", "AGE"])
    else:
        print("No levrt tasks.", file=sys.stderr)
    return EXIT_OK


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
            path = api_path("pods", namespace=settings.namespace, name=pod, sub="log")
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
            pod = await kube.request("GET", api_path("pods", namespace=settings.namespace, name=pod_name))
            result = await signals.deliver(kube, settings.namespace, pod_name, signum, runtime=runs_runtime(pod))
            if result.exit_code != 0:
                print(result.stderr.decode(errors="replace"), file=sys.stderr)
                return EXIT_FAILED
            print(f"{signals.signal_name(signum)} delivered to {pod_name}")
            return EXIT_OK

    with task_pod_missing(pod_name):
        return asyncio.run(go())


# -- get ----------------------------------------------------------------------------------------


def _get_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("schema", help="schema of the records, e.g. ts/issues@1.0 (or 'default')")
    parser.add_argument("--ns", help="levrt namespace path, e.g. example or httpbin/org")
    parser.add_argument("--job", type=int, help="only the records of this job")
    parser.add_argument("-o", "--output", choices=("json", "table"), default="json",
                        help="a JSON list of the records (default), or a table of their top-level fields")
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


def get_command(args: argparse.Namespace) -> int:
    try:
        collection = _collection(args.schema, args.ns)
    except NamespaceError as exc:
        raise CliError(f"--ns {args.ns!r}: {exc}") from None

    async def go() -> list[dict[str, Any]]:
        settings = settings_of(args)
        uri = settings.store_uri
        if not uri:
            async with cluster(args) as (kube, _):
                uri = await resolve_uri(kube, settings)
        store = Store.connect(uri, database=settings.database)
        try:
            query = {"_id.job": args.job} if args.job is not None else {}
            cursor = store.collection(collection).find(query).limit(args.limit)
            try:
                return [doc async for doc in cursor]
            except Exception as exc:
                raise store.unreachable(exc) from exc
        finally:
            await store.close()

    records = asyncio.run(go())
    if args.output == "json":
        print(json.dumps(records, indent=2, default=str, ensure_ascii=False))
    elif records:
        keys = sorted({k for r in records for k in r if k != "_id"})
        rows = [[f"{r['_id'].get('job')}.{r['_id'].get('task')}", *(table_cell(r.get(k)) for k in keys)]
                for r in records]
        print_table(rows, ["TASK", *keys])
    if not records:
        print(f"No records in {collection!r}.", file=sys.stderr)
    return EXIT_OK


def table_cell(value: Any) -> str:
    """A value as one bounded line of a table cell."""
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    text = text.replace("\r", "\\r").replace("\n", "\\n")  # one record, one line
    return text if len(text) <= 40 else text[:37] + "..."


PS = Command("ps", "list levrt task Pods", _ps_arguments, ps_command)
LOGS = Command("logs", "print a task's output", _logs_arguments, logs_command)
KILL = Command("kill", "send a signal to a task's main process", _kill_arguments, kill_command)
GET = Command("get", "print stored records of a schema", _get_arguments, get_command)
