"""Gated submit: create a Pod and the objects it owns so that nothing half-created remains.

Why a module of its own: task Pods (the engine) and orchestration Pods (``levrt.incluster``)
are submitted the same way (DESIGN.md, "Submit order"): the Pod is created behind a scheduling
gate, its ConfigMaps/Secrets are created with an ownerReference to it, then the gate is lifted.
A failure in between deletes the Pod and the garbage collector removes what it owned.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from levrt.errors import ClusterError, LevrtError
from levrt.kube import ApiError, Kube

__all__ = ["create", "delete_pod", "submit"]

log = logging.getLogger("lev")

PLURALS = {"Pod": "pods", "Secret": "secrets", "ConfigMap": "configmaps"}


async def submit(kube: Kube, namespace: str, objects: Any) -> dict[str, Any]:
    """Create ``objects.pod`` gated, then ``objects.owned`` owned by it, then lift the gate."""
    from levrt.build import with_owner

    pod = await create(kube, namespace, objects.pod)
    name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
    try:
        owned = [with_owner(obj, pod_name=name, pod_uid=uid) for obj in objects.owned]
        await asyncio.gather(*(_create_owned(kube, namespace, obj) for obj in owned))
        await kube.request(
            "PATCH", f"/api/v1/namespaces/{namespace}/pods/{name}",
            body=[{"op": "remove", "path": "/spec/schedulingGates"}],
            content_type="application/json-patch+json",
        )
    except BaseException:
        await asyncio.shield(delete_pod(kube, namespace, name))
        raise
    return dict(pod)


async def create(kube: Kube, namespace: str, body: Mapping[str, Any]) -> Any:
    """POST one object, turning the usual mistakes into messages that say what to do."""
    path = f"/api/v1/namespaces/{namespace}/{PLURALS[body['kind']]}"
    try:
        return await kube.request("POST", path, body=body)
    except ApiError as exc:
        if exc.status == 404 and exc.reason == "NotFound":
            raise ClusterError(
                f"Namespace {namespace!r} does not exist. Install the platform "
                "(helm install levrt charts/levrt) or set LEVRT_NAMESPACE to an existing namespace."
            ) from exc
        if exc.status == 403:
            raise ClusterError(
                f"Not allowed to create {body.get('kind', 'objects')} in namespace "
                f"{namespace!r}: {exc}. Give your account the levrt Role."
            ) from exc
        raise


async def _create_owned(kube: Kube, namespace: str, obj: Mapping[str, Any]) -> None:
    plural = PLURALS[obj["kind"]]
    try:
        await create(kube, namespace, obj)
    except ApiError as exc:
        if exc.status != 409:
            raise
        # A content-addressed file stored by an earlier task: share it, owned by both Pods.
        patch = {"metadata": {"ownerReferences": obj["metadata"]["ownerReferences"]}}
        try:
            await kube.request(
                "PATCH", f"/api/v1/namespaces/{namespace}/{plural}/{obj['metadata']['name']}",
                body=patch, content_type="application/strategic-merge-patch+json",
            )
        except ApiError as gone:
            if gone.status != 404:
                raise
            # Collected between our create and patch: create it afresh.
            await create(kube, namespace, obj)


async def delete_pod(kube: Kube, namespace: str, name: str, *, graceful: bool = False) -> None:
    """Delete a Pod (now, or ``graceful``: with its own grace period, so its process gets SIGTERM
    and time to clean up); its owned objects follow through the garbage collector."""
    try:
        await kube.request(
            "DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}",
            query=None if graceful else {"gracePeriodSeconds": 0},
        )
    except ApiError as exc:
        if exc.status != 404:
            log.warning("could not delete Pod %s: %s", name, exc)
    except LevrtError as exc:
        log.warning("could not delete Pod %s: %s", name, exc)
