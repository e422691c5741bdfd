"""The warm Pod's worker: ``python -m levrt.runtime.warm`` runs the entries its job addresses to this Pod.

Why a long-lived worker: a tiny entry costs a Pod's creation, scheduling, sandbox and runtime start
(about a second here) for milliseconds of work. A warm Pod pays that once; the job then hands it
entries through the store (``levrt.warmqueue``), and each runs in a child process forked from this
one, the task runtime (``levrt.runtime.process``) already imported. So each entry keeps what a task
promises: its own process, record (``LEVRT_TASK``), output, deadline, signals and exit code; an
entry that fails or crashes ends its child, never the worker. Entries run one after another; they
share the container's filesystem and whatever processes an entry leaves behind.

The worker takes only documents addressed to it (``worker`` = ``LEVRT_WARM_WORKER``), so two Pods
never race for an entry, and runs only those its job signed under the pool's key
(``LEVRT_WARM_KEY``, ``levrt.warmqueue.entry_mac``): the queue is writable by any task. It never
decides it is done: the job deletes its warm Pods when they idle (``levrt._core.warm``), and the
job's Lease owns them. SIGTERM ends the running entry (SIGTERM to
it, as a Pod's deletion would) and then the worker; the job runs that entry again elsewhere.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import pickle
import select
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from levrt.podenv import (
    COLLECTION_ENV,
    DATABASE_ENV,
    DEFAULT_DATABASE,
    JOB_ENV,
    PAYLOAD_ENV,
    STORE_URI_ENV,
    TASK_ENV,
    TERMINATION_LOG_ENV,
    TIMEOUT_ENV,
    TIMEOUT_GRACE,
    WARM_KEY_ENV,
    WARM_WORKER_ENV,
)
from levrt.runtime import process
from levrt.runtime.record import mongo_client
from levrt.warmqueue import ENDED, QUEUE, QUEUED, RUNNING, entry_mac, log_field

__all__ = ["Worker", "main"]

IDLE_POLL = (0.005, 0.05)
"""Seconds between looks for the next entry: the first after an entry, and the longest when idle."""
SIGNAL_POLL = 0.5
"""Seconds between looks for a signal the job asks to deliver to the running entry."""
TAIL_EVERY = 2.0
"""Seconds between copies of a running entry's output to its document (``levrt logs`` while it runs)."""
TAIL_BYTES = 64 * 1024
HARD_END_MARGIN = 15.0
"""Seconds past an entry's timeout and grace after which the worker kills what is left of it."""
END_WRITE_TRIES = 60
EXIT_SIGNALLED_BASE = 128
EXIT_REFUSED = 3
"""An entry not signed by the job (the runtime's code for a payload it cannot take)."""


class _EndWatch:
    """Waits for a child's end: woken by the kernel the moment it exits (a pidfd), not by polling."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        try:
            self._fd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):  # a kernel before 5.3: look every few milliseconds
            self._fd = None

    def wait(self, seconds: float) -> int | None:
        """The child's wait status once it ended within ``seconds``, else None."""
        deadline = time.monotonic() + max(seconds, 0.0)
        if self._fd is not None:
            select.select([self._fd], [], [], max(seconds, 0.0))
        while True:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                return status
            if self._fd is not None or time.monotonic() >= deadline:
                return None
            time.sleep(0.005)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)


@dataclass
class _Spare:
    """A forked child waiting for its entry on a pipe."""

    pid: int
    pipe: int

    def send(self, message: bytes) -> None:
        """The message, after its length: a child reads that much, not up to the pipe's end (another
        child forked meanwhile may hold a copy of this pipe's end open)."""
        try:
            view = memoryview(len(message).to_bytes(8, "big") + message)
            while view:
                view = view[os.write(self.pipe, view):]
        finally:
            os.close(self.pipe)


