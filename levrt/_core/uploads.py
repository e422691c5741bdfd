"""A job's uploads to the store's file storage: each content sent once, every Digest checked.

Why apart from the engine: what a task needs in the file storage (its ``FilePlan.stored``,
``levrt._shapes.files``) must be there before its Pod is created, and a fan-out over one 64 MB
wordlist must hash it once, upload it once (or not at all when an earlier job did) and never twice
at the same time. This module keeps that bookkeeping for one job; the engine calls ``ensure`` in
``start`` before anything is submitted, so an unknown ``Digest`` is a ``FileSpecError`` with
nothing created. Progress goes to logger ``lev`` (``progress: uploading words.txt (64.0 MiB)``,
``progress: words.txt already stored (64.0 MiB)``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import pathlib
import time
from collections.abc import Mapping

from levrt._clients.blobs import FileStore
from levrt._core.localfiles import HashMemo
from levrt._shapes.files import StoredSource
from levrt._stored import human_size
from levrt.errors import FileSpecError

__all__ = ["Uploads"]

log = logging.getLogger("lev")


class Uploads:
    """The uploads of one job (``Engine.uploads``)."""

    def __init__(self, files: FileStore) -> None:
        self.files = files
        self.hashes: HashMemo = {}
        """sha256 of the local files this job hashed (``plan_task_files(cr, hashes=...)``)."""
        self._stored: set[str] = set()
        self._pending: dict[str, asyncio.Future[None]] = {}

    async def ensure(self, needed: Mapping[str, StoredSource]) -> None:
        """Make sure every content in ``needed`` is in the file storage: upload what is missing,
        check each Digest (``FileSpecError`` if the store does not have it)."""
        if needed:
            await asyncio.gather(*(self._ensure_one(source) for source in needed.values()))

    async def _ensure_one(self, source: StoredSource) -> None:
        if source.sha256 in self._stored:
            return
        pending = self._pending.get(source.sha256)
        if pending is None:
            pending = asyncio.ensure_future(self._store(source))
            self._pending[source.sha256] = pending
            pending.add_done_callback(lambda done: self._settle(source.sha256, done))
        await asyncio.shield(pending)  # another task's start may wait on the same upload

    def _settle(self, sha256: str, done: asyncio.Future[None]) -> None:
        self._pending.pop(sha256, None)
        if not done.cancelled() and done.exception() is None:
            self._stored.add(sha256)

    async def _store(self, source: StoredSource) -> None:
        sha = source.sha256
        if source.source is None:
            if await self.files.length(sha) is None:
                targets = ", ".join(repr(t) for t in source.targets)
                raise FileSpecError(
                    f"Digest {sha} (files[{targets}]) is not in the store: store the content first with "
                    "`levrt put FILE` or `await levrt.upload(...)`, which give its Digest."
                )
            return
        content = source.source
        if isinstance(content, str):
            content = content.encode("utf-8")
        size = len(content) if isinstance(content, bytes) else await asyncio.to_thread(_size, content, source)
        if await self.files.length(sha) is not None:
            log.info("progress: %s already stored (%s)", source.label, human_size(size))
            return
        log.info("progress: uploading %s (%s)", source.label, human_size(size))
        started = time.monotonic()
        stored = await self.files.upload(content, name=source.label, sha256=sha)
        log.info("progress: uploaded %s (%s) in %.1f s", source.label, human_size(stored.size),
                 time.monotonic() - started)

    async def upload(self, source: bytes | str | os.PathLike[str], *, name: str | None = None) -> str:
        """Store content (``bytes``, ``str`` as UTF-8 text, or a local path) for ``levrt.upload``;
        its sha256."""
        if isinstance(source, str):
            source = source.encode("utf-8")
        if isinstance(source, bytes | bytearray | memoryview):
            stored = await self.files.upload(bytes(source), name=name or "upload", kind="upload")
        elif isinstance(source, os.PathLike):
            path = pathlib.Path(source)
            size = await asyncio.to_thread(_size, path, None)
            log.info("progress: uploading %s (%s)", path.name, human_size(size))
            stored = await self.files.upload(path, name=name or path.name, kind="upload")
            if not stored.uploaded:
                log.info("progress: %s already stored (%s)", path.name, human_size(stored.size))
        else:
            raise FileSpecError(
                f"levrt.upload({source!r:.60}): give bytes, str (text) or a path (pathlib.Path)."
            )
        self._stored.add(stored.sha256)
        return stored.sha256


def _size(path: pathlib.Path, source: StoredSource | None) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        where = f"files[{source.targets[0]!r}] = " if source is not None else ""
        raise FileSpecError(
            f"{where}Path({os.fspath(path)!r}) could not be read for upload: {exc.strerror or exc}. Check that "
            "the file still exists and is readable."
        ) from None
