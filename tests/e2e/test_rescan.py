"""What changed since the last run, on the real cluster (issue 25, item 4): the same scan run twice
from the CLI (a host added, a port changed, a host gone), ``levrt diff`` against the previous run it
finds itself, the counts kept in the job's record, and ``levrt.changes`` from the SDK.

Why on the cluster: the records are written by real task containers into FerretDB, and the earlier
job is found with the store's own range query over job records.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pymongo
import pytest

import levrt
from levrt._clients.store import JOB_RECORDS, journal_database
from tests.e2e.conftest import levrt_cli, run_jobs

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
FLOW = """\
import os

import levrt
from levrt import Concurrent, Cr, lev


@levrt.remote
def found(host, port):
    lev.set(host=host, port=int(port))


async def main(hosts: list[str]):
    async with Concurrent() as c:
        for item in hosts:
            host, _, port = item.partition(":")
            c.start(Cr(os.environ["LEVRT_EXAMPLE_IMAGE"], "SCHEMA", entry=found(host, port)))
"""


async def test_a_rescan_shows_what_is_new_by_key(cli_env: dict[str, str], tmp_path: Path, levrt_settings: Any,
                                                 kube_cluster: Any) -> None:
    schema = f"test/changes-{uuid.uuid4().hex[:6]}@1.0"
    flow = tmp_path / "rescan.py"
    flow.write_text(FLOW.replace("SCHEMA", schema))
    first, second = run_jobs(cli_env, f"{flow}:main", ["a:22,b:80,c:443"], ["a:22,b:8080,d:21"])
    diff = levrt_cli(cli_env, "diff", schema, "--job", str(second), "--key", "host")
    assert diff.returncode == 0, diff.stderr
    lines = diff.stdout.splitlines()
    assert lines[0] == f"job {second} against job {first} ({schema}, key host): 1 added, 1 removed, 1 changed"
    assert sorted(lines[1:]) == ['+ host="d"  {"host": "d", "port": 21}', '- host="c"  {"host": "c", "port": 443}',
                                 '~ host="b"  port: 80 -> 8080']
    with pymongo.MongoClient(cli_env["LEVRT_STORE_URI"]) as store:
        record = store[journal_database("levrt")][JOB_RECORDS].find_one({"_id": second})
    assert record is not None and record["changes"] == [
        {"schema": schema, "ns": None, "since": first, "key": ["host"], "added": 1, "removed": 1, "changed": 1,
         "unkeyed": 0}]
    found = await levrt.changes(schema, key=["host"], job=second, settings=levrt_settings,
                                kubeconfig=kube_cluster.kubeconfig)
    assert [r["host"] for r in found.added] == ["d"] and [c["key"] for c in found.changed] == [{"host": "b"}]
    as_json = json.loads(levrt_cli(cli_env, "diff", schema, "--job", str(second), "--key", "host,port", "-o",
                             "json").stdout)
    assert as_json["since"] == first and as_json["counts"] == {"added": 2, "removed": 2, "changed": 0, "unkeyed": 0}
