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
from levrt._clients.resources import plural
from levrt._clients.submit import with_owner
from levrt._shapes.names import api_path
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


# -- bad input at scale (issue 12, item 6): generated Crs against the real apiserver ------------------

GENERATED = 1000
"""Valid Crs drawn by tests/strategies.py whose objects the apiserver must accept."""
DRY_RUN_CONCURRENCY = 32


def _generated(strategy: Any, count: int) -> list[Any]:
    """``count`` draws of ``strategy`` (Hypothesis' generation phase only: nothing to shrink)."""
    from hypothesis import HealthCheck, Phase, given, settings

    drawn: list[Any] = []

    @settings(max_examples=count, phases=[Phase.generate], deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value: Any) -> None:
        drawn.append(value)

    collect()
    return drawn


async def test_generated_valid_crs_are_accepted_by_the_apiserver(kube_cluster: Any) -> None:
    """At least 1,000 generated valid Crs: each one's Pod and owned objects pass ``dryRun=All``.

    A refusal is a Cr that levrt accepts and Kubernetes does not: a validation bug in ``levrt.cr``
    (or the builder), reported with the Cr and the apiserver's message.
    """
    import asyncio

    from levrt import Cr
    from levrt.errors import LevrtError
    from levrt.settings import Settings
    from tests.helpers import build
    from tests.strategies import REGISTRY, bad_cr_kwargs, cr_kwargs

    settings = Settings(namespace=kube_cluster.namespace, image_registry=REGISTRY)
    drawn = _generated(cr_kwargs(), GENERATED)
    not_rejected = [bad for bad in _generated(bad_cr_kwargs(), GENERATED) if not _rejects(bad.kwargs)]
    crs: list[Cr] = []
    refused_by_cr: list[str] = []
    for kwargs in drawn:
        try:
            crs.append(Cr(**kwargs))
        except LevrtError as exc:
            refused_by_cr.append(f"{kwargs!r:.200}: {exc}")
    refused: list[str] = []
    gate = asyncio.Semaphore(DRY_RUN_CONCURRENCY)
    zero_uid = "00000000-0000-4000-8000-000000000000"
    kube = await Kube.connect(kubeconfig=kube_cluster.kubeconfig)

    async def dry_run(index: int, cr: Cr) -> None:
        objects = build(cr, job=999_999, task=index, settings=settings)
        bodies = [objects.pod, *(with_owner(o, pod_name=objects.name, pod_uid=zero_uid) for o in objects.owned)]
        for body in bodies:
            async with gate:
                try:
                    await kube.request("POST", api_path(plural(body["kind"]), namespace=kube_cluster.namespace),
                                       body=body, query={"dryRun": "All"})
                except ApiError as exc:
                    if exc.status != 409:  # a content-addressed file object that exists already
                        refused.append(f"{cr!r:.300}\n  {body['kind']}: {exc}")

    try:
        await asyncio.gather(*(dry_run(i, cr) for i, cr in enumerate(crs)))
    finally:
        await kube.close()
    print(f"\ngenerated valid Crs: tried {len(drawn)}, refused by Cr {len(refused_by_cr)}, "
          f"refused by the apiserver {len(refused)}; generated invalid Crs: tried {GENERATED}, "
          f"not rejected with a LevrtError {len(not_rejected)}")
    assert len(drawn) >= GENERATED
    assert not refused_by_cr, "\n".join(refused_by_cr[:5])
    assert not refused, "\n".join(refused[:5])
    assert not not_rejected, not_rejected[:5]


def _rejects(kwargs: dict[str, Any]) -> bool:
    """Whether ``Cr(**kwargs)`` raises a LevrtError (any other exception propagates)."""
    from levrt import Cr
    from levrt.errors import LevrtError

    try:
        Cr(**kwargs)
    except LevrtError:
        return True
    return False
