"""Warm Pods (``Cr(warm=...)``): the option's checks, the pool and Pod shapes, the worker's loop with
real processes, and the engine's side against the fake apiserver and store with workers in threads.

The worker's entries run in real forked processes here; their record writes do not reach the fake
store (another process's memory), so these tests read what the queue says of each entry: its exit,
its reason and its output. The real store, Pods and records are tests/e2e/test_warm_pods.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import levrt
from levrt import Cr, TaskFailed
from levrt._clients.kube import use_transport
from levrt._clients.store import use_client
from levrt._core.engine import Engine
from levrt._shapes.names import JOB_LABEL, ROLE_LABEL, TASK_LABEL
from levrt._shapes.warm import WARM_ROLE, entry_end, pool_key, worker_pod
from levrt.errors import OptionError, PayloadError, ServiceError
from levrt.podenv import JOB_ENV, PAYLOAD_ENV, TASK_ENV, TIMEOUT_ENV, WARM_COMMAND, WARM_KEY_ENV, WARM_WORKER_ENV
from levrt.run import session
from levrt.runtime.warm import Worker
from levrt.settings import Settings
from levrt.warmqueue import ENDED, QUEUE, QUEUED, RUNNING, entry_mac, log_field
from tests.fakes import FakeApiServer, FakeMongo

SETTINGS = Settings(store_uri="mongodb://127.0.0.1:30017/", runtime_image="levrt.local/runtime:t")
IMAGE = "busybox:1.36"
SCHEMA = "ts/warm@1.0"
KEY = "k" * 64
WORKER_ENV = {JOB_ENV: "1", WARM_KEY_ENV: KEY}


@levrt.remote
def echo(i: int) -> int:
    print("entry", i, flush=True)
    return i


@levrt.remote
def boom() -> None:
    raise ValueError("nope")


@levrt.remote
def nap(seconds: float) -> None:
    import os
    import time

    print("napping in", os.getpid(), flush=True)
    time.sleep(seconds)


@levrt.remote
def interruptible() -> None:
    import time

    try:
        time.sleep(30)
    except KeyboardInterrupt:
        print("interrupted", flush=True)


@levrt.remote
def reads_env_and_argv() -> None:
    import os
    import sys

    print(os.environ["COLOUR"], sys.argv[1:], flush=True)


# -- the option ----------------------------------------------------------------------------------


def test_warm_is_a_number_of_pods_and_true_means_the_default() -> None:
    assert Cr(IMAGE, entry=echo(1), warm=True).warm == 4
    assert Cr(IMAGE, entry=echo(1), warm=2).warm == 2
    assert Cr(IMAGE, entry=echo(1)).warm is None and Cr(IMAGE, entry=echo(1), warm=False).warm is None
    for bad in (0, 33, "4", 1.5):
        with pytest.raises(OptionError, match="warm="):
            Cr(IMAGE, entry=echo(1), warm=bad)


@pytest.mark.parametrize(("given", "named"), [
    ({"files": {"/w": b"x"}}, "files="),
    ({"ports": [80]}, "ports="),
    ({"links": {"db": "10.0.0.1"}}, "links="),
    ({"host": True}, "host="),
    ({"services": {"redis": Cr("redis:7")}}, "services="),
])
def test_what_a_shared_pod_cannot_give_each_entry_is_refused_when_the_cr_is_made(given: dict[str, Any],
                                                                                  named: str) -> None:
    with pytest.raises(OptionError, match=named):
        Cr(IMAGE, entry=echo(1), warm=True, **given)


def test_warm_needs_an_entry_and_belongs_to_the_main_cr() -> None:
    with pytest.raises(OptionError, match="needs an entry"):
        Cr(IMAGE, cmd=["true"], warm=True)
    with pytest.raises(ServiceError, match="warm"):
        Cr(IMAGE, entry=echo(1), services={"s": Cr("redis:7", entry=echo(2), warm=True)})


def test_options_gives_the_same_run_with_other_run_options() -> None:
    cr = Cr(IMAGE, SCHEMA, entry=echo(3), env=["A=1"], timeout=30, resources={"limits": {"cpu": "1"}})
    warm = cr.options(warm=2, retries=1)
    assert (warm.warm, warm.retries, warm.timeout, warm.env, warm.origin) == (2, 1, 30, ("A=1",), cr.origin)
    assert dict(warm.resources or {}) == {"limits": {"cpu": "1"}} and warm.entry is cr.entry
    assert "warm=2" in repr(warm) and cr.warm is None
    with pytest.raises(OptionError, match="run options are"):
        cr.options(image="other")
    with pytest.raises(OptionError, match="ports="):
        Cr(IMAGE, entry=echo(1), ports=[80]).options(warm=True)


# -- the pool and its Pod ---------------------------------------------------------------------------


def test_entries_share_a_pool_when_their_pods_would_be_alike() -> None:
    base = Cr(IMAGE, SCHEMA, entry=echo(1), warm=4)
    alike = [Cr(IMAGE, "ts/other@1.0", entry=echo(2), warm=4, env=["A=1"], cmd=["x"], timeout=5, retries=2)]
    unlike = [Cr("alpine:3", SCHEMA, entry=echo(1), warm=4), Cr(IMAGE, SCHEMA, entry=echo(1), warm=2),
              Cr(IMAGE, SCHEMA, entry=echo(1), warm=4, capabilities=["NET_RAW"]),
              Cr(IMAGE, SCHEMA, entry=echo(1), warm=4, resources={"limits": {"cpu": "2"}})]
    key = pool_key(base, SETTINGS)
    assert all(pool_key(cr, SETTINGS) == key for cr in alike)
    assert all(pool_key(cr, SETTINGS) != key for cr in unlike)


def test_a_warm_pod_is_the_task_pod_without_its_task() -> None:
    cr = Cr(IMAGE, SCHEMA, entry=echo(1), warm=4, env=["A=1"], cmd=["x"], timeout=5,
            capabilities=["NET_RAW"], resources={"limits": {"cpu": "500m"}})
    pod = worker_pod(cr, job=7, pool="abc", index=1, settings=SETTINGS, key=KEY)
    meta, spec = pod["metadata"], pod["spec"]
    assert meta["name"] == "lev-j7-wabc-1"
    assert meta["labels"][JOB_LABEL] == "7" and meta["labels"][ROLE_LABEL] == WARM_ROLE
    assert TASK_LABEL not in meta["labels"]
    assert "activeDeadlineSeconds" not in spec  # each entry keeps its own deadline
    main = next(c for c in spec["containers"] if c["name"] == "main")
    assert main["command"] == list(WARM_COMMAND) and "args" not in main
    names = {e["name"]: e for e in main["env"]}
    assert names[WARM_WORKER_ENV]["value"] == "lev-j7-wabc-1" and names[JOB_ENV]["value"] == "7"
    assert names[WARM_KEY_ENV]["value"] == KEY
    assert not {PAYLOAD_ENV, TASK_ENV, TIMEOUT_ENV, "A"} & set(names)  # each entry brings its own
    assert main["securityContext"]["capabilities"]["add"] == ["NET_RAW"]
    assert main["resources"] == {"limits": {"cpu": "500m"}}
    assert all("payload" not in v["name"] for v in spec.get("volumes", []))
    assert all("payload" not in m["name"] for m in main["volumeMounts"])
    assert any(m["mountPath"] == "/levrt" for m in main["volumeMounts"])  # the runtime, as a task gets it


def test_an_entrys_end_reads_as_a_task_pods_end() -> None:
    assert entry_end(0, "", signalled=False).state == "succeeded"
    assert entry_end(124, "TimedOut: ...", signalled=False).state == "timed-out"
    assert entry_end(130, "KeyboardInterrupt", signalled=True).state == "succeeded"
    failed = entry_end(1, "ValueError: nope", signalled=False)
    assert (failed.state, failed.reason, failed.detail) == ("failed", "Error", "ValueError: nope")
    assert entry_end(137, "", signalled=False).detail == "exit code 137"


def test_an_entrys_output_is_kept_whole_or_named_as_cut() -> None:
    assert log_field(b"hello\n") == {"logBytes": 6, "log": "hello\n"}
    cut = log_field(b"a" * 10 + b"tail", limit=4)
    assert cut["log"] == "tail" and cut["logBytes"] == 14 and "last 4 of 14 bytes" in cut["logCut"]


# -- the worker, with real processes -----------------------------------------------------------------


def entry_doc(task: int, call: Any, *, timeout: int | None = None, env: dict[str, str] | None = None,
              argv: list[str] | None = None, worker: str = "w") -> dict[str, Any]:
    from levrt import payload

    doc = {"_id": f"1.{task}.0", "job": 1, "task": task, "attempt": 0, "worker": worker, "state": QUEUED,
           "queued": time.time() + task / 1000, "payload": payload.dumps_call(call), "argv": argv or [],
           "env": env or {}, "collection": SCHEMA, "timeout": timeout}
    return {**doc, "mac": entry_mac(KEY, doc)}


@contextlib.contextmanager
def running(worker: Worker) -> Iterator[threading.Thread]:
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        worker.stop()
        thread.join(10)
        worker.close()


def wait_for(predicate: Any, *, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_worker_runs_each_entry_in_a_process_of_its_own_and_goes_on_after_failures() -> None:
    mongo = FakeMongo()
    queue = mongo.sync_client("mongodb://x/")["levrt"][QUEUE]
    docs = [entry_doc(0, echo(5)), entry_doc(1, boom()), entry_doc(2, nap(30), timeout=1),
            entry_doc(3, reads_env_and_argv(), env={"COLOUR": "blue"}, argv=["--fast"]), entry_doc(4, echo(6))]
    for doc in docs:
        queue.insert_one(doc)
    coll = queue.coll
    with running(Worker(queue, name="w", env=WORKER_ENV)):
        wait_for(lambda: all(d["state"] == ENDED for d in coll.docs))
    ended = {d["task"]: d for d in coll.docs}
    assert (ended[0]["exit"], ended[0]["log"]) == (0, "entry 5\n")
    assert ended[1]["exit"] == 1 and ended[1]["reason"] == "ValueError: nope" and "Traceback" in ended[1]["log"]
    assert ended[2]["exit"] == 124 and "timed out after 1 s" in ended[2]["reason"]
    assert ended[3]["log"] == "blue ['--fast']\n"  # the entry's own env and argv, not the worker's
    assert (ended[4]["exit"], ended[4]["log"]) == (0, "entry 6\n")  # after a failure and a timeout
    assert ended[2]["started"] < ended[2]["ended"]
    assert [d["task"] for d in sorted(coll.docs, key=lambda d: d["started"])] == [0, 1, 2, 3, 4]


def test_a_signal_the_job_asks_for_reaches_the_running_entry_only() -> None:
    mongo = FakeMongo()
    queue = mongo.sync_client("mongodb://x/")["levrt"][QUEUE]
    queue.insert_one(entry_doc(0, interruptible()))
    coll = queue.coll
    with running(Worker(queue, name="w", env=WORKER_ENV)):
        wait_for(lambda: coll.docs[0]["state"] == RUNNING)  # said after the first half second
        queue.update_one({"_id": "1.0.0"}, {"$set": {"signal": [2, 1]}})
        wait_for(lambda: coll.docs[0]["state"] == ENDED)
    assert coll.docs[0]["exit"] == 0 and coll.docs[0]["log"] == "interrupted\n"


def test_entries_addressed_to_another_pod_are_not_taken() -> None:
    mongo = FakeMongo()
    queue = mongo.sync_client("mongodb://x/")["levrt"][QUEUE]
    queue.insert_one(entry_doc(0, echo(1), worker="other"))
    queue.insert_one(entry_doc(1, echo(2)))
    coll = queue.coll
    with running(Worker(queue, name="w", env=WORKER_ENV)):
        wait_for(lambda: any(d["state"] == ENDED for d in coll.docs))
        time.sleep(0.3)
    assert {d["task"]: d["state"] for d in coll.docs} == {0: QUEUED, 1: ENDED}


def test_an_entry_the_job_did_not_sign_is_refused_and_not_run() -> None:
    """The queue is in the task database: any task may write it. A warm Pod runs only entries
    signed with its pool's key, which the job gave it."""
    mongo = FakeMongo()
    queue = mongo.sync_client("mongodb://x/")["levrt"][QUEUE]
    forged = entry_doc(0, echo(1))
    queue.insert_one({**forged, "mac": entry_mac("another key", forged)})
    changed = entry_doc(1, echo(2))
    queue.insert_one({**changed, "argv": ["--evil"]})  # signed, then changed
    queue.insert_one(entry_doc(2, echo(3)))
    coll = queue.coll
    with running(Worker(queue, name="w", env=WORKER_ENV)):
        wait_for(lambda: all(d["state"] == ENDED for d in coll.docs))
    ended = {d["task"]: d for d in coll.docs}
    for task in (0, 1):
        assert ended[task]["exit"] == 3 and "not signed" in ended[task]["reason"] and ended[task]["log"] == ""
    assert (ended[2]["exit"], ended[2]["log"]) == (0, "entry 3\n")


