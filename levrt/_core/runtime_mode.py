"""How task Pods get levrt's runtime: mounted from its image, copied by an init container, or
from the node cache; decided once per cluster and runtime image, and remembered.

Why a decision and not a setting: the image volume (``volumes[].image``) is the fast way, no
copy and no init container, but only some clusters have it (Kubernetes 1.35+ with ImageVolume on,
a container runtime that implements it). The apiserver cannot be trusted to know: with the
kubelet's gate off the Pod fails, and a runtime without support may mount an empty directory. So
the first job on a cluster runs a probe Pod that mounts the runtime image and checks that its
Python is there; the answer goes into the ConfigMap ``levrt-runtime-mode`` (with the server
version and runtime image it holds for) and every later job reads it. Anything short of a
working mount, including a probe that cannot be created, means the copy, which works everywhere.

``LEVRT_RUNTIME_MODE=image|copy`` skips the probe; the chart's node cache
(``LEVRT_RUNTIME_HOST_PATH``) wins over both.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
from typing import Any

from levrt._clients import resources, submit
from levrt._clients.api import ApiError, BadRequest, Invalid, NotFound
from levrt._clients.kube import Kube
from levrt._clients.watch import PodWatch
from levrt._shapes import podstatus
from levrt._shapes.build import PROBE_ROLE, runtime_probe_pod
from levrt._shapes.names import ROLE_LABEL
from levrt.errors import LevrtError
from levrt.settings import Settings

__all__ = ["CONFIGMAP", "IMAGE_VOLUME_MINOR", "PROBE_TIMEOUT", "Decision", "decide"]

log = logging.getLogger("lev")

CONFIGMAP = "levrt-runtime-mode"
# ImageVolume is beta and on by default from Kubernetes 1.35 (GA in 1.36).
IMAGE_VOLUME_MINOR = 35
PROBE_TIMEOUT = 60.0


@dataclasses.dataclass(frozen=True)
class Decision:
    """The runtime mode tasks get here (``image``, ``copy`` or ``node``), and why."""

    mode: str
    reason: str


async def decide(kube: Kube, settings: Settings, *, server: str, minor: int) -> Decision:
    """The mode for ``settings`` on this cluster (server ``gitVersion`` ``server``, minor ``minor``)."""
    if settings.runtime_host_path:
        return Decision("node", f"the node cache at {settings.runtime_host_path} (LEVRT_RUNTIME_HOST_PATH)")
    if settings.runtime_mode != "auto":
        return Decision(settings.runtime_mode, "LEVRT_RUNTIME_MODE says so")
    if minor < IMAGE_VOLUME_MINOR:
        return Decision("copy", f"Kubernetes {server} has no image volumes on by default (1.{IMAGE_VOLUME_MINOR}+)")
    remembered = await _remembered(kube, settings, server)
    if remembered is not None:
        return remembered
    decision = await _probe(kube, settings, server)
    if decision is not None:
        await _remember(kube, settings, server, decision)
        return decision
    return Decision("copy", "the image-volume probe gave no answer; copying this time")


def _key(settings: Settings, server: str) -> str:
    return hashlib.sha256(f"{server}|{settings.runtime_image}|{settings.image_pull_policy}".encode()).hexdigest()[:16]


async def _remembered(kube: Kube, settings: Settings, server: str) -> Decision | None:
    try:
        found = await resources.get(kube, "ConfigMap", CONFIGMAP, namespace=settings.namespace)
    except ApiError:
        return None
    data = found.get("data") or {}
    if data.get("key") != _key(settings, server) or data.get("mode") not in ("image", "copy"):
        return None
    return Decision(data["mode"], data.get("reason", ""))


async def _remember(kube: Kube, settings: Settings, server: str, decision: Decision) -> None:
    data = {"mode": decision.mode, "reason": decision.reason, "key": _key(settings, server), "server": server,
            "runtimeImage": settings.runtime_image, "checked": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    body = {"apiVersion": "v1", "kind": "ConfigMap",
            # Not managed-by=levrt: that marks a job's objects, which `levrt gc` removes; this one
            # is the cluster's, and outlives every job.
            "metadata": {"name": CONFIGMAP, "namespace": settings.namespace,
                         "labels": {"app.kubernetes.io/part-of": "levrt", ROLE_LABEL: "runtime-mode"}},
            "data": data}
    try:
        try:
            await resources.patch(kube, "ConfigMap", CONFIGMAP, {"data": data}, namespace=settings.namespace)
        except NotFound:
            await resources.create(kube, "ConfigMap", body, namespace=settings.namespace)
    except ApiError as exc:  # not remembered: the next job probes again, nothing else changes
        log.warning("could not remember the runtime mode in ConfigMap %s: %s", CONFIGMAP, exc)


async def _probe(kube: Kube, settings: Settings, server: str) -> Decision | None:
    """Run the probe Pod: ``image`` if the mounted runtime is there, ``copy`` with the reason if not,
    None if it could not tell (not started in time)."""
    objects = runtime_probe_pod(settings, name=f"levrt-probe-{_key(settings, server)[:10]}")
    name = objects.name
    log.info("progress: checking whether this cluster mounts images as volumes (probe Pod %s)", name)
    watch = PodWatch(kube, namespace=settings.namespace, selector=f"{ROLE_LABEL}={PROBE_ROLE}")
    await watch.start()
    try:
        try:
            await submit.submit(kube, settings.namespace, objects)
        except (Invalid, BadRequest) as exc:  # an apiserver without the ImageVolume gate drops the source
            return Decision("copy", f"the apiserver refused an image volume ({exc})")
        except LevrtError as exc:  # e.g. not allowed to create Pods: the job itself will say so
            log.warning("could not run the image-volume probe (%s); copying the runtime", exc)
            return None
        try:
            pod = await watch.wait(name, _settled, timeout=PROBE_TIMEOUT)
        except TimeoutError:
            return None
        return _verdict(pod)
    finally:
        await submit.delete_pod(kube, settings.namespace, name)
        await watch.close()


def _settled(pod: dict[str, Any]) -> bool:
    return podstatus.finished(pod) or isinstance(podstatus.start_state(pod, need_ready=False), podstatus.StartFailure)


def _verdict(pod: dict[str, Any]) -> Decision:
    state = podstatus.start_state(pod, need_ready=False)
    if isinstance(state, podstatus.StartFailure):
        return Decision("copy", f"a Pod with an image volume cannot start here: {state.reason} ({state.detail})")
    ended = podstatus.failure(pod)
    code = ended.exit_code
    if code == 0:
        return Decision("image", "the runtime image mounts as a volume (probe passed)")
    if code == 3:
        return Decision("copy", "the container runtime mounted the image volume empty")
    detail = ended.headline or "no reason given"
    return Decision("copy", f"the image-volume probe failed (exit code {code}: {str(detail).strip()[:200]})")
