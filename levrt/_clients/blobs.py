"""The client side of the store's file storage: upload content, check it is there, read it back.

Why a client of its own: files too large for a ConfigMap, every ``Digest``, results too large
for a record and task artifacts all live in one GridFS bucket (layout in ``levrt._stored``), and
the engine (uploads at submit), ``Document`` (values and artifacts read back), ``levrt put``,
``levrt get --artifact`` and ``levrt.upload`` all need the same few operations. It knows no
``Cr`` and no job: content in, sha256 out.

Everything streams: a ``Path`` is hashed in a first pass (nothing is sent when the store has it
already) and uploaded a few chunks at a time in a second, file reads in a worker thread so the
event loop never waits on the disk; a download writes chunk by chunk. Why not the driver's
``AsyncGridFSBucket`` (DESIGN.md "Store"): its writer buffers up to 48 MB of chunks before it
sends them and does not clean up an upload that fails, and its reader asks the store to sort the
chunks, which FerretDB does in memory. Here the bucket is plain collection operations: the same
layout, readable by any GridFS client, and by the fake store of the fast tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import hashlib
import os
import pathlib
from collections.abc import AsyncIterator, Callable
from typing import IO, Any

from levrt._clients.store import Store, opened
from levrt._stored import (
    CHUNK_SIZE,
    CHUNKS,
    CHUNKS_PER_READ,
    FILES,
    ChunkOrder,
    ChunkWriter,
    files_document,
    is_duplicate,
    left_over,
    sha256_of,
)
from levrt.errors import FileSpecError, StoreError
from levrt.settings import Settings

__all__ = ["FileStore", "Progress", "Stored", "connect", "hash_file"]

Progress = Callable[[int, int], None]
"""Called with (bytes sent, total) as an upload goes."""


@dataclasses.dataclass(frozen=True)
class Stored:
    """Content in the file storage: its sha256, its size, and whether this call sent it."""

    sha256: str
    size: int
    uploaded: bool


def hash_file(path: pathlib.Path) -> tuple[str, int]:
    """sha256 hex and size of a local file, read a chunk at a time (blocking: call it in a thread)."""
    with open(path, "rb") as fh:
        return sha256_of(fh.read)


class FileStore:
    """The bucket ``levrt_files`` of an open ``Store``."""

    def __init__(self, files: Any, chunks: Any) -> None:
        self._files = files
        self._chunks = chunks
        self._unreachable: Callable[[Exception], StoreError] | None = None

    @classmethod
    def of(cls, store: Store) -> FileStore:
        files = cls(store.collection(FILES), store.collection(CHUNKS))
        files._unreachable = store.unreachable
        return files

    def _error(self, exc: Exception) -> StoreError:
        if isinstance(exc, StoreError):
            return exc
        if self._unreachable is not None:
            return self._unreachable(exc)
        return StoreError(f"The store's file storage failed: {exc}")

    # -- what is there ----------------------------------------------------------------------------

    async def length(self, sha256: str) -> int | None:
        """The size of stored content, or None if no complete file ``sha256`` is stored."""
        try:
            found = await self._files.find_one({"_id": sha256}, {"length": 1})
        except Exception as exc:
            raise self._error(exc) from exc
        return None if found is None else int(found["length"])

    async def info(self, sha256: str) -> dict[str, Any] | None:
        """The files document of ``sha256`` (length, uploadDate, filename, metadata), or None."""
        try:
            found = await self._files.find_one({"_id": sha256})
        except Exception as exc:
            raise self._error(exc) from exc
        return None if found is None else dict(found)

    # -- uploading --------------------------------------------------------------------------------

    async def upload(self, source: bytes | pathlib.Path, *, name: str, kind: str = "file",
                     sha256: str | None = None, on_progress: Progress | None = None,
                     verify: bool = False) -> Stored:
        """Store ``source`` (content, or a local file streamed from disk) unless it is stored already.

        ``sha256``, when the caller hashed a file already, saves the first pass; the upload still
        checks it, so a file changed in between is an error, not a wrong file under that digest.
        ``verify`` (content only): a stored copy is read back first, and one that no longer hashes
        to its name is written again (its chunks replaced) instead of trusted.
        """
        if isinstance(source, bytes | bytearray | memoryview):
            data = bytes(source)
            digest = sha256 or hashlib.sha256(data).hexdigest()
            if await self.length(digest) is not None and not (verify and await self._damaged(digest)):
                return Stored(digest, len(data), uploaded=False)
            view = memoryview(data)

            async def block() -> bytes:
                nonlocal view
                piece, view = bytes(view[:CHUNK_SIZE]), view[CHUNK_SIZE:]
                return piece

            await self._write(digest, len(data), block, name=name, kind=kind, on_progress=on_progress)
            return Stored(digest, len(data), uploaded=True)
        path = pathlib.Path(source)
        if sha256 is None:
            digest, size = await asyncio.to_thread(_hash_or_fail, path, name)
        else:
            digest, size = sha256, await asyncio.to_thread(_size_or_fail, path, name)
        return await self._upload_file(path, digest, size, name=name, kind=kind, on_progress=on_progress)

    async def _damaged(self, sha256: str) -> bool:
        try:
            await self.read(sha256)
        except StoreError as exc:
            return "damaged" in str(exc)
        return False

    async def _upload_file(self, path: pathlib.Path, sha256: str, size: int, *, name: str, kind: str,
                           on_progress: Progress | None) -> Stored:
        if await self.length(sha256) is not None:
            return Stored(sha256, size, uploaded=False)
        try:
            fh = await asyncio.to_thread(open, path, "rb")
        except OSError as exc:
            raise _vanished(path, name, exc) from None
        digest = hashlib.sha256()

        def read_block() -> bytes:
            piece = fh.read(CHUNK_SIZE)
            digest.update(piece)
            return piece

        async def file_block() -> bytes:
            return await asyncio.to_thread(read_block)

        try:
            sent = await self._write(sha256, size, file_block, name=name, kind=kind, on_progress=on_progress,
                                     check=digest)
        finally:
            await asyncio.to_thread(fh.close)
        return Stored(sha256, sent, uploaded=True)

    async def _write(self, sha256: str, size: int, block: Callable[[], Any], *, name: str, kind: str,
                     on_progress: Progress | None, check: Any = None) -> int:
        """Chunks first, a few per insert, then the files document (``levrt._stored.ChunkWriter``)."""
        writer = ChunkWriter(sha256)
        while not writer.done:
            batch = writer.take(await block())
            if batch:
                await self._insert_chunks(batch)
                if on_progress is not None:
                    on_progress(writer.offset, size)
        offset = writer.offset
        if check is not None and (check.hexdigest() != sha256 or offset != size):
            raise FileSpecError(
                f"{name} changed while it was uploaded (it no longer has sha256 {sha256[:12]}... and "
                f"{size} bytes); upload it again once it stays the same."
            )
        doc = files_document(sha256, _int64(offset), filename=name, kind=kind, upload_date=dt.datetime.now(dt.UTC))
        try:
            await self._files.insert_one(doc)
        except Exception as exc:
            if not is_duplicate(exc):  # else another upload finished first: same content
                raise self._error(exc) from exc
        return offset

    async def _insert_chunks(self, batch: list[dict[str, Any]]) -> None:
        try:
            await self._chunks.insert_many(batch, ordered=False)
        except Exception as exc:
            refused = left_over(exc, batch)
            if refused is None:
                raise self._error(exc) from exc
            try:
                for doc in refused:
                    await self._chunks.replace_one({"_id": doc["_id"]}, doc, upsert=True)
            except Exception as again:
                raise self._error(again) from again

    # -- reading ----------------------------------------------------------------------------------

    async def chunks(self, sha256: str) -> AsyncIterator[bytes]:
        """The content of ``sha256`` chunk by chunk, from one cursor over its chunks; ``StoreError``
        if it is not stored or damaged."""
        try:
            found = await self._files.find_one({"_id": sha256}, {"length": 1, "chunkSize": 1})
        except Exception as exc:
            raise self._error(exc) from exc
        if found is None:
            raise StoreError(f"Content {sha256} is not in the store's file storage ({FILES}).")
        order = ChunkOrder(sha256, int(found["length"]), int(found["chunkSize"]))
        cursor = self._chunks.find({"files_id": sha256}, {"n": 1, "data": 1}, batch_size=CHUNKS_PER_READ)
        try:
            async for doc in cursor:
                for block in order.add(doc):
                    yield block
        except StoreError:
            raise
        except Exception as exc:
            raise self._error(exc) from exc
        order.finish()

    async def read(self, sha256: str) -> bytes:
        """The whole content of ``sha256``, checked against its digest."""
        parts = [block async for block in self.chunks(sha256)]
        data = b"".join(parts)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise StoreError(f"Stored content {sha256} is damaged: it does not hash to its name.")
        return data

    async def download(self, sha256: str, path: str | os.PathLike[str]) -> int:
        """Write the content of ``sha256`` to ``path`` chunk by chunk (``-`` or a directory is the
        caller's business); checked against its digest before the file is put in place."""
        target = pathlib.Path(path)
        part = target.with_name(f".{target.name}.part")
        digest, size = hashlib.sha256(), 0
        try:
            out: IO[bytes] = await asyncio.to_thread(open, part, "wb")
        except OSError as exc:
            raise StoreError(f"Cannot write {os.fspath(target)!r}: {exc.strerror or exc}.") from None
        try:
            async for block in self.chunks(sha256):
                digest.update(block)
                size += len(block)
                await asyncio.to_thread(out.write, block)
        except BaseException:
            await asyncio.to_thread(out.close)
            with contextlib.suppress(OSError):
                part.unlink()
            raise
        await asyncio.to_thread(out.close)
        if digest.hexdigest() != sha256:
            part.unlink()
            raise StoreError(f"Stored content {sha256} is damaged: it does not hash to its name.")
        part.replace(target)
        return size

    async def load_value(self, sha256: str) -> Any:
        """A record field stored apart: the BSON of ``{"v": value}`` decoded to ``value``."""
        blob = await self.read(sha256)
        import bson  # part of pymongo, loaded with the store client already

        return bson.decode(blob)["v"]


def _int64(value: int) -> Any:
    """The GridFS spec's Int64 length (the driver's type; a plain int where pymongo is absent)."""
    try:
        from bson.int64 import Int64  # loaded with the store client already
    except ImportError:  # pragma: no cover - pymongo is a dependency
        return value
    return Int64(value)


def _vanished(path: pathlib.Path, name: str, exc: OSError) -> FileSpecError:
    return FileSpecError(
        f"{name} = Path({os.fspath(path)!r}) could not be read for upload: {exc.strerror or exc}. Check "
        "that the file still exists and is readable."
    )


def _hash_or_fail(path: pathlib.Path, name: str) -> tuple[str, int]:
    try:
        return hash_file(path)
    except OSError as exc:
        raise _vanished(path, name, exc) from None


def _size_or_fail(path: pathlib.Path, name: str) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise _vanished(path, name, exc) from None


@contextlib.asynccontextmanager
async def connect(settings: Settings, *, kubeconfig: str | None = None) -> AsyncIterator[FileStore]:
    """The file storage of the store this machine reaches, outside a job (``levrt put``,
    ``levrt.upload`` with no job running): ``Settings.store_uri``, else the platform's Secret."""
    async with opened(settings, kubeconfig=kubeconfig) as store:
        yield FileStore.of(store)
