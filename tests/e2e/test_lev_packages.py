"""The example tool packages in the levrt 1.x layout (``examples/lev/demo``), on the real cluster.

Why: a 1.x package is more than its metadata. Its entries live in ``lev.demo.*`` modules the
task container cannot import (they travel by value), use ``ctx.update`` and ``ctx.set``, take an
optional file (``files={"/words": None}`` mounts nothing), and its workflow imports a sibling
relatively and another tool through ``lev.*``, and writes the job's own record with
``await lev.doc.set(...)``. These tests run one mode's pair and the workflow, in this process
and through ``levrt run FILE:FUNC``, and read back what the store holds.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from levrt import Cr, lev
from tests.e2e.conftest import BUSYBOX

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``lev.demo.*`` importable, with the test cluster's busybox; forgotten afterwards."""
    monkeypatch.setenv("LEVRT_EXAMPLE_IMAGE", BUSYBOX)
    monkeypatch.setattr(sys, "path", [str(EXAMPLES), *sys.path])
    yield
    for name in [n for n in sys.modules if n == "lev" or n.startswith("lev.")]:
        del sys.modules[name]


async def records(job: Any, schema: str) -> list[dict[str, Any]]:
    cursor = job.store.collection(schema).find({"_id.job": job.job_id})
    return [doc async for doc in cursor]


async def test_modes_of_the_example_package(job: Any, example: None) -> None:
    scan = importlib.import_module("lev.demo.portscan.scan")
    util = importlib.import_module("lev.demo.portscan.util")
    target = await Cr(BUSYBOX, cmd=["sh", "-c", util.TARGET_SCRIPT], ports=list(util.TARGET_PORTS)).start()
    try:
        ports = await scan.tcp(target.host, "2220-2225,8079-8081")
        assert ports.coll.name == "demo/ports@1.0"
        assert await ports.get() == {"target": target.host, "open": [2222, 8080], "scanned": 9}  # ctx.update

        with_words = await scan.paths(target.host, 8080, words=b"index.html\nrobots.txt\nmissing\n")
        without = await scan.paths(target.host, 8080)  # words=None: no file at /words
    finally:
        await target.signal()
        await target.done()
    got = await with_words.get()
    assert (got["wordlist"], got["tried"]) == ("/words", 3)
    assert got["found"] == [{"path": "/index.html", "status": 200}, {"path": "/robots.txt", "status": 200}]
    assert (await without.get())["wordlist"] == "built-in"
    stored = await records(job, "demo/paths@1.0")
    assert sorted(r["wordlist"] for r in stored) == ["/words", "built-in"]


def check_summary(summary: dict[str, Any]) -> None:
    assert summary["open"] == [2222, 8080], summary
    assert summary["banners"]["2222"] == "SSH-2.0-levrt-demo"
    assert summary["banners"]["8080"].startswith("HTTP/1.")
    assert summary["paths"] == ["/index.html", "/robots.txt"]


async def test_workflow_of_the_example_package(job: Any, example: None) -> None:
    flows = importlib.import_module("lev.demo.portscan.flows")
    summary = await flows.sweep("2")
    check_summary(summary)
    assert summary["job"] == job.job_id
    # One record per scanned range (ctx.update), one per banner (ctx.set twice), one path probe.
    ports = await records(job, "demo/ports@1.0")
    assert sorted(r["scanned"] for r in ports) == [50, 50, 50, 50]
    assert sorted(p for r in ports for p in r["open"]) == [2222, 8080]
    banners = await records(job, "demo/banner@1.0")
    assert sorted(r["port"] for r in banners) == [2222, 8080]
    assert {r["port"]: r["banner"] for r in banners}[2222] == "SSH-2.0-levrt-demo"
    # The workflow's own progress and result, in the job's record (client-side lev.doc).
    job_record = await lev.doc.get()
    assert job_record["stage"] == "done" and job_record["open"] == [2222, 8080]


@pytest.mark.parametrize("where", ["here", "in-cluster"])
def test_levrt_run_a_workflow_file_inside_the_package(kube_cluster: Any, cli_env: dict[str, str], where: str) -> None:
    """From this machine, and in an orchestration Pod that gets the whole lev/ tree shipped."""
    env = dict(cli_env, LEVRT_EXAMPLE_IMAGE=BUSYBOX)

    def levrt(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "levrt", *args], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=300)

    placement = ["--in-cluster", "-e", f"LEVRT_EXAMPLE_IMAGE={BUSYBOX}"] if where == "in-cluster" else []
    run = levrt("run", "examples/lev/demo/portscan/flows.py:sweep", "1", "--no-progress", *placement)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    summary = json.loads(out[out.index("{"):out.rindex("}") + 1])
    check_summary(summary)
    get = levrt("get", "demo/ports@1.0", "--job", str(summary["job"]))
    assert get.returncode == 0, get.stderr
    stored = json.loads(get.stdout)
    assert [(r["scanned"], r["open"]) for r in sorted(stored, key=lambda r: r["_id"]["task"])] == [
        (100, [2222]), (100, [8080])]
