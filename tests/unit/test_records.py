"""Task status records: merged per task in the order they were made, one bulk write per batch of
at most MAX_UPDATES_PER_REQUEST tasks, an E11000 collision sent again, a store error logged without
failing the job, and a hung store told apart: what was never sent from what went unanswered."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from pymongo.errors import BulkWriteError

from levrt._clients.store import MAX_UPDATES_PER_REQUEST, Store
from levrt._core.records import StatusRecords
from tests.fakes import FakeMongo


def store(mongo: FakeMongo) -> Store:
    return Store(mongo.client("mongodb://fake/"), database="levrt", uri_for_errors="mongodb://fake/")


async def test_changes_are_merged_in_order_and_written_in_requests_of_bounded_size() -> None:
    mongo = FakeMongo()
    records = StatusRecords(store(mongo), job=4)
    count = 2 * MAX_UPDATES_PER_REQUEST + 3
    for task in range(count):
        records.record(task, state="submitting", pod=f"lev-j4-t{task}")
        records.record(task, state="running")
    records.record(7, state="succeeded", exitCode=0)
    await records.close()
    tasks = mongo["levrt_journal"]["levrt_tasks"]
    assert tasks.bulk_writes == 3 and records.writes == 3
    assert tasks.statements == [MAX_UPDATES_PER_REQUEST, MAX_UPDATES_PER_REQUEST, 3]
    by_id = {d["_id"]: d for d in tasks.docs}
    assert len(by_id) == count
    assert (by_id["4.7"]["state"], by_id["4.7"]["exitCode"], by_id["4.7"]["pod"]) == ("succeeded", 0, "lev-j4-t7")
    assert (by_id["4.8"]["state"], by_id["4.8"]["job"], by_id["4.8"]["task"]) == ("running", 4, 8)


async def test_a_later_state_is_never_overwritten_by_an_earlier_one() -> None:
    mongo = FakeMongo()
    records = StatusRecords(store(mongo), job=1)
    records.record(0, state="running")
    await asyncio.sleep(0)  # the writer takes the first batch
    records.record(0, state="succeeded")
    await records.close()
    assert mongo["levrt_journal"]["levrt_tasks"].docs[0]["state"] == "succeeded"


async def test_a_duplicate_key_race_is_sent_again(monkeypatch: pytest.MonkeyPatch) -> None:
    mongo = FakeMongo()
    tasks = mongo["levrt_journal"]["levrt_tasks"]
    real = tasks.bulk_write
    sent: list[int] = []

    async def collide_once(requests: list[Any], ordered: bool = True) -> None:
        sent.append(len(requests))
        if len(sent) == 1:  # the store inserted the first and refused the second as a duplicate
            await real(requests[:1], ordered)
            raise BulkWriteError({"writeErrors": [{"index": 1, "code": 11000, "errmsg": "E11000 duplicate key"}]})
        await real(requests, ordered)

    monkeypatch.setattr(tasks, "bulk_write", collide_once)
    records = StatusRecords(store(mongo), job=2)
    records.record(0, state="running")
    records.record(1, state="running")
    await records.close()
    assert sent == [2, 1]
    assert sorted(d["_id"] for d in tasks.docs) == ["2.0", "2.1"]


async def test_a_store_error_is_logged_and_the_job_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    mongo = FakeMongo()
    mongo.unreachable = "no route to host"
    records = StatusRecords(store(mongo), job=3)
    with caplog.at_level(logging.WARNING, logger="lev"):
        records.record(0, state="running")
        await records.close()
    assert "could not record the status of 1 task(s) of job 3" in caplog.text


async def test_a_store_that_hangs_does_not_hold_the_job_open(monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """What hung in the store's hands may have been taken: it is not reported as lost."""
    mongo = FakeMongo()

    async def hang(requests: list[Any], ordered: bool = True) -> None:
        await asyncio.sleep(3600)

    monkeypatch.setattr(mongo["levrt_journal"]["levrt_tasks"], "bulk_write", hang)
    records = StatusRecords(store(mongo), job=5)
    with caplog.at_level(logging.WARNING, logger="lev"):
        for task in range(MAX_UPDATES_PER_REQUEST + 2):
            records.record(task, state="running")
        await asyncio.wait_for(records.close(timeout=0.2), 5)
    assert (f"the status of 2 task(s) of job 5 was not sent (not recorded), and {MAX_UPDATES_PER_REQUEST} more "
            "were sent without an answer (the store may have taken them)") in caplog.text


