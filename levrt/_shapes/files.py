"""Files of a task: a ConfigMap for small content, the store's file storage for the rest.

Why apart from the Pod builder: files are the part of a run with I/O at its edge (reading and
hashing local ``Path`` files, ``read_files``) and with their own rules; the builder only mounts
what this module names. Pure apart from ``read_files``.

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
from collections.abc import Mapping, MutableMapping
from typing import Any

from levrt._shapes.names import FILE_LABEL, MANAGED_BY, SHA256_ANNOTATION, TERMINATION_POLICY, file_object_name
from levrt._stored import sha256_of
from levrt.cr import MAX_FILE_BYTES, Cr, Digest, File
from levrt.errors import FileSpecError
from levrt.podenv import DATABASE_ENV, FETCH_MODULE, FILES_MOUNT, PYTHON, STORE_SECRET_KEY, STORE_URI_ENV
from levrt.settings import Settings

__all__ = [
    "FETCH_CONTAINER",
    "FILES_VOLUME",
    "StoredSource",
    "containers_files",
    "content_key",
    "fetch_container",
    "file_mount",
    "file_object",
    "read_files",
    "stored_files",
]

FETCH_CONTAINER = "levrt-files"
FILES_VOLUME = "levrt-files"

FileContents = Mapping[str, bytes | Digest]
"""What ``read_files`` returns: the content of each small local file by ``os.fspath(path)``, the
``Digest`` of each large one, and the ``Digest`` of large in-memory content by ``content_key``."""
HashMemo = MutableMapping[tuple[str, int, int, int, int], str]
"""sha256 of local files already hashed, by (path, device, inode, size, mtime): a fan-out over one
wordlist hashes it once."""


@dataclasses.dataclass(frozen=True)
class StoredSource:
    """Content a task needs in the store's file storage, and where it comes from: ``bytes`` or a
    local ``Path`` to upload, or None for a ``Digest`` (stored before; only checked)."""

    sha256: str
    source: bytes | str | pathlib.Path | None
    label: str
    """How logs and errors name it: the local file's name, or the target path."""
    targets: tuple[str, ...]


def content_key(value: bytes | str) -> str:
    """The ``read_files`` key of large in-memory content (the Cr holds it while the task is built)."""
    return f"<content {id(value):x}>"


def read_files(cr: Cr, *, hashes: HashMemo | None = None) -> dict[str, bytes | Digest]:
    """Read the small local ``Path`` files of ``cr`` and its services, hash the large ones and large
    in-memory content (see ``FileContents``).

    Called at submit time (in a thread); ``build_task(file_contents=...)`` takes the result. A
    large file is only hashed here (a chunk at a time); the engine uploads it.
    """
    contents: dict[str, bytes | Digest] = {}
    for _, files in containers_files(cr):
        for target, value in files.items():
            if isinstance(value, bytes | str) and not isinstance(value, Digest):
                if len(value) > MAX_FILE_BYTES or (isinstance(value, str) and len(value) * 4 > MAX_FILE_BYTES):
                    data = value.encode("utf-8") if isinstance(value, str) else value
                    if len(data) > MAX_FILE_BYTES:
                        contents[content_key(value)] = Digest(hashlib.sha256(data).hexdigest())
                continue
            if not isinstance(value, pathlib.PurePath):
                continue
            key = os.fspath(value)
            if key in contents:
                continue
            contents[key] = _read_or_hash(target, pathlib.Path(value), hashes)
    return contents


