"""Gated submit against the fake apiserver: the order of the calls, shared objects, and that a
failure at any step leaves nothing half-created (DESIGN.md, "Submit order")."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import levrt
from levrt import Cr
from levrt._clients.api import ApiError, Response
from levrt._clients.kube import Kube
from levrt._clients.submit import delete_pod, submit
from levrt._shapes.build import TaskObjects, build_task
from levrt.errors import ClusterError
from levrt.settings import Settings
from tests.fakes import FakeApiServer

PODS = "/api/v1/namespaces/levrt/pods"
SECRETS = "/api/v1/namespaces/levrt/secrets"
CONFIGMAPS = "/api/v1/namespaces/levrt/configmaps"


@levrt.remote
def entry() -> None:
    pass


def objects(task: int, *, namespace: str = "levrt") -> TaskObjects:
    """A task with a payload Secret and one file ConfigMap (same content in every task)."""
    cr = Cr("busybox:1.36", entry=entry(), files={"/etc/app.conf": "shared = true\n"})
    return build_task(cr, job=1, task=task, collection="default",
                      settings=Settings(namespace=namespace, runtime_image="levrt.local/runtime:t"))


def config_map(objs: TaskObjects) -> str:
    return next(str(o["metadata"]["name"]) for o in objs.owned if o["kind"] == "ConfigMap")


def owner(pod: dict[str, Any]) -> dict[str, str]:
    return {"apiVersion": "v1", "kind": "Pod", "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]}


def calls(api: FakeApiServer, prefix: str = "") -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in api.requests if r.path.startswith(prefix)]


async def test_pod_is_created_gated_then_its_objects_owned_by_it_then_the_gate_is_lifted() -> None:
    api = FakeApiServer(namespaces=["levrt"])
    objs = objects(0)
    pod = await submit(Kube(api), "levrt", objs)

    created = api.history[0]
    assert (created.type, created.plural) == ("ADDED", "pods")
    assert created.object["spec"]["schedulingGates"] == [{"name": "levrt.io/objects"}]
    for plural, name in (("secrets", "lev-j1-t0-payload"), ("configmaps", config_map(objs))):
        assert api.get(plural, name)["metadata"]["ownerReferences"] == [owner(pod)]  # type: ignore[index]
    assert "schedulingGates" not in api.get("pods", "lev-j1-t0")["spec"]  # type: ignore[index]
    assert calls(api)[0] == ("POST", PODS)
    assert sorted(calls(api)[1:3]) == [("POST", CONFIGMAPS), ("POST", SECRETS)]
    assert calls(api)[3:] == [("PATCH", f"{PODS}/lev-j1-t0")]  # the gate, last
    assert api.requests[3].content_type == "application/json-patch+json"


async def test_a_file_object_that_exists_is_shared_by_both_pods() -> None:
    api = FakeApiServer(namespaces=["levrt"])
    kube = Kube(api)
    first = await submit(kube, "levrt", objects(0))
    second_objs = objects(1)
    second = await submit(kube, "levrt", second_objs)
    name = config_map(second_objs)

    assert api.get("configmaps", name)["metadata"]["ownerReferences"] == [owner(first), owner(second)]  # type: ignore[index]
    assert calls(api, CONFIGMAPS)[-2:] == [("POST", CONFIGMAPS), ("PATCH", f"{CONFIGMAPS}/{name}")]
    await delete_pod(kube, "levrt", "lev-j1-t0")
    assert api.names("configmaps") == [name]  # still owned by the second Pod
    await delete_pod(kube, "levrt", "lev-j1-t1")
    assert api.names("configmaps") == []


async def test_a_file_object_collected_between_the_conflict_and_the_patch_is_created_again() -> None:
    api = FakeApiServer(namespaces=["levrt"])
    kube = Kube(api)
    await submit(kube, "levrt", objects(0))
    second_objs = objects(1)
    name = config_map(second_objs)
    api.before("PATCH", f"{CONFIGMAPS}/{name}", lambda: api.remove("configmaps", name))  # the GC was faster

    second = await submit(kube, "levrt", second_objs)

    assert api.get("configmaps", name)["metadata"]["ownerReferences"] == [owner(second)]  # type: ignore[index]
    assert calls(api, CONFIGMAPS)[-3:] == [("POST", CONFIGMAPS), ("PATCH", f"{CONFIGMAPS}/{name}"),
                                           ("POST", CONFIGMAPS)]


def cancel() -> Response:
    raise asyncio.CancelledError  # Ctrl-C while the objects are being created


def failing_at(method: str, path: str, code: int) -> FakeApiServer:
    """An apiserver answering ``code`` to ``method path`` (0: the client is cancelled right then)."""
    api = FakeApiServer(namespaces=["levrt"])
    if code:
        api.fail(method, path, code)
    else:
        api.before(method, path, cancel)
    return api


@pytest.mark.parametrize(("method", "path", "code", "error"), [
    ("POST", SECRETS, 403, ClusterError),
    ("POST", CONFIGMAPS, 422, ApiError),
    ("PATCH", f"{PODS}/lev-j1-t0", 500, ApiError),
    ("POST", CONFIGMAPS, 0, asyncio.CancelledError),
], ids=["secret-forbidden", "configmap-invalid", "gate-lift-fails", "cancelled"])
async def test_a_failure_after_the_pod_was_created_deletes_it_and_nothing_remains(
        method: str, path: str, code: int, error: type[BaseException]) -> None:
    api = failing_at(method, path, code)
    with pytest.raises(error):
        await submit(Kube(api), "levrt", objects(0))
    assert ("DELETE", f"{PODS}/lev-j1-t0") in calls(api)
    assert api.objects == {}  # the Pod deleted, what it owned collected with it


async def test_a_missing_namespace_says_how_to_fix_it() -> None:
    api = FakeApiServer(namespaces=["levrt"])
    with pytest.raises(ClusterError, match="Namespace 'scans' does not exist") as caught:
        await submit(Kube(api), "scans", objects(0, namespace="scans"))
    assert "LEVRT_NAMESPACE" in str(caught.value) and not isinstance(caught.value, ApiError)
    assert api.objects == {}


async def test_a_forbidden_pod_names_the_kind_the_namespace_and_the_role() -> None:
    api = FakeApiServer(namespaces=["levrt"])
    api.fail("POST", PODS, 403, 'pods is forbidden: User "dev" cannot create resource "pods"')
    with pytest.raises(ClusterError, match="Not allowed to create Pod in namespace 'levrt'") as caught:
        await submit(Kube(api), "levrt", objects(0))
    assert 'User "dev" cannot create' in str(caught.value) and "levrt Role" in str(caught.value)
    assert calls(api) == [("POST", PODS)]  # nothing else tried, nothing to delete


async def test_delete_pod_ignores_a_missing_pod_and_only_logs_other_failures(caplog: pytest.LogCaptureFixture) -> None:
    api = FakeApiServer()
    kube = Kube(api)
    await delete_pod(kube, "levrt", "lev-j9-t9")  # 404: already gone
    api.put({"kind": "Pod", "metadata": {"name": "lev-j1-t0"}, "spec": {"containers": []}})
    api.fail("DELETE", f"{PODS}/lev-j1-t0", 500, "etcd timeout")
    with caplog.at_level(logging.WARNING, logger="lev"):
        await delete_pod(kube, "levrt", "lev-j1-t0")
    assert "could not delete Pod lev-j1-t0" in caplog.text and "etcd timeout" in caplog.text
    assert dict(api.requests[-1].query) == {"gracePeriodSeconds": "0"}


def lease(api: FakeApiServer) -> dict[str, Any]:
    """The job's Lease in the fake, as an ownerReference (an object whose owner is gone is collected)."""
    made = api.put({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "levrt-job-1"}})
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "name": "levrt-job-1",
            "uid": made["metadata"]["uid"], "blockOwnerDeletion": False}


