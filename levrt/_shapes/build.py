"""The pure builder: a ``Cr`` + job/task identity + ``Settings`` → the Kubernetes objects of one run.

Why pure: what levrt sends to the cluster is the heart of its behaviour, so it is computed as
plain dicts (Kubernetes JSON shape, camelCase) with no client and no I/O — snapshot-tested
(tests/golden), checked by the apiserver with ``dryRun=All``, and submitted by the engine
unchanged. The only I/O, reading local ``Path`` files, stays outside: ``levrt._core.localfiles``
reads them into the ``FilePlan`` that ``build_task(plan=...)`` takes.

The Pod is put together here from named parts: its containers (``containers.py``), how the
runtime reaches it (``delivery.py``), its files (``files.py``); what stays here is the Pod itself
(scheduling, network, volumes, deadline) and the payload Secret.

The shape follows DESIGN.md "Pod shape" and SPEC 2:

- Pod ``lev-j{job}-t{task}``, ``restartPolicy: Never``, without a gate: the objects it mounts
  are created before it (``levrt._clients.submit``; the gated order is submit's, for a Pod whose
  objects it must own).
- Entry → init container ``levrt-runtime`` copies the runtime bundle (``/levrt`` in the runtime
  image) into the emptyDir ``levrt-runtime``, mounted at ``/levrt`` read-only in each container
  that runs an entry; such a container's command is ``/levrt/bin/python3 -m levrt.runtime`` and
  its args are ``cmd``. The pickled calls are keys ``main`` / ``svc-<name>`` of the Secret
  ``lev-j{job}-t{task}-payload``, mounted at ``/levrt-payload``. With
  ``Settings.runtime_host_path`` the bundle is instead a read-only hostPath that the chart's
  node cache fills once per node: no init container, no copy.
- Services → native sidecars (``initContainers`` with ``restartPolicy: Always``) with a
  ``startupProbe`` on their ports; ``hostAliases`` map service names to 127.0.0.1.
- Ports of the main container → ``readinessProbe``. One port: ``tcpSocket``. Several ports: an
  ``exec`` probe run by the runtime's Python that connects to each (the runtime is then added even
  without an entry, because a tcpSocket probe checks only one port).
- Files → small content: one immutable, content-addressed ConfigMap per distinct content
  (``levrt-f-<sha256[:40]>``, key ``content``; ``data`` for UTF-8 text, ``binaryData`` otherwise),
  mounted with ``subPath`` read-only at the exact path. Content over ``MAX_FILE_BYTES`` and every
  ``Digest`` is in the store's file storage: a first init container ``levrt-files`` fetches it
  into the emptyDir ``levrt-files``, mounted with ``subPath: <sha256>`` read-only at the path
  (``levrt._shapes.files``, whose ``FilePlan`` also tells the engine what to upload).
- Links → ``hostAliases`` alias → IP. ``Cr`` accepts IP addresses only (a hostAlias needs an IP;
  a DNS name can be used directly instead of linking it).
- ``host=True`` → ``hostNetwork`` with ``dnsPolicy: ClusterFirstWithHostNet``.
- Run options (DESIGN.md "Run options") over the Settings defaults: ``capabilities`` →
  ``securityContext.capabilities.add``, ``resources`` per container, ``timeout`` → ``LEVRT_TIMEOUT``
  for the entry and ``activeDeadlineSeconds`` as the backstop, ``nodeSelector`` merged,
  ``tolerations`` appended; ``attempt`` > 0 (a retry) → Pod ``...-r<n>``, label ``levrt.io/attempt``.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
from typing import Any

from levrt import payload
from levrt._shapes.containers import PAYLOAD_VOLUME, main_container, plain, sidecar_container
from levrt._shapes.delivery import RUNTIME_VOLUME, RuntimeDelivery, runtime_delivery, runtime_volume
from levrt._shapes.files import FILES_VOLUME, FilePlan, fetch_container, file_mount, file_objects, plan_files
from levrt._shapes.names import (
    ATTEMPT_LABEL,
    COLLECTION_ANNOTATION,
    ENTRY_ANNOTATION,
    GATE,
    JOB_LABEL,
    MANAGED_BY,
    PAYLOAD_ROLE,
    ROLE_LABEL,
    TASK_LABEL,
    TERMINATION_POLICY,
    payload_secret_name,
    pod_name,
    task_labels,
)
from levrt.cr import Cr
from levrt.endreports import KEY_FILE
from levrt.errors import LevrtError, PayloadError
from levrt.podenv import (
    PAYLOAD_MOUNT,
    PROBE_MOUNT,
    PYTHON,
    REPORT_KEY_ENV,
    REPORT_POD_ENV,
    SERVICE_PAYLOAD_PREFIX,
    TIMEOUT_GRACE,
)
from levrt.settings import Settings

__all__ = [
    "PROBE_ROLE",
    "TaskObjects",
    "build_task",
    "runtime_probe_pod",
    "with_attempt",
]

PROBE_ROLE = "runtime-probe"
# One Secret carries every payload of the Pod; the apiserver caps a Secret at 1 MiB.
MAX_SECRET_BYTES = 1024 * 1024 - 4096
DEADLINE_MARGIN = 20
"""Seconds of activeDeadlineSeconds beyond timeout + the runtime's grace: the Pod's clock starts
before the image is pulled and the entry runs, so the runtime's own timer comes first."""