async def test_one_call_with_many_tasks_is_sent_in_requests_of_bounded_size() -> None:
    """FerretDB holds a database connection per statement of one update command: more than its
    pool in one command and the store hangs for good."""
    mongo = FakeMongo()
    await store(mongo).record_tasks(job=6, updates={t: {"state": "running"} for t in range(60)})
    tasks = mongo["levrt_journal"]["levrt_tasks"]
    assert max(tasks.statements) == MAX_UPDATES_PER_REQUEST and sum(tasks.statements) == 60
    assert len(tasks.docs) == 60


async def test_a_job_id_already_claimed_is_skipped() -> None:
    """Two jobs never share an id, even when the store's counter hands the same value out twice."""
    mongo = FakeMongo()
    counters = mongo["levrt_journal"]["levrt_counters"]
    assert [await store(mongo).next_job_id() for _ in range(2)] == [1, 2]
    counters.docs[0]["seq"] = 1  # the counter fell behind (a lost $inc, a restored backup)
    assert await store(mongo).next_job_id() == 3
    assert sorted(d["_id"] for d in counters.docs) == ["job", "job.1", "job.2", "job.3"]


async def test_levrts_journal_lives_apart_and_job_ids_go_on_from_a_store_laid_out_before_it() -> None:
    """Job records, task status, log archives and the job counter sit in the journal database (the
    chart's task user may not write it); a store whose counter is still in the records database goes
    on from it, so no new job shares an id with old records."""
    mongo = FakeMongo()
    mongo["levrt"]["levrt_counters"].insert_one_now({"_id": "job", "seq": 41})  # written by levrt before
    opened = store(mongo)
    assert await opened.next_job_id() == 42
    await opened.set_fields("levrt_jobs", 42, {"owner": "alice"})
    await opened.record_tasks(job=42, updates={0: {"state": "running"}})
    assert [d["_id"] for d in mongo["levrt_journal"]["levrt_jobs"].docs] == [42]
    assert [d["_id"] for d in mongo["levrt_journal"]["levrt_tasks"].docs] == ["42.0"]
    assert opened.collection("scans").full_name == "levrt.scans"  # users' records stay where tasks write
    assert mongo["levrt"]["levrt_counters"].docs == [{"_id": "job", "seq": 41}]  # the old counter is only read


async def test_tasks_get_the_task_users_secret_where_it_exists_else_the_stores() -> None:
    from levrt._clients.kube import Kube, use_transport
    from levrt._clients.store import task_credentials
    from levrt.settings import Settings
    from tests.fakes import FakeApiServer

    api = FakeApiServer()
    settings = Settings(runtime_image="levrt.local/runtime:t")
    with use_transport(lambda: api):
        kube = await Kube.connect()
        assert (await task_credentials(kube, settings)).task_store_secret is None  # an older chart: levrt-store
        api.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "levrt-store-task"}, "data": {}})
        assert (await task_credentials(kube, settings)).task_store_secret == "levrt-store-task"
        # The team's own store (engine external) or a Secret named on purpose: as said.
        external = settings.replace(store_secret="corp-mongo")
        assert (await task_credentials(kube, external)).task_store_secret is None
        chosen = settings.replace(task_store_secret="mine")
        assert (await task_credentials(kube, chosen)).task_store_secret == "mine"
        await kube.close()
