"""Reading results: ``levrt get`` prints a schema's stored records, and with ``--artifact`` writes a
task's artifact (``lev.put``) or a field stored apart to a file.

Why apart from ``tasks``: ``ps``, ``logs`` and ``kill`` look at tasks as they run (their Pods and
status records); this looks at what they stored, long after, and needs only the store. A task's
artifacts are listed and downloaded through its ``levrt.Document``, as in the SDK.

Records print newest job first (tasks in order within a job), at most ``--limit`` of them with
"N of M" said when more match. A schema nothing was stored in is an error naming the ones that
exist (a typo or a forgotten ``--ns`` must not look like an empty result); a schema whose records
the filters all miss is not.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import pathlib
import sys
from typing import Any

from levrt._cli.base import EXIT_OK, CliError, Command, add_cluster_options, open_store, print_table
from levrt._cli.cells import MISSING, cell_text, escape_controls, flatten
from levrt._clients.blobs import FileStore
from levrt._clients.store import JOBS, Store
from levrt._core.catalog import LEVRTS_OWN_SCHEMAS, Collection, collection_of, records_collections
from levrt._stored import ARTIFACTS, human_size, placeholder_of, put_back, stored_apart
from levrt.checks import check_schema
from levrt.context import DEFAULT_COLLECTION
from levrt.document import Document
from levrt.errors import LevrtError, NamespaceError, SchemaError

__all__ = ["GET", "NEWEST_FIRST", "UnknownSchema", "parse_job"]

LATEST = "latest"
"""``--job latest``: the newest job with records in the schema."""
DEFAULT_LIMIT = 100
NEWEST_FIRST = [("_id.job", -1), ("_id.task", 1)]
"""The order records are printed in: the newest job first, as one looks back; within a job its
tasks in the order they were started (their ids), as the job ran them."""
LISTED_SCHEMAS = 20
"""Schemas named in the answer to one that does not exist; ``levrt schemas`` lists them all."""


class UnknownSchema(LevrtError):
    """``levrt get`` of a schema (in a namespace) nothing was ever stored in: exit status 1."""


def parse_job(text: str) -> int | str:
    """``--job``: a job id, or ``latest``."""
    if text == LATEST:
        return LATEST
    if text.isdigit():
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r} is not a job: give its id (e.g. 8, see `levrt ps`) or {LATEST!r}")


def _get_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("schema", help="schema of the records, e.g. ts/issues@1.0 (or 'default'; `levrt schemas` "
                                       "lists them)")
    parser.add_argument("--ns", help="levrt namespace path, e.g. example or httpbin/org")
    parser.add_argument("--job", type=parse_job, help="only the records of this job; 'latest': of the newest job "
                                                      "with records in the schema")
    parser.add_argument("--task", type=int, help="only the record of this task (with --job)")
    parser.add_argument("--artifact", metavar="NAME",
                        help="write the artifact NAME (lev.put), or a field stored apart, to the file given "
                             "with -o (needs --job; --task when the job has several records)")
    parser.add_argument("-o", "--output", default=None, metavar="FORMAT|FILE",
                        help="json (default): a JSON list of the records; table: their fields, nested ones as "
                             "a.b; with --artifact: the file to write (- for standard output)")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT,
                        help=f"at most this many records, the newest first (default {DEFAULT_LIMIT}; 0: all)")
    add_cluster_options(parser)


def _check_schema(name: str) -> None:
    """Reject what no task can have written, with the SDK's own message (``Cr(schema=...)``):
    a schema, ``default`` (tasks without one) or ``jobs`` (the orchestrations' own records)."""
    if name in LEVRTS_OWN_SCHEMAS:
        return
    try:
        check_schema(name)
    except SchemaError as exc:
        raise CliError(f"{exc} ('{DEFAULT_COLLECTION}' and '{JOBS}' are accepted too.)") from None


def get_command(args: argparse.Namespace) -> int:
    _check_schema(args.schema)
    if args.limit < 0:
        raise CliError(f"--limit {args.limit}: give a number of records (0 for all of them).")
    try:
        collection = collection_of(args.schema, args.ns)
    except NamespaceError as exc:
        raise CliError(f"--ns {args.ns!r}: {exc}") from None
    if args.task is not None and args.job is None:
        raise CliError("--task needs --job: a task id is counted within its job (levrt get SCHEMA --job 3 --task 0).")
    if args.artifact is not None:
        return _get_artifact(args, collection)
    output = args.output or "json"
    if output not in ("json", "table"):
        raise CliError(f"-o {output!r}: records print as json or table (-o FILE goes with --artifact NAME).")

    async def go() -> tuple[list[dict[str, Any]], int, str | None]:
        """The records shown, how many match in all, and what to say when there are none."""
        async with open_store(args) as store:
            job = await _job_of(store, collection, args)
            if args.job == LATEST and job is None:
                return [], 0, await _why_none(store, collection, args, job)
            query = _record_query(job, args.task)
            cursor = store.collection(collection).find(query).sort(NEWEST_FIRST)
            if args.limit:
                cursor = cursor.limit(args.limit)
            try:
                records = [doc async for doc in cursor]
            except Exception as exc:
                raise store.unreachable(exc) from exc
            if records:
                limited = bool(args.limit) and len(records) == args.limit
                return records, await store.count(collection, query) if limited else len(records), None
            return [], 0, await _why_none(store, collection, args, job)

    found, total, why_none = asyncio.run(go())
    records = [_shown(record, args) for record in found]
    if output == "json":
        print(json.dumps(records, indent=2, default=str, ensure_ascii=False))
    elif records:
        _print_records(records)
    if why_none is not None:
        print(why_none, file=sys.stderr)
    elif len(records) < total:
        print(f"{len(records)} of {total} records in {collection!r}, newest first (--limit {args.limit}; "
              "--limit 0 shows all).", file=sys.stderr)
    return EXIT_OK


async def _job_of(store: Store, collection: str, args: argparse.Namespace) -> int | None:
    """The job ``--job`` names: its id, or for ``latest`` the newest job with records in
    ``collection`` (None when it has none: no record is then found)."""
    if args.job != LATEST:
        return int(args.job) if args.job is not None else None
    cursor = store.collection(collection).find({}, {"_id": 1}).sort(NEWEST_FIRST).limit(1)
    try:
        newest = [doc async for doc in cursor]
    except Exception as exc:
        raise store.unreachable(exc) from exc
    ident = newest[0].get("_id") if newest else None
    job = ident.get("job") if isinstance(ident, dict) else None
    return job if isinstance(job, int) else None


def _record_query(job: int | None, task: int | None) -> dict[str, Any]:
    query: dict[str, Any] = {}
    if job is not None:
        query["_id.job"] = job
    if task is not None:
        query["_id.task"] = task
    return query


async def _why_none(store: Store, collection: str, args: argparse.Namespace, job: int | None) -> str:
    """Why no record was found: the filters matched none (exit 0), or the schema does not exist
    (``UnknownSchema``, exit 1, naming the schemas that do)."""
    names = await store.collection_names()
    if collection in names:
        if args.job is None:
            return f"No records in {collection!r}."
        held = await store.count(collection)
        records = f"{held} record{'' if held == 1 else 's'}"
        if job is None:
            return f"No records in {collection!r} belong to a job, so none is the latest (it holds {records})."
        which = f"job {job}" + (f" task {args.task}" if args.task is not None else "")
        command = Collection(collection, args.schema, args.ns).get_arguments
        return f"No record of {which} in {collection!r} (it holds {records}; `levrt get {command}` shows the newest)."
    if collection in LEVRTS_OWN_SCHEMAS:
        return f"No records in {collection!r} yet."
    raise UnknownSchema(await _unknown(store, collection, args))


async def _unknown(store: Store, collection: str, args: argparse.Namespace) -> str:
    """The message for a schema nothing was stored in: a likely meant one first, then the list."""
    listed, _ = await records_collections(store)
    where = f" under --ns {args.ns} (collection {collection!r})" if args.ns else ""
    message = f"No schema {args.schema!r}{where} in the store."
    message += _likely_meant(args, collection, listed)
    if not listed:
        return message + " It holds no records yet."
    named = ", ".join(escape_controls(found.described()) for found in listed[:LISTED_SCHEMAS])
    more = f" and {len(listed) - LISTED_SCHEMAS} more" if len(listed) > LISTED_SCHEMAS else ""
    return message + f" Schemas with records: {named}{more} (`levrt schemas` counts them)."


def _likely_meant(args: argparse.Namespace, collection: str, listed: list[Collection]) -> str:
    """`` Did you mean `levrt get X`?`` for the same schema in another namespace (a forgotten or
    wrong ``--ns``), else for a name a typo away; every suggestion is a collection that exists."""
    elsewhere = [found for found in listed if found.schema == args.schema]
    close = difflib.get_close_matches(collection, [found.name for found in listed], n=1, cutoff=0.75)
    meant = elsewhere or [found for found in listed if found.name in close]
    if not meant:
        return ""
    suggestions = " or ".join(f"`levrt get {escape_controls(found.get_arguments)}`" for found in meant[:3])
    return f" Did you mean {suggestions}?"


def _print_records(records: list[dict[str, Any]]) -> None:
    """One line per record: its task (or job, for records of a job), then its fields, nested ones
    flattened to ``a.b`` columns."""
    flat = [flatten(_readable_artifacts({k: v for k, v in r.items() if k != "_id"})) for r in records]
    keys = sorted({key for fields in flat for key in fields})
    idents = [_ident(r.get("_id")) for r in records]
    header = "TASK" if any("." in ident for ident in idents) else "JOB"
    rows = [[ident, *(cell_text(fields[k]) if k in fields else MISSING for k in keys)]
            for ident, fields in zip(idents, flat, strict=True)]
    print_table(rows, [header, *(escape_controls(key) for key in keys)])


def _ident(ident: Any) -> str:
    """``8.3`` for a task's record, ``8`` for a job's own (``levrt get jobs``)."""
    if not isinstance(ident, dict):
        return cell_text(ident)
    job, task = ident.get("job"), ident.get("task")
    return cell_text(job) if task is None else f"{cell_text(job)}.{cell_text(task)}"


def _readable_artifacts(fields: dict[str, Any]) -> dict[str, Any]:
    """The artifacts' list as ``name (size)`` items: their digests say nothing at a glance."""
    listed = fields.get(ARTIFACTS)
    if isinstance(listed, list):
        fields[ARTIFACTS] = [f"{item.get('name')} ({human_size(item.get('size') or 0)})" if isinstance(item, dict)
                             else item for item in listed]
    return fields


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
        async with open_store(args) as store:
            job = await _job_of(store, collection, args)
            if job is None:
                raise CliError(await _why_none(store, collection, args, job))
            query = _record_query(job, args.task)
            try:
                records = [doc async for doc in store.collection(collection).find(query).limit(2)]
            except Exception as exc:
                raise store.unreachable(exc) from exc
            if not records:
                raise CliError(await _why_none(store, collection, args, job))
            if len(records) > 1:
                raise CliError(f"Job {job} has several records in {collection!r}: give --task T.")
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
