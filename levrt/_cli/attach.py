"""``levrt attach TASK``: this terminal, connected to a ``breakpoint()`` in a task's entry.

How: in the task, ``breakpoint()`` and ``pdb.set_trace()`` serve pdb on a Unix socket inside the
container and wait for a client (``levrt.runtime.debug``: how long, and what happens when nobody
comes). This command waits for the task's container to run, execs the bundled Python there
running the debugger's bridge, and copies this terminal's input to the exec's stdin and its
output here, until the session ends.

Why lines and not a raw terminal: pdb reads whole lines from its socket (no readline there), so
the local terminal stays in its usual mode. It echoes and edits the line (backspace, Ctrl-U),
Ctrl-D detaches (the entry goes on), and Ctrl-C stays on this machine instead of reaching the
container. A script feeds the same lines on stdin (``printf 'p x\\nc\\n' | levrt attach 12.3``).

Exit status: 0 the session ended (``c``, ``q``, Ctrl-D, the entry ended while attached); 1 someone
else is attached, no breakpoint within ``--timeout``, the task ended first, or the connection
broke; 2 a usage mistake (no such task, or a container without a levrt entry); 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import contextlib
import sys
import threading
from collections.abc import Mapping
from typing import IO, Any

from levrt._cli.base import (
    EXIT_FAILED,
    EXIT_OK,
    CliError,
    Command,
    add_cluster_options,
    cluster,
    parse_duration,
    pod_of,
    resolve_pod,
    task_pod_missing,
)
from levrt._clients import pods
from levrt._clients.api import STDOUT, ExecStream
from levrt._clients.kube import Kube
from levrt._shapes.names import RUNTIME_COPIER
from levrt._shapes.podstatus import FATAL_WAITING, container_status
from levrt.podenv import PYTHON, RUNTIME_COMMAND
from levrt.runtime.bridge import EXIT_BUSY, EXIT_NO_BREAKPOINT

__all__ = ["ATTACH", "BRIDGE", "EXIT_BUSY", "EXIT_NO_BREAKPOINT", "attach_command", "relay"]

# The command run in the container: levrt.runtime.bridge.bridge, by the bundled Python in isolated
# mode (-I: the image's working directory and PYTHON* variables cannot shadow levrt's modules).
BRIDGE = "import sys\nfrom levrt.runtime.bridge import bridge\nsys.exit(bridge())\n"

POLL = 0.5  # seconds between looks at a Pod that has not started yet


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", help="JOB.TASK or Pod name (see `levrt ps`)")
    parser.add_argument("-c", "--container", default="main",
                        help="container whose entry to debug (main, or a service name)")
    parser.add_argument("--timeout", help="give up if no breakpoint is reached within this time, e.g. 30s or "
                                          "5m (default: wait as long as the task runs)")
    add_cluster_options(parser)


def attach_command(args: argparse.Namespace) -> int:
    pod_name = pod_of(args.task)
    timeout = parse_duration(args.timeout) if args.timeout else None

    async def go() -> int:
        async with cluster(args) as (kube, settings):
            name = await resolve_pod(kube, settings.namespace, args.task)
            where = (settings.namespace, name)
            loop = asyncio.get_running_loop()
            deadline = None if timeout is None else loop.time() + timeout
            if not await _until_running(kube, where, args.task, args.container, deadline):
                return EXIT_FAILED
            command = [PYTHON, "-I", "-c", BRIDGE]
            if deadline is not None:
                command += ["--wait", f"{max(deadline - loop.time(), 0.0):.1f}"]
            async with pods.exec_stream(kube, settings.namespace, name, container=args.container,
                                        command=command) as stream:
                code, attached = await relay(stream, sys.stdin, sys.stdout, sys.stderr)
            return await _outcome(kube, where, args.task, args.container, code, attached)

    try:
        with task_pod_missing(pod_name):
            return asyncio.run(go())
    except KeyboardInterrupt:
        print("\nlevrt attach: detached (Ctrl-C); the entry goes on.", file=sys.stderr)
        return 130


async def _until_running(kube: Kube, where: tuple[str, str], task: str, container: str,
                         deadline: float | None) -> bool:
    """Wait until ``container`` runs; False (with the reason on stderr) if it never will."""
    loop = asyncio.get_running_loop()
    announced = False
    while True:
        pod = await pods.get(kube, *where)
        if not _runs_entry(pod, container):
            names = ", ".join(_container_names(pod)) or "none"
            if container not in _container_names(pod):
                raise CliError(f"Task {task} has no container {container!r} (it has: {names}).")
            raise CliError(f"Task {task}'s container {container!r} runs its image's own program, not a levrt "
                           "entry: there is no debugger to attach to (breakpoint() works in entries).")
        state: Mapping[str, Any] = container_status(pod, container).get("state") or {}
        if "running" in state:
            return True
        ended = state.get("terminated") or {}
        if ended or pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            print(f"levrt attach: task {task} has ended (exit code {ended.get('exitCode', '?')}); "
                  "nothing to attach to.", file=sys.stderr)
            return False
        reason = (state.get("waiting") or {}).get("reason")
        if reason in FATAL_WAITING:
            print(f"levrt attach: task {task} will not start ({reason}: {FATAL_WAITING[reason]}).", file=sys.stderr)
            return False
        if deadline is not None and loop.time() >= deadline:
            print(f"levrt attach: task {task} did not start within --timeout.", file=sys.stderr)
            return False
        if not announced:
            announced = True
            print(f"levrt attach: waiting for task {task} to start ({reason or 'pending'})...", file=sys.stderr)
        await asyncio.sleep(POLL)


def _container_names(pod: Mapping[str, Any]) -> list[str]:
    """The task's own containers (main, services), not levrt's runtime copier."""
    spec = pod.get("spec", {})
    every = [c.get("name", "") for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]]
    return [name for name in every if name != RUNTIME_COPIER]


def _runs_entry(pod: Mapping[str, Any], container: str) -> bool:
    spec = pod.get("spec", {})
    for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        if c.get("name") == container:
            return tuple(c.get("command") or ()) == RUNTIME_COMMAND
    return False


async def relay(stream: ExecStream, stdin: IO[Any], stdout: IO[str], stderr: IO[str]) -> tuple[int | None, bool]:
    """Copy ``stdin`` to the exec and its output to ``stdout``/``stderr`` until it ends: its exit
    code (None if unknown), and whether the debugger said anything (a session began)."""
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes] = asyncio.Queue()
    raw = getattr(stdin, "buffer", stdin)

    def read_input() -> None:  # a thread: reading a terminal blocks, and only a thread can wait on any stdin
        while True:
            try:
                data = raw.read1(65536) if hasattr(raw, "read1") else raw.read(65536)
            except (OSError, ValueError):
                data = b""
            if isinstance(data, str):
                data = data.encode()
            try:
                loop.call_soon_threadsafe(chunks.put_nowait, data)
            except RuntimeError:
                return  # the session is over and its loop closed
            if not data:
                return

    async def forward() -> None:
        while data := await chunks.get():
            await stream.send(data)
        if stream.can_close_stdin:
            await stream.close_stdin()
        else:
            print("levrt attach: end of input; this cluster's exec protocol (v4) cannot pass it on, so the "
                  "session lasts until the debugger ends it (c or q).", file=stderr)

    threading.Thread(target=read_input, name="levrt-attach-stdin", daemon=True).start()
    sender = asyncio.create_task(forward())
    decoders = {channel: codecs.getincrementaldecoder("utf-8")("replace") for channel in (1, 2)}
    attached = False
    try:
        while (frame := await stream.receive()) is not None:
            channel, data = frame
            out = stdout if channel == STDOUT else stderr
            attached = attached or channel == STDOUT
            out.write(decoders[channel].decode(data))
            out.flush()
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
    return stream.exit_code, attached


async def _outcome(kube: Kube, where: tuple[str, str], task: str, container: str, code: int | None,
                   attached: bool) -> int:
    if code == 0:
        return EXIT_OK
    if code in (EXIT_BUSY, EXIT_NO_BREAKPOINT):
        return EXIT_FAILED  # the bridge said why
    if code is not None:
        print(f"levrt attach: the debugger bridge in task {task} failed (exit code {code}).", file=sys.stderr)
        return EXIT_FAILED
    pod = await pods.get(kube, *where)
    ended = (container_status(pod, container).get("state") or {}).get("terminated")
    if ended is None:
        print(f"levrt attach: the connection to task {task} broke; run levrt attach again.", file=sys.stderr)
        return EXIT_FAILED
    if attached:
        print(f"levrt attach: task {task} ended (exit code {ended.get('exitCode', '?')}).", file=sys.stderr)
        return EXIT_OK
    print(f"levrt attach: task {task} ended (exit code {ended.get('exitCode', '?')}) without stopping at a "
          "breakpoint.", file=sys.stderr)
    return EXIT_FAILED


ATTACH = Command("attach", "debug a task's entry stopped at breakpoint() (pdb)", _arguments, attach_command)
