"""Reading results: ``levrt get`` prints a schema's stored records, and with ``--artifact`` writes a
task's artifact (``lev.put``) or a field stored apart to a file.

Why apart from ``tasks``: ``ps``, ``logs`` and ``kill`` look at tasks as they run (their Pods and
status records); this looks at what they stored, long after, and needs only the store. A task's
artifacts are listed and downloaded through its ``levrt.Document``, as in the SDK.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import pathlib
import sys
from collections.abc import AsyncIterator
from typing import Any

from levrt._cli.base import (
    EXIT_OK,
    CliError,
    Command,
    add_cluster_options,
    cluster,
    print_table,
    settings_of,
    table_cell,
)
from levrt._clients.blobs import FileStore
from levrt._clients.store import JOBS, Store, resolve_uri
from levrt._stored import ARTIFACTS, human_size, placeholder_of, put_back, stored_apart
from levrt.checks import check_schema
from levrt.context import DEFAULT_COLLECTION, lev
from levrt.document import Document
from levrt.errors import NamespaceError, SchemaError

__all__ = ["GET"]


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
    """The store this machine reaches: ``Settings.store_uri`` (its variable), else the platform's Secret."""
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
            stored = Document(store.collection(collection), {"_id": record["_id"]}, files=files)
            listed = await stored.artifacts()
            if args.artifact in listed:
                if args.output == "-":
                    size = 0
                    async for block in files.chunks(str(listed[args.artifact]["sha256"])):
                        sys.stdout.buffer.write(block)
                        size += len(block)
                    sys.stdout.buffer.flush()
                    return size, "standard output"
                return await stored.download(args.artifact, args.output), args.output
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




GET = Command("get", "print stored records of a schema", _get_arguments, get_command)
