"""``breakpoint()`` and ``pdb.set_trace()`` in an entry: waiting for ``levrt attach``, and without it.

Why: a task has no terminal, so the runtime serves pdb on a Unix socket and waits a bounded time
for a client (``levrt.runtime.debug``). These tests run real entries through
``python -m levrt.runtime`` in subprocesses (this machine's Python, then the bundle in a
busybox-only chroot) and attach with the real bridge, the command ``levrt attach`` execs: the
value read in the session, each way a session ends (``c``, ``q``, the client leaving, an
interrupt), a second client refused, and the entry finishing when nobody attaches.
"""

from __future__ import annotations

import inspect
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import levrt.payload
from levrt._cli.attach import BRIDGE
from levrt.runtime import bridge as wire
from levrt.runtime import debug
from tests.runtime.chroot import CHROOT, OUT, PAYLOAD, TASK_ENV, TERMINATION_LOG, finish, inside, python, read

REPO = Path(__file__).resolve().parents[2]


# -- entries (pickled by value; they run in the task's process) ----------------------------------------


def stop_once(out: str) -> None:
    x = 42
    breakpoint()
    open(out, "w").write(f"x={x}")


def stop_twice(out: str) -> None:
    import pdb

    x = 42
    breakpoint()
    y = x + 1
    pdb.set_trace()
    open(out, "w").write(f"x={x} y={y}")


def stop_and_catch_interrupts(out: str) -> None:
    try:
        breakpoint()
        open(out, "w").write("went on")
    except KeyboardInterrupt:
        open(out, "w").write("interrupted")


async def async_stop_and_catch_cancel(out: str) -> None:
    import asyncio

    try:
        breakpoint()
        await asyncio.sleep(0)
        open(out, "w").write("went on")
    except asyncio.CancelledError:
        open(out, "w").write("cancelled")


def stop_then_run_past_a_line(out: str) -> None:
    a = 1
    breakpoint()
    a = 2
    open(out, "w").write(f"a={a}")  # the test sets a breakpoint here: ``b`` + this line's number


# -- running them ---------------------------------------------------------------------------------------


@pytest.fixture
def sock() -> Iterator[str]:
    """A socket path short enough for AF_UNIX (pytest's tmp_path can be over 108 bytes)."""
    directory = tempfile.mkdtemp(prefix="ldbg", dir="/tmp")
    try:
        yield f"{directory}/debug.sock"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


_started: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def reap() -> Iterator[None]:
    """Whatever a test's outcome, the processes it started end with it and their pipes close."""
    yield
    while _started:
        proc = _started.pop()
        proc.kill()
        proc.communicate()


class Task:
    """``python -m levrt.runtime`` on a payload, as a task container runs it."""

    def __init__(self, tmp_path: Path, sock: str, entry: object, *, wait: str, **env: str) -> None:
        self.out = tmp_path / "out"
        self.reason = tmp_path / "reason"
        payload = tmp_path / "payload" / env.pop("payload_name", "main")
        payload.parent.mkdir(exist_ok=True)
        payload.write_bytes(levrt.payload.dumps(entry, (str(self.out),)))
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "levrt.runtime"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={"PATH": os.environ["PATH"], "LEVRT_PAYLOAD": str(payload), "LEVRT_JOB": "7", "LEVRT_TASK": "3",
                 "LEVRT_TERMINATION_LOG": str(self.reason), "LEVRT_DEBUG_SOCKET": sock,
                 "LEVRT_DEBUG_WAIT": wait, **env})
        _started.append(self.proc)
        self.stderr = b""

    def wait_for(self, text: bytes, timeout: float = 20) -> None:
        """Read the task's stderr until ``text`` appears."""
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        while text not in self.stderr:
            assert time.monotonic() < deadline, self.stderr.decode()
            ready, _, _ = select.select([self.proc.stderr], [], [], 0.1)
            if ready:
                chunk = os.read(self.proc.stderr.fileno(), 4096)
                assert chunk, f"the task ended: {self.stderr.decode()}"
                self.stderr += chunk

    def end(self, timeout: float = 30) -> tuple[int, str]:
        """Its exit code and all its stderr."""
        _, err = self.proc.communicate(timeout=timeout)
        self.stderr += err
        self.elapsed = time.monotonic() - self.started
        return self.proc.returncode, self.stderr.decode()


