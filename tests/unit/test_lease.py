"""Jobs own their objects: each job's Lease is made first, owns its Pods, is renewed, and goes at the
end; the reaper and ``levrt gc`` end only jobs whose Lease nobody renews (fake apiserver)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from levrt import Cr
from levrt._cli import main
from levrt._clients.kube import Kube, use_transport
from levrt._clients.lease import JobLease, Reaper, expired, lease_object, micro_time
from levrt._clients.store import use_client
from levrt.errors import LevrtError
from levrt.run import session
from levrt.settings import Settings, SettingsError
from tests.fakes import FakeApiServer, FakeMongo

SETTINGS = Settings(store_uri="mongodb://127.0.0.1:30017/", runtime_image="levrt.local/runtime:t")
LEASES = "/apis/coordination.k8s.io/v1/namespaces/levrt/leases"
POD = "lev-j1-t0"


@pytest.fixture
def api() -> FakeApiServer:
    return FakeApiServer(namespaces=["levrt"])


def owners(api: FakeApiServer, plural: str, name: str) -> list[str]:
    obj = api.get(plural, name) or {}
    return [f"{ref['kind']}/{ref['name']}" for ref in obj["metadata"].get("ownerReferences", [])]


async def test_a_job_makes_its_lease_first_its_pods_hang_off_it_and_it_goes_at_the_end(api: FakeApiServer) -> None:
    api.autorun(0)
    with use_transport(lambda: api), use_client(FakeMongo().client):
        async with session(settings=SETTINGS) as engine:
            posts = [r.path for r in api.requests if r.method == "POST" and not r.path.endswith("reviews")]
            assert posts == [LEASES]  # before any Pod (a review asks who runs the job: it creates nothing)
            lease = api.get("leases", "levrt-job-1")
            assert lease is not None and lease["spec"]["leaseDurationSeconds"] == 30
            assert lease["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "levrt", "levrt.io/job": "1"}
            starting = asyncio.create_task(Cr("busybox:1.36", entry=None, cmd=["true"]).start())
            await api.until(lambda: api.get("pods", POD) is not None)
            assert owners(api, "pods", POD) == ["Lease/levrt-job-1"]
            ref = api.get("pods", POD)["metadata"]["ownerReferences"][0]  # type: ignore[index]
            assert ref["uid"] == lease["metadata"]["uid"] and ref["apiVersion"] == "coordination.k8s.io/v1"
            await (await starting)
            assert engine.lease is not None
    assert api.names("leases") == [] and api.names("pods") == []
    deleted = [r for r in api.requests if r.method == "DELETE" and r.path.startswith(LEASES)]
    assert [dict(r.query) for r in deleted] == [{"propagationPolicy": "Background"}]


async def test_a_job_id_whose_lease_exists_is_skipped(api: FakeApiServer, caplog: pytest.LogCaptureFixture) -> None:
    """The store lost its counter: ids 1 and 2 come again, but their jobs' Leases are still there."""
    api.put(lease_object(1, namespace="levrt", duration=30, holder="old", now=0.0))
    api.put(lease_object(2, namespace="levrt", duration=30, holder="old", now=0.0))
    with use_transport(lambda: api), use_client(FakeMongo().client):
        async with session(settings=SETTINGS) as engine:
            assert engine.job_id == 3 and engine.lease is not None and engine.lease.name == "levrt-job-3"
    assert sorted(api.names("leases")) == ["levrt-job-1", "levrt-job-2"]  # the old jobs' own, untouched
    assert "job id 1 is taken by a Lease" in caplog.text


async def test_deleting_the_lease_removes_the_job_through_the_garbage_collector(api: FakeApiServer) -> None:
    with use_transport(lambda: api), use_client(FakeMongo().client):
        async with session(settings=SETTINGS):
            starting = asyncio.create_task(Cr("busybox:1.36", cmd=["sleep", "1"]).start())
            await api.until(lambda: api.get("pods", POD) is not None)
            api.put({"kind": "Secret", "metadata": {"name": f"{POD}-payload", "ownerReferences": [
                {"apiVersion": "v1", "kind": "Pod", "name": POD, "uid": api.get("pods", POD)["metadata"]["uid"]}]}})
            api.remove("leases", "levrt-job-1")  # what the reaper does for a dead client
            assert api.names("pods") == [] and api.names("secrets") == []
            starting.cancel()


