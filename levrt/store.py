"""The client side of the result store: job ids, task bookkeeping, users' collections.

Why a layer of its own: the engine needs three things from MongoDB — an atomic job counter,
a place for task status that never touches users' records, and collections to hand to
``Document`` — and nothing else should know how they are laid out (SPEC 4). PyMongo's async
API (``AsyncMongoClient``) is imported lazily so ``import levrt`` stays light.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from levrt.errors import StoreError

__all__ = ["COUNTERS", "TASKS", "Store"]

COUNTERS = "levrt_counters"
TASKS = "levrt_tasks"


class Store:
    """An open connection to the store's database. Close it with ``await store.close()``."""

    def __init__(self, client: Any, *, database: str, uri_for_errors: str) -> None:
        self._client = client
        self._db = client[database]
        self._uri = uri_for_errors

    @classmethod
    def connect(cls, uri: str, *, database: str = "levrt", timeout: float = 10.0) -> Store:
        """Prepare a client; the first operation connects (and fails with ``StoreError``)."""
        from pymongo import AsyncMongoClient

        if not uri:
            raise StoreError(
                "No store URI. Set LEVRT_STORE_URI (e.g. mongodb://127.0.0.1:30017/) or create the "
                "Secret 'levrt-store' with key 'uri' in the levrt namespace (the Helm chart does)."
            )
        try:
            client: Any = AsyncMongoClient(
                uri, serverSelectionTimeoutMS=int(timeout * 1000), connectTimeoutMS=int(timeout * 1000)
            )
        except Exception as exc:
            raise StoreError(f"Invalid store URI {_redact(uri)!r}: {exc}") from exc
        return cls(client, database=database, uri_for_errors=_redact(uri))

    async def close(self) -> None:
        await self._client.close()

    def collection(self, name: str) -> Any:
        """The ``AsyncCollection`` of users' records named ``name``."""
        return self._db[name]

    async def next_job_id(self) -> int:
        """Allocate a job id from the atomic counter (1, 2, 3, ...)."""
        from pymongo import ReturnDocument

        try:
            counter = await self._db[COUNTERS].find_one_and_update(
                {"_id": "job"}, {"$inc": {"seq": 1}}, upsert=True, return_document=ReturnDocument.AFTER
            )
        except Exception as exc:
            raise self._unreachable(exc) from exc
        return int(counter["seq"])

    async def record_task(self, *, job: int, task: int, **fields: Any) -> None:
        """Upsert the internal status of one task (state, pod, timing, exit code)."""
        fields["updated"] = dt.datetime.now(dt.UTC)
        try:
            await self._db[TASKS].update_one(
                {"_id": {"job": job, "task": task}}, {"$set": fields}, upsert=True
            )
        except Exception as exc:
            raise self._unreachable(exc) from exc

    async def tasks(self, query: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Internal task records, newest first (for ``levrt ps``)."""
        cursor = self._db[TASKS].find(query or {}).sort("updated", -1)
        return [doc async for doc in cursor]

    def _unreachable(self, exc: Exception) -> StoreError:
        return StoreError(
            f"The store at {self._uri} did not answer: {exc}. Check that it runs "
            "(kubectl -n levrt get pods) and that LEVRT_STORE_URI points at an address this "
            "machine can reach."
        )


def _redact(uri: str) -> str:
    """The URI without its password, for messages."""
    if "@" in uri and "://" in uri:
        scheme, rest = uri.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return uri
