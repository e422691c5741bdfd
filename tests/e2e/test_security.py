"""Security you can check on the real apiserver (issue 12, item 4): RBAC, tokens, payloads, PodSecurity.

Why on the cluster: what a ServiceAccount may do is decided by the apiserver's authorizer over every
Role and ClusterRole installed, not by reading rbac.yaml; a Pod's token mount is decided by the
ServiceAccount admission plugin; PodSecurity by its admission plugin. So the matrix asks the
apiserver (SubjectAccessReview as each levrt ServiceAccount), a real task Pod is inspected, and
levrt's Pods are dry-run in a namespace that enforces ``baseline``.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

import levrt
from levrt import Cr
from levrt._clients import submit
from levrt._clients.api import ApiError, Forbidden
from levrt._clients.kube import Kube
from levrt._clients.resources import plural
from levrt._shapes.names import api_path
from levrt.errors import ClusterError
from levrt.settings import Settings
from tests.e2e.conftest import BUSYBOX, REDIS
from tests.helpers import build

pytestmark = pytest.mark.cluster

VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
# (group, resource) in the namespace: every verb on each is checked, allowed exactly when listed below.
NAMESPACED = (
    ("", "pods"), ("", "pods/exec"), ("", "pods/log"), ("", "pods/attach"), ("", "pods/ephemeralcontainers"),
    ("", "configmaps"), ("", "secrets"), ("", "services"), ("", "serviceaccounts"), ("", "serviceaccounts/token"),
    ("", "events"), ("", "persistentvolumeclaims"), ("coordination.k8s.io", "leases"), ("apps", "deployments"),
    ("apps", "daemonsets"), ("batch", "jobs"), ("batch", "cronjobs"), ("rbac.authorization.k8s.io", "roles"),
    ("rbac.authorization.k8s.io", "rolebindings"), ("networking.k8s.io", "networkpolicies"),
)
CLUSTER_SCOPED = (
    ("", "nodes"), ("", "namespaces"), ("", "persistentvolumes"), ("rbac.authorization.k8s.io", "clusterroles"),
    ("rbac.authorization.k8s.io", "clusterrolebindings"), ("certificates.k8s.io", "certificatesigningrequests"),
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"),
    ("authentication.k8s.io", "tokenreviews"), ("authorization.k8s.io", "subjectaccessreviews"),
)
OTHER_NAMESPACES = ("kube-system", "default")
# What each levrt ServiceAccount needs in its own namespace, and nothing else anywhere.
NEEDS: dict[str, dict[tuple[str, str], set[str]]] = {
    # An orchestration run in a Pod does what the engine does (levrt/_core, levrt/_clients/submit.py,
    # sweep.py, signals.py, the job Lease).
    "levrt-orchestrator": {
        ("", "pods"): {"get", "list", "watch", "create", "delete", "deletecollection", "patch"},
        ("", "pods/exec"): {"create", "get"},
        ("", "pods/log"): {"get"},
        ("", "events"): {"list"},
        ("", "configmaps"): {"get", "list", "create", "delete", "patch"},
        ("", "secrets"): {"get", "list", "create", "delete", "deletecollection", "patch"},
        ("coordination.k8s.io", "leases"): {"get", "create", "update", "patch", "delete"},
        ("batch", "jobs"): {"get", "patch"},
    },
    # Deletes job Leases whose holder stopped renewing them; the garbage collector does the rest.
    "levrt-reaper": {
        ("coordination.k8s.io", "leases"): {"get", "list", "delete"},
    },
    # The console's API (levrt/_console): starts published tools' orchestration Pods, reads Pods and
    # their logs, cancels a job (its orchestration Job or Pod, or its Lease), lists the schedules.
    "levrt-console": {
        ("", "pods"): {"get", "list", "watch", "create", "delete", "patch"},
        ("", "pods/log"): {"get"},
        ("coordination.k8s.io", "leases"): {"get", "list", "delete"},
        ("batch", "jobs"): {"create", "patch", "delete"},
        ("batch", "cronjobs"): {"list"},
    },
}
CLUSTER_NEEDS: dict[str, dict[tuple[str, str], set[str]]] = {
    # The only cluster-wide rights levrt asks for (system:auth-delegator): the console asks the
    # apiserver who a caller's token is and what that caller may do.
    "levrt-console": {
        ("authentication.k8s.io", "tokenreviews"): {"create"},
        ("authorization.k8s.io", "subjectaccessreviews"): {"create"},
    },
}
SPECIAL = (  # privilege escalation paths, checked cluster-wide
    {"group": "", "resource": "users", "verb": "impersonate"},
    {"group": "", "resource": "serviceaccounts", "verb": "impersonate"},
    {"group": "rbac.authorization.k8s.io", "resource": "roles", "verb": "escalate"},
    {"group": "rbac.authorization.k8s.io", "resource": "clusterroles", "verb": "bind"},
)


async def _allowed(kube: Kube, user: str, namespace: str, attrs: dict[str, Any]) -> bool:
    base, _, sub = attrs["resource"].partition("/")
    resource_attributes = {"namespace": namespace, "verb": attrs["verb"], "group": attrs["group"],
                           "resource": base, **({"subresource": sub} if sub else {})}
    if not namespace:
        resource_attributes.pop("namespace")
    review = {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": user, "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace or 'x'}",
                                          "system:authenticated"],
                 "resourceAttributes": resource_attributes},
    }
    answer = await kube.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body=review)
    return bool(answer["status"].get("allowed"))


async def test_rbac_matrix_each_levrt_service_account_gets_exactly_what_it_needs(kube_cluster: Any) -> None:
    """Every (resource, verb) in the namespace is allowed iff levrt needs it; nothing elsewhere but the
    console's token and access reviews."""
    ns = kube_cluster.namespace
    kube = await Kube.connect(kubeconfig=kube_cluster.kubeconfig)
    try:
        listing = await kube.request("GET", api_path("serviceaccounts", namespace=ns))
        present = {item["metadata"]["name"] for item in listing["items"]}
        accounts = sorted(sa for sa in NEEDS if sa in present)
        unknown = sorted(sa for sa in present if sa.startswith("levrt") and sa not in NEEDS)
        assert "levrt-orchestrator" in accounts, present
        assert not unknown, f"levrt ServiceAccounts without an expected matrix here: {unknown}"
        checks: list[tuple[str, str, dict[str, Any], bool]] = []
        for sa in accounts:
            needs = NEEDS[sa]
            for (group, resource) in NAMESPACED:
                for verb in VERBS:
                    attrs = {"group": group, "resource": resource, "verb": verb}
                    checks.append((sa, ns, attrs, verb in needs.get((group, resource), set())))
                    checks += [(sa, other, attrs, False) for other in OTHER_NAMESPACES]
            cluster_needs = CLUSTER_NEEDS.get(sa, {})
            for (group, resource) in CLUSTER_SCOPED:
                checks += [(sa, "", {"group": group, "resource": resource, "verb": verb},
                            verb in cluster_needs.get((group, resource), set())) for verb in VERBS]
            checks += [(sa, "", dict(attrs), False) for attrs in SPECIAL]
        gate = asyncio.Semaphore(32)

        async def judge(sa: str, namespace: str, attrs: dict[str, Any]) -> bool:
            async with gate:
                return await _allowed(kube, f"system:serviceaccount:{ns}:{sa}", namespace, attrs)

        answers = await asyncio.gather(*(judge(sa, where, attrs) for sa, where, attrs, _ in checks))
    finally:
        await kube.close()
    wrong = [f"{sa} {'may' if got else 'may not'} {a['verb']} {a['resource']} in {where or 'the cluster'}"
             for (sa, where, a, want), got in zip(checks, answers, strict=True) if got != want]
    print(f"\nRBAC matrix: {len(checks)} checks over {accounts}, {len(wrong)} wrong")
    assert not wrong, "\n".join(wrong)


