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

from typing import TYPE_CHECKING, Any

from levrt import annot, errors
from levrt._version import __version__ as __version__
from levrt.argv import cli
from levrt.context import ctx, lev
from levrt.cr import Cr, Digest, File
from levrt.document import Document
from levrt.errors import *  # noqa: F403  (the error classes, listed once in errors.__all__)
from levrt.remote import remote
from levrt.run import run
from levrt.storage import upload
from levrt.task import Task

if TYPE_CHECKING:
    from levrt.concurrent import Concurrent
    from levrt.history import Changes, Job, changes, job


def __getattr__(name: str) -> Any:
    if name == "Concurrent":
        from levrt.concurrent import Concurrent  # needs asyncio, which a task container does without

        return Concurrent
    if name in ("job", "Job", "changes", "Changes"):
        from levrt import history  # reads the store: its client loads on first use

        return getattr(history, name)
    raise AttributeError(f"module 'levrt' has no attribute {name!r}")

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
