"""Warm Pods (``Cr(warm=...)``): the pool a Cr's entries share, its worker Pod, and what an entry's end means.

Why pure and apart from the task Pod: a warm Pod is a task Pod with its task taken out. It is built
by the task builder from the first Cr of its pool (image, resources, capabilities, scheduling, the
runtime's delivery) and then given the worker's command (``levrt.runtime.warm``) instead of one
entry: no payload Secret, no task id, no record collection, no deadline of its own. Each entry then
brings those through the store (``levrt.warmqueue``). The pool key says which Crs may share a Pod:
those whose Pods would be the same apart from the entry (its arguments, ``cmd``, ``env``, schema
and timeout travel with the entry).
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from levrt._shapes.build import build_task
from levrt._shapes.containers import PAYLOAD_VOLUME, plain
from levrt._shapes.names import COLLECTION_ANNOTATION, ENTRY_ANNOTATION, JOB_LABEL, MANAGED_BY, ROLE_LABEL
from levrt.cr import Cr
from levrt.podenv import (
    COLLECTION_ENV,
    EXIT_TIMED_OUT,
    JOB_ENV,
    PAYLOAD_ENV,
    TASK_ENV,
    TIMEOUT_ENV,
    WARM_COMMAND,
    WARM_KEY_ENV,
    WARM_WORKER_ENV,
)
from levrt.settings import Settings

__all__ = ["POOL_LABEL", "WARM_ROLE", "EntryEnd", "entry_end", "pool_key", "worker_name", "worker_pod"]

WARM_ROLE = "warm"
"""The role label of a warm Pod: it carries the job's label (the job's Pods) but no task's."""
POOL_LABEL = "levrt.io/pool"
ENTRY_ENV_DROPPED = (PAYLOAD_ENV, TASK_ENV, COLLECTION_ENV, TIMEOUT_ENV)
"""What a task container's environment says of one entry: each entry brings its own."""


def pool_key(cr: Cr, settings: Settings) -> str:
    """The pool of ``cr``'s entries: 10 hex digits of the hash of what its Pod would be apart from
    the entry. Settings' defaults count as the Pod would take them."""
    shape = {
        "image": cr.image,
        "resources": plain(cr.resources) if cr.resources is not None else plain(settings.resources or {}),
        "capabilities": sorted(cr.capabilities),
        "node_selector": {**(settings.node_selector or {}), **(cr.node_selector or {})},
        "tolerations": [plain(t) for t in (*settings.tolerations, *cr.tolerations)],
        "pods": cr.warm,
    }
    return hashlib.sha256(json.dumps(shape, sort_keys=True, default=str).encode()).hexdigest()[:10]


def worker_name(job: int, pool: str, index: int) -> str:
    """``lev-j{job}-w{pool}-{index}``: a warm Pod (no task Pod's name: ``task_of_pod`` does not read it)."""
    return f"lev-j{job}-w{pool}-{index}"


def worker_pod(cr: Cr, *, job: int, pool: str, index: int, settings: Settings, key: str) -> dict[str, Any]:
    """The warm Pod ``index`` of pool ``pool``, shaped by ``cr`` (one of the pool's Crs); ``key``:
    the pool's signing key (``levrt.warmqueue.entry_mac``)."""
    built = build_task(cr, job=job, task=0, collection="-", settings=settings).pod
    pod = copy.deepcopy(built)
    name = worker_name(job, pool, index)
    meta = pod["metadata"]
    meta["name"] = name
    meta["labels"] = {**MANAGED_BY, JOB_LABEL: str(job), ROLE_LABEL: WARM_ROLE, POOL_LABEL: pool}
    for annotation in (COLLECTION_ANNOTATION, ENTRY_ANNOTATION):
        meta.get("annotations", {}).pop(annotation, None)
    spec = pod["spec"]
    spec.pop("activeDeadlineSeconds", None)  # each entry has its own deadline, kept by the worker
    spec["volumes"] = [v for v in spec.get("volumes", []) if v["name"] != PAYLOAD_VOLUME]
    if not spec["volumes"]:
        del spec["volumes"]
    main = next(c for c in spec["containers"] if c["name"] == "main")
    main["command"] = list(WARM_COMMAND)
    main.pop("args", None)
    own = {item.partition("=")[0] for item in cr.env}
    env = [e for e in main.get("env", []) if e["name"] not in ENTRY_ENV_DROPPED and e["name"] not in own]
    main["env"] = [*env, {"name": WARM_WORKER_ENV, "value": name}, {"name": WARM_KEY_ENV, "value": key}]
    assert any(e["name"] == JOB_ENV for e in main["env"])
    main["volumeMounts"] = [m for m in main.get("volumeMounts", []) if m["name"] != PAYLOAD_VOLUME]
    return pod


@dataclass(frozen=True)
class EntryEnd:
    """How an entry ended, as the task's status records it."""

    state: str
    """``succeeded``, ``timed-out`` or ``failed``."""
    reason: str
    detail: str


def entry_end(exit_code: int, reason: str, *, signalled: bool) -> EntryEnd:
    """The end of an entry that exited ``exit_code`` with termination ``reason``: as a task Pod's
    end reads (``Engine.finish``). A signalled entry that exits non-zero is not a failure."""
    if exit_code == EXIT_TIMED_OUT:
        return EntryEnd("timed-out", "TimedOut", reason)
    if exit_code == 0 or signalled:
        return EntryEnd("succeeded", "", "")
    return EntryEnd("failed", "Error", reason.strip() or f"exit code {exit_code}")
