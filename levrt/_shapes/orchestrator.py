"""The in-cluster orchestration Pod (``levrt run FILE --in-cluster``), built as plain objects.

Why apart from the run itself (``levrt._core.incluster``): like task Pods, the orchestration Pod
is computed without I/O so it can be snapshot-tested and dry-run by the apiserver. It carries the
orchestration file and the modules beside it in a ConfigMap, and runs ``python -m levrt run``
from the runtime image under the chart's ``levrt-orchestrator`` ServiceAccount. The Pod knows its
own name and uid (downward API): the job it opens adopts it, owned by the job's Lease
(``levrt._core.engine``).

Detached (``levrt run --detach``, a job started through the console, a scheduled run), nobody
follows the Pod, so it runs under a Kubernetes Job (``orchestration_job_spec``): when the Pod is
deleted or evicted mid-run the Job makes another, which takes the same levrt job over
(``levrt._core.ownership``). A Pod handing its job over exits ``EXIT_HANDED_OVER``; any other
failure ends the Job (a failed workflow is not run again).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from levrt._shapes.build import TaskObjects
from levrt._shapes.names import (
    GATE,
    MANAGED_BY,
    ROLE_LABEL,
    RUN_LABEL,
    TERMINATION_POLICY,
    orchestrator_name,
)
from levrt.errors import OrchestrationError
from levrt.podenv import (
    DETACHED_ENV,
    KEEP_ENV,
    NAMESPACE_ENV,
    ORCHESTRATOR_SITE,
    POD_NAME_ENV,
    POD_UID_ENV,
    PYTHON,
    RUNTIME_IMAGE_ENV,
    STORE_SECRET_KEY,
    STORE_URI_ENV,
)
from levrt.settings import Settings

__all__ = [
    "EXIT_HANDED_OVER",
    "HANDOVERS",
    "PUBLISHED_OPTION",
    "SERVICE_ACCOUNT",
    "SETTINGS_CONFIGMAP",
    "controller_job",
    "detached_job",
    "new_run_id",
    "orchestration_job_spec",
    "orchestrator_objects",
]

SERVICE_ACCOUNT = "levrt-orchestrator"
SETTINGS_CONFIGMAP = "levrt-settings"
SOURCE_MOUNT = "/orchestration"
PUBLISHED_OPTION = "--published"
"""``levrt run --published SHA256 TOOL:FUNC``: run the registry's copy of TOOL if its archive has SHA256."""
MAX_SOURCE = 512 * 1024
EXIT_HANDED_OVER = 75
"""The exit of an orchestration Pod going away while its job goes on in the next one (EX_TEMPFAIL)."""
HANDOVERS = 5
"""How many times a detached job's orchestration Pod may be replaced (the Job's ``backoffLimit``)."""
FINISHED_JOB_TTL = 600
"""Seconds a finished orchestration Job stays (its Pod's last output readable); the job's Lease
usually takes it along at once."""


def orchestrator_objects(
    *, sources: Mapping[str, bytes], entry: str, func: str | None, args: Sequence[str], settings: Settings, run_id: str,
    env: Mapping[str, str] | None = None, detach: bool = False, published: str | None = None,
) -> TaskObjects:
    """The Pod that runs ``entry:func`` and the ConfigMap carrying ``sources`` (relative POSIX path →
    bytes): the orchestration file and the modules beside it, or the whole package it belongs to
    (``lev/demo/portscan/flows.py`` and the rest of ``lev/``), mounted in the same layout.
    ``func`` None: the file's default (its ``main``, or the job its import runs); ``args`` are the
    raw command-line strings, read by the Pod's ``levrt run`` as on the laptop.

    ``published``: the sha256 of a published tool's archive; ``entry`` is then the tool
    (``demo/portscan@1.0``), nothing is shipped, and the Pod's ``levrt run`` takes the tool from the
    registry and runs it only if its archive still has that sha256.
    """
    if published is not None:
        objects = _published_objects(entry=entry, sha256=published, func=func, args=args, settings=settings,
                                     run_id=run_id, env=env, detach=detach)
    else:
        objects = _shipped_objects(sources=sources, entry=entry, func=func, args=args, settings=settings,
                                   run_id=run_id, env=env, detach=detach)
    return detached_job(objects) if detach else objects


