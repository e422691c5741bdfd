"""The console's read path under load (issue 23, item 7): ``GET /tools?q=`` with many published
tools and ``GET /jobs/{job}`` of a 1,000-task job, beside the raw store reads they are made of, and
the console's memory.

    python3 -m bench.console [--tools 500] [--tasks 1000] [--requests 50] [--json out/console.json]

Against the test cluster's ``levrt-console`` (the chart's Deployment; this host routes to Pod
addresses). The tools and the job are written straight into the store (they stand for ``levrt
publish`` of 500 packages and a finished 1,000-task job, which this bench is not about), under the
namespace ``bench`` and a job id of their own, and removed at the end. Each request is timed from
this machine: the API's figure is the whole request (token and right reviewed by the apiserver,
cached for 10 s, the store read, the rows built, JSON), the raw one the same store query from
pymongo. Memory: the console process's resident set (``VmRSS``) and its peak (``VmHWM``), read in
its container.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from bench.common import cluster_env, percentile, write_figures

NS = "levrt"
ACCOUNT = "bench-console"
WORDS = ("scan", "port", "http", "dns", "smb", "ldap", "brute", "fuzz", "crawl", "tls", "vuln", "banner", "web",
         "cloud", "s3", "ssh", "snmp", "sql", "xss", "recon", "subdomain", "screenshot", "wordlist", "proxy")
TACTICS = ("TA0007", "TA0043", "TA0001", "TA0006")
JOB = 990_000


def kubectl(*args: str) -> str:
    return subprocess.run(["kubectl", "-n", NS, *args], capture_output=True, text=True, check=True,
                          timeout=120).stdout


def seed_tools(db: Any, count: int) -> None:
    from levrt._shapes.registry import ToolName, tool_document

    rng = random.Random(7)
    docs = []
    for i in range(count):
        words = rng.sample(WORDS, 6)
        meta = {"desc": " ".join(words), "tags": words[:2], "cats": {"Attck": [rng.choice(TACTICS)]},
                "exports": [{"name": "run", "kind": "mode", "desc": words[2], "params": []}]}
        calls = [{"name": "run", "kind": "mode", "desc": words[2],
                  "params": [{"name": "target", "given": "name", "type": "STR", "readable": True, "optional": False,
                              "required": True}]}]
        docs.append(tool_document(ToolName("bench", f"tool{i:04d}"), version="1.0", sha256=f"{i:064x}", size=4096,
                                  meta=meta, calls=calls, publisher="bench", published=time.time()))
    db["tools"].insert_many(docs)


def seed_job(db: Any, tasks: int) -> None:
    now = time.time()
    db["levrt_jobs"].insert_one({"_id": JOB, "owner": "bench", "ownerSource": "client", "where": "laptop",
                                 "state": "succeeded", "started": now - 600, "ended": now, "lease": True,
                                 "what": {"target": "bench.py:main", "args": []}, "tasks": {"done": tasks}})
    db["levrt_tasks"].insert_many([
        {"_id": f"{JOB}.{t}", "job": JOB, "task": t, "name": f"scan.tcp(10.0.{t // 250}.{t % 250}, 1-1024)",
         "image": "busybox:1.36", "state": "succeeded", "pod": f"lev-j{JOB}-t{t}", "exitCode": 0,
         "submitted": now - 600 + t * 0.5, "updated": now - 590 + t * 0.5, "retries": 0, "maxRetries": 0}
        for t in range(tasks)])


def timed(call: Callable[[], Any], times: int) -> list[float]:
    spent = []
    for _ in range(times):
        start = time.perf_counter()
        call()
        spent.append(time.perf_counter() - start)
    return spent


def console_memory(pod: str) -> dict[str, float]:
    status = kubectl("exec", pod, "-c", "console", "--", "/levrt/bin/python3", "-c",
                     "print(open('/proc/1/status').read())")
    fields = {line.split(":")[0]: line.split(":")[1].split()[0] for line in status.splitlines() if ":" in line}
    return {"rss_mb": int(fields["VmRSS"]) / 1024, "peak_mb": int(fields["VmHWM"]) / 1024}


@dataclasses.dataclass
class Seeded:
    """The console and a viewer's token, with the bench's tools and job in the store."""

    pod: str
    url: str
    token: str
    registry: Any
    journal: Any


@contextlib.contextmanager
def seeded(tools: int, tasks: int) -> Iterator[Seeded]:
    """A viewer's token for the test cluster's console, ``tools`` published tools and a finished
    ``tasks``-task job written into the store; all of it removed afterwards."""
    import pymongo

    from levrt._clients.store import journal_database
    from levrt._core.registry import REGISTRY_DATABASE

    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(os.environ["LEVRT_STORE_URI"])
    registry, journal = client[REGISTRY_DATABASE], client[journal_database(os.environ.get("LEVRT_DB", "levrt"))]
    pod, ip = kubectl("get", "pods", "-l", "app.kubernetes.io/component=console", "-o",
                      "jsonpath={.items[0].metadata.name} {.items[0].status.podIP}").split()
    kubectl("create", "serviceaccount", ACCOUNT)
    try:
        kubectl("create", "rolebinding", ACCOUNT, "--role", "levrt-viewer", f"--serviceaccount={NS}:{ACCOUNT}")
        token = kubectl("create", "token", ACCOUNT).strip()
        print(f"progress: seeding {tools} tools and a {tasks}-task job", file=sys.stderr)
        seed_tools(registry, tools)
        seed_job(journal, tasks)
        yield Seeded(pod, f"http://{ip}:8080", token, registry, journal)
    finally:
        registry["tools"].delete_many({"namespace": "bench"})
        journal["levrt_jobs"].delete_one({"_id": JOB})
        journal["levrt_tasks"].delete_many({"job": JOB})
        subprocess.run(["kubectl", "-n", NS, "delete", "rolebinding,serviceaccount", ACCOUNT, "--ignore-not-found"],
                       capture_output=True, timeout=60)
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tools", type=int, default=500)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    cluster_env()
    import httpx

    with seeded(args.tools, args.tasks) as bench:
        registry, results = bench.registry, bench.journal
        before = console_memory(bench.pod)
        http = httpx.Client(base_url=f"{bench.url}/api/v1", headers={"Authorization": f"Bearer {bench.token}"},
                            timeout=120)
        rng = random.Random(11)
        queries = [rng.choice(WORDS) for _ in range(args.requests)]
        found = http.get("/tools", params={"q": queries[0]}).json()["count"]
        asked = iter(queries * 2)

        def api_tools() -> None:
            answer = http.get("/tools", params={"q": next(asked)})
            answer.raise_for_status()

        def raw_tools() -> None:
            list(registry["tools"].find({"$and": [{"terms": {"$regex": next(asked)}}]}))

        def api_job() -> None:
            answer = http.get(f"/jobs/{JOB}")
            answer.raise_for_status()
            assert len(answer.json()["taskList"]) == args.tasks

        def raw_job() -> None:
            assert len(list(results["levrt_tasks"].find({"job": JOB}))) == args.tasks
            results["levrt_jobs"].find_one({"_id": JOB})

        print("progress: timing", file=sys.stderr)
        figures = {"tools_api": timed(api_tools, args.requests), "tools_raw": timed(raw_tools, args.requests),
                   "job_api": timed(api_job, args.requests), "job_raw": timed(raw_job, args.requests)}
        after = console_memory(bench.pod)
    summary = {key: {"p50_ms": round(percentile(v, 0.5) * 1000, 1), "p95_ms": round(percentile(v, 0.95) * 1000, 1)}
               for key, v in figures.items()}
    result = {"tools": args.tools, "tasks": args.tasks, "requests": args.requests, "tools_per_query": found,
              "latency": summary, "console_before": before, "console_after": after}
    print(f"\n{args.requests} requests each; {args.tools} published tools (a query matches ~{found}); "
          f"a {args.tasks}-task job\n")
    print(f"{'':34}{'p50 ms':>10}{'p95 ms':>10}")
    for key, label in (("tools_api", "GET /tools?q=WORD (console)"), ("tools_raw", "  same query, raw pymongo"),
                       ("job_api", f"GET /jobs/N, {args.tasks} tasks (console)"),
                       ("job_raw", "  same reads, raw pymongo")):
        print(f"{label:34}{summary[key]['p50_ms']:>10}{summary[key]['p95_ms']:>10}")
    print(f"\nconsole memory: {before['rss_mb']:.0f} MiB before, {after['rss_mb']:.0f} MiB after "
          f"(peak {after['peak_mb']:.0f} MiB)")
    if args.json:
        write_figures(args.json, result)
    print(json.dumps(result), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