@levrt.remote
def look_for_credentials() -> None:
    import os

    from levrt import lev

    token_dir = "/var/run/secrets/kubernetes.io/serviceaccount"
    lev.set(token=os.path.exists(token_dir), env_payload=any("LEVRT-PAYLOAD" in v for v in os.environ.values()))


async def test_task_pods_carry_no_token_and_payloads_only_in_secrets(job: Any) -> None:
    """A real running task Pod: no token volume or mount, no token inside the container, and the
    pickled payload only in its Secret (no ConfigMap or env var holds one)."""
    ns = job.settings.namespace
    task = await Cr(BUSYBOX, f"test/security-{uuid.uuid4().hex[:8]}@1.0", entry=look_for_credentials(),
                    files={"/etc/note.txt": b"not a payload"}).start()
    pod = await job.kube.request("GET", api_path("pods", namespace=ns, name=task.pod))
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert not any("serviceAccountToken" in str(v.get("projected", {})) for v in spec.get("volumes", []))
    for container in spec["containers"] + spec.get("initContainers", []):
        assert not any(m["mountPath"].startswith("/var/run/secrets") for m in container.get("volumeMounts", []))
        for var in container.get("env", []):
            assert "LEVRT-PAYLOAD" not in var.get("value", ""), var["name"]
            if var["name"] == "LEVRT_STORE_URI":  # the task user's: it may not write levrt's journal
                assert var["valueFrom"]["secretKeyRef"]["name"] == "levrt-store-task", container["name"]
    selector = {"labelSelector": "app.kubernetes.io/managed-by=levrt"}
    configmaps = await job.kube.request("GET", api_path("configmaps", namespace=ns), query=selector)
    for cm in configmaps["items"]:
        texts = [*cm.get("data", {}).values(), *cm.get("binaryData", {}).values()]
        assert not any("LEVRT-PAYLOAD" in t or "TEVWUlQtUEFZTE9BRC" in t for t in texts), cm["metadata"]["name"]
    secrets = await job.kube.request("GET", api_path("secrets", namespace=ns),
                                     query={"labelSelector": f"levrt.io/role=payload,levrt.io/job={job.job_id}"})
    assert [s["metadata"]["name"] for s in secrets["items"]] == [f"{task.pod}-payload"]
    record = await (await task).get()
    assert record["token"] is False
    assert record["env_payload"] is False