@dataclasses.dataclass(frozen=True)
class TaskObjects:
    """The objects of one run: the Pod, and what it owns (payload Secret, file ConfigMaps)."""

    pod: dict[str, Any]
    owned: list[dict[str, Any]]
    reports: bool = False
    """Whether ``main``'s runtime reports the task's end through the store (``levrt.endreports``)."""

    @property
    def name(self) -> str:
        return str(self.pod["metadata"]["name"])

    def all(self) -> list[dict[str, Any]]:
        return [self.pod, *self.owned]


def build_task(
    cr: Cr,
    *,
    job: int,
    task: int,
    collection: str,
    settings: Settings,
    plan: FilePlan | None = None,
    attempt: int = 0,
    report_key: str | None = None,
) -> TaskObjects:
    """The Pod and owned objects running ``cr`` as task ``task`` of job ``job``.

    ``collection`` is the full collection name (namespace prefix included); ``plan`` is the
    ``FilePlan`` of ``cr`` (``levrt._core.localfiles.plan_task_files``; needed when ``cr`` has
    ``Path`` files, else planned here); ``attempt`` > 0 names the Pod of a retry
    (``Cr(retries=...)``), which keeps the task's id and record. ``report_key``: the task's key for
    reporting its end through the store (``levrt.endreports``), carried by the payload Secret.
    """
    _check_identity(job=job, task=task, collection=collection, attempt=attempt)
    name = pod_name(job, task, attempt)
    ns = settings.namespace
    labels = task_labels(job, task)
    if attempt:
        labels[ATTEMPT_LABEL] = str(attempt)
    payloads = _payloads(cr, name)
    reports = report_key is not None and "main" in payloads
    multi_port = len(cr.ports) > 1 or any(len(s.ports) > 1 for s in cr.services.values())
    # The runtime runs entries, and the readiness probe of several ports (a tcpSocket probe checks one).
    delivery = runtime_delivery(settings, services=bool(cr.services)) if payloads or multi_port else None
    if plan is None:
        plan = plan_files(cr)
    mounts = {container: [file_mount(f) for f in files] for container, files in plan.containers.items()}
    identity: dict[str, Any] = {"settings": settings, "collection": collection, "job": job, "task": task}
    sidecars = [sidecar_container(svc_name, svc, files=mounts[svc_name], **identity)
                for svc_name, svc in cr.services.items()]
    timeout = cr.timeout if cr.timeout is not None else settings.timeout
    main = main_container(cr, files=mounts["main"], timeout=timeout, **identity)
    if reports:
        main["env"] += _report_env()

    spec = _pod_spec(cr, settings, timeout=timeout)
    # The fetch first: every other container, sidecars included, may mount a stored file.
    fetch = [fetch_container(list(plan.stored), settings)] if plan.stored else []
    init_containers = [*fetch, *(delivery.init_containers if delivery else []), *sidecars]
    if init_containers:
        spec["initContainers"] = init_containers
    copiers = delivery.containers if delivery else []
    spec["containers"] = [*copiers, main]
    config_maps = file_objects(plan, namespace=ns)
    volumes = _volumes(delivery, payloads=bool(payloads), name=name, stored=bool(plan.stored), config_maps=config_maps)
    if volumes:
        spec["volumes"] = volumes

    annotations = {COLLECTION_ANNOTATION: collection}
    if cr.entry is not None:
        annotations[ENTRY_ANNOTATION] = cr.entry.name
    if copiers:  # kubectl logs/exec mean the task's own container, not levrt's copier
        annotations["kubectl.kubernetes.io/default-container"] = "main"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": dict(labels), "annotations": annotations},
        "spec": spec,
    }
    secret_data = {**payloads, KEY_FILE: str(report_key).encode()} if reports else payloads
    owned = [_payload_secret(name, secret_data, namespace=ns, labels=labels)] if payloads else []
    return TaskObjects(pod=pod, owned=[*owned, *config_maps], reports=reports)


