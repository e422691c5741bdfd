"""Files of a task as Kubernetes objects: one immutable, content-addressed ConfigMap per content.

Why apart from the Pod builder: files are the part of a run with I/O at its edge (reading local
``Path`` files, ``read_files``) and with its own rules (content addressing, text vs binary data,
size limits); the builder only mounts what this module names. Pure apart from ``read_files``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import pathlib
from collections.abc import Mapping
from typing import Any

from levrt._shapes.names import FILE_LABEL, MANAGED_BY, SHA256_ANNOTATION, file_object_name
from levrt.cr import MAX_FILE_BYTES, Cr, Digest, File
from levrt.errors import FileSpecError

__all__ = ["containers_files", "file_object", "read_files"]


def read_files(cr: Cr) -> dict[str, bytes]:
    """Read the local ``Path`` files of ``cr`` and its services: ``{os.fspath(path): content}``.

    Called at submit time (in a thread); ``build_task(file_contents=...)`` takes the result.
    """
    contents: dict[str, bytes] = {}
    for _, files in containers_files(cr):
        for target, value in files.items():
            if not isinstance(value, pathlib.PurePath):
                continue
            key = os.fspath(value)
            if key in contents:
                continue
            try:
                data = pathlib.Path(value).read_bytes()
            except OSError as exc:
                raise FileSpecError(
                    f"files[{target!r}] = Path({key!r}) could not be read: {exc.strerror or exc}. "
                    "Check that the file still exists and is readable."
                ) from None
            if len(data) > MAX_FILE_BYTES:
                raise FileSpecError(
                    f"files[{target!r}] = Path({key!r}) is {len(data)} bytes, over the {MAX_FILE_BYTES}-byte "
                    "limit of one file (a Kubernetes object holds at most 1 MiB)."
                )
            contents[key] = data
    return contents


def containers_files(cr: Cr) -> list[tuple[str, Mapping[str, File]]]:
    """``(container name, files)`` of the main container and each service."""
    return [("main", cr.files)] + [(name, svc.files) for name, svc in cr.services.items()]


def file_object(
    target: str,
    value: File,
    contents: Mapping[str, bytes],
    objects: dict[str, dict[str, Any]],
    *,
    namespace: str,
) -> str:
    """The object name for one file; adds the ConfigMap to ``objects`` unless it is a Digest."""
    if isinstance(value, Digest):
        return file_object_name(str(value))
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str):
        data = value.encode("utf-8")
    elif isinstance(value, pathlib.PurePath):
        key = os.fspath(value)
        if key not in contents:
            raise FileSpecError(
                f"files[{target!r}] = Path({key!r}) was not read: pass file_contents=read_files(cr)."
            )
        data = contents[key]
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
