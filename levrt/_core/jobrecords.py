"""Writing a job's record (``levrt_jobs``): who opened it, what, where, and at the end how it ended.

Why apart from the engine: the record is evidence that outlasts the job's Pods, its Lease and its
client, and deciding what goes into it (whose identity, where the orchestration ran, the counts of
its tasks, a value too large to keep inline) is a job's policy, not the running of tasks. The
record's shape is ``levrt._shapes.jobrecord``; the engine calls ``identify`` and ``JobRecord.open``
when a job opens and ``JobRecord.close`` when it ends. A record that cannot be written is logged,
never a failure of the job: the job's own work matters more than its bookkeeping.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from levrt._clients import resources
from levrt._clients.api import ApiError
from levrt._clients.kube import Kube
from levrt._clients.store import JOB_RECORDS, Store
from levrt._shapes import jobrecord
from levrt._stored import placeholder
from levrt.errors import LevrtError
from levrt.podenv import DETACHED_ENV, OWNER_ENV, POD_NAME_ENV, SCHEDULE_ENV
from levrt.task import Task

__all__ = ["Identity", "JobRecord", "identify", "task_states", "where_now"]

log = logging.getLogger("lev")


@dataclasses.dataclass(frozen=True)
class Identity:
    """Who the cluster says this client is, and how that was learned (``jobrecord.IDENTITY_SOURCES``)."""

    name: str
    source: str
    groups: tuple[str, ...] = ()


async def identify(kube: Kube, *, kubeconfig: str | None = None, environ: Mapping[str, str] | None = None) -> Identity:
    """This client's Kubernetes identity: the apiserver's answer to a SelfSubjectReview; where it
    refuses (an old cluster, an account without the right), the kubeconfig's user name; else unknown.
    In an orchestration Pod, the identity of the client that submitted it (``OWNER_ENV``): the Pod's
    own account runs every user's in-cluster jobs, and ``levrt ps`` shows people their own."""
    env = os.environ if environ is None else environ
    if env.get(POD_NAME_ENV) and env.get(OWNER_ENV):
        return Identity(env[OWNER_ENV], "client")
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    try:
        answer = await resources.create(kube, "SelfSubjectReview", review)
        user = answer.get("status", {}).get("userInfo", {})
        if user.get("username"):
            return Identity(str(user["username"]), "selfsubjectreview", tuple(user.get("groups") or ()))
    except (ApiError, LevrtError) as exc:
        log.debug("the apiserver did not say who this client is (%s)", exc)
    name = kubeconfig_user(kubeconfig)
    return Identity(name, "kubeconfig") if name else Identity("unknown", "unknown")


def kubeconfig_user(path: str | None) -> str | None:
    """The user name of the kubeconfig's current context (None when there is no such file or name)."""
    try:
        import yaml  # a kubeconfig is YAML; read only when the apiserver would not say who this is

        file = Path(path or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or "~/.kube/config").expanduser()
        config = yaml.safe_load(file.read_text())
        current = config.get("current-context")
        for context in config.get("contexts") or ():
            if context.get("name") == current:
                user = (context.get("context") or {}).get("user")
                return str(user) if user else None
    except Exception:  # no kubeconfig (in a Pod), or one this reader does not follow: no name
        return None
    return None


def where_now(environ: Mapping[str, str] | None = None) -> str:
    """Where this orchestration runs (``jobrecord.WHERE``), from the orchestration Pod's environment."""
    env = os.environ if environ is None else environ
    if env.get(DETACHED_ENV, "").strip().lower() in ("1", "true", "yes"):
        return "detached"
    return "in-cluster" if env.get(POD_NAME_ENV) else "laptop"


def task_states(tasks: Iterable[Task], start_failures: Iterable[int]) -> list[str]:
    """How each task of a job stands at its end: done, cached (taken from the job it resumes),
    failed, timed-out, or cancelled (the job ended before it did)."""
    never_ran = set(start_failures)
    states = []
    for task in tasks:
        if task.cached_from is not None:
            states.append("cached")
        elif task.task_id in never_ran or task.failure is not None:
            states.append("failed")
        elif task.timed_out:
            states.append("timed-out")
        elif task.document is not None:
            states.append("done")
        else:
            states.append("cancelled")
    return states


class JobRecord:
    """The record of one open job; ``close`` writes its end."""

    def __init__(self, store: Store, job: int) -> None:
        self._store = store
        self.job = job
        self.value: Any = None
        """The orchestration's return value, set by whoever awaited it (``levrt.run``, ``levrt run``)."""

    @classmethod
    async def open(cls, store: Store, *, job: int, identity: Identity, what: Mapping[str, Any] | None,
                   lease: bool, where: str | None = None) -> JobRecord:
        record = cls(store, job)
        schedule = os.environ.get(SCHEDULE_ENV)  # a scheduled run: `levrt ps --schedule NAME` finds it
        fields = jobrecord.opening_fields(
            job=job, owner=identity.name, owner_source=identity.source, groups=identity.groups,
            what={**(what or {}), **({"schedule": schedule} if schedule else {})}, where=where or where_now(),
            started=time.time(), lease=lease)
        await record._write(fields)
        return record

    @classmethod
    async def take_over(cls, store: Store, *, job: int) -> JobRecord:
        """The record of a detached job whose next orchestration Pod goes on with it: it stays as
        opened, counting the handovers."""
        record = cls(store, job)
        try:
            found = await store.collection(JOB_RECORDS).find_one({"_id": job}, {"handovers": 1})
        except Exception as exc:
            raise store.unreachable(exc) from exc
        await record._write({"state": "running", "handovers": int((found or {}).get("handovers") or 0) + 1})
        return record

    async def close(self, *, exc: BaseException | None, states: Iterable[str],
                    store_apart: Callable[[bytes], Awaitable[str]]) -> None:
        """Write how the job ended: its state from ``exc``, its task counts, its error or its value
        (stored apart with ``store_apart`` when large)."""
        state = jobrecord.outcome_state(exc)
        value = None
        if state == "succeeded" and self.value is not None:
            value, large = jobrecord.inline_value(self.value)
            if large is not None:
                try:
                    value = placeholder(await store_apart(large), len(large))
                except Exception as refused:  # the end is still written, saying why the value is not
                    value = f"too large: {len(large)} bytes (not stored: {refused})"
        error = jobrecord.error_text(exc) if state == "failed" and exc is not None else None
        await self._write(jobrecord.closing_fields(state=state, ended=time.time(),
                                                   tasks=jobrecord.task_counts(states), error=error, value=value))

    async def _write(self, fields: Mapping[str, Any]) -> None:
        try:
            await self._store.set_fields(JOB_RECORDS, self.job, fields)
        except LevrtError as exc:
            log.warning("job %d: its record (%s) was not written: %s", self.job, JOB_RECORDS, exc)
