"""Every golden case's objects are accepted by the real apiserver (``dryRun=All``).

Why: golden snapshots pin what the builder writes, but only the apiserver knows whether it is
valid (field names, native-sidecar rules, probe shapes, label syntax). Dry-run runs the full
admission and validation chain and persists nothing.
"""

from __future__ import annotations

from typing import Any

import pytest

from levrt._clients.api import ApiError
from levrt._clients.kube import Kube
from levrt._clients.submit import with_owner
from levrt._shapes.names import api_path, plural
from tests.unit.golden_cases import golden_cases

pytestmark = pytest.mark.cluster

CASES = golden_cases()


@pytest.mark.parametrize("case", sorted(CASES))
async def test_golden_case_accepted_by_apiserver(case: str, kube_cluster: Any) -> None:
    objects = CASES[case]
    kube = await Kube.connect(kubeconfig=kube_cluster.kubeconfig)
    try:
        ns = kube_cluster.namespace
        created = await kube.request("POST", api_path("pods", namespace=ns), body=objects.pod,
                                     query={"dryRun": "All"})
        assert created["metadata"]["name"] == objects.name
        # Native sidecars survive validation as init containers with restartPolicy Always.
        for init in objects.pod["spec"].get("initContainers", []):
            echoed = next(c for c in created["spec"]["initContainers"] if c["name"] == init["name"])
            assert echoed.get("restartPolicy") == init.get("restartPolicy")
        for obj in objects.owned:
            owned = with_owner(obj, pod_name=objects.name, pod_uid="00000000-0000-4000-8000-000000000000")
            try:
                await kube.request("POST", api_path(plural(obj["kind"]), namespace=ns), body=owned,
                                   query={"dryRun": "All"})
            except ApiError as exc:
                if exc.status != 409:  # a shared file object may exist from an earlier run
                    raise
    finally:
        await kube.close()


async def test_apiserver_rejects_an_invalid_pod(kube_cluster: Any) -> None:
    """The dry-run path really validates: a broken copy of a golden Pod is refused."""
    pod = dict(CASES["hello-world"].pod)
    pod = {**pod, "spec": {**pod["spec"], "restartPolicy": "Sometimes"}}
    kube = await Kube.connect(kubeconfig=kube_cluster.kubeconfig)
    try:
        with pytest.raises(ApiError) as info:
            await kube.request("POST", api_path("pods", namespace=kube_cluster.namespace), body=pod,
                               query={"dryRun": "All"})
        assert info.value.status == 422
    finally:
        await kube.close()


async def test_the_run_options_survive_validation(kube_cluster: Any) -> None:
    """What the apiserver keeps of every run option (nothing dropped or defaulted away)."""
    objects = CASES["run-options"]
    kube = await Kube.connect(kubeconfig=kube_cluster.kubeconfig)
    try:
        created = await kube.request("POST", api_path("pods", namespace=kube_cluster.namespace), body=objects.pod,
                                     query={"dryRun": "All"})
    finally:
        await kube.close()
    spec, sent = created["spec"], objects.pod["spec"]
    main = next(c for c in spec["containers"] if c["name"] == "main")
    sent_main = next(c for c in sent["containers"] if c["name"] == "main")
    assert main["securityContext"]["capabilities"]["add"] == ["NET_RAW", "NET_ADMIN"]
    assert main["resources"] == sent_main["resources"]
    assert spec["activeDeadlineSeconds"] == sent["activeDeadlineSeconds"]
    assert spec["nodeSelector"] == sent["nodeSelector"]
    assert all(t in spec["tolerations"] for t in sent["tolerations"])
    assert created["metadata"]["labels"]["levrt.io/attempt"] == "1"
