"""A task runtime's end report (``levrt.endreports``) and the engine's reading of it (``levrt._core.ends``).

Why: the report lets the engine end a task as soon as its runtime is done, with its output, instead of
waiting for the kubelet's relist and reading the log from the apiserver. So what it carries must be
the whole output, exactly what the container's log got, and it must never be believed unless the
task's own key signed it. The runtime runs here as a real process (its descriptors 1 and 2 are
redirected, which a test process must not do to itself), with a store client that keeps what it gets.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import levrt.payload
from levrt._clients.store import Store
from levrt._core.ends import ReportedEnds
from levrt.endreports import COLLECTION, report_mac, signed_report, task_key
from tests.fakes import FakeMongo

REPO = Path(__file__).resolve().parents[2]
KEY = task_key(b"s" * 32, 7, 3)

RUNNER = textwrap.dedent("""
    import json, os, sys
    from levrt.runtime import process

    kept = []

    class Collection:
        def __init__(self, name):
            self.name = name

        def insert_one(self, doc):
            kept.append([self.name, doc])

        def update_one(self, query, update, upsert=False):
            kept.append([self.name, update])

    class Database(dict):
        def __missing__(self, name):
            return Collection(name)

    class Client:
        connected = 0

        def __getitem__(self, name):
            return Database()

        def close(self):
            pass

    if os.environ.get("LOG_LIMIT"):
        process.LOG_LIMIT_BYTES = int(os.environ["LOG_LIMIT"])
    code = process.main([], connect=lambda uri: Client())
    with open(os.environ["KEPT"], "w") as fh:
        json.dump(kept, fh, default=str)
    sys.exit(code)
