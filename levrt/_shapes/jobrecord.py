"""A job's record: who ran what, where, when, and how it ended — its shape, its states, its reading.

Why pure and low: the engine writes job records (``levrt._core.jobrecords``), ``levrt ps`` reads
them, and a future API will read them too; all of them must agree on one model of field names and
states. Nothing here talks to the store or the cluster: a record is a plain dict as stored, with
``_id`` the job id. ``lost`` is never stored: it is what a ``running`` record whose Lease is gone
is read as (its client died without writing the end).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import traceback
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "ENDED_STATES",
    "IDENTITY_SOURCES",
    "MAX_INLINE_VALUE",
    "STATES",
    "WHERE",
    "closing_fields",
    "epoch",
    "error_text",
    "inline_value",
    "iso",
    "job_view",
    "opening_fields",
    "outcome_state",
    "read_state",
    "task_counts",
    "tasks_text",
    "what_text",
]

STATES = ("running", "succeeded", "failed", "cancelled", "lost")
"""Every state a job record is read in; all but ``lost`` are stored."""
ENDED_STATES = frozenset({"succeeded", "failed", "cancelled"})
WHERE = ("laptop", "in-cluster", "detached")
"""Where a job's orchestration ran: a client outside the cluster, an orchestration Pod followed by
its client (``levrt run --in-cluster``), or one left to run on (``--detach``)."""
IDENTITY_SOURCES = ("selfsubjectreview", "kubeconfig", "client", "unknown")
"""How the record's owner was learned: the apiserver's answer, the kubeconfig's user name when the
apiserver refused to say, the submitting client's (an orchestration Pod's job), or not at all."""
MAX_INLINE_VALUE = 64 * 1024
"""A return value larger than this (as JSON) is stored apart, in the store's file storage."""
TASK_STATE_ORDER = ("done", "failed", "timed-out", "cancelled", "running")
"""The order ``tasks_text`` names task counts in; other states follow, by name."""


def opening_fields(*, job: int, owner: str, owner_source: str, groups: Iterable[str], what: Mapping[str, Any],
                   where: str, started: float, lease: bool) -> dict[str, Any]:
    """The record written when a job opens (``_id`` the job id, state ``running``)."""
    return {
        "_id": job, "job": job, "owner": owner, "ownerSource": owner_source, "groups": list(groups),
        "what": dict(what), "where": where, "started": started, "ended": None, "state": "running",
        "tasks": {}, "error": None, "value": None, "lease": lease,
    }


def closing_fields(*, state: str, ended: float, tasks: Mapping[str, int], error: str | None,
                   value: Any) -> dict[str, Any]:
    """The fields set when a job ends."""
    if state not in ENDED_STATES:
        raise ValueError(f"a job ends succeeded, failed or cancelled, not {state!r}")
    return {"state": state, "ended": ended, "tasks": dict(tasks), "error": error, "value": value}


def outcome_state(exc: BaseException | None) -> str:
    """How a job ended, from what its orchestration raised: nothing, a cancellation (Ctrl-C,
    SIGTERM), or anything else."""
    if exc is None:
        return "succeeded"
    if isinstance(exc, KeyboardInterrupt | asyncio.CancelledError):
        return "cancelled"
    return "failed"


def error_text(exc: BaseException) -> str:
    """A failed orchestration's error with its traceback, as Python prints it."""
    return "".join(traceback.format_exception(exc)).rstrip()


def inline_value(value: Any) -> tuple[Any, bytes | None]:
    """A return value as stored: JSON-able values as they are, others as their ``repr``. The second
    item is the value's JSON when it is larger than ``MAX_INLINE_VALUE`` (to be stored apart)."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        value = repr(value)
        text = json.dumps(value)
    data = text.encode()
    return value, data if len(data) > MAX_INLINE_VALUE else None


def task_counts(states: Iterable[str]) -> dict[str, int]:
    """How many tasks ended (or stand) in each state."""
    counts: dict[str, int] = {}
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    return counts


def tasks_text(counts: Mapping[str, int]) -> str:
    """``12 done, 1 failed``; ``-`` with no tasks."""
    known = [s for s in TASK_STATE_ORDER if counts.get(s)]
    rest = sorted(s for s in counts if s not in TASK_STATE_ORDER and counts[s])
    return ", ".join(f"{counts[s]} {s}" for s in (*known, *rest)) or "-"


def read_state(record: Mapping[str, Any], *, lease_gone: bool) -> str:
    """The state a record is read in: a ``running`` job whose Lease is gone (or expired) ended
    without its client writing the end, and is ``lost``. A job that ran without a Lease (the
    account may not create one) cannot be judged so and stays ``running``."""
    state = str(record.get("state") or "running")
    if state == "running" and lease_gone and record.get("lease", True):
        return "lost"
    return state


def what_text(what: Mapping[str, Any] | None) -> str:
    """``flows.py:sweep 10.0.0.0/24 ports=22``: what ran and its arguments as given."""
    if not what:
        return "-"
    args = what.get("args") or []
    return " ".join([str(what.get("target") or "-"), *(str(a) for a in args)])


def epoch(value: Any) -> float | None:
    """Seconds since the epoch of a record's time (a float, or a datetime the store gave back)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()
    return None


def iso(when: float | None) -> str | None:
    """A time as people and ``jq`` both read it (ISO 8601, UTC)."""
    return None if when is None else dt.datetime.fromtimestamp(when, dt.UTC).isoformat()


def job_view(record: Mapping[str, Any], *, lease_gone: bool, now: float) -> dict[str, Any] | None:
    """A job record as ``levrt ps -o json`` and ``levrt.job`` show it: its state read (``lost``
    when ``lease_gone``), times in ISO 8601, its duration so far. None: not a job record."""
    job = record.get("_id")
    if not isinstance(job, int) or isinstance(job, bool):
        return None
    given = record.get("what")
    what: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
    started, ended = epoch(record.get("started")), epoch(record.get("ended"))
    return {
        "job": job, "what": what_text(what), "target": what.get("target"),
        "args": list(what.get("args") or []), "owner": record.get("owner") or "unknown",
        "ownerSource": record.get("ownerSource"), "where": record.get("where") or "-",
        "state": read_state(record, lease_gone=lease_gone),
        "tasks": dict(record.get("tasks") or {}), "started": iso(started), "ended": iso(ended),
        "duration": None if started is None else round((ended if ended is not None else now) - started, 1),
        "error": record.get("error"), "value": record.get("value"),
    }
