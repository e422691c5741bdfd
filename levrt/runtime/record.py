"""``lev`` inside an entry: ``StoreBinding`` writes the task's record, and rides out store outages.

Why apart from the task process: the record is the one thing an entry gives back, and getting it
there is an idea of its own: values too large for a record are stored apart (``levrt._stored``), a
store outage buffers updates (merged per field, in order) for a background writer that retries
until the store answers, and at the end the process waits a bounded time for that buffer and
names what could not be written. The task process (``levrt.runtime.process``) only makes one,
binds it to ``lev`` and flushes it. Standard library only at import; pymongo on the first write.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from levrt._stored import (
    ARTIFACTS,
    RECORD_BUDGET,
    SPILL_BYTES,
    check_field_name,
    is_duplicate,
    placeholder,
    put_back,
    stored_apart,
)
from levrt.endreports import COLLECTION as REPORTS
from levrt.errors import StoreError
from levrt.podenv import STORE_URI_ENV, STORE_WAIT_ENV
from levrt.runtime import blobs
from levrt.runtime.config import RuntimeConfig, SetupError
from levrt.runtime.termination import short_reason

__all__ = ["RETRY_DELAYS", "StoreBinding", "mongo_client"]

REPORT_SECONDS = 2.0
"""The longest the end report's write may hold up the end of the task."""
RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0)
"""Pauses between the background attempts to write buffered updates (the last one repeats)."""


