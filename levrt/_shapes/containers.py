"""The containers of a task's Pod: ``main`` for the Cr, a native sidecar for each service.

Why apart from the Pod: a container is where a Cr's own fields land (image, command and args,
env, ports and their probes, capabilities, resources) and where an entry gets the runtime, its
payload and its ``LEVRT_*`` settings; the Pod around them (``levrt._shapes.build``) only places
containers and the volumes they name. A container with an entry runs ``/levrt/bin/python3 -m
levrt.runtime`` with the Cr's ``cmd`` as args, its pickled call mounted from the payload Secret at
``/levrt-payload/<key>`` (``main``, ``svc-<name>``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

from levrt._shapes.delivery import RUNTIME_VOLUME
from levrt._shapes.names import (
    TERMINATION_POLICY,
    image_reference,
)
from levrt.cr import Cr
from levrt.errors import SettingsError
from levrt.podenv import (
    COLLECTION_ENV,
    DATABASE_ENV,
    DEBUG_WAIT_ENV,
    IMAGE_REGISTRY_ENV,
    JOB_ENV,
    PAYLOAD_ENV,
    PAYLOAD_MOUNT,
    PYTHON,
    RUNTIME_COMMAND,
    RUNTIME_MOUNT,
    SERVICE_PAYLOAD_PREFIX,
    STORE_SECRET_KEY,
    STORE_URI_ENV,
    TASK_ENV,
    TIMEOUT_ENV,
)
from levrt.settings import Settings

__all__ = ["PAYLOAD_VOLUME", "PROBE_PERIOD", "main_container", "plain", "sidecar_container"]

PAYLOAD_VOLUME = "levrt-payload"
PROBE_PERIOD = 1
# Readiness of several ports at once: exit 0 only when every port accepts a connection.
PROBE_SCRIPT = (
    "import socket,sys\n"
    "for p in sys.argv[1:]:\n"
    " socket.create_connection(('127.0.0.1',int(p)),timeout=1).close()\n"
)


def main_container(
    cr: Cr,
    *,
    settings: Settings,
    files: list[dict[str, Any]],
    collection: str,
    job: int,
    task: int,
    timeout: int | None,
) -> dict[str, Any]:
    """The ``main`` container: Ready when its ports accept connections; ``timeout`` (the task's, else
    Settings') reaches an entry as ``LEVRT_TIMEOUT``."""
    main = _container("main", cr, payload_key="main", settings=settings, files=files, collection=collection,
                      job=job, task=task)
    if cr.ports:
        main["readinessProbe"] = _probe(cr.ports, failure_threshold=3)
    # Per-task run options win over the Settings defaults (DESIGN.md "Run options").
    resources = cr.resources if cr.resources is not None else settings.resources
    if resources:
        main["resources"] = plain(resources)
    if timeout is not None and cr.entry is not None:
        main["env"].append({"name": TIMEOUT_ENV, "value": str(timeout)})
    return main


def sidecar_container(
    name: str,
    svc: Cr,
    *,
    settings: Settings,
    files: list[dict[str, Any]],
    collection: str,
    job: int,
    task: int,
) -> dict[str, Any]:
    """The service ``name`` as a native sidecar (an init container that keeps running), started
    once its ports accept connections, within ``Settings.start_timeout``."""
    sidecar = _container(name, svc, payload_key=f"{SERVICE_PAYLOAD_PREFIX}{name}", settings=settings, files=files,
                         collection=collection, job=job, task=task)
    sidecar["restartPolicy"] = "Always"
    if svc.resources:
        sidecar["resources"] = plain(svc.resources)
    if svc.ports:
        sidecar["startupProbe"] = _probe(
            svc.ports, failure_threshold=max(1, math.ceil(settings.start_timeout / PROBE_PERIOD))
        )
    return sidecar


def _container(
    name: str,
    cr: Cr,
    *,
    payload_key: str,
    settings: Settings,
    files: list[dict[str, Any]],
    collection: str,
    job: int,
    task: int,
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": name,
        "image": _image(cr.image, settings),
        "imagePullPolicy": settings.image_pull_policy,
    }
    mounts: list[dict[str, Any]] = []
    env: list[dict[str, Any]] = [
        {"name": k, "value": v} for k, _, v in (item.partition("=") for item in cr.env)
    ]
    if cr.entry is not None:
        container["command"] = list(RUNTIME_COMMAND)
        env += _entry_env(payload_key, settings=settings, collection=collection, job=job, task=task)
        mounts.append({"name": PAYLOAD_VOLUME, "mountPath": PAYLOAD_MOUNT, "readOnly": True})
    if cr.entry is not None or len(cr.ports) > 1:  # several ports: the readiness probe runs the runtime's Python
        mounts.insert(0, {"name": RUNTIME_VOLUME, "mountPath": RUNTIME_MOUNT, "readOnly": True})
    if cr.cmd:
        container["args"] = list(cr.cmd)
    if env:
        container["env"] = env
    if cr.ports:
        container["ports"] = [{"containerPort": p, "protocol": "TCP"} for p in cr.ports]
    mounts += files
    if mounts:
        container["volumeMounts"] = mounts
    if cr.capabilities:  # e.g. NET_RAW for a SYN scan; added to the runtime's default set
        container["securityContext"] = {"capabilities": {"add": list(cr.capabilities)}}
    container["terminationMessagePolicy"] = TERMINATION_POLICY
    return container


def _entry_env(payload_key: str, *, settings: Settings, collection: str, job: int, task: int) -> list[dict[str, Any]]:
    """What the runtime reads of an entry's run: its payload, the store, its record's place."""
    env: list[dict[str, Any]] = [
        {"name": PAYLOAD_ENV, "value": f"{PAYLOAD_MOUNT}/{payload_key}"},
        {
            "name": STORE_URI_ENV,
            "valueFrom": {"secretKeyRef": {"name": settings.tasks_secret, "key": STORE_SECRET_KEY}},
        },
        {"name": DATABASE_ENV, "value": settings.database},
        {"name": COLLECTION_ENV, "value": collection},
        {"name": JOB_ENV, "value": str(job)},
        {"name": TASK_ENV, "value": str(task)},
    ]
    if settings.debug_wait is not None:
        env.append({"name": DEBUG_WAIT_ENV, "value": f"{settings.debug_wait:g}"})
    return env


def plain(value: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-ready deep copy of an option's (possibly read-only) mapping."""
    return {k: plain(v) if isinstance(v, Mapping) else copy.deepcopy(v) for k, v in value.items()}


def _image(image: str, settings: Settings) -> str:
    reference = image_reference(image, settings.image_registry)
    if reference is None:
        raise SettingsError(
            f"image={image!r} is a platform image (a leading dot: '.user.tool:tag'), but no registry is "
            f"configured for them. Set {IMAGE_REGISTRY_ENV} to the platform's registry, e.g. "
            f"{IMAGE_REGISTRY_ENV}=registry.example:5000/tools (the chart's settings.imageRegistry sets it for "
            "in-cluster runs)."
        )
    return reference


def _probe(ports: tuple[int, ...], *, failure_threshold: int) -> dict[str, Any]:
    probe: dict[str, Any]
    if len(ports) == 1:
        probe = {"tcpSocket": {"port": ports[0]}}
    else:
        probe = {"exec": {"command": [PYTHON, "-c", PROBE_SCRIPT, *map(str, ports)]}}
    # An exec probe starts an interpreter: give it more time than a bare TCP connect.
    timeout = 1 if len(ports) == 1 else 5
    probe.update(periodSeconds=PROBE_PERIOD, timeoutSeconds=timeout, failureThreshold=failure_threshold)
    return probe