""")


def chatty(store: bool) -> None:
    import subprocess as sp
    import sys as s

    from levrt import lev

    print("to stdout", flush=True)
    print("to stderr", file=s.stderr, flush=True)
    sp.run(["sh", "-c", "echo from a child; echo child error >&2"], check=True)
    if store:
        lev.set(ok=1)
    print("last line")


def fails() -> None:
    from levrt import lev

    lev.set(began=1)
    print("probing")
    raise RuntimeError("target unreachable")


def leaves_a_child_writing() -> None:
    import subprocess as sp

    from levrt import lev

    lev.set(began=1)
    sp.Popen(["sh", "-c", "sleep 3; echo late"])


def run_runtime(tmp_path: Path, call: Any, *args: Any, report: bool = True,
                log_limit: int | None = None) -> tuple[subprocess.CompletedProcess[str], list[Any]]:
    payload = tmp_path / "payload"
    payload.write_bytes(levrt.payload.dumps(call, args))
    (tmp_path / "key").write_text(KEY)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "LEVRT_PAYLOAD": str(payload),
           "LEVRT_JOB": "7", "LEVRT_TASK": "3", "LEVRT_STORE_URI": "mongodb://fake/",
           "LEVRT_TERMINATION_LOG": str(tmp_path / "reason"), "KEPT": str(tmp_path / "kept.json")}
    if report:
        env |= {"LEVRT_REPORT_KEY": str(tmp_path / "key"), "LEVRT_REPORT_POD": "lev-j7-t3"}
    if log_limit is not None:
        env["LOG_LIMIT"] = str(log_limit)
    done = subprocess.run([sys.executable, "-c", RUNNER], cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=60, env=env)
    return done, json.loads((tmp_path / "kept.json").read_text())


def reports_in(kept: list[Any]) -> list[dict[str, Any]]:
    return [doc for name, doc in kept if name == COLLECTION]


def test_a_report_carries_the_exit_and_the_whole_output_the_log_got_and_is_signed(tmp_path: Path) -> None:
    done, kept = run_runtime(tmp_path, chatty, True)
    assert done.returncode == 0, done.stdout
    [report] = reports_in(kept)
    lines = ["to stdout", "to stderr", "from a child", "child error", "last line"]
    assert all(line in done.stdout.splitlines() for line in lines), done.stdout  # the container's log still gets it
    assert report["log"].splitlines() == lines  # one pipe: in the order written, stderr among stdout
    assert report["logBytes"] == len(report["log"].encode())
    assert (report["_id"], report["job"], report["task"], report["exit"]) == ("lev-j7-t3", 7, 3, 0)
    assert report["mac"] == report_mac(KEY, report)
    assert report_mac(KEY, {**report, "exit": 1}) != report["mac"]
    assert report_mac(task_key(b"t" * 32, 7, 3), report) != report["mac"]


def test_a_failed_entry_reports_its_exit_and_traceback(tmp_path: Path) -> None:
    done, kept = run_runtime(tmp_path, fails)
    assert done.returncode == 1
    [report] = reports_in(kept)
    assert report["exit"] == 1
    assert report["log"].splitlines()[0] == "probing"
    assert report["log"].rstrip().endswith("RuntimeError: target unreachable")


def test_an_entry_that_stores_nothing_does_not_connect_to_report(tmp_path: Path) -> None:
    done, kept = run_runtime(tmp_path, chatty, False)
    assert done.returncode == 0, done.stdout
    assert kept == []
    assert "last line" in done.stdout


def test_output_over_the_limit_is_not_reported_but_still_logged(tmp_path: Path) -> None:
    done, kept = run_runtime(tmp_path, chatty, True, log_limit=20)
    assert done.returncode == 0
    assert reports_in(kept) == [] and [name for name, _ in kept] == ["default"]
    assert "last line" in done.stdout


def test_output_still_held_open_by_a_child_is_not_reported_as_whole(tmp_path: Path) -> None:
    done, kept = run_runtime(tmp_path, leaves_a_child_writing)
    assert done.returncode == 0
    assert reports_in(kept) == []


def test_a_runtime_without_a_key_reports_nothing(tmp_path: Path) -> None:
    done, kept = run_runtime(tmp_path, chatty, True, report=False)
    assert done.returncode == 0
    assert reports_in(kept) == [] and len(kept) == 1


def signed(task: int, pod: str, *, exit: int = 0, secret: bytes = b"s" * 32) -> dict[str, Any]:
    return signed_report(task_key(secret, 7, task), pod=pod, job=7, task=task, exit=exit, output=b"ok\n")


async def test_the_engine_takes_only_reports_its_tasks_keys_signed(mongo: FakeMongo,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    store = Store.connect("mongodb://store:27017/")
    ends = ReportedEnds(store, job=7, secret=b"s" * 32)
    ends.expect("lev-j7-t1")
    ends.expect("lev-j7-t2")
    reports = store.collection(COLLECTION)
    await reports.insert_one(signed(1, "lev-j7-t1"))
    await reports.insert_one(signed(2, "lev-j7-t2", secret=b"x" * 32))  # forged by another task
    await reports.insert_one(signed(5, "lev-j7-t5"))  # not expected (the previous orchestration Pod's)
    report = await asyncio.wait_for(ends.reported("lev-j7-t1"), 5)
    assert report["exit"] == 0 and report["log"] == "ok\n"
    for _ in range(100):
        if not [doc async for doc in reports.find({})]:
            break
        await asyncio.sleep(0.02)
    assert [doc async for doc in reports.find({})] == []  # each report read is deleted
    assert not ends.reported("lev-j7-t2").done()
    assert "lev-j7-t2 (job 7) is not signed" in caplog.text
    assert ends.take("lev-j7-t1") == report and ends.take("lev-j7-t2") is None
    ends.expect("lev-j7-t4")
    await reports.insert_one(signed(4, "lev-j7-t4"))
    await ends.look("lev-j7-t4")  # its Pod ended first: one read now, not the next poll
    assert ends.reported("lev-j7-t4").done()
    await reports.insert_one(signed(3, "lev-j7-t3"))
    await ends.close()
    assert [doc async for doc in reports.find({})] == []  # the job's end deletes what is left
