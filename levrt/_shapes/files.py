"""Files of a task: which content becomes a ConfigMap, which goes through the store's file storage.

Why apart from the Pod builder: a Cr's files are worked out once, here, into a ``FilePlan`` that
the builder mounts and the engine uploads from (``plan.stored``), so no one sorts them again.
Pure: what the local ``Path`` files hold is read (or hashed) at the edge,
``levrt._core.localfiles``, and handed in.

Two ways into the Pod (DESIGN.md "Pod shape"):

- content up to ``MAX_FILE_BYTES`` becomes one immutable, content-addressed ConfigMap
  ``levrt-f-<sha256[:40]>`` (key ``content``), mounted with ``subPath`` (the fast path: nothing
  to fetch, the kubelet mounts it);
- larger content (bytes, str, ``Path``) and every ``Digest`` is content in the store's file
  storage (``levrt._stored``), uploaded by the engine at submit: the first init container,
  ``levrt-files`` (the runtime image's Python, ``levrt.runtime.fetch``), streams each sha256 into
  the emptyDir ``levrt-files``, and each container mounts ``<sha256>`` from it read-only at the
  exact path, so images without an entry get their files too.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import pathlib
from collections.abc import Mapping
from typing import Any

from levrt._shapes.names import FILE_LABEL, MANAGED_BY, SHA256_ANNOTATION, TERMINATION_POLICY, file_object_name
from levrt.cr import MAX_FILE_BYTES, Cr, Digest, File
from levrt.errors import FileSpecError
from levrt.podenv import DATABASE_ENV, FETCH_MODULE, FILES_MOUNT, PYTHON, STORE_SECRET_KEY, STORE_URI_ENV
from levrt.settings import Settings

__all__ = [
    "FETCH_CONTAINER",
    "FILES_VOLUME",
    "FilePlan",
    "LocalFiles",
    "PlannedFile",
    "StoredSource",
    "containers_files",
    "fetch_container",
    "file_mount",
    "file_objects",
    "plan_files",
]

FETCH_CONTAINER = "levrt-files"
FILES_VOLUME = "levrt-files"

LocalFiles = Mapping[str, bytes | Digest]
"""What the local ``Path`` files of a Cr hold, by ``os.fspath(path)``: the content of each small
one, the ``Digest`` of each one over ``MAX_FILE_BYTES`` (``levrt._core.localfiles``)."""


@dataclasses.dataclass(frozen=True)
class StoredSource:
    """Content a task needs in the store's file storage, and where it comes from: ``bytes`` or a
    local ``Path`` to upload, or None for a ``Digest`` (stored before; only checked)."""

    sha256: str
    source: bytes | str | pathlib.Path | None
    label: str
    """How logs and errors name it: the local file's name, or the target path."""
    targets: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class PlannedFile:
    """One file of one container: the path it is mounted at and how its content gets there."""

    target: str
    sha256: str
    content: bytes | None
    """The content of a small file, for its ConfigMap; None: the content is in the file storage."""


@dataclasses.dataclass(frozen=True)
class FilePlan:
    """Every file of a Cr, worked out once: what the builder mounts and the engine uploads."""

    containers: Mapping[str, tuple[PlannedFile, ...]]
    """The files of ``main`` and of each service, in the order the Cr lists them."""
    stored: Mapping[str, StoredSource]
    """What must be in the file storage before the Pod exists, by sha256, in order of first use."""


def containers_files(cr: Cr) -> list[tuple[str, Mapping[str, File]]]:
    """``(container name, files)`` of the main container and each service."""
    return [("main", cr.files)] + [(name, svc.files) for name, svc in cr.services.items()]


def plan_files(cr: Cr, local: LocalFiles | None = None) -> FilePlan:
    """How each file of ``cr`` and its services reaches the Pod, given what its local ``Path``
    files hold (``local``; a Cr without any may leave it out). In-memory content is hashed here."""
    containers: dict[str, tuple[PlannedFile, ...]] = {}
    stored: dict[str, StoredSource] = {}
    for container, files in containers_files(cr):
        planned = tuple(_plan_one(target, value, local or {}) for target, value in files.items())
        for file, value in zip(planned, files.values(), strict=True):
            if file.content is None:
                _add_stored(stored, file, value)
        containers[container] = planned
    return FilePlan(containers=containers, stored=stored)


