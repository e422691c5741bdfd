"""Delivering a Unix signal to a task's main process: one implementation for ``Task.signal`` and
``levrt kill``.

Why it is not a plain ``kill``: an entry's container runs levrt's Python as PID 1, and PID 1
ignores every signal it has no handler for. A signal sent while the interpreter is still starting
would be lost, so the deliverer (run by the bundled Python) waits until PID 1 handles the signal,
then sends it. An image without an entry runs its own program; there ``kill`` must do.
"""

from __future__ import annotations

import signal as signals

from levrt._clients import resources
from levrt._clients.api import ExecResult
from levrt._clients.kube import Kube
from levrt.errors import LevrtError
from levrt.podenv import PYTHON

__all__ = ["deliver", "signal_name", "signal_number"]

# Waits, inside the container, until PID 1 has a handler for the signal, then sends it.
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


def signal_number(signal: str | int) -> int:
    """The number of ``"SIGINT"``, ``"int"``, ``2``...; ``LevrtError`` for an unknown signal."""
    try:
        if isinstance(signal, int):
            return int(signals.Signals(signal))
        name = signal.upper()
        return int(signals.Signals[name if name.startswith("SIG") else f"SIG{name}"])
    except (KeyError, ValueError):
        raise LevrtError(
            f"Unknown signal {signal!r}. Use a name such as 'SIGINT', 'SIGTERM' or 'SIGKILL', or its number."
        ) from None


def signal_name(signum: int) -> str:
    return signals.Signals(signum).name


def _command(signum: int, *, runtime: bool) -> list[str]:
    if runtime:
        return [PYTHON, "-c", _DELIVER, str(signum)]
    return ["kill", "-s", signal_name(signum).removeprefix("SIG"), "1"]


async def deliver(kube: Kube, namespace: str, pod: str, signum: int, *, runtime: bool) -> ExecResult:
    """Send ``signum`` to PID 1 of the Pod's main container; ``runtime``: it runs levrt's Python."""
    return await kube.exec(
        resources.prepare("connect", "Pod", namespace=namespace, name=pod, sub="exec").path,
        container="main", command=_command(signum, runtime=runtime),
    )
