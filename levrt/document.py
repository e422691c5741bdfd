"""``Document``: one task's record in the store, read and written from the client.

Why a thin object over a collection and a filter: ``await cr`` must hand back something the
caller can query long after the Pod is gone, without holding a job open. It knows only its
``AsyncCollection`` (``coll``), its ``_id`` filter (``{"_id": {"job": j, "task": t}}``) and a
reader of the store's file storage (``files``), for what the task stored apart: values too large
for a record (placeholders in the record, put back whole by ``get``/``all``) and artifacts
(``lev.put``). The engine creates it with those; nothing here imports the engine or a client
library.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol

from levrt._stored import ARTIFACTS, put_back, stored_apart
from levrt.errors import LevrtError, StoreError

__all__ = ["Document", "FileReader", "Record"]

Projection = Mapping[str, Any] | Sequence[str] | None


class FileReader(Protocol):
    """What a Document needs of the store's file storage (``levrt._clients.blobs.FileStore``)."""

    async def read(self, sha256: str) -> bytes: ...

    async def download(self, sha256: str, path: str | os.PathLike[str]) -> int: ...

    async def load_value(self, sha256: str) -> Any: ...


class Record(dict[str, Any]):
    """One record of ``doc.all()``: the user's fields (a plain dict to compare, print or dump), and
    which task of which job wrote it (``rec.task``, ``rec.job``; None for a record not of a task)."""

    __slots__ = ("job", "task")

    def __init__(self, fields: Mapping[str, Any], *, job: int | None, task: int | None) -> None:
        super().__init__(fields)
        self.job = job
        self.task = task

    def __repr__(self) -> str:
        return f"Record({dict.__repr__(self)}, job={self.job!r}, task={self.task!r})"


