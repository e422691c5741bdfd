"""What changed since the last run (issue 25, item 4): records compared by key, the earlier job
found by tool or workflow, the counts kept in the newer job's record; ``levrt diff`` and
``levrt.changes`` on the fake store. The same on the real cluster: ``tests/e2e/test_rescan.py``."""

from __future__ import annotations

import json
from typing import Any

import pytest

import levrt
from levrt._cli import main
from levrt._clients.store import JOB_RECORDS, journal_database
from levrt._shapes.changes import compare, parse_key, workflow_of
from tests.fakes import FakeMongo

SCHEMA = "demo/scan@1.0"
SWEEP = {"target": "flows.py:sweep", "args": []}

pytestmark = pytest.mark.usefixtures("laptop_env")


def test_records_are_matched_by_key_and_levrts_own_fields_are_left_out() -> None:
    before = [{"_id": {"job": 1, "task": 0}, "host": "a", "port": 22, "_artifacts": [{"sha256": "1"}]},
              {"_id": {"job": 1, "task": 1}, "host": "b", "port": 80},
              {"_id": {"job": 1, "task": 2}, "host": "c", "port": 443}]
    after = [{"_id": {"job": 2, "task": 5}, "host": "a", "port": 22, "_artifacts": [{"sha256": "2"}]},
             {"_id": {"job": 2, "task": 0}, "host": "b", "port": 8080},
             {"_id": {"job": 2, "task": 1}, "host": "d", "port": 21},
             {"_id": {"job": 2, "task": 2}, "port": 1}]
    found = compare(before, after, ("host",))
    assert found.added == [{"host": "d", "port": 21}] and found.removed == [{"host": "c", "port": 443}]
    assert found.changed == [{"key": {"host": "b"}, "before": {"host": "b", "port": 80},
                              "after": {"host": "b", "port": 8080}, "fields": ["port"]}]
    assert found.counts() == {"added": 1, "removed": 1, "changed": 1, "unkeyed": 1}
    # Two fields, a nested one: the same records under another key.
    nested = compare([{"h": {"ip": "a"}, "p": 1}], [{"h": {"ip": "a"}, "p": 1}, {"h": {"ip": "a"}, "p": 2}],
                     ("h.ip",))
    assert nested.counts()["changed"] == 1 and nested.changed[0]["after"] == [{"h": {"ip": "a"}, "p": 1},
                                                                              {"h": {"ip": "a"}, "p": 2}]


def test_keys_are_checked_and_a_published_tool_is_the_same_workflow_at_any_version() -> None:
    assert parse_key("host, port") == ("host", "port")
    for bad in ("", "host,", "a..b", "_id", "_artifacts.name"):
        with pytest.raises(ValueError, match="--key"):
            parse_key(bad)
    assert workflow_of({"target": "demo/nmap@1.0:scan.tcp", "tool": "demo/nmap"}) == "demo/nmap:scan.tcp"
    assert workflow_of({"target": "demo/nmap@2.0:scan.tcp", "tool": "demo/nmap"}) == "demo/nmap:scan.tcp"
    assert workflow_of({"target": "flows.py:sweep", "args": ["x"]}) == "flows.py:sweep"
    assert workflow_of(None) is None


def seed(mongo: FakeMongo) -> None:
    """Jobs 1 (another workflow), 2 and 3 (the sweep), 4 (the sweep, wrote nothing): records of 1-3."""
    journal = mongo[journal_database("levrt")][JOB_RECORDS]
    for job, what in ((1, {"target": "other.py:main"}), (2, SWEEP), (3, SWEEP), (4, SWEEP)):
        journal.insert_one_now({"_id": job, "owner": "tester", "state": "succeeded", "what": what})
    records = mongo["levrt"][SCHEMA]
    for job, hosts in ((1, {"a": 1}), (2, {"a": 22, "b": 80}), (3, {"a": 22, "b": 8080, "c": 443})):
        for task, (host, port) in enumerate(hosts.items()):
            records.insert_one_now({"_id": {"job": job, "task": task}, "host": host, "port": port})


def test_levrt_diff_compares_with_the_previous_run_of_the_same_workflow(
        mongo: FakeMongo, capsys: pytest.CaptureFixture[str]) -> None:
    seed(mongo)
    assert main(["diff", SCHEMA, "--job", "3", "--key", "host"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"job 3 against job 2 ({SCHEMA}, key host): 1 added, 0 removed, 1 changed"
    assert out[1] == '+ host="c"  {"host": "c", "port": 443}'
    assert out[2] == '~ host="b"  port: 80 -> 8080'
    [kept] = mongo[journal_database("levrt")][JOB_RECORDS].find_one_now({"_id": 3})["changes"]
    assert kept == {"schema": SCHEMA, "ns": None, "since": 2, "key": ["host"], "added": 1, "removed": 0,
                    "changed": 1, "unkeyed": 0}
    assert main(["diff", SCHEMA, "--job", "3", "--since", "1", "--key", "host", "-o", "json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["since"] == 1 and answer["counts"]["added"] == 2 and answer["counts"]["changed"] == 1
    [kept] = mongo[journal_database("levrt")][JOB_RECORDS].find_one_now({"_id": 3})["changes"]
    assert kept["since"] == 1  # one entry per schema: the newest comparison


def test_levrt_diff_says_what_is_wrong(mongo: FakeMongo, capsys: pytest.CaptureFixture[str]) -> None:
    seed(mongo)
    assert main(["diff", SCHEMA, "--job", "2", "--key", "host"]) == 1
    assert "No earlier job of the same tool or workflow wrote demo/scan@1.0 before job 2" in capsys.readouterr().err
    assert main(["diff", SCHEMA, "--job", "9", "--key", "host"]) == 1
    assert "No job 9" in capsys.readouterr().err
    assert main(["diff", SCHEMA, "--job", "3", "--key", "_id"]) == 2
    assert main(["diff", "Not A Schema", "--job", "3", "--key", "host"]) == 2
    assert main(["diff", SCHEMA, "--job", "3", "--since", "3", "--key", "host"]) == 1
    assert "is job 3 itself" in capsys.readouterr().err


async def test_the_sdk_gives_the_same_changes(mongo: FakeMongo) -> None:
    seed(mongo)
    found: Any = await levrt.changes(SCHEMA, key="host", job=3)
    assert [r["host"] for r in found.added] == ["c"] and found.counts()["changed"] == 1
    assert isinstance(found, levrt.Changes)
    with pytest.raises(levrt.LevrtError, match="not a schema"):
        await levrt.changes("nope", key="host", job=3)


def test_the_console_shows_the_counts_on_the_job_page() -> None:
    from levrt._console.pages import job_page

    view = {"job": 3, "state": "succeeded", "what": SWEEP, "owner": "tester", "where": "laptop", "taskList": [],
            "changes": [{"schema": SCHEMA, "ns": None, "since": 2, "key": ["host"], "added": 1, "removed": 0,
                         "changed": 1}]}
    page = job_page(view, results="", user="tester", csrf="x")
    assert "What changed since an earlier run" in page and '<a href="/jobs/2">2</a>' in page
    assert "<td class=num>1</td><td class=num>0</td><td class=num>1</td>" in page
