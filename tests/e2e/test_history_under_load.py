"""The job history holds under load (issue 22, item 8): 5,000 tasks dispatched on KWOK fake nodes
leave 5,000 status records, each in its final state, while the store answers reads throughout.

Why on the cluster, at full size: the two faults this guards against showed only there and only at
scale. A status write of 100 statements in one request took every connection FerretDB had and the
store answered nothing until restarted; and FerretDB's SQLite backend read every record of a
collection for each lookup by ``_id``, so at a few thousand tasks the status writer fell minutes
behind and the job ended saying records were "not recorded". The dispatch is ``bench.dispatch``'s
levrt side (fake nodes, KWOK playing their kubelet); this test adds a reader beside it, as
``levrt ps`` would be run by someone watching, and checks the store's records afterwards.
"""

from __future__ import annotations

import itertools
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pymongo

from levrt._clients.store import JOB_RECORDS, TASKS

REPO = Path(__file__).resolve().parents[2]
TASK_COUNT = 5000
CLIENT_QPS = 150
"""The client's rate limit (default 50 requests/s, which alone holds a dispatch to ~12 tasks/s): three
times as many status changes a second for the store to take, and a shorter test."""
READ_TIMEOUT_MS = 20_000
"""A read the store has not answered within this is a failure (the socket timeout of levrt's own client)."""


class Reader(threading.Thread):
    """Reads what ``levrt ps`` reads, once a second, until stopped: the newest job records, and the
    newest job's task count. Every read is timed; a read that fails or times out is kept."""

    def __init__(self, uri: str) -> None:
        super().__init__(daemon=True)
        self.client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            uri, serverSelectionTimeoutMS=5000, socketTimeoutMS=READ_TIMEOUT_MS, retryReads=False)
        self.seconds: list[float] = []
        self.answered: list[float] = []
        """When each read was answered (``time.monotonic``)."""
        self.failures: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        db = self.client["levrt_journal"]
        while not self.stopping.is_set():
            began = time.perf_counter()
            try:
                newest = list(db[JOB_RECORDS].find({}, {"_id": 1}).sort([("_id", -1)]).limit(5))
                if newest:
                    db[TASKS].count_documents({"job": newest[0]["_id"]})
                self.seconds.append(time.perf_counter() - began)
                self.answered.append(time.monotonic())
            except Exception as exc:
                self.failures.append(f"{time.strftime('%H:%M:%S')} after {time.perf_counter() - began:.1f}s: "
                                     f"{type(exc).__name__}: {str(exc)[:200]}")
            self.stopping.wait(1.0)
        self.client.close()


def test_5000_tasks_leave_5000_status_records_while_the_store_answers_reads(
        cli_env: dict[str, str], tmp_path: Path) -> None:
    reader = Reader(cli_env["LEVRT_STORE_URI"])
    reader.start()
    out = tmp_path / "dispatch.json"
    began = time.monotonic()
    try:
        run = subprocess.run([sys.executable, "-m", "bench.dispatch", "--n", str(TASK_COUNT), "--sides", "levrt",
                              "--qps", str(CLIENT_QPS), "--burst", str(2 * CLIENT_QPS), "--json", str(out)],
                             cwd=REPO, env=cli_env, capture_output=True, text=True, timeout=1800)
    finally:
        reader.stopping.set()
        reader.join(READ_TIMEOUT_MS / 1000 + 10)
    ended = time.monotonic()
    assert run.returncode == 0, run.stderr[-4000:]
    figures = json.loads(out.read_text())["n"][str(TASK_COUNT)]["levrt"]
    assert figures["tasks"] == TASK_COUNT
    unrecorded = [w for w in figures["warnings"] if "status" in w]
    assert unrecorded == [], unrecorded[:5]

    with pymongo.MongoClient(cli_env["LEVRT_STORE_URI"], socketTimeoutMS=60_000) as client:
        tasks = client["levrt_journal"][TASKS]
        job = figures["job"]
        states: dict[str, int] = {}
        for found in tasks.find({"job": job}, {"state": 1}):
            states[found["state"]] = states.get(found["state"], 0) + 1
    assert states == {"succeeded": TASK_COUNT}, states

    assert reader.failures == [], reader.failures[:5]
    # Answered throughout: never longer without an answer than one read may take (the client's
    # timeout) plus the reader's pause. Not a speed target: a read past the timeout fails anyway.
    times = [began, *reader.answered, ended]
    longest = max(later - earlier for earlier, later in itertools.pairwise(times))
    assert longest <= READ_TIMEOUT_MS / 1000 + 2, f"the reader went {longest:.0f} s without an answer"
    reads = sorted(reader.seconds)
    print(f"\n{TASK_COUNT} tasks in {figures['wall']:.0f} s ({figures['rate']:.1f}/s), "
          f"{figures['status_writes']} status writes; {len(reads)} reads beside them: "
          f"median {statistics.median(reads):.2f} s, p95 {reads[int(0.95 * (len(reads) - 1))]:.2f} s, "
          f"max {reads[-1]:.2f} s", file=sys.stderr)
