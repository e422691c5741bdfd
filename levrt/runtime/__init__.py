"""The in-container side of levrt: run one pickled entry and record what it ``lev.set``s.

Why: entries run inside images that have no Python. The init container copies a bundled
CPython (with this package, cloudpickle and pymongo) to ``/levrt``, and the main container runs
``/levrt/bin/python3 -m levrt.runtime``. This module reads the payload named by
``LEVRT_PAYLOAD``, checks versions before unpickling, binds ``lev`` to the task's record and
runs the entry. It imports only the standard library, cloudpickle and pymongo (DESIGN.md,
"Import rule"); pymongo only when the entry first writes.

Exit codes: 0 the entry returned (also after catching KeyboardInterrupt); 1 the entry raised;
2 the runtime environment is incomplete; 3 the payload cannot be read here (version
mismatch, corrupt); 124 the entry reached its ``timeout`` (``LEVRT_TIMEOUT``, see
``levrt.runtime.timeout``: interrupted at the deadline, ended hard ``TIMEOUT_GRACE`` = 10 s later,
124 whether or not it caught the interrupt); 130 an interrupt the entry did not catch. A one-line
reason goes to the termination message (``/dev/termination-log``, or ``LEVRT_TERMINATION_LOG``),
the traceback to stderr.

Interrupts (``task.signal()``, Pod deletion, the timeout): SIGINT raises KeyboardInterrupt in a plain entry;
SIGTERM does exactly what SIGINT does. A coroutine entry gets asyncio's standard treatment of
Ctrl-C instead: its task is cancelled (``asyncio.CancelledError`` at the ``await``), and the
runtime exits 130 only if the cancellation escapes the entry. Either way an entry that catches
the interrupt and returns exits 0, with what it stored so far.
"""

from __future__ import annotations

import atexit
import inspect
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from levrt import context
from levrt._stored import (
    ARTIFACTS,
    RECORD_BUDGET,
    SPILL_BYTES,
    check_field_name,
    placeholder,
    put_back,
    stored_apart,
)
from levrt.errors import PayloadError, StoreError
from levrt.payload import loads_call
from levrt.runtime import blobs, debug, foreign
from levrt.runtime.timeout import EXIT_TIMED_OUT, Deadline, timed_out_reason

__all__ = [
    "EXIT_ENTRY_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PAYLOAD",
    "EXIT_SETUP",
    "EXIT_TIMED_OUT",
    "RuntimeConfig",
    "StoreBinding",
    "main",
    "short_reason",
]

EXIT_OK = 0
EXIT_ENTRY_FAILED = 1
EXIT_SETUP = 2
EXIT_PAYLOAD = 3
EXIT_INTERRUPTED = 130

TERMINATION_LOG = "/dev/termination-log"
REASON_LIMIT = 1024


class SetupError(Exception):
    """The container was started without what the runtime needs (an env var, the payload)."""


@dataclass(frozen=True)
class RuntimeConfig:
    """What the Pod tells the runtime, through environment variables set by ``levrt._shapes.build``."""

    payload: str
    store_uri: str | None
    database: str
    collection: str
    job: int
    task: int
    termination_log: str = TERMINATION_LOG

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RuntimeConfig:
        missing = [k for k in ("LEVRT_PAYLOAD", "LEVRT_JOB", "LEVRT_TASK") if not env.get(k)]
        if missing:
            raise SetupError(
                f"{', '.join(missing)} not set: levrt.runtime runs inside a levrt task Pod, which sets them. "
                "To run an entry by hand, use levrt.payload.loads_call on the payload."
            )
        try:
            job, task = int(env["LEVRT_JOB"]), int(env["LEVRT_TASK"])
        except ValueError:
            raise SetupError(
                f"LEVRT_JOB={env['LEVRT_JOB']!r}/LEVRT_TASK={env['LEVRT_TASK']!r} must be integers."
            ) from None
        return cls(
            payload=env["LEVRT_PAYLOAD"],
            store_uri=env.get("LEVRT_STORE_URI") or None,
            database=env.get("LEVRT_DB") or "levrt",
            collection=env.get("LEVRT_COLLECTION") or "default",
            job=job,
            task=task,
            termination_log=env.get("LEVRT_TERMINATION_LOG") or TERMINATION_LOG,
        )


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
    """

    config: RuntimeConfig
    connect: Callable[[str], Any] | None = None
    _client: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _write_lock: threading.RLock = field(default_factory=threading.RLock)
    _sizes: dict[str, int] = field(default_factory=dict)
    """Encoded size of each field this task stored inline (placeholders included)."""
    _artifacts: list[dict[str, Any]] | None = None

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
                        "lev.set needs the store, but LEVRT_STORE_URI is empty. The levrt-store Secret "
                        "(key uri) must exist in the task's namespace: install the levrt chart."
                    )
                connect = self.connect or _mongo_client
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
        collection = self._collection()
        with self._write_lock:
            encoded = _encoded(fields)
            for attempt in (1, 2):
                update, sizes = self._inline(fields, encoded)
                try:
                    collection.update_one({"_id": self.record_id}, {"$set": update}, upsert=True)
                    break
                except Exception as exc:
                    if attempt == 1 and _too_large(exc):
                        self._measure_record()  # written by an earlier Pod of this task: learn its size
                        continue
                    raise StoreError(f"lev.set: the store refused the update of {sorted(fields)}: {exc}") from exc
            self._account(sizes)

    def _inline(self, fields: Mapping[str, Any], encoded: Mapping[str, bytes]) -> tuple[dict[str, Any], dict[str, int]]:
        """The ``$set`` to send, with the fields to store apart stored and replaced by placeholders,
        and the inline size of each field. What the record holds already stays: if that alone is
        over the budget (an earlier Pod of the task wrote it), every new field goes apart."""
        kept = {k: v for k, v in self._sizes.items() if not any(_covers(key, k) for key in fields)}
        apart = {key for key, blob in encoded.items() if len(blob) > SPILL_BYTES}
        total = sum(kept.values()) + sum(len(blob) for key, blob in encoded.items() if key not in apart)
        for key in sorted(encoded, key=lambda k: len(encoded[k]), reverse=True):
            if total <= RECORD_BUDGET:
                break
            if key not in apart:
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
        """What this task stored so far, values stored apart put back (``lev.doc.get()``)."""
        found = self._collection().find_one({"_id": self.record_id}, {"_id": 0})
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
            self._collection().update_one({"_id": self.record_id}, {"$set": {ARTIFACTS: self._artifacts}},
                                          upsert=True)
            self._account({ARTIFACTS: len(blobs.encode_value(self._artifacts))})
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

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            _skip_pymongo_exit_hook()


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


def _mongo_client(uri: str) -> Any:
    # Imported on the first write: an entry that stores nothing never pays for pymongo.
    from pymongo import MongoClient

    return MongoClient(uri, serverSelectionTimeoutMS=30_000, appname="levrt-runtime")


def short_reason(exc: BaseException) -> str:
    """``"ValueError: boom"``, one line, at most ``REASON_LIMIT`` bytes: the termination message."""
    text = f"{type(exc).__name__}: {exc}".strip().replace("\n", " ")
    encoded = text.encode()
    if len(encoded) > REASON_LIMIT:
        text = encoded[: REASON_LIMIT - 3].decode(errors="ignore") + "..."
    return text


def _write_reason(path: str, reason: str) -> None:
    try:
        with open(path, "w") as fh:
            fh.write(reason)
    except OSError:
        pass  # outside Kubernetes there is no termination log; stderr still has everything


def _forward_to_sigint(signum: int, frame: Any) -> None:
    """SIGTERM runs whatever handles SIGINT now: KeyboardInterrupt, or asyncio's task cancel."""
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:
        signal.default_int_handler(signal.SIGINT, frame)


