"""``levrt.job(N)``: a job opened from its records after the fact (issue 22, item 7), and
``doc.all()`` saying which task wrote each record.

Against the fake apiserver (which answers a SelfSubjectReview as ``tester``) and the fake store;
the same reading runs on the real cluster in ``tests/e2e/test_jobs.py``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time

import pytest

import levrt
from levrt import Cr
from levrt._clients.lease import lease_object
from levrt._clients.store import JOB_RECORDS, LOGS
from levrt._core.engine import session
from levrt._shapes import jobrecord
from levrt.document import Record
from levrt.settings import Settings
from tests.fakes import FakeApiServer, FakeMongo

STORE = "mongodb://127.0.0.1:30017/"
SETTINGS = Settings(store_uri=STORE, runtime_image="levrt.local/runtime:t")
WHAT = {"target": "flows.py:sweep", "args": ["10.0.0.0/24", "ports=22"]}
SCHEMA = "ts/scan@1.0"


pytestmark = pytest.mark.usefixtures("laptop_env")


async def run_job(api: FakeApiServer, mongo: FakeMongo, *, tasks: int = 3, value: object = None) -> int:
    """A job of ``tasks`` tasks that ran to its end; each task's record as its entry would write it."""
    api.autorun(exit_code=0)
    async with session(settings=SETTINGS, what=WHAT) as engine:
        for _ in range(tasks):
            await Cr("busybox:1.36")
        engine.job_record.value = value
        job = engine.job_id
    for task in reversed(range(tasks)):  # written out of order: read back in task order
        mongo["levrt"][SCHEMA].insert_one_now({"_id": {"job": job, "task": task}, "port": 20 + task})
    mongo["levrt"]["demo|" + SCHEMA].insert_one_now({"_id": {"job": job, "task": 1}, "banner": "ssh"})
    mongo["levrt"][SCHEMA].insert_one_now({"_id": {"job": job + 100, "task": 0}, "port": 1})  # another job's
    return job


async def test_a_finished_job_tells_what_ran_who_ran_it_and_how_it_ended(api: FakeApiServer, mongo: FakeMongo) -> None:
    job_id = await run_job(api, mongo, value={"hosts": 2})
    async with levrt.job(job_id) as job:
        assert (job.id, job.state, job.owner, job.where, job.what) == (
            job_id, "succeeded", "tester", "laptop", "flows.py:sweep 10.0.0.0/24 ports=22")
        assert job.task_counts == {"done": 3} and job.error is None
        assert job.started is not None and job.ended is not None and job.started <= job.ended
        assert job.duration is not None and job.duration >= 0
        assert await job.value() == {"hosts": 2}
        tasks = await job.tasks()
        assert [(t["task"], t["state"]) for t in tasks] == [(0, "succeeded"), (1, "succeeded"), (2, "succeeded")]
        assert "_id" not in tasks[0]
        for _ in range(5):  # time for whatever would close it behind the Job's back
            await asyncio.sleep(0)
        assert not mongo.clients[-1].closed  # the Job holds its store open until the block ends
    assert mongo.clients[-1].closed


async def test_its_records_are_found_per_schema_each_saying_which_task_wrote_it(
        api: FakeApiServer, mongo: FakeMongo) -> None:
    job_id = await run_job(api, mongo)
    job = await levrt.job(job_id)
    try:
        assert await job.schemas() == {SCHEMA: 3, "demo|" + SCHEMA: 1}
        docs = await job.documents(SCHEMA)
        assert [d.task_id for d in docs] == [0, 1, 2]
        assert [await d.get() for d in docs] == [{"port": 20}, {"port": 21}, {"port": 22}]
        [banner] = await job.documents(SCHEMA, ns="demo")
        assert (banner.task_id, await banner.get()) == (1, {"banner": "ssh"})
        assert await job.documents("ts/other@1.0") == []
        with pytest.raises(levrt.LevrtError, match="not a schema"):
            await job.documents("no schema")
        records = [rec async for rec in docs[2].all()]
        assert records == [{"port": 20}, {"port": 21}, {"port": 22}]  # still plain dicts to compare
        assert all(isinstance(rec, Record) for rec in records)
        assert [(rec.job, rec.task) for rec in records] == [(job_id, 0), (job_id, 1), (job_id, 2)]
        narrowed = [rec async for rec in docs[0].all({"port": 22}, {"port": 1, "_id": 0})]
        assert [(rec.task, dict(rec)) for rec in narrowed] == [(2, {"port": 22})]  # _id: 0 still names the task
    finally:
        await job.close()


