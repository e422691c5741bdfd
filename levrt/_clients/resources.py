"""Named verbs on the cluster's objects, and the one place where a verb becomes a request.

Why: the engine, the in-cluster runner, the runtime-mode decision, the CLI and the other clients
each wrote their requests out as a method, a path and a query. Here a request is prepared once
(``prepare``, on the model of lightkube's ``prepare_request``): the verb gives the method, the
kind table ``KINDS`` gives the resource, its API group and whether it lives in a namespace, and
``levrt._shapes.names.api_path`` writes the path. Callers name what they do: ``get``,
``list_objects``, ``create``, ``patch``, ``delete``, ``delete_collection``; the Pod's own verbs
(a job's Pods, logs, events) are in ``levrt._clients.pods``.

Nothing here knows about tasks or jobs; errors are the ``ApiError`` classes ``Kube.request`` raises.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from levrt._clients.kube import Kube, Priority
from levrt._shapes.names import LEASE_GROUP, api_path

__all__ = [
    "KINDS",
    "PATCH_TYPES",
    "Kind",
    "Prepared",
    "create",
    "delete",
    "delete_collection",
    "get",
    "list_objects",
    "patch",
    "plural",
    "prepare",
    "send",
]


@dataclasses.dataclass(frozen=True)
class Kind:
    """Where the objects of one kind live in the API."""

    resource: str
    """The plural resource name in the path (``pods``)."""
    group: str = ""
    """The API group; ``""`` is the core group (``/api/v1``)."""
    namespaced: bool = True


KINDS: Mapping[str, Kind] = {
    "Pod": Kind("pods"),
    "Secret": Kind("secrets"),
    "ConfigMap": Kind("configmaps"),
    "Service": Kind("services"),
    "Event": Kind("events"),
    "Node": Kind("nodes", namespaced=False),
    "Lease": Kind("leases", group=LEASE_GROUP),
    "SelfSubjectAccessReview": Kind("selfsubjectaccessreviews", group="authorization.k8s.io", namespaced=False),
    "SelfSubjectReview": Kind("selfsubjectreviews", group="authentication.k8s.io", namespaced=False),
    # Schedules (levrt schedule): Kubernetes' own CronJobs, and a run started now from one.
    "CronJob": Kind("cronjobs", group="batch"),
    "Job": Kind("jobs", group="batch"),
    # The console asks who a bearer token is and what that caller may do (levrt._console.auth).
    "TokenReview": Kind("tokenreviews", group="authentication.k8s.io", namespaced=False),
    "SubjectAccessReview": Kind("subjectaccessreviews", group="authorization.k8s.io", namespaced=False),
}
"""Every kind levrt reads or writes."""


def plural(kind: str) -> str:
    """The resource name of ``kind`` in API paths (``Pod`` → ``pods``)."""
    return KINDS[kind].resource

_METHODS = {"get": "GET", "list": "GET", "create": "POST", "patch": "PATCH", "delete": "DELETE",
            "deletecollection": "DELETE", "connect": "GET"}
"""``connect``: a stream into a running object (a Pod's ``exec``), opened by ``Kube.exec``/``exec_stream``."""
_NAMED = frozenset({"get", "patch", "delete", "connect"})
"""The verbs on one object; the others act on a collection."""
PATCH_TYPES = {
    "json": "application/json-patch+json",
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}


@dataclasses.dataclass(frozen=True)
class Prepared:
    """One request, ready for ``Kube.request``."""

    method: str
    path: str
    query: Mapping[str, Any] | None = None
    body: Any = None
    content_type: str = "application/json"


def prepare(
    verb: str, kind: str, *, namespace: str | None = None, name: str | None = None, sub: str | None = None,
    query: Mapping[str, Any] | None = None, body: Any = None, patch_type: str = "merge",
) -> Prepared:
    """The request of ``verb`` (get, list, create, patch, delete, deletecollection, connect) on ``kind``:
    one object (``name``, and ``sub`` for a subresource such as ``log``) or a collection.
    ``namespace`` is ignored for a kind that lives outside namespaces; None for a namespaced kind
    means every namespace. Query values that are None are left out by ``Kube.request``."""
    spec = KINDS[kind]
    if (verb in _NAMED) != (name is not None):
        raise ValueError(f"prepare({verb!r}, {kind!r}): {'needs' if verb in _NAMED else 'takes no'} object name")
    path = api_path(spec.resource, namespace=namespace if spec.namespaced else None, name=name, sub=sub,
                    group=spec.group)
    content_type = PATCH_TYPES[patch_type] if verb == "patch" else "application/json"
    return Prepared(_METHODS[verb], path, query, body, content_type)


async def send(kube: Kube, request: Prepared, *, priority: int = Priority.NORMAL) -> Any:
    """Send a prepared request; the decoded answer."""
    return await kube.request(request.method, request.path, query=request.query, body=request.body,
                              content_type=request.content_type, priority=priority)


async def get(kube: Kube, kind: str, name: str, *, namespace: str | None = None) -> Any:
    """One object (``NotFound`` when it is not there)."""
    return await send(kube, prepare("get", kind, namespace=namespace, name=name))


async def list_objects(
    kube: Kube, kind: str, *, namespace: str | None = None, labels: str | None = None, fields: str | None = None,
) -> list[dict[str, Any]]:
    """The objects of ``kind`` matching the label selector ``labels`` and the field selector ``fields``."""
    listing = await send(kube, prepare("list", kind, namespace=namespace,
                                       query={"labelSelector": labels, "fieldSelector": fields}))
    return list(listing.get("items", []))


async def create(kube: Kube, kind: str, body: Any, *, namespace: str | None = None,
                 priority: int = Priority.NORMAL) -> Any:
    """Create an object; the apiserver's copy of it (uid, resourceVersion)."""
    return await send(kube, prepare("create", kind, namespace=namespace, body=body), priority=priority)


async def patch(kube: Kube, kind: str, name: str, body: Any, *, namespace: str | None = None,
                patch_type: str = "merge") -> Any:
    """Patch an object (``patch_type``: merge, strategic or json, as in ``PATCH_TYPES``)."""
    return await send(kube, prepare("patch", kind, namespace=namespace, name=name, body=body,
                                    patch_type=patch_type))


async def delete(kube: Kube, kind: str, name: str, *, namespace: str | None = None,
                 query: Mapping[str, Any] | None = None, priority: int = Priority.NORMAL) -> Any:
    """Delete an object (``query``: ``gracePeriodSeconds``, ``propagationPolicy``)."""
    return await send(kube, prepare("delete", kind, namespace=namespace, name=name, query=query), priority=priority)


async def delete_collection(kube: Kube, kind: str, *, namespace: str, labels: str,
                            query: Mapping[str, Any] | None = None, priority: int = Priority.NORMAL) -> Any:
    """Delete every object of ``kind`` in ``namespace`` that matches the label selector ``labels``
    (``query``: ``gracePeriodSeconds``)."""
    return await send(kube, prepare("deletecollection", kind, namespace=namespace,
                                    query={"labelSelector": labels, **(query or {})}), priority=priority)
