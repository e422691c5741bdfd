"""Schedules (issue 25, item 3): names and cron expressions checked before anything is made, the
CronJob built around the orchestration Pod ``--in-cluster`` would submit (no overlapping runs, the
schedule's name in every run's job record), and ``levrt schedule`` on the fake apiserver.

On the real cluster (runs every minute, never overlapping): ``tests/e2e/test_cron_schedules.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from levrt._cli import main
from levrt._shapes.orchestrator import orchestrator_objects
from levrt._shapes.schedules import SCHEDULE_LABEL, WHAT_ANNOTATION, check_cron, check_name, schedule_objects
from levrt.podenv import SCHEDULE_ENV
from levrt.settings import Settings
from tests.fakes import FakeApiServer, FakeMongo

FLOW = """\
import levrt


async def main(hosts: list[str], rounds: int = 1):
    return {"hosts": hosts, "rounds": rounds}
"""

pytestmark = pytest.mark.usefixtures("laptop_env")


@pytest.mark.parametrize("cron", ["*/15 * * * *", "0 3 * * mon-fri", "5,35 0-6/2 1 jan,jul 0", "@daily",
                                  "0 0 * * 7"])
def test_cron_expressions_kubernetes_takes_are_taken(cron: str) -> None:
    assert check_cron(cron)


@pytest.mark.parametrize(("cron", "says"), [
    ("* * * *", "five fields"), ("60 * * * *", "'60' is not a minute"), ("* 24 * * *", "not a hour"),
    ("* * 0 * *", "day of month"), ("* * * 13 *", "month"), ("*/0 * * * *", "step"), ("5-1 * * * *", "backwards"),
    ("@often", "five fields"), ("* * * * fun", "day of week"),
])
def test_bad_cron_expressions_are_refused_naming_the_part(cron: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        check_cron(cron)


def test_names_are_dns_labels_short_enough_for_their_jobs() -> None:
    assert check_name("nightly-sweep") == "nightly-sweep"
    for bad in ("Nightly", "-x", "x-", "a_b", "a" * 53, ""):
        with pytest.raises(ValueError, match="not a schedule name"):
            check_name(bad)


def test_the_cronjob_runs_the_orchestration_pod_without_overlap() -> None:
    objects = orchestrator_objects(sources={"w.py": b"async def main(): pass\n", "lib.py": b""}, entry="w.py",
                                   func="main", args=["x=1"], settings=Settings(), run_id="abc1234567")
    made = schedule_objects("nightly", objects, cron="0 3 * * *", time_zone="Europe/Paris", what="w.py:main x=1")
    cronjob = made.pod
    spec = cronjob["spec"]
    assert (spec["schedule"], spec["timeZone"], spec["concurrencyPolicy"]) == ("0 3 * * *", "Europe/Paris", "Forbid")
    assert cronjob["metadata"]["labels"][SCHEDULE_LABEL] == "nightly"
    assert cronjob["metadata"]["annotations"][WHAT_ANNOTATION] == "w.py:main x=1"
    pod = spec["jobTemplate"]["spec"]["template"]
    assert "schedulingGates" not in pod["spec"] and pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["serviceAccountName"] == "levrt-orchestrator"
    assert pod["spec"]["containers"][0]["command"] == objects.pod["spec"]["containers"][0]["command"]
    assert {"name": SCHEDULE_ENV, "value": "nightly"} in pod["spec"]["containers"][0]["env"]
    [configmap] = made.owned
    assert configmap["metadata"]["name"] == "nightly-schedule-source"
    assert pod["spec"]["volumes"][0]["configMap"]["name"] == "nightly-schedule-source"
    assert objects.pod["spec"].get("schedulingGates")  # the Pod it was made from is left as it was


def test_levrt_schedule_checks_everything_before_it_makes_a_cronjob(
        api: FakeApiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow = tmp_path / "sweep.py"
    flow.write_text(FLOW)
    for argv, says in (
            (["nightly", f"{flow}:main", "--cron", "61 * * * *"], "is not a minute"),
            (["Nightly", f"{flow}:main", "--cron", "@daily"], "not a schedule name"),
            (["nightly", f"{flow}:main", "--cron", "@daily", "--time-zone", "Mars/Olympus"], "not a time zone"),
            (["nightly", f"{flow}:main", "rounds=many", "--cron", "@daily"], "rounds='many'")):
        assert main(["schedule", "create", *argv]) == 2
        assert says in capsys.readouterr().err
    assert api.names("cronjobs") == [] and api.names("configmaps") == []

    assert main(["schedule", "create", "nightly", f"{flow}:main", "hosts=a,b", "--cron", "0 3 * * *",
                 "--time-zone", "UTC"]) == 0
    assert "schedule nightly: " in capsys.readouterr().out
    cronjob = api.get("cronjobs", "nightly")
    assert cronjob is not None and cronjob["spec"]["schedule"] == "0 3 * * *"
    [configmap] = api.names("configmaps")
    owner = api.get("configmaps", configmap)["metadata"]["ownerReferences"][0]  # type: ignore[index]
    assert (owner["kind"], owner["name"]) == ("CronJob", "nightly")
    assert main(["schedule", "create", "nightly", f"{flow}:main", "--cron", "@daily"]) == 2
    assert "exists already" in capsys.readouterr().err

    assert main(["schedule", "suspend", "nightly"]) == 0
    assert api.get("cronjobs", "nightly")["spec"]["suspend"] is True  # type: ignore[index]
    assert main(["schedule", "list", "-o", "json"]) == 0
    assert '"suspended": true' in capsys.readouterr().out
    assert main(["schedule", "run-now", "nightly"]) == 0
    [job] = api.names("jobs")
    assert job.startswith("nightly-now-")
    assert main(["schedule", "delete", "nightly"]) == 0
    assert api.names("cronjobs") == []
    assert main(["schedule", "resume", "nightly"]) == 2
    assert os.environ.get(SCHEDULE_ENV) is None


async def test_the_console_shows_schedules_with_their_last_runs(api: FakeApiServer, mongo: FakeMongo) -> None:
    from levrt._clients.store import JOB_RECORDS, journal_database
    from tests.unit.console_client import console_client

    api.put({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {
        "name": "nightly", "labels": {SCHEDULE_LABEL: "nightly"}, "annotations": {WHAT_ANNOTATION: "w.py:main x=1"}},
        "spec": {"schedule": "0 3 * * *", "suspend": False}, "status": {"lastScheduleTime": "2026-12-06T03:00:00Z"}})
    api.put({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "not-ours"},
             "spec": {"schedule": "* * * * *"}})
    for job in (1, 2, 3, 4):
        mongo[journal_database("levrt")][JOB_RECORDS].insert_one_now(
            {"_id": job, "owner": "tester", "state": "succeeded", "started": 10.0 * job, "ended": 10.0 * job + 5,
             "what": {"target": "w.py:main", "args": ["x=1"], **({"schedule": "nightly"} if job != 2 else {})}})
    async with console_client(api, tools=()) as http:
        answer = (await http.get("/api/v1/schedules", headers={"Authorization": "Bearer token-viewer"})).json()
        [row] = answer["schedules"]
        assert (row["name"], row["cron"], row["what"], row["runs"]) == ("nightly", "0 3 * * *", "w.py:main x=1", 3)
        assert [run["job"] for run in row["lastRuns"]] == [4, 3, 1]
        listed = (await http.get("/api/v1/jobs?schedule=nightly", headers={"Authorization": "Bearer token-viewer"}))
        assert [j["job"] for j in listed.json()["jobs"]] == [4, 3, 1]
        denied = await http.get("/api/v1/schedules", headers={"Authorization": "Bearer token-nobody"})
        assert denied.status_code == 403
        await http.post("/sign-in", data={"token": "token-viewer"}, headers={"Origin": "http://console"})
        page = (await http.get("/schedules")).text
        assert '<a href="/jobs?schedule=nightly&amp;owner=">nightly</a>' in page and "<code>0 3 * * *</code>" in page
        assert '<a href="/jobs/4">4</a>' in page and "not-ours" not in page