def test_an_entrys_end_waits_for_a_store_that_is_away_a_moment() -> None:
    mongo = FakeMongo()
    queue = mongo.sync_client("mongodb://x/")["levrt"][QUEUE]
    queue.insert_one(entry_doc(0, echo(1)))
    coll = queue.coll
    refusals: list[float] = []

    class Flaky:
        """The queue, whose first two writes of an end find no store."""

        def find(self, *args: Any, **kwargs: Any) -> Any:
            return queue.find(*args, **kwargs)

        def update_one(self, query: Any, update: Any) -> None:
            if update["$set"].get("state") == ENDED and len(refusals) < 2:
                refusals.append(time.monotonic())
                raise ConnectionError("store away")
            queue.update_one(query, update)

    with running(Worker(Flaky(), name="w", env=WORKER_ENV)):
        wait_for(lambda: coll.docs[0]["state"] == ENDED)
    assert len(refusals) == 2 and (coll.docs[0]["exit"], coll.docs[0]["log"]) == (0, "entry 1\n")


def test_a_worker_told_to_stop_leaves_its_running_entry_to_the_job() -> None:
    mongo = FakeMongo()
    queue = mongo.sync_client("mongodb://x/")["levrt"][QUEUE]
    queue.insert_one(entry_doc(0, nap(30)))
    coll = queue.coll
    worker = Worker(queue, name="w", env=WORKER_ENV)
    with running(worker) as thread:
        wait_for(lambda: coll.docs[0]["state"] == RUNNING)
        worker.stop()
        thread.join(10)
        assert not thread.is_alive()
    assert coll.docs[0]["state"] == RUNNING  # not ended: the job gives it to another Pod


