"""``levrt attach`` against the fake apiserver: what it execs, how it relays, what it exits with.

Why: the command's contract is the exec it opens (the bridge run by the bundled Python, stdin
connected), the bytes it relays both ways, and its exit status for every way a session can go
(ended, someone else attached, no breakpoint in time, the task ended first, a broken connection,
no such task). The fake apiserver's ``exec_handler`` plays the container's side; the last test
plays it with the real bridge and a real entry stopped at ``breakpoint()``.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import levrt
import levrt.payload
from levrt import Cr
from levrt._cli import attach, main
from levrt._clients.kube import use_transport
from levrt._shapes.build import build_task
from levrt.podenv import PYTHON
from levrt.runtime import bridge
from levrt.settings import Settings
from tests.fakes import FakeApiServer, RemoteCommand

REPO = Path(__file__).resolve().parents[2]


@levrt.remote
def entry() -> None:
    pass


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in os.environ if v.startswith("LEVRT_")]:
        monkeypatch.delenv(var)
    monkeypatch.setattr(attach, "POLL", 0.01)


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    api = FakeApiServer(namespaces=["levrt"])
    with use_transport(lambda: api):
        yield api


def stdin_of(monkeypatch: pytest.MonkeyPatch, text: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text)))


def task_pod(job: int, task: int, *, runtime: bool = True, services: dict[str, Cr] | None = None) -> dict[str, Any]:
    cr = Cr("busybox:1.36", entry=entry() if runtime else None, services=services or {})
    return build_task(cr, job=job, task=task, collection="default", settings=Settings()).pod


def running(api: FakeApiServer, job: int = 7, task: int = 3, **kw: Any) -> str:
    pod = task_pod(job, task, **kw)
    api.put(pod)
    api.set_running(pod["metadata"]["name"])
    return str(pod["metadata"]["name"])


def out_err(capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    captured = capsys.readouterr()
    return captured.out, captured.err


async def scripted_pdb(remote: RemoteCommand) -> int:
    """The container's side of a session as the bridge relays it: a greeting, then pdb's answers."""
    remote.write(b"levrt: attached to task 7.3 at scan.py:12 (in entry).\n(Pdb) ")
    async with asyncio.timeout(5):  # input that never comes fails the test instead of hanging it
        while line := await remote.readline():
            if line == b"p x\n":
                remote.write(b"42\n(Pdb) ")
            elif line == b"c\n":
                remote.write(b"levrt: the entry continues; the debugger session ends.\n")
                return 0
            else:
                remote.write(b"*** unknown\n(Pdb) ")
    remote.write(b"levrt: the debugger client left\n", channel=2)
    return 0


# -- the session ------------------------------------------------------------------------------------


def test_attach_relays_lines_both_ways_until_the_session_ends(api: FakeApiServer, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    pod = running(api)
    api.exec_handler = scripted_pdb
    stdin_of(monkeypatch, b"p x\nc\n")

    assert main(["attach", "7.3"]) == 0
    out, err = out_err(capsys)
    assert out == ("levrt: attached to task 7.3 at scan.py:12 (in entry).\n(Pdb) 42\n(Pdb) "
                   "levrt: the entry continues; the debugger session ends.\n")
    assert err == ""
    (call,) = api.exec_calls
    assert (call.pod, call.container, call.stdin) == (pod, "main", True)
    assert call.command == (PYTHON, "-I", "-c", attach.BRIDGE)
    exec_request = api.requests[-1]
    assert exec_request.path == f"/api/v1/namespaces/levrt/pods/{pod}/exec"
    assert {("stdin", "true"), ("stdout", "true"), ("stderr", "true")} <= set(exec_request.query)


def test_end_of_input_reaches_the_debugger_as_eof(api: FakeApiServer, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    running(api)
    sessions: list[RemoteCommand] = []

    async def handler(remote: RemoteCommand) -> int:
        sessions.append(remote)
        return await scripted_pdb(remote)

    api.exec_handler = handler
    stdin_of(monkeypatch, b"p x\n")  # then Ctrl-D: the debugger detaches, the entry goes on

    assert main(["attach", "lev-j7-t3"]) == 0
    out, err = out_err(capsys)
    assert "42" in out and err == "levrt: the debugger client left\n"
    assert sessions[0].received == b"p x\n" and sessions[0].stdin_closed


def test_with_the_v4_protocol_end_of_input_cannot_be_passed_on(api: FakeApiServer, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    running(api)
    api.exec_protocol = "v4.channel.k8s.io"
    sessions: list[RemoteCommand] = []

    async def handler(remote: RemoteCommand) -> int:
        sessions.append(remote)
        async with asyncio.timeout(5):
            assert await remote.readline() == b"p x\n"
        remote.write(b"42\n")
        await asyncio.sleep(0.05)  # the client's end of input arrives meanwhile, and is not passed on
        return 0

    api.exec_handler = handler
    stdin_of(monkeypatch, b"p x\n")
    assert main(["attach", "7.3"]) == 0
    out, err = out_err(capsys)
    assert out == "42\n" and "v4" in err and "(c or q)" in err
    assert not sessions[0].stdin_closed


def test_a_service_container_is_debugged_with_c(api: FakeApiServer, monkeypatch: pytest.MonkeyPatch) -> None:
    pod = task_pod(7, 3, services={"web": Cr("busybox:1.36", entry=entry(), ports=[80])})
    api.put(pod)
    api.set_status(pod["metadata"]["name"], {"phase": "Running", "initContainerStatuses": [
        {"name": "web", "state": {"running": {}}}]})
    api.exec_handler = scripted_pdb
    stdin_of(monkeypatch, b"c\n")
    assert main(["attach", "7.3", "-c", "web"]) == 0
    assert api.exec_calls[0].container == "web"


# -- refused, too late, too early ---------------------------------------------------------------------


def test_someone_else_attached_exits_1_with_the_bridges_message(api: FakeApiServer, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    running(api)

    async def busy(remote: RemoteCommand) -> int:
        remote.write(b"levrt: someone is already attached to this task's debugger; try again once they detach.\n",
                     channel=2)
        return attach.EXIT_BUSY

    api.exec_handler = busy
    stdin_of(monkeypatch, b"")
    assert main(["attach", "7.3"]) == 1
    assert "already attached" in out_err(capsys)[1]


def test_timeout_is_passed_to_the_bridge_and_no_breakpoint_exits_1(api: FakeApiServer,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    running(api)

    async def no_breakpoint(remote: RemoteCommand) -> int:
        remote.write(b"levrt: no breakpoint was reached within 30 s.\n", channel=2)
        return attach.EXIT_NO_BREAKPOINT

    api.exec_handler = no_breakpoint
    stdin_of(monkeypatch, b"")
    assert main(["attach", "7.3", "--timeout", "30s"]) == 1
    command = api.exec_calls[0].command
    assert command[-2] == "--wait" and 29 <= float(command[-1]) <= 30


def test_waits_for_the_task_to_start(api: FakeApiServer, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    pod = task_pod(7, 3)
    name = pod["metadata"]["name"]
    api.put(pod)
    api.set_waiting(name, "ContainerCreating")
    path = f"/api/v1/namespaces/levrt/pods/{name}"
    api.before("GET", path, lambda: None, times=2)  # two looks at the waiting Pod; it runs at the third
    api.before("GET", path, lambda: (api.set_running(name), None)[1], times=1)
    api.exec_handler = scripted_pdb
    stdin_of(monkeypatch, b"c\n")

    assert main(["attach", "7.3"]) == 0
    assert "waiting for task 7.3 to start (ContainerCreating)" in out_err(capsys)[1]
    assert len([r for r in api.requests if r.method == "GET" and r.path == path]) == 3


@pytest.mark.parametrize(("setup", "message"), [
    (lambda api, name: api.set_terminated(name, 0), "task 7.3 has ended (exit code 0)"),
    (lambda api, name: api.set_waiting(name, "ErrImagePull", "not found"), "will not start (ErrImagePull"),
], ids=["ended", "never-starts"])
def test_a_task_that_ended_or_never_starts_exits_1(api: FakeApiServer, capsys: pytest.CaptureFixture[str],
                                                   setup: Any, message: str) -> None:
    pod = task_pod(7, 3)
    api.put(pod)
    setup(api, pod["metadata"]["name"])
    assert main(["attach", "7.3"]) == 1
    assert message in out_err(capsys)[1]
    assert api.exec_calls == []


def test_timeout_while_the_task_is_pending(api: FakeApiServer, capsys: pytest.CaptureFixture[str]) -> None:
    api.put(task_pod(7, 3))
    assert main(["attach", "7.3", "--timeout", "0.05"]) == 1
    assert "did not start within --timeout" in out_err(capsys)[1]


# -- usage mistakes -------------------------------------------------------------------------------


def test_usage_mistakes_exit_2(api: FakeApiServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["attach", "9.9"]) == 2
    assert "No task Pod 'lev-j9-t9'" in out_err(capsys)[1]
    assert main(["attach", "9.x"]) == 2
    assert "is not a task" in out_err(capsys)[1]

    running(api, 7, 4, runtime=False)
    assert main(["attach", "7.4"]) == 2
    assert "runs its image's own program, not a levrt entry" in out_err(capsys)[1]
    running(api, 7, 3)
    assert main(["attach", "7.3", "-c", "redis"]) == 2
    assert "has no container 'redis' (it has: main" in out_err(capsys)[1]
    assert main(["attach", "7.3", "--timeout", "soon"]) == 2
    assert api.exec_calls == []


def test_a_refused_exec_exits_1(api: FakeApiServer, capsys: pytest.CaptureFixture[str]) -> None:
    name = running(api)
    api.fail("GET", f"/api/v1/namespaces/levrt/pods/{name}/exec", 403, 'cannot create resource "pods/exec"')
    assert main(["attach", "7.3"]) == 1
    assert "HTTP 403" in out_err(capsys)[1]


# -- when the connection ends without an exit code ----------------------------------------------------


def test_a_broken_connection_exits_1(api: FakeApiServer, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    running(api)

    async def drop(remote: RemoteCommand) -> None:
        remote.write(b"(Pdb) ")
        return None

    api.exec_handler = drop
    stdin_of(monkeypatch, b"")
    assert main(["attach", "7.3"]) == 1
    assert "connection to task 7.3 broke" in out_err(capsys)[1]


@pytest.mark.parametrize(("said", "code", "message"), [
    (b"(Pdb) ", 0, "task 7.3 ended (exit code 0)."),
    (b"", 1, "ended (exit code 0) without stopping at a breakpoint"),
], ids=["during-a-session", "before-a-breakpoint"])
def test_the_task_ending_under_the_bridge(api: FakeApiServer, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str], said: bytes, code: int,
                                          message: str) -> None:
    name = running(api)

    async def task_ends(remote: RemoteCommand) -> None:
        remote.write(said)
        api.set_terminated(name, 0)
        return None  # the container went away with the bridge in it: no exit code

    api.exec_handler = task_ends
    stdin_of(monkeypatch, b"")
    assert main(["attach", "7.3"]) == code
    assert message in out_err(capsys)[1]


def test_exit_codes_agree_with_the_runtime() -> None:
    assert (attach.EXIT_BUSY, attach.EXIT_NO_BREAKPOINT) == (bridge.EXIT_BUSY, bridge.EXIT_NO_BREAKPOINT)
    assert "from levrt.runtime.bridge import bridge" in attach.BRIDGE


# -- the whole chain: CLI, bridge and debugger, without a cluster ---------------------------------------


def stop_at_breakpoint(out: str) -> None:
    x = 42
    breakpoint()
    Path(out).write_text(f"x={x}")


@pytest.fixture
def sock_dir() -> Iterator[str]:
    """A folder for the debugger's socket: AF_UNIX paths are short, pytest's tmp_path can be long."""
    directory = tempfile.mkdtemp(prefix="lda", dir="/tmp")
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_the_real_bridge_and_debugger(api: FakeApiServer, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str], tmp_path: Path, sock_dir: str) -> None:
    """The fake's exec runs the bridge as a local process, next to an entry run by the runtime."""
    env = {**os.environ, "LEVRT_DEBUG_SOCKET": f"{sock_dir}/debug.sock", "LEVRT_DEBUG_WAIT": "30"}
    payload = tmp_path / "payload"
    payload.write_bytes(levrt.payload.dumps(stop_at_breakpoint, (str(tmp_path / "out"),)))
    task_env = {**env, "LEVRT_PAYLOAD": str(payload), "LEVRT_JOB": "7", "LEVRT_TASK": "3",
                "LEVRT_TERMINATION_LOG": str(tmp_path / "reason")}

    async def real_bridge(remote: RemoteCommand) -> int | None:
        # As the exec's command, but without -I: this checkout's levrt is found from the working
        # directory, as the bundle's is in a task container.
        assert remote.call.command[:2] == (PYTHON, "-I")
        bridge = await asyncio.create_subprocess_exec(
            sys.executable, *remote.call.command[2:], env=env, cwd=REPO,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert bridge.stdin and bridge.stdout and bridge.stderr

        async def feed() -> None:
            assert bridge.stdin
            while data := await remote.read():
                bridge.stdin.write(data)
                await bridge.stdin.drain()
            bridge.stdin.close()

        async def pipe(reader: asyncio.StreamReader, channel: int) -> None:
            while data := await reader.read(4096):
                remote.write(data, channel=channel)

        feeding = asyncio.create_task(feed())
        await asyncio.gather(pipe(bridge.stdout, 1), pipe(bridge.stderr, 2))
        feeding.cancel()
        return await bridge.wait()

    running(api)
    api.exec_handler = real_bridge
    stdin_of(monkeypatch, b"p x\nc\n")
    task = subprocess.Popen([sys.executable, "-m", "levrt.runtime"], env=task_env, cwd=REPO, stderr=subprocess.PIPE)
    try:
        assert main(["attach", "7.3", "--timeout", "20s"]) == 0
        _, task_err = task.communicate(timeout=30)
    finally:
        task.kill()
    out, _ = out_err(capsys)
    assert "levrt: attached to task 7.3 at" in out and "\n(Pdb) 42\n" in out
    assert out.rstrip().endswith("levrt: the entry continues; the debugger session ends.")
    assert task.returncode == 0, task_err.decode()
    assert (tmp_path / "out").read_text() == "x=42"
    assert b"attach with: levrt attach 7.3 (waiting 30 s)" in task_err
