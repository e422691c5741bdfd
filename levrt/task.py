"""``Task``: the handle of one running Cr — its Pod, its host, signals, logs and its end.

Why a handle and not the Cr: one Cr may be started many times (each ``start()`` is a new run),
and a run has state a description must not carry: the Pod name, the Pod IP that other tasks
``links`` to, whether the caller already signalled it.
"""

from __future__ import annotations

import logging
import signal as signals
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from levrt.document import Document
from levrt.errors import LevrtError

if TYPE_CHECKING:
    from levrt.cr import Cr
    from levrt.engine import Engine

__all__ = ["Task"]

log = logging.getLogger("lev")

# Waits, inside the container, until PID 1 has a handler for the signal (an interpreter that is
# still starting would otherwise drop it: PID 1 ignores signals it does not handle), then sends it.
_DELIVER = (
    "import os,sys,time\n"
    "s=int(sys.argv[1]);end=time.monotonic()+10\n"
    "while time.monotonic()<end:\n"
    " try:\n"
    "  line=[l for l in open('/proc/1/status') if l.startswith('SigCgt')][0]\n"
    " except OSError:\n"
    "  break\n"
    " if int(line.split()[1],16)>>(s-1)&1:\n"
    "  break\n"
    " time.sleep(0.02)\n"
    "os.kill(1,s)\n"
)


class Task:
    """A running Cr. ``await task`` (or ``await task.done()``) waits for its ``Document``."""

    def __init__(self, *, engine: Engine, cr: Cr, job_id: int, task_id: int, pod: str, collection: str) -> None:
        self._engine = engine
        self._cr = cr
        self.job_id = job_id
        self.task_id = task_id
        self.pod = pod
        self.collection = collection
        self.host: str | None = None
        self._signalled = False
        self._document: Document | None = None
        self._failure: BaseException | None = None

    @property
    def id(self) -> str:
        return f"{self.job_id}.{self.task_id}"

    def __repr__(self) -> str:
        return f"<Task {self.id} pod={self.pod} host={self.host}>"

    def _started(self, pod: dict[str, Any]) -> None:
        self.host = pod.get("status", {}).get("podIP")

    def __await__(self) -> Generator[Any, None, Document]:
        return self.done().__await__()

    async def signal(self, signal: str | int = "SIGINT") -> None:
        """Deliver ``signal`` to the main process of the main container; return once delivered."""
        signum = _signal_number(signal)
        from levrt.engine import container_status

        pod = self._engine.watch.get(self.pod) or {}
        if "terminated" in (container_status(pod).get("state") or {}) or pod.get("levrt/deleted"):
            log.debug("task %s already ended; signal %s not sent", self.id, signal)
            return
        self._signalled = True
        if self._cr.entry is not None:
            command = ["/levrt/bin/python3", "-c", _DELIVER, str(signum)]
        else:
            command = ["kill", "-s", signals.Signals(signum).name.removeprefix("SIG"), "1"]
        result = await self._engine.kube.exec(
            self._engine.settings.namespace, self.pod, container="main", command=command
        )
        if result.exit_code != 0:
            raise LevrtError(
                f"Could not deliver {signals.Signals(signum).name} to task {self.id}: "
                f"{(result.stderr or result.stdout).decode(errors='replace').strip()}. "
                "An image without an entry needs a `kill` command for signals."
            )

    async def logs(self, *, tail: int | None = None) -> str:
        """The main container's output so far (the last ``tail`` lines)."""
        return await self._engine.logs(self.pod, tail=tail)

    async def done(self) -> Document:
        """Wait for the end of the run and return its ``Document``; ``TaskFailed`` on failure."""
        if self._document is not None:
            return self._document
        if self._failure is not None:
            raise self._failure
        from levrt.engine import container_status, finished

        engine = self._engine
        pod = await engine.watch.wait(self.pod, finished)
        terminated = (container_status(pod).get("state") or {}).get("terminated") or {}
        exit_code = terminated.get("exitCode")
        ok = exit_code == 0 or (pod.get("status", {}).get("phase") == "Succeeded" and exit_code is None)
        try:
            if not ok and not self._signalled:
                reason = terminated.get("reason") or pod.get("status", {}).get("reason") or (
                    "PodDeleted" if pod.get("levrt/deleted") else "Failed"
                )
                detail = terminated.get("message") or pod.get("status", {}).get("message") or ""
                engine.record(task=self.task_id, state="failed", exitCode=exit_code, reason=reason)
                self._failure = await engine.failure(
                    self.pod, reason=reason, detail=detail, exit_code=exit_code, task=self
                )
                raise self._failure
            engine.record(task=self.task_id, state="succeeded", exitCode=exit_code)
        finally:
            if not engine.settings.keep:
                await engine.delete_pod(self.pod)
            engine.watch.forget(self.pod)
        self._document = Document(
            engine.store.collection(self.collection), {"_id": {"job": self.job_id, "task": self.task_id}}
        )
        return self._document


def _signal_number(signal: str | int) -> int:
    try:
        if isinstance(signal, int):
            return int(signals.Signals(signal))
        name = signal.upper()
        return int(signals.Signals[name if name.startswith("SIG") else f"SIG{name}"])
    except (KeyError, ValueError):
        raise LevrtError(
            f"Unknown signal {signal!r}. Use a name such as 'SIGINT', 'SIGTERM' or 'SIGKILL', or its number."
        ) from None
