"""What a failed task's report says: the last lines of the entry's traceback, and the message.

Why apart and pure: the engine writes the message of a ``TaskFailed`` and the run's summary (live
or plain) quotes the traceback's tail; both read the task's logs the same way, here, without I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from levrt._shapes.podstatus import IMAGE_PULL_REASONS

__all__ = ["TRACEBACK_HEADER", "TRACEBACK_LINES", "failure_text", "traceback_tail"]

TRACEBACK_LINES = 10
"""How much of a failed entry's traceback a failure report quotes: its last frames, the author's."""
TRACEBACK_HEADER = "Traceback (most recent call last):"
WARNINGS_QUOTED = 8


def failure_text(name: str, *, reason: str, detail: str, warnings: Sequence[str] = ()) -> str:
    """``Task NAME failed: REASON (DETAIL)``, a hint for an image that cannot be pulled, and the Pod's
    Warning events (quoted only when its logs hold no traceback: then they are all there is to say why;
    the ``Normal`` events say nothing about a failure)."""
    text = f"Task {name} failed: {reason}"
    if detail:
        text += f" ({detail.strip()})"
    if reason in IMAGE_PULL_REASONS:
        text += (". Check the image name and tag; on a cluster without a registry, build the "
                 "image and load it into the node (kind load docker-image ...)")
    if warnings:
        text += "\nEvents:\n" + "\n".join(f"  {e}" for e in warnings[-WARNINGS_QUOTED:])
    return text


def traceback_tail(logs: str, *, lines: int = TRACEBACK_LINES) -> list[str]:
    """The last ``lines`` lines of the last Python traceback in a task's output (the runtime prints
    the entry's to stderr), ending at its exception line; ``[]`` when the output holds none. Its
    header may have fallen out of the quoted tail of the logs: then it starts at the first frame."""
    text = logs.splitlines()
    headers = [i for i, line in enumerate(text) if TRACEBACK_HEADER in line]
    if headers:
        start = headers[-1]
    else:
        frames = [i for i, line in enumerate(text) if line.lstrip().startswith('File "') and ", line " in line]
        if not frames:
            return []
        start = frames[0]
    end = start + 1
    while end < len(text) and text[end][:1] in (" ", "\t"):  # frames and their source lines are indented
        end += 1
    return text[start:end + 1][-lines:]  # up to the exception line, the first not indented
