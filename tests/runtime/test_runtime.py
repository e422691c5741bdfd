"""The runtime bundle and ``levrt.runtime``, in a busybox-only root filesystem (no cluster).

Why: entries run in images without Python. These tests chroot into a rootfs holding nothing
but busybox and the bundle at /levrt, exactly what a task container sees, and run real
payloads through ``python -m levrt.runtime``: versions refused before unpickling, failures
reported, SIGINT turned into KeyboardInterrupt.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import levrt.payload
from levrt.runtime import REASON_LIMIT, RuntimeConfig, SetupError, short_reason
from tests.runtime import bundle_builder

CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.geteuid() != 0 or shutil.which("chroot") is None or not Path("/bin/busybox").exists():
        pytest.skip("needs root, chroot and busybox-static (tests/run installs them)")
    root = tmp_path_factory.mktemp("rootfs")
    (root / "bin").mkdir()
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    for applet in ("sh", "cat", "ls"):
        (root / "bin" / applet).symlink_to("busybox")
    (root / "tmp").mkdir()
    (root / "payload").mkdir()
    shutil.copytree(Path(bundle_builder().build_bundle()) / "levrt", root / "levrt", symlinks=True)
    assert not (root / "usr").exists()  # nothing but busybox and the bundle
    return root


def _run(rootfs: Path, call: Callable[..., Any], *args: Any, header_python: str | None = None,
         wait: bool = True, **extra_env: str) -> subprocess.Popen[bytes] | subprocess.CompletedProcess[bytes]:
    if header_python:
        original = levrt.payload.python_version
        levrt.payload.python_version = lambda: header_python
        try:
            blob = levrt.payload.dumps(call, args)
        finally:
            levrt.payload.python_version = original
    else:
        blob = levrt.payload.dumps(call, args)
    (rootfs / "payload" / "main").write_bytes(blob)
    for old in ("termination-log", "out"):
        (rootfs / "tmp" / old).unlink(missing_ok=True)
    env = {"LEVRT_PAYLOAD": "/payload/main", "LEVRT_JOB": "7", "LEVRT_TASK": "3",
           "LEVRT_TERMINATION_LOG": "/tmp/termination-log", "PATH": "/bin", **extra_env}
    cmd = [CHROOT, str(rootfs), "/levrt/bin/python3", "-m", "levrt.runtime", "--flag", "value"]
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return subprocess.run(cmd, env=env, capture_output=True, timeout=60)


def write_out(text: str) -> None:
    import sys as _sys

    with open("/tmp/out", "w") as fh:
        fh.write(f"{text} {_sys.prefix} {_sys.argv[1:]}")


def explode(message: str) -> None:
    raise ValueError(message)


def wait_for_interrupt(seconds: float) -> None:
    import time as _time

    open("/tmp/out", "w").write("waiting")
    try:
        _time.sleep(seconds)
    except KeyboardInterrupt:
        open("/tmp/out", "w").write("interrupted, partial results kept")


def ignore_nothing(seconds: float) -> None:
    import time as _time

    open("/tmp/out", "w").write("waiting")
    _time.sleep(seconds)


def leave_daemon_threads(count: int) -> None:
    import threading
    import time as _time

    def spin() -> None:
        while True:
            _time.sleep(0.001)

    for _ in range(count):
        threading.Thread(target=spin, daemon=True).start()
    _time.sleep(0.05)
    open("/tmp/out", "w").write("threads left running")


async def async_entry(text: str) -> None:
    import asyncio

    await asyncio.sleep(0)
    open("/tmp/out", "w").write(text)


def test_bundle_runs_in_a_rootfs_without_python(rootfs: Path) -> None:
    code = ("import sys, ssl, json, asyncio, sqlite3, levrt, cloudpickle, pymongo\n"
            "print(sys.prefix, sys.version_info[:2])")
    out = subprocess.run(["chroot", str(rootfs), "/levrt/bin/python3", "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"/levrt {tuple(sys.version_info[:2])}"


def test_entry_runs_with_the_crs_cmd_as_argv(rootfs: Path) -> None:
    done = _run(rootfs, write_out, "ran")
    assert done.returncode == 0, done.stderr
    assert (rootfs / "tmp" / "out").read_text() == "ran /levrt ['--flag', 'value']"


def test_daemon_threads_alive_at_exit_do_not_abort_the_run(rootfs: Path) -> None:
    """Python ends such threads with pthread_exit, which needs libgcc_s (dlopened, not in ldd)."""
    for _ in range(3):
        done = _run(rootfs, leave_daemon_threads, 8)
        assert done.returncode == 0, done.stderr
        assert b"libgcc_s" not in done.stderr


def test_async_entry(rootfs: Path) -> None:
    done = _run(rootfs, async_entry, "async ran")
    assert done.returncode == 0, done.stderr
    assert (rootfs / "tmp" / "out").read_text() == "async ran"


def test_payload_for_another_python_is_refused_before_unpickling(rootfs: Path) -> None:
    done = _run(rootfs, write_out, "must not run", header_python="3.12")
    assert done.returncode == 3
    message = done.stderr.decode()
    assert "Python 3.12" in message and f"Python {sys.version_info[0]}.{sys.version_info[1]}" in message
    assert not (rootfs / "tmp" / "out").exists()
    assert "VersionMismatch" in (rootfs / "tmp" / "termination-log").read_text()


def test_entry_exception_exits_1_with_reason_and_traceback(rootfs: Path) -> None:
    done = _run(rootfs, explode, "the target refused")
    assert done.returncode == 1
    assert "Traceback" in done.stderr.decode() and "the target refused" in done.stderr.decode()
    assert (rootfs / "tmp" / "termination-log").read_text() == "ValueError: the target refused"


def _interrupt(rootfs: Path, entry: Callable[..., Any]) -> subprocess.CompletedProcess[bytes]:
    proc = _run(rootfs, entry, 30, wait=False)
    assert isinstance(proc, subprocess.Popen)
    deadline = time.monotonic() + 30
    while not (rootfs / "tmp" / "out").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_sigint_becomes_keyboardinterrupt_inside_the_entry(rootfs: Path) -> None:
    done = _interrupt(rootfs, wait_for_interrupt)
    assert done.returncode == 0, done.stderr
    assert (rootfs / "tmp" / "out").read_text() == "interrupted, partial results kept"


def test_uncaught_interrupt_exits_130(rootfs: Path) -> None:
    done = _interrupt(rootfs, ignore_nothing)
    assert done.returncode == 130
    assert "KeyboardInterrupt" in (rootfs / "tmp" / "termination-log").read_text()


def test_lev_set_without_a_store_uri_fails_with_advice(rootfs: Path) -> None:
    from levrt import lev

    def store_it() -> None:
        lev.set(x=1)

    done = _run(rootfs, store_it)
    assert done.returncode == 1
    assert "LEVRT_STORE_URI" in (rootfs / "tmp" / "termination-log").read_text()


def test_short_reason_is_one_bounded_line() -> None:
    reason = short_reason(RuntimeError("line one\nline two " + "x" * 5000))
    assert "\n" not in reason
    assert reason.startswith("RuntimeError: line one line two")
    assert len(reason.encode()) <= REASON_LIMIT


def test_config_names_what_is_missing() -> None:
    with pytest.raises(SetupError, match="LEVRT_PAYLOAD, LEVRT_JOB"):
        RuntimeConfig.from_env({"LEVRT_TASK": "1"})
    config = RuntimeConfig.from_env({"LEVRT_PAYLOAD": "/p", "LEVRT_JOB": "4", "LEVRT_TASK": "2",
                                     "LEVRT_COLLECTION": "a|b@1"})
    assert (config.job, config.task, config.collection, config.database) == (4, 2, "a|b@1", "levrt")