async def test_the_lease_is_renewed_and_a_failed_renewal_is_retried(api: FakeApiServer,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    clock = [1_000_000.0]
    async with Kube(api) as kube:
        lease = await JobLease.create(kube, namespace="levrt", job=7, duration=0.3, holder="me",
                                      clock=lambda: clock[0])
        api.fail("PATCH", f"{LEASES}/levrt-job-7", 500, "etcd hiccup")
        lease.start()
        with caplog.at_level(logging.WARNING, logger="lev"):
            for _ in range(3):
                clock[0] += 10
                renewed = lease.renewals
                await api.until(lambda r=renewed: lease.renewals > r, timeout=5)  # type: ignore[misc]
        assert lease.failures == 1 and "could not renew the Lease levrt-job-7" in caplog.text
        assert api.get("leases", "levrt-job-7")["spec"]["renewTime"] != micro_time(1_000_000.0)  # type: ignore[index]
        await lease.close()
    assert api.names("leases") == []


async def test_a_failure_after_the_lease_was_made_deletes_it(api: FakeApiServer,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # An orchestration Pod adopts itself after the Lease exists; a Pod that is not there fails the open.
    monkeypatch.setenv("LEVRT_POD_NAME", "lev-orch-gone")
    monkeypatch.setenv("LEVRT_POD_UID", "0000")
    with use_transport(lambda: api), use_client(FakeMongo().client):
        with pytest.raises(LevrtError):
            async with session(settings=SETTINGS):
                pass
    assert [r.method for r in api.requests if r.path.startswith(LEASES)] == ["POST", "DELETE"]
    assert api.names("leases") == []


async def test_an_orchestration_pod_is_adopted_and_released_when_attached(api: FakeApiServer,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    labels = {"app.kubernetes.io/managed-by": "levrt"}  # as levrt._shapes.orchestrator builds it
    pod = api.put({"kind": "Pod", "metadata": {"name": "lev-orch-1", "labels": labels},
                   "spec": {"containers": [{"name": "main"}]}})
    monkeypatch.setenv("LEVRT_POD_NAME", "lev-orch-1")
    monkeypatch.setenv("LEVRT_POD_UID", pod["metadata"]["uid"])
    with use_transport(lambda: api), use_client(FakeMongo().client):
        async with session(settings=SETTINGS):
            assert owners(api, "pods", "lev-orch-1") == ["Lease/levrt-job-1"]
            assert api.get("pods", "lev-orch-1")["metadata"]["labels"]["levrt.io/job"] == "1"  # type: ignore[index]
    # Attached: the following client deletes it after reading its exit code, not the Lease.
    assert api.names("pods") == ["lev-orch-1"] and owners(api, "pods", "lev-orch-1") == []
    # It carries the job's label, yet the job's end never deletes the Pod its own process runs in.
    assert not [r for r in api.requests if r.method == "DELETE" and r.path.endswith("/pods/lev-orch-1")]

    monkeypatch.setenv("LEVRT_DETACHED", "1")
    with use_transport(lambda: api), use_client(FakeMongo().client):
        async with session(settings=SETTINGS):
            pass
    assert api.names("pods") == []  # detached: it went with its job's Lease


async def test_an_account_without_leases_runs_the_job_and_says_so(api: FakeApiServer,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    api.fail("POST", LEASES, 403, 'leases.coordination.k8s.io is forbidden: User "dev" cannot create')
    api.autorun(0)
    with caplog.at_level(logging.WARNING, logger="lev"), use_transport(lambda: api), \
            use_client(FakeMongo().client):
        async with session(settings=SETTINGS):
            await Cr("busybox:1.36", cmd=["true"])
    assert "job 1 runs without a Lease" in caplog.text


def test_lease_seconds_come_from_the_environment() -> None:
    assert Settings.from_env({"LEVRT_LEASE_SECONDS": "6"}).lease_seconds == 6
    with pytest.raises(SettingsError, match="LEVRT_LEASE_SECONDS"):
        Settings.from_env({"LEVRT_LEASE_SECONDS": "1"})


def put_lease(api: FakeApiServer, job: int, *, renewed: float, duration: int = 30, kept: bool = False) -> None:
    body = lease_object(job, namespace="levrt", duration=duration, holder="x", now=renewed)
    if kept:
        body["metadata"]["annotations"] = {"levrt.io/kept": "true"}
    lease = api.put(body)
    api.put({"kind": "Pod", "metadata": {"name": f"lev-j{job}-t0", "labels": {
        "app.kubernetes.io/managed-by": "levrt", "levrt.io/job": str(job), "levrt.io/task": "0"},
        "ownerReferences": [{"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "name": f"levrt-job-{job}",
                             "uid": lease["metadata"]["uid"]}]}, "spec": {"containers": [{"name": "main"}]}})


async def test_the_reaper_deletes_only_leases_it_saw_stand_still(api: FakeApiServer) -> None:
    now = [100.0]
    # The renewers' clocks are far off (a year behind): the reaper does not care, it watches change.
    put_lease(api, 1, renewed=1.0, duration=10)
    put_lease(api, 2, renewed=1.0, duration=10)
    put_lease(api, 3, renewed=1.0, duration=10, kept=True)
    async with Kube(api) as kube:
        reaper = Reaper(kube, namespace="levrt", clock=lambda: now[0])
        assert await reaper.sweep() == []  # first sight: nothing is judged yet
        now[0] += 15
        await kube.request("PATCH", f"{LEASES}/levrt-job-2", body={"spec": {"renewTime": micro_time(2.0)}},
                           content_type="application/merge-patch+json")
        assert await reaper.sweep() == []  # 15 s still: not past duration + grace (20 s)
        now[0] += 10
        reaped = await reaper.sweep()
    assert [name for name, _ in reaped] == ["levrt-job-1"] and reaped[0][1] == 25
    assert api.names("leases") == ["levrt-job-2", "levrt-job-3"]
    assert api.names("pods") == ["lev-j2-t0", "lev-j3-t0"]  # job 1's Pod went with its Lease


def test_expiry_by_the_clock_counts_the_duration_and_a_grace() -> None:
    lease = lease_object(1, namespace="levrt", duration=30, holder="x", now=1000.0)
    assert not expired(lease, now=1059.0) and expired(lease, now=1061.0)
    assert expired(lease, now=1031.0, grace=0)
    lease["metadata"]["annotations"] = {"levrt.io/kept": "true"}
    assert not expired(lease, now=10_000.0)


def test_gc_ends_expired_jobs_and_never_a_live_one(api: FakeApiServer, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import time

    monkeypatch.setenv("LEVRT_STORE_URI", "mongodb://127.0.0.1:30017/")
    put_lease(api, 1, renewed=time.time())  # live
    put_lease(api, 2, renewed=time.time() - 600)  # its client died 10 minutes ago
    put_lease(api, 3, renewed=time.time() - 60, kept=True)  # ended with --keep a minute ago
    with use_transport(lambda: api):
        assert main(["gc", "--older-than", "0"]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out == ["deleted leases/levrt-job-2 (job 2: its client stopped renewing its Lease 10m ago) "
                       "and with it pods/lev-j2-t0",
                       "deleted leases/levrt-job-3 (job 3: kept after it ended, 1m ago) and with it pods/lev-j3-t0"]
        assert api.names("leases") == ["levrt-job-1"] and api.names("pods") == ["lev-j1-t0"]
        # --job N ends one job, live or not.
        assert main(["gc", "--job", "1"]) == 0
        assert capsys.readouterr().out.startswith("deleted leases/levrt-job-1 (job 1: ended on request)")
        assert api.names("leases") == [] and api.names("pods") == []
        assert main(["gc", "--job", "1"]) == 0
        assert capsys.readouterr().err == "Nothing of job 1 is left.\n"
