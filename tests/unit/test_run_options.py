"""Per-task run options (``Cr(timeout=, resources=, capabilities=, node_selector=, tolerations=,
retries=)``): every bad value refused with its own message before anything exists, the Pod they
make (over the Settings defaults), and the engine's reading of their outcomes against the fakes
(a timed-out task returns its Document; a Pod the cluster ended is submitted again, the entry's
own failure never)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import levrt
from levrt import Cr, TaskFailed, lev
from levrt._cli.display import TaskClock, task_rows
from levrt._clients.kube import use_transport
from levrt._clients.store import use_client
from levrt._core import engine as engine_module
from levrt._core.engine import Engine
from levrt._shapes import podstatus
from levrt._shapes.build import DEADLINE_MARGIN, with_attempt
from levrt._shapes.names import ATTEMPT_LABEL, pod_name
from levrt.errors import LevrtError, OptionError, ServiceError, SettingsError
from levrt.run import session
from levrt.runtime.timeout import EXIT_TIMED_OUT, TIMEOUT_GRACE
from levrt.settings import Settings
from tests.fakes import FakeApiServer, FakeMongo
from tests.helpers import build

IMG = "busybox:1.36"


@levrt.remote
def scan() -> None:
    lev.set(done=True)


# -- validation: each bad value, its own error, naming it ---------------------------------------------

BAD: list[tuple[str, Callable[[], Any], type[LevrtError], str]] = [
    ("timeout-zero", lambda: Cr(IMG, timeout=0), OptionError, "timeout=0"),
    ("timeout-float", lambda: Cr(IMG, timeout=2.5), OptionError, "timeout=3"),
    ("timeout-str", lambda: Cr(IMG, timeout="60"), OptionError, "'60'"),
    ("timeout-bool", lambda: Cr(IMG, timeout=True), OptionError, "timeout=True"),
    ("resources-top-level-cpu", lambda: Cr(IMG, resources={"cpu": "1"}), OptionError,
     "use {'limits': {'cpu': '1'}}"),
    ("resources-section", lambda: Cr(IMG, resources={"limit": {"cpu": "1"}}), OptionError, "'limit'"),
    ("resources-name", lambda: Cr(IMG, resources={"limits": {"mem": "1Gi"}}), OptionError, "'memory'"),
    ("resources-quantity", lambda: Cr(IMG, resources={"limits": {"memory": "1GB"}}), OptionError, "no 'B'"),
    ("resources-negative", lambda: Cr(IMG, resources={"requests": {"cpu": "-1"}}), OptionError, "'-1'"),
    ("resources-not-dict", lambda: Cr(IMG, resources="1Gi"), OptionError, "'1Gi'"),
    ("resources-request-over-limit",
     lambda: Cr(IMG, resources={"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}), OptionError,
     "more than its limit"),
    ("capabilities-unknown", lambda: Cr(IMG, capabilities=["NET_RAWW"]), OptionError, "'NET_RAW'"),
    ("capabilities-str", lambda: Cr(IMG, capabilities="NET_RAW"), OptionError, "capabilities=['NET_RAW']"),
    ("capabilities-all", lambda: Cr(IMG, capabilities=["ALL"]), OptionError, "Name the capabilities"),
    ("capabilities-twice", lambda: Cr(IMG, capabilities=["NET_RAW", "cap_net_raw"]), OptionError, "twice"),
    ("node-selector-list", lambda: Cr(IMG, node_selector=["ssd"]), OptionError, "['ssd']"),
    ("node-selector-key", lambda: Cr(IMG, node_selector={"bad key": "x"}), OptionError, "'bad key'"),
    ("node-selector-int", lambda: Cr(IMG, node_selector={"gpu": 1}), OptionError, "'1'"),
    ("node-selector-value", lambda: Cr(IMG, node_selector={"zone": "a b"}), OptionError, "'a b'"),
    ("tolerations-one-dict", lambda: Cr(IMG, tolerations={"operator": "Exists"}), OptionError, "a list"),
    ("tolerations-field", lambda: Cr(IMG, tolerations=[{"key": "a", "toleration_seconds": 5}]), OptionError,
     "'toleration_seconds'"),
    ("tolerations-operator", lambda: Cr(IMG, tolerations=[{"key": "a", "operator": "In"}]), OptionError, "'In'"),
    ("tolerations-effect", lambda: Cr(IMG, tolerations=[{"key": "a", "effect": "NoRun"}]), OptionError,
     "'NoRun'"),
    ("tolerations-exists-value", lambda: Cr(IMG, tolerations=[{"key": "a", "operator": "Exists", "value": "x"}]),
     OptionError, "takes no value"),
    ("tolerations-seconds-effect", lambda: Cr(IMG, tolerations=[{"key": "a", "tolerationSeconds": 5}]),
     OptionError, "NoExecute"),
    ("retries-negative", lambda: Cr(IMG, retries=-1), OptionError, "retries=-1"),
    ("retries-too-many", lambda: Cr(IMG, retries=11), OptionError, "0..10"),
    ("retries-none", lambda: Cr(IMG, retries=None), OptionError, "retries=None"),
    ("service-timeout", lambda: Cr(IMG, services={"db": Cr(IMG, timeout=5)}), ServiceError, "set it on the main Cr"),
    ("service-retries", lambda: Cr(IMG, services={"db": Cr(IMG, retries=1)}), ServiceError, "retries=1"),
    ("service-node-selector", lambda: Cr(IMG, services={"db": Cr(IMG, node_selector={"a": "b"})}), ServiceError,
     "node_selector"),
    ("service-tolerations", lambda: Cr(IMG, services={"db": Cr(IMG, tolerations=[{"operator": "Exists"}])}),
     ServiceError, "tolerations"),
    ("settings-resources", lambda: Settings(resources={"memory": "1Gi"}), SettingsError,
     "use {'limits': {'memory': '1Gi'}}"),
    ("settings-tolerations", lambda: Settings(tolerations=({"operator": "Sometimes"},)), SettingsError,
     "'Sometimes'"),
    ("settings-env-node-selector", lambda: Settings.from_env({"LEVRT_NODE_SELECTOR": '{"a": 1}'}), SettingsError,
     "'1'"),
]


@pytest.mark.parametrize(("action", "error", "needle"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_a_bad_option_gets_its_own_error(action: Callable[[], Any], error: type[LevrtError], needle: str) -> None:
    with pytest.raises(error) as info:
        action()
    assert needle in str(info.value), str(info.value)
    assert isinstance(info.value, ValueError)  # OptionError is a CrError, a ValueError


def test_good_options_are_normalised_and_shown() -> None:
    cr = Cr(IMG, timeout=60, resources={"limits": {"cpu": 2, "memory": "1Gi"}, "requests": {"cpu": 0.5}},
            capabilities=("net_raw", "CAP_NET_ADMIN"), node_selector={"kubernetes.io/os": "linux"},
            tolerations=[{"operator": "Exists"}], retries=3)
    assert cr.capabilities == ("NET_RAW", "NET_ADMIN")
    assert dict(cr.resources or {})["limits"]["cpu"] == "2" and dict(cr.resources or {})["requests"]["cpu"] == "0.5"
    text = repr(cr)
    for part in ("timeout=60", "capabilities=['NET_RAW', 'NET_ADMIN']", "retries=3", "node_selector=",
                 "resources={'limits': {'cpu': '2', 'memory': '1Gi'}", "tolerations=[{'operator': 'Exists'}]"):
        assert part in text, text
    assert "timeout" not in repr(Cr(IMG))
    with pytest.raises(TypeError):
        cr.resources["limits"]["cpu"] = "4"  # type: ignore[index]  # a Cr does not change after validation


def test_a_service_may_carry_resources_and_capabilities() -> None:
    svc = Cr(IMG, resources={"limits": {"memory": "64Mi"}}, capabilities=["SYS_PTRACE"])
    spec = build(Cr(IMG, services={"db": svc})).pod["spec"]
    sidecar = spec["initContainers"][-1]
    assert sidecar["resources"] == {"limits": {"memory": "64Mi"}}
    assert sidecar["securityContext"] == {"capabilities": {"add": ["SYS_PTRACE"]}}
    assert "securityContext" not in spec["containers"][-1]


async def test_a_bad_option_creates_nothing() -> None:
    api, mongo = FakeApiServer(namespaces=["levrt"]), FakeMongo()
    with use_transport(lambda: api), use_client(mongo.client):
        async with session(settings=SETTINGS):
            with pytest.raises(OptionError):
                await Cr(IMG, entry=scan(), capabilities=["RAW"])
    assert api.names("pods") == [] and api.names("secrets") == [] and api.names("configmaps") == []


# -- the Pod -----------------------------------------------------------------------------------------


def test_the_pod_of_every_option_over_the_settings_defaults() -> None:
    settings = Settings(timeout=600, resources={"limits": {"memory": "256Mi"}},
                        node_selector={"zone": "a", "disk": "hdd"}, tolerations=({"operator": "Exists"},))
    cr = Cr(IMG, entry=scan(), timeout=30, resources={"limits": {"cpu": "1"}}, capabilities=["NET_RAW"],
            node_selector={"disk": "ssd"}, tolerations=[{"key": "scan", "operator": "Exists"}])
    spec = build(cr, settings=settings).pod["spec"]
    main = spec["containers"][-1]
    assert spec["activeDeadlineSeconds"] == 30 + TIMEOUT_GRACE + DEADLINE_MARGIN  # the task's timeout wins
    assert {"name": "LEVRT_TIMEOUT", "value": "30"} in main["env"]
    assert main["resources"] == {"limits": {"cpu": "1"}}  # replaces Settings' resources
    assert main["securityContext"] == {"capabilities": {"add": ["NET_RAW"]}}
    assert spec["nodeSelector"] == {"zone": "a", "disk": "ssd"}  # merged, the task's keys winning
    assert spec["tolerations"] == [{"operator": "Exists"}, {"key": "scan", "operator": "Exists"}]  # appended


def test_without_options_the_settings_apply_and_without_either_nothing() -> None:
    plain = build(Cr(IMG, entry=scan())).pod["spec"]
    for key in ("activeDeadlineSeconds", "nodeSelector", "tolerations"):
        assert key not in plain
    assert "resources" not in plain["containers"][-1]
    assert all(e["name"] != "LEVRT_TIMEOUT" for e in plain["containers"][-1]["env"])


def test_an_image_without_entry_gets_the_kubelet_deadline_only() -> None:
    spec = build(Cr(IMG, cmd=["sleep", "600"], timeout=5)).pod["spec"]
    assert spec["activeDeadlineSeconds"] == 5 + TIMEOUT_GRACE + DEADLINE_MARGIN
    assert "env" not in spec["containers"][-1]


def test_a_retry_is_a_new_pod_of_the_same_task() -> None:
    assert (pod_name(3, 4), pod_name(3, 4, 1), pod_name(3, 4, 2)) == ("lev-j3-t4", "lev-j3-t4-r1", "lev-j3-t4-r2")
    cr = Cr(IMG, entry=scan(), retries=2, files={"/etc/a": "x"})
    first = build(cr, job=3, task=4)
    again = build(cr, job=3, task=4, attempt=2)
    assert with_attempt(first, 2) == again  # the engine renames; building again gives the same objects
    assert again.pod["metadata"]["labels"][ATTEMPT_LABEL] == "2"
    assert ATTEMPT_LABEL not in first.pod["metadata"]["labels"]
    env = {e["name"]: e.get("value") for e in again.pod["spec"]["containers"][-1]["env"]}
    assert env["LEVRT_TASK"] == "4"  # the same record
    with pytest.raises(LevrtError, match="attempt=0"):
        with_attempt(first, 0)


# -- reading the end of a Pod ------------------------------------------------------------------------


def ended_pod(exit_code: int | None, *, entry: bool = True, reason: str | None = None, **meta: Any) -> dict[str, Any]:
    pod = build(Cr(IMG, entry=scan() if entry else None, timeout=5)).pod
    pod["metadata"].update(meta)
    status: dict[str, Any] = {"phase": "Failed"}
    if reason:
        status["reason"] = reason
    if exit_code is not None:
        status["containerStatuses"] = [{"name": "main", "state": {"terminated": {"exitCode": exit_code}}}]
    pod["status"] = status
    return pod


def test_what_counts_as_timed_out() -> None:
    assert podstatus.timed_out(ended_pod(EXIT_TIMED_OUT))
    assert podstatus.timed_out(ended_pod(137, reason="DeadlineExceeded"))
    assert not podstatus.timed_out(ended_pod(EXIT_TIMED_OUT, entry=False))  # the image's own 124
    assert not podstatus.timed_out(ended_pod(1))


def test_what_counts_as_an_infrastructure_failure() -> None:
    assert podstatus.infrastructure_failure(ended_pod(None, reason="Evicted"), deleted_by_us=False)
    assert podstatus.infrastructure_failure({**ended_pod(130), podstatus.DELETED: True}) is not None
    assert podstatus.infrastructure_failure(ended_pod(143, deletionTimestamp="2026-01-01T00:00:00Z")) is not None
    assert podstatus.infrastructure_failure({**ended_pod(130), podstatus.DELETED: True}, deleted_by_us=True) is None
    assert podstatus.infrastructure_failure(ended_pod(1)) is None  # the entry's own failure
    assert podstatus.infrastructure_failure(ended_pod(EXIT_TIMED_OUT, deletionTimestamp="x")) is None  # a timeout
    assert podstatus.infrastructure_failure(ended_pod(0, reason="Evicted")) is None  # it had finished
    hiccup = podstatus.StartFailure("ErrImagePull", "container main: failed to pull: i/o timeout")
    assert podstatus.pull_may_recover(hiccup)
    assert not podstatus.pull_may_recover(podstatus.StartFailure("ErrImagePull", "manifest unknown: not found"))
    assert not podstatus.pull_may_recover(podstatus.StartFailure("InvalidImageName", "bad"))


# -- the engine ---------------------------------------------------------------------------------------

SETTINGS = Settings(store_uri="mongodb://127.0.0.1:30017/", runtime_image="levrt.local/runtime:t")
POD = "lev-j1-t0"


@contextlib.asynccontextmanager
async def job(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Engine, FakeApiServer, FakeMongo]]:
    monkeypatch.setattr(engine_module, "RETRY_BACKOFF", 0.01)
    api, mongo = FakeApiServer(namespaces=["levrt"]), FakeMongo()
    with use_transport(lambda: api), use_client(mongo.client):
        async with session(settings=SETTINGS) as engine:
            yield engine, api, mongo


def ungated(api: FakeApiServer, name: str) -> bool:
    pod = api.get("pods", name)
    return pod is not None and not pod["spec"].get("schedulingGates")


async def run_until_running(api: FakeApiServer, cr: Cr, name: str = POD) -> levrt.Task:
    starting = asyncio.create_task(cr.start())
    await api.until(lambda: ungated(api, name))
    api.set_running(name)
    return await asyncio.wait_for(starting, 5)


def status_record(mongo: FakeMongo) -> dict[str, Any]:
    return dict(mongo["levrt_journal"]["levrt_tasks"].docs[0])


async def test_a_pod_deleted_by_someone_else_is_submitted_again(monkeypatch: pytest.MonkeyPatch,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="lev")
    async with job(monkeypatch) as (engine, api, mongo):
        task = await run_until_running(api, Cr(IMG, entry=scan(), retries=1))
        ending = asyncio.create_task(task.done())
        api.remove("pods", POD)  # kubectl delete pod, by someone else
        await api.until(lambda: ungated(api, f"{POD}-r1"))
        assert task.pod == f"{POD}-r1" and task.retries == 1
        assert [row.retries for row in task_rows(engine, TaskClock())] == ["1/1"]  # the live display's retries column
        pod = api.get("pods", f"{POD}-r1")
        assert pod is not None and pod["metadata"]["labels"][ATTEMPT_LABEL] == "1"
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][-1]["env"]}
        assert env["LEVRT_TASK"] == "0"  # same task, same record
        api.set_running(f"{POD}-r1")
        api.set_terminated(f"{POD}-r1", 0)
        doc = await asyncio.wait_for(ending, 5)
        assert doc.task_id == 0 and not doc.timed_out
        await api.until(lambda: api.names("pods") == [], timeout=5)  # with the others that ended about then
    record = status_record(mongo)
    assert (record["state"], record["retries"], record["pod"]) == ("succeeded", 1, f"{POD}-r1")
    assert "PodDeleted" in record["retryReason"]
    assert any("submitting it again as lev-j1-t0-r1" in r.getMessage() for r in caplog.records)


async def test_the_entrys_own_failure_is_never_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    async with job(monkeypatch) as (_, api, _mongo):
        task = await run_until_running(api, Cr(IMG, entry=scan(), retries=3))
        api.set_terminated(POD, 1)
        with pytest.raises(TaskFailed) as caught:
            await asyncio.wait_for(task.done(), 5)
        assert caught.value.reason == "Error" and task.retries == 0
        assert api.get("pods", f"{POD}-r1") is None


async def test_without_retries_a_deleted_pod_fails_the_task(monkeypatch: pytest.MonkeyPatch) -> None:
    async with job(monkeypatch) as (_, api, mongo):
        task = await run_until_running(api, Cr(IMG, entry=scan()))
        api.remove("pods", POD)
        with pytest.raises(TaskFailed, match="PodDeleted") as caught:
            await asyncio.wait_for(task.done(), 5)
        assert "deleted by someone else" in str(caught.value)
    assert status_record(mongo)["state"] == "failed"


async def test_retries_run_out(monkeypatch: pytest.MonkeyPatch) -> None:
    async with job(monkeypatch) as (_, api, _mongo):
        task = await run_until_running(api, Cr(IMG, entry=scan(), retries=1))
        ending = asyncio.create_task(task.done())
        api.set_status(POD, {"phase": "Failed", "reason": "Evicted", "message": "The node was low on memory."})
        await api.until(lambda: ungated(api, f"{POD}-r1"))
        assert api.get("pods", POD) is None  # the evicted Pod is removed
        api.set_running(f"{POD}-r1")
        api.set_status(f"{POD}-r1", {"phase": "Failed", "reason": "Evicted"})
        with pytest.raises(TaskFailed, match=r"Evicted.*after 1 retry") as caught:
            await asyncio.wait_for(ending, 5)
        assert caught.value.reason == "Evicted" and task.retries == 1


async def test_our_own_deletion_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    async with job(monkeypatch) as (engine, api, _mongo):
        task = await run_until_running(api, Cr(IMG, entry=scan(), retries=2))
        await engine.delete_pod(POD)
        with pytest.raises(TaskFailed, match="PodDeleted"):
            await asyncio.wait_for(task.done(), 5)
        assert task.retries == 0


async def test_a_pull_hiccup_at_start_is_retried_a_missing_image_not(monkeypatch: pytest.MonkeyPatch) -> None:
    async with job(monkeypatch) as (_, api, _mongo):
        starting = asyncio.create_task(Cr(IMG, retries=1).start())
        await api.until(lambda: ungated(api, POD))
        api.set_waiting(POD, "ErrImagePull", "failed to pull: dial tcp 10.0.0.1:443: i/o timeout")
        await api.until(lambda: ungated(api, f"{POD}-r1"))
        api.set_running(f"{POD}-r1")
        task = await asyncio.wait_for(starting, 5)
        assert (task.pod, task.retries) == (f"{POD}-r1", 1)
        api.set_terminated(task.pod, 0)
        await task.done()

        missing = asyncio.create_task(Cr("busybox:nope", retries=3).start())
        await api.until(lambda: ungated(api, "lev-j1-t1"))
        api.set_waiting("lev-j1-t1", "ErrImagePull", 'failed to resolve reference "busybox:nope": not found')
        with pytest.raises(TaskFailed, match="ErrImagePull"):
            await asyncio.wait_for(missing, 5)
        assert api.get("pods", "lev-j1-t1-r1") is None


async def test_a_timed_out_task_returns_its_document(monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="lev")
    async with job(monkeypatch) as (_, api, mongo):
        task = await run_until_running(api, Cr(IMG, entry=scan(), timeout=60, retries=2))
        api.set_terminated(POD, EXIT_TIMED_OUT, message="TimedOut: the entry timed out after 60 s (timeout=60)")
        doc = await asyncio.wait_for(task.done(), 5)
        assert task.timed_out and doc.timed_out and task.retries == 0
    assert status_record(mongo)["state"] == "timed-out"
    warnings = [r.getMessage() for r in caplog.records if "timed out" in r.getMessage()]
    assert warnings == ["task 1.0 timed out after 60 s; its record keeps what it stored until then"]


async def test_the_kubelets_deadline_is_a_timeout_too(monkeypatch: pytest.MonkeyPatch) -> None:
    async with job(monkeypatch) as (_, api, _mongo):
        task = await run_until_running(api, Cr(IMG, cmd=["sleep", "999"], timeout=1))
        api.set_status(POD, {"phase": "Failed", "reason": "DeadlineExceeded",
                             "message": "Pod was active on the node longer than the specified deadline"})
        doc = await asyncio.wait_for(task.done(), 5)
        assert doc.timed_out and task.timed_out


async def test_an_images_own_exit_124_is_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    async with job(monkeypatch) as (_, api, _mongo):
        task = await run_until_running(api, Cr(IMG, cmd=["timeout", "1", "sleep", "9"]))
        api.set_terminated(POD, 124)
        with pytest.raises(TaskFailed):
            await asyncio.wait_for(task.done(), 5)
        assert not task.timed_out