def _install_signal_handlers() -> None:
    """SIGINT (and SIGTERM) raise KeyboardInterrupt in the entry.

    As PID 1 of a container the process gets no default signal dispositions from the kernel:
    without explicit handlers `task.signal()` would do nothing at all. ``asyncio.run`` replaces
    the SIGINT handler by one cancelling the main task only if it finds this default one.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _forward_to_sigint)


def _ignore_signals() -> None:
    """After the entry: a late interrupt must not turn a finished run into a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def run_entry(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    result = func(*args, **kwargs)
    if inspect.iscoroutine(result):
        import asyncio  # only coroutine entries need an event loop: loading it costs every task ~30 ms

        return asyncio.run(result)
    return result


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    termination_log = env.get("LEVRT_TERMINATION_LOG") or TERMINATION_LOG
    try:
        config = RuntimeConfig.from_env(env)
        with open(config.payload, "rb") as fh:
            blob = fh.read()
    except (SetupError, OSError) as exc:
        print(f"levrt runtime: {exc}", file=sys.stderr)
        _write_reason(termination_log, short_reason(exc))
        return EXIT_SETUP

    try:
        func, args, kwargs = loads_call(blob)
    except PayloadError as exc:
        print(f"levrt runtime: {exc}", file=sys.stderr)
        _write_reason(config.termination_log, short_reason(exc))
        return EXIT_PAYLOAD

    try:
        deadline = Deadline.from_env(env, on_hard_end=lambda reason: _write_reason(config.termination_log, reason))
    except ValueError as exc:
        print(f"levrt runtime: {exc}", file=sys.stderr)
        _write_reason(config.termination_log, short_reason(exc))
        return EXIT_SETUP

    sys.argv = ["levrt-entry", *(argv if argv is not None else sys.argv[1:])]
    binding = StoreBinding(config)
    context.bind_task(binding)
    _install_signal_handlers()
    foreign.install()
    code = EXIT_OK
    try:
        with debug.installed():  # breakpoint()/pdb.set_trace() wait for `levrt attach` (debug.py)
            if deadline is not None:
                deadline.start()
            run_entry(func, args, kwargs)
    except KeyboardInterrupt as exc:
        traceback.print_exc()
        _write_reason(config.termination_log, "KeyboardInterrupt: the entry did not handle the interrupt")
        del exc
        code = EXIT_INTERRUPTED
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)  # sys.exit("message"), as Python itself reports it
        if code:
            _write_reason(config.termination_log, short_reason(exc))
    except BaseException as exc:
        traceback.print_exc()
        _write_reason(config.termination_log, short_reason(exc))
        code = EXIT_ENTRY_FAILED
    finally:
        if deadline is not None:
            deadline.cancel()
        _ignore_signals()
        sys.stdout.flush()
        sys.stderr.flush()
        binding.close()
    if deadline is not None and deadline.fired:
        # Timed out, whether the entry saved its partial results and returned or not.
        _write_reason(config.termination_log, timed_out_reason(deadline.seconds))
        return EXIT_TIMED_OUT
    return code
