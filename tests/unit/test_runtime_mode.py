"""Which way task Pods get the runtime: image volume where the cluster really mounts one, the
init copy everywhere else; decided by a probe Pod once and remembered (``levrt._core.runtime_mode``).

The failure modes are the real ones, played by the in-memory apiserver: an apiserver that refuses
the volume (gate off: 422), a kubelet that cannot create the container, a runtime that mounts an
empty directory (the probe exits 3)."""

from __future__ import annotations

from typing import Any

from levrt._clients.kube import Kube
from levrt._core import runtime_mode
from levrt._core.runtime_mode import CONFIGMAP, decide
from levrt.settings import Settings
from tests.fakes import FakeApiServer

SETTINGS = Settings(runtime_image="levrt.local/runtime:test")
SERVER = "v1.36.3"


async def decided(api: FakeApiServer, settings: Settings = SETTINGS, *, server: str = SERVER) -> Any:
    minor = int(server.split(".")[1])
    return await decide(Kube(api), settings, server=server, minor=minor)


def probe_pods(api: FakeApiServer) -> list[str]:
    return [r.path for r in api.requests if r.method == "POST" and r.path.endswith("/pods")]


async def test_an_old_cluster_copies_without_a_probe() -> None:
    api = FakeApiServer()
    decision = await decided(api, server="v1.34.4")
    assert decision.mode == "copy" and "1.35" in decision.reason
    assert probe_pods(api) == []


async def test_the_node_cache_and_an_explicit_mode_need_no_probe() -> None:
    api = FakeApiServer()
    assert (await decided(api, SETTINGS.replace(runtime_host_path="/var/lib/levrt/rt"))).mode == "node"
    assert (await decided(api, SETTINGS.replace(runtime_mode="copy"))).mode == "copy"
    assert (await decided(api, SETTINGS.replace(runtime_mode="image"))).mode == "image"
    assert probe_pods(api) == []


async def test_a_probe_that_finds_the_runtime_chooses_the_image_volume_and_is_remembered() -> None:
    api = FakeApiServer()
    api.autorun(0)
    decision = await decided(api)
    assert decision.mode == "image"
    assert len(probe_pods(api)) == 1 and api.names("pods") == []  # the probe Pod is gone again
    probe = next(r for r in api.requests if r.method == "POST" and r.path.endswith("/pods"))
    assert b'"image": {"reference": "levrt.local/runtime:test"' in (probe.body or b"")
    remembered = api.get("configmaps", CONFIGMAP)
    assert remembered is not None and remembered["data"]["mode"] == "image"
    again = await decided(api)  # the next job reads the answer
    assert again.mode == "image" and len(probe_pods(api)) == 1
    upgraded = await decided(api, server="v1.37.2")  # a new server version asks again
    assert upgraded.mode == "image" and len(probe_pods(api)) == 2


async def test_an_empty_mount_means_copy() -> None:
    api = FakeApiServer()
    api.autorun(3)
    decision = await decided(api)
    assert decision.mode == "copy" and "empty" in decision.reason
    assert api.get("configmaps", CONFIGMAP)["data"]["mode"] == "copy"  # type: ignore[index]


async def test_a_kubelet_that_cannot_create_the_container_means_copy() -> None:
    api = FakeApiServer()

    def kubelet(pod: dict[str, Any]) -> None:
        api.set_waiting(pod["metadata"]["name"], "CreateContainerConfigError", "image volumes are not supported")

    api.on_ungated = kubelet
    decision = await decided(api)
    assert decision.mode == "copy" and "CreateContainerConfigError" in decision.reason
    assert api.names("pods") == []


async def test_an_apiserver_that_refuses_the_volume_means_copy() -> None:
    api = FakeApiServer()
    api.fail("POST", "/api/v1/namespaces/levrt/pods", 422,
             "spec.volumes[0]: Required value: must specify a volume type")
    decision = await decided(api)
    assert decision.mode == "copy" and "refused an image volume" in decision.reason
    assert api.names("pods") == []


async def test_a_probe_that_never_settles_copies_this_time_and_asks_again(monkeypatch: Any) -> None:
    monkeypatch.setattr(runtime_mode, "PROBE_TIMEOUT", 0.2)
    api = FakeApiServer()  # nobody runs the Pod
    decision = await decided(api)
    assert decision.mode == "copy" and "no answer" in decision.reason
    assert api.get("configmaps", CONFIGMAP) is None and api.names("pods") == []


async def test_the_remembered_decision_is_not_a_job_object_that_gc_would_remove() -> None:
    api = FakeApiServer()
    api.autorun(0)
    await decided(api)
    stored = api.get("configmaps", CONFIGMAP)
    assert stored is not None
    assert "app.kubernetes.io/managed-by" not in stored["metadata"]["labels"]