def bridge(sock: str, *args: str) -> subprocess.Popen[bytes]:
    """The bridge ``levrt attach`` runs in the container (here on this machine's Python)."""
    proc = subprocess.Popen([sys.executable, "-c", BRIDGE, *args], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={"PATH": os.environ["PATH"], "LEVRT_DEBUG_SOCKET": sock})
    _started.append(proc)
    return proc


def attach(sock: str, commands: bytes) -> subprocess.CompletedProcess[str]:
    """Attach once (waiting at most 20 s for a breakpoint), type ``commands``, to the session's end."""
    proc = bridge(sock, "--wait", "20")
    out, err = proc.communicate(commands, timeout=30)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out.decode(), err.decode())


def read_until(proc: subprocess.Popen[bytes], text: bytes, timeout: float = 20) -> bytes:
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + timeout
    while text not in seen:
        assert time.monotonic() < deadline, seen
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 4096)
            assert chunk, seen
            seen += chunk
    return seen


# -- nobody attaches ------------------------------------------------------------------------------------


def test_without_an_attacher_each_breakpoint_waits_then_the_entry_goes_on(tmp_path: Path, sock: str) -> None:
    task = Task(tmp_path, sock, stop_twice, wait="0.5")
    code, err = task.end()
    assert code == 0, err
    assert task.out.read_text() == "x=42 y=43"
    assert err.count("; attach with: levrt attach 7.3 (waiting 0.5 s)") == 2
    assert err.count("levrt: nobody attached within 0.5 s; continuing without stopping at") == 2
    assert "test_debug.py:" in err and "(in stop_twice)" in err
    assert 1.0 <= task.elapsed < 10  # both breakpoints waited, neither for long
    assert not Path(sock).exists()  # the socket is gone between breakpoints


def test_wait_0_and_pythonbreakpoint_0_skip_breakpoints(tmp_path: Path, sock: str) -> None:
    task = Task(tmp_path, sock, stop_twice, wait="0")
    code, err = task.end()
    assert (code, task.out.read_text()) == (0, "x=42 y=43"), err
    assert err.count("skipped (LEVRT_DEBUG_WAIT=0)") == 2 and "attach with" not in err
    assert task.elapsed < 10

    task = Task(tmp_path, sock, stop_once, wait="30", PYTHONBREAKPOINT="0")
    code, err = task.end()
    assert (code, task.out.read_text(), err) == (0, "x=42", "")


def test_a_breakpoint_in_a_service_names_its_container(tmp_path: Path, sock: str) -> None:
    task = Task(tmp_path, sock, stop_once, wait="0.01", payload_name="svc-web")
    code, err = task.end()
    assert code == 0 and "attach with: levrt attach 7.3 -c web (waiting 0.01 s)" in err


def test_when_it_cannot_listen_the_entry_goes_on(tmp_path: Path) -> None:
    task = Task(tmp_path, "/proc/levrt/debug.sock", stop_once, wait="30")
    code, err = task.end()
    assert (code, task.out.read_text()) == (0, "x=42"), err
    assert "cannot listen for `levrt attach` on /proc/levrt/debug.sock" in err and "continuing without stopping" in err
    assert task.elapsed < 10


def test_the_bridge_gives_up_after_its_wait(sock: str) -> None:
    started = time.monotonic()
    proc = bridge(sock, "--wait", "0.3")
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == wire.EXIT_NO_BREAKPOINT and out == b""
    assert b"no breakpoint is waiting in this task yet" in err and b"no breakpoint was reached within 0.3 s" in err
    assert 0.3 <= time.monotonic() - started < 10


# -- sessions --------------------------------------------------------------------------------------