# -- the engine's side, against the fakes ---------------------------------------------------------


def warm_pods(api: FakeApiServer) -> list[str]:
    return sorted(name for name in api.names("pods") if "-w" in name and
                  (api.get("pods", name) or {}).get("metadata", {}).get("labels", {}).get(ROLE_LABEL) == WARM_ROLE)


class SerialWorker(Worker):
    """Several workers in threads of one process take turns to run an entry: a child forked while
    another thread holds a lock (its ``print``'s) would wait on it forever. A warm Pod's worker is
    the only thread of its process that forks or prints."""

    turn = threading.Lock()

    def run_entry(self, doc: Any) -> None:
        with self.turn:
            super().run_entry(doc)


class Workers:
    """A worker thread for each warm Pod the test lets run (a kubelet that runs them)."""

    def __init__(self, api: FakeApiServer, mongo: FakeMongo) -> None:
        self.api, self.mongo = api, mongo
        self.workers: dict[str, tuple[Worker, threading.Thread]] = {}

    def run(self, name: str) -> Worker:
        pod = self.api.set_running(name)
        env = {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][-1]["env"]}
        queue = self.mongo.sync_client("mongodb://x/")["levrt"][QUEUE]
        worker = SerialWorker(queue, name=name, env={JOB_ENV: "1", WARM_KEY_ENV: env[WARM_KEY_ENV]})
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        self.workers[name] = (worker, thread)
        return worker

    def stop(self, name: str) -> None:
        worker, thread = self.workers.pop(name)
        worker.stop()
        thread.join(10)
        worker.close()

    async def keep_running(self, *, besides: set[str]) -> None:
        """Run every warm Pod the job makes from now on (but ``besides``), until cancelled."""
        while True:
            for name in warm_pods(self.api):
                if name not in self.workers and name not in besides:
                    self.run(name)
            await asyncio.sleep(0.05)

    def stop_all(self) -> None:
        for name in list(self.workers):
            self.stop(name)


