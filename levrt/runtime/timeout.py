"""The entry's deadline (``Cr(timeout=...)``): an interrupt at the deadline, a hard end after a grace.

Why in the runtime and not only the kubelet's ``activeDeadlineSeconds``: the kubelet counts from the
Pod's start (image pull included) and ends the whole Pod, so a long scan would lose what it was
about to save. Here the clock starts when the entry starts, and the entry gets the same interrupt as
``task.signal()``: a plain entry sees ``KeyboardInterrupt`` (its handler can store partial results),
a coroutine entry is cancelled. An entry still running ``TIMEOUT_GRACE`` seconds later is ended
with ``os._exit``: the kernel ignores a SIGKILL that a container's PID 1 sends itself. Either way
the runtime exits ``EXIT_TIMED_OUT`` and says so in the termination message; the builder sets
``activeDeadlineSeconds`` to timeout + grace + a margin as the backstop behind this timer.
``EXIT_TIMED_OUT`` and ``TIMEOUT_GRACE`` live in ``levrt.podenv``: the builder and the Pod status reader
count with them too. Standard library only (DESIGN.md, "Import rule").
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping

from levrt.podenv import EXIT_TIMED_OUT, TIMEOUT_ENV, TIMEOUT_GRACE

__all__ = ["EXIT_TIMED_OUT", "TIMEOUT_GRACE", "Deadline", "timed_out_reason"]



def timed_out_reason(seconds: float, *, killed: bool = False) -> str:
    """The termination message of a timed-out entry (the engine shows it to the caller)."""
    text = f"TimedOut: the entry timed out after {seconds:g} s (timeout={seconds:g})"
    if killed:
        text += f" and was ended {TIMEOUT_GRACE} s after the interrupt"
    return text


class Deadline:
    """Interrupts the main thread ``seconds`` after ``start()``, ends the process ``grace`` later.

    ``fired`` says whether the interrupt was sent: the runtime then exits ``EXIT_TIMED_OUT`` however
    the entry ended. ``on_hard_end`` gets the termination message to write before ``os._exit``.
    """

    def __init__(
        self,
        seconds: float,
        *,
        grace: float = TIMEOUT_GRACE,
        on_hard_end: Callable[[str], None] | None = None,
        exit: Callable[[int], object] = os._exit,
    ) -> None:
        self.seconds = seconds
        self.grace = grace
        self.fired = False
        self._on_hard_end = on_hard_end
        self._exit = exit
        self._lock = threading.Lock()
        self._stopped = False
        self._timer: threading.Timer | None = None
        self._main = threading.main_thread().ident

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, on_hard_end: Callable[[str], None] | None = None) -> Deadline | None:
        """The deadline ``LEVRT_TIMEOUT`` asks for, or None; ``ValueError`` naming a bad value."""
        text = env.get(TIMEOUT_ENV)
        if not text:
            return None
        try:
            seconds = int(text)
        except ValueError:
            seconds = 0
        if seconds < 1:
            raise ValueError(f"{TIMEOUT_ENV}={text!r} must be a whole number of seconds >= 1.")
        return cls(seconds, on_hard_end=on_hard_end)

    def start(self) -> None:
        self._arm(self.seconds, self._interrupt)

    def cancel(self) -> None:
        """No interrupt and no hard end after this returns (the entry is over)."""
        with self._lock:
            self._stopped = True
            if self._timer is not None:
                self._timer.cancel()

    def _arm(self, seconds: float, action: Callable[[], None]) -> None:
        with self._lock:
            if self._stopped:
                return
            self._timer = threading.Timer(seconds, action)
            self._timer.daemon = True
            self._timer.start()

    def _interrupt(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self.fired = True
        print(f"levrt runtime: timeout={self.seconds:g} s reached; interrupting the entry "
              f"(it is ended in {self.grace:g} s if it has not returned)", file=sys.stderr, flush=True)
        # To the main thread itself: a signal the kernel gave to another thread would not break
        # the main thread out of a blocking call (sleep, a socket read, waiting for a subprocess).
        if self._main is not None:
            signal.pthread_kill(self._main, signal.SIGINT)
        self._arm(self.grace, self._hard_end)

    def _hard_end(self) -> None:
        with self._lock:
            if self._stopped:
                return
        print(f"levrt runtime: the entry did not return within {self.grace:g} s of the interrupt; "
              "ending it", file=sys.stderr, flush=True)
        if self._on_hard_end is not None:
            self._on_hard_end(timed_out_reason(self.seconds, killed=True))
        sys.stdout.flush()
        self._exit(EXIT_TIMED_OUT)
