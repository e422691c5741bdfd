"""A task's end as its runtime reports it through the store, before the kubelet reports the Pod's.

Why: the kubelet notices that a container ended on its next relist, about once a second, and a
task's logs otherwise come from the apiserver, one read per task. The runtime knows both things
first: as the entry's process ends it writes one document with its exit code and its output, and the
engine (``levrt._core.ends``) takes it from the store. Both sides import the collection, the fields
and the signature from here, so neither can drift. Standard library only: the runtime imports it
inside any image.

One document per Pod, ``_id`` = the Pod's name (an attempt of its own), in collection ``COLLECTION``
of the task database::

    {_id, job, task, exit, log, logBytes, mac}

``mac`` is the HMAC-SHA256 of the other fields under the task's own key (``task_key``), which only
the job and the task's payload Secret know: the collection is in the task database, which every task
may write, and a task must not end another one. The engine deletes each document once it read it.

A report is a courtesy: a runtime that never connected to the store (an entry that stores nothing),
that could not write it, or whose output is longer than ``LOG_LIMIT_BYTES``, reports nothing, and
the engine learns the end from the Pod and reads its logs from the apiserver, as before.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["COLLECTION", "KEY_FILE", "LOG_LIMIT_BYTES", "SIGNED", "report_mac", "signed_report", "succeeded",
           "task_key"]

COLLECTION = "levrt_ends"
"""The reports' collection, in the task database (the task user writes it, as it writes records)."""
KEY_FILE = "end-key"
"""The key of the payload Secret (a file beside the payload) holding the task's reporting key."""
LOG_LIMIT_BYTES = 256 * 1024
"""The most output a report carries; longer output is read from the apiserver, whose archive path
keeps large logs whole in the file storage."""
SIGNED = ("_id", "job", "task", "exit", "log", "logBytes")
"""The fields of a report its ``mac`` covers."""


def task_key(job_secret: bytes, job: int, task: int) -> str:
    """The reporting key of task ``job.task``: derived from a secret only the job holds, so the
    engine needs no table of keys and every attempt of a task shares its Secret's key."""
    return hmac.new(job_secret, f"{job}.{task}".encode(), hashlib.sha256).hexdigest()


def report_mac(key: str, doc: Mapping[str, Any]) -> str:
    """The signature of a report under its task's key."""
    fields = json.dumps({name: doc.get(name) for name in SIGNED}, sort_keys=True).encode()
    return hmac.new(key.encode(), fields, hashlib.sha256).hexdigest()


def signed_report(key: str, *, pod: str, job: int, task: int, exit: int, output: bytes) -> dict[str, Any]:
    """The report of Pod ``pod`` of task ``job.task``, which exited ``exit`` having written ``output``."""
    doc: dict[str, Any] = {"_id": pod, "job": job, "task": task, "exit": exit,
                           "log": output.decode("utf-8", errors="replace"), "logBytes": len(output)}
    doc["mac"] = report_mac(key, doc)
    return doc


def succeeded(report: Mapping[str, Any] | None) -> bool:
    """Whether ``report`` says its entry succeeded (exit 0): the one end taken before the Pod's."""
    return report is not None and report.get("exit") == 0