def test_a_client_reads_values_at_each_stop_and_continues(tmp_path: Path, sock: str) -> None:
    task = Task(tmp_path, sock, stop_twice, wait="30")
    first = attach(sock, b"p x\nc\n")
    second = attach(sock, b"p y\np x + y\nc\n")
    code, err = task.end()
    assert (code, task.out.read_text()) == (0, "x=42 y=43"), err
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout.startswith("levrt: attached to task 7.3 at ")
    assert "(in stop_twice)" in first.stdout and "\n(Pdb) 42\n(Pdb) " in first.stdout
    assert first.stdout.rstrip().endswith("levrt: the entry continues; the debugger session ends.")
    assert "\n(Pdb) 43\n(Pdb) 85\n(Pdb) " in second.stdout
    assert "LEVRT-DEBUG" not in first.stdout + second.stdout  # the handshake is the bridge's business
    assert err.count("levrt: debugger attached at") == 2 and err.count("levrt: debugger detached at") == 2


def test_q_ends_the_entry_with_a_clear_reason(tmp_path: Path, sock: str) -> None:
    task = Task(tmp_path, sock, stop_once, wait="30")
    session = attach(sock, b"q\n")
    code, err = task.end()
    assert session.returncode == 0
    assert "levrt: quitting: the entry ends with DebuggerQuit at" in session.stdout
    assert code == 1 and not task.out.exists(), err
    assert task.reason.read_text().startswith("DebuggerQuit: quit in the debugger (levrt attach) at ")
    assert "test_debug.py:" in task.reason.read_text()


def test_the_client_leaving_detaches_and_the_entry_goes_on(tmp_path: Path, sock: str) -> None:
    task = Task(tmp_path, sock, stop_once, wait="30")
    session = attach(sock, b"p x\n")  # then end of input, as Ctrl-D or a dropped connection
    code, err = task.end()
    assert session.returncode == 0 and "(Pdb) 42\n" in session.stdout
    assert (code, task.out.read_text()) == (0, "x=42"), err
    assert "levrt: the debugger client left at" in err


def test_a_second_client_is_refused_while_one_is_attached(tmp_path: Path, sock: str) -> None:
    task = Task(tmp_path, sock, stop_once, wait="30")
    first = bridge(sock, "--wait", "20")
    read_until(first, b"(Pdb) ")
    second = attach(sock, b"p x\n")
    assert second.returncode == wire.EXIT_BUSY and second.stdout == ""
    assert "someone is already attached to this task's debugger; try again once they detach." in second.stderr
    out, _ = first.communicate(b"p x\nc\n", timeout=20)
    assert first.returncode == 0 and out.startswith(b"42\n(Pdb) ")
    code, err = task.end()
    assert (code, task.out.read_text()) == (0, "x=42"), err


def test_continue_with_a_breakpoint_set_keeps_the_client_until_the_entry_ends(tmp_path: Path, sock: str) -> None:
    lines, first = inspect.getsourcelines(stop_then_run_past_a_line)
    line = first + next(i for i, text in enumerate(lines) if "the test sets a breakpoint here" in text)
    task = Task(tmp_path, sock, stop_then_run_past_a_line, wait="30")
    session = attach(sock, f"b {line}\nc\np a\nc\n".encode())
    code, err = task.end()
    assert (code, task.out.read_text()) == (0, "a=2"), err
    assert session.returncode == 0, session.stderr
    assert "Breakpoint 1 at" in session.stdout
    assert "levrt: continuing; still attached until the next breakpoint" in session.stdout
    assert "\n(Pdb) 2\n" in session.stdout
    assert session.stdout.rstrip().endswith("levrt: the entry ended; the debugger session ends.")


def test_an_interrupt_while_waiting_reaches_the_entry(tmp_path: Path, sock: str) -> None:
    task = Task(tmp_path, sock, stop_and_catch_interrupts, wait="30")
    task.wait_for(b"attach with")
    task.proc.send_signal(signal.SIGTERM)  # the Pod's deletion: handled as SIGINT
    code, err = task.end()
    assert (code, task.out.read_text()) == (0, "interrupted"), err
    assert task.elapsed < 20 and not Path(sock).exists()


def test_an_interrupt_at_the_prompt_ends_the_session_and_reaches_the_entry(tmp_path: Path, sock: str) -> None:
    task = Task(tmp_path, sock, stop_and_catch_interrupts, wait="30")
    client = bridge(sock, "--wait", "20")
    read_until(client, b"(Pdb) ")
    task.proc.send_signal(signal.SIGINT)
    said = read_until(client, b"the entry gets KeyboardInterrupt.\n")  # stdin still open: no detach by EOF
    client.communicate(timeout=20)
    code, err = task.end()
    assert (code, task.out.read_text()) == (0, "interrupted"), err
    assert client.returncode == 0 and said.startswith(b"levrt: the task was interrupted (SIGINT or SIGTERM)")


