"""``levrt schemas``: the collections of records in the store, with their namespaces and counts;
and what ``levrt get`` needs to know about them.

Why a module of its own: a collection's name is made in the SDK (``with lev / "a" / "b":`` before
a ``Cr(schema=...)`` writes to ``a|b|<schema>``, levrt.context) and read back on the command line
as ``SCHEMA --ns a/b``; this is the one place that turns one into the other, for the listing here,
for ``levrt get``'s answer to a schema that does not exist, and for the store each of them opens.
levrt's own collections (``levrt_*``: the job counter, task status, file storage) are left out:
they hold no records of a schema.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import shlex
import sys
from collections.abc import AsyncIterator

from levrt._cli.base import EXIT_OK, CliError, Command, add_cluster_options, cluster, print_table, settings_of
from levrt._clients.store import JOBS, Store, is_internal, resolve_uri
from levrt.checks import check_schema
from levrt.context import DEFAULT_COLLECTION, SEPARATOR, lev
from levrt.errors import NamespaceError, SchemaError

__all__ = [
    "LEVRTS_OWN_SCHEMAS",
    "SCHEMAS",
    "Collection",
    "collection_of",
    "is_gettable_schema",
    "open_store",
    "records_collections",
    "split_collection",
]

LEVRTS_OWN_SCHEMAS = (DEFAULT_COLLECTION, JOBS)
"""Collections levrt names without a schema: records of tasks started without one, and the jobs'."""


@dataclasses.dataclass(frozen=True)
class Collection:
    """A collection of records as ``levrt get`` reads it: ``levrt get {schema} --ns {ns}``."""

    name: str
    schema: str
    ns: str | None
    """The namespace path as ``--ns`` takes it (``a/b``); None outside any namespace."""

    @property
    def get_arguments(self) -> str:
        """``SCHEMA --ns a/b`` as a shell takes them (a namespace may hold a space)."""
        return shlex.quote(self.schema) + (f" --ns {shlex.quote(self.ns)}" if self.ns else "")

    def described(self) -> str:
        """``demo|examples/banner@1.0 (--ns demo)``: the name, and the option that reads it."""
        return self.name + (f" (--ns {self.ns})" if self.ns else "")


def is_gettable_schema(name: str) -> bool:
    """Whether ``levrt get NAME`` takes ``name``: a schema, or one of levrt's own names."""
    if name in LEVRTS_OWN_SCHEMAS:
        return True
    try:
        check_schema(name)
    except SchemaError:
        return False
    return True


def collection_of(schema: str, ns: str | None) -> str:
    """The collection ``levrt get --ns a/b SCHEMA`` reads: what ``with lev / "a" / "b":`` writes.
    ``NamespaceError`` for a part no namespace can have."""
    parts = [part for part in (ns or "").split("/") if part]
    if not parts:
        return schema
    namespace = lev / parts[0]
    for part in parts[1:]:
        namespace = namespace / part
    return namespace.prefix + schema


def split_collection(name: str) -> Collection | None:
    """``a|b|ts/x@1.0`` as ``levrt get ts/x@1.0 --ns a/b``; None for a collection levrt did not name
    (levrt's own, the server's, or one whose parts ``levrt get`` would refuse)."""
    if is_internal(name):
        return None
    *parts, schema = name.split(SEPARATOR)
    if not is_gettable_schema(schema):
        return None
    ns = "/".join(parts) or None
    try:
        if collection_of(schema, ns) != name:  # an empty or refused part: not written by levrt
            return None
    except NamespaceError:
        return None
    return Collection(name, schema, ns)


async def records_collections(store: Store) -> tuple[list[Collection], list[str]]:
    """The collections of records in the store, and the names of the others that are not levrt's
    own (another program's, in the same database)."""
    listed: list[Collection] = []
    foreign: list[str] = []
    for name in await store.collection_names():
        found = split_collection(name)
        if found is not None:
            listed.append(found)
        elif not is_internal(name):
            foreign.append(name)
    listed.sort(key=lambda c: (c.schema, c.ns or ""))
    return listed, foreign


@contextlib.asynccontextmanager
async def open_store(args: argparse.Namespace) -> AsyncIterator[Store]:
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
