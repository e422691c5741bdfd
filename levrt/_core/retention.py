"""Retention: records of long-ended jobs deleted, and the file storage's content nothing refers to.

Why: results grow for good otherwise, and nothing deleted content from the file-storage bucket
(issue 25, item 5). Records go by their job's end (``levrt gc --records-older-than``): a job's
records, and without ``--schema`` also its task status, log archives and end reports, while its own record stays
as evidence, marked ``collected``. A stored file goes when no record, artifact listing, job value,
log archive or live task Pod names its sha256 and it is older than a grace period, so an upload
still running (its files document is written last) or a Digest a job is about to mount is never
taken. What is referenced is read over-broadly (any ``sha256`` field, any stored-apart
placeholder): keeping a file by mistake is cheap, deleting one is not.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import Any

from levrt._clients.store import JOB_RECORDS, LOGS, TASKS, Store
from levrt._core.catalog import collection_of, records_collections
from levrt._shapes import jobrecord
from levrt._stored import CHUNKS, FILES, PLACEHOLDER, is_sha256
from levrt.endreports import COLLECTION as REPORTS

__all__ = ["collect_files", "delete_records", "ended_before", "referenced_files", "shas_in", "shas_in_pods"]

SHA_TEXT = re.compile(r"\b[0-9a-f]{64}\b")


async def ended_before(store: Store, cutoff: float) -> list[int]:
    """The jobs whose record says they ended before ``cutoff`` (seconds since the epoch)."""
    records, _ = await store.newest(JOB_RECORDS, {}, limit=0)
    ended = []
    for record in records:
        when = jobrecord.epoch(record.get("ended"))
        if isinstance(record.get("_id"), int) and when is not None and when < cutoff:
            ended.append(int(record["_id"]))
    return sorted(ended)


async def delete_records(store: Store, jobs: Iterable[int], *, schema: str | None = None, ns: str | None = None,
                         dry_run: bool = False) -> dict[str, int]:
    """Delete the records of ``jobs`` (of ``schema`` only, or of every collection, and then their
    task status and log archives too, their job records marked ``collected``); how many went from
    each collection (with ``dry_run``: would go)."""
    wanted = sorted(set(jobs))
    if not wanted:
        return {}
    names = [collection_of(schema, ns)] if schema else [c.name for c in (await records_collections(store))[0]]
    gone: dict[str, int] = {}
    query = {"_id.job": {"$in": wanted}}
    for name in names:
        gone[name] = await _delete(store, name, query, dry_run)
    if schema is None:  # the log archives are keyed by their task's id: read those before the tasks go
        archives = [f"{j}.{t}" for j, t in await _task_keys(store, wanted)]
        gone[LOGS] = await _delete(store, LOGS, {"_id": {"$in": archives}}, dry_run)
        gone[TASKS] = await _delete(store, TASKS, {"job": {"$in": wanted}}, dry_run)
        # End reports a task wrote after its job had ended (its job's end deletes the others).
        gone[REPORTS] = await _delete(store, REPORTS, {"job": {"$in": wanted}}, dry_run)
    if not dry_run:
        now = dt.datetime.now(dt.UTC).isoformat()
        for job in wanted:
            await store.set_fields(JOB_RECORDS, job, {"collected": {"at": now, "schema": schema, "ns": ns}})
    return {name: count for name, count in gone.items() if count}


async def _task_keys(store: Store, jobs: list[int]) -> list[tuple[int, int]]:
    try:
        return [(int(d["job"]), int(d["task"])) async for d in store.collection(TASKS).find(
            {"job": {"$in": jobs}}, {"job": 1, "task": 1}) if isinstance(d.get("task"), int)]
    except Exception as exc:
        raise store.unreachable(exc) from exc


async def _delete(store: Store, name: str, query: Mapping[str, Any], dry_run: bool) -> int:
    collection = store.collection(name)
    try:
        if dry_run:
            return int(await collection.count_documents(dict(query)))
        return int((await collection.delete_many(dict(query))).deleted_count)
    except Exception as exc:
        raise store.unreachable(exc) from exc


def shas_in(value: Any) -> set[str]:
    """Every sha256 a stored value names: stored-apart placeholders, and any ``sha256`` field (an
    artifact listing, a log archive's spilled text, a value kept apart)."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            for key, sub in item.items():
                if key in ("sha256", PLACEHOLDER, "file") and isinstance(sub, str) and is_sha256(sub):
                    found.add(sub)
                stack.append(sub)
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return found


async def referenced_files(store: Store, *, leaving: Mapping[str, set[int]] | None = None) -> set[str]:
    """The sha256s that records, job records and log archives name; ``leaving``: collections whose
    records of those jobs do not count (a dry run's, which are still there)."""
    names = [c.name for c in (await records_collections(store))[0]] + [JOB_RECORDS, LOGS]
    named: set[str] = set()
    for name in names:
        skipped = (leaving or {}).get(name, set())
        try:
            async for doc in store.collection(name).find({}):
                if skipped and _job_of(doc) in skipped:
                    continue
                named |= shas_in(doc)
        except Exception as exc:
            raise store.unreachable(exc) from exc
    return named


def _job_of(doc: Mapping[str, Any]) -> int | None:
    """The job a record (``_id.job``) or a log archive (``_id`` ``"J.T"``) belongs to."""
    ident = doc.get("_id")
    if isinstance(ident, Mapping) and isinstance(ident.get("job"), int):
        return int(ident["job"])
    if isinstance(ident, str) and ident.partition(".")[0].isdigit():
        return int(ident.partition(".")[0])
    return None


async def collect_files(store: Store, *, keep: set[str], uploaded_before: dt.datetime,
                        dry_run: bool = False) -> list[tuple[str, int]]:
    """Delete the stored files not in ``keep`` uploaded before ``uploaded_before``: its files document
    first (without it the content does not exist), then its chunks. The files that went (sha256, size)."""
    files, chunks = store.collection(FILES), store.collection(CHUNKS)
    try:
        candidates = [(str(d["_id"]), int(d.get("length") or 0), d.get("uploadDate"))
                      async for d in files.find({}, {"length": 1, "uploadDate": 1})]
    except Exception as exc:
        raise store.unreachable(exc) from exc
    gone = []
    for sha, size, uploaded in candidates:
        if sha in keep or not isinstance(uploaded, dt.datetime):
            continue
        if (uploaded if uploaded.tzinfo else uploaded.replace(tzinfo=dt.UTC)) >= uploaded_before:
            continue  # an upload may still be writing chunks of it, or a job be about to mount it
        if not dry_run:
            try:
                await files.delete_one({"_id": sha})
                await chunks.delete_many({"files_id": sha})
            except Exception as exc:
                raise store.unreachable(exc) from exc
        gone.append((sha, size))
    return gone


def shas_in_pods(pods: Iterable[Mapping[str, Any]]) -> set[str]:
    """The sha256s levrt's Pods name in their commands and variables: the Digests a live task
    mounts (its ``levrt-files`` init container lists them)."""
    texts = [" ".join([*(str(part) for part in c.get("command") or ()),
                       *(str(e.get("value") or "") for e in c.get("env") or ())])
             for pod in pods for c in [*pod["spec"].get("initContainers", []), *pod["spec"].get("containers", [])]]
    return {m.group(0) for text in texts for m in SHA_TEXT.finditer(text)}