@contextlib.asynccontextmanager
async def warm_job(api: FakeApiServer, mongo: FakeMongo) -> AsyncIterator[tuple[Engine, Workers]]:
    workers = Workers(api, mongo)
    try:
        with use_transport(lambda: api), use_client(mongo.client):
            async with session(settings=SETTINGS) as engine:
                yield engine, workers
    finally:
        await asyncio.to_thread(workers.stop_all)


async def test_warm_entries_share_two_pods_and_each_keeps_its_task_record_and_logs() -> None:
    api, mongo = FakeApiServer(namespaces=["levrt"]), FakeMongo()
    async with warm_job(api, mongo) as (engine, workers):
        runs = [asyncio.ensure_future(Cr(IMAGE, SCHEMA, entry=echo(i), warm=2).done()) for i in range(6)]
        failing = asyncio.ensure_future(Cr(IMAGE, SCHEMA, entry=boom(), warm=2).done())
        await api.until(lambda: len(warm_pods(api)) == 2)
        for name in warm_pods(api):
            pod = api.get("pods", name)
            assert pod is not None and pod["metadata"]["ownerReferences"][0]["kind"] == "Lease"
            workers.run(name)
        docs = await asyncio.wait_for(asyncio.gather(*runs), 30)
        with pytest.raises(TaskFailed) as failed:
            await asyncio.wait_for(failing, 30)
        assert "ValueError: nope" in str(failed.value) and "Traceback" in failed.value.logs
        assert [d.filter["_id"]["task"] for d in docs] == list(range(6))
        await engine.log_archive.close()
        archived = await engine.store.get_logs(engine.job_id, 3)
        assert archived is not None and archived["containers"]["main"]["text"] == "entry 3\n"
        assert archived["pod"] in warm_pods(api)
        assert len(warm_pods(api)) == 2  # no Pod per task
    statuses = {d["task"]: d for d in mongo["levrt_journal"]["levrt_tasks"].docs}
    assert [statuses[t]["state"] for t in range(7)] == ["succeeded"] * 6 + ["failed"]
    assert all(statuses[t]["warm"] and statuses[t]["pod"].startswith("lev-j1-w") for t in range(7))
    assert not [name for name in warm_pods(api) if not (api.get("pods", name) or {}).get("metadata", {})
                .get("deletionTimestamp")]  # the job's end deleted its warm Pods
    assert mongo["levrt"][QUEUE].docs == []


