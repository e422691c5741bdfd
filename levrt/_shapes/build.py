"""The pure builder: a ``Cr`` + job/task identity + ``Settings`` → the Kubernetes objects of one run.

Why pure: what levrt sends to the cluster is the heart of its behaviour, so it is computed as
plain dicts (Kubernetes JSON shape, camelCase) with no client and no I/O — snapshot-tested
(tests/golden), checked by the apiserver with ``dryRun=All``, and submitted by the engine
unchanged. The only I/O, reading local ``Path`` files, is ``levrt._shapes.files.read_files``
(re-exported here) and stays outside.

The shape follows DESIGN.md "Pod shape" and SPEC 2:

- Pod ``lev-j{job}-t{task}``, ``restartPolicy: Never``, behind the scheduling gate
  ``levrt.io/objects`` until the objects it owns exist (the engine lifts it).
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
  (``levrt._shapes.files``).
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
import math
from collections.abc import Mapping
from typing import Any

from levrt import payload
from levrt._shapes.files import FILES_VOLUME, containers_files, fetch_container, file_mount, read_files
from levrt._shapes.names import (
    ATTEMPT_LABEL,
    COLLECTION_ANNOTATION,
    ENTRY_ANNOTATION,
    GATE,
    JOB_LABEL,
    MANAGED_BY,
    PAYLOAD_ROLE,
    ROLE_LABEL,
    RUNTIME_COPIER,
    TASK_LABEL,
    TERMINATION_POLICY,
    image_reference,
    payload_secret_name,
    pod_name,
    task_labels,
)
from levrt.cr import Cr, Digest
from levrt.errors import LevrtError, PayloadError, SettingsError
from levrt.podenv import (
    COLLECTION_ENV,
    DATABASE_ENV,
    DEBUG_WAIT_ENV,
    IMAGE_REGISTRY_ENV,
    JOB_ENV,
    PAYLOAD_ENV,
    PAYLOAD_MOUNT,
    PROBE_MOUNT,
    PYTHON,
    RUNTIME_COMMAND,
    RUNTIME_MOUNT,
    RUNTIME_TARGET,
    SERVICE_PAYLOAD_PREFIX,
    STORE_SECRET_KEY,
    STORE_URI_ENV,
    TASK_ENV,
    TIMEOUT_ENV,
    TIMEOUT_GRACE,
)
from levrt.settings import Settings

__all__ = [
    "PROBE_ROLE",
    "RUNTIME_COPY_COMMAND",
    "TaskObjects",
    "build_task",
    "read_files",
    "runtime_probe_pod",
    "with_attempt",
]

RUNTIME_VOLUME = "levrt-runtime"
PAYLOAD_VOLUME = "levrt-payload"
# The runtime image's root is the bundle's prefix (bin/, lib/), with /levrt a link to that root: so
# the image mounted as a volume at /levrt is the runtime, and in a container of that image
# /levrt/bin/python3 runs too. The init container copies the prefix, with the image's own
# Python, into the emptyDir mounted at /levrt-target.
BUNDLE_DIRS = ("bin", "lib")
RUNTIME_COPY_COMMAND = [
    PYTHON,
    "-c",
    "import shutil,sys\n"
    "for d in sys.argv[3:]: shutil.copytree(sys.argv[1]+'/'+d, sys.argv[2]+'/'+d, symlinks=True, dirs_exist_ok=True)",
    RUNTIME_MOUNT,
    RUNTIME_TARGET,
    *BUNDLE_DIRS,
]
COPIED_MARKER = ".copied"
"""Written by the postStart copy when it is done: the copier container then exits."""
PROBE_ROLE = "runtime-probe"
# Readiness of several ports at once: exit 0 only when every port accepts a connection.
PROBE_SCRIPT = (
    "import socket,sys\n"
    "for p in sys.argv[1:]:\n"
    " socket.create_connection(('127.0.0.1',int(p)),timeout=1).close()\n"
)
# One Secret carries every payload of the Pod; the apiserver caps a Secret at 1 MiB.
MAX_SECRET_BYTES = 1024 * 1024 - 4096
PROBE_PERIOD = 1
DEADLINE_MARGIN = 20
"""Seconds of activeDeadlineSeconds beyond timeout + the runtime's grace: the Pod's clock starts
before the image is pulled and the entry runs, so the runtime's own timer comes first."""