@dataclass
class StoreBinding:
    """``lev`` inside the entry: ``set`` upserts into this task's record with a lazily made client.

    The MongoDB client is created on the first ``set``: an entry that stores nothing never
    connects, and a store that is down only fails entries that write.

    Values too large for a record are stored apart (``levrt._stored``): a field whose BSON is over
    ``SPILL_BYTES``, or the largest new fields while the record would pass ``RECORD_BUDGET``, go
    to the file storage and the field holds a placeholder; ``get`` (``lev.doc.get()``) and the
    client's ``Document`` put the values back. The binding is the record's only writer in the
    task, so it keeps the size of each field it wrote (a record found larger than it knew, after
    a retried Pod, is measured once when the store refuses it).

    A store outage does not stop the entry: a write that finds the store unreachable (no server
    within ``serverSelectionTimeoutMS``, a dropped connection) is buffered, and so is every later
    ``set`` until the buffer is empty again, so updates reach the store in the order they were
    made. Buffered updates are merged per field (a counter set every second during an outage is
    one pending value, not thousands) and written by a background thread that retries until the
    store answers. ``get`` reads what is buffered too. At the end ``flush`` waits for the buffer
    (``LEVRT_STORE_WAIT``) and names what could not be stored. While the store is up, ``set``
    writes before it returns, as always: a refused value fails the ``set`` that gave it.
    """

    config: RuntimeConfig
    connect: Callable[[str], Any] | None = None
    _client: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _write_lock: threading.RLock = field(default_factory=threading.RLock)
    _sizes: dict[str, int] = field(default_factory=dict)
    """Encoded size of each field this task stored inline (placeholders included)."""
    _artifacts: list[dict[str, Any]] | None = None
    _state: threading.Condition = field(default_factory=threading.Condition)
    """Guards the buffer below; notified when the background writer empties it."""
    _queue: list[dict[str, tuple[Any, bytes]]] = field(default_factory=list)
    """Updates waiting for the store, oldest first: ``{field: (value, encoded)}`` each."""
    _inflight: dict[str, tuple[Any, bytes]] | None = None
    _buffering: bool = False
    """True from the first write that found the store unreachable until the buffer is written."""
    _outage_since: float = 0.0
    _refused: list[str] = field(default_factory=list)
    """Why buffered updates were refused by the store (not unreachable): reported at the end."""
    _stored: dict[str, Any] = field(default_factory=dict)
    """Each ``$set`` this binding wrote, as written (placeholders for values stored apart): what
    ``get`` answers from while the store is unreachable."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _exists: bool = False
    """Whether this task's record is known to exist (written here, or found by a refused insert)."""

    @property
    def job_id(self) -> int:
        return self.config.job

    @property
    def task_id(self) -> int:
        return self.config.task

    @property
    def record_id(self) -> dict[str, int]:
        return {"job": self.config.job, "task": self.config.task}

    def _database(self) -> Any:
        with self._lock:
            if self._client is None:
                if not self.config.store_uri:
                    raise SetupError(
                        f"lev.set needs the store, but {STORE_URI_ENV} is empty. The levrt-store Secret "
                        "(key uri) must exist in the task's namespace: install the levrt chart."
                    )
                connect = self.connect or mongo_client
                self._client = connect(self.config.store_uri)
            return self._client[self.config.database]

    def _collection(self) -> Any:
        return self._database()[self.config.collection]

    def _bucket(self) -> blobs.Bucket:
        return blobs.Bucket(self._database())

    def set(self, data: Mapping[str, Any] | None = None, /, **kwargs: Any) -> None:
        """Merge fields into this task's record (``$set``: the fields given replace their old values)."""
        fields = {**(data or {}), **kwargs}
        for key, value in fields.items():
            reason = check_field_name(key, value, what="lev.set")
            if reason is not None:
                raise StoreError(reason)
        if not fields:
            return
        self._submit(fields, _encoded(fields))

    def _submit(self, fields: Mapping[str, Any], encoded: Mapping[str, bytes]) -> None:
        """Write now, or buffer when the store is unreachable (or an outage's buffer is not
        written yet: updates keep their order)."""
        self._database()  # no store configured fails here, at once, with advice
        with self._write_lock:
            with self._state:
                if self._refused:
                    raise StoreError(self._refused[0])
                if self._buffering:
                    self._enqueue(fields, encoded)
                    return
            try:
                self._write(fields, encoded)
            except Exception as exc:
                if not _unreachable(exc):
                    raise StoreError(f"lev.set: the store refused the update of {sorted(fields)}: {exc}") from exc
                with self._state:
                    self._buffering = True
                    self._outage_since = time.monotonic()
                    self._enqueue(fields, encoded)
                print(f"levrt runtime: the store is unreachable ({short_reason(exc)}); lev.set buffers updates "
                      "and writes them when it is back", file=sys.stderr, flush=True)
                threading.Thread(target=self._write_buffered, name="levrt-store-writer", daemon=True).start()

    def _insert_first(self, collection: Any, update: Mapping[str, Any]) -> bool:
        """The task's first write as an insert: the same record as the upsert would make, but found
        by one index probe where FerretDB on SQLite scans the collection (twice) for an upsert by a
        document ``_id``. False when the record exists already (a retried Pod's task)."""
        if any("." in key or key.startswith("$") for key in update):
            return False  # a dotted $set reaches into a sub-document; an insert would not
        try:
            collection.insert_one({"_id": self.record_id, **update})
        except Exception as exc:
            if is_duplicate(exc):
                return False
            raise
        return True

    def _write(self, fields: Mapping[str, Any], encoded: Mapping[str, bytes]) -> None:
        """One ``$set`` of ``fields`` (large values stored apart first); raises what the driver raised."""
        collection = self._collection()
        for attempt in (1, 2):
            update, sizes = self._inline(fields, encoded)
            try:
                if self._exists or not self._insert_first(collection, update):
                    collection.update_one({"_id": self.record_id}, {"$set": update}, upsert=True)
                self._exists = True
                break
            except Exception as exc:
                if attempt == 1 and _too_large(exc):
                    self._measure_record()  # written by an earlier Pod of this task: learn its size
                    continue
                raise
        self._account(sizes)
        for key, value in update.items():
            for known in [k for k in self._stored if _covers(key, k)]:
                del self._stored[known]
            self._stored[key] = value

    def _enqueue(self, fields: Mapping[str, Any], encoded: Mapping[str, bytes]) -> None:
        """Merge into the newest pending update unless a field path conflicts with one there
        (``a`` and ``a.b`` cannot be in one ``$set``): then a new update follows it."""
        entry = {key: (value, encoded[key]) for key, value in fields.items()}
        last = self._queue[-1] if self._queue else None
        if last is not None and not any(k != old and (_covers(k, old) or _covers(old, k))
                                        for k in entry for old in last):
            last.update(entry)
        else:
            self._queue.append(entry)

    def _write_buffered(self) -> None:
        """The background writer of an outage: oldest update first, retried until the store takes
        it; ends when the buffer is empty (later ``set``s write directly again)."""
        attempt = 0
        while not self._stop.is_set():
            with self._state:
                if not self._queue:
                    self._buffering = False
                    self._state.notify_all()
                    print(f"levrt runtime: the store is back; updates buffered for "
                          f"{time.monotonic() - self._outage_since:.0f} s are written", file=sys.stderr, flush=True)
                    return
                self._inflight = batch = self._queue.pop(0)
            fields = {key: value for key, (value, _) in batch.items()}
            try:
                self._write(fields, {key: blob for key, (_, blob) in batch.items()})
            except Exception as exc:
                with self._state:
                    self._inflight = None
                    if _unreachable(exc):
                        self._queue.insert(0, batch)
                    else:
                        self._refused.append(
                            f"lev.set: the store refused the buffered update of {sorted(fields)}: {short_reason(exc)}")
                        self._state.notify_all()
                if _unreachable(exc):
                    self._stop.wait(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
                    attempt += 1
                continue
            with self._state:
                self._inflight = None
                self._state.notify_all()
            attempt = 0

    def pending(self) -> list[str]:
        """Fields set but not stored yet (buffered during a store outage)."""
        with self._state:
            batches = [*([self._inflight] if self._inflight else []), *self._queue]
        return sorted({key for batch in batches for key in batch})

    def flush(self, timeout: float) -> str | None:
        """Wait up to ``timeout`` seconds for buffered updates; why something is not stored, or None."""
        end = time.monotonic() + timeout
        with self._state:
            while self._buffering and (left := end - time.monotonic()) > 0:
                self._state.wait(min(left, 1.0))
            refused = list(self._refused)
        lost = self.pending()
        problems = []
        if lost:
            problems.append(
                f"the store was unreachable for {time.monotonic() - self._outage_since:.0f} s (waited "
                f"{timeout:.0f} s after the entry, {STORE_WAIT_ENV}): fields {lost} of this task's record "
                "are not stored")
        return "; ".join(problems + refused) or None

    def _inline(self, fields: Mapping[str, Any], encoded: Mapping[str, bytes]) -> tuple[dict[str, Any], dict[str, int]]:
        """The ``$set`` to send, with the fields to store apart stored and replaced by placeholders,
        and the inline size of each field. What the record holds already stays: if that alone is
        over the budget (an earlier Pod of the task wrote it), every new field goes apart."""
        kept = {k: v for k, v in self._sizes.items() if not any(_covers(key, k) for key in fields)}
        # The artifact list stays inline: clients read it from the record itself.
        apart = {key for key, blob in encoded.items() if len(blob) > SPILL_BYTES and key != ARTIFACTS}
        total = sum(kept.values()) + sum(len(blob) for key, blob in encoded.items() if key not in apart)
        for key in sorted(encoded, key=lambda k: len(encoded[k]), reverse=True):
            if total <= RECORD_BUDGET:
                break
            if key not in apart and key != ARTIFACTS:
                apart.add(key)
                total -= len(encoded[key])
        update: dict[str, Any] = {}
        sizes: dict[str, int] = {}
        for key, value in fields.items():
            if key in apart:
                name = f"{self.config.collection}/{self.config.job}.{self.config.task}/{key}"
                sha, size = self._bucket().put_bytes(encoded[key], filename=name, kind="value")
                update[key] = placeholder(sha, size)
                sizes[key] = len(blobs.encode_value(update[key]))
            else:
                update[key] = value
                sizes[key] = len(encoded[key])
        return update, sizes

    def _account(self, sizes: Mapping[str, int]) -> None:
        for key in sizes:
            for known in [k for k in self._sizes if _covers(key, k)]:
                del self._sizes[known]
        self._sizes.update(sizes)

    def _measure_record(self) -> None:
        found = self._collection().find_one({"_id": self.record_id}) or {}
        self._sizes = {k: len(blobs.encode_value(v)) for k, v in found.items() if k != "_id"}

    def get(self) -> dict[str, Any] | None:
        """What this task stored so far, values stored apart put back (``lev.doc.get()``); updates
        buffered during a store outage included (the record is then what this Pod wrote)."""
        with self._state:
            buffering = self._buffering
            batches = [*([self._inflight] if self._inflight else []), *self._queue]
        found: Any = None
        if not buffering:
            try:
                found = self._collection().find_one({"_id": self.record_id}, {"_id": 0})
            except Exception as exc:
                if not _unreachable(exc):
                    raise
                buffering = True
        if buffering and self._stored:
            found = {}
            for key, value in self._stored.items():
                _apply_set(found, key, value)
        for batch in batches:
            found = {} if found is None else found
            for key, (value, _) in batch.items():
                _apply_set(found, key, value)
        if found is None:
            return None
        record = dict(found)
        record.pop(ARTIFACTS, None)
        for path, sha in stored_apart(record):
            put_back(record, path, blobs.decode_value(self._bucket().read(sha)))
        return record

    def put(self, name: str, source: blobs.Source) -> str:
        """Store a file (a path, a binary file object, or bytes) as the artifact ``name`` of this task,
        streamed, and list it in the record's ``_artifacts``; returns its sha256."""
        if not isinstance(name, str) or not name.strip() or "\0" in name or len(name) > 1024:
            raise StoreError(f"lev.put({name!r}, ...): an artifact name is a non-empty str, e.g. 'report.xml'.")
        if isinstance(source, bytes | bytearray | memoryview):
            sha, size = self._bucket().put_bytes(bytes(source), filename=name, kind="artifact")
        else:
            sha, size = self._bucket().put_file(source, filename=name, kind="artifact")
        with self._write_lock:
            if self._artifacts is None:
                found = self._collection().find_one({"_id": self.record_id}, {ARTIFACTS: 1}) or {}
                listed = found.get(ARTIFACTS)
                self._artifacts = [dict(a) for a in listed] if isinstance(listed, list) else []
            entry = {"name": name, "sha256": sha, "size": size}
            self._artifacts = [a for a in self._artifacts if a.get("name") != name] + [entry]
            listed = {ARTIFACTS: [dict(a) for a in self._artifacts]}
            self._submit(listed, _encoded(listed))
        return sha

    def upload(self, source: blobs.Source) -> str:
        """Store content (bytes, str as UTF-8 text, a path, a binary file object); its sha256."""
        if isinstance(source, str):
            source = source.encode("utf-8")
        if isinstance(source, bytes | bytearray | memoryview):
            sha, _ = self._bucket().put_bytes(bytes(source), filename="upload", kind="upload")
            return sha
        name = os.path.basename(os.fspath(source)) if isinstance(source, os.PathLike) else "upload"
        sha, _ = self._bucket().put_file(source, filename=name, kind="upload")
        return sha

    @property
    def doc(self) -> StoreBinding:
        """Inside an entry ``lev.doc.get()`` reads back what this task stored so far."""
        return self

    def report_end(self, doc: Mapping[str, Any]) -> bool:
        """Insert the task's end report (``levrt.endreports``) over the connection ``set`` made; False,
        having written nothing, when there is none (an entry that stored nothing does not connect for
        this) or the store is away (buffered updates): the engine then learns the end from the Pod."""
        if self._client is None or self._buffering or self.pending():
            return False
        pymongo: Any = sys.modules.get("pymongo")  # loaded with the client; a warm entry's fake has none
        bounded = pymongo.timeout(REPORT_SECONDS) if hasattr(pymongo, "timeout") else contextlib.nullcontext()
        try:
            with bounded:
                self._database()[REPORTS].insert_one(dict(doc))
        except Exception:  # a courtesy: the Pod's end says the same, later
            return False
        return True

    def close(self) -> None:
        self._stop.set()
        if self._client is not None:
            self._client.close()
            _skip_pymongo_exit_hook()


def _apply_set(record: dict[str, Any], key: str, value: Any) -> None:
    """What ``$set: {key: value}`` does to ``record`` (a dotted key sets inside sub-documents)."""
    *parents, last = key.split(".")
    for part in parents:
        inner = record.get(part)
        record[part] = inner = dict(inner) if isinstance(inner, Mapping) else {}
        record = inner
    record[last] = value


def _unreachable(exc: BaseException) -> bool:
    """Whether a write failed because the store could not be reached (worth retrying), not
    because it refused the write."""
    errors = sys.modules.get("pymongo.errors")  # loaded with the client; a fake client has none
    if errors is None:
        return False
    if isinstance(exc, errors.ConnectionFailure):  # also server selection, network timeouts
        return True
    if isinstance(exc, errors.PyMongoError) and exc.has_error_label("RetryableWriteError"):
        return True
    # Not primary, shutting down, stepped down, interrupted: the server goes away or changes.
    return isinstance(exc, errors.OperationFailure) and exc.code in (91, 189, 10107, 11600, 11602, 13435, 13436)


def _covers(key: str, other: str) -> bool:
    """Whether setting ``key`` replaces the field ``other`` (itself, or a path inside it)."""
    return other == key or other.startswith(key + ".")


def _encoded(fields: Mapping[str, Any]) -> dict[str, bytes]:
    """Each value as stored apart (the BSON of ``{"v": value}``); a value BSON cannot encode
    fails the whole ``set``, named by its key."""
    encoded = {}
    for key, value in fields.items():
        try:
            encoded[key] = blobs.encode_value(value)
        except Exception as exc:
            raise StoreError(
                f"lev.set: the value of {key!r} ({type(value).__name__}) cannot be stored: {exc}. Store "
                "str, int, float, bool, None, bytes, datetime, and lists and dicts of those "
                "(a set → a list, an object → a dict of its fields)."
            ) from exc
    return encoded


def _too_large(exc: Exception) -> bool:
    """Whether the store refused a write because the document would be too large."""
    code = getattr(exc, "code", None)
    return code in (10334, 17419, 17420) or "too large" in str(exc).lower() or type(exc).__name__ == "DocumentTooLarge"


def _skip_pymongo_exit_hook() -> None:
    """Drop pymongo's exit hook once our client is closed: it would only wait (up to half a
    second, measured in bench/roundtrip) for the closed client's daemon threads to notice."""
    try:  # only after a client existed, so pymongo is loaded already
        from pymongo.synchronous import monitor
    except ImportError:  # pymongo before 4.9 keeps it elsewhere; the hook then just runs
        return
    hook = getattr(monitor, "_shutdown_resources", None)
    if hook is not None:
        atexit.unregister(hook)


def mongo_client(uri: str) -> Any:
    # Imported on the first write: an entry that stores nothing never pays for pymongo.
    from pymongo import MongoClient

    # Short timeouts: a write that cannot reach the store blocks the entry for at most about
    # 5 s (no server) or 20 s (a server gone silent mid-write), then ``StoreBinding`` buffers it
    # and retries in the background, for as long as the entry runs plus ``LEVRT_STORE_WAIT``.
    return MongoClient(uri, serverSelectionTimeoutMS=5_000, connectTimeoutMS=5_000, socketTimeoutMS=20_000,
                       appname="levrt-runtime")
