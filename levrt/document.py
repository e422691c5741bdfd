"""``Document``: one task's record in the store, read and written from the client.

Why a thin object over a collection and a filter: ``await cr`` must hand back something the
caller can query long after the Pod is gone, without holding a job open. It knows only its
``AsyncCollection`` (``coll``) and its ``_id`` filter (``{"_id": {"job": j, "task": t}}``);
the engine creates it, nothing here imports the engine or a client library.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from levrt.errors import LevrtError, StoreError

__all__ = ["Document"]

Projection = Mapping[str, Any] | Sequence[str] | None


class Document:
    """The record of one task: ``await doc.get()``, ``await doc.set(...)``, ``doc.all()``."""

    __slots__ = ("coll", "filter")

    def __init__(self, coll: Any, filter: Mapping[str, Any]) -> None:
        self.coll = coll
        self.filter: dict[str, Any] = dict(filter)

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
        ``projection`` selects fields.
        """
        try:
            found = await self.coll.find_one(self._query(query), _projection(projection))
        except LevrtError:
            raise
        except Exception as exc:
            raise StoreError(f"Reading {self!r} failed: {exc}") from exc
        if found is None:
            return None
        found = dict(found)
        found.pop("_id", None)
        return found

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
    ) -> AsyncIterator[dict[str, Any]]:
        """Every record of the same job in this collection (by task order), without ``_id``."""
        match: dict[str, Any] = {"_id.job": self.job_id}
        match.update(query or {})
        cursor = self.coll.find(match, _projection(projection)).sort("_id.task", 1)
        async for found in cursor:
            found = dict(found)
            found.pop("_id", None)
            yield found

    def _query(self, query: Mapping[str, Any] | None) -> dict[str, Any]:
        if not query:
            return dict(self.filter)
        if "_id" in query:
            return {"$and": [dict(self.filter), dict(query)]}
        return {**self.filter, **query}


def _projection(projection: Projection) -> Any:
    if projection is None:
        return None
    if isinstance(projection, Mapping):
        return dict(projection)
    if isinstance(projection, str):
        return [projection]
    return list(projection)
