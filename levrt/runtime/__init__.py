"""The in-container side of levrt: run one pickled entry and record what it ``lev.set``s.

Why: entries run inside images that have no Python. The init container copies a bundled
CPython (with this package, cloudpickle and pymongo) to ``/levrt``, and the main container runs
``/levrt/bin/python3 -m levrt.runtime``. This module reads the payload named by
``LEVRT_PAYLOAD``, checks versions before unpickling, binds ``lev`` to the task's record and
runs the entry. It imports only the standard library, cloudpickle and pymongo (DESIGN.md,
"Import rule"); pymongo only when the entry first writes.

Exit codes: 0 the entry returned (also after catching KeyboardInterrupt); 1 the entry raised;
2 the runtime environment is incomplete; 3 the payload cannot be read here (version
mismatch, corrupt); 130 an interrupt the entry did not catch. A one-line reason goes to the
termination message (``/dev/termination-log``, or ``LEVRT_TERMINATION_LOG``), the traceback to
stderr.

Interrupts (``task.signal()``, Pod deletion): SIGINT raises KeyboardInterrupt in a plain entry;
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
from levrt.errors import PayloadError, StoreError
from levrt.payload import loads_call
from levrt.runtime import debug, foreign

__all__ = [
    "EXIT_ENTRY_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PAYLOAD",
    "EXIT_SETUP",
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
    """

    config: RuntimeConfig
    connect: Callable[[str], Any] | None = None
    _client: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def job_id(self) -> int:
        return self.config.job

    @property
    def task_id(self) -> int:
        return self.config.task

    @property
    def record_id(self) -> dict[str, int]:
        return {"job": self.config.job, "task": self.config.task}

    def _collection(self) -> Any:
        with self._lock:
            if self._client is None:
                if not self.config.store_uri:
                    raise SetupError(
                        "lev.set needs the store, but LEVRT_STORE_URI is empty. The levrt-store Secret "
                        "(key uri) must exist in the task's namespace: install the levrt chart."
                    )
                connect = self.connect or _mongo_client
                self._client = connect(self.config.store_uri)
            return self._client[self.config.database][self.config.collection]

    def set(self, data: Mapping[str, Any] | None = None, /, **kwargs: Any) -> None:
        """Merge fields into this task's record (``$set``: the fields given replace their old values)."""
        fields = {**(data or {}), **kwargs}
        for key in fields:
            if not isinstance(key, str) or not key or key.startswith("$") or "\0" in key:
                raise StoreError(
                    f"lev.set: the field name {key!r} cannot be stored; field names are non-empty str "
                    "not starting with '$'."
                )
        if not fields:
            return
        collection = self._collection()
        try:
            collection.update_one({"_id": self.record_id}, {"$set": fields}, upsert=True)
        except Exception as exc:
            culprit = _unencodable_field(fields)
            if culprit is None:
                raise
            raise StoreError(
                f"lev.set: the value of {culprit!r} ({type(fields[culprit]).__name__}) cannot be stored: {exc}. Store "
                "str, int, float, bool, None, bytes, datetime, and lists and dicts of those "
                "(a set → a list, an object → a dict of its fields)."
            ) from exc

    def get(self) -> dict[str, Any] | None:
        found = self._collection().find_one({"_id": self.record_id}, {"_id": 0})
        return dict(found) if found is not None else None

    @property
    def doc(self) -> StoreBinding:
        """Inside an entry ``lev.doc.get()`` reads back what this task stored so far."""
        return self

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            _skip_pymongo_exit_hook()


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


def _unencodable_field(fields: Mapping[str, Any]) -> str | None:
    """The first field whose value BSON cannot encode, or None (the failure was something else)."""
    # Already loaded: the client that just failed is pymongo's.
    import bson

    for key, value in fields.items():
        try:
            bson.encode({key: value})
        except Exception:
            return key
    return None


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

    sys.argv = ["levrt-entry", *(argv if argv is not None else sys.argv[1:])]
    binding = StoreBinding(config)
    context.bind_task(binding)
    _install_signal_handlers()
    foreign.install()
    try:
        with debug.installed():  # breakpoint()/pdb.set_trace() wait for `levrt attach` (debug.py)
            run_entry(func, args, kwargs)
    except KeyboardInterrupt as exc:
        traceback.print_exc()
        _write_reason(config.termination_log, "KeyboardInterrupt: the entry did not handle the interrupt")
        del exc
        return EXIT_INTERRUPTED
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)  # sys.exit("message"), as Python itself reports it
        if code:
            _write_reason(config.termination_log, short_reason(exc))
        return code
    except BaseException as exc:
        traceback.print_exc()
        _write_reason(config.termination_log, short_reason(exc))
        return EXIT_ENTRY_FAILED
    finally:
        _ignore_signals()
        sys.stdout.flush()
        sys.stderr.flush()
        binding.close()
    return EXIT_OK
