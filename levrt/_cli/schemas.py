"""``levrt schemas``: the collections of records in the store, with their namespaces and counts.

Why a command of its own: nothing else lists which schemas exist, and ``levrt get`` of a schema
that does not exist points here. The turning of a collection's name into ``SCHEMA --ns a/b`` is
``levrt._core.catalog``'s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from levrt._cli.base import EXIT_OK, CliError, Command, add_cluster_options, open_store, print_table
from levrt._core.catalog import Collection, records_collections

__all__ = ["SCHEMAS"]


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", default="table",
                        help="table (default): SCHEMA, NS, RECORDS; json: a list of {schema, ns, collection, "
                             "records}")
    add_cluster_options(parser)


def schemas_command(args: argparse.Namespace) -> int:
    if args.output not in ("table", "json"):
        raise CliError(f"-o {args.output!r}: the schemas print as table or json.")

    async def go() -> tuple[list[tuple[Collection, int]], list[str]]:
        async with open_store(args) as store:
            listed, foreign = await records_collections(store)
            return [(found, await store.count(found.name)) for found in listed], foreign

    counted, foreign = asyncio.run(go())
    if args.output == "json":
        print(json.dumps([{"schema": found.schema, "ns": found.ns, "collection": found.name, "records": records}
                          for found, records in counted], indent=2, ensure_ascii=False))
    elif counted:
        print_table([[found.schema, found.ns or "-", str(records)] for found, records in counted],
                    ["SCHEMA", "NS", "RECORDS"])
    if not counted:
        print("No records in the store yet: a task started with Cr(..., schema=...) writes the first.",
              file=sys.stderr)
    if foreign:
        print(f"Not listed: {len(foreign)} collection(s) that levrt did not name: "
              f"{', '.join(repr(name) for name in foreign)}.", file=sys.stderr)
    return EXIT_OK


SCHEMAS = Command("schemas", "list the schemas with records in the store, and how many", _arguments, schemas_command)
