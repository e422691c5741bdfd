"""Resume of a large workflow killed half-way, and what a cached task costs, beside the raw store reads.

Why: the issue's target is that a 1,000-task workflow whose client is killed after about half its
tasks, resumed, runs no finished task again and ends with every record once; and that the resume's
overhead per cached task (the store reads and writes that take the earlier record) is known. Three
runs of one workflow (``levrt run`` in a child process, as a user runs it):

1. the workflow, its client killed (SIGKILL) once half of its tasks succeeded;
2. ``--resume`` of it: the succeeded half is cached, the rest runs;
3. ``--resume`` of the second: every task is cached, nothing runs. Its wall time over the task
   count is the overhead per cached task, printed beside a raw loop doing the same store work
   with pymongo (read the earlier record, write it under the new job).

Run (test cluster up):  python -m bench.resume --tasks 1000 [--limit 40] [--json bench/out/resume.json]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pymongo

from bench.common import cluster_env, write_figures
from levrt._clients.store import JOB_RECORDS, TASKS, journal_database

REPO = Path(__file__).resolve().parents[1]
FLOW = """\
import os

import levrt
from levrt import Concurrent, Cr, lev


@levrt.remote
def step(i):
    lev.set(i=i)


async def main(n: int, limit: int = 40):
    async with Concurrent(limit=limit) as steps:
        for i in range(n):
            steps.start(Cr(os.environ["LEVRT_EXAMPLE_IMAGE"], "SCHEMA", entry=step(i)))
"""
JOB_LINE = re.compile(r"^job: (\d+)$", re.M)


def levrt_run(flow: Path, tasks: int, limit: int, *extra: str) -> tuple[int, float, str]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "levrt", "run", f"{flow}:main", str(tasks), f"limit={limit}",
                           "--no-progress", *extra], cwd=REPO, capture_output=True, text=True, timeout=7200)
    took = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"levrt run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    found = JOB_LINE.search(done.stderr)
    assert found, done.stderr[-2000:]
    return int(found.group(1)), took, done.stderr


def killed_half_way(flow: Path, tasks: int, limit: int, journal: Any) -> tuple[int, float, int]:
    """Run 1: the job id, the seconds until its client was killed, and how many tasks had succeeded."""
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, "-m", "levrt", "run", f"{flow}:main", str(tasks), f"limit={limit}",
                              "--no-progress"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
    assert child.stderr is not None
    try:
        job = next(int(m.group(1)) for line in child.stderr if (m := JOB_LINE.match(line.strip())))
        last = -1
        while (done := journal[TASKS].count_documents({"job": job, "state": "succeeded"})) < tasks // 2:
            if child.poll() is not None:
                raise SystemExit(f"the first run ended (exit {child.returncode}) before half of its tasks")
            if done // 100 != last // 100:
                print(f"progress: run 1, job {job}: {done}/{tasks} tasks succeeded", flush=True)
            last = done
            time.sleep(0.5)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    return job, time.monotonic() - started, journal[TASKS].count_documents({"job": job, "state": "succeeded"})


def raw_cached_reads(db: Any, schema: str, source: int, tasks: int) -> float:
    """Seconds for the store work of ``tasks`` cached tasks done straight with pymongo, one at a time."""
    records = db[schema]
    target = 10**9 + int(time.time())  # a job id no levrt job has
    started = time.monotonic()
    for task in range(tasks):
        found = records.find_one({"_id": {"job": source, "task": task}})
        if found is not None:
            records.insert_one({**found, "_id": {"job": target, "task": task}})
    took = time.monotonic() - started
    records.delete_many({"_id.job": target})
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--limit", type=int, default=40, help="tasks at once (Concurrent(limit=...))")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    cluster_env()
    os.environ.setdefault("LEVRT_EXAMPLE_IMAGE", os.environ.get("LEVRT_TEST_BUSYBOX", "busybox:1.36"))
    schema = f"bench/resume-{uuid.uuid4().hex[:6]}@1.0"
    with tempfile.TemporaryDirectory() as folder, pymongo.MongoClient(os.environ["LEVRT_STORE_URI"]) as client:
        flow = Path(folder) / "steps.py"
        flow.write_text(FLOW.replace("SCHEMA", schema))
        journal, db = client[journal_database("levrt")], client["levrt"]

        first, killed_after, succeeded = killed_half_way(flow, args.tasks, args.limit, journal)
        print(f"progress: run 1 killed after {killed_after:.0f} s with {succeeded} tasks succeeded", flush=True)
        second, second_took, _ = levrt_run(flow, args.tasks, args.limit, "--resume", str(first))
        states = [d["state"] for d in journal[TASKS].find({"job": second})]
        ids = sorted(d["i"] for d in db[schema].find({"_id.job": second}))
        print(f"progress: run 2 (resume) ended in {second_took:.0f} s", flush=True)
        third, third_took, _ = levrt_run(flow, args.tasks, args.limit, "--resume", str(second))
        third_states = [d["state"] for d in journal[TASKS].find({"job": third})]
        raw = raw_cached_reads(db, schema, second, args.tasks)
        record = journal[JOB_RECORDS].find_one({"_id": second}) or {}

    result = {
        "tasks": args.tasks, "limit": args.limit,
        "run1": {"job": first, "killed_after_s": round(killed_after, 1), "succeeded": succeeded},
        "run2": {"job": second, "wall_s": round(second_took, 1), "cached": states.count("cached"),
                 "ran": states.count("succeeded"), "other": len(states) - states.count("cached")
                 - states.count("succeeded"), "records": len(ids), "records_distinct": len(set(ids)),
                 "every_record_once": ids == list(range(args.tasks)), "counts": record.get("tasks")},
        "run3": {"job": third, "wall_s": round(third_took, 1), "cached": third_states.count("cached"),
                 "ran": third_states.count("succeeded")},
        "per_cached_task_ms": {"levrt": round(1000 * third_took / args.tasks, 2),
                               "raw_pymongo": round(1000 * raw / args.tasks, 2)},
    }
    print(f"\nresume of a {args.tasks}-task workflow killed half-way ({args.limit} at once)")
    print(f"  run 1: killed after {killed_after:.0f} s, {succeeded} tasks succeeded")
    print(f"  run 2: --resume {first}: {result['run2']['cached']} cached, {result['run2']['ran']} run "
          f"(of the first run's {succeeded} succeeded: {succeeded - result['run2']['cached']} run again), "
          f"{len(ids)} records, every one once: {result['run2']['every_record_once']}; {second_took:.0f} s")
    print(f"  run 3: --resume {second}: {result['run3']['cached']} cached, {result['run3']['ran']} run; "
          f"{third_took:.1f} s (the whole command: start, job open, close)")
    print(f"  per cached task: levrt {result['per_cached_task_ms']['levrt']} ms (whole run 3 / tasks) | raw "
          f"pymongo read+write loop {result['per_cached_task_ms']['raw_pymongo']} ms")
    if args.json:
        write_figures(args.json, result)


if __name__ == "__main__":
    main()
