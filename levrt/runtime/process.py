"""The task process: ``python -m levrt.runtime`` runs one pickled entry and records what it ``lev.set``s.

Why: entries run inside images that have no Python. The init container copies a bundled
CPython (with this package, cloudpickle and pymongo) to ``/levrt``, and the main container runs
``/levrt/bin/python3 -m levrt.runtime`` (``levrt.podenv``). This module reads the payload named by
``LEVRT_PAYLOAD``, checks versions before unpickling, binds ``lev`` to the task's record
(``levrt.runtime.record``) and runs the entry. It imports only the standard library, cloudpickle
and pymongo (DESIGN.md, "Import rule"); pymongo only when the entry first writes. With a reporting
key (``main`` of a task Pod) it keeps a copy of the entry's output (``levrt.runtime.capture``) and, if
it connected to the store, reports the exit code and that output there (``levrt.endreports``).

Exit codes: 0 the entry returned (also after catching KeyboardInterrupt); 1 the entry raised;
2 the runtime environment is incomplete; 3 the payload cannot be read here (version
mismatch, corrupt); 4 the entry returned but a store outage left updates unwritten; 124 the entry
reached its ``timeout`` (``LEVRT_TIMEOUT``, see ``levrt.runtime.timeout``: interrupted at the
deadline, ended hard ``TIMEOUT_GRACE`` = 10 s later, 124 whether or not it caught the interrupt);
130 an interrupt the entry did not catch. A one-line reason goes to the termination message
(``levrt.runtime.termination``), the traceback to stderr.

Interrupts (``task.signal()``, Pod deletion, the timeout): SIGINT raises KeyboardInterrupt in a plain entry;
SIGTERM does exactly what SIGINT does. A coroutine entry gets asyncio's standard treatment of
Ctrl-C instead: its task is cancelled (``asyncio.CancelledError`` at the ``await``), and the
runtime exits 130 only if the cancellation escapes the entry. Either way an entry that catches
the interrupt and returns exits 0, with what it stored so far.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import signal
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from levrt import context
from levrt.endreports import LOG_LIMIT_BYTES, signed_report
from levrt.errors import PayloadError, StoreError
from levrt.payload import loads_call
from levrt.runtime import debug, foreign
from levrt.runtime.capture import OutputCapture
from levrt.runtime.config import RuntimeConfig, SetupError
from levrt.runtime.record import StoreBinding
from levrt.runtime.termination import append_reason, short_reason, termination_log, write_reason
from levrt.runtime.timeout import EXIT_TIMED_OUT, Deadline, timed_out_reason

__all__ = [
    "EXIT_ENTRY_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PAYLOAD",
    "EXIT_SETUP",
    "EXIT_STORE",
    "EXIT_TIMED_OUT",
    "main",
    "run_entry",
]

EXIT_OK = 0
EXIT_ENTRY_FAILED = 1
EXIT_SETUP = 2
EXIT_PAYLOAD = 3
EXIT_STORE = 4
EXIT_INTERRUPTED = 130

HARD_END_FLUSH = 5.0
"""Seconds a timed-out entry's buffered writes get when the process is ended after the grace
(within the margin the Pod's activeDeadlineSeconds leaves)."""


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


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None, *,
         connect: Callable[[str], Any] | None = None) -> int:
    """Run the entry the environment names; its exit code. ``connect``: how ``lev.set`` gets its store
    client (a warm Pod's entry process is handed one connected beforehand, ``levrt.runtime.warm``)."""
    env = os.environ if env is None else env
    reason_file = termination_log(env)
    try:
        config = RuntimeConfig.from_env(env)
        with open(config.payload, "rb") as fh:
            blob = fh.read()
    except (SetupError, OSError) as exc:
        print(f"levrt runtime: {exc}", file=sys.stderr)
        write_reason(reason_file, short_reason(exc))
        return EXIT_SETUP

    try:
        func, args, kwargs = loads_call(blob)
    except PayloadError as exc:
        print(f"levrt runtime: {exc}", file=sys.stderr)
        write_reason(config.termination_log, short_reason(exc))
        return EXIT_PAYLOAD

    binding = StoreBinding(config, connect=connect)

    def hard_end(reason: str) -> None:
        # The entry ignored the interrupt and the process ends now: writes buffered during a store
        # outage get a last short chance, and what is still unwritten is named, not dropped silently.
        problem = binding.flush(HARD_END_FLUSH)
        write_reason(config.termination_log, reason if not problem else f"{reason}; {problem}")

    try:
        deadline = Deadline.from_env(env, on_hard_end=hard_end)
    except ValueError as exc:
        print(f"levrt runtime: {exc}", file=sys.stderr)
        write_reason(config.termination_log, short_reason(exc))
        return EXIT_SETUP

    report_key = _report_key(config)
    capture = OutputCapture.start(LOG_LIMIT_BYTES) if report_key is not None else None
    sys.argv = ["levrt-entry", *(argv if argv is not None else sys.argv[1:])]
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
        _print_traceback()
        write_reason(config.termination_log, "KeyboardInterrupt: the entry did not handle the interrupt")
        del exc
        code = EXIT_INTERRUPTED
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)  # sys.exit("message"), as Python itself reports it
        if code:
            write_reason(config.termination_log, short_reason(exc))
    except BaseException as exc:
        _print_traceback()
        write_reason(config.termination_log, short_reason(exc))
        code = EXIT_ENTRY_FAILED
    finally:
        if deadline is not None:
            deadline.cancel()
        _ignore_signals()
        sys.stdout.flush()
        sys.stderr.flush()
    if deadline is not None and deadline.fired:
        # Timed out, whether the entry saved its partial results and returned or not.
        write_reason(config.termination_log, timed_out_reason(deadline.seconds))
        code = EXIT_TIMED_OUT
    # Updates buffered during a store outage: wait for them, bounded; never lose them silently.
    problem = binding.flush(config.store_wait)
    if problem:
        print(f"levrt runtime: {problem}", file=sys.stderr, flush=True)
        if code == EXIT_OK:
            write_reason(config.termination_log, short_reason(StoreError(problem)))
            code = EXIT_STORE
        else:
            append_reason(config.termination_log, problem)
    if capture is not None and report_key is not None:
        _report_end(binding, config, report_key, capture.stop(), code)
    binding.close()
    return code


def _report_key(config: RuntimeConfig) -> str | None:
    """The task's reporting key (``levrt.endreports``), or None: this runtime reports no end."""
    if config.report_key is None or config.report_pod is None:
        return None
    try:
        with open(config.report_key, encoding="ascii") as fh:
            return fh.read().strip() or None
    except (OSError, ValueError):
        return None


def _report_end(binding: StoreBinding, config: RuntimeConfig, key: str, output: bytes | None, code: int) -> None:
    """The task's end and its whole output, for the engine to take from the store before the kubelet
    reports the Pod's end; nothing when the output is not whole (the engine reads the Pod's log)."""
    if output is None or config.report_pod is None:
        return
    binding.report_end(signed_report(key, pod=config.report_pod, job=config.job, task=config.task, exit=code,
                                     output=output))


def _print_traceback() -> None:
    """The entry's traceback on stderr, after what it printed: its stdout, block-buffered without a
    terminal, is flushed first, so the container's log (``levrt logs``, the archive) ends with the
    traceback, as a terminal would show it, not with output the entry printed before it failed."""
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    traceback.print_exc()
