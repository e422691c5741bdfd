"""The entry's output, kept by the runtime while it still goes to the container's log as it comes.

Why: the task's end report (``levrt.endreports``) carries the output, so the engine need not read
each ended task's log from the apiserver (one request a task, the last one above the create and the
batched delete). File descriptors 1 and 2 are pointed at one pipe, so the entry's own prints and
every process it starts (a scanner's output) pass through in the order they were written; a thread
writes each chunk on to the original stdout at once (``kubectl logs -f`` and ``levrt logs`` stay
live) and keeps a copy. The container's log then holds stderr's lines on its stdout stream, in
their place among the others: what ``kubectl logs`` and the archive show, which merge the two.

The copy is only offered when it is whole: output longer than the limit, or a pipe still held open
by a process the entry left running, makes ``stop`` answer None, and the engine reads the log from
the apiserver as before. Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

__all__ = ["OutputCapture"]

CHUNK = 65536
DRAIN_SECONDS = 0.5
"""How long ``stop`` waits for the pipes to empty once the entry is done."""


class OutputCapture:
    """Descriptors 1 and 2 teed into memory, up to ``limit`` bytes; ``start``, then ``stop`` once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._chunks: list[bytes] = []
        self._size = 0
        self._over = False
        self._lock = threading.Lock()
        self._saved: dict[int, int] = {}
        self._thread: threading.Thread | None = None

    @classmethod
    def start(cls, limit: int) -> OutputCapture | None:
        """Capture from now on; None when the descriptors cannot be redirected (nothing changed then)."""
        capture = cls(limit)
        try:
            capture._redirect()
        except OSError:
            capture._restore()
            return None
        return capture

    def _redirect(self) -> None:
        _flush()
        # One pipe for both: what the entry writes reaches the copy in the order it was written (a
        # traceback after the lines printed before it). The container's log gets it all on its stdout.
        for fd in (1, 2):
            self._saved[fd] = os.dup(fd)  # not inheritable: what the entry starts gets only the pipe
        read, write = os.pipe()
        for fd in (1, 2):
            os.dup2(write, fd)  # inheritable: what the entry starts writes into the pipe too
        os.close(write)
        self._thread = threading.Thread(target=self._pump, args=(read, self._saved[1]), name="levrt-output",
                                        daemon=True)
        self._thread.start()

    def _pump(self, read: int, out: int) -> None:
        try:
            while chunk := os.read(read, CHUNK):
                _write_all(out, chunk)
                with self._lock:
                    if self._size + len(chunk) <= self.limit and not self._over:
                        self._chunks.append(chunk)
                    else:
                        self._over = True
                    self._size += len(chunk)
        except OSError:
            with self._lock:
                self._over = True  # a copy that missed part of the output is never offered
        finally:
            os.close(read)

    def _restore(self) -> None:
        """Descriptors 1 and 2 back to what they were (which closes this process's pipe ends)."""
        _flush()
        for fd, saved in self._saved.items():
            with contextlib.suppress(OSError):
                os.dup2(saved, fd)

    def stop(self, wait: float = DRAIN_SECONDS) -> bytes | None:
        """Stop capturing; the whole output, or None when it is not whole (over the limit, or still
        being written by a process the entry left behind, or a pipe that failed)."""
        self._restore()
        if self._thread is not None:
            self._thread.join(wait)
        drained = self._thread is not None and not self._thread.is_alive()
        if drained:  # a pump still running may yet write to its saved descriptor
            for saved in self._saved.values():
                with contextlib.suppress(OSError):
                    os.close(saved)
        with self._lock:
            if not drained or self._over:
                return None
            return b"".join(self._chunks)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except OSError:  # the container's log is gone: the copy is still kept
            return
        view = view[written:]
