"""Logs that outlast Pods: each task's containers' logs archived in ``levrt_logs`` at its end (capped,
the rest in file storage, cuts said), ``levrt logs J.T`` reading them once the Pod is gone, and
``--keep`` keeping a failed job's Pods with a Lease that names them."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from levrt import Cr, TaskFailed
from levrt._cli import main
from levrt._clients.blobs import FileStore
from levrt._clients.kube import Kube, use_transport
from levrt._clients.lease import KEPT_PODS_ANNOTATION, kept_pods
from levrt._clients.store import LOGS, Store, use_client
from levrt._core.engine import Engine
from levrt._core.logarchive import LogArchive, archive_document, archived_text, container_names
from levrt.run import session
from levrt.settings import Settings
from tests.fakes import FakeApiServer, FakeMongo

STORE = "mongodb://127.0.0.1:30017/"
SETTINGS = Settings(store_uri=STORE, runtime_image="levrt.local/runtime:t")
POD = "lev-j1-t0"
TRACEBACK = ('Traceback (most recent call last):\n  File "/src/test_scan.py", line 9, in scan\n'
             '    connect(host)\nRuntimeError: target unreachable: 10.0.0.99\n')


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in os.environ if v.startswith("LEVRT_")]:
        monkeypatch.delenv(var)


def pod_with(*init: str) -> dict[str, Any]:
    return {"metadata": {"name": POD}, "spec": {"containers": [{"name": "main"}],
                                                "initContainers": [{"name": n} for n in init]}}


# -- the document ----------------------------------------------------------------------------------


def test_containers_are_archived_main_first() -> None:
    assert container_names(pod_with("levrt-files", "db")) == ["main", "levrt-files", "db"]


def test_logs_within_the_cap_are_inline_whole() -> None:
    when = dt.datetime(2025, 1, 2, tzinfo=dt.UTC)
    doc, overflow = archive_document(4, 2, "lev-j4-t2", {"main": "out\n", "levrt-files": "fetched\n"}, now=when)
    assert overflow == {}
    assert doc == {"job": 4, "task": 2, "pod": "lev-j4-t2", "archived": when,
                   "containers": {"main": {"bytes": 4, "text": "out\n"},
                                  "levrt-files": {"bytes": 8, "text": "fetched\n"}}}


def test_a_log_past_the_cap_keeps_its_tail_inline_and_goes_whole_to_file_storage() -> None:
    big = "x" * 90 + "\nTraceback: the end\n"
    doc, overflow = archive_document(1, 0, POD, {"svc": "svc says\n", "main": big}, inline_bytes=50)
    assert overflow == {"main": big.encode(), "svc": b"svc says\n"}  # main is served first and takes the cap
    main_entry = doc["containers"]["main"]
    assert main_entry["bytes"] == len(big) and big.endswith(main_entry["text"]) and len(main_entry["text"]) == 50
    assert doc["containers"]["svc"] == {"bytes": 9, "text": ""}
    doc, _ = archive_document(1, 0, POD, {"svc": "svc says\n", "main": big}, inline_bytes=50,
                              stored={"main": "ab" * 32, "svc": "cd" * 32}, cuts={"svc": "its log could not be read"})
    assert doc["containers"]["main"]["file"] == "ab" * 32
    assert doc["containers"]["svc"] == {"bytes": 9, "text": "", "file": "cd" * 32, "cut": "its log could not be read"}


# -- the archive at a task's end -------------------------------------------------------------------


@contextlib.asynccontextmanager
async def archive_of(api: FakeApiServer, mongo: FakeMongo, **kw: Any) -> AsyncIterator[LogArchive]:
    with use_transport(lambda: api), use_client(mongo.client):
        async with Kube(api) as kube:
            store = Store.connect(STORE)
            archive = LogArchive(kube, store, FileStore.of(store), namespace="levrt", job=1, **kw)
            yield archive
            await archive.close()


async def test_an_overflow_is_stored_in_file_storage_and_read_back_whole(api: FakeApiServer,
                                                                         mongo: FakeMongo) -> None:
    pod = api.put({"kind": "Pod", **pod_with("levrt-files")})
    api.container_logs[(POD, "main")] = "line\n" * 100 + TRACEBACK
    api.container_logs[(POD, "levrt-files")] = "fetched 2 files\n"
    async with archive_of(api, mongo, inline_bytes=64) as archive:
        await archive.wait_read(archive.begin(0, pod))
    doc = mongo["levrt_journal"][LOGS].docs[0]
    main_entry = doc["containers"]["main"]
    whole = ("line\n" * 100 + TRACEBACK).encode()
    assert main_entry["file"] == hashlib.sha256(whole).hexdigest() and main_entry["bytes"] == len(whole)
    assert "cut" not in main_entry and doc["containers"]["levrt-files"]["bytes"] == 16
    with use_client(mongo.client):
        store = Store.connect(STORE)
        assert await archived_text(FileStore.of(store), main_entry) == (whole.decode(), None)


async def test_a_refused_file_write_and_an_unreadable_log_are_noted_as_cuts(
        api: FakeApiServer, mongo: FakeMongo, caplog: pytest.LogCaptureFixture) -> None:
    pod = api.put({"kind": "Pod", **pod_with()})
    pod["spec"]["initContainers"] = [{"name": "gone"}]  # not in the Pod the apiserver has: 400
    api.container_logs[(POD, "main")] = "0123456789abcdef\n"
    mongo["levrt"]["levrt_files.chunks"].fail_inserts_after = 0
    async with archive_of(api, mongo, inline_bytes=10) as archive:
        with caplog.at_level(logging.WARNING, "lev"):
            await archive.wait_read(archive.begin(0, pod))
            await archive.close()
    entry = mongo["levrt_journal"][LOGS].docs[0]["containers"]
    assert entry["main"]["text"] == "789abcdef\n"
    assert "only its last 10 of 17 bytes are archived: the file storage refused the rest" in entry["main"]["cut"]
    assert "file" not in entry["main"]
    assert entry["gone"]["cut"].startswith("its log could not be read")
    assert "archived cut" in caplog.text


async def test_a_store_that_refuses_the_archive_is_a_warning_only(api: FakeApiServer, mongo: FakeMongo,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    pod = api.put({"kind": "Pod", **pod_with()})
    mongo.unreachable = "connection refused"
    async with archive_of(api, mongo) as archive:
        with caplog.at_level(logging.WARNING, "lev"):
            await archive.wait_read(archive.begin(0, pod))
            await archive.close()
    assert "the logs of task 1.0 were not archived" in caplog.text


async def test_a_slow_read_holds_the_task_end_only_for_a_while_and_says_so(api: FakeApiServer,
                                                                          mongo: FakeMongo) -> None:
    pod = api.put({"kind": "Pod", **pod_with()})
    async with archive_of(api, mongo, read_seconds=0.05) as archive:
        original = archive._read

        async def slow(pod: str, container: str) -> tuple[str, str | None]:
            await asyncio.sleep(5)
            return await original(pod, container)

        archive._read = slow  # type: ignore[method-assign]
        started = time.monotonic()
        await archive.wait_read(archive.begin(0, pod))
        assert time.monotonic() - started < 1
    entry = mongo["levrt_journal"][LOGS].docs[0]["containers"]["main"]
    assert entry == {"bytes": 0, "text": "", "cut": "its log was not read within 0.05 s"}


def ungated(api: FakeApiServer, name: str) -> bool:
    pod = api.get("pods", name)
    return pod is not None and not pod["spec"].get("schedulingGates")


async def run_failing_task(api: FakeApiServer, mongo: FakeMongo, settings: Settings) -> Engine:
    with use_transport(lambda: api), use_client(mongo.client):
        with pytest.raises(TaskFailed):
            async with session(settings=settings) as engine:
                starting = asyncio.create_task(Cr("busybox:1.36").start())
                await api.until(lambda: ungated(api, POD))
                api.set_running(POD, ip="10.244.0.9")
                task = await starting
                api.logs[POD] = "scanning\n" + TRACEBACK
                api.set_terminated(POD, 1)
                await task.done()
    return engine


async def test_a_failed_task_is_archived_at_its_end_and_its_pod_deleted(api: FakeApiServer, mongo: FakeMongo) -> None:
    await run_failing_task(api, mongo, SETTINGS)
    assert api.get("pods", POD) is None
    doc = mongo["levrt_journal"][LOGS].docs[0]
    assert doc["_id"] == "1.0" and doc["pod"] == POD
    assert doc["containers"]["main"]["text"] == "scanning\n" + TRACEBACK
    assert api.names("leases") == []


# -- levrt logs from the archive -------------------------------------------------------------------


def archive(mongo: FakeMongo, job: int, task: int, containers: dict[str, Any]) -> None:
    mongo["levrt_journal"][LOGS].insert_one_now({"_id": f"{job}.{task}", "job": job, "task": task,
                                         "pod": f"lev-j{job}-t{task}",
                                         "archived": dt.datetime(2025, 3, 4, 5, 6, 7, tzinfo=dt.UTC),
                                         "containers": containers})


@pytest.fixture
def cli(api: FakeApiServer, mongo: FakeMongo, monkeypatch: pytest.MonkeyPatch) -> FakeMongo:
    monkeypatch.setenv("LEVRT_STORE_URI", STORE)
    return mongo


def test_logs_of_a_gone_pod_come_from_the_archive(cli: FakeMongo, capsys: pytest.CaptureFixture[str]) -> None:
    archive(cli, 16, 0, {"main": {"text": "scanning\n" + TRACEBACK, "bytes": 10},
                         "levrt-files": {"text": "fetched\n", "bytes": 8}})
    assert main(["logs", "16.0"]) == 0
    out, err = capsys.readouterr()
    assert out == "scanning\n" + TRACEBACK
    assert err == ("levrt logs: Pod lev-j16-t0 is gone; this is its main output archived at 2025-03-04 05:06:07 UTC "
                   "when the task ended.\n")
    assert main(["logs", "lev-j16-t0", "-c", "levrt-files"]) == 0
    assert capsys.readouterr().out == "fetched\n"
    assert main(["logs", "16.0", "--tail", "1"]) == 0
    assert capsys.readouterr().out == "RuntimeError: target unreachable: 10.0.0.99\n"
    assert main(["logs", "16.0", "-f"]) == 0  # it ended: all there is
    assert capsys.readouterr().out.endswith(TRACEBACK)


def test_an_archive_says_where_it_was_cut(cli: FakeMongo, capsys: pytest.CaptureFixture[str]) -> None:
    archive(cli, 16, 1, {"main": {"text": "the end\n", "bytes": 900, "cut": "only its last 8 of 900 bytes are "
                                  "archived: the file storage refused the rest (disk full)"}})
    assert main(["logs", "16.1"]) == 0
    out, err = capsys.readouterr()
    assert out == "the end\n"
    assert ("levrt logs: the archive of main is incomplete: only its last 8 of 900 bytes are archived: the file "
            "storage refused the rest (disk full).\n") in err


def test_logs_with_neither_pod_nor_archive_say_why(cli: FakeMongo, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["logs", "16.0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("levrt logs: No task Pod 'lev-j16-t0', and no archived logs of task 16.0 in the store.")
    assert "older than 2.0" in err and "the store refused the archive" in err and "levrt ps --job 16" in err


def test_an_unknown_container_or_a_bad_tail_is_one_line(cli: FakeMongo, capsys: pytest.CaptureFixture[str]) -> None:
    archive(cli, 16, 0, {"main": {"text": "x\n", "bytes": 2}})
    assert main(["logs", "16.0", "-c", "db"]) == 2
    assert capsys.readouterr().err == ("levrt logs: Task 16.0's archived logs have no container 'db'; they have: "
                                       "main (-c NAME).\n")
    assert main(["logs", "16.0", "--tail", "-1"]) == 2
    assert capsys.readouterr().err == "levrt logs: --tail -1: give a number of lines >= 0.\n"


def test_a_store_that_cannot_be_read_is_said_with_the_missing_pod(api: FakeApiServer, mongo: FakeMongo,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LEVRT_STORE_URI", STORE)
    mongo.unreachable = "connection refused"
    assert main(["logs", "16.0"]) == 1
    assert capsys.readouterr().err.startswith(
        "levrt logs: No task Pod 'lev-j16-t0', and its archived logs could not be read from the store: ")


async def test_a_task_the_jobs_end_cuts_short_is_archived_before_its_pod_goes(api: FakeApiServer,
                                                                              mongo: FakeMongo) -> None:
    """Ctrl-C in the middle of a scan: what the scanner printed so far is kept."""
    api.container_logs[(POD, "main")] = "scanned 10.0.0.1\nscanned 10.0.0.2\n"
    with pytest.raises(asyncio.CancelledError):
        async with session(settings=SETTINGS):
            starting = asyncio.create_task(Cr("busybox:1.36").start())
            await api.until(lambda: api.get("pods", POD) is not None)
            api.set_running(POD)
            await starting
            raise asyncio.CancelledError
    assert api.names("pods") == []
    [doc] = mongo["levrt_journal"][LOGS].docs
    assert (doc["_id"], doc["pod"]) == ("1.0", POD)
    assert doc["containers"]["main"]["text"] == "scanned 10.0.0.1\nscanned 10.0.0.2\n"


# -- --keep ---------------------------------------------------------------------------------------


async def test_keep_keeps_a_failed_tasks_pod_and_the_lease_names_it(api: FakeApiServer, mongo: FakeMongo,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    await run_failing_task(api, mongo, SETTINGS.replace(keep=True))
    assert api.names("pods") == [POD]  # the job failed (TaskFailed left it): its Pod is kept all the same
    (lease,) = [api.get("leases", name) for name in api.names("leases")]
    assert lease is not None and lease["metadata"]["annotations"][KEPT_PODS_ANNOTATION] == POD
    assert kept_pods(lease) == [POD]
    assert mongo["levrt_journal"][LOGS].docs[0]["containers"]["main"]["text"].endswith(TRACEBACK)  # archived too
    os.environ["LEVRT_STORE_URI"] = STORE
    try:
        with use_transport(lambda: api):
            assert await asyncio.to_thread(main, ["gc", "--dry-run"]) == 0
    finally:
        del os.environ["LEVRT_STORE_URI"]
    out, err = capsys.readouterr()
    assert out == ("keeps leases/levrt-job-1 (job 1, kept 0s ago; removed when kept longer than --older-than 1h, "
                   f"or now with `levrt gc --job 1`): pods/{POD}\n")
    assert err == "Nothing to remove yet: kept jobs go once kept longer than --older-than 1h.\n"
