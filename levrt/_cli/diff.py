"""``levrt diff SCHEMA --job A [--since B] --key FIELD[,FIELD...]``: what a run found that an earlier
one did not — added, removed and changed records by key — as lines or JSON; the counts are kept in
job A's record. The comparison is ``levrt._shapes.changes``; the store's side ``levrt._core.changes``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from levrt._cli.base import EXIT_OK, CliError, Command, add_cluster_options, open_store
from levrt._cli.cells import escape_controls
from levrt._core.changes import diff
from levrt._shapes.changes import Changes, parse_key
from levrt.checks import check_schema
from levrt.errors import SchemaError

__all__ = ["DIFF", "change_lines"]


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("schema", help="the schema both jobs wrote, e.g. demo/nmap@1.0")
    parser.add_argument("--job", type=int, required=True, metavar="A", help="the newer job")
    parser.add_argument("--since", type=int, metavar="B", help="the job to compare with (default: the newest "
                        "earlier job of the same tool or workflow that wrote SCHEMA)")
    parser.add_argument("--key", required=True, metavar="FIELD[,FIELD...]",
                        help="the fields that say which record is which (dotted paths reach into sub-documents)")
    parser.add_argument("--ns", help="the namespace the records were written in (a/b)")
    parser.add_argument("-o", "--output", choices=("lines", "json"), default="lines")
    add_cluster_options(parser)


def _text(value: Any) -> str:
    return escape_controls(json.dumps(value, sort_keys=True, default=str))


def change_lines(changes: Changes, *, job: int, since: int, schema: str) -> list[str]:
    """``+`` added, ``-`` removed, ``~`` changed (each changed field before → after), after a summary."""
    counts = changes.counts()
    lines = [f"job {job} against job {since} ({schema}, key {','.join(changes.key)}): {counts['added']} added, "
             f"{counts['removed']} removed, {counts['changed']} changed"
             + (f", {counts['unkeyed']} without every key field (left out)" if counts["unkeyed"] else "")]

    def key_text(record: dict[str, Any]) -> str:
        return " ".join(f"{field}={_text(_get(record, field))}" for field in changes.key)

    lines += [f"+ {key_text(record)}  {_text(record)}" for record in changes.added]
    lines += [f"- {key_text(record)}  {_text(record)}" for record in changes.removed]
    for change in changes.changed:
        head = " ".join(f"{field}={_text(value)}" for field, value in change["key"].items())
        before, after = change["before"], change["after"]
        if isinstance(before, dict) and isinstance(after, dict):
            parts = [f"{f}: {_text(before.get(f))} -> {_text(after.get(f))}" for f in change["fields"]]
        else:
            parts = [f"{_text(before)} -> {_text(after)}"]
        lines.append(f"~ {head}  " + "; ".join(parts))
    return lines


def _get(record: dict[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def diff_command(args: argparse.Namespace) -> int:
    try:
        check_schema(args.schema)
        key = parse_key(args.key)
    except (SchemaError, ValueError) as exc:
        raise CliError(str(exc)) from None
    if args.job <= 0 or (args.since is not None and args.since <= 0):
        raise CliError("--job and --since take job ids (positive numbers, as `levrt ps` lists them).")

    async def go() -> tuple[Changes, int]:
        async with open_store(args) as store:
            return await diff(store, args.schema, job=args.job, key=key, since=args.since, ns=args.ns)

    changes, since = asyncio.run(go())
    if args.output == "json":
        print(json.dumps({"schema": args.schema, "ns": args.ns, "job": args.job, "since": since,
                          "key": list(key), "counts": changes.counts(), "added": changes.added,
                          "removed": changes.removed, "changed": changes.changed}, indent=2, default=str))
    else:
        print("\n".join(change_lines(changes, job=args.job, since=since, schema=args.schema)))
    return EXIT_OK


DIFF = Command("diff", "what job A's records of a schema add, remove and change against an earlier job's, by key",
               _arguments, diff_command)
