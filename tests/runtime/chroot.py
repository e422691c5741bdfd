"""One busybox-only root filesystem, and one way to run the bundle's Python inside it.

Why: a task container holds the image's files plus the bundle at ``/levrt``, often nothing like
a Python. ``make_rootfs`` builds the harshest such image (busybox and the bundle, no ``/usr``);
``python`` runs ``/levrt/bin/python3`` there through ``chroot`` with a clean environment, and
``start_entry``/``run_entry``/``interrupt_entry`` run a real payload through
``python -m levrt.runtime`` the way the task container's command does. The ``rootfs`` and
``bundle`` fixtures (``tests/runtime/conftest.py``) wrap these.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import levrt.payload

CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"
BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "cat", "ls")

PAYLOAD = "/payload/main"
OUT = "/tmp/out"  # what the test entries write, to show how far they got
TERMINATION_LOG = "/tmp/termination-log"
TASK_ENV = {"LEVRT_PAYLOAD": PAYLOAD, "LEVRT_JOB": "7", "LEVRT_TASK": "3", "LEVRT_TERMINATION_LOG": TERMINATION_LOG}


def make_rootfs(root: Path, bundle: Path) -> Path:
    """``root`` holding busybox (``/bin``), ``/tmp``, ``/payload`` and ``bundle`` at ``/levrt``."""
    (root / "bin").mkdir()
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    (root / "tmp").mkdir()
    (root / "payload").mkdir()
    shutil.copytree(bundle, root / "levrt", symlinks=True)
    assert not (root / "usr").exists()  # nothing but busybox and the bundle
    return root


def inside(rootfs: Path, path: str) -> Path:
    """The host path of ``path`` inside ``rootfs``."""
    return rootfs / path.lstrip("/")


def read(rootfs: Path, path: str) -> str:
    """The text of ``path`` inside ``rootfs``, or ``""`` if there is no such file."""
    file = inside(rootfs, path)
    return file.read_text() if file.exists() else ""


def python(rootfs: Path, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``/levrt/bin/python3 ARGS`` chrooted into ``rootfs``; the environment is ``PATH=/bin`` + ``env``."""
    return subprocess.Popen([CHROOT, str(rootfs), "/levrt/bin/python3", *args], env={"PATH": "/bin", **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen[bytes], timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    """Wait for ``proc`` (killed after ``timeout`` seconds) and return what it did."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_python(rootfs: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python(rootfs, *args)`` to the end, output decoded."""
    done = finish(python(rootfs, *args))
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


def start_entry(rootfs: Path, call: Callable[..., Any], *args: Any,
                argv: Iterable[str] = (), env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Write the payload of ``call(*args)`` and start ``python -m levrt.runtime ARGV`` on it, as a task would
    (``env``: more of the task's environment, e.g. ``LEVRT_TIMEOUT``).

    ``OUT`` and the termination log of an earlier run are removed first.
    """
    inside(rootfs, PAYLOAD).write_bytes(levrt.payload.dumps(call, args))
    for old in (OUT, TERMINATION_LOG):
        inside(rootfs, old).unlink(missing_ok=True)
    return python(rootfs, "-m", "levrt.runtime", *argv, env={**TASK_ENV, **(env or {})})


def run_entry(rootfs: Path, call: Callable[..., Any], *args: Any,
              argv: Iterable[str] = (), env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """``start_entry`` to the end."""
    return finish(start_entry(rootfs, call, *args, argv=argv, env=env))


def interrupt_entry(rootfs: Path, call: Callable[..., Any], *args: Any,
                    signum: int = signal.SIGINT) -> subprocess.CompletedProcess[bytes]:
    """``start_entry``; once the entry has written ``OUT`` (or exited), send ``signum``; then to the end."""
    proc = start_entry(rootfs, call, *args)
    deadline = time.monotonic() + 30
    while not inside(rootfs, OUT).exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signum)
    return finish(proc, timeout=30)
