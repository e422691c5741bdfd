"""Retention (issue 25, item 5): ``levrt gc --records-older-than`` deletes the records of long-ended
jobs (their task status and log archives too, their own record kept and marked), then the stored
files nothing names, never one younger than the grace or one a live task Pod mounts.

On the fake apiserver and store; on the real cluster: ``tests/e2e/test_records_retention.py``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest

from levrt._cli import main
from levrt._clients.blobs import FileStore
from levrt._clients.store import JOB_RECORDS, LOGS, TASKS, Store, journal_database
from levrt._core.retention import shas_in
from levrt._stored import FILES
from tests.fakes import FakeApiServer, FakeMongo

SCHEMA = "demo/scan@1.0"
DAY = 86400.0

pytestmark = pytest.mark.usefixtures("laptop_env")


def test_every_way_a_record_names_a_file_is_read() -> None:
    a, b, c, d = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)
    doc = {"big": {"_levrt_blob": {"sha256": a, "size": 1}}, "_artifacts": [{"name": "r", "sha256": b}],
           "containers": {"main": {"file": c}}, "note": d, "sha256": "not-a-sha"}
    assert shas_in(doc) == {a, b, c}  # a free text that looks like one is not a reference


async def gc(*args: str) -> int:
    """``levrt gc ...`` as a shell runs it (the CLI has its own event loop)."""
    return await asyncio.to_thread(main, ["gc", *args])


async def seed(mongo: FakeMongo) -> dict[str, str]:
    """Jobs 1 (ended 40 days ago) and 2 (ended an hour ago), their records, task status and logs,
    and five stored files; their sha256s by role."""
    now = time.time()
    journal = mongo[journal_database("levrt")]
    for job, ended in ((1, now - 40 * DAY), (2, now - 3600)):
        journal[JOB_RECORDS].insert_one_now({"_id": job, "state": "succeeded", "started": ended - 60, "ended": ended})
        journal[TASKS].insert_one_now({"_id": f"{job}.0", "job": job, "task": 0, "state": "succeeded"})
        journal[LOGS].insert_one_now({"_id": f"{job}.0", "pod": f"lev-j{job}-t0", "containers": {}})
    files = FileStore.of(Store.connect("mongodb://127.0.0.1:30017/", database="levrt"))
    shas = {}
    for role in ("old-record", "kept-record", "young", "orphan", "mounted"):
        shas[role] = (await files.upload(role.encode() * 100, name=role)).sha256
    for doc in mongo["levrt"][FILES].docs:  # all uploaded long ago, but one
        if doc["_id"] != shas["young"]:
            doc["uploadDate"] = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    mongo["levrt"][SCHEMA].insert_one_now({"_id": {"job": 1, "task": 0}, "port": 22,
                                           "_artifacts": [{"name": "r", "sha256": shas["old-record"]}]})
    mongo["levrt"][SCHEMA].insert_one_now({"_id": {"job": 2, "task": 0}, "port": 80,
                                           "big": {"_levrt_blob": {"sha256": shas["kept-record"], "size": 9}}})
    mongo["levrt"]["jobs"].insert_one_now({"_id": {"job": 1}, "summary": "old"})
    return shas


async def test_old_records_go_then_the_files_nothing_names(api: FakeApiServer, mongo: FakeMongo,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    shas = await seed(mongo)
    for job in (1, 2):  # reports a task wrote after its job had ended
        await mongo["levrt"]["levrt_ends"].insert_one({"_id": f"lev-j{job}-t9", "job": job, "task": 9, "exit": 130})
    api.put({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "lev-j3-t0", "labels": {
        "app.kubernetes.io/managed-by": "levrt", "levrt.io/job": "3"}},
        "spec": {"initContainers": [{"name": "levrt-files", "command": ["python", "-m", "levrt.runtime.fetch",
                                                                       "/levrt-files", shas["mounted"]]}],
                 "containers": [{"name": "main", "image": "busybox"}]}})
    assert await gc("--records-older-than", "30d", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "would delete 5 records of 1 jobs" in out and "would delete 2 stored files" in out
    assert len(mongo["levrt"][SCHEMA].docs) == 2  # a dry run deletes nothing

    assert await gc("--records-older-than", "30d") == 0
    out = capsys.readouterr().out
    assert f"deleted 5 records of 1 jobs that ended more than 30d ago: 1 {SCHEMA}, 1 jobs, 1 levrt_ends, " \
           "1 levrt_logs, 1 levrt_tasks" in out, out
    assert [d["_id"] for d in mongo["levrt"]["levrt_ends"].docs] == ["lev-j2-t9"]
    assert [d["_id"] for d in mongo["levrt"][SCHEMA].docs] == [{"job": 2, "task": 0}]
    journal = mongo[journal_database("levrt")]
    assert [d["_id"] for d in journal[TASKS].docs] == ["2.0"] and [d["_id"] for d in journal[LOGS].docs] == ["2.0"]
    assert journal[JOB_RECORDS].find_one_now({"_id": 1})["collected"]["schema"] is None  # the record stays
    left = {d["_id"] for d in mongo["levrt"][FILES].docs}
    assert left == {shas["kept-record"], shas["young"], shas["mounted"]}
    assert not [c for c in mongo["levrt"]["levrt_files.chunks"].docs if c["files_id"] not in left]


async def test_one_schema_only_and_bad_options(api: FakeApiServer, mongo: FakeMongo,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    await seed(mongo)
    assert await gc("--records-older-than", "30d", "--schema", SCHEMA) == 0
    assert "deleted 1 demo/scan@1.0 records of 1 jobs" in capsys.readouterr().out
    assert mongo["levrt"]["jobs"].docs and mongo[journal_database("levrt")][TASKS].find_one_now({"_id": "1.0"})
    assert await gc("--schema", SCHEMA) == 2
    assert await gc("--records-older-than", "30d", "--job", "1") == 2
    assert await gc("--records-older-than", "30d", "--schema", "Not A Schema") == 2
