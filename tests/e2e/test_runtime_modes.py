"""Both ways a task gets levrt's runtime, on the real cluster: mounted from the runtime image
(image volume, no init container) and copied by an init container; and ``auto`` choosing one by
the probe Pod (``levrt._core.runtime_mode``)."""

from __future__ import annotations

from typing import Any

import pytest

import levrt
from levrt import Cr, lev
from levrt._clients.kube import Kube
from levrt._core.runtime_mode import CONFIGMAP, IMAGE_VOLUME_MINOR, decide
from levrt._shapes.build import PROBE_ROLE
from levrt._shapes.names import ROLE_LABEL, api_path
from levrt.run import session
from tests.e2e.conftest import BUSYBOX

pytestmark = pytest.mark.cluster


@levrt.remote
def where_am_i() -> None:
    import os
    import sys

    lev.set(prefix=sys.prefix, python=os.path.realpath(sys.executable))


async def server_minor(kube_cluster: Any) -> int:
    async with await Kube.connect(kubeconfig=kube_cluster.kubeconfig) as kube:
        return (await kube.server_version()).minor


async def run_in(settings: Any, kube_cluster: Any) -> tuple[list[str], list[dict[str, Any]], dict[str, Any]]:
    async with session(settings=settings, kubeconfig=kube_cluster.kubeconfig) as job:
        task = await Cr(BUSYBOX, entry=where_am_i()).start()
        pod = job.watch.get(task.pod) or {}
        init = [c["name"] for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"][:-1]]
        volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "levrt-runtime")
        record = await (await task.done()).get() or {}
    return init, [volume], record


@pytest.mark.parametrize("mode", ["image", "copy"])
async def test_a_task_runs_with_the_runtime_mounted_or_copied(kube_cluster: Any, levrt_settings: Any,
                                                             mode: str) -> None:
    if mode == "image" and await server_minor(kube_cluster) < IMAGE_VOLUME_MINOR:
        pytest.skip(f"this cluster predates image volumes (1.{IMAGE_VOLUME_MINOR})")
    settings = levrt_settings.replace(runtime_mode=mode, runtime_host_path=None)
    init, volumes, record = await run_in(settings, kube_cluster)
    assert ("levrt-runtime" in init) == (mode == "copy")  # copy: the copier runs before main
    assert ("image" in volumes[0]) == (mode == "image") and ("emptyDir" in volumes[0]) == (mode == "copy")
    assert record["prefix"] == "/levrt" and record["python"].startswith("/levrt/")


@levrt.remote
def idle() -> None:
    import time

    lev.set(service_python=__import__("sys").executable)
    time.sleep(120)


async def test_copy_mode_with_a_service_copies_before_the_service_starts(kube_cluster: Any,
                                                                         levrt_settings: Any) -> None:
    settings = levrt_settings.replace(runtime_mode="copy", runtime_host_path=None)
    async with session(settings=settings, kubeconfig=kube_cluster.kubeconfig) as job:
        task = await Cr(BUSYBOX, entry=where_am_i(), services={"helper": Cr(BUSYBOX, entry=idle())}).start()
        pod = job.watch.get(task.pod) or {}
        assert [c["name"] for c in pod["spec"]["initContainers"]] == ["levrt-runtime", "helper"]
        assert [c["name"] for c in pod["spec"]["containers"]] == ["main"]
        record = await (await task.done()).get() or {}
    assert record["prefix"] == "/levrt"


async def test_auto_probes_once_and_remembers(kube_cluster: Any, levrt_settings: Any) -> None:
    settings = levrt_settings.replace(runtime_mode="auto", runtime_host_path=None)
    async with await Kube.connect(kubeconfig=kube_cluster.kubeconfig) as kube:
        path = api_path("configmaps", namespace=settings.namespace, name=CONFIGMAP)
        try:
            await kube.request("DELETE", path)
        except levrt.ClusterError:
            pass  # not remembered yet
        async with session(settings=settings, kubeconfig=kube_cluster.kubeconfig) as first:
            decided = first.runtime
        remembered = (await kube.request("GET", path))["data"]
    assert remembered["mode"] == decided.mode and remembered["runtimeImage"] == settings.runtime_image
    expected = "image" if await server_minor(kube_cluster) >= IMAGE_VOLUME_MINOR else "copy"
    if kube_cluster.own:  # this machine's node: we know what its runtime can do
        assert decided.mode == expected, decided
    _, volumes, record = await run_in(settings, kube_cluster)
    assert ("image" in volumes[0]) == (decided.mode == "image")
    assert record["prefix"] == "/levrt"


async def probe_verdict(kube_cluster: Any, settings: Any) -> Any:
    """What ``decide`` says for ``settings`` (never remembered: the runtime image is a throwaway)."""
    async with await Kube.connect(kubeconfig=kube_cluster.kubeconfig) as kube:
        version = await kube.server_version()
        decision = await decide(kube, settings, server=version.git_version, minor=version.minor)
        probes = await kube.request("GET", api_path("pods", namespace=settings.namespace),
                                    query={"labelSelector": f"{ROLE_LABEL}={PROBE_ROLE}"})
        path = api_path("configmaps", namespace=settings.namespace, name=CONFIGMAP)
        remembered = (await kube.request("GET", path))["data"]
    assert [p["metadata"]["name"] for p in probes["items"]
            if not p["metadata"].get("deletionTimestamp")] == []  # the probe never outlives the decision
    return decision, remembered


@pytest.mark.parametrize(("image", "why"), [("missing", "cannot start"), ("busybox", "probe failed (exit code 128")])
async def test_a_runtime_image_that_cannot_serve_as_a_volume_means_copy(kube_cluster: Any, levrt_settings: Any,
                                                                        image: str, why: str) -> None:
    """The real failure modes behind the apiserver's back: an image the node cannot get (the Pod
    never starts) and an image without levrt's Python (the probe's container cannot run)."""
    if await server_minor(kube_cluster) < IMAGE_VOLUME_MINOR:
        pytest.skip(f"this cluster predates image volumes (1.{IMAGE_VOLUME_MINOR}); it copies without probing")
    runtime_image = BUSYBOX if image == "busybox" else "levrt.local/no-such-runtime:0"
    settings = levrt_settings.replace(runtime_mode="auto", runtime_host_path=None, runtime_image=runtime_image,
                                      image_pull_policy="Never")
    decision, remembered = await probe_verdict(kube_cluster, settings)
    assert decision.mode == "copy", decision
    assert why in decision.reason, decision
    assert remembered["runtimeImage"] == runtime_image and remembered["mode"] == "copy"
