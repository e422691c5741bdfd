"""Results larger than a record and artifacts: written by the runtime's ``StoreBinding`` (through
pymongo's synchronous face of the in-memory store), read back by the client's ``Document``.

A value over ``SPILL_BYTES``, or the largest new values while the record would pass
``RECORD_BUDGET``, is stored apart behind a placeholder; ``lev.doc.get()`` in the entry and
``doc.get()``/``doc.all()`` on the client put it back whole, with its types. ``lev.put`` streams a
file (path, file object, pipe) into the file storage and lists it in ``_artifacts``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import pathlib
from collections.abc import Iterator
from typing import Any

import bson
import pytest

import levrt
from levrt import lev
from levrt._clients.blobs import FileStore
from levrt._stored import ARTIFACTS, CHUNK_SIZE, CHUNKS, FILES, PLACEHOLDER, RECORD_BUDGET, SPILL_BYTES
from levrt.context import bind_task
from levrt.document import Document
from levrt.errors import OutsideTaskError, StoreError
from levrt.runtime import RuntimeConfig, StoreBinding
from tests.fakes import FakeMongo

COLLECTION = "ts/scan@1.0"
CONFIG = RuntimeConfig(payload="/p", store_uri="mongodb://store:27017/", database="levrt",
                       collection=COLLECTION, job=3, task=0)
RECORD_ID = {"job": 3, "task": 0}
BIG = 3 * 1024 * 1024


@pytest.fixture
def mongo() -> FakeMongo:
    return FakeMongo()


@pytest.fixture
def binding(mongo: FakeMongo) -> Iterator[StoreBinding]:
    bound = StoreBinding(CONFIG, connect=mongo.sync_client)
    previous = bind_task(bound)
    try:
        yield bound
    finally:
        bind_task(previous)


def record(mongo: FakeMongo) -> dict[str, Any]:
    return next(d for d in mongo["levrt"][COLLECTION].docs if d["_id"] == RECORD_ID)


def document(mongo: FakeMongo) -> Document:
    db = mongo["levrt"]
    return Document(db[COLLECTION], {"_id": RECORD_ID}, files=FileStore(db[FILES], db[CHUNKS]))


async def test_a_large_value_is_stored_apart_and_comes_back_whole(mongo: FakeMongo, binding: StoreBinding) -> None:
    report = os.urandom(BIG)
    text = "line\n" * (BIG // 5)
    lev.set(target="10.0.0.1", report=report)
    levrt.ctx.update({"xml": text, "when": dt.datetime(2026, 1, 1)})
    stored = record(mongo)
    assert stored["target"] == "10.0.0.1" and stored["when"] == dt.datetime(2026, 1, 1)
    blob = bson.encode({"v": report})
    assert stored["report"] == {PLACEHOLDER: {"sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob)}}
    assert set(stored["xml"]) == {PLACEHOLDER}
    inline = {"target": "10.0.0.1", "report": report, "xml": text, "when": dt.datetime(2026, 1, 1)}
    assert lev.doc.get() == inline  # inside the entry, as if stored inline
    doc = document(mongo)
    assert await doc.get() == inline
    assert await doc.get(projection=["report"]) == {"report": report}
    assert await doc.get(projection={"xml": 1, "_id": 0}) == {"xml": text}
    assert [r async for r in doc.all()] == [inline]


async def test_many_values_past_the_record_budget_spill_the_largest(mongo: FakeMongo, binding: StoreBinding) -> None:
    piece = SPILL_BYTES - 1024  # each small enough to stay inline on its own
    count = RECORD_BUDGET // piece + 3
    for i in range(count):
        lev.set({f"part{i}": b"%d" % i * piece})
    stored = record(mongo)
    apart = [k for k, v in stored.items() if isinstance(v, dict) and PLACEHOLDER in v]
    assert apart and len(bson.encode(stored)) <= RECORD_BUDGET + 1024
    assert await document(mongo).get() == {f"part{i}": b"%d" % i * piece for i in range(count)}
    lev.set(part0=b"small")  # a field set again replaces what was there, placeholder or not
    assert record(mongo)["part0"] == b"small"


async def test_a_record_a_retried_pod_began_is_measured_when_the_store_refuses_it(mongo: FakeMongo,
                                                                                 binding: StoreBinding) -> None:
    piece = SPILL_BYTES - 1024
    earlier = {f"old{i}": b"o" * piece for i in range(15)}  # ~15 MiB the first Pod wrote
    mongo["levrt"][COLLECTION].docs.append({"_id": dict(RECORD_ID), **earlier})
    lev.set(new=b"n" * piece, other=b"t" * piece)  # inline, the record would pass 16 MiB: refused
    stored = record(mongo)
    assert set(stored["new"]) == set(stored["other"]) == {PLACEHOLDER}
    got = await document(mongo).get()
    assert (got["new"], got["other"], got["old14"]) == (b"n" * piece, b"t" * piece, b"o" * piece)


def test_reserved_names_and_values_are_refused(binding: StoreBinding) -> None:
    with pytest.raises(StoreError, match="_artifacts"):
        lev.set(_artifacts=[])
    with pytest.raises(StoreError, match=PLACEHOLDER):
        lev.set(x={PLACEHOLDER: 1})
    with pytest.raises(StoreError, match=r"'hosts' \(set\) cannot be stored"):
        lev.set(ok=1, hosts={"a"})


async def test_artifacts_stream_from_paths_file_objects_and_pipes(mongo: FakeMongo, binding: StoreBinding,
                                                                 tmp_path: pathlib.Path) -> None:
    report = tmp_path / "out.xml"
    report.write_bytes(os.urandom(2 * CHUNK_SIZE + 7))
    assert lev.put("report.xml", str(report)) == hashlib.sha256(report.read_bytes()).hexdigest()
    levrt.ctx.put("scan.v2.log", io.BytesIO(b"log " * 1000))
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "wb") as pipe_in:
        pipe_in.write(b"from a pipe\n" * 100)
    with os.fdopen(read_end, "rb") as pipe:
        lev.put("stream.txt", pipe)  # not seekable: spooled to a temporary file, then stored
    lev.put("report.xml", report)  # again: replaces the entry of that name
    lev.set(done=True)
    assert [a["name"] for a in record(mongo)[ARTIFACTS]] == ["scan.v2.log", "stream.txt", "report.xml"]
    doc = document(mongo)
    assert await doc.get() == {"done": True}  # the artifact list is not one of the user's fields
    assert list(await doc.artifacts()) == ["scan.v2.log", "stream.txt", "report.xml"]
    assert await doc.artifact("scan.v2.log") == b"log " * 1000
    assert await doc.artifact("stream.txt") == b"from a pipe\n" * 100
    assert await doc.download("report.xml", tmp_path / "back.xml") == report.stat().st_size
    assert (tmp_path / "back.xml").read_bytes() == report.read_bytes()
    with pytest.raises(StoreError, match=r"no artifact 'nope' \(artifacts: 'scan.v2.log'"):
        await doc.artifact("nope")


def test_put_refuses_text_streams_bad_names_and_missing_files(binding: StoreBinding, tmp_path: pathlib.Path) -> None:
    with pytest.raises(StoreError, match="binary mode"):
        lev.put("x.txt", io.StringIO("text"))  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="artifact name"):
        lev.put("", b"x")
    with pytest.raises(StoreError, match="could not be read"):
        lev.put("gone", tmp_path / "gone")


async def test_upload_inside_an_entry_uses_the_tasks_store(mongo: FakeMongo, binding: StoreBinding,
                                                           tmp_path: pathlib.Path) -> None:
    local = tmp_path / "w.txt"
    local.write_bytes(b"w" * 100)
    assert await levrt.upload("text") == hashlib.sha256(b"text").hexdigest()
    assert await levrt.upload(local) == hashlib.sha256(b"w" * 100).hexdigest()
    assert sorted(d["_id"] for d in mongo["levrt"][FILES].docs) == sorted(
        [hashlib.sha256(b"text").hexdigest(), hashlib.sha256(b"w" * 100).hexdigest()])


def test_put_outside_a_task_says_where_it_works() -> None:
    with pytest.raises(OutsideTaskError, match=r"lev\.put\(\)"):
        lev.put("x", b"x")


async def test_a_document_without_a_file_reader_says_so(mongo: FakeMongo, binding: StoreBinding) -> None:
    lev.set(big=b"b" * BIG)
    with pytest.raises(StoreError, match="without a reader"):
        await Document(mongo["levrt"][COLLECTION], {"_id": RECORD_ID}).get()


async def test_a_dotted_key_stores_apart_inside_a_sub_document(mongo: FakeMongo, binding: StoreBinding) -> None:
    lev.set({"hosts": {"a": 1}})
    lev.set({"hosts.b": b"b" * BIG})  # $set on a path: the placeholder lands inside "hosts"
    assert set(record(mongo)["hosts"]["b"]) == {PLACEHOLDER}
    assert lev.doc.get() == {"hosts": {"a": 1, "b": b"b" * BIG}}
    assert await document(mongo).get() == {"hosts": {"a": 1, "b": b"b" * BIG}}
