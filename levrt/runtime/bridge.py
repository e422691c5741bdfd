"""The attacher's end of a task's debugger: what ``levrt attach`` runs inside the container.

Why apart from ``levrt.runtime.debug``: this side runs in a process of its own, exec'd into the
container by ``levrt attach`` (``/levrt/bin/python3 -I -c "from levrt.runtime.bridge import
bridge; ..."``), and ``levrt attach`` on the client reads its exit statuses. It connects to the
Unix socket the debugger listens on at a breakpoint and copies bytes both ways until the
debugger hangs up. The wire between the two (the socket path, the greeting lines, the exit
statuses) is defined here once; the socket's path and its variable in ``levrt.podenv``. Standard
library only.
"""

from __future__ import annotations

import os
import select
import socket
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from levrt.podenv import DEBUG_SOCKET_ENV, DEFAULT_DEBUG_SOCKET

__all__ = ["BUSY", "DEFAULT_SOCKET", "EXIT_BUSY", "EXIT_NO_BREAKPOINT", "HELLO", "bridge", "socket_path"]

DEFAULT_SOCKET = DEFAULT_DEBUG_SOCKET

# The first line the debugger writes to each client, so the bridge can tell "your session" from
# "someone else's" before copying anything.
HELLO = b"LEVRT-DEBUG 1 ok\n"
BUSY = b"LEVRT-DEBUG 1 busy\n"

# Exit statuses of the bridge (and so of the exec `levrt attach` runs).
EXIT_BUSY = 3
EXIT_NO_BREAKPOINT = 4


def socket_path(env: Mapping[str, str] | None = None) -> str:
    """Where the debugger listens: ``$LEVRT_DEBUG_SOCKET`` or ``DEFAULT_SOCKET``."""
    env = os.environ if env is None else env
    return env.get(DEBUG_SOCKET_ENV) or DEFAULT_SOCKET


def _stderr_line(message: str) -> None:
    try:
        print(message, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _connect(path: str) -> tuple[socket.socket, bytes] | None:
    """A connection to the debugger and its first line, or None while no breakpoint waits."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
        first = b""
        while not first.endswith(b"\n"):
            chunk = sock.recv(1)
            if not chunk:
                break
            first += chunk
    except OSError:  # no socket yet, nobody listening, or the wait ended as we came
        sock.close()
        return None
    if not first:
        sock.close()
        return None
    return sock, first


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _copy(sock: socket.socket, stdin: int, stdout: int) -> int:
    """Bytes from ``stdin`` to the debugger and back to ``stdout`` until the debugger hangs up."""
    inputs: list[Any] = [sock]
    try:
        os.fstat(stdin)
        inputs.append(stdin)
    except OSError:
        pass  # no stdin at all: only listen
    while True:
        ready, _, _ = select.select(inputs, [], [])
        if stdin in ready:
            try:
                data = os.read(stdin, 65536)
            except OSError:
                data = b""
            try:
                if data:
                    sock.sendall(data)
                else:  # EOF: the person detached; the debugger hears it and lets the entry go on
                    inputs.remove(stdin)
                    sock.shutdown(socket.SHUT_WR)
            except OSError:  # the debugger hung up: what it said last is still to be read
                if stdin in inputs:
                    inputs.remove(stdin)
        if sock in ready:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                return 0
            try:
                _write_all(stdout, data)
            except OSError:
                return 1  # nobody reads us any more


def bridge(argv: list[str] | None = None, *, stdin: int = 0, stdout: int = 1,
           err: Callable[[str], None] | None = None) -> int:
    """Connect this process's stdin and stdout to the task's debugger: ``levrt attach`` runs
    ``/levrt/bin/python3 -I -c "from levrt.runtime.bridge import bridge; ..." [--wait SECONDS]``.

    Waits for a breakpoint (at most ``--wait`` seconds if given, else as long as the exec lasts).
    Exit status: 0 the session ended; ``EXIT_BUSY`` someone else is attached;
    ``EXIT_NO_BREAKPOINT`` no breakpoint within ``--wait``; 130 interrupted.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    tell = err or _stderr_line
    wait: float | None = None
    if args[:1] == ["--wait"] and len(args) >= 2:
        wait = float(args[1])
    path = socket_path()
    deadline = None if wait is None else time.monotonic() + wait
    announced = False
    try:
        while (found := _connect(path)) is None:
            if deadline is not None and time.monotonic() >= deadline:
                tell(f"levrt: no breakpoint was reached within {wait:g} s.")
                return EXIT_NO_BREAKPOINT
            if not announced:
                announced = True
                tell("levrt: no breakpoint is waiting in this task yet; waiting for the entry to reach one "
                     "(Ctrl-C to give up).")
            time.sleep(0.1)
        sock, first = found
        with sock:
            if first == BUSY:
                rest = b""
                while chunk := sock.recv(4096):
                    rest += chunk
                tell(rest.decode(errors="replace").rstrip("\n"))
                return EXIT_BUSY
            if first != HELLO:
                tell(f"levrt: unexpected answer from the task's debugger: {first!r}")
                return 1
            return _copy(sock, stdin, stdout)
    except KeyboardInterrupt:
        return 130
