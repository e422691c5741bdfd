"""Detached jobs that outlive their orchestration Pod (issue 25, item 2): the Job wrapping the Pod,
what the next Pod inherits from the task records, and a job handed over and taken over on the fake
apiserver and store. On the real cluster: ``tests/e2e/test_detached_handover.py``.
"""

from __future__ import annotations

import json

import pytest

import levrt
from levrt import Cr
from levrt._clients.store import JOB_RECORDS, TASKS, journal_database
from levrt._shapes.build import TaskObjects
from levrt._shapes.handover import inherited
from levrt._shapes.names import JOB_LABEL, RUN_LABEL, lease_name
from levrt._shapes.orchestrator import EXIT_HANDED_OVER, HANDOVERS, orchestrator_objects
from levrt._shapes.schedules import schedule_objects
from levrt.podenv import POD_NAME_ENV, POD_UID_ENV
from levrt.run import session
from levrt.settings import Settings
from tests.fakes import FakeApiServer, FakeMongo

SETTINGS = Settings(store_uri="mongodb://127.0.0.1:30017/", runtime_image="levrt.local/runtime:t")


def orchestration(*, detach: bool) -> tuple[dict, list[dict]]:
    objects = orchestrator_objects(sources={"flow.py": b"async def main(): pass\n"}, entry="flow.py", func=None,
                                   args=[], settings=SETTINGS, run_id="abc1234567", detach=detach)
    return objects.pod, objects.owned


def test_a_detached_orchestration_is_a_suspended_job_replacing_its_pod_unless_the_workflow_failed() -> None:
    job, owned = orchestration(detach=True)
    pod, same_owned = orchestration(detach=False)
    assert (job["kind"], job["apiVersion"], job["metadata"]["name"]) == ("Job", "batch/v1", pod["metadata"]["name"])
    spec = job["spec"]
    assert spec["suspend"] is True  # the gate: what it owns is created before it makes a Pod
    assert spec["backoffLimit"] == HANDOVERS
    template = spec["template"]
    assert "schedulingGates" not in template["spec"]  # nobody would lift it
    assert template["metadata"]["labels"][RUN_LABEL] == "abc1234567"  # how the client finds the Pod
    assert template["spec"]["restartPolicy"] == "Never"
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
    assert rules[1]["action"] == "FailJob" and rules[1]["onExitCodes"]["operator"] == "NotIn"
    assert EXIT_HANDED_OVER in rules[1]["onExitCodes"]["values"]  # a hand-over is replaced; a failure is not
    assert owned == same_owned and owned[0]["kind"] == "ConfigMap"
    assert "schedulingGates" in pod["spec"]  # an attached run stays a gated Pod


def test_a_scheduled_run_is_replaced_as_a_detached_one_and_kept_by_the_cronjob() -> None:
    pod, owned = orchestration(detach=False)
    cronjob = schedule_objects("nightly", TaskObjects(pod=pod, owned=owned), cron="0 3 * * *", time_zone=None,
                               what="flow.py").pod
    spec = cronjob["spec"]["jobTemplate"]["spec"]
    assert spec["backoffLimit"] == HANDOVERS and "podFailurePolicy" in spec
    assert "ttlSecondsAfterFinished" not in spec  # its history limits keep the last runs
    assert RUN_LABEL not in spec["template"]["metadata"]["labels"]


def test_the_next_pod_inherits_done_tasks_and_running_pods_once_each_and_runs_failed_ones_again() -> None:
    found = inherited([
        {"task": 0, "state": "succeeded", "key": "A"},
        {"task": 1, "state": "running", "key": "B", "pod": "lev-j7-t1"},
        {"task": 2, "state": "failed", "key": "C", "pod": "lev-j7-t2"},
        {"task": 3, "state": "succeeded", "key": "A"},  # the same Cr twice in one workflow: two tasks
        {"task": 4, "state": "retrying", "key": "D", "pod": "lev-j7-t4-r1", "retries": 1},
        {"task": 5, "state": "succeeded"},  # no key: cannot be recognised, runs again
        {"job": 7, "state": "running"},  # not a task's record
    ])
    assert found.next_task == 6
    assert (found.take_done("A"), found.take_done("A"), found.take_done("A")) == (0, 3, None)
    assert found.take_done("C") is None and found.take_live("C") is None  # failed: runs again
    live = found.take_live("D")
    assert live is not None and (live.task, live.pod, live.retries) == (4, "lev-j7-t4-r1", 1)
    assert [t.pod for t in found.left_live()] == ["lev-j7-t1"]
    assert found.take_done(None) is None


