"""``Cr(timeout=...)`` inside the container: the runtime's deadline (``levrt.runtime.timeout``).

Why here: the deadline is a timer thread interrupting the entry's main thread, then ending the
process hard; only a real ``python -m levrt.runtime`` in the busybox-only rootfs (PID 1-like, no
Python of the image) shows the exit code, the termination message and what the entry kept.
The ``Deadline`` class itself is also tested in-process, with a stand-in for ``os._exit``.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

from levrt.runtime.timeout import EXIT_TIMED_OUT, TIMEOUT_GRACE, Deadline, timed_out_reason
from tests.runtime.chroot import read, run_entry


def progress_then_partial(steps: int) -> None:
    import time as _time

    try:
        for step in range(steps):
            open("/tmp/out", "w").write(f"step {step}")
            _time.sleep(0.1)
    except KeyboardInterrupt:
        open("/tmp/out", "a").write(" partial saved")


def stubborn(seconds: float) -> None:
    import time as _time

    open("/tmp/out", "w").write("started")
    end = _time.monotonic() + seconds
    while _time.monotonic() < end:
        try:
            _time.sleep(0.1)
        except KeyboardInterrupt:
            open("/tmp/out", "w").write("ignored the interrupt")


def sleeper(seconds: float) -> None:
    import time as _time

    _time.sleep(seconds)


async def cancelled_coroutine(seconds: float) -> None:
    import asyncio

    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        open("/tmp/out", "w").write("cancelled, partial saved")


def quick() -> None:
    open("/tmp/out", "w").write("done in time")


def test_an_entry_that_handles_the_interrupt_keeps_its_partial_results_and_exits_124(rootfs: Path) -> None:
    started = time.monotonic()
    done = run_entry(rootfs, progress_then_partial, 10_000, env={"LEVRT_TIMEOUT": "1"})
    assert done.returncode == EXIT_TIMED_OUT, done.stderr
    assert time.monotonic() - started < 1 + TIMEOUT_GRACE  # interrupted, not killed
    assert read(rootfs, "/tmp/out").endswith(" partial saved")
    assert read(rootfs, "/tmp/termination-log") == timed_out_reason(1)
    assert b"timeout=1 s reached" in done.stderr


def test_an_entry_that_does_not_catch_the_interrupt_also_exits_124(rootfs: Path) -> None:
    done = run_entry(rootfs, sleeper, 60, env={"LEVRT_TIMEOUT": "1"})
    assert done.returncode == EXIT_TIMED_OUT
    assert b"KeyboardInterrupt" in done.stderr  # its traceback is in the logs
    assert read(rootfs, "/tmp/termination-log") == "TimedOut: the entry timed out after 1 s (timeout=1)"


def test_an_entry_that_ignores_the_interrupt_is_ended_after_the_grace(rootfs: Path) -> None:
    started = time.monotonic()
    done = run_entry(rootfs, stubborn, 120, env={"LEVRT_TIMEOUT": "1"})
    took = time.monotonic() - started
    assert done.returncode == EXIT_TIMED_OUT, done.stderr
    assert 1 + TIMEOUT_GRACE - 0.5 < took < 1 + TIMEOUT_GRACE + 15
    assert read(rootfs, "/tmp/out") == "ignored the interrupt"
    assert read(rootfs, "/tmp/termination-log") == timed_out_reason(1, killed=True)


def test_a_coroutine_entry_is_cancelled_at_the_deadline(rootfs: Path) -> None:
    done = run_entry(rootfs, cancelled_coroutine, 60, env={"LEVRT_TIMEOUT": "1"})
    assert done.returncode == EXIT_TIMED_OUT, done.stderr
    assert read(rootfs, "/tmp/out") == "cancelled, partial saved"


def test_an_entry_done_in_time_exits_0(rootfs: Path) -> None:
    done = run_entry(rootfs, quick, env={"LEVRT_TIMEOUT": "30"})
    assert done.returncode == 0, done.stderr
    assert read(rootfs, "/tmp/out") == "done in time"


def test_a_bad_timeout_is_a_setup_error(rootfs: Path) -> None:
    done = run_entry(rootfs, quick, env={"LEVRT_TIMEOUT": "soon"})
    assert done.returncode == 2
    assert "LEVRT_TIMEOUT='soon'" in read(rootfs, "/tmp/termination-log")


# -- the Deadline in this process ---------------------------------------------------------------


def test_deadline_interrupts_the_main_thread_then_ends_after_the_grace() -> None:
    exits: list[int] = []
    reasons: list[str] = []
    deadline = Deadline(1, grace=0.2, on_hard_end=reasons.append, exit=exits.append)
    deadline.seconds = 0.05  # a test-sized deadline
    with pytest.raises(KeyboardInterrupt):
        deadline.start()
        time.sleep(5)
    assert deadline.fired
    end = time.monotonic() + 5
    while not exits and time.monotonic() < end:
        time.sleep(0.01)
    assert exits == [EXIT_TIMED_OUT] and reasons == [timed_out_reason(0.05, killed=True)]


def test_a_cancelled_deadline_does_nothing() -> None:
    exits: list[int] = []
    deadline = Deadline(1, grace=0.05, exit=exits.append)
    deadline.seconds = 0.1
    deadline.start()
    deadline.cancel()
    time.sleep(0.3)
    assert not deadline.fired and exits == []
    assert threading.active_count() >= 1 and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_deadline_from_env() -> None:
    assert Deadline.from_env({}) is None
    found = Deadline.from_env({"LEVRT_TIMEOUT": "60"})
    assert found is not None and found.seconds == 60 and found.grace == TIMEOUT_GRACE
    for bad in ("0", "-3", "1.5", "x"):
        with pytest.raises(ValueError, match="LEVRT_TIMEOUT"):
            Deadline.from_env({"LEVRT_TIMEOUT": bad})
