"""levrt: Kubernetes-native job runner for security tooling.

An orchestration is plain ``async`` Python awaiting ``Cr``s (container runs); each becomes one
Pod; results written in the container with ``lev.set(...)`` come back as a ``Document``::

    @levrt.remote
    def entry():
        lev.set(msg="Hello")

    async def main():
        doc = await Cr("busybox:1.36", entry=entry())
        print(await doc.get())

    levrt.run(main())

``import levrt`` needs only the standard library, cloudpickle and pymongo (the in-container
runtime ships this package); Kubernetes, YAML and display libraries load lazily where used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from levrt import errors
from levrt._version import __version__ as __version__
from levrt.errors import *  # noqa: F403  (the error classes, listed once in errors.__all__)

# Eager, and cheap: a submodule of the same name imported later would otherwise shadow them.
from levrt.remote import remote
from levrt.run import run

if TYPE_CHECKING:
    from levrt import annot
    from levrt.argv import cli
    from levrt.concurrent import Concurrent
    from levrt.context import ctx, lev
    from levrt.cr import Cr, Digest, File
    from levrt.document import Document
    from levrt.history import Changes, Job, changes, job
    from levrt.storage import upload
    from levrt.task import Task

_LAZY = {
    "annot": "levrt.annot", "cli": "levrt.argv", "Concurrent": "levrt.concurrent", "ctx": "levrt.context",
    "lev": "levrt.context", "Cr": "levrt.cr", "Digest": "levrt.cr", "File": "levrt.cr",
    "Document": "levrt.document", "Changes": "levrt.history", "Job": "levrt.history", "changes": "levrt.history",
    "job": "levrt.history", "upload": "levrt.storage", "Task": "levrt.task",
}
"""Where each name of the package lives. Loaded on first use: a task container's runtime imports
``levrt`` for ``lev`` alone and must not pay for the SDK's surface (the start of every task)."""


def __getattr__(name: str) -> Any:
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'levrt' has no attribute {name!r}")
    module = importlib.import_module(where)
    value = module if name == "annot" else getattr(module, name)
    globals()[name] = value  # once: later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "Changes",
    "Concurrent",
    "Cr",
    "Digest",
    "Document",
    "File",
    "Job",
    "Task",
    "annot",
    "changes",
    "cli",
    "ctx",
    "job",
    "lev",
    "remote",
    "run",
    "upload",
    *errors.__all__,
]
