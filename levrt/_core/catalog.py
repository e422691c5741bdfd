"""The collections of records in the store, as a collection's name and as ``SCHEMA --ns a/b``.

Why a module of its own: a collection's name is made in the SDK (``with lev / "a" / "b":`` before
a ``Cr(schema=...)`` writes to ``a|b|<schema>``, ``levrt.context``) and read back as a schema and a
namespace path (``levrt get SCHEMA --ns a/b``, ``levrt schemas``, ``levrt.job(N).documents``); this
is the one place that turns one into the other. levrt's own collections (``levrt_*``: the job
counter, task status, file storage) are left out: they hold no records of a schema.
"""

from __future__ import annotations

import dataclasses
import shlex

from levrt._clients.store import JOBS, Store, is_internal
from levrt.checks import check_schema
from levrt.context import DEFAULT_COLLECTION, SEPARATOR, lev
from levrt.errors import NamespaceError, SchemaError

__all__ = [
    "LEVRTS_OWN_SCHEMAS",
    "Collection",
    "collection_of",
    "is_gettable_schema",
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
