"""Retention on the real cluster (issue 25, item 5): a job's records and its artifact are collected
once the job is old enough, a fresh job's are kept, and ``levrt doctor`` reports the store's size.

Why on the cluster: the records and the artifact are written by a real task container into FerretDB,
and deleting them goes through the store's own ``$in`` queries and deletes. A job's age is its
record's end, which the test moves 40 days back rather than wait; the artifact's upload time likewise.
"""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid
from pathlib import Path

import pymongo
import pytest

from levrt._clients.store import JOB_RECORDS, journal_database
from tests.e2e.conftest import levrt_cli, run_jobs

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
FLOW = """\
import os

import levrt
from levrt import Cr, lev


@levrt.remote
def found(tag):
    with open("/tmp/report.txt", "w") as out:
        out.write(f"report {tag}\\n" * 1000)
    lev.put("report.txt", "/tmp/report.txt")
    lev.set(tag=tag)


async def main(tag: str):
    await Cr(os.environ["LEVRT_EXAMPLE_IMAGE"], "SCHEMA", entry=found(tag))
"""


def test_old_records_and_their_files_are_collected_and_fresh_ones_kept(cli_env: dict[str, str],
                                                                        tmp_path: Path) -> None:
    schema = f"test/retention-{uuid.uuid4().hex[:6]}@1.0"
    flow = tmp_path / "kept.py"
    flow.write_text(FLOW.replace("SCHEMA", schema))
    old, new = run_jobs(cli_env, f"{flow}:main", *([f"{tag}-{uuid.uuid4().hex[:6]}"] for tag in ("old", "new")))
    with pymongo.MongoClient(cli_env["LEVRT_STORE_URI"]) as client:
        db, journal = client["levrt"], client[journal_database("levrt")]
        shas = {doc["_id"]["job"]: doc["_artifacts"][0]["sha256"] for doc in db[schema].find({})}
        assert set(shas) == {old, new} and shas[old] != shas[new]
        journal[JOB_RECORDS].update_one({"_id": old}, {"$set": {"ended": time.time() - 40 * 86400}})
        long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
        db["levrt_files.files"].update_many({"_id": {"$in": list(shas.values())}}, {"$set": {"uploadDate": long_ago}})

        dry = levrt_cli(cli_env, "gc", "--records-older-than", "30d", "--schema", schema, "--dry-run")
        assert dry.returncode == 0 and "would delete 1 " in dry.stdout, dry.stdout + dry.stderr
        assert db[schema].count_documents({}) == 2
        done = levrt_cli(cli_env, "gc", "--records-older-than", "30d", "--schema", schema)
        assert done.returncode == 0, done.stderr
        assert f"deleted 1 {schema} records of " in done.stdout and "stored files nothing refers to" in done.stdout
        assert [d["_id"]["job"] for d in db[schema].find({})] == [new]
        assert db["levrt_files.files"].find_one({"_id": shas[old]}) is None
        assert db["levrt_files.chunks"].count_documents({"files_id": shas[old]}) == 0
        assert db["levrt_files.files"].find_one({"_id": shas[new]}) is not None  # a record still names it
        assert journal[JOB_RECORDS].find_one({"_id": old})["collected"]["schema"] == schema

    doctor = levrt_cli(cli_env, "doctor")
    assert re.search(r"store size\s+\S+ \S+ in \d+ collections; file storage", doctor.stdout), doctor.stdout
