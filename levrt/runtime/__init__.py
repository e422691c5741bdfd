"""The in-container side of levrt: what runs in a task's containers, from the runtime bundle.

Why a thin face: Python imports a package's ``__init__`` before any of its modules, so whatever
this file loads, the ``levrt-files`` init container (``levrt.runtime.fetch``) and anything that
reads one constant of the runtime load too. So it holds no code: it names where things live and
loads the task process, with the debugger (pdb) and the payload reader (cloudpickle), only when
asked for it. The modules, each one idea:

- ``process``: ``python -m levrt.runtime``, the task process (``main``, exit codes, signals);
- ``config``: ``RuntimeConfig``, what the Pod's environment (``levrt.podenv``) tells it;
- ``record``: ``StoreBinding``, ``lev`` in the entry (the record, values stored apart, outages);
- ``termination``: the one-line reason Kubernetes keeps;
- ``timeout``: the entry's deadline; ``debug`` and ``bridge``: breakpoints and ``levrt attach``;
- ``blobs`` and ``fetch``: the store's file storage, and the ``levrt-files`` init container;
- ``foreign``: a clear error for compiled modules built for another Python.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from levrt.podenv import EXIT_TIMED_OUT
from levrt.runtime.config import RuntimeConfig, SetupError
from levrt.runtime.record import StoreBinding
from levrt.runtime.termination import REASON_LIMIT, short_reason

if TYPE_CHECKING:
    from levrt.runtime.process import (
        EXIT_ENTRY_FAILED,
        EXIT_INTERRUPTED,
        EXIT_OK,
        EXIT_PAYLOAD,
        EXIT_SETUP,
        EXIT_STORE,
        main,
        run_entry,
    )

__all__ = [
    "EXIT_ENTRY_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PAYLOAD",
    "EXIT_SETUP",
    "EXIT_STORE",
    "EXIT_TIMED_OUT",
    "REASON_LIMIT",
    "RuntimeConfig",
    "SetupError",
    "StoreBinding",
    "main",
    "run_entry",
    "short_reason",
]

_PROCESS_NAMES = frozenset(
    {"EXIT_ENTRY_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_PAYLOAD", "EXIT_SETUP", "EXIT_STORE", "main",
     "run_entry"}
)


def __getattr__(name: str) -> Any:
    if name in _PROCESS_NAMES:
        # The task process loads pdb (debug) and cloudpickle (payload): only when a task runs it.
        from levrt.runtime import process

        return getattr(process, name)
    raise AttributeError(f"module 'levrt.runtime' has no attribute {name!r}")
