"""The one request builder (``levrt._clients.resources.prepare``), the Pod's named verbs on the
in-memory apiserver (``levrt._clients.pods``), and how a failed run is read (``podstatus.failure``)."""

from __future__ import annotations

import io
from typing import Any

import pytest

from levrt._clients import pods, resources
from levrt._clients.kube import Kube
from levrt._shapes import podstatus
from tests.fakes import FakeApiServer


def test_prepare_writes_method_path_and_query_from_the_kind_table() -> None:
    got = resources.prepare("get", "Pod", namespace="levrt", name="lev-j1-t0", sub="log", query={"tailLines": 5})
    assert (got.method, got.path, got.query) == ("GET", "/api/v1/namespaces/levrt/pods/lev-j1-t0/log", {"tailLines": 5})
    lease = resources.prepare("patch", "Lease", namespace="levrt", name="levrt-job-3", body={}, patch_type="strategic")
    assert lease.method == "PATCH" and lease.path == "/apis/coordination.k8s.io/v1/namespaces/levrt/leases/levrt-job-3"
    assert lease.content_type == "application/strategic-merge-patch+json"
    # A kind outside namespaces ignores one; a collection verb takes no name, an object verb needs one.
    assert resources.prepare("list", "Node", namespace="levrt").path == "/api/v1/nodes"
    review = resources.prepare("create", "SelfSubjectAccessReview", body={})
    assert (review.method, review.path) == ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")
    assert resources.prepare("deletecollection", "Secret", namespace="x").method == "DELETE"
    assert resources.prepare("connect", "Pod", namespace="x", name="p", sub="exec").path.endswith("/pods/p/exec")
    with pytest.raises(ValueError):
        resources.prepare("get", "Pod", namespace="levrt")
    with pytest.raises(ValueError):
        resources.prepare("list", "Pod", namespace="levrt", name="p")
    assert resources.plural("ConfigMap") == "configmaps"


def pod(name: str, *, job: int, task: int, attempt: int | None = None) -> dict[str, Any]:
    labels = {"app.kubernetes.io/managed-by": "levrt", "levrt.io/job": str(job), "levrt.io/task": str(task)}
    if attempt is not None:
        labels["levrt.io/attempt"] = str(attempt)
    return {"kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "main", "image": "busybox"}]}}


async def test_the_pods_of_a_job_of_a_task_and_one_pod() -> None:
    api = FakeApiServer()
    for obj in (pod("lev-j1-t0", job=1, task=0), pod("lev-j1-t1", job=1, task=1),
                pod("lev-j1-t1-r1", job=1, task=1, attempt=1), pod("lev-j2-t0", job=2, task=0)):
        api.put(obj)
    kube = Kube(api)
    names = lambda found: sorted(p["metadata"]["name"] for p in found)  # noqa: E731
    assert names(await pods.job_pods(kube, "levrt", 1)) == ["lev-j1-t0", "lev-j1-t1", "lev-j1-t1-r1"]
    assert names(await pods.job_pods(kube, "levrt", 1, task=1)) == ["lev-j1-t1", "lev-j1-t1-r1"]
    assert len(await pods.job_pods(kube, "levrt")) == 4
    assert (await pods.get(kube, "levrt", "lev-j2-t0"))["metadata"]["labels"]["levrt.io/job"] == "2"


async def test_logs_events_and_a_followed_log() -> None:
    api = FakeApiServer()
    created = api.put(pod("lev-j1-t0", job=1, task=0))
    api.logs["lev-j1-t0"] = "one\ntwo\nthree\n"
    for age, (uid, reason) in enumerate([(created["metadata"]["uid"], "Started"), ("another-uid", "Pulled")]):
        api.put({"kind": "Event", "metadata": {"name": f"e{age}"}, "type": "Normal", "reason": reason, "message": "m",
                 "lastTimestamp": f"2026-01-01T00:00:0{age}Z",
                 "involvedObject": {"kind": "Pod", "name": "lev-j1-t0", "uid": uid}})
    kube = Kube(api)
    assert await pods.logs(kube, "levrt", "lev-j1-t0", tail=2) == "two\nthree\n"
    assert dict(api.requests[-1].query) == {"container": "main", "tailLines": "2"}
    await pods.logs(kube, "levrt", "lev-j1-t0", previous=True)
    assert dict(api.requests[-1].query) == {"container": "main", "previous": "true"}
    by_name = await pods.events(kube, "levrt", "lev-j1-t0")
    assert [e["reason"] for e in by_name] == ["Started", "Pulled"]  # oldest first
    by_uid = await pods.events(kube, "levrt", "lev-j1-t0", uid=created["metadata"]["uid"])
    assert [e["reason"] for e in by_uid] == ["Started"]
    out = io.StringIO()
    await pods.follow_logs(kube, "levrt", "lev-j1-t0", out=out)
    assert out.getvalue() == "one\ntwo\nthree\n"


def ended(terminated: dict[str, Any] | None, **status: Any) -> dict[str, Any]:
    statuses = [{"name": "main", "state": {"terminated": terminated}}] if terminated else []
    return {"status": {"containerStatuses": statuses, **status}}


def test_failure_reads_the_container_then_the_pod() -> None:
    oom = podstatus.failure(ended({"exitCode": 137, "reason": "OOMKilled", "message": "last lines"}))
    assert oom == podstatus.Failure(exit_code=137, reason="OOMKilled", message="last lines", headline="last lines")
    quiet = podstatus.failure(ended({"exitCode": 1, "reason": "Error"}, message="pod says"))
    assert (quiet.reason, quiet.message, quiet.headline) == ("Error", "pod says", "Error")
    evicted = podstatus.failure(ended(None, phase="Failed", reason="Evicted", message="node low on memory"))
    assert evicted == podstatus.Failure(exit_code=None, reason="Evicted", message="node low on memory",
                                        headline="Evicted")
    gone = podstatus.failure({podstatus.DELETED: True, "status": {}})
    assert (gone.reason, gone.message, gone.headline) == ("PodDeleted", "", "")
    assert podstatus.failure({"status": {"phase": "Failed"}}).reason == "Failed"


def test_succeeded_is_exit_zero_or_a_pod_that_says_so_without_one() -> None:
    assert podstatus.succeeded(ended({"exitCode": 0}))
    assert not podstatus.succeeded(ended({"exitCode": 2}))
    assert podstatus.succeeded(ended(None, phase="Succeeded"))
    assert not podstatus.succeeded(ended(None, phase="Failed"))