@dataclasses.dataclass(frozen=True)
class TaskObjects:
    """The objects of one run: the Pod, and what it owns (payload Secret, file ConfigMaps)."""

    pod: dict[str, Any]
    owned: list[dict[str, Any]]

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
    file_contents: Mapping[str, bytes | Digest] | None = None,
    attempt: int = 0,
) -> TaskObjects:
    """The Pod and owned objects running ``cr`` as task ``task`` of job ``job``.

    ``collection`` is the full collection name (namespace prefix included); ``file_contents`` is
    what ``read_files(cr)`` returned (needed when ``cr`` has ``Path`` files); ``attempt`` > 0 names
    the Pod of a retry (``Cr(retries=...)``), which keeps the task's id and record.
    """
    for label, ident in (("job", job), ("task", task)):
        if isinstance(ident, bool) or not isinstance(ident, int) or ident < 0:
            raise LevrtError(f"build_task({label}={ident!r}): ids are integers >= 0.")
    if not isinstance(collection, str) or not collection:
        raise LevrtError(f"build_task(collection={collection!r}): the collection name is a non-empty str.")
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
        raise LevrtError(f"build_task(attempt={attempt!r}): attempts are integers >= 0.")
    name = pod_name(job, task, attempt)
    ns = settings.namespace
    labels = task_labels(job, task)
    if attempt:
        labels[ATTEMPT_LABEL] = str(attempt)
    contents = dict(file_contents or {})

    # Payloads (one per container with an entry), in one Secret.
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
    multi_port = len(cr.ports) > 1 or any(len(s.ports) > 1 for s in cr.services.values())
    runtime = bool(payloads) or multi_port

    # File objects, deduplicated by content across all containers; large content from the store.
    file_objects: dict[str, dict[str, Any]] = {}
    stored: dict[str, None] = {}
    mounts: dict[str, list[dict[str, Any]]] = {}
    for container, files in containers_files(cr):
        mounts[container] = [
            file_mount(target, value, contents, file_objects, stored, namespace=ns) for target, value in files.items()
        ]
    volume_names = sorted({m["name"] for ms in mounts.values() for m in ms} - {FILES_VOLUME})

    init_containers: list[dict[str, Any]] = []
    copier: dict[str, Any] | None = None
    if runtime and _copies_runtime(settings):
        copier = {
            "name": RUNTIME_COPIER,
            "image": settings.runtime_image,
            "imagePullPolicy": settings.image_pull_policy,
            "command": list(RUNTIME_COPY_COMMAND),
            "volumeMounts": [{"name": RUNTIME_VOLUME, "mountPath": RUNTIME_TARGET}],
            "terminationMessagePolicy": TERMINATION_POLICY,
        }
        if cr.services:  # services start before regular containers and may need the runtime
            init_containers.append(copier)
            copier = None
        else:
            copier.update(_poststart_copier())
    for svc_name, svc in cr.services.items():
        sidecar = _container(
            svc_name,
            svc,
            payload_key=f"{SERVICE_PAYLOAD_PREFIX}{svc_name}",
            settings=settings,
            files=mounts[svc_name],
            collection=collection,
            job=job,
            task=task,
        )
        sidecar["restartPolicy"] = "Always"
        if svc.resources:
            sidecar["resources"] = _plain(svc.resources)
        if svc.ports:
            sidecar["startupProbe"] = _probe(
                svc.ports, failure_threshold=max(1, math.ceil(settings.start_timeout / PROBE_PERIOD))
            )
        init_containers.append(sidecar)

    main = _container(
        "main",
        cr,
        payload_key="main",
        settings=settings,
        files=mounts["main"],
        collection=collection,
        job=job,
        task=task,
    )
    if cr.ports:
        main["readinessProbe"] = _probe(cr.ports, failure_threshold=3)
    # Per-task run options win over the Settings defaults (DESIGN.md "Run options").
    resources = cr.resources if cr.resources is not None else settings.resources
    if resources:
        main["resources"] = _plain(resources)
    timeout = cr.timeout if cr.timeout is not None else settings.timeout
    if timeout is not None and cr.entry is not None:
        main["env"].append({"name": TIMEOUT_ENV, "value": str(timeout)})

    spec: dict[str, Any] = {
        "schedulingGates": [{"name": GATE}],
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
        spec["tolerations"] = [_plain(t) for t in tolerations]
    if stored:  # first: every other container, sidecars included, may mount a stored file
        init_containers.insert(0, fetch_container(list(stored), settings))
    if init_containers:
        spec["initContainers"] = init_containers
    spec["containers"] = [main] if copier is None else [copier, main]
    volumes: list[dict[str, Any]] = []
    if runtime:
        volumes.append(_runtime_volume(settings))
    if payloads:
        volumes.append({"name": PAYLOAD_VOLUME, "secret": {"secretName": payload_secret_name(name)}})
    if stored:
        volumes.append({"name": FILES_VOLUME, "emptyDir": {}})
    volumes += [{"name": v, "configMap": {"name": v}} for v in volume_names]
    if volumes:
        spec["volumes"] = volumes

    annotations = {COLLECTION_ANNOTATION: collection}
    if cr.entry is not None:
        annotations[ENTRY_ANNOTATION] = cr.entry.name
    if copier is not None:  # kubectl logs/exec mean the task's own container, not levrt's copier
        annotations["kubectl.kubernetes.io/default-container"] = "main"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": dict(labels), "annotations": annotations},
        "spec": spec,
    }
    owned: list[dict[str, Any]] = []
    if payloads:
        owned.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": payload_secret_name(name), "namespace": ns,
                             "labels": {**labels, ROLE_LABEL: PAYLOAD_ROLE}},
                "type": "Opaque",
                "immutable": True,
                "data": {key: base64.b64encode(blob).decode("ascii") for key, blob in payloads.items()},
            }
        )
    owned += [file_objects[k] for k in sorted(file_objects)]
    return TaskObjects(pod=pod, owned=owned)


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
        env += [
            {"name": PAYLOAD_ENV, "value": f"{PAYLOAD_MOUNT}/{payload_key}"},
            {
                "name": STORE_URI_ENV,
                "valueFrom": {"secretKeyRef": {"name": settings.store_secret, "key": STORE_SECRET_KEY}},
            },
            {"name": DATABASE_ENV, "value": settings.database},
            {"name": COLLECTION_ENV, "value": collection},
            {"name": JOB_ENV, "value": str(job)},
            {"name": TASK_ENV, "value": str(task)},
        ]
        if settings.debug_wait is not None:
            env.append({"name": DEBUG_WAIT_ENV, "value": f"{settings.debug_wait:g}"})
        mounts.append({"name": PAYLOAD_VOLUME, "mountPath": PAYLOAD_MOUNT, "readOnly": True})
    if cr.entry is not None or len(cr.ports) > 1:
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
    return TaskObjects(pod=pod, owned=owned)


