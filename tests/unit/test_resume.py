"""Resume (issue 25, item 1): a Cr's content key is the same in any process for the same inputs and
differs when what it does changes; a job resuming another does not run again what succeeded there,
takes its record, and says so (``cached``) in its task status, its record and its counts.

On the fake apiserver and store; on the real cluster: ``tests/e2e/test_resumed_job.py``.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

import levrt
from levrt import Cr
from levrt._clients.store import JOB_RECORDS, TASKS, journal_database
from levrt._shapes.cachekey import content_key
from levrt.run import session
from levrt.settings import Settings
from tests.fakes import FakeApiServer, FakeMongo

REPO = Path(__file__).resolve().parents[2]
SETTINGS = Settings(store_uri="mongodb://127.0.0.1:30017/", runtime_image="levrt.local/runtime:t")
SCAN = """\
import levrt
from levrt import Cr


@levrt.remote
def scan(host, ports=(22, 80), deep=False):
    return {"host": host, "open": [p for p in ports if p % 2 == 0], "deep": deep}


def run(host, **kw):
    return Cr("busybox:1.36", "demo/scan@1.0", entry=scan(host, **kw), env=["MODE=fast"],
              files={"/etc/targets": f"{host}\\n"})
"""
KEY = """\
import sys
from levrt._cli.base import load_module
run = load_module(sys.argv[1] + "/scan.py").run  # as `levrt run scan.py` imports it: a name unique per run
from levrt._shapes.cachekey import content_key
print(content_key(run("10.0.0.1", ports=[22, 443]), {"main": {"/etc/targets": "ab" * 32}}, collection="x"))
"""

pytestmark = pytest.mark.usefixtures("laptop_env")


def key_in_a_fresh_process(folder: Path) -> str:
    done = subprocess.run([sys.executable, "-c", KEY, str(folder)], capture_output=True, text=True, check=True,
                          cwd=folder, env={**os.environ, "PYTHONPATH": str(REPO)})  # this checkout's levrt
    return done.stdout.strip()


def test_the_same_run_has_the_same_key_in_two_fresh_processes(tmp_path: Path) -> None:
    (tmp_path / "scan.py").write_text(SCAN)
    first, second = key_in_a_fresh_process(tmp_path), key_in_a_fresh_process(tmp_path)
    assert len(first) == 64 and first == second
    (tmp_path / "scan.py").write_text("# moved down a line\n" + SCAN)  # where the code is does not matter
    assert key_in_a_fresh_process(tmp_path) == first
    (tmp_path / "scan.py").write_text(SCAN.replace("p % 2 == 0", "p % 2 == 1"))  # what it does does
    assert key_in_a_fresh_process(tmp_path) != first


def test_the_key_follows_what_the_run_does_not_how_long_or_where() -> None:
    @levrt.remote
    def probe(host: str, port: int = 22) -> None:
        pass

    def key(cr: Cr, files: dict[str, str] | None = None) -> str | None:
        return content_key(cr, {"main": files or {}}, collection="demo|ts/x@1.0")

    base = key(Cr("busybox:1.36", entry=probe("a")))
    assert base is not None
    assert key(Cr("busybox:1.36", entry=probe("a"), timeout=60, retries=2, resources={"limits": {"cpu": "1"}})) == base
    assert key(Cr("busybox:1.36", entry=probe("b"))) != base
    assert key(Cr("busybox:1.36", entry=probe("a", port=23))) != base
    assert key(Cr("busybox:1.37", entry=probe("a"))) != base
    assert key(Cr("busybox:1.36", entry=probe("a"), host=True)) != base
    assert key(Cr("busybox:1.36", entry=probe("a"), env=["X=1"])) != base
    assert key(Cr("busybox:1.36", entry=probe("a")), {"/f": "0" * 64}) != base
    assert content_key(Cr("busybox:1.36", entry=probe("a")), {}, collection="other") != base
    assert key(Cr("busybox:1.36", entry=probe(object()))) is None  # cannot be keyed the same: never cached


async def test_a_resumed_job_does_not_run_again_what_succeeded(api: FakeApiServer, mongo: FakeMongo) -> None:
    api.autorun(exit_code=0)

    @levrt.remote
    def scan(host: str) -> None:
        pass

    async with session(settings=SETTINGS) as first:
        for host in ("a", "b"):
            await Cr("busybox:1.36", "demo/scan@1.0", entry=scan(host))
        done = first.job_id
    records = mongo["levrt"]["demo/scan@1.0"]
    records.insert_one_now({"_id": {"job": done, "task": 1}, "host": "b", "open": [22]})  # what task 1 stored
    created_before = len([r for r in api.requests if r.method == "POST" and r.path.endswith("/pods")])

    async with session(settings=SETTINGS, resume=done) as second:
        doc_b = await Cr("busybox:1.36", "demo/scan@1.0", entry=scan("b"))  # as in the first job: cached
        await Cr("busybox:1.36", "demo/scan@1.0", entry=scan("c"))  # new: runs
        resumed = second.job_id
    pods = [r for r in api.requests if r.method == "POST" and r.path.endswith("/pods")][created_before:]
    assert len(pods) == 1  # only the new run made a Pod
    assert await doc_b.get() == {"host": "b", "open": [22]}
    status = {d["task"]: d for d in mongo[journal_database("levrt")][TASKS].docs if d["job"] == resumed}
    assert status[0]["state"] == "cached" and status[0]["cachedFrom"] == f"{done}.1"
    assert status[1]["state"] == "succeeded" and status[1]["key"] != status[0]["key"]
    record = mongo[journal_database("levrt")][JOB_RECORDS].find_one_now({"_id": resumed})
    assert record["what"]["resume"] == done and record["tasks"] == {"cached": 1, "done": 1}

    async with session(settings=SETTINGS, resume=resumed) as third:  # a resumed job resumed: all of it is there
        await Cr("busybox:1.36", "demo/scan@1.0", entry=scan("b"))
        await Cr("busybox:1.36", "demo/scan@1.0", entry=scan("c"))
        again = third.job_id
    assert len([r for r in api.requests if r.method == "POST" and r.path.endswith("/pods")]) == created_before + 1
    status = {d["task"]: d for d in mongo[journal_database("levrt")][TASKS].docs if d["job"] == again}
    assert [status[0]["cachedFrom"], status[1]["cachedFrom"]] == [f"{resumed}.0", f"{resumed}.1"]


async def test_resuming_a_job_the_store_does_not_know_is_refused(api: FakeApiServer, mongo: FakeMongo) -> None:
    with pytest.raises(levrt.LevrtError, match="--resume 77: the store has no task of job 77"):
        async with session(settings=SETTINGS, resume=77):
            pass
    assert api.names("pods") == []


async def test_a_cr_with_cache_takes_the_newest_identical_success_within_its_age(
        api: FakeApiServer, mongo: FakeMongo) -> None:
    api.autorun(exit_code=0)

    @levrt.remote
    def lookup(host: str) -> None:
        pass

    def cr(host: str, cache: str | None = "1h") -> Cr:
        return Cr("busybox:1.36", "demo/lookup@1.0", entry=lookup(host), cache=cache)

    async with session(settings=SETTINGS) as first:
        await cr("a")
        ran = first.job_id
    async with session(settings=SETTINGS) as second:
        await cr("a")  # the same within the hour: taken
        await cr("b")  # another: runs
        await cr("a", cache=None)  # no cache: runs
        cached = second.job_id
    status = {d["task"]: d for d in mongo[journal_database("levrt")][TASKS].docs if d["job"] == cached}
    assert status[0]["state"] == "cached" and status[0]["cachedFrom"] == f"{ran}.0"
    assert status[1]["state"] == status[2]["state"] == "succeeded"
    for doc in mongo[journal_database("levrt")][TASKS].docs:  # make every success two hours old
        doc["updated"] -= dt.timedelta(hours=2)
    async with session(settings=SETTINGS) as third:
        await cr("a")  # older than its cache: runs again
        late = third.job_id
    status = {d["task"]: d for d in mongo[journal_database("levrt")][TASKS].docs if d["job"] == late}
    assert status[0]["state"] == "succeeded"


@pytest.mark.parametrize("bad", ["tomorrow", "-5m", 0, True, "400d", [1]])
def test_a_bad_cache_age_is_refused_when_the_cr_is_made(bad: object) -> None:
    with pytest.raises(levrt.LevrtError, match=r"cache="):
        Cr("busybox:1.36", cache=bad)  # type: ignore[arg-type]
    assert Cr("busybox:1.36", cache="24h").cache == 86400 and Cr("busybox:1.36", cache=90).cache == 90


async def test_the_summary_counts_cached_tasks_as_cached_not_deleted(api: FakeApiServer, mongo: FakeMongo) -> None:
    from levrt._cli.display import TaskClock, left_as, task_rows

    api.autorun(exit_code=0)

    @levrt.remote
    def scan(host: str) -> None:
        pass

    async with session(settings=SETTINGS) as first:
        await Cr("busybox:1.36", "demo/scan@1.0", entry=scan("a"))
        done = first.job_id
    async with session(settings=SETTINGS, resume=done) as second:
        await Cr("busybox:1.36", "demo/scan@1.0", entry=scan("a"))
        rows = task_rows(second, TaskClock(), left=left_as(second, None))
    assert [row.state for row in rows] == ["cached"]