class Worker:
    """The loop of one warm Pod over ``queue`` (a pymongo collection, or anything with its methods)."""

    def __init__(self, queue: Any, *, name: str, env: Mapping[str, str],
                 connect: Callable[[Mapping[str, str]], Any] | None = None,
                 run_child: Callable[[Mapping[str, Any], dict[str, str], Any], int] | None = None) -> None:
        self.queue = queue
        self.name = name
        self.key = env.get(WARM_KEY_ENV, "")
        self.env = {k: v for k, v in env.items() if k not in (WARM_WORKER_ENV, WARM_KEY_ENV)}
        self.connect = connect
        """Called in each entry's process before its entry comes: the store client ``lev.set`` uses."""
        self.run_child = run_child or _child_main
        self.stopping = False
        self._child: int | None = None
        self._spare: _Spare | None = None

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop after the running entry, which gets ``signum`` now (the waiting child ends with the worker)."""
        self.stopping = True
        if self._child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._child, signum)

    def run(self) -> int:
        pause = IDLE_POLL[0]
        while not self.stopping:
            try:  # the entries addressed here, oldest first (only this Pod runs its own: no race)
                found = list(self.queue.find({"worker": self.name, "state": QUEUED}, sort=[("queued", 1)]))
            except Exception as exc:  # the store is away: the job's entries wait for it
                print(f"levrt warm: cannot read the queue ({_short(exc)}); trying again", file=sys.stderr, flush=True)
                time.sleep(1.0)
                continue
            if not found:
                time.sleep(pause)
                pause = min(pause * 2, IDLE_POLL[1])
                continue
            pause = IDLE_POLL[0]
            for doc in found:
                if self.stopping:
                    break
                self.run_entry(doc)
        return 0

    def run_entry(self, doc: Mapping[str, Any]) -> None:
        """Run one entry in a child process and write its end. Its document says ``running`` only once it
        has run ``SIGNAL_POLL`` seconds: a tiny entry's one write to the queue is its end."""
        key = doc["_id"]
        started_at = time.time()
        if not self.key or not hmac.compare_digest(str(doc.get("mac", "")), entry_mac(self.key, doc)):
            reason = "Refused: this entry is not signed by the job that made this warm Pod"
            print(f"entry {key}: refused (its signature does not match)", file=sys.stderr, flush=True)
            self._write_end(key, {"state": ENDED, "exit": EXIT_REFUSED, "reason": reason, "started": started_at,
                                  "ended": time.time(), **log_field(b"")})
            return
        workdir = tempfile.mkdtemp(prefix="levrt-entry-")
        started = time.monotonic()
        try:
            env = self._entry_env(doc, workdir)
            with open(env[PAYLOAD_ENV], "wb") as fh:
                fh.write(bytes(doc["payload"]))
            log_path = os.path.join(workdir, "output")
            code = self._supervise(doc, env, log_path)
            if self.stopping:  # this Pod is going away: the job runs the entry again elsewhere
                print(f"entry {key}: ended by this Pod's end (exit {code}); left to the job", flush=True)
                return
            reason = _read(env[TERMINATION_LOG_ENV]).decode("utf-8", errors="replace").strip()
            output = _read(log_path)
            self._write_end(key, {"state": ENDED, "exit": code, "reason": reason, "started": started_at,
                                  "ended": time.time(), **log_field(output)})
            print(f"entry {key}: exit {code} in {time.monotonic() - started:.3f} s", flush=True)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _write_end(self, key: str, fields: Mapping[str, Any]) -> None:
        """An entry's end into its document, tried again while the store is away (``END_WRITE_TRIES``
        times, a second apart); then the worker fails and the job runs the entry again elsewhere."""
        for attempt in range(1, END_WRITE_TRIES + 1):
            try:
                self.queue.update_one({"_id": key}, {"$set": dict(fields)})
                return
            except Exception as exc:
                if attempt == END_WRITE_TRIES:
                    raise
                print(f"levrt warm: cannot write the end of entry {key} ({_short(exc)}); trying again",
                      file=sys.stderr, flush=True)
                time.sleep(1.0)

    def _entry_env(self, doc: Mapping[str, Any], workdir: str) -> dict[str, str]:
        env = dict(self.env)
        env.update({str(k): str(v) for k, v in (doc.get("env") or {}).items()})
        env[PAYLOAD_ENV] = os.path.join(workdir, "payload")
        env[TERMINATION_LOG_ENV] = os.path.join(workdir, "reason")
        env[TASK_ENV] = str(doc["task"])
        env[COLLECTION_ENV] = str(doc["collection"])
        if doc.get("timeout") is not None:
            env[TIMEOUT_ENV] = str(doc["timeout"])
        return env

    def _supervise(self, doc: Mapping[str, Any], env: dict[str, str], log_path: str) -> int:
        """Hand the entry to the waiting child process, deliver the signals the job asks for, end it
        past its deadline; its exit code (128 + N when a signal N ended it)."""
        spare = self._spare if self._spare is not None else self._fork_spare()
        self._spare = None
        pid = spare.pid
        self._child = pid
        try:
            # The payload is in its file already (LEVRT_PAYLOAD): not sent through the pipe again.
            spare.send(pickle.dumps(({k: v for k, v in doc.items() if k != "payload"}, env, log_path)))
        except OSError:  # it died waiting (killed by hand?): its exit says so
            pass
        self._spare = self._fork_spare()  # the next entry's process connects while this one runs
        timeout = doc.get("timeout")
        hard_end = None if timeout is None else time.monotonic() + float(timeout) + TIMEOUT_GRACE + HARD_END_MARGIN
        now = time.monotonic()
        next_signal, next_tail, tail_size, delivered = now + SIGNAL_POLL, now + TAIL_EVERY, 0, -1
        ended = _EndWatch(pid)
        try:
            while True:
                status = ended.wait(min(next_signal, next_tail, hard_end or next_tail) - time.monotonic())
                if status is not None:
                    return _exit_code(status)
                now = time.monotonic()
                if hard_end is not None and now > hard_end:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
                if now >= next_signal:
                    next_signal = now + SIGNAL_POLL
                    delivered = self._deliver(doc["_id"], pid, delivered, first=delivered < 0)
                if now >= next_tail:
                    next_tail = now + TAIL_EVERY
                    tail_size = self._copy_tail(doc["_id"], log_path, tail_size)
        finally:
            ended.close()
            self._child = None

    def _fork_spare(self) -> _Spare:
        """A child process that connects to the store now and then waits for its entry: the entry
        starts with its process made and its connection open (the runtime already imported)."""
        read, write = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 2
            try:
                os.close(write)
                os.setpgid(0, 0)  # the entry's own group: a hard end also reaches what it started
                signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the worker's handlers are not the entry's
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                client = self.connect(self.env) if self.connect is not None else None
                message = _read_message(read)
                if not message:  # the worker ended without an entry for it
                    os._exit(0)
                doc, env, log_path = pickle.loads(message)
                fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                os.close(fd)
                # Python's own streams onto those descriptors (the worker's may have been replaced).
                sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
                sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
                code = self.run_child(doc, env, client)
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    print(f"levrt warm: the entry's process failed: {exc!r}", file=sys.stderr, flush=True)
            finally:
                with contextlib.suppress(Exception):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        os.close(read)
        return _Spare(pid, write)

    def close(self) -> None:
        """End the waiting child (it has no entry), and reap it."""
        spare, self._spare = self._spare, None
        if spare is not None:
            with contextlib.suppress(OSError):
                os.close(spare.pipe)
            with contextlib.suppress(ProcessLookupError):
                os.kill(spare.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(spare.pid, 0)

    def _deliver(self, key: str, pid: int, delivered: int, *, first: bool) -> int:
        """Send the signals the job asked for since the last look (``signal``: [signum, count]); the
        first look also says the entry runs. The count of signals delivered so far."""
        delivered = max(delivered, 0)
        try:
            if first:
                # No projection: FerretDB's findAndModify takes none (``fields``).
                found = self.queue.find_one_and_update({"_id": key}, {"$set": {"state": RUNNING}})
            else:
                found = self.queue.find_one({"_id": key}, {"signal": 1})
        except Exception as exc:  # the store is away a moment: the next look asks again
            print(f"levrt warm: cannot read entry {key} ({_short(exc)})", file=sys.stderr, flush=True)
            return delivered
        asked = (found or {}).get("signal")
        if asked and int(asked[1]) > delivered:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, int(asked[0]))
            return int(asked[1])
        return delivered

    def _copy_tail(self, key: str, log_path: str, last: int) -> int:
        with contextlib.suppress(Exception):
            size = os.path.getsize(log_path)
            if size != last:
                with open(log_path, "rb") as fh:
                    fh.seek(max(0, size - TAIL_BYTES))
                    self.queue.update_one({"_id": key}, {"$set": {"tail": fh.read().decode("utf-8", errors="replace")}})
                return size
        return last


