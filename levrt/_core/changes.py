"""Reading what changed between two jobs from the store (``levrt diff``, ``levrt.changes``).

Why here, on top of the pieces of a job's life: the comparison itself is pure
(``levrt._shapes.changes``); this finds the two jobs' records of a schema, the earlier job to
compare with when none is named, and keeps the counts in the newer job's record, so ``levrt ps``,
the console and a later reader see what a run found new without comparing again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from levrt._clients.store import JOB_RECORDS, Store
from levrt._core.catalog import collection_of
from levrt._shapes.changes import Changes, compare, same_workflow
from levrt.errors import LevrtError, RecordNotFound

__all__ = ["diff", "previous_job", "records_of"]

MAX_LOOK_BACK = 200
"""Earlier job records read at most when looking for the one to compare with."""


async def records_of(store: Store, schema: str, ns: str | None, job: int) -> list[dict[str, Any]]:
    collection = store.collection(collection_of(schema, ns))
    try:
        return [dict(doc) async for doc in collection.find({"_id.job": job})]
    except Exception as exc:
        raise store.unreachable(exc) from exc


async def _job_record(store: Store, job: int) -> dict[str, Any]:
    found, _ = await store.newest(JOB_RECORDS, {"_id": job}, limit=1)
    if not found:
        raise RecordNotFound(f"No job {job} in the store (`levrt ps --all-users` lists the jobs).")
    return found[0]


async def previous_job(store: Store, schema: str, ns: str | None, job: int) -> int | None:
    """The newest job before ``job`` that ran the same tool or workflow and wrote ``schema``."""
    record = await _job_record(store, job)
    earlier, _ = await store.newest(JOB_RECORDS, {"_id": {"$lt": job}}, limit=MAX_LOOK_BACK)
    collection = collection_of(schema, ns)
    for candidate in earlier:
        if same_workflow(candidate.get("what"), record.get("what")) and await store.count(
                collection, {"_id.job": candidate["_id"]}):
            return int(candidate["_id"])
    return None


async def diff(store: Store, schema: str, *, job: int, key: Sequence[str], since: int | None = None,
               ns: str | None = None, keep: bool = True) -> tuple[Changes, int]:
    """Job ``job``'s records of ``schema`` against job ``since``'s (default: ``previous_job``), and
    ``since``; with ``keep``, the counts go into ``job``'s record (``changes``, one entry per schema)."""
    await _job_record(store, job)
    if since is None:
        since = await previous_job(store, schema, ns, job)
        if since is None:
            raise LevrtError(f"No earlier job of the same tool or workflow wrote {schema}"
                             f"{f' (ns {ns})' if ns else ''} before job {job}: name one with --since.")
    elif since == job:
        raise LevrtError(f"--since {since} is job {job} itself: name an earlier job.")
    else:
        await _job_record(store, since)
    changes = compare(await records_of(store, schema, ns, since), await records_of(store, schema, ns, job), key)
    if keep:
        await _keep(store, job, {"schema": schema, "ns": ns, "since": since, "key": list(key), **changes.counts()})
    return changes, since


async def _keep(store: Store, job: int, entry: Mapping[str, Any]) -> None:
    record = await _job_record(store, job)
    kept = [e for e in record.get("changes") or () if isinstance(e, Mapping)
            and (e.get("schema"), e.get("ns")) != (entry["schema"], entry["ns"])]
    await store.set_fields(JOB_RECORDS, job, {"changes": [*kept, dict(entry)]})
