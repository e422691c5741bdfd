"""The Pod's verbs: a job's Pods, one Pod, its logs, its events, a command in it.

Why a module of their own: the engine (a failed task quotes its logs and events), the in-cluster
runner (it follows the orchestration Pod's output), and ``levrt ps``/``logs``/``kill``/``attach``/
``gc`` all ask these same questions; each is written once here, on the requests of
``levrt._clients.resources``. Deleting a Pod, with the garbage collector taking what it owns, is
``levrt._clients.submit.delete_pod``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, TextIO

from levrt._clients import resources
from levrt._clients.api import ExecStream
from levrt._clients.kube import Kube
from levrt._shapes.names import TASK_LABEL, job_selector

__all__ = ["events", "exec_stream", "follow_logs", "get", "job_pods", "log_lines", "logs"]


async def job_pods(kube: Kube, namespace: str, job: int | None = None, *, task: int | str | None = None,
                   ) -> list[dict[str, Any]]:
    """The Pods of job ``job`` (every levrt Pod when None), or of one of its tasks (``task``, as the
    label reads it: every attempt of a retried task)."""
    selector = job_selector(job) if task is None else f"{job_selector(job)},{TASK_LABEL}={task}"
    return await resources.list_objects(kube, "Pod", namespace=namespace, labels=selector)


async def get(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    """The Pod ``name`` (``NotFound`` when it is not there)."""
    pod: dict[str, Any] = await resources.get(kube, "Pod", name, namespace=namespace)
    return pod


def _log_query(container: str, tail: int | None, previous: bool, limit_bytes: int | None = None) -> dict[str, Any]:
    return {"container": container, "tailLines": tail, "previous": True if previous else None,
            "limitBytes": limit_bytes}


async def logs(kube: Kube, namespace: str, name: str, *, container: str = "main", tail: int | None = None,
               previous: bool = False, limit_bytes: int | None = None) -> str:
    """The output of a container of the Pod: all of it, or its last ``tail`` lines; with ``previous``,
    of the container's run before its last restart; with ``limit_bytes``, at most its first that many bytes."""
    request = resources.prepare("get", "Pod", namespace=namespace, name=name, sub="log",
                                query=_log_query(container, tail, previous, limit_bytes))
    text = await resources.send(kube, request)
    return text if isinstance(text, str) else str(text)


async def follow_logs(kube: Kube, namespace: str, name: str, *, out: TextIO, container: str | None = None,
                      tail: int | None = None) -> None:
    """Copy a container's output to ``out`` as it comes, until the container ends (a container that
    ended already: all of its output, then return). ``container`` None: the Pod's only or default one."""
    request = resources.prepare("get", "Pod", namespace=namespace, name=name, sub="log",
                                query=None if container is None else _log_query(container, tail, False))
    await kube.follow(request.path, query=request.query, out=out)


def log_lines(kube: Kube, namespace: str, name: str, *, container: str = "main", follow: bool = False,
              ) -> AsyncGenerator[bytes, None]:
    """A container's output line by line (with ``follow``, as it comes, until the container ends), for
    a reader that passes it on (the console's log stream). Close it with ``contextlib.aclosing``."""
    request = resources.prepare("get", "Pod", namespace=namespace, name=name, sub="log",
                                query={**_log_query(container, None, False), "follow": True if follow else None})
    return kube.lines(request.path, query=request.query)


async def events(kube: Kube, namespace: str, name: str, *, uid: str | None = None) -> list[Mapping[str, Any]]:
    """The events of the Pod ``name``, oldest first: of this very Pod when its ``uid`` is known. Matching
    by name alone would also find an older Pod of the same name (job ids restart when a store loses its
    data, and events outlive their Pod by an hour)."""
    selector = f"involvedObject.uid={uid}" if uid else f"involvedObject.name={name}"
    found = await resources.list_objects(kube, "Event", namespace=namespace, fields=selector)
    return sorted(found, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")


def exec_stream(kube: Kube, namespace: str, name: str, *, container: str, command: list[str],
                ) -> AbstractAsyncContextManager[ExecStream]:
    """Run ``command`` in a running container of the Pod with stdin, stdout and stderr connected,
    for as long as it runs (``async with``)."""
    request = resources.prepare("connect", "Pod", namespace=namespace, name=name, sub="exec")
    return kube.exec_stream(request.path, container=container, command=command)
