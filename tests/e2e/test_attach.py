"""``levrt attach`` on the real cluster: a breakpoint in an entry, debugged from this machine.

Why: the pieces are tested apart (``tests/unit/test_attach_*.py``: the command against the fake
apiserver and the real transport against a local websocket; ``tests/runtime/test_debug.py``: the
debugger and the bridge in a busybox chroot). Only a real apiserver and kubelet show that the
exec websocket carries stdin, its end (v5 close) and the exit code through to the bridge in a
running task, and that the task then finishes and stores what it computed.

The entries set ``LEVRT_DEBUG_WAIT`` themselves: ``Cr(env=...)`` refuses ``LEVRT_*`` names.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest

import levrt
from levrt import Cr, lev
from levrt.errors import TaskFailed
from tests.e2e.conftest import BUSYBOX

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]


@levrt.remote
def stop_at_breakpoint(wait: str) -> None:
    import os as _os

    _os.environ["LEVRT_DEBUG_WAIT"] = wait
    x = 42
    breakpoint()
    lev.set(x=x)


async def levrt_attach(kube_cluster: Any, task: str, commands: bytes) -> tuple[int, str, str]:
    """``levrt attach TASK`` as a user runs it, with ``commands`` piped to it (not a terminal)."""
    env = dict(os.environ, KUBECONFIG=kube_cluster.kubeconfig, LEVRT_NAMESPACE=kube_cluster.namespace)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "levrt", "attach", task, "--timeout", "120s", cwd=REPO, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(commands), timeout=180)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_attach_reads_a_value_and_the_entry_goes_on_to_store_it(job: Any, kube_cluster: Any) -> None:
    task = await Cr(BUSYBOX, entry=stop_at_breakpoint("120")).start()
    code, out, err = await levrt_attach(kube_cluster, task.id, b"p x\nc\n")
    assert code == 0, out + err
    assert f"levrt: attached to task {task.id} at " in out
    assert "\n(Pdb) 42\n" in out
    assert "levrt: the entry continues; the debugger session ends." in out
    doc = await task.done()
    assert (await doc.get())["x"] == 42


async def test_without_an_attacher_the_entry_finishes_after_the_wait(job: Any) -> None:
    task = await Cr(BUSYBOX, entry=stop_at_breakpoint("1")).start()
    logs = ""
    for _ in range(240):  # the entry goes on one second after reaching the breakpoint
        logs = await task.logs()
        if "continuing without stopping" in logs:
            break
        await asyncio.sleep(0.25)
    doc = await task.done()
    assert (await doc.get())["x"] == 42
    assert f"attach with: levrt attach {task.id} (waiting 1 s)" in logs
    assert "levrt: nobody attached within 1 s; continuing without stopping at" in logs


async def test_quitting_the_debugger_fails_the_task_with_that_reason(job: Any, kube_cluster: Any) -> None:
    task = await Cr(BUSYBOX, entry=stop_at_breakpoint("120")).start()
    code, out, err = await levrt_attach(kube_cluster, task.id, b"q\n")
    assert code == 0, out + err
    assert "levrt: quitting: the entry ends with DebuggerQuit" in out
    with pytest.raises(TaskFailed) as failed:
        await task.done()
    assert failed.value.exit_code == 1
    assert "DebuggerQuit: quit in the debugger (levrt attach) at" in str(failed.value)
