"""Breakpoints inside a task: ``breakpoint()`` and ``pdb.set_trace()`` wait for ``levrt attach``.

Why: a task container has no terminal. Its stdin is ``/dev/null``, so the standard pdb reads EOF,
quits and ends the entry with a bare ``BdbQuit``; a Pod with ``stdin: true`` would instead block
forever when nobody attaches. So before the entry runs, the runtime calls ``install()``, which
routes ``sys.breakpointhook`` and ``pdb.set_trace`` here. At a breakpoint the process serves a
``pdb.Pdb`` on a Unix socket inside the container (``/tmp/levrt-debug.sock``, or
``$LEVRT_DEBUG_SOCKET``), prints one line to stderr naming the breakpoint and the command to
attach, and waits ``$LEVRT_DEBUG_WAIT`` seconds (default 300, read at each breakpoint; 0 skips
breakpoints) for one client. ``levrt attach`` execs ``bridge()`` (the bundled Python) into the
container (``levrt.runtime.bridge``); it connects to the socket and copies bytes between it
and the exec stream.

What happens, in every case (none of them hangs for good or ends the entry obscurely):

- Nobody attaches within the wait: one stderr line says so, and the entry goes on as if the
  breakpoint were not there. Each later breakpoint waits again.
- ``c`` continues; the session ends, unless breakpoints set with ``b`` remain: then the client
  stays attached until the next stop or the end of the entry.
- ``q`` ends the entry with ``DebuggerQuit`` (a ``bdb.BdbQuit``): exit status 1 and a task reason
  saying the debugger quit it at that line.
- The client leaving (Ctrl-D, Ctrl-C in ``levrt attach``, a broken connection) detaches; the
  entry continues.
- SIGINT or SIGTERM (``task.signal()``, ``levrt kill``, a timeout, the Pod's deletion) while
  waiting or attached ends the session and raises KeyboardInterrupt in the entry, as it would
  without a debugger. A coroutine entry gets asyncio's treatment instead: the session ends and
  the entry is cancelled at its next ``await``.
- A second client while one is attached is told so and refused (the bridge exits ``EXIT_BUSY``).
- ``PYTHONBREAKPOINT=0`` disables ``breakpoint()`` as in plain Python, and another hook named
  there is used instead of this one.

One stop is served at a time: a breakpoint reached by another thread meanwhile waits its turn.
Standard library only (this runs in every task container). Longer than the house's 450 lines: the
debugger session is one idea, and its cases above are easier to follow in one file.
"""

from __future__ import annotations

import bdb
import contextlib
import math
import os
import pdb
import select
import socket
import stat
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from types import FrameType
from typing import IO, Any, cast

from levrt.podenv import (
    DEBUG_SOCKET_ENV,
    DEBUG_WAIT_ENV,
    DEFAULT_DEBUG_WAIT,
    JOB_ENV,
    PAYLOAD_ENV,
    SERVICE_PAYLOAD_PREFIX,
    TASK_ENV,
)
from levrt.runtime.bridge import BUSY, HELLO, socket_path

__all__ = [
    "DEFAULT_WAIT",
    "DebuggerQuit",
    "breakpointhook",
    "install",
    "installed",
    "set_trace",
    "wait_seconds",
]

DEFAULT_WAIT = DEFAULT_DEBUG_WAIT
MAX_WAIT = 7 * 86400.0  # a week: "as long as it takes", still a number a socket timeout accepts

# After saying goodbye the debugger waits this long for the client to hang up, so the bridge has
# exited (and the exec reported its status) before the entry goes on and maybe ends the container.
LINGER = 1.0
# How often a wait (for a client, for a line) looks whether asyncio cancelled a coroutine entry.
POLL = 0.25

_RUNTIME_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_OWN_HOOKS = ("", "pdb.set_trace", "levrt.runtime.debug.set_trace")


class DebuggerQuit(bdb.BdbQuit):
    """The person at ``levrt attach`` typed ``q``: the entry ends here (the task fails)."""


class _Interrupted(BaseException):
    """SIGINT (or SIGTERM, handled alike) arrived at the debugger prompt. pdb's command loop
    swallows KeyboardInterrupt; this one passes through it and becomes a KeyboardInterrupt in the
    entry."""


class _Cancelled(BaseException):
    """asyncio cancelled the coroutine entry we are blocking (its answer to SIGINT)."""


def _cancel_requested() -> bool:
    """Whether asyncio was asked to cancel the coroutine entry this thread runs: a SIGINT only
    marks the task, which notices at its next ``await``, so a debugger blocking its event loop
    has to look."""
    asyncio = sys.modules.get("asyncio")  # a plain entry never loads it (a task's start stays cheap)
    if asyncio is None:
        return False
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no event loop in this thread: a plain entry, where SIGINT raises
        return False
    return task is not None and task.cancelling() > 0


