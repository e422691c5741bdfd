"""``lev`` and the records 1.x tool packages write: ``ctx.update(mapping)`` in entries, values that
cannot be stored named by their key, and ``lev.doc`` as the job's own record in orchestrations."""

from __future__ import annotations

import datetime as dt
from typing import Any

import bson
import pytest

from levrt import _job, ctx, lev
from levrt.context import bind_task
from levrt.document import Document
from levrt.errors import LevrtError, OutsideTaskError, StoreError
from levrt.runtime import RuntimeConfig, StoreBinding

CONFIG = RuntimeConfig(payload="/p", store_uri="mongodb://store:27017/", database="levrt",
                       collection="ts/issues@1.0", job=4, task=2)


class BsonCollection:
    """Encodes every update as the driver would, so unstorable values fail as they do for real."""

    def __init__(self) -> None:
        self.record: dict[str, Any] = {}

    def insert_one(self, doc: dict[str, Any]) -> None:
        bson.encode(doc)
        self.record.update({k: v for k, v in doc.items() if k != "_id"})

    def update_one(self, query: dict[str, Any], update: dict[str, Any], upsert: bool = False) -> None:
        bson.encode(update)
        self.record.update(update["$set"])


def binding_with(collection: BsonCollection) -> StoreBinding:
    return StoreBinding(CONFIG, connect=lambda uri: {"levrt": {"ts/issues@1.0": collection}})


def test_update_merges_like_dict_update_across_calls() -> None:
    collection = BsonCollection()
    previous = bind_task(binding_with(collection))
    try:
        ctx.update({"target": "10.0.0.1", "ports": [22]})
        ctx.update([("os", "linux")], up=True)
        lev.set(ports=[22, 80])
        ctx.update({"report": {"ssh": b"OpenSSH"}})
    finally:
        bind_task(previous)
    assert collection.record == {"target": "10.0.0.1", "ports": [22, 80], "os": "linux", "up": True,
                                 "report": {"ssh": b"OpenSSH"}}


def test_update_rejects_what_is_not_a_mapping() -> None:
    previous = bind_task(binding_with(BsonCollection()))
    try:
        with pytest.raises(LevrtError, match=r"lev\.update\(42\)"):
            ctx.update(42)  # type: ignore[arg-type]
    finally:
        bind_task(previous)


def test_a_value_that_cannot_be_stored_is_named_by_its_key() -> None:
    collection = BsonCollection()
    previous = bind_task(binding_with(collection))
    try:
        with pytest.raises(StoreError, match=r"'hosts' \(set\) cannot be stored"):
            ctx.update({"ok": 1, "hosts": {"a", "b"}})
        with pytest.raises(StoreError, match=r"'big' \(int\)"):
            lev.set(big=2**70)
        with pytest.raises(StoreError, match=r"field name '\$where'"):
            lev.set({"$where": 1})
        lev.set(when=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    finally:
        bind_task(previous)
    assert "hosts" not in collection.record and "when" in collection.record


class JobRunner:
    """A job as the job seam shows it to ``lev``: an id and its own record."""

    job_id = 12

    def __init__(self) -> None:
        self.document = Document(coll=object(), filter={"_id": {"job": 12}})

    def job_document(self) -> Document:
        return self.document


def test_lev_doc_in_an_orchestration_is_the_job_record() -> None:
    runner = JobRunner()
    with _job.running(runner):  # type: ignore[arg-type]
        assert lev.doc is runner.document and lev.job_id == 12
        with pytest.raises(OutsideTaskError):
            lev.set(x=1)  # writing is `await lev.doc.set(...)` on the client
    with pytest.raises(OutsideTaskError, match="neither runs here"):
        _ = lev.doc
    with pytest.raises(OutsideTaskError):
        _ = lev.job_id


def test_inside_a_task_lev_doc_stays_the_task_record() -> None:
    binding = binding_with(BsonCollection())
    previous = bind_task(binding)
    try:
        with _job.running(JobRunner()):  # type: ignore[arg-type]
            assert lev.doc is binding and lev.job_id == 4
    finally:
        bind_task(previous)


def test_an_optional_file_left_as_none_is_no_file() -> None:
    from levrt import Cr
    from levrt.errors import FileSpecError
    from tests.helpers import build

    cr = Cr("busybox:1.36", files={"/word_list": None, "/etc/tool.conf": b"x=1"})
    assert dict(cr.files) == {"/etc/tool.conf": b"x=1"}
    mounts = build(cr).pod["spec"]["containers"][-1]["volumeMounts"]
    assert [m["mountPath"] for m in mounts] == ["/etc/tool.conf"]
    assert Cr("busybox:1.36", files={"/w": None}).files == {}
    with pytest.raises(FileSpecError, match="is relative"):
        Cr("busybox:1.36", files={"word_list": None})  # the path is still checked
    with pytest.raises(FileSpecError, match=r"files\['/w'\] is a int.*None leaves the file out"):
        Cr("busybox:1.36", files={"/w": 0})  # type: ignore[dict-item]


def test_the_clients_debug_wait_reaches_every_entry() -> None:
    import levrt
    from levrt import Cr
    from levrt.errors import SettingsError
    from levrt.settings import Settings
    from tests.helpers import build

    @levrt.remote
    def entry() -> None:
        breakpoint()

    def env_of(settings: Settings) -> dict[str, str]:
        main = build(Cr("busybox:1.36", entry=entry), settings=settings).pod["spec"]["containers"][-1]
        return {e["name"]: e.get("value", "") for e in main["env"]}

    assert "LEVRT_DEBUG_WAIT" not in env_of(Settings())  # the runtime's default applies
    assert env_of(Settings.from_env({"LEVRT_DEBUG_WAIT": "0"}))["LEVRT_DEBUG_WAIT"] == "0"
    assert env_of(Settings(debug_wait=1800))["LEVRT_DEBUG_WAIT"] == "1800"
    with pytest.raises(SettingsError, match="debug_wait=-1"):
        Settings(debug_wait=-1)
