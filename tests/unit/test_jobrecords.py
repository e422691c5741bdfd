"""Job records (``levrt_jobs``): written when a job opens and when it ends, read by ``levrt ps``.

Why: a job's Pods, its Lease and its client all go; what ran, whose it was and how it ended must
stay (issue 22: "a failed detached run leaves no trace", "``levrt ps`` lists tasks, never jobs").
Against the fake apiserver (which answers a SelfSubjectReview as ``tester``) and the fake store.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

import levrt
from levrt import Cr
from levrt._cli import main
from levrt._cli import run as run_cli
from levrt._clients.kube import Kube, use_transport
from levrt._clients.lease import lease_object
from levrt._clients.store import JOB_RECORDS
from levrt._core import jobrecords
from levrt._core.engine import session
from levrt._shapes import jobrecord
from levrt._stored import placeholder_of
from levrt.podenv import DETACHED_ENV, OWNER_ENV, POD_NAME_ENV
from levrt.settings import Settings
from tests.fakes import FakeApiServer, FakeMongo

STORE = "mongodb://127.0.0.1:30017/"
SETTINGS = Settings(store_uri=STORE, runtime_image="levrt.local/runtime:t")
WHAT = {"target": "flows.py:sweep", "args": ["10.0.0.0/24", "ports=22"]}


pytestmark = pytest.mark.usefixtures("laptop_env")


def job_record(mongo: FakeMongo, job: int = 1) -> dict[str, Any]:
    found = mongo["levrt_journal"][JOB_RECORDS].find_one_now({"_id": job})
    assert found is not None, f"no record of job {job}"
    return found


# -- written at open and at the end ------------------------------------------------------------------


async def test_a_job_that_succeeds_records_who_what_where_its_tasks_and_its_value(
        api: FakeApiServer, mongo: FakeMongo) -> None:
    api.autorun(exit_code=0)
    async with session(settings=SETTINGS, what=WHAT) as engine:
        opened = job_record(mongo)
        assert (opened["state"], opened["owner"], opened["ownerSource"], opened["where"]) == (
            "running", "tester", "selfsubjectreview", "laptop")
        assert opened["what"] == WHAT and opened["ended"] is None and opened["lease"] is True
        await Cr("busybox:1.36")
        await Cr("busybox:1.36")
        engine.job_record.value = {"hosts": 2}
    record = job_record(mongo)
    assert (record["state"], record["tasks"], record["value"], record["error"]) == (
        "succeeded", {"done": 2}, {"hosts": 2}, None)
    assert record["started"] <= record["ended"] <= time.time()


async def test_a_failed_orchestration_records_its_traceback_and_its_tasks(
        api: FakeApiServer, mongo: FakeMongo) -> None:
    api.autorun(exit_code=3)

    async def scan() -> None:
        try:
            await Cr("busybox:1.36")
        except levrt.TaskFailed:
            raise RuntimeError("target unreachable: 10.0.0.99") from None

    with pytest.raises(RuntimeError):
        async with session(settings=SETTINGS, what=WHAT):
            await scan()
    record = job_record(mongo)
    assert (record["state"], record["tasks"], record["value"]) == ("failed", {"failed": 1}, None)
    assert record["error"].startswith("Traceback (most recent call last):")
    assert "in scan" in record["error"] and record["error"].endswith("RuntimeError: target unreachable: 10.0.0.99")


async def test_a_cancelled_job_records_its_unfinished_tasks_as_cancelled(api: FakeApiServer, mongo: FakeMongo) -> None:
    with pytest.raises(asyncio.CancelledError):
        async with session(settings=SETTINGS, what=WHAT):
            starting = asyncio.create_task(Cr("busybox:1.36").start())
            await api.until(lambda: api.get("pods", "lev-j1-t0") is not None)
            api.set_running("lev-j1-t0")
            await starting
            raise asyncio.CancelledError
    record = job_record(mongo)
    assert (record["state"], record["tasks"], record["error"]) == ("cancelled", {"cancelled": 1}, None)


async def test_a_large_value_is_stored_apart(api: FakeApiServer, mongo: FakeMongo) -> None:
    big = "x" * (jobrecord.MAX_INLINE_VALUE + 10)
    async with session(settings=SETTINGS) as engine:
        engine.job_record.value = big
    found = placeholder_of(job_record(mongo)["value"])
    assert found is not None and found[1] == len(json.dumps(big))


def test_values_are_kept_as_json_or_as_their_repr() -> None:
    assert jobrecord.inline_value({"a": [1, 2]}) == ({"a": [1, 2]}, None)
    assert jobrecord.inline_value({1, 2}) == ("{1, 2}", None)


async def test_an_identity_the_apiserver_refuses_falls_back_to_the_kubeconfig_user(
        api: FakeApiServer, tmp_path: Path) -> None:
    api.identity = None
    config = tmp_path / "config"
    config.write_text("current-context: kind\ncontexts:\n- name: kind\n  context: {cluster: kind, user: alice}\n")
    with use_transport(lambda: api):
        async with await Kube.connect() as kube:
            assert await jobrecords.identify(kube, kubeconfig=str(config)) == jobrecords.Identity(
                "alice", "kubeconfig")
            assert await jobrecords.identify(kube, kubeconfig=str(tmp_path / "none")) == jobrecords.Identity(
                "unknown", "unknown")


def test_an_in_cluster_run_ships_its_clients_identity_as_the_jobs_owner(
        api: FakeApiServer, mongo: FakeMongo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flows = tmp_path / "flows.py"
    flows.write_text("async def main() -> None:\n    pass\n")
    shipped: list[dict[str, Any]] = []
    monkeypatch.setattr(run_cli, "run_in_cluster", lambda *a, **kw: shipped.append(kw["env"]) or 0)
    assert main(["run", str(flows), "--detach"]) == 0
    assert shipped[0][OWNER_ENV] == "tester"
    # In the Pod: its own account answers the review; the record's owner is the client's.
    pod_env = {POD_NAME_ENV: "lev-orch-1", OWNER_ENV: "alice"}
    with use_transport(lambda: api):
        async def who() -> jobrecords.Identity:
            async with await Kube.connect() as kube:
                return await jobrecords.identify(kube, environ=pod_env)

        assert asyncio.run(who()) == jobrecords.Identity("alice", "client")


def test_where_comes_from_the_orchestration_pods_environment() -> None:
    assert jobrecords.where_now({}) == "laptop"
    assert jobrecords.where_now({POD_NAME_ENV: "lev-orch-1"}) == "in-cluster"
    assert jobrecords.where_now({POD_NAME_ENV: "lev-orch-1", DETACHED_ENV: "1"}) == "detached"


def test_the_sdk_records_the_coroutines_qualified_name(api: FakeApiServer, mongo: FakeMongo) -> None:
    async def nightly() -> int:
        return 7

    assert levrt.run(nightly()) == 7
    record = job_record(mongo)
    assert record["what"] == {"target": nightly.__qualname__, "args": []} and record["value"] == 7


def test_a_running_record_whose_lease_is_gone_reads_as_lost() -> None:
    running = {"_id": 4, "state": "running", "lease": True}
    assert jobrecord.read_state(running, lease_gone=True) == "lost"
    assert jobrecord.read_state(running, lease_gone=False) == "running"
    assert jobrecord.read_state({**running, "lease": False}, lease_gone=True) == "running"  # never had one
    assert jobrecord.read_state({**running, "state": "failed"}, lease_gone=True) == "failed"


def test_task_counts_read_in_a_fixed_order() -> None:
    assert jobrecord.tasks_text({"failed": 1, "done": 12}) == "12 done, 1 failed"
    assert jobrecord.tasks_text({}) == "-"


# -- levrt run ---------------------------------------------------------------------------------------


def test_levrt_run_records_the_target_and_its_arguments(api: FakeApiServer, mongo: FakeMongo, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    flows = tmp_path / "flows.py"
    flows.write_text("from levrt import Cr\n\nasync def sweep(net: str, times: int = 1) -> dict:\n"
                     "    await Cr('busybox:1.36')\n    return {'net': net, 'times': times}\n")
    api.autorun(exit_code=0)
    assert main(["run", f"{flows}:sweep", "10.0.0.0/24", "times=2", "--no-progress"]) == 0
    record = job_record(mongo)
    assert record["what"] == {"target": f"{flows}:sweep", "args": ["10.0.0.0/24", "times=2"]}
    assert (record["state"], record["tasks"], record["value"]) == ("succeeded", {"done": 1},
                                                                   {"net": "10.0.0.0/24", "times": 2})


def test_a_detached_run_whose_import_fails_in_the_pod_is_a_failed_job(
        api: FakeApiServer, mongo: FakeMongo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    flows = tmp_path / "broken.py"
    flows.write_text("import no_such_module_here\n\nasync def main() -> None:\n    pass\n")
    monkeypatch.setenv(DETACHED_ENV, "1")
    assert main(["run", str(flows), "--no-progress"]) != 0
    record = job_record(mongo)
    assert (record["state"], record["where"], record["tasks"]) == ("failed", "detached", {})
    assert "needs the module 'no_such_module_here'" in record["error"]


def test_a_detached_run_with_a_bad_argument_in_the_pod_is_a_failed_job(
        api: FakeApiServer, mongo: FakeMongo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flows = tmp_path / "flows.py"
    flows.write_text("async def main(times: int) -> None:\n    pass\n")
    monkeypatch.setenv(DETACHED_ENV, "1")
    assert main(["run", str(flows), "times=two", "--no-progress"]) == 2
    record = job_record(mongo)
    assert record["state"] == "failed" and "times='two' is not a whole number" in record["error"]


def test_a_laptop_run_that_fails_before_its_job_opens_records_nothing(
        api: FakeApiServer, mongo: FakeMongo, tmp_path: Path) -> None:
    flows = tmp_path / "flows.py"
    flows.write_text("async def main(times: int) -> None:\n    pass\n")
    assert main(["run", str(flows), "times=two"]) == 2
    assert mongo["levrt_journal"][JOB_RECORDS].docs == [] and api.requests == []


# -- levrt ps ----------------------------------------------------------------------------------------


def put_job(mongo: FakeMongo, job: int, state: str, *, owner: str = "tester", age: float = 600,
            tasks: dict[str, int] | None = None, **fields: Any) -> None:
    now = time.time()
    record = jobrecord.opening_fields(job=job, owner=owner, owner_source="selfsubjectreview", groups=(),
                                      what={"target": "flows.py:sweep", "args": [f"net{job}"]}, where="laptop",
                                      started=now - age, lease=True)
    if state != "running":
        record.update(jobrecord.closing_fields(state=state, ended=now - age + 65, tasks=tasks or {"done": 1},
                                               error=None, value=None))
    mongo["levrt_journal"][JOB_RECORDS].insert_one_now({**record, **fields})


def out_err(capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_ps_lists_your_jobs_newest_first(api: FakeApiServer, mongo: FakeMongo,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    put_job(mongo, 1, "succeeded", tasks={"done": 12, "failed": 1})
    put_job(mongo, 2, "succeeded", owner="someone-else")
    put_job(mongo, 3, "failed", tasks={"failed": 1}, error="Traceback ...\nRuntimeError: target unreachable")
    put_job(mongo, 4, "running", age=5)  # its Lease is renewed
    api.put(lease_object(4, namespace="levrt", duration=30, holder="laptop/1", now=time.time()))
    put_job(mongo, 5, "running", age=5)  # its Lease is gone: its client died
    assert main(["ps"]) == 0
    out, err = out_err(capsys)
    lines = out.splitlines()
    assert lines[0].split() == ["JOB", "WHAT", "OWNER", "WHERE", "STATE", "TASKS", "STARTED", "DURATION"]
    assert [line.split()[0] for line in lines[1:]] == ["5", "4", "3", "1"] and err == ""
    assert lines[1].split()[5] == "lost" and lines[2].split()[5] == "running"  # WHAT is two words
    assert lines[4].split()[:5] == ["1", "flows.py:sweep", "net1", "tester", "laptop"]
    assert "12 done, 1 failed" in lines[4] and "1m05s" in lines[4]

    assert main(["ps", "-o", "wide"]) == 0
    wide = out_err(capsys)[0].splitlines()
    assert wide[0].split()[-2:] == ["ENDED", "ERROR"] and wide[3].endswith("RuntimeError: target unreachable")


def test_ps_json_all_users_and_a_limit(api: FakeApiServer, mongo: FakeMongo,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    put_job(mongo, 1, "succeeded", tasks={"done": 2})
    put_job(mongo, 2, "cancelled", owner="someone-else", tasks={"cancelled": 3})
    put_job(mongo, 3, "succeeded")
    assert main(["ps", "--all-users", "-o", "json"]) == 0
    rows = json.loads(out_err(capsys)[0])
    assert [(r["job"], r["owner"], r["state"]) for r in rows] == [
        (3, "tester", "succeeded"), (2, "someone-else", "cancelled"), (1, "tester", "succeeded")]
    assert {"job", "what", "owner", "where", "state", "tasks", "started", "ended", "error"} <= set(rows[0])
    assert rows[2]["tasks"] == {"done": 2} and rows[2]["what"] == "flows.py:sweep net1"
    assert rows[2]["started"].endswith("+00:00") and rows[2]["duration"] == 65.0

    assert main(["ps", "--limit", "1"]) == 0
    out, err = out_err(capsys)
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["3"]
    assert err == "1 of 2 jobs, newest first (--limit 1; --all shows all).\n"


def test_ps_without_job_records_says_so(api: FakeApiServer, mongo: FakeMongo,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    put_job(mongo, 1, "succeeded", owner="someone-else")
    assert main(["ps"]) == 0
    assert out_err(capsys) == (
        "", "No job records of tester (--all-users: everyone's); `levrt ps --job N` lists a job's tasks.\n")

