"""Submit: create a Pod and the objects it mounts so that nothing half-created remains.

Why a module of its own: task Pods (the engine) and orchestration Pods (in-cluster runs) are
submitted the same way (DESIGN.md, "Submit order"). Two orders:

- With an owner (a task of a job with a Lease): the ConfigMaps/Secrets first, owned by the job's
  Lease, then the Pod, owned by it too. The Pod needs no gate: what it mounts exists before it
  does. Two requests for a task with a payload. A Pod that cannot be made takes its payload Secret
  with it; shared file ConfigMaps stay the job's, and go with its Lease.
- Without one (an orchestration Pod, the probe, a job the apiserver gave no Lease): the Pod is
  created behind a scheduling gate, its objects with an ownerReference to it, then the gate is
  lifted. A failure in between deletes the Pod and the garbage collector removes what it owned.

Under the client's rate limit (``levrt._clients.kube.Limiter``) creating a task's Pod is new work
and waits behind the later steps of submits already under way and behind deletions, so a fan-out
of thousands finishes what it started first and its cleanup keeps up with it.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Mapping
from typing import Any

from levrt._clients import resources
from levrt._clients.api import Conflict, Forbidden, NotFound
from levrt._clients.kube import Kube, Priority
from levrt._shapes.build import TaskObjects
from levrt._shapes.names import GATE
from levrt.errors import ClusterError, LevrtError

__all__ = ["create", "delete_job", "delete_pod", "owned_by", "submit", "submit_job", "with_owner"]

log = logging.getLogger("lev")


def with_owner(obj: Mapping[str, Any], *, pod_name: str, pod_uid: str) -> dict[str, Any]:
    """A copy of ``obj`` owned by the Pod (garbage-collected with it); appends if already owned."""
    out = copy.deepcopy(dict(obj))
    meta = out.setdefault("metadata", {})
    refs = meta.setdefault("ownerReferences", [])
    if not any(ref.get("uid") == pod_uid for ref in refs):
        refs.append({"apiVersion": "v1", "kind": "Pod", "name": pod_name, "uid": pod_uid})
    return out


def owned_by(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``obj`` carrying the ownerReference ``owner`` (a job's Lease: ``levrt._clients.lease``)."""
    out = copy.deepcopy(dict(obj))
    refs = out.setdefault("metadata", {}).setdefault("ownerReferences", [])
    if not any(ref.get("uid") == owner["uid"] for ref in refs):
        refs.append(dict(owner))
    return out