def _plain(value: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-ready deep copy of an option's (possibly read-only) mapping."""
    return {k: _plain(v) if isinstance(v, Mapping) else copy.deepcopy(v) for k, v in value.items()}


def _poststart_copier() -> dict[str, Any]:
    """The copy as the postStart hook of a first regular container, which lives until the hook
    has copied and then exits.

    Why not an init container: the kubelet starts the next container only once an init container's
    exit is seen by its relist (1 s), while it runs a postStart hook to its end and then starts
    the next container at once (bench.roundtrip: "bare + postStart cp" against "bare + init
    copy"). With services (native sidecars, which start before every regular container and may
    run entries) the init container stays.
    """
    copied = f"{RUNTIME_TARGET}/{COPIED_MARKER}"
    script = RUNTIME_COPY_COMMAND[2] + f"\nopen({copied!r}, 'w').close()"
    return {
        "command": [PYTHON, "-c", f"import os,time\nwhile not os.path.exists({copied!r}): time.sleep(0.02)"],
        "lifecycle": {"postStart": {"exec": {"command": [*RUNTIME_COPY_COMMAND[:2], script,
                                                          *RUNTIME_COPY_COMMAND[3:]]}}},
    }


def _copies_runtime(settings: Settings) -> bool:
    """Whether the runtime reaches the Pod through an init container's copy (``copy``, ``auto``)."""
    return not settings.runtime_host_path and settings.runtime_mode != "image"


def _runtime_volume(settings: Settings) -> dict[str, Any]:
    if settings.runtime_host_path:
        # Filled once per node by the chart's DaemonSet: no copy, no init container.
        return {"name": RUNTIME_VOLUME, "hostPath": {"path": settings.runtime_host_path, "type": "Directory"}}
    if settings.runtime_mode == "image":
        # The runtime image itself, mounted read-only: no copy, no init container.
        return {"name": RUNTIME_VOLUME,
                "image": {"reference": settings.runtime_image, "pullPolicy": settings.image_pull_policy}}
    return {"name": RUNTIME_VOLUME, "emptyDir": {}}


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
        "volumes": [_runtime_volume(settings.replace(runtime_mode="image", runtime_host_path=None))],
    }
    if settings.node_selector:
        spec["nodeSelector"] = dict(settings.node_selector)
    if settings.tolerations:
        spec["tolerations"] = [copy.deepcopy(dict(t)) for t in settings.tolerations]
    labels = {**MANAGED_BY, ROLE_LABEL: PROBE_ROLE}
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": settings.namespace, "labels": labels}, "spec": spec}
    return TaskObjects(pod=pod, owned=[])


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