def test_an_interrupted_coroutine_entry_is_cancelled_at_its_next_await(tmp_path: Path, sock: str) -> None:
    """asyncio only marks the task on SIGINT: the debugger notices, waiting or at the prompt."""
    task = Task(tmp_path, sock, async_stop_and_catch_cancel, wait="30")
    task.wait_for(b"attach with")
    task.proc.send_signal(signal.SIGINT)
    code, err = task.end()
    assert (code, task.out.read_text()) == (0, "cancelled"), err
    assert "levrt: the task was interrupted; continuing without stopping at" in err
    assert task.elapsed < 20

    task = Task(tmp_path, sock, async_stop_and_catch_cancel, wait="30")
    client = bridge(sock, "--wait", "20")
    read_until(client, b"(Pdb) ")
    task.proc.send_signal(signal.SIGINT)
    read_until(client, b"the entry is cancelled at its next await")
    client.communicate(timeout=20)
    code, err = task.end()
    assert (code, task.out.read_text()) == (0, "cancelled"), err
    assert client.returncode == 0


def test_installed_puts_the_previous_hooks_back() -> None:
    import pdb

    before = sys.breakpointhook, pdb.set_trace
    with debug.installed():
        assert (sys.breakpointhook, pdb.set_trace) == (debug.breakpointhook, debug.set_trace)
    assert (sys.breakpointhook, pdb.set_trace) == before


@pytest.mark.parametrize(("value", "seconds"), [
    (None, debug.DEFAULT_WAIT), ("0", 0.0), ("1.5", 1.5), ("-3", 0.0), ("soon", debug.DEFAULT_WAIT),
    ("1e12", debug.MAX_WAIT), ("inf", debug.MAX_WAIT), ("nan", debug.DEFAULT_WAIT),
])
def test_wait_seconds(value: str | None, seconds: float) -> None:
    assert debug.wait_seconds({} if value is None else {"LEVRT_DEBUG_WAIT": value}) == seconds


# -- in a busybox-only root filesystem, with the real bundle ------------------------------------------


def write_payload(rootfs: Path, entry: object) -> None:
    inside(rootfs, PAYLOAD).write_bytes(levrt.payload.dumps(entry, (OUT,)))
    for old in (OUT, TERMINATION_LOG):
        inside(rootfs, old).unlink(missing_ok=True)


def test_in_the_bundle_a_breakpoint_nobody_attaches_to_lets_the_entry_finish(rootfs: Path) -> None:
    write_payload(rootfs, stop_once)
    started = time.monotonic()
    done = finish(python(rootfs, "-m", "levrt.runtime", env={**TASK_ENV, "LEVRT_DEBUG_WAIT": "1"}))
    err = done.stderr.decode()
    assert done.returncode == 0, err
    assert read(rootfs, OUT) == "x=42"
    assert "; attach with: levrt attach 7.3 (waiting 1 s)" in err
    assert "levrt: nobody attached within 1 s; continuing without stopping at" in err
    assert 1.0 <= time.monotonic() - started < 30


def test_in_the_bundle_the_bridge_attaches(rootfs: Path) -> None:
    write_payload(rootfs, stop_once)
    task = python(rootfs, "-m", "levrt.runtime", env={**TASK_ENV, "LEVRT_DEBUG_WAIT": "30"})
    _started.append(task)
    client = subprocess.run([CHROOT, str(rootfs), "/levrt/bin/python3", "-I", "-c", BRIDGE, "--wait", "20"],
                            input=b"p x\nc\n", capture_output=True, timeout=40, env={"PATH": "/bin"})
    done = finish(task)
    assert client.returncode == 0, client.stderr.decode()
    assert b"(Pdb) 42\n" in client.stdout
    assert done.returncode == 0, done.stderr.decode()
    assert read(rootfs, OUT) == "x=42"
    assert not inside(rootfs, wire.DEFAULT_SOCKET).exists()