async def test_latest_is_your_newest_job(api: FakeApiServer, mongo: FakeMongo) -> None:
    mine = await run_job(api, mongo, tasks=1)
    mongo["levrt_journal"][JOB_RECORDS].insert_one_now(
        jobrecord.opening_fields(job=mine + 1, owner="someone-else", owner_source="selfsubjectreview", groups=(),
                                 what={"target": "x.py:y"}, where="laptop", started=time.time(), lease=False))
    async with levrt.job() as job:
        assert (job.id, job.owner) == (mine, "tester")


async def test_a_running_job_whose_lease_is_gone_is_lost(api: FakeApiServer, mongo: FakeMongo) -> None:
    for job in (7, 8):
        mongo["levrt_journal"][JOB_RECORDS].insert_one_now(
            jobrecord.opening_fields(job=job, owner="tester", owner_source="selfsubjectreview", groups=(),
                                     what={"target": "x.py:y"}, where="laptop", started=time.time(), lease=True))
    api.put(lease_object(8, namespace="levrt", duration=30, holder="laptop/1", now=time.time()))
    async with levrt.job(7) as lost, levrt.job(8) as running:
        assert (lost.state, running.state) == ("lost", "running")
        assert lost.ended is None and await lost.value() is None


async def test_a_large_value_is_read_back_whole(api: FakeApiServer, mongo: FakeMongo) -> None:
    big = ["x" * 100] * (jobrecord.MAX_INLINE_VALUE // 100 + 10)
    job_id = await run_job(api, mongo, tasks=0, value=big)
    async with levrt.job(job_id) as job:
        assert await job.value() == big
    assert len(json.dumps(big)) > jobrecord.MAX_INLINE_VALUE


async def test_archived_logs_are_read_and_say_where_they_were_cut(api: FakeApiServer, mongo: FakeMongo) -> None:
    job_id = await run_job(api, mongo, tasks=0)
    archived = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    mongo["levrt_journal"][LOGS].insert_one_now({
        "_id": f"{job_id}.4", "job": job_id, "task": 4, "pod": f"lev-j{job_id}-t4", "archived": archived,
        "containers": {"main": {"text": "Traceback ...\nRuntimeError: unreachable\n", "bytes": 40},
                       "db": {"text": "ready\n", "bytes": 6, "cut": "the kubelet rotated the log"}}})
    async with levrt.job(job_id) as job:
        main = await job.logs(4)
        assert main.endswith("RuntimeError: unreachable\n") and main.cut is None
        assert (main.pod, main.archived) == (f"lev-j{job_id}-t4", archived)
        db = await job.logs(4, "db")
        assert (str(db), db.cut) == ("ready\n", "the kubelet rotated the log")
        with pytest.raises(levrt.RecordNotFound, match="no container 'web'; they have: main, db"):
            await job.logs(4, "web")
        with pytest.raises(levrt.RecordNotFound, match=f"No archived logs of task {job_id}.5"):
            await job.logs(5)


async def test_a_job_the_store_does_not_know_or_a_bad_id_is_one_clear_error(api: FakeApiServer,
                                                                            mongo: FakeMongo) -> None:
    with pytest.raises(levrt.RecordNotFound, match="no record of job 41"):
        await levrt.job(41)
    with pytest.raises(levrt.RecordNotFound, match="no job records of tester"):
        await levrt.job()
    for bad in (0, -1, "12", True, 1.5):
        with pytest.raises(levrt.LevrtError, match="give a job id"):
            levrt.job(bad)  # type: ignore[arg-type]
    assert mongo["levrt_journal"][JOB_RECORDS].docs == []