def _plan_one(target: str, value: File, local: LocalFiles) -> PlannedFile:
    if isinstance(value, Digest):  # first: a Digest is a str too
        return PlannedFile(target, str(value), None)
    if isinstance(value, pathlib.PurePath):
        key = os.fspath(value)
        found = local.get(key)
        if found is None:
            raise FileSpecError(
                f"files[{target!r}] = Path({key!r}) was not read: plan the files from what the local files "
                "hold, plan_files(cr, read_local_files(cr))."
            )
        if isinstance(found, Digest):
            return PlannedFile(target, str(found), None)
        return PlannedFile(target, hashlib.sha256(found).hexdigest(), found)
    if isinstance(value, bytes | str):
        data = value.encode("utf-8") if isinstance(value, str) else value
        sha = hashlib.sha256(data).hexdigest()
        return PlannedFile(target, sha, None if len(data) > MAX_FILE_BYTES else data)
    # Cr validated the types; keep the plan total anyway
    raise FileSpecError(f"files[{target!r}] has unsupported type {type(value).__name__}.")


def _add_stored(stored: dict[str, StoredSource], file: PlannedFile, value: File) -> None:
    """Note that ``file`` comes from the file storage; content used twice is stored once, from the
    first source that can be uploaded."""
    sha, target = file.sha256, file.target
    source: bytes | str | pathlib.Path | None
    if isinstance(value, Digest):
        source, label = None, f"files[{target!r}] = Digest({sha[:12]}...)"
    elif isinstance(value, pathlib.PurePath):
        source, label = pathlib.Path(value), pathlib.Path(value).name or target
    else:
        source, label = value, target
    previous = stored.get(sha)
    if previous is None:
        stored[sha] = StoredSource(sha, source, label, (target,))
    else:
        source = previous.source if previous.source is not None else source
        stored[sha] = dataclasses.replace(previous, source=source, targets=(*previous.targets, target))


def file_mount(file: PlannedFile) -> dict[str, Any]:
    """The volumeMount of one file: from its ConfigMap, or from the ``levrt-files`` volume."""
    if file.content is None:
        return {"name": FILES_VOLUME, "mountPath": file.target, "subPath": file.sha256, "readOnly": True}
    return {"name": file_object_name(file.sha256), "mountPath": file.target, "subPath": "content", "readOnly": True}


def file_objects(plan: FilePlan, *, namespace: str) -> list[dict[str, Any]]:
    """The ConfigMaps of the small files, one per distinct content, sorted by name."""
    objects: dict[str, dict[str, Any]] = {}
    for files in plan.containers.values():
        for file in files:
            if file.content is None:
                continue
            name = file_object_name(file.sha256)
            if name not in objects:
                objects[name] = _config_map(name, file.sha256, file.content, namespace=namespace)
    return [objects[name] for name in sorted(objects)]


def _config_map(name: str, sha: str, data: bytes, *, namespace: str) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {**MANAGED_BY, FILE_LABEL: sha[:40]},
            "annotations": {SHA256_ANNOTATION: sha},
        },
        "immutable": True,
    }
    try:
        obj["data"] = {"content": data.decode("utf-8")}
    except UnicodeDecodeError:
        obj["binaryData"] = {"content": base64.b64encode(data).decode("ascii")}
    return obj


def fetch_container(shas: list[str], settings: Settings) -> dict[str, Any]:
    """The init container that streams stored files into the ``levrt-files`` volume (first of all
    init containers: services, native sidecars, may mount stored files too)."""
    return {
        "name": FETCH_CONTAINER,
        "image": settings.runtime_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": [PYTHON, "-m", FETCH_MODULE, FILES_MOUNT, *shas],
        "env": [
            {"name": STORE_URI_ENV,
             "valueFrom": {"secretKeyRef": {"name": settings.tasks_secret, "key": STORE_SECRET_KEY}}},
            {"name": DATABASE_ENV, "value": settings.database},
        ],
        "volumeMounts": [{"name": FILES_VOLUME, "mountPath": FILES_MOUNT}],
        "terminationMessagePolicy": TERMINATION_POLICY,
    }