def _shipped_objects(
    *, sources: Mapping[str, bytes], entry: str, func: str | None, args: Sequence[str], settings: Settings, run_id: str,
    env: Mapping[str, str] | None, detach: bool,
) -> TaskObjects:
    if entry not in sources:
        raise OrchestrationError(f"{entry!r} is not among the shipped files {sorted(sources)}.")
    size = sum(len(v) for v in sources.values())
    if size > MAX_SOURCE:
        raise OrchestrationError(
            f"The orchestration and the modules beside it ({', '.join(sorted(sources))}) are {size} bytes; "
            f"in-cluster runs ship at most {MAX_SOURCE // 1024} KiB. Move the file into a directory of its own "
            "with only the tool modules it imports, or move data into files=... of your Crs."
        )
    name = orchestrator_name(run_id)
    labels = {**MANAGED_BY, ROLE_LABEL: "orchestrator", RUN_LABEL: run_id}
    keys = _configmap_keys(sorted(sources))
    configmap: dict[str, Any] = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": f"{name}-source", "namespace": settings.namespace, "labels": labels},
        "binaryData": {keys[path]: _b64(data) for path, data in sorted(sources.items())},
        "immutable": True,
    }
    env_list: list[dict[str, Any]] = [
        {"name": "PYTHONPATH", "value": ORCHESTRATOR_SITE},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": NAMESPACE_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": RUNTIME_IMAGE_ENV, "value": settings.runtime_image},
        {"name": STORE_URI_ENV,
         "valueFrom": {"secretKeyRef": {"name": settings.store_secret, "key": STORE_SECRET_KEY}}},
        # Its own name and uid: the job it runs adopts this Pod (owned by the job's Lease).
        {"name": POD_NAME_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": POD_UID_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
    ]
    if detach:  # nobody follows it: the job's Lease keeps it to the end, and takes it along
        env_list.append({"name": DETACHED_ENV, "value": "1"})
    if settings.keep:
        env_list.append({"name": KEEP_ENV, "value": "1"})
    # The user's variables come last so they can override the settings (LEVRT_TIMEOUT=...).
    env_list += [{"name": k, "value": v} for k, v in sorted((env or {}).items())]
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": settings.namespace, "labels": labels},
        "spec": {
            "schedulingGates": [{"name": GATE}],
            "restartPolicy": "Never",
            "serviceAccountName": SERVICE_ACCOUNT,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 30,
            "containers": [{
                "name": "main",
                "image": settings.runtime_image,
                "imagePullPolicy": settings.image_pull_policy,
                "command": [PYTHON, "-m", "levrt", "run", "--no-progress",
                            f"{SOURCE_MOUNT}/{entry}" + (f":{func}" if func else ""),
                            # The function's arguments stay positional even when they start with '-'.
                            "--", *args],
                "env": env_list,
                # Settings the platform team set in the chart (timeouts, resources...) apply too.
                "envFrom": [{"configMapRef": {"name": SETTINGS_CONFIGMAP, "optional": True}}],
                "volumeMounts": [{"name": "source", "mountPath": SOURCE_MOUNT, "readOnly": True}],
                "terminationMessagePolicy": TERMINATION_POLICY,
            }],
            "volumes": [{"name": "source", "configMap": _source_volume(configmap["metadata"]["name"], keys)}],
            **({"nodeSelector": dict(settings.node_selector)} if settings.node_selector else {}),
        },
    }
    return TaskObjects(pod=pod, owned=[configmap])


