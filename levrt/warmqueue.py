"""The warm Pods' queue: the documents through which a job hands entries to its warm Pods.

Why a module of its own, in the lowest layer: the engine (``levrt._core.warm``) writes these
documents and reads their ends, and the worker in the warm Pod (``levrt.runtime.warm``) takes them
and writes their ends. Both sides import the collection's name, the fields and the states from here,
so neither can drift from the other. Standard library only: the worker runs inside any image.

One document per entry, ``_id`` = ``"job.task"``, in collection ``QUEUE`` of the task database
(the task user writes it, as it writes records)::

    {_id, job, task, attempt, worker, state, payload, argv, env, collection, timeout, mac,
     queued, started?, ended?, exit?, reason?, log?, logBytes?, logCut?, signal?, tail?}

The engine inserts it ``queued`` and addressed to one worker Pod (``worker``): each worker only
takes its own, so two workers never race for an entry. The worker sets ``running``, then ``ended``
with the exit code, the termination reason and the entry's output; the engine records the end in
the task's status and log archive and deletes the document. ``signal`` is set by the engine to ask
the worker to deliver a signal to a running entry.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

__all__ = [
    "ENDED",
    "LOG_LIMIT_BYTES",
    "QUEUE",
    "QUEUED",
    "RUNNING",
    "SIGNED",
    "entry_id",
    "entry_mac",
    "log_field",
]

QUEUE = "levrt_warm"
"""The queue's collection, in the task database (``levrt``; not the journal: warm Pods write it)."""
QUEUED = "queued"
RUNNING = "running"
ENDED = "ended"
LOG_LIMIT_BYTES = 4 * 1024 * 1024
"""The most of one entry's output kept (its end: where a traceback is); the rest is named as cut."""


SIGNED = ("_id", "job", "task", "attempt", "worker", "argv", "env", "collection", "timeout")
"""The fields of an entry its ``mac`` covers, with its payload."""


def entry_mac(key: str, doc: Mapping[str, Any]) -> str:
    """The HMAC-SHA256 of an entry under its pool's key (which only the job and that pool's Pods
    know). The queue is in the task database, which every task may write: a Pod runs only entries
    its job signed, so a task cannot hand code to another job's warm Pods."""
    fields = json.dumps({name: doc.get(name) for name in SIGNED}, sort_keys=True, default=str).encode()
    digest = hmac.new(key.encode(), fields, hashlib.sha256)
    digest.update(bytes(doc.get("payload") or b""))
    return digest.hexdigest()


def entry_id(job: int, task: int) -> str:
    return f"{job}.{task}"


def log_field(data: bytes, *, limit: int = LOG_LIMIT_BYTES) -> dict[str, Any]:
    """An entry's output as the queue keeps it: the text, its whole size, and where it was cut."""
    fields: dict[str, Any] = {"logBytes": len(data)}
    if len(data) > limit:
        fields["logCut"] = (f"only the last {limit} of {len(data)} bytes of this entry's output were kept "
                            "(a warm Pod's entry keeps at most that)")
        data = data[len(data) - limit:]
    fields["log"] = data.decode("utf-8", errors="replace")
    return fields
