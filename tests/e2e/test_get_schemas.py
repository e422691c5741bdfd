"""``levrt get`` and ``levrt schemas`` on the real store (issue 22, item 5).

Why on the cluster: the order (newest job first, tasks in order), the count behind "N of M", the
list of collections and which are levrt's own are all asked of the store itself (FerretDB on the
test cluster), whose sorting and counting the fake store only imitates. Two real jobs write
records into a schema of a namespace unique to this run, so earlier runs' records do not count.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

import levrt
from levrt import Cr, lev
from tests.e2e.conftest import BUSYBOX

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]


def row(schema: str, number: int) -> Cr:
    @levrt.remote
    def entry() -> None:
        lev.set(row=number)

    return Cr(BUSYBOX, schema, entry=entry())


def levrt_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "levrt", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)


async def test_get_newest_first_with_its_count_and_schemas_listing_it(levrt_settings: Any, kube_cluster: Any,
                                                                      cli_env: dict[str, str]) -> None:
    from levrt.run import session

    run = uuid.uuid4().hex[:8]
    schema, ns = f"levrt.test/rows-{run}@1.0", f"get-{run}"
    jobs = []
    for numbers in ((0, 1), (2,)):  # an older job of two tasks, then a newer one of one
        async with session(settings=levrt_settings, kubeconfig=kube_cluster.kubeconfig) as engine:
            with lev / ns:
                for number in numbers:  # one after the other: task 0 writes row 0
                    await row(schema, number)
            jobs.append(engine.job_id)
    older, newer = jobs

    got = await asyncio.to_thread(levrt_cli, cli_env, "get", schema, "--ns", ns, "--limit", "2")
    assert got.returncode == 0, got.stderr
    shown = [(r["_id"]["job"], r["_id"]["task"], r["row"]) for r in json.loads(got.stdout)]
    assert shown == [(newer, 0, 2), (older, 0, 0)]
    assert got.stderr == (f"2 of 3 records in '{ns}|{schema}', newest first (--limit 2; --limit 0 shows all).\n")

    latest = await asyncio.to_thread(levrt_cli, cli_env, "get", schema, "--ns", ns, "--job", "latest", "-o", "table")
    assert latest.returncode == 0, latest.stderr
    assert [line.split() for line in latest.stdout.splitlines()] == [["TASK", "row"], [f"{newer}.0", "2"]]

    typo = await asyncio.to_thread(levrt_cli, cli_env, "get", schema.replace("rows", "rwos"), "--ns", ns)
    assert typo.returncode == 1 and typo.stdout == ""
    assert f"Did you mean `levrt get {schema} --ns {ns}`?" in typo.stderr and "Schemas with records:" in typo.stderr
    forgot = await asyncio.to_thread(levrt_cli, cli_env, "get", schema)
    assert forgot.returncode == 1 and f"Did you mean `levrt get {schema} --ns {ns}`?" in forgot.stderr

    listed = await asyncio.to_thread(levrt_cli, cli_env, "schemas", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    collections = {c["collection"]: c for c in json.loads(listed.stdout)}
    assert collections[f"{ns}|{schema}"] == {"schema": schema, "ns": ns, "collection": f"{ns}|{schema}", "records": 3}
    assert not any(name.startswith("levrt_") for name in collections)  # status records, counters, files
    table = await asyncio.to_thread(levrt_cli, cli_env, "schemas")
    assert any(line.split() == [schema, ns, "3"] for line in table.stdout.splitlines()), table.stdout
