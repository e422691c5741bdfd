"""What is stored apart from records: the file storage bucket, result placeholders, artifacts.

Why one module below everything that touches them: the client (``levrt._clients.blobs``), the
in-task runtime (``levrt.runtime.blobs``, the ``levrt-files`` fetcher), ``Document`` and the
CLI all read or write the same layout, and they sit in layers that must not import each other.
Standard library only (it runs in task containers).

The layout (DESIGN.md "Store"): a GridFS bucket ``levrt_files`` in the levrt database. A file's
``_id`` is the sha256 hex of its content; its chunks carry the standard ``files_id``/``n``/``data``
fields and the ``_id`` ``"<sha256>-<n>"``, so a chunk written twice (a retried or concurrent
upload of the same content) is the same document. The files document is written last: without
it the content does not exist, whatever chunks an interrupted upload left. A file is read with
one cursor over its chunks (``files_id``), unsorted, put in order by ``ChunkOrder``: a store
without a usable index (FerretDB on SQLite scans for every query, ``_id`` included) pays one
scan per file, not one per chunk, and never sorts a file in its memory. A file is written by
``ChunkWriter`` (what goes in which insert) and ``left_over`` (which refused chunks to write over),
the same for the client's async loop and the runtime's sync one: only their I/O differs.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from typing import Any

from levrt.errors import StoreError

__all__ = [
    "ARTIFACTS",
    "BUCKET",
    "CHUNKS",
    "CHUNKS_PER_READ",
    "CHUNKS_PER_WRITE",
    "CHUNK_SIZE",
    "DUPLICATE_KEY",
    "FILES",
    "PLACEHOLDER",
    "RECORD_BUDGET",
    "SPILL_BYTES",
    "ChunkOrder",
    "ChunkWriter",
    "check_field_name",
    "chunk_count",
    "chunk_id",
    "files_document",
    "human_size",
    "is_duplicate",
    "is_sha256",
    "left_over",
    "placeholder",
    "placeholder_of",
    "put_back",
    "sha256_of",
    "stored_apart",
]

BUCKET = "levrt_files"
FILES = f"{BUCKET}.files"
CHUNKS = f"{BUCKET}.chunks"
CHUNK_SIZE = 1024 * 1024
"""Bytes per chunk (GridFS' default is 255 KiB): fewer, larger documents mean fewer round trips
to a store that is read chunk by chunk; well under the 16 MiB document limit."""
CHUNKS_PER_WRITE = 4
"""Chunks sent in one insert: bounds what an upload holds in memory (a task streaming a 200 MB
artifact stays within a few MiB of its own size)."""
CHUNKS_PER_READ = 8
"""The cursor batch size when reading a file: FerretDB answers a batch in one message whatever
its size (the driver refuses one over 48 MB), and it bounds a reader's memory."""

PLACEHOLDER = "_levrt_blob"
"""The one key of the sub-document that stands for a field stored apart:
``{"_levrt_blob": {"sha256": "<hex>", "size": <bytes stored>}}``; the content is the BSON of
``{"v": value}``, so the value comes back with its exact types."""
ARTIFACTS = "_artifacts"
"""The record's field listing the task's artifacts (``lev.put``): a list of
``{"name": str, "sha256": str, "size": int}`` in the order put (names may hold dots, which a
field name cannot)."""
SPILL_BYTES = 1024 * 1024
"""A field whose BSON is larger than this is stored apart."""
RECORD_BUDGET = 15 * 1024 * 1024
"""What a record may hold inline: MongoDB refuses a document over 16 MiB; the rest is margin for
``_id`` and the encoding of the update itself."""

DUPLICATE_KEY = 11000
"""The store's error code for a write whose ``_id`` (or other unique key) exists already (E11000)."""

_SHA256 = re.compile(r"[0-9a-f]{64}")


def is_sha256(text: object) -> bool:
    return isinstance(text, str) and _SHA256.fullmatch(text) is not None


def chunk_id(sha256: str, n: int) -> str:
    """The ``_id`` of chunk ``n`` of a file: deterministic, so it is found by index."""
    return f"{sha256}-{n}"


def chunk_count(length: int, chunk_size: int) -> int:
    return -(-length // chunk_size) if length else 0


def files_document(sha256: str, length: int, *, filename: str, kind: str, upload_date: Any,
                   chunk_size: int = CHUNK_SIZE) -> dict[str, Any]:
    """The GridFS files document of a complete upload (``length`` wrapped by the caller as the
    driver's Int64 where it has one)."""
    return {
        "_id": sha256,
        "length": length,
        "chunkSize": chunk_size,
        "uploadDate": upload_date,
        "filename": filename,
        "metadata": {"sha256": sha256, "size": int(length), "kind": kind},
    }


class ChunkWriter:
    """The chunk documents of one upload, in the batches they are inserted: ``take`` each block
    read (``CHUNK_SIZE`` bytes, fewer only at the end) until ``done``; a batch is due every
    ``CHUNKS_PER_WRITE`` chunks and at the end. The files document comes last, once every batch
    is in (``files_document``): an upload cut short leaves no file that looks complete."""

    def __init__(self, sha256: str) -> None:
        self.sha256 = sha256
        self.offset = 0
        """Bytes taken so far."""
        self.done = False
        """A short (or empty) block came: the content ended."""
        self._batch: list[dict[str, Any]] = []
        self._count = 0

    def take(self, data: bytes) -> list[dict[str, Any]]:
        """Add the next block; the chunks to insert now (none while a batch is filling)."""
        if data:
            self._batch.append({"_id": chunk_id(self.sha256, self._count), "files_id": self.sha256,
                                "n": self._count, "data": data})
            self.offset += len(data)
            self._count += 1
        self.done = len(data) < CHUNK_SIZE
        if len(self._batch) >= CHUNKS_PER_WRITE or (self._batch and self.done):
            batch, self._batch = self._batch, []
            return batch
        return []


def is_duplicate(exc: BaseException) -> bool:
    """Whether a single write failed only because its document exists already (for a files document:
    another upload of the same content finished first)."""
    return getattr(exc, "code", None) == DUPLICATE_KEY


def left_over(exc: BaseException, batch: list[Any]) -> list[Any] | None:
    """The writes of an unordered bulk write (``batch``) that ``exc`` refused only because their
    ``_id`` exists already, to be written again another way; None when anything else failed (raise it).
    For chunks: left by an earlier upload of this content that stopped half-way, overwritten by ours."""
    errors = (getattr(exc, "details", None) or {}).get("writeErrors") or []
    if not errors or any(e.get("code") != DUPLICATE_KEY for e in errors):
        return None
    return [batch[e["index"]] for e in errors]


class ChunkOrder:
    """Puts the chunks of one file in order as a cursor returns them (in the order written, as a
    rule), checking each one's size and that none is missing."""

    def __init__(self, sha256: str, length: int, chunk_size: int) -> None:
        self.sha256, self.length, self.chunk_size = sha256, length, chunk_size
        self.count = chunk_count(length, chunk_size)
        self.next = 0
        self._early: dict[int, bytes] = {}

    def add(self, doc: Mapping[str, Any]) -> list[bytes]:
        """The chunks that are next in order now that ``doc`` (``{"n", "data"}``) came."""
        n = doc.get("n")
        if not isinstance(n, int) or n < self.next or n >= self.count or n in self._early:
            return []  # a duplicate, or an empty trailing chunk another writer left
        data = bytes(doc["data"])
        if len(data) != min(self.chunk_size, self.length - n * self.chunk_size):
            raise _damaged(self.sha256, f"chunk {n} has {len(data)} bytes")
        self._early[n] = data
        ready = []
        while self.next in self._early:
            ready.append(self._early.pop(self.next))
            self.next += 1
        return ready

    def finish(self) -> None:
        if self.next != self.count:
            raise _damaged(self.sha256, f"chunk {self.next} of {self.count} is missing")


def _damaged(sha256: str, why: str) -> StoreError:
    return StoreError(f"Stored content {sha256} is damaged: {why}.")


def placeholder(sha256: str, size: int) -> dict[str, Any]:
    return {PLACEHOLDER: {"sha256": sha256, "size": size}}


def placeholder_of(value: object) -> tuple[str, int] | None:
    """``(sha256, size)`` if ``value`` stands for a field stored apart, else None."""
    if not isinstance(value, Mapping) or len(value) != 1 or PLACEHOLDER not in value:
        return None
    inner = value[PLACEHOLDER]
    if not isinstance(inner, Mapping) or not is_sha256(inner.get("sha256")):
        return None
    size = inner.get("size")
    return str(inner["sha256"]), int(size) if isinstance(size, int) else 0


def stored_apart(record: Mapping[str, Any]) -> list[tuple[tuple[str, ...], str]]:
    """Where ``record`` holds placeholders: ``(path of keys, sha256)`` for each, through nested
    dicts (a dotted ``lev.set`` key puts one inside a sub-document)."""
    found: list[tuple[tuple[str, ...], str]] = []
    for key, value in record.items():
        ref = placeholder_of(value)
        if ref is not None:
            found.append(((key,), ref[0]))
        elif isinstance(value, Mapping):
            found += [((key, *path), sha) for path, sha in stored_apart(value)]
    return found


def put_back(record: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Replace the placeholder at ``path`` (from ``stored_apart``) by ``value``."""
    *parents, last = path
    for key in parents:
        record[key] = dict(record[key])
        record = record[key]
    record[last] = value


def check_field_name(key: object, value: object, *, what: str) -> str | None:
    """Why ``key: value`` cannot be set in a record (None: it can). ``what`` names the call."""
    if not isinstance(key, str) or not key or key.startswith("$") or "\0" in key:
        return (f"{what}: the field name {key!r} cannot be stored; field names are non-empty str not "
                "starting with '$'.")
    if key == ARTIFACTS or key.startswith(ARTIFACTS + "."):
        return (f"{what}: the field {key!r} is levrt's list of this task's artifacts (lev.put); "
                "choose another field name.")
    if placeholder_of(value) is not None or (isinstance(value, Mapping) and PLACEHOLDER in value):
        return (f"{what}: the value of {key!r} uses the key {PLACEHOLDER!r}, which levrt reserves for "
                "values stored apart; rename that key.")
    return None


def human_size(size: int) -> str:
    """``64.0 MiB``: a size as people read it (binary units, one decimal)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - the loop returns at GiB


def sha256_of(read: Callable[[int], bytes]) -> tuple[str, int]:
    """sha256 hex and length of everything ``read`` returns, a chunk at a time (a file of any size
    in bounded memory): the one content address of the client, the builder and the runtime."""
    digest, size = hashlib.sha256(), 0
    while block := read(CHUNK_SIZE):
        digest.update(block)
        size += len(block)
    return digest.hexdigest(), size