def _report_env() -> list[dict[str, Any]]:
    """Where ``main``'s runtime finds its reporting key, and the Pod's name it reports under."""
    return [{"name": REPORT_KEY_ENV, "value": f"{PAYLOAD_MOUNT}/{KEY_FILE}"},
            {"name": REPORT_POD_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]


def _check_identity(*, job: int, task: int, collection: str, attempt: int) -> None:
    for label, ident in (("job", job), ("task", task)):
        if isinstance(ident, bool) or not isinstance(ident, int) or ident < 0:
            raise LevrtError(f"build_task({label}={ident!r}): ids are integers >= 0.")
    if not isinstance(collection, str) or not collection:
        raise LevrtError(f"build_task(collection={collection!r}): the collection name is a non-empty str.")
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
        raise LevrtError(f"build_task(attempt={attempt!r}): attempts are integers >= 0.")


def _payloads(cr: Cr, name: str) -> dict[str, bytes]:
    """The pickled call of each container with an entry (``main``, ``svc-<name>``), for one Secret."""
    payloads: dict[str, bytes] = {}
    if cr.entry is not None:
        payloads["main"] = payload.dumps_call(cr.entry)
    for svc_name, svc in cr.services.items():
        if svc.entry is not None:
            payloads[f"{SERVICE_PAYLOAD_PREFIX}{svc_name}"] = payload.dumps_call(svc.entry)
    total = sum(len(p) for p in payloads.values())
    if total > MAX_SECRET_BYTES:
        raise PayloadError(
            f"The entries of {name} pickle to {total} bytes together, over the {MAX_SECRET_BYTES}-byte limit "
            "of one Secret. Pass large data as files instead of as arguments or captured variables."
        )
    return payloads


def _pod_spec(cr: Cr, settings: Settings, *, timeout: int | None) -> dict[str, Any]:
    """The Pod's own fields, before its containers: network, deadline and scheduling (no gate: what
    it mounts is created first, ``levrt._clients.submit``)."""
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
    }
    if cr.host:
        spec["hostNetwork"] = True
        spec["dnsPolicy"] = "ClusterFirstWithHostNet"
    aliases = _host_aliases(cr)
    if aliases:
        spec["hostAliases"] = aliases
    if timeout is not None:
        # The kubelet's backstop behind the runtime's own timer, and the only deadline of an image
        # without an entry: counted from the Pod's start, so it also covers the pull.
        spec["activeDeadlineSeconds"] = timeout + TIMEOUT_GRACE + DEADLINE_MARGIN
    node_selector = {**(settings.node_selector or {}), **(cr.node_selector or {})}
    if node_selector:
        spec["nodeSelector"] = node_selector
    tolerations = [*settings.tolerations, *cr.tolerations]
    if tolerations:
        spec["tolerations"] = [plain(t) for t in tolerations]
    return spec