def wait_seconds(env: Mapping[str, str] | None = None) -> float:
    """How long a breakpoint waits for ``levrt attach``: ``$LEVRT_DEBUG_WAIT`` seconds (default
    ``DEFAULT_WAIT``; 0 or less: breakpoints are skipped). A value that is not a number is
    reported once and the default used."""
    env = os.environ if env is None else env
    raw = (env.get(DEBUG_WAIT_ENV) or "").strip()
    if not raw:
        return DEFAULT_WAIT
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if math.isnan(value):
        _say_once(f"levrt: {DEBUG_WAIT_ENV}={raw!r} is not a number of seconds; using {DEFAULT_WAIT:g}")
        return DEFAULT_WAIT
    return min(max(value, 0.0), MAX_WAIT)


def _task_hint(env: Mapping[str, str]) -> str:
    """The ``levrt attach`` arguments naming this container: ``12.3``, plus ``-c NAME`` in a service."""
    job, task = env.get(JOB_ENV), env.get(TASK_ENV)
    hint = f"{job}.{task}" if job and task else "TASK"
    payload = os.path.basename(env.get(PAYLOAD_ENV) or "")
    if payload.startswith(SERVICE_PAYLOAD_PREFIX):
        hint += f" -c {payload.removeprefix(SERVICE_PAYLOAD_PREFIX)}"
    return hint


def _where(frame: FrameType) -> str:
    return f"{frame.f_code.co_filename}:{frame.f_lineno} (in {frame.f_code.co_name})"


_said: set[str] = set()