class Document:
    """The record of one task: ``await doc.get()``, ``await doc.set(...)``, ``doc.all()``, and its
    artifacts: ``await doc.artifact(name)``, ``await doc.download(name, path)``."""

    __slots__ = ("coll", "files", "filter", "timed_out")

    def __init__(self, coll: Any, filter: Mapping[str, Any], *, timed_out: bool = False,
                 files: FileReader | None = None) -> None:
        self.coll = coll
        self.filter: dict[str, Any] = dict(filter)
        self.files = files
        """Reads what the task stored apart; None: a record without any (else a ``StoreError``)."""
        self.timed_out = timed_out
        """Whether the task reached its ``timeout``: the record holds what it stored until then."""

    @property
    def job_id(self) -> int | None:
        ident = self.filter.get("_id")
        return ident.get("job") if isinstance(ident, Mapping) else None

    @property
    def task_id(self) -> int | None:
        ident = self.filter.get("_id")
        return ident.get("task") if isinstance(ident, Mapping) else None

    def __repr__(self) -> str:
        return f"<Document {getattr(self.coll, 'name', self.coll)!s} {self.filter!r}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Document):
            return NotImplemented
        return getattr(self.coll, "full_name", self.coll) == getattr(
            other.coll, "full_name", other.coll
        ) and (self.filter == other.filter)

    def __hash__(self) -> int:
        return hash((str(getattr(self.coll, "full_name", id(self.coll))), repr(self.filter)))

    async def get(
        self, query: Mapping[str, Any] | None = None, projection: Projection = None
    ) -> dict[str, Any] | None:
        """The user's fields of this record (no ``_id``), or None if it does not exist (yet).

        ``query`` narrows the match like ``find_one`` (it is combined with this record's filter);
        ``projection`` selects fields. Values the task stored apart (too large for a record) come
        back whole; a query cannot match inside them. The list of artifacts (``_artifacts``) is
        left out unless the projection names it: see ``artifacts()``.
        """
        try:
            found = await self.coll.find_one(self._query(query), _projection(projection))
        except LevrtError:
            raise
        except Exception as exc:
            raise StoreError(f"Reading {self!r} failed: {exc}") from exc
        if found is None:
            return None
        return await self._restore(found, projection)

    async def _restore(self, found: Mapping[str, Any], projection: Projection) -> dict[str, Any]:
        """A record as the user stored it: no ``_id``, no ``_artifacts`` (unless projected), and
        values stored apart put back."""
        record = dict(found)
        record.pop("_id", None)
        if not _projects(projection, ARTIFACTS):
            record.pop(ARTIFACTS, None)
        for path, sha in stored_apart(record):
            put_back(record, path, await self._reader(".".join(path)).load_value(sha))
        return record

    def _reader(self, what: str) -> FileReader:
        if self.files is None:
            raise StoreError(
                f"{self!r}: {what!r} is stored in the store's file storage, and this Document was made "
                "without a reader for it. Use the Document a task returned (doc = await cr), or pass "
                "files=levrt._clients.blobs.FileStore.of(store)."
            )
        return self.files

    async def artifacts(self) -> dict[str, dict[str, Any]]:
        """The task's artifacts (``lev.put``): ``{name: {"sha256": ..., "size": ...}}``, in the order put."""
        try:
            found = await self.coll.find_one(dict(self.filter), {ARTIFACTS: 1})
        except Exception as exc:
            raise StoreError(f"Reading {self!r} failed: {exc}") from exc
        listed = (found or {}).get(ARTIFACTS)
        if not isinstance(listed, list):
            return {}
        return {str(a["name"]): {"sha256": a["sha256"], "size": a["size"]} for a in listed
                if isinstance(a, Mapping) and "name" in a and "sha256" in a}

    async def artifact(self, name: str) -> bytes:
        """The content of the artifact ``name`` (read whole: use ``download`` for large ones)."""
        return await self._reader(name).read(await self._artifact_sha(name))

    async def download(self, name: str, path: str | os.PathLike[str]) -> int:
        """Stream the artifact ``name`` to the local file ``path`` (checked against its sha256);
        returns its size."""
        return await self._reader(name).download(await self._artifact_sha(name), path)

    async def _artifact_sha(self, name: str) -> str:
        known = await self.artifacts()
        if name not in known:
            listed = ", ".join(repr(n) for n in known) or "none"
            raise StoreError(f"{self!r} has no artifact {name!r} (artifacts: {listed}). An entry stores one "
                             "with lev.put(name, path).")
        return str(known[name]["sha256"])

    async def set(self, data: Mapping[str, Any] | None = None, /, **kwargs: Any) -> None:
        """Upsert fields into this record (``$set``), like ``lev.set`` does inside the entry."""
        if data is not None and not isinstance(data, Mapping):
            raise LevrtError(
                f"doc.set({data!r:.60}): pass a dict of fields, or keywords: doc.set(key=value)."
            )
        fields = {**(data or {}), **kwargs}
        if "_id" in fields:
            raise LevrtError(
                "doc.set(_id=...): the record's _id is fixed ({job, task}); choose another field name."
            )
        if not fields:
            return
        try:
            await self.coll.update_one(self.filter, {"$set": fields}, upsert=True)
        except Exception as exc:
            raise StoreError(f"Writing {self!r} failed: {exc}") from exc

    async def all(
        self, query: Mapping[str, Any] | None = None, projection: Projection = None
    ) -> AsyncIterator[Record]:
        """Every record of the same job in this collection, in task order: the records its sibling
        tasks wrote with the same schema (this one's included). Each is a ``Record``: its fields as
        ``get`` returns them (a dict, without ``_id``), and ``rec.task``, the task that wrote it.

        ``query`` narrows the match like ``find``; ``projection`` selects fields::

            async for rec in doc.all({"open": True}):
                print(rec.task, rec["port"])
        """
        match: dict[str, Any] = {"_id.job": self.job_id}
        match.update(query or {})
        shown = _projection(projection)
        if isinstance(shown, dict) and shown.get("_id") in (0, False):
            shown = {**shown, "_id": 1}  # the task is read from _id; the record is shown without it
        try:
            cursor = self.coll.find(match, shown).sort("_id.task", 1)
            async for found in cursor:
                ident = found.get("_id")
                task = ident.get("task") if isinstance(ident, Mapping) else None
                yield Record(await self._restore(found, projection), job=self.job_id, task=task)
        except LevrtError:
            raise
        except Exception as exc:
            raise StoreError(f"Reading the records of {self!r}'s job failed: {exc}") from exc

    def _query(self, query: Mapping[str, Any] | None) -> dict[str, Any]:
        if not query:
            return dict(self.filter)
        if "_id" in query:
            return {"$and": [dict(self.filter), dict(query)]}
        return {**self.filter, **query}


def _projects(projection: Projection, key: str) -> bool:
    """Whether ``projection`` asks for the field ``key`` by name."""
    if projection is None:
        return False
    if isinstance(projection, str):
        return projection == key
    if isinstance(projection, Mapping):
        return bool(projection.get(key))
    return key in projection


def _projection(projection: Projection) -> Any:
    if projection is None:
        return None
    if isinstance(projection, Mapping):
        return dict(projection)
    if isinstance(projection, str):
        return [projection]
    return list(projection)