async def test_with_a_lease_the_objects_come_first_then_the_pod_ungated_all_owned_by_the_lease() -> None:
    api = FakeApiServer(namespaces=["levrt"])
    objs = objects(0)
    owner = lease(api)
    await submit(Kube(api), "levrt", objs, owner=owner)
    assert sorted(calls(api)[:2]) == [("POST", CONFIGMAPS), ("POST", SECRETS)]
    assert calls(api)[2:] == [("POST", PODS)]  # three requests: no gate to lift
    pod = api.get("pods", "lev-j1-t0")
    assert pod is not None and "schedulingGates" not in pod["spec"]
    for plural, name in (("pods", "lev-j1-t0"), ("secrets", "lev-j1-t0-payload"), ("configmaps", config_map(objs))):
        assert api.get(plural, name)["metadata"]["ownerReferences"] == [owner]  # type: ignore[index]


async def test_with_a_lease_a_task_with_only_a_payload_costs_two_requests() -> None:
    api = FakeApiServer(namespaces=["levrt"])
    plain = build_task(Cr("busybox:1.36", entry=entry()), job=1, task=3, collection="default",
                       settings=Settings(runtime_image="levrt.local/runtime:t"))
    await submit(Kube(api), "levrt", plain, owner=lease(api))
    assert calls(api) == [("POST", SECRETS), ("POST", PODS)]


@pytest.mark.parametrize(("method", "path", "code", "error"), [
    ("POST", PODS, 403, ClusterError),
    ("POST", PODS, 422, ApiError),
    ("POST", CONFIGMAPS, 422, ApiError),
    ("POST", PODS, 0, asyncio.CancelledError),
    ("POST", CONFIGMAPS, 0, asyncio.CancelledError),
], ids=["pod-forbidden", "pod-invalid", "configmap-invalid", "cancelled", "cancelled-beside-the-secret"])
async def test_with_a_lease_a_pod_that_cannot_be_made_takes_its_payload_along(
        method: str, path: str, code: int, error: type[BaseException]) -> None:
    api = failing_at(method, path, code)
    with pytest.raises(error):
        await submit(Kube(api), "levrt", objects(0), owner=lease(api))
    assert api.get("secrets", "lev-j1-t0-payload") is None and api.get("pods", "lev-j1-t0") is None
    # A file ConfigMap may be shared by the job's other tasks: its Lease takes it at the end.
    assert set(api.names("configmaps")) <= {config_map(objects(0))}
