"""A task's local files read at submit: the one place a Cr's ``Path`` files meet the disk before
their upload.

Why here, in the I/O layer: the builder (``levrt._shapes``) is pure, so what a local file holds
is read (small) or hashed (large, a chunk at a time) here, in a thread of the engine's, and handed
to ``plan_files``; the resulting ``FilePlan`` is what the builder mounts and what the engine
uploads. A file that vanished or cannot be read is a ``FileSpecError`` now, before anything is
created.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import MutableMapping

from levrt._shapes.files import FilePlan, containers_files, plan_files
from levrt._stored import sha256_of
from levrt.cr import MAX_FILE_BYTES, Cr, Digest
from levrt.errors import FileSpecError

__all__ = ["HashMemo", "plan_task_files", "read_local_files"]

HashMemo = MutableMapping[tuple[str, int, int, int, int], str]
"""sha256 of local files already hashed, by (path, device, inode, size, mtime): a fan-out over one
wordlist hashes it once."""


def plan_task_files(cr: Cr, *, hashes: HashMemo | None = None) -> FilePlan:
    """The ``FilePlan`` of ``cr``, its local files read or hashed (called in a thread at submit)."""
    return plan_files(cr, read_local_files(cr, hashes=hashes))


def read_local_files(cr: Cr, *, hashes: HashMemo | None = None) -> dict[str, bytes | Digest]:
    """What the local ``Path`` files of ``cr`` and its services hold, by ``os.fspath(path)``: the
    content of each small one, the ``Digest`` of each large one (``levrt._shapes.files.LocalFiles``).
    A large file is only hashed here; the engine uploads it."""
    contents: dict[str, bytes | Digest] = {}
    for _, files in containers_files(cr):
        for target, value in files.items():
            if not isinstance(value, pathlib.PurePath):
                continue
            key = os.fspath(value)
            if key not in contents:
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
