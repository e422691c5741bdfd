"""The store's file storage from inside a Pod: large results, artifacts, and the ``levrt-files`` fetch.

Why a module of the runtime: a task writes what does not fit a record (``lev.set`` of a large
value, ``lev.put`` of a tool's report) and the ``levrt-files`` init container reads stored files
into the Pod, both with the synchronous pymongo client the runtime already has, and both must
stream: a task's memory is its own limit, not the file's size. The layout is ``levrt._stored``'s
(shared with the client's ``levrt._clients.blobs``); this module only reads and writes it.

Standard library only at import; bson (pymongo's) is imported when a value is encoded, by which
time the store client has loaded it anyway.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Any

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
from levrt.errors import StoreError

__all__ = ["Bucket", "Source", "decode_value", "encode_value", "read_exactly"]

Source = bytes | str | os.PathLike[str] | IO[bytes]
"""What ``lev.put``/``levrt.upload`` store: content, a local path, or a binary file object."""


def encode_value(value: Any) -> bytes:
    """The stored form of a record field: the BSON of ``{"v": value}`` (types kept exactly)."""
    import bson  # loaded with the store client already; a task that stores nothing never needs it

    return bson.encode({"v": value})


def decode_value(blob: bytes) -> Any:
    import bson  # as in encode_value

    return bson.decode(blob)["v"]


class Bucket:
    """The bucket ``levrt_files`` of a synchronous pymongo database (``client[db]``)."""

    def __init__(self, database: Any) -> None:
        self._files = database[FILES]
        self._chunks = database[CHUNKS]

    # -- reading --------------------------------------------------------------------------------

    def length(self, sha256: str) -> int | None:
        """The size of stored content, or None if the store has no complete file ``sha256``."""
        found = self._files.find_one({"_id": sha256}, {"length": 1})
        return None if found is None else int(found["length"])

    def chunks(self, sha256: str) -> Iterator[bytes]:
        """The content of ``sha256``, chunk by chunk from one cursor; ``StoreError`` if it is
        missing or damaged."""
        found = self._files.find_one({"_id": sha256}, {"length": 1, "chunkSize": 1})
        if found is None:
            raise StoreError(f"Content {sha256} is not in the store's file storage ({FILES}).")
        order = ChunkOrder(sha256, int(found["length"]), int(found["chunkSize"]))
        for doc in self._chunks.find({"files_id": sha256}, {"n": 1, "data": 1}, batch_size=CHUNKS_PER_READ):
            yield from order.add(doc)
        order.finish()

    def read(self, sha256: str) -> bytes:
        return b"".join(self.chunks(sha256))

    def copy_to(self, sha256: str, out: IO[bytes]) -> int:
        """Write the content of ``sha256`` to ``out``, checking it hashes to ``sha256``."""
        digest, size = hashlib.sha256(), 0
        for block in self.chunks(sha256):
            digest.update(block)
            out.write(block)
            size += len(block)
        if digest.hexdigest() != sha256:
            raise StoreError(f"Stored content {sha256} is damaged: it hashes to {digest.hexdigest()}.")
        return size

    # -- writing --------------------------------------------------------------------------------

    def put_bytes(self, data: bytes, *, filename: str, kind: str) -> tuple[str, int]:
        """Store ``data`` (unless stored already); ``(sha256, size)``."""
        sha256 = hashlib.sha256(data).hexdigest()
        if self.length(sha256) is None:
            view = memoryview(data)
            self._write(sha256, lambda at: bytes(view[at:at + CHUNK_SIZE]), filename=filename, kind=kind)
        return sha256, len(data)

    def put_file(self, source: str | os.PathLike[str] | IO[bytes], *, filename: str, kind: str) -> tuple[str, int]:
        """Stream a local file or a binary file object into the store, never holding more than a
        few chunks: a first pass hashes it (nothing is sent if the store has it), a second uploads.
        A stream that cannot seek is spooled to a temporary file first."""
        if isinstance(source, str | os.PathLike):
            try:
                with open(source, "rb") as fh:
                    return self._put_seekable(fh, filename=filename, kind=kind)
            except OSError as exc:
                raise StoreError(
                    f"{filename!r}: {os.fspath(source)!r} could not be read: {exc.strerror or exc}."
                ) from None
        if not callable(getattr(source, "read", None)):
            raise StoreError(
                f"{filename!r}: store a path or a binary file object (open(path, 'rb')), not "
                f"{type(source).__name__}."
            )
        if _seekable(source):
            return self._put_seekable(source, filename=filename, kind=kind)
        with tempfile.TemporaryFile() as spool:
            reader = _binary(source, filename)
            while block := reader.read(CHUNK_SIZE):
                spool.write(block)
            spool.seek(0)
            return self._put_seekable(spool, filename=filename, kind=kind)

    def _put_seekable(self, fh: IO[bytes], *, filename: str, kind: str) -> tuple[str, int]:
        start = fh.tell()
        read = _binary(fh, filename).read
        sha256, size = sha256_of(read)
        if self.length(sha256) is not None:
            return sha256, size
        fh.seek(start)
        digest = hashlib.sha256()

        def block(_: int) -> bytes:
            data = read_exactly(read, CHUNK_SIZE)
            digest.update(data)
            return data

        written = self._write(sha256, block, filename=filename, kind=kind, check=digest)
        if written != size:
            raise StoreError(
                f"{filename!r} changed while it was stored ({size} bytes, then {written}); store it again."
            )
        return sha256, size

    def _write(self, sha256: str, block: Callable[[int], bytes], *, filename: str, kind: str,
               check: Any = None) -> int:
        """Upload chunks from ``block(offset)`` (b"" at the end), then the files document
        (``levrt._stored.ChunkWriter``): an upload that stops half-way leaves chunks no files document
        points to, which the next upload of the same content overwrites."""
        from bson.int64 import Int64  # pymongo's, loaded with the client

        writer = ChunkWriter(sha256)
        while not writer.done:
            batch = writer.take(block(writer.offset))
            if batch:
                self._insert_chunks(batch)
        offset = writer.offset
        if check is not None and check.hexdigest() != sha256:
            raise StoreError(
                f"{filename!r} changed while it was stored (its sha256 is no longer {sha256}); store it again."
            )
        doc = files_document(sha256, Int64(offset), filename=filename, kind=kind,
                             upload_date=dt.datetime.now(dt.UTC))
        try:
            self._files.insert_one(doc)
        except Exception as exc:
            if not is_duplicate(exc):  # else: stored meanwhile by another writer
                raise
        return offset

    def _insert_chunks(self, batch: list[dict[str, Any]]) -> None:
        try:
            self._chunks.insert_many(batch, ordered=False)
        except Exception as exc:
            refused = left_over(exc, batch)
            if refused is None:
                raise
            for doc in refused:
                self._chunks.replace_one({"_id": doc["_id"]}, doc, upsert=True)


def read_exactly(read: Callable[[int], bytes], size: int) -> bytes:
    """``size`` bytes from ``read`` (fewer only at the end): every chunk but the last is full."""
    data = read(size)
    if len(data) == size or not data:
        return data
    parts = [data]
    missing = size - len(data)
    while missing and (more := read(missing)):
        parts.append(more)
        missing -= len(more)
    return b"".join(parts)


def _seekable(fh: Any) -> bool:
    try:
        return bool(fh.seekable()) and isinstance(fh.tell(), int)
    except (AttributeError, OSError, ValueError):
        return False


class _BinaryCheck:
    """A reader that refuses text: a text-mode file object would store decoded, re-encoded text."""

    def __init__(self, fh: Any, filename: str) -> None:
        self._fh, self._filename = fh, filename

    def read(self, size: int) -> bytes:
        data = self._fh.read(size)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise StoreError(
                f"{self._filename!r}: the file object returns {type(data).__name__}, not bytes; open it in "
                "binary mode (open(path, 'rb'))."
            )
        return bytes(data)


def _binary(fh: Any, filename: str) -> _BinaryCheck:
    return _BinaryCheck(fh, filename)