def _say(message: str) -> None:
    """One line on the container's stderr, which ``levrt logs`` shows."""
    try:
        print(message, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass  # no stderr to tell: the behaviour is the same


def _say_once(message: str) -> None:
    if message not in _said:
        _said.add(message)
        _say(message)


class _Client:
    """One connection from a bridge, as pdb's stdin and stdout: a broken connection reads as EOF
    and swallows writes, so it can never raise into the entry."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.gone = False
        self._pending = b""

    def readline(self, size: int = -1) -> str:
        while b"\n" not in self._pending and not self.gone:
            ready, _, _ = select.select([self.sock], [], [], POLL)
            if not ready:
                if _cancel_requested():
                    raise _Cancelled
                continue
            try:
                chunk = self.sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                chunk = b""
            if not chunk:
                self.gone = True
            self._pending += chunk
        line, newline, self._pending = self._pending.partition(b"\n")
        return (line + newline).decode("utf-8", "replace")

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                self.sock.sendall(text.encode("utf-8", "replace"))
            except OSError:
                self.gone = True
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def alive(self) -> bool:
        """Whether the client is still there (without blocking: a hung-up peer reads as EOF)."""
        if self.gone:
            return False
        if self._pending:
            return True
        try:
            peeked = self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True
        except OSError:
            peeked = b""
        self.gone = not peeked
        return not self.gone

    def goodbye(self, message: str | None) -> None:
        """Say ``message``, hang up our side, and give the client ``LINGER`` seconds to hang up."""
        if message:
            self.write(message + "\n")
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(LINGER)
            deadline = time.monotonic() + LINGER
            while time.monotonic() < deadline and self.sock.recv(4096):
                pass
        except OSError:
            pass
        finally:
            self.gone = True
            self.sock.close()


class _Session:
    """The process's debugger socket and the one client attached to it, if any."""

    def __init__(self) -> None:
        self.client: _Client | None = None
        self.stop_lock = threading.RLock()  # one stop at a time, whatever the thread
        self._lock = threading.RLock()
        self._listener: socket.socket | None = None
        self._path = ""
        self._refuser: threading.Thread | None = None
        self._refusing = threading.Event()

    # -- pdb's stdin and stdout: whoever is attached now ------------------------------------------

    def readline(self, size: int = -1) -> str:
        client = self.client
        return client.readline() if client is not None else ""

    def write(self, text: str) -> int:
        client = self.client
        return client.write(text) if client is not None else len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:
        return "utf-8"

    # -- attaching -----------------------------------------------------------------------------

    def attached(self) -> bool:
        client = self.client
        if client is not None and not client.alive():
            self.detach(None)
        return self.client is not None

    def wait_for_client(self, where: str, env: Mapping[str, str] | None = None) -> bool:
        """Whether someone is attached at ``where``: already, or within the configured wait."""
        env = os.environ if env is None else env
        with self._lock:
            if self.attached():
                return True
            wait = wait_seconds(env)
            if wait <= 0:
                _say_once(f"levrt: breakpoint at {where} skipped ({DEBUG_WAIT_ENV}={env.get(DEBUG_WAIT_ENV)})")
                return False
            path = socket_path(env)
            try:
                listener = self._listen(path)
            except OSError as exc:
                _say(f"levrt: breakpoint at {where}: cannot listen for `levrt attach` on {path} ({exc}); "
                     f"continuing without stopping. Set {DEBUG_SOCKET_ENV} to a writable path.")
                return False
            _say(f"levrt: breakpoint at {where}; attach with: levrt attach {_task_hint(env)} (waiting {wait:g} s)")
            try:
                conn = self._accept(listener, wait)
            except _Cancelled:
                self._close_listener()
                _say(f"levrt: the task was interrupted; continuing without stopping at {where}")
                return False
            except BaseException:  # an interrupt while waiting: it goes on into the entry
                self._close_listener()
                raise
            if conn is None:
                self._close_listener()
                _say(f"levrt: nobody attached within {wait:g} s; continuing without stopping at {where}")
                return False
            self.client = _Client(conn)
            self.client.write(HELLO.decode())
            self.client.write(f"levrt: attached to task {_task_hint(env)} at {where}. "
                              "pdb commands: c continues, q ends the entry, Ctrl-D detaches.\n")
            self._start_refusing(listener)
            _say(f"levrt: debugger attached at {where}")
            return True

    def detach(self, message: str | None, *, log: str | None = None, block: bool = True) -> None:
        """End the session: tell the client ``message`` (if still there), close the socket.
        ``block=False``: do nothing if another thread is waiting for a client right now."""
        if not self._lock.acquire(blocking=block):
            return
        try:
            client, self.client = self.client, None
            # The socket goes first: a client told "the session ends" may attach again at once
            # (the next breakpoint), and must then wait for a new socket, not be refused as busy.
            self._close_listener()
            if client is not None:
                client.goodbye(message)
        finally:
            self._lock.release()
        if log:
            _say(log)

    def _listen(self, path: str) -> socket.socket:
        if self._listener is not None:
            return self._listener
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        try:
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                os.unlink(path)  # left by a process that was killed: nobody listens there
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(path)
            os.chmod(path, 0o600)  # the bridge runs as the container's user, like the entry
            listener.listen(8)
        except BaseException:
            listener.close()
            raise
        self._listener, self._path = listener, path
        return listener

    @staticmethod
    def _accept(listener: socket.socket, wait: float) -> socket.socket | None:
        deadline = time.monotonic() + wait
        while (remaining := deadline - time.monotonic()) > 0:
            listener.settimeout(min(remaining, POLL))
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                if _cancel_requested():
                    raise _Cancelled from None
                continue
            conn.setblocking(True)
            return conn
        return None

    def _close_listener(self) -> None:
        self._refusing.clear()
        refuser, self._refuser = self._refuser, None
        if refuser is not None:
            refuser.join(1.0)
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
            try:
                os.unlink(self._path)
            except OSError:
                pass

    def _start_refusing(self, listener: socket.socket) -> None:
        """While a client is attached, answer every other one "busy" and hang up."""
        self._refusing.set()
        self._refuser = threading.Thread(target=self._refuse, args=(listener,), name="levrt-debug-refuser",
                                         daemon=True)
        self._refuser.start()

    def _refuse(self, listener: socket.socket) -> None:
        message = (b"levrt: someone is already attached to this task's debugger; "
                   b"try again once they detach.\n")
        while self._refusing.is_set():
            try:
                ready, _, _ = select.select([listener], [], [], 0.1)
                if not ready:
                    continue
                other, _ = listener.accept()
            except (OSError, ValueError):
                return
            try:
                other.sendall(BUSY + message)
            except OSError:
                pass
            finally:
                other.close()


_SESSION = _Session()


def _breakpoints_set() -> bool:
    return any(bp is not None and bp.enabled for bp in bdb.Breakpoint.bpbynumber)


class _Debugger(pdb.Pdb):
    """pdb over the session's socket, with the ends of a session decided as the module says."""

    def __init__(self, session: _Session) -> None:
        terminal = cast(IO[str], session)
        super().__init__(stdin=terminal, stdout=terminal, nosigint=True, readrc=False)
        self.session = session
        self._stopped_at = "?"

    def stop_here(self, frame: FrameType) -> bool:
        # levrt's own frames (the runtime calling the entry, this module) are not the user's code.
        if frame.f_code.co_filename.startswith(_RUNTIME_DIR):
            return False
        return super().stop_here(frame)

    def interaction(self, frame: FrameType | None, traceback: Any) -> None:
        with self.session.stop_lock:
            if frame is not None:
                self._stopped_at = _where(frame)
            if not self.session.wait_for_client(self._stopped_at):
                self.set_continue()  # nobody to ask: run on, as without a debugger
                return
            super().interaction(frame, traceback)

    def cmdloop(self, intro: str | None = None) -> None:
        try:
            super().cmdloop(intro)
        except KeyboardInterrupt:
            raise _Interrupted from None
        except _Cancelled:  # a coroutine entry: let it run to its next await, where it is cancelled
            self.set_continue()
            self.session.detach("levrt: the task was interrupted (SIGINT or SIGTERM); the session ends and "
                                "the entry is cancelled at its next await.",
                                log=f"levrt: interrupted at the debugger prompt at {self._stopped_at}")

    def trace_dispatch(self, frame: FrameType, event: str, arg: Any) -> Any:
        try:
            return super().trace_dispatch(frame, event, arg)
        except (_Interrupted, KeyboardInterrupt) as exc:  # at the prompt, or waiting for a client
            sys.settrace(None)
            if isinstance(exc, _Interrupted):
                self.session.detach("levrt: the task was interrupted (SIGINT or SIGTERM); the session ends and "
                                    "the entry gets KeyboardInterrupt.",
                                    log=f"levrt: interrupted at the debugger prompt at {self._stopped_at}")
            raise KeyboardInterrupt from None
        except DebuggerQuit:
            raise
        except bdb.BdbQuit:
            sys.settrace(None)
            raise DebuggerQuit(f"quit in the debugger (levrt attach) at {self._stopped_at}") from None

    # -- how a session ends --------------------------------------------------------------------

    def do_continue(self, arg: str) -> bool | None:
        super().do_continue(arg)
        if _breakpoints_set():
            self.message("levrt: continuing; still attached until the next breakpoint (Ctrl-D detaches).")
        else:
            self.session.detach("levrt: the entry continues; the debugger session ends.",
                                log=f"levrt: debugger detached at {self._stopped_at}; the entry continues")
        return True

    do_c = do_cont = do_continue

    def do_quit(self, arg: str) -> bool | None:
        super().do_quit(arg)
        self.session.detach(f"levrt: quitting: the entry ends with DebuggerQuit at {self._stopped_at}; "
                            "the task fails.",
                            log=f"levrt: the debugger quit the entry at {self._stopped_at}")
        return True

    do_q = do_exit = do_quit

    def do_EOF(self, arg: str) -> bool | None:
        self.set_continue()
        self.session.detach(None, log=f"levrt: the debugger client left at {self._stopped_at}; the entry continues")
        return True

    def _unavailable(self, arg: str) -> None:
        self.error("not available through levrt attach (no terminal in the task); "
                   "use ! statements instead, e.g. !import os; !print(os.getcwd())")

    do_interact = do_run = do_restart = _unavailable


def _stop(frame: FrameType, header: str | None = None) -> None:
    """Stop the entry at ``frame`` under the debugger, if someone attaches in time."""
    with _SESSION.stop_lock:
        if not _SESSION.wait_for_client(_where(frame)):
            return
        debugger = _Debugger(_SESSION)
        if header is not None:
            debugger.message(header)
        debugger.set_trace(frame)


def set_trace(*, header: str | None = None) -> None:
    """``pdb.set_trace()`` in a task: wait for ``levrt attach`` here (see the module)."""
    frame = sys._getframe(1)
    _stop(frame, header)


def breakpointhook(*args: Any, **kwargs: Any) -> Any:
    """``sys.breakpointhook`` in a task: ``breakpoint()`` as ``set_trace``, honouring ``PYTHONBREAKPOINT``."""
    hook = os.environ.get("PYTHONBREAKPOINT", "")
    if hook == "0":
        return None
    if hook not in _OWN_HOOKS:
        return sys.__breakpointhook__(*args, **kwargs)
    frame = sys._getframe(1)
    _stop(frame, kwargs.get("header"))
    return None


def install() -> None:
    """Route ``breakpoint()`` and ``pdb.set_trace()`` to the attachable debugger."""
    sys.breakpointhook = breakpointhook
    pdb.set_trace = set_trace


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """``install()`` for the time of the entry (the runtime wraps the entry in it); afterwards the
    previous hooks are back and a client still attached is told the entry ended."""
    saved = sys.breakpointhook, pdb.set_trace
    install()
    try:
        yield
    finally:
        sys.breakpointhook, pdb.set_trace = saved
        _SESSION.detach("levrt: the entry ended; the debugger session ends.", block=False)