def _volumes(
    delivery: RuntimeDelivery | None, *, payloads: bool, name: str, stored: bool, config_maps: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The runtime, the payload Secret, the fetched files, then one volume per file ConfigMap."""
    volumes: list[dict[str, Any]] = []
    if delivery is not None:
        volumes.append(delivery.volume)
    if payloads:
        volumes.append({"name": PAYLOAD_VOLUME, "secret": {"secretName": payload_secret_name(name)}})
    if stored:
        volumes.append({"name": FILES_VOLUME, "emptyDir": {}})
    volumes += [{"name": m["metadata"]["name"], "configMap": {"name": m["metadata"]["name"]}} for m in config_maps]
    return volumes


def _payload_secret(name: str, payloads: dict[str, bytes], *, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": payload_secret_name(name), "namespace": namespace,
                     "labels": {**labels, ROLE_LABEL: PAYLOAD_ROLE}},
        "type": "Opaque",
        "immutable": True,
        "data": {key: base64.b64encode(blob).decode("ascii") for key, blob in payloads.items()},
    }


def with_attempt(objects: TaskObjects, attempt: int) -> TaskObjects:
    """The objects of ``build_task(..., attempt=0)`` renamed for retry ``attempt``: what
    ``build_task(..., attempt=attempt)`` gives, without building (and reading files) again.

    Only the Pod's name, its payload Secret's and the attempt label change; the file objects are
    content-addressed and shared by every attempt.
    """
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise LevrtError(f"with_attempt(attempt={attempt!r}): a retry is attempt 1 or more.")
    old = objects.name
    labels = objects.pod["metadata"]["labels"]
    name = pod_name(int(labels[JOB_LABEL]), int(labels[TASK_LABEL]), attempt)
    pod = copy.deepcopy(objects.pod)
    pod["metadata"]["name"] = name
    pod["metadata"]["labels"][ATTEMPT_LABEL] = str(attempt)
    for volume in pod["spec"].get("volumes", []):
        if volume.get("secret", {}).get("secretName") == payload_secret_name(old):
            volume["secret"]["secretName"] = payload_secret_name(name)
    owned = []
    for obj in objects.owned:
        if obj["kind"] == "Secret" and obj["metadata"]["name"] == payload_secret_name(old):
            obj = copy.deepcopy(obj)
            obj["metadata"]["name"] = payload_secret_name(name)
            obj["metadata"]["labels"][ATTEMPT_LABEL] = str(attempt)
        owned.append(obj)
    return TaskObjects(pod=pod, owned=owned, reports=objects.reports)


def runtime_probe_pod(settings: Settings, *, name: str) -> TaskObjects:
    """A Pod that says whether this cluster mounts the runtime image as a volume: its container (of
    the runtime image) exits 0 if the mounted image holds the runtime's Python, 3 if the mount is
    empty; a cluster without image volumes refuses it or fails it (``levrt._core.runtime_mode``)."""
    check = "import os,sys; sys.exit(0 if os.path.isfile(sys.argv[1]) else 3)"
    spec: dict[str, Any] = {
        "schedulingGates": [{"name": GATE}],
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 0,
        "containers": [{
            "name": "main",
            "image": settings.runtime_image,
            "imagePullPolicy": settings.image_pull_policy,
            "command": [PYTHON, "-c", check, f"{PROBE_MOUNT}/bin/python3"],
            "volumeMounts": [{"name": RUNTIME_VOLUME, "mountPath": PROBE_MOUNT, "readOnly": True}],
            "terminationMessagePolicy": TERMINATION_POLICY,
        }],
        "volumes": [runtime_volume(settings.replace(runtime_mode="image", runtime_host_path=None))],
    }
    if settings.node_selector:
        spec["nodeSelector"] = dict(settings.node_selector)
    if settings.tolerations:
        spec["tolerations"] = [copy.deepcopy(dict(t)) for t in settings.tolerations]
    labels = {**MANAGED_BY, ROLE_LABEL: PROBE_ROLE}
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": settings.namespace, "labels": labels}, "spec": spec}
    return TaskObjects(pod=pod, owned=[])


def _host_aliases(cr: Cr) -> list[dict[str, Any]]:
    by_ip: dict[str, list[str]] = {}
    if cr.services:
        by_ip["127.0.0.1"] = list(cr.services)
    for svc in cr.services.values():
        for alias, ip in svc.links.items():
            by_ip.setdefault(ip, [])
            if alias not in by_ip[ip]:
                by_ip[ip].append(alias)
    for alias, ip in cr.links.items():
        by_ip.setdefault(ip, [])
        if alias not in by_ip[ip]:
            by_ip[ip].append(alias)
    return [{"ip": ip, "hostnames": names} for ip, names in by_ip.items()]