async def submit(kube: Kube, namespace: str, objects: TaskObjects, *,
                 owner: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Create ``objects``: with ``owner`` (the job's Lease), ``objects.owned`` then the Pod, all
    owned by it; without, the Pod gated, ``objects.owned`` owned by the Pod, then the gate lifted."""
    if owner is not None:
        return await _submit_owned(kube, namespace, objects, owner)
    body = copy.deepcopy(objects.pod)
    body["spec"]["schedulingGates"] = [{"name": GATE}]
    pod = await create(kube, namespace, body, priority=Priority.NEW_WORK)
    name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
    try:
        owned = [with_owner(obj, pod_name=name, pod_uid=uid) for obj in objects.owned]
        await asyncio.gather(*(_create_owned(kube, namespace, obj) for obj in owned))
        await resources.patch(kube, "Pod", name, [{"op": "remove", "path": "/spec/schedulingGates"}],
                              namespace=namespace, patch_type="json")
    except BaseException:
        await asyncio.shield(delete_pod(kube, namespace, name))
        raise
    return dict(pod)


async def _submit_owned(kube: Kube, namespace: str, objects: TaskObjects, owner: Mapping[str, Any]) -> dict[str, Any]:
    owned = [owned_by(obj, owner) for obj in objects.owned]
    # The first request of a task is new work: under the rate limit, submits under way finish first.
    creating = [asyncio.ensure_future(_create_owned(kube, namespace, obj, priority=Priority.NEW_WORK))
                for obj in owned]
    try:
        await asyncio.gather(*creating)
        return dict(await create(kube, namespace, owned_by(objects.pod, owner)))
    except BaseException:
        for step in creating:  # a sibling still in flight could create its object after the cleanup
            step.cancel()
        await asyncio.shield(asyncio.gather(*creating, return_exceptions=True))
        # The Pod (a cancelled create may have reached the apiserver) and its payload are the task's
        # own, deleted by name; shared file ConfigMaps may serve other tasks (the Lease takes them).
        mine = [objects.pod, *(obj for obj in owned if obj["kind"] == "Secret")]
        await asyncio.shield(asyncio.gather(*(_delete_quietly(kube, namespace, obj) for obj in mine)))
        raise


async def _delete_quietly(kube: Kube, namespace: str, obj: Mapping[str, Any]) -> None:
    try:
        await resources.delete(kube, obj["kind"], obj["metadata"]["name"], namespace=namespace,
                               query={"gracePeriodSeconds": 0} if obj["kind"] == "Pod" else None,
                               priority=Priority.CLEANUP)
    except NotFound:
        pass
    except LevrtError as exc:
        log.warning("could not delete %s %s: %s", obj["kind"], obj["metadata"]["name"], exc)


async def submit_job(kube: Kube, namespace: str, objects: TaskObjects) -> dict[str, Any]:
    """The same order for a detached orchestration (``levrt._shapes.orchestrator.detached_job``): the
    Job created suspended (no Pod yet), ``objects.owned`` owned by it, then the Job let go."""
    job = await create(kube, namespace, objects.pod, priority=Priority.NEW_WORK)
    name, uid = job["metadata"]["name"], job["metadata"]["uid"]
    try:
        owner = {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid}
        await asyncio.gather(*(_create_owned(kube, namespace, owned_by(obj, owner)) for obj in objects.owned))
        await resources.patch(kube, "Job", name, {"spec": {"suspend": False}}, namespace=namespace)
    except BaseException:
        await asyncio.shield(delete_job(kube, namespace, name))
        raise
    return dict(job)


async def create(kube: Kube, namespace: str, body: Mapping[str, Any], *, priority: int = Priority.NORMAL) -> Any:
    """POST one object, turning the usual mistakes into messages that say what to do."""
    try:
        return await resources.create(kube, body["kind"], body, namespace=namespace, priority=priority)
    except NotFound as exc:
        raise ClusterError(
            f"Namespace {namespace!r} does not exist. Install the platform "
            "(helm install levrt charts/levrt) or set LEVRT_NAMESPACE to an existing namespace."
        ) from exc
    except Forbidden as exc:
        if "violates PodSecurity" in str(exc):
            # Pod Security Admission, not RBAC: the fix is the namespace's label, not the account's Role.
            raise ClusterError(
                f"Namespace {namespace!r} refuses this Pod under its PodSecurity standard: {exc}. Host "
                "networking (host=True), capabilities beyond the baseline set (e.g. NET_RAW, NET_ADMIN) and "
                "the runtime node cache's hostPath need the namespace label "
                f"pod-security.kubernetes.io/enforce=privileged (kubectl label namespace {namespace} "
                "pod-security.kubernetes.io/enforce=privileged --overwrite; README, \"PodSecurity\")."
            ) from exc
        raise ClusterError(
            f"Not allowed to create {body.get('kind', 'objects')} in namespace "
            f"{namespace!r}: {exc}. Give your account the levrt Role."
        ) from exc


async def _create_owned(kube: Kube, namespace: str, obj: Mapping[str, Any], *,
                        priority: int = Priority.NORMAL) -> None:
    """Create ``obj``, or share it when it is there already (content-addressed)."""
    try:
        await create(kube, namespace, obj, priority=priority)
    except Conflict:
        # A content-addressed file stored by an earlier task: share it, owned by each of its owners.
        patch = {"metadata": {"ownerReferences": obj["metadata"]["ownerReferences"]}}
        try:
            await resources.patch(kube, obj["kind"], obj["metadata"]["name"], patch, namespace=namespace,
                                  patch_type="strategic")
        except NotFound:
            # Collected between our create and patch: create it afresh.
            await create(kube, namespace, obj)


async def delete_pod(kube: Kube, namespace: str, name: str, *, graceful: bool = False) -> None:
    """Delete a Pod (now, or ``graceful``: with its own grace period, so its process gets SIGTERM
    and time to clean up); its owned objects follow through the garbage collector. Never raises
    for a Pod already gone; other failures are logged (cleanup must not hide the real error)."""
    try:
        await resources.delete(kube, "Pod", name, namespace=namespace,
                               query=None if graceful else {"gracePeriodSeconds": 0}, priority=Priority.CLEANUP)
    except NotFound:
        pass
    except LevrtError as exc:
        log.warning("could not delete Pod %s: %s", name, exc)


async def delete_job(kube: Kube, namespace: str, name: str) -> None:
    """Delete an orchestration Job; its Pod follows through the garbage collector, with its own grace
    period (SIGTERM: the orchestration sees its Job gone and ends the levrt job, not hands it over).
    Never raises for a Job already gone; other failures are logged."""
    try:
        await resources.delete(kube, "Job", name, namespace=namespace, query={"propagationPolicy": "Background"},
                               priority=Priority.CLEANUP)
    except NotFound:
        pass
    except LevrtError as exc:
        log.warning("could not delete Job %s: %s", name, exc)