def _read_or_hash(target: str, path: pathlib.Path, hashes: HashMemo | None) -> bytes | Digest:
    try:
        stat = path.stat()
        if stat.st_size <= MAX_FILE_BYTES:
            data = path.read_bytes()
            if len(data) <= MAX_FILE_BYTES:
                return data
        memo = (os.fspath(path), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if hashes is not None and memo in hashes:
            return Digest(hashes[memo])
        with open(path, "rb") as fh:
            sha, _ = sha256_of(fh.read)
    except OSError as exc:
        raise FileSpecError(
            f"files[{target!r}] = Path({os.fspath(path)!r}) could not be read: {exc.strerror or exc}. "
            "Check that the file still exists and is readable."
        ) from None
    if hashes is not None:
        hashes[memo] = sha
    return Digest(sha)


def containers_files(cr: Cr) -> list[tuple[str, Mapping[str, File]]]:
    """``(container name, files)`` of the main container and each service."""
    return [("main", cr.files)] + [(name, svc.files) for name, svc in cr.services.items()]


def _stored_sha(target: str, value: File, contents: FileContents) -> str | None:
    """The sha256 of ``value`` if it goes through the file storage, else None (a ConfigMap)."""
    if isinstance(value, Digest):
        return str(value)
    if isinstance(value, pathlib.PurePath):
        found = contents.get(os.fspath(value))
        if found is None:
            raise FileSpecError(
                f"files[{target!r}] = Path({os.fspath(value)!r}) was not read: pass file_contents=read_files(cr)."
            )
        return str(found) if isinstance(found, Digest) else None
    if isinstance(value, bytes | str):
        known = contents.get(content_key(value))
        if isinstance(known, Digest):
            return str(known)
        data = value.encode("utf-8") if isinstance(value, str) else value
        return hashlib.sha256(data).hexdigest() if len(data) > MAX_FILE_BYTES else None
    raise FileSpecError(f"files[{target!r}] has unsupported type {type(value).__name__}.")


def file_mount(
    target: str,
    value: File,
    contents: FileContents,
    objects: dict[str, dict[str, Any]],
    stored: dict[str, None],
    *,
    namespace: str,
) -> dict[str, Any]:
    """The volumeMount of one file at ``target``: from its ConfigMap (added to ``objects``), or from
    the ``levrt-files`` volume (its sha256 added to ``stored``, in order)."""
    sha = _stored_sha(target, value, contents)
    if sha is not None:
        stored.setdefault(sha)
        return {"name": FILES_VOLUME, "mountPath": target, "subPath": sha, "readOnly": True}
    name = file_object(target, value, contents, objects, namespace=namespace)
    return {"name": name, "mountPath": target, "subPath": "content", "readOnly": True}


def file_object(
    target: str,
    value: File,
    contents: FileContents,
    objects: dict[str, dict[str, Any]],
    *,
    namespace: str,
) -> str:
    """The object name for one small file; adds its ConfigMap to ``objects``."""
    if isinstance(value, Digest):
        raise FileSpecError(f"files[{target!r}] is a Digest: its content is in the store, not in a ConfigMap.")
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str):
        data = value.encode("utf-8")
    elif isinstance(value, pathlib.PurePath):
        key = os.fspath(value)
        found = contents.get(key)
        if not isinstance(found, bytes):
            raise FileSpecError(
                f"files[{target!r}] = Path({key!r}) was not read: pass file_contents=read_files(cr)."
            )
        data = found
    else:  # Cr validated the types; keep the builder total anyway
        raise FileSpecError(f"files[{target!r}] has unsupported type {type(value).__name__}.")
    sha = hashlib.sha256(data).hexdigest()
    name = file_object_name(sha)
    if name not in objects:
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
        objects[name] = obj
    return name


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
             "valueFrom": {"secretKeyRef": {"name": settings.store_secret, "key": STORE_SECRET_KEY}}},
            {"name": DATABASE_ENV, "value": settings.database},
        ],
        "volumeMounts": [{"name": FILES_VOLUME, "mountPath": FILES_MOUNT}],
        "terminationMessagePolicy": TERMINATION_POLICY,
    }


def stored_files(cr: Cr, contents: FileContents) -> dict[str, StoredSource]:
    """What ``cr`` needs in the file storage, by sha256: the engine uploads (or checks) these
    before submitting the Pod."""
    found: dict[str, StoredSource] = {}
    for _, files in containers_files(cr):
        for target, value in files.items():
            sha = _stored_sha(target, value, contents)
            if sha is None:
                continue
            source: bytes | str | pathlib.Path | None
            if isinstance(value, Digest):
                source, label = None, f"files[{target!r}] = Digest({sha[:12]}...)"
            elif isinstance(value, pathlib.PurePath):
                source, label = pathlib.Path(value), pathlib.Path(value).name or target
            else:
                source, label = value, target
            if sha in found:
                previous = found[sha]
                source = previous.source if previous.source is not None else source
                found[sha] = dataclasses.replace(previous, source=source, targets=(*previous.targets, target))
            else:
                found[sha] = StoredSource(sha, source, label, (target,))
    return found