def _child_main(doc: Mapping[str, Any], env: dict[str, str], client: Any) -> int:
    """In the forked child: the task runtime's own main, as a task Pod's container runs it."""
    os.environ.clear()
    os.environ.update(env)
    return process.main(list(doc.get("argv") or []), os.environ,
                        connect=None if client is None else (lambda uri: client))


def _connected(env: Mapping[str, str]) -> Any:
    """A store client with its connection made (a failure is left to the entry's first write)."""
    client = mongo_client(env[STORE_URI_ENV])
    with contextlib.suppress(Exception):
        client.admin.command("ping")
    return client


def _read_message(fd: int) -> bytes:
    """What ``_Spare.send`` sent (empty when the pipe closed first: the worker ended)."""
    def exactly(size: int) -> bytes:
        parts: list[bytes] = []
        while size and (chunk := os.read(fd, min(size, 1 << 20))):
            parts.append(chunk)
            size -= len(chunk)
        return b"".join(parts)

    head = exactly(8)
    message = exactly(int.from_bytes(head, "big")) if len(head) == 8 else b""
    os.close(fd)
    return message


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return EXIT_SIGNALLED_BASE - code if code < 0 else code


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def _short(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


def main(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    name, uri = env.get(WARM_WORKER_ENV), env.get(STORE_URI_ENV)
    if not name or not uri or not env.get(JOB_ENV):
        print(f"levrt warm: {WARM_WORKER_ENV}, {STORE_URI_ENV} and {JOB_ENV} must be set: a warm Pod is made by "
              "its job (Cr(warm=...)).", file=sys.stderr)
        return 2
    import pymongo  # the worker's own client; a task process loads it only when its entry writes

    client: Any = pymongo.MongoClient(uri, serverSelectionTimeoutMS=10_000, connect=False)
    worker = Worker(client[env.get(DATABASE_ENV) or DEFAULT_DATABASE][QUEUE], name=name, env=env, connect=_connected)
    signal.signal(signal.SIGTERM, lambda signum, frame: worker.stop(signum))
    signal.signal(signal.SIGINT, lambda signum, frame: worker.stop(signum))
    print(f"levrt warm Pod {name}: waiting for entries", flush=True)
    try:
        return worker.run()
    finally:
        worker.close()
        client.close()


if __name__ == "__main__":
    sys.exit(main())