# -- PodSecurity ------------------------------------------------------------------------------------


@levrt.remote
def noop() -> None:
    pass


def _baseline_crs() -> dict[str, Cr]:
    """What levrt runs day to day; each must meet the baseline standard."""
    return {
        "plain": Cr(BUSYBOX, cmd=["true"]),
        "entry": Cr(BUSYBOX, entry=noop()),
        "services": Cr(BUSYBOX, entry=noop(), services={"redis": Cr(REDIS, ports=[6379])}, ports=[8080, 8081]),
        "files": Cr(BUSYBOX, entry=noop(), files={"/etc/a.txt": "text", "/etc/b.bin": b"\0\1",
                                                  "/etc/c": levrt.Digest("a" * 64)}),
        "baseline-capability": Cr(BUSYBOX, capabilities=["NET_BIND_SERVICE", "CHOWN"]),
        "run-options": Cr(BUSYBOX, timeout=30, resources={"limits": {"cpu": "1"}}, retries=2),
    }


def _beyond_baseline_crs() -> dict[str, Cr]:
    return {
        "host": Cr(BUSYBOX, host=True, cmd=["true"]),
        "net-raw": Cr(BUSYBOX, capabilities=["NET_RAW"]),
        "net-admin": Cr(BUSYBOX, entry=noop(), capabilities=["NET_ADMIN"]),
    }


async def _dry_run(kube: Kube, ns: str, objects: Any) -> None:
    for body in (objects.pod, *(submit.with_owner(o, pod_name=objects.name, pod_uid=str(uuid.uuid4()))
                                for o in objects.owned)):
        await kube.request("POST", api_path(plural(body["kind"]), namespace=ns), body=body, query={"dryRun": "All"})


async def test_task_pods_meet_pod_security_baseline_unless_they_ask_for_more(kube_cluster: Any) -> None:
    """In a namespace enforcing ``baseline``: everyday task Pods are admitted (copy and image runtime
    modes), host networking and NET_RAW/NET_ADMIN are refused with the apiserver's reason, and
    levrt's error for that names the namespace label that allows them."""
    ns = f"levrt-psa-{uuid.uuid4().hex[:6]}"
    kube = await Kube.connect(kubeconfig=kube_cluster.kubeconfig)
    namespace = {"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": ns, "labels": {"pod-security.kubernetes.io/enforce": "baseline"}}}
    await kube.request("POST", "/api/v1/namespaces", body=namespace)
    try:
        refused: dict[str, str] = {}
        for mode in ("copy", "image"):
            settings = Settings(namespace=ns, runtime_mode=mode)
            for cr in _baseline_crs().values():
                await _dry_run(kube, ns, build(cr, settings=settings))  # raises if refused
        # The runtime node cache mounts a hostPath: beyond baseline too.
        node_cache = Settings(namespace=ns, runtime_host_path="/var/lib/levrt/runtime")
        crs = {**_beyond_baseline_crs(), "node-cache": Cr(BUSYBOX, entry=noop())}
        for name, cr in crs.items():
            objects = build(cr, settings=node_cache if name == "node-cache" else Settings(namespace=ns))
            with pytest.raises(Forbidden) as info:
                await _dry_run(kube, ns, objects)
            refused[name] = str(info.value)
            assert "violates PodSecurity" in refused[name], refused[name]
        assert "hostNetwork" in refused["host"]
        assert "NET_RAW" in refused["net-raw"] and "NET_ADMIN" in refused["net-admin"]
        assert "hostPath" in refused["node-cache"]
        # What a user sees: levrt's submit turns the refusal into the label to set (nothing is created).
        with pytest.raises(ClusterError) as info:
            await submit.create(kube, ns, build(crs["net-raw"], settings=Settings(namespace=ns)).pod)
        message = str(info.value)
        assert "pod-security.kubernetes.io/enforce=privileged" in message and ns in message
        assert "levrt Role" not in message
        # ... and with the label the same Pods are admitted.
        label = {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "privileged"}}}
        await kube.request("PATCH", f"/api/v1/namespaces/{ns}", body=label,
                           content_type="application/merge-patch+json")
        for name, cr in crs.items():
            objects = build(cr, settings=node_cache if name == "node-cache" else Settings(namespace=ns))
            for attempt in range(20):  # PodSecurity reads namespace labels from a cache: a moment behind the patch
                try:
                    await _dry_run(kube, ns, objects)
                    break
                except Forbidden:
                    if attempt == 19:
                        raise
                    await asyncio.sleep(0.5)
    finally:
        try:
            await kube.request("DELETE", f"/api/v1/namespaces/{ns}")
        except ApiError:
            pass
        await kube.close()