@levrt.remote
def step(name: str) -> None:
    pass


def pod_posts(api: FakeApiServer) -> list[str]:
    posts = [r for r in api.requests if r.method == "POST" and r.path.endswith("/pods")]
    return [json.loads(r.body)["metadata"]["name"] for r in posts]


def work(name: str) -> Cr:
    return Cr("busybox:1.36", "demo/step@1.0", entry=step(name))


async def test_a_job_handed_over_goes_on_in_the_next_pod_running_nothing_twice(
        api: FakeApiServer, mongo: FakeMongo, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = api.put({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "lev-orch-x"}, "spec": {}})
    ref = {"apiVersion": "batch/v1", "kind": "Job", "name": "lev-orch-x", "uid": runner["metadata"]["uid"],
           "controller": True}
    first_pod = api.put({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": "lev-orch-x-1", "ownerReferences": [ref]}, "spec": {}})
    monkeypatch.setenv(POD_NAME_ENV, "lev-orch-x-1")
    monkeypatch.setenv(POD_UID_ENV, first_pod["metadata"]["uid"])

    def kubelet(pod: dict) -> None:  # "b" runs on and on; the rest end at once
        name = pod["metadata"]["name"]
        api.set_running(name)
        if "t1" not in name:
            api.set_terminated(name, 0)

    api.on_ungated = kubelet
    async with session(settings=SETTINGS) as first:
        job = first.job_id
        await work("a")
        left_running = await work("b").start()
        assert await first.job_goes_on()  # its Job is there: a SIGTERM now is a Pod going away
        first.handing_over = True
    assert api.get("jobs", "lev-orch-x")["metadata"]["labels"][JOB_LABEL] == str(job)
    assert api.get("pods", left_running.pod) is not None  # left running for the next Pod
    assert api.get("leases", lease_name(job)) is not None
    record = mongo[journal_database("levrt")][JOB_RECORDS].find_one_now({"_id": job})
    assert record["state"] == "running"

    api.set_terminated(left_running.pod, 0)  # it ended while no orchestration Pod watched it
    api.on_ungated = lambda pod: (api.set_running(pod["metadata"]["name"]),
                                  api.set_terminated(pod["metadata"]["name"], 0))
    second_pod = api.put({"apiVersion": "v1", "kind": "Pod",
                          "metadata": {"name": "lev-orch-x-2", "ownerReferences": [ref]}, "spec": {}})
    monkeypatch.setenv(POD_NAME_ENV, "lev-orch-x-2")
    monkeypatch.setenv(POD_UID_ENV, second_pod["metadata"]["uid"])
    posted_before = len(pod_posts(api))
    async with session(settings=SETTINGS) as second:
        assert second.job_id == job
        for name in ("a", "b", "c"):  # the workflow from the top
            await work(name)
    status = {d["task"]: d for d in mongo[journal_database("levrt")][TASKS].docs if d["job"] == job}
    assert {t: d["state"] for t, d in status.items()} == {0: "succeeded", 1: "succeeded", 2: "succeeded"}
    posted = pod_posts(api)
    assert posted[:posted_before] == [f"lev-j{job}-t0", f"lev-j{job}-t1"]
    assert posted[posted_before:] == [f"lev-j{job}-t2"]  # only "c" made a Pod: "a" was done, "b" followed
    record = mongo[journal_database("levrt")][JOB_RECORDS].find_one_now({"_id": job})
    assert (record["state"], record["handovers"], record["tasks"]) == ("succeeded", 1, {"done": 3})


async def test_a_pod_whose_job_is_being_deleted_ends_the_job_rather_than_handing_it_over(
        api: FakeApiServer, mongo: FakeMongo, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = api.put({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "lev-orch-y"}, "spec": {}})
    ref = {"apiVersion": "batch/v1", "kind": "Job", "name": "lev-orch-y", "uid": runner["metadata"]["uid"],
           "controller": True}
    pod = api.put({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "lev-orch-y-1", "ownerReferences": [ref]},
                   "spec": {}})
    monkeypatch.setenv(POD_NAME_ENV, "lev-orch-y-1")
    monkeypatch.setenv(POD_UID_ENV, pod["metadata"]["uid"])
    async with session(settings=SETTINGS) as job:
        api.objects.pop(("jobs", "levrt", "lev-orch-y"))  # a cancel deleted it
        assert not await job.job_goes_on()
    monkeypatch.delenv(POD_NAME_ENV)
    async with session(settings=SETTINGS) as laptop:  # no Kubernetes Job runs it: never handed over
        assert laptop.claim.runner is None and not await laptop.job_goes_on()
