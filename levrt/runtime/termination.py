"""The termination message: one bounded line saying why the task process ended.

Why apart: Kubernetes keeps what a container writes to its termination log (``levrt.podenv``:
``TERMINATION_LOG_ENV``) and the client shows it as the task's reason, so the task process and the
record (which names what a store outage left unwritten) phrase reasons the same way, within the
limit the kubelet reads. Outside Kubernetes there is no log to write: stderr still has everything.
Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping

from levrt.errors import StoreError
from levrt.podenv import DEFAULT_TERMINATION_LOG, TERMINATION_LOG_ENV

__all__ = ["REASON_LIMIT", "append_reason", "short_reason", "termination_log", "write_reason"]

REASON_LIMIT = 1024


def termination_log(env: Mapping[str, str]) -> str:
    """Where the termination message goes; known before anything else is read, so that even a
    missing payload or variable reaches the client as a reason."""
    return env.get(TERMINATION_LOG_ENV) or DEFAULT_TERMINATION_LOG


def short_reason(exc: BaseException) -> str:
    """``"ValueError: boom"``, one line, at most ``REASON_LIMIT`` bytes: the termination message."""
    text = f"{type(exc).__name__}: {exc}".strip().replace("\n", " ")
    encoded = text.encode()
    if len(encoded) > REASON_LIMIT:
        text = encoded[: REASON_LIMIT - 3].decode(errors="ignore") + "..."
    return text


def write_reason(path: str, reason: str) -> None:
    try:
        with open(path, "w") as fh:
            fh.write(reason)
    except OSError:
        pass  # outside Kubernetes there is no termination log; stderr still has everything


def append_reason(path: str, text: str) -> None:
    """Add ``text`` to the reason already written (the entry's failure), within ``REASON_LIMIT``."""
    try:
        with open(path) as fh:
            before = fh.read().strip()
    except OSError:
        before = ""
    combined = f"{before}; also {text}" if before else text
    write_reason(path, short_reason(StoreError(combined)) if not before else combined[:REASON_LIMIT])