def _published_objects(*, entry: str, sha256: str, func: str | None, args: Sequence[str], settings: Settings,
                       run_id: str, env: Mapping[str, str] | None, detach: bool) -> TaskObjects:
    """The orchestration Pod of a published tool: the Pod ``orchestrator_objects`` builds for a file,
    without the ConfigMap and its volume, its ``levrt run`` told which archive to trust."""
    shipped = _shipped_objects(sources={"tool": b""}, entry="tool", func=func, args=args, settings=settings,
                               run_id=run_id, env=env, detach=detach)
    pod = shipped.pod
    container = pod["spec"]["containers"][0]
    command = container["command"]
    at = command.index(f"{SOURCE_MOUNT}/tool" + (f":{func}" if func else ""))
    command[at:at + 1] = [PUBLISHED_OPTION, sha256, entry + (f":{func}" if func else "")]
    del container["volumeMounts"]
    del pod["spec"]["volumes"]
    return TaskObjects(pod=pod, owned=[])


def orchestration_job_spec(pod: Mapping[str, Any]) -> dict[str, Any]:
    """The spec of a Kubernetes Job running the orchestration Pod ``pod`` (its labels and spec
    become the template). A Pod that hands its job over (``EXIT_HANDED_OVER``), is evicted or
    preempted (``DisruptionTarget``), or is killed (137: a node lost, SIGKILL) is replaced, up to
    ``HANDOVERS`` times; any other exit ends the Job, so a workflow that failed is not run again."""
    spec = copy.deepcopy(dict(pod["spec"]))
    spec.pop("schedulingGates", None)  # nothing lifts a gate on a Job's Pods: they start as made
    return {
        "backoffLimit": HANDOVERS,
        "ttlSecondsAfterFinished": FINISHED_JOB_TTL,
        "podFailurePolicy": {"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "FailJob",
             "onExitCodes": {"containerName": "main", "operator": "NotIn", "values": [EXIT_HANDED_OVER, 137]}},
        ]},
        "template": {"metadata": {"labels": dict(pod["metadata"]["labels"])}, "spec": spec},
    }


def controller_job(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ownerReference of the Kubernetes Job running ``pod`` (a detached or scheduled
    orchestration), or None."""
    return next((ref for ref in pod.get("metadata", {}).get("ownerReferences") or []
                 if ref.get("kind") == "Job" and ref.get("controller")), None)


def detached_job(objects: TaskObjects) -> TaskObjects:
    """``objects`` with the orchestration Pod wrapped in a Job of the same name, created suspended:
    the Job is the Pod's gate (``levrt._clients.submit.submit_job`` creates what it owns, then lets
    it start)."""
    pod = objects.pod
    job = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": pod["metadata"]["name"], "namespace": pod["metadata"]["namespace"],
                     "labels": dict(pod["metadata"]["labels"])},
        "spec": {**orchestration_job_spec(pod), "suspend": True},
    }
    return TaskObjects(pod=job, owned=copy.deepcopy(objects.owned))


def _configmap_keys(paths: list[str]) -> dict[str, str]:
    """A ConfigMap key for each path: the file name itself when every file sits at the top (keys
    cannot hold '/'), else a numbered key that the volume maps back to the path."""
    if all("/" not in path for path in paths):
        return {path: path for path in paths}
    return {path: f"f{index:04d}-{path.rsplit('/', 1)[-1]}" for index, path in enumerate(paths)}


def _source_volume(name: str, keys: Mapping[str, str]) -> dict[str, Any]:
    volume: dict[str, Any] = {"name": name}
    if any(key != path for path, key in keys.items()):
        volume["items"] = [{"key": key, "path": path} for path, key in sorted(keys.items())]
    return volume


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def new_run_id(source: bytes) -> str:
    """Short, unique, and recognisable per file: 6 hex of the content, 4 random."""
    return hashlib.sha256(source).hexdigest()[:6] + secrets.token_hex(2)