async def test_entries_of_a_lost_pod_run_on_another_and_one_that_had_started_counts_a_retry() -> None:
    api, mongo = FakeApiServer(namespaces=["levrt"]), FakeMongo()
    async with warm_job(api, mongo) as (_, workers):
        slow = asyncio.ensure_future(Cr(IMAGE, SCHEMA, entry=nap(1.0), warm=2).done())  # → Pod 0
        quick = asyncio.ensure_future(Cr(IMAGE, SCHEMA, entry=echo(1), warm=2).done())  # → Pod 1
        waiting = asyncio.ensure_future(Cr(IMAGE, SCHEMA, entry=echo(2), warm=2).done())  # → Pod 0, queued
        await api.until(lambda: len(warm_pods(api)) == 2)
        first, second = warm_pods(api)
        workers.run(first)
        queue = mongo["levrt"][QUEUE]
        await api.until(lambda: any(d["task"] == 0 and d["state"] == RUNNING for d in queue.docs), timeout=10)
        await asyncio.to_thread(workers.stop, first)  # its kubelet stops it: the Pod is evicted
        api.remove("pods", first)
        kubelet = asyncio.ensure_future(workers.keep_running(besides={first}))
        try:
            await asyncio.wait_for(asyncio.gather(slow, quick, waiting), 30)
        finally:
            kubelet.cancel()
        made = warm_pods(api)
    statuses = {d["task"]: d for d in mongo["levrt_journal"]["levrt_tasks"].docs}
    assert statuses[0]["retries"] == 1 and "was lost" in statuses[0]["retryReason"]
    assert statuses[0]["pod"] != first and statuses[0]["state"] == "succeeded"
    assert statuses[2].get("retries", 0) == 0 and statuses[2]["pod"] != first  # it had not started: no retry
    assert second in made and len(made) == 2  # the pool grew back to its size: one Pod in place of the lost


async def test_a_warm_pod_that_cannot_start_fails_the_entries_waiting_for_it() -> None:
    api, mongo = FakeApiServer(namespaces=["levrt"]), FakeMongo()
    async with warm_job(api, mongo):
        runs = [asyncio.ensure_future(Cr("nosuch:1", SCHEMA, entry=echo(i), warm=1).done()) for i in range(3)]
        await api.until(lambda: len(warm_pods(api)) == 1)
        api.set_waiting(warm_pods(api)[0], "ErrImagePull", "pull access denied")
        results = await asyncio.wait_for(asyncio.gather(*runs, return_exceptions=True), 30)
        assert all(isinstance(r, TaskFailed) and "ErrImagePull" in str(r) for r in results)
        with pytest.raises(TaskFailed, match="ErrImagePull"):  # the pool's next entries fail at once
            await Cr("nosuch:1", SCHEMA, entry=echo(9), warm=1).done()
    statuses = {d["task"]: d["state"] for d in mongo["levrt_journal"]["levrt_tasks"].docs}
    assert set(statuses.values()) == {"failed"}


async def test_an_entry_too_large_for_the_queue_is_refused_before_anything_is_made() -> None:
    api, mongo = FakeApiServer(namespaces=["levrt"]), FakeMongo()
    async with warm_job(api, mongo):
        with pytest.raises(PayloadError, match="payload limit"):
            await Cr(IMAGE, SCHEMA, entry=echo(b"x" * 9_000_000), warm=1).start()  # type: ignore[arg-type]
        await asyncio.sleep(0.1)
        assert warm_pods(api) == [] and mongo["levrt"][QUEUE].docs == []
    assert mongo["levrt_journal"]["levrt_tasks"].docs == []
