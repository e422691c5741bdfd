"""The store's file storage from the client (``levrt._clients.blobs``), on the in-memory store:
the GridFS layout, uploads that skip stored content, uploads cut short (nothing looks complete,
the next upload heals), files that change or vanish, and damaged content refused."""

from __future__ import annotations

import hashlib
import os
import pathlib

import pytest

from levrt._clients.blobs import FileStore
from levrt._stored import CHUNK_SIZE, CHUNKS, FILES, chunk_id
from levrt.errors import FileSpecError, StoreError
from tests.fakes import FakeMongo, ServerSelectionTimeoutError

SIZE = 2 * CHUNK_SIZE + 12345  # three chunks, the last one short


def bucket(mongo: FakeMongo) -> FileStore:
    db = mongo["levrt"]
    return FileStore(db[FILES], db[CHUNKS])


async def test_bytes_are_stored_in_the_gridfs_layout_and_read_back() -> None:
    mongo = FakeMongo()
    files = bucket(mongo)
    data = os.urandom(SIZE)
    sha = hashlib.sha256(data).hexdigest()
    progress: list[tuple[int, int]] = []
    stored = await files.upload(data, name="words.txt", on_progress=lambda done, total: progress.append((done, total)))
    assert (stored.sha256, stored.size, stored.uploaded) == (sha, SIZE, True)
    assert progress[-1] == (SIZE, SIZE)
    doc = mongo["levrt"][FILES].docs[0]
    assert (doc["_id"], doc["length"], doc["chunkSize"], doc["filename"]) == (sha, SIZE, CHUNK_SIZE, "words.txt")
    assert doc["metadata"] == {"sha256": sha, "size": SIZE, "kind": "file"} and doc["uploadDate"].tzinfo
    chunks = mongo["levrt"][CHUNKS].docs
    assert [(c["_id"], c["files_id"], c["n"], len(c["data"])) for c in chunks] == [
        (chunk_id(sha, 0), sha, 0, CHUNK_SIZE), (chunk_id(sha, 1), sha, 1, CHUNK_SIZE),
        (chunk_id(sha, 2), sha, 2, 12345)]
    assert await files.length(sha) == SIZE and await files.read(sha) == data
    assert (await files.info(sha) or {})["filename"] == "words.txt"


async def test_content_stored_already_is_not_sent_again(tmp_path: pathlib.Path) -> None:
    mongo = FakeMongo()
    files = bucket(mongo)
    local = tmp_path / "words.txt"
    local.write_bytes(os.urandom(SIZE))
    first = await files.upload(local, name="words.txt")
    inserts = mongo["levrt"][CHUNKS].calls.count("insert_many")
    again = await files.upload(local, name="words.txt")
    same_bytes = await files.upload(local.read_bytes(), name="copy")
    assert first.uploaded and not again.uploaded and not same_bytes.uploaded
    assert first.sha256 == again.sha256 == same_bytes.sha256 == hashlib.sha256(local.read_bytes()).hexdigest()
    assert mongo["levrt"][CHUNKS].calls.count("insert_many") == inserts  # nothing sent the second time


async def test_an_upload_cut_short_leaves_nothing_that_looks_complete_and_the_next_one_heals() -> None:
    mongo = FakeMongo()
    files = bucket(mongo)
    data = os.urandom(6 * CHUNK_SIZE + 1)
    sha = hashlib.sha256(data).hexdigest()
    mongo["levrt"][CHUNKS].fail_inserts_after = 5  # the connection drops in the second batch
    with pytest.raises(StoreError):
        await files.upload(data, name="big")
    assert len(mongo["levrt"][CHUNKS].docs) == 5 and mongo["levrt"][FILES].docs == []
    assert await files.length(sha) is None  # the files document comes last: not stored
    with pytest.raises(StoreError, match="not in the store"):
        await files.read(sha)
    mongo["levrt"][CHUNKS].fail_inserts_after = None
    stored = await files.upload(data, name="big")
    assert stored.uploaded and await files.read(sha) == data
    assert "replace_one" in mongo["levrt"][CHUNKS].calls  # the leftover chunks were written over
    assert len(mongo["levrt"][CHUNKS].docs) == 7


async def test_a_file_that_changes_during_the_upload_is_refused(tmp_path: pathlib.Path) -> None:
    files = bucket(FakeMongo())
    local = tmp_path / "words.txt"
    local.write_bytes(b"a" * SIZE)
    stale = hashlib.sha256(b"b" * SIZE).hexdigest()  # what a first pass saw, before the file changed
    with pytest.raises(FileSpecError, match=r"words\.txt changed while it was uploaded"):
        await files.upload(local, name="words.txt", sha256=stale)
    assert await files.length(stale) is None


async def test_a_file_that_vanished_is_a_clear_error(tmp_path: pathlib.Path) -> None:
    files = bucket(FakeMongo())
    missing = tmp_path / "gone.txt"
    with pytest.raises(FileSpecError, match=r"gone\.txt.*could not be read for upload"):
        await files.upload(missing, name="gone.txt")
    with pytest.raises(FileSpecError, match="could not be read for upload"):
        await files.upload(missing, name="gone.txt", sha256="ab" * 32)


async def test_damaged_content_is_refused(tmp_path: pathlib.Path) -> None:
    mongo = FakeMongo()
    files = bucket(mongo)
    data = os.urandom(SIZE)
    sha = (await files.upload(data, name="x")).sha256
    chunks = mongo["levrt"][CHUNKS].docs
    chunks[1] = {**chunks[1], "data": chunks[1]["data"][:-1]}
    with pytest.raises(StoreError, match="damaged: chunk 1 has"):
        await files.read(sha)
    del chunks[1]
    with pytest.raises(StoreError, match="damaged: chunk 1 of 3 is missing"):
        await files.download(sha, tmp_path / "out")
    assert not list(tmp_path.iterdir())  # no partial file left behind


async def test_download_streams_to_a_file_and_chunks_come_back_in_order(tmp_path: pathlib.Path) -> None:
    mongo = FakeMongo()
    files = bucket(mongo)
    data = os.urandom(SIZE)
    sha = (await files.upload(data, name="x")).sha256
    mongo["levrt"][CHUNKS].docs.reverse()  # a store may return them in any order
    assert await files.download(sha, tmp_path / "out.bin") == SIZE
    assert (tmp_path / "out.bin").read_bytes() == data
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


async def test_an_unreachable_store_is_a_store_error() -> None:
    mongo = FakeMongo()
    files = bucket(mongo)
    mongo.unreachable = "connection refused"
    with pytest.raises(StoreError, match="connection refused"):
        await files.length("ab" * 32)
    assert isinstance(ServerSelectionTimeoutError("x"), Exception)


async def test_empty_content() -> None:
    files = bucket(FakeMongo())
    stored = await files.upload(b"", name="empty")
    assert stored.sha256 == hashlib.sha256(b"").hexdigest() and await files.read(stored.sha256) == b""
