"""charts/levrt renders what the SDK relies on, rejects unknown values, and k8s/ matches it.

Why: the SDK and task Pods find the store only through the Secret ``levrt-store`` (key ``uri``),
in-cluster orchestrations need exactly the Role's permissions, and the NetworkPolicy is the
store's only guard when FerretDB (no authentication) is used. These are checked on the rendered
objects with the real helm binary; no cluster is needed.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from levrt import Cr, __version__
from levrt._build.kind import KIND_HOST_CIDRS, KIND_STORE_PORT, up_plan
from levrt._shapes.orchestrator import SERVICE_ACCOUNT, SETTINGS_CONFIGMAP, orchestrator_objects
from levrt.settings import DEFAULT_RUNTIME_IMAGE, Settings
from tests.chart import CHART, K8S, ROOT, by_key, helm_binary, parse, render, render_script, run_helm
from tests.cluster.node import kubectl_binary
from tests.helpers import build

helm_only = pytest.mark.helm

STORE_SELECTOR = {
    "app.kubernetes.io/name": "levrt",
    "app.kubernetes.io/instance": "levrt",
    "app.kubernetes.io/component": "store",
}


@pytest.fixture(scope="module")
def helm() -> Iterator[str]:
    yield helm_binary()


@pytest.fixture(scope="module")
def default(helm: str) -> dict[tuple[str, str], dict[str, Any]]:
    return by_key(render(helm))


def _password(objects: dict[tuple[str, str], dict[str, Any]]) -> str:
    return str(objects[("Secret", "levrt-store-auth")]["stringData"]["password"])


def _labels_of_every_object(obj: dict[str, Any]) -> Iterator[dict[str, str]]:
    yield obj["metadata"].get("labels") or {}
    template = obj.get("spec", {}).get("template")
    if template:
        yield template["metadata"].get("labels") or {}
    for claim in obj.get("spec", {}).get("volumeClaimTemplates") or []:
        yield claim["metadata"].get("labels") or {}


# -- lint and schema ----------------------------------------------------------------------------


@helm_only
@pytest.mark.parametrize("sets", [
    (),
    ("store.engine=ferretdb", "store.persistence.enabled=false"),
    ("store.nodePort.enabled=true", "networkPolicy.enabled=false", "settings.timeout=600"),
], ids=["default", "ferretdb", "nodeport"])
def test_lint_strict(helm: str, sets: tuple[str, ...]) -> None:
    args = [a for s in sets for a in ("--set", s)]
    result = run_helm(helm, "lint", "--strict", str(CHART), *args)
    assert result.returncode == 0, result.stdout + result.stderr


@helm_only
@pytest.mark.parametrize("bad", [
    "bogus=1",
    "store.bogus=1",
    "store.persistence.sizee=1Gi",
    "store.nodePort.bogus=true",
    "store.mongodb.tag=7",
    "settings.resources.limitz.cpu=1",
    "networkPolicy.allowCIDRs=x",
    "runtime.nodeCache.bogus=1",
])
def test_unknown_value_key_is_rejected(helm: str, bad: str) -> None:
    result = run_helm(helm, "template", "levrt", str(CHART), "--set", bad)
    assert result.returncode != 0
    assert "additional properties" in result.stderr, result.stderr


@helm_only
@pytest.mark.parametrize("bad", [
    "store.engine=postgres",
    "store.auth.password=p@ss/word",
    "settings.timeout=0",
    "settings.imagePullPolicy=Sometimes",
    "settings.imageRegistry=https://registry.example",
    "store.nodePort.port=70000",
    "runtime.nodeCache.hostPath=relative/dir",
])
def test_bad_value_is_rejected(helm: str, bad: str) -> None:
    result = run_helm(helm, "template", "levrt", str(CHART), "--set", bad)
    assert result.returncode != 0 and "schema" in result.stderr, result.stderr


def test_schema_closes_every_object() -> None:
    """Every object level of values.schema.json with fixed keys says additionalProperties: false."""
    import json

    schema = json.loads((CHART / "values.schema.json").read_text())
    maps = {"quantityMap", "nodeSelector"}  # keyed by user-chosen names: typed values instead

    def walk(node: Any, name: str) -> None:
        if not isinstance(node, dict):
            return
        if node.get("type") == "object" and name not in maps:
            assert node.get("additionalProperties") is False, f"{name} accepts unknown keys"
        for key in ("properties", "definitions"):
            for sub, child in node.get(key, {}).items():
                walk(child, sub)
        for key in ("items", "additionalProperties"):
            walk(node.get(key), f"{name}.{key}")

    walk(schema, "(root)")


# -- contents -----------------------------------------------------------------------------------


@helm_only
def test_versions_match_the_package(default: dict[tuple[str, str], dict[str, Any]]) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["appVersion"] == __version__
    data = default[("ConfigMap", SETTINGS_CONFIGMAP)]["data"]
    assert data["LEVRT_RUNTIME_IMAGE"] == DEFAULT_RUNTIME_IMAGE


@helm_only
def test_fixed_names_and_labels(default: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert set(default) == {
        ("StatefulSet", "levrt-store"), ("Service", "levrt-store"), ("Secret", "levrt-store"),
        ("Secret", "levrt-registry"),  # the registry writer's URI (issue 23, item 5)
        ("Secret", "levrt-store-task"),  # the task user's URI: it cannot write levrt's journal (item 5)
        ("Secret", "levrt-store-auth"), ("ServiceAccount", SERVICE_ACCOUNT), ("Role", SERVICE_ACCOUNT),
        ("RoleBinding", SERVICE_ACCOUNT), ("ConfigMap", SETTINGS_CONFIGMAP), ("NetworkPolicy", "levrt-store"),
        ("Job", "levrt-store-user"),  # creates the application user task Pods connect as (issue 12)
        # The reaper ends jobs whose client died (their Leases, issue 12).
        ("ServiceAccount", "levrt-reaper"), ("Role", "levrt-reaper"), ("RoleBinding", "levrt-reaper"),
        ("Deployment", "levrt-reaper"),
        # The console's HTTP API and the Roles it judges requests by (issue 23, items 3 and 4).
        ("ServiceAccount", "levrt-console"), ("Role", "levrt-console"), ("RoleBinding", "levrt-console"),
        ("ClusterRoleBinding", "levrt-console-reviews-levrt"), ("Service", "levrt-console"),
        ("Deployment", "levrt-console"), ("Role", "levrt-viewer"), ("Role", "levrt-runner"),
        ("Role", "levrt-publisher"),
    }
    for (kind, _), obj in default.items():
        if kind != "ClusterRoleBinding":  # the console's reviews: cluster-wide by nature, named per namespace
            assert obj["metadata"]["namespace"] == "levrt"
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "levrt"
        assert labels["app.kubernetes.io/instance"] == "levrt"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/part-of"] == "levrt"
        # `levrt gc` deletes what carries managed-by=levrt: never the platform.
        for any_labels in _labels_of_every_object(obj):
            assert any_labels.get("app.kubernetes.io/managed-by") != "levrt", obj["metadata"]["name"]


@helm_only
def test_release_namespace_is_used_everywhere(helm: str) -> None:
    objects = by_key(render(helm, namespace="scans"))
    assert {o["metadata"]["namespace"] for (kind, _), o in objects.items() if kind != "ClusterRoleBinding"} == {"scans"}
    assert objects[("ClusterRoleBinding", "levrt-console-reviews-scans")]["subjects"][0]["namespace"] == "scans"
    assert objects[("RoleBinding", SERVICE_ACCOUNT)]["subjects"][0]["namespace"] == "scans"
    assert "@levrt-store.scans.svc.cluster.local:27017/" in objects[("Secret", "levrt-store")]["stringData"]["uri"]
    assert objects[("ConfigMap", SETTINGS_CONFIGMAP)]["data"]["LEVRT_NAMESPACE"] == "scans"


@helm_only
def test_role_rules_are_exactly_the_listed_ones(default: dict[tuple[str, str], dict[str, Any]]) -> None:
    role = default[("Role", SERVICE_ACCOUNT)]
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"] for resource in rule["resources"] for verb in rule["verbs"]
    }
    assert not any("*" in part for triple in granted for part in triple)
    assert all(set(rule) == {"apiGroups", "resources", "verbs"} for rule in role["rules"])  # no resourceNames
    expected = (
        {("", "pods", v) for v in ("get", "list", "watch", "create", "delete", "deletecollection", "patch")}
        | {("", "pods/exec", v) for v in ("create", "get")}
        | {("", "pods/log", "get")}
        | {("", "events", "list")}  # a failure message quotes the Pod's events
        | {("", r, v) for r in ("configmaps", "secrets") for v in ("get", "list", "create", "delete", "patch")}
        | {("", "secrets", "deletecollection")}  # payload Secrets swept in batches
        # each job's Lease, owner of its Pods: created, renewed, deleted (levrt._clients.lease)
        | {("coordination.k8s.io", "leases", v) for v in ("get", "create", "update", "patch", "delete")}
        # a detached run's Kubernetes Job: a cancel told from an eviction, labelled for the next Pod
        | {("batch", "jobs", v) for v in ("get", "patch")}
    )
    assert granted == expected
    binding = default[("RoleBinding", SERVICE_ACCOUNT)]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": SERVICE_ACCOUNT}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": "levrt"}]


@helm_only
def test_the_reaper_may_touch_leases_only_and_runs_levrt_reap(helm: str,
                                                             default: dict[tuple[str, str], dict[str, Any]]) -> None:
    role = default[("Role", "levrt-reaper")]
    assert role["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                              "verbs": ["get", "list", "delete"]}]
    binding = default[("RoleBinding", "levrt-reaper")]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "levrt-reaper", "namespace": "levrt"}]
    deployment = default[("Deployment", "levrt-reaper")]
    spec = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 1 and spec["serviceAccountName"] == "levrt-reaper"
    container = spec["containers"][0]
    assert container["image"].startswith("levrt.local/runtime:")  # levrt and its client libraries
    assert container["command"] == ["/levrt/bin/python3", "-m", "levrt", "reap", "--period", "15s"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    tuned = by_key(render(helm, "reaper.periodSeconds=5", "reaper.graceSeconds=10"))[("Deployment", "levrt-reaper")]
    assert tuned["spec"]["template"]["spec"]["containers"][0]["command"][-4:] == ["--period", "5s", "--grace", "10s"]
    assert not {key for key in by_key(render(helm, "reaper.enabled=false")) if key[1] == "levrt-reaper"}


@helm_only
def test_mongodb_uri_carries_the_generated_application_password(helm: str) -> None:
    first, second = by_key(render(helm)), by_key(render(helm))
    for objects in (first, second):
        auth = objects[("Secret", "levrt-store-auth")]
        assert auth["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        user, password = auth["stringData"]["username"], auth["stringData"]["password"]
        assert user == "levrt" and re.fullmatch(r"[A-Za-z0-9]{32}", password)
        uri = objects[("Secret", "levrt-store")]["stringData"]["uri"]
        # Task Pods get the application user (readWrite on the levrt database), never root (issue 12).
        app, app_password = auth["stringData"]["appUsername"], auth["stringData"]["appPassword"]
        assert app == "levrt-app" and re.fullmatch(r"[A-Za-z0-9]{32}", app_password)
        assert uri == f"mongodb://{app}:{app_password}@levrt-store.levrt.svc.cluster.local:27017/levrt?authSource=levrt"
        env = {e["name"]: e["valueFrom"]["secretKeyRef"]
               for e in objects[("StatefulSet", "levrt-store")]["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env == {"MONGO_INITDB_ROOT_USERNAME": {"name": "levrt-store-auth", "key": "username"},
                       "MONGO_INITDB_ROOT_PASSWORD": {"name": "levrt-store-auth", "key": "password"}}
    assert _password(first) != _password(second)  # generated, not baked into the chart
    fixed = by_key(render(helm, "store.auth.appPassword=s3cret-1", "store.auth.appUsername=scanner"))
    assert fixed[("Secret", "levrt-store")]["stringData"]["uri"].startswith("mongodb://scanner:s3cret-1@levrt-store.")


@helm_only
def test_ferretdb_uri_has_no_credentials(helm: str) -> None:
    objects = by_key(render(helm, "store.engine=ferretdb", "store.persistence.enabled=false"))
    assert objects[("Secret", "levrt-store")]["stringData"] == {
        "uri": "mongodb://levrt-store.levrt.svc.cluster.local:27017/"}
    assert ("Secret", "levrt-store-auth") not in objects
    container = objects[("StatefulSet", "levrt-store")]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "levrt.local/ferretdb:1.24.0"
    assert container["args"] == ["--listen-addr=:27017", "--state-dir=/state"]
    assert container["imagePullPolicy"] == "IfNotPresent" and "env" not in container
    assert container["volumeMounts"] == [{"name": "data", "mountPath": "/state"}]


@helm_only
def test_store_statefulset_and_persistence(helm: str, default: dict[tuple[str, str], dict[str, Any]]) -> None:
    sts = default[("StatefulSet", "levrt-store")]
    pod = sts["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["image"] == "mongo:7.0" and container["imagePullPolicy"] == "IfNotPresent"
    assert container["volumeMounts"] == [{"name": "data", "mountPath": "/data/db"}]
    assert sts["spec"]["selector"]["matchLabels"] == STORE_SELECTOR
    assert STORE_SELECTOR.items() <= pod["metadata"]["labels"].items()
    assert pod["spec"]["automountServiceAccountToken"] is False
    claim = sts["spec"]["volumeClaimTemplates"][0]
    assert claim["metadata"]["name"] == "data" and claim["spec"]["resources"]["requests"]["storage"] == "8Gi"
    assert "volumes" not in pod["spec"]

    ephemeral = by_key(render(helm, "store.persistence.enabled=false"))[("StatefulSet", "levrt-store")]
    assert "volumeClaimTemplates" not in ephemeral["spec"]
    assert ephemeral["spec"]["template"]["spec"]["volumes"] == [{"name": "data", "emptyDir": {}}]

    classed = by_key(render(helm, "store.persistence.storageClassName=fast", "store.persistence.size=1Gi"))
    spec = classed[("StatefulSet", "levrt-store")]["spec"]["volumeClaimTemplates"][0]["spec"]
    assert spec["storageClassName"] == "fast" and spec["resources"]["requests"]["storage"] == "1Gi"

    service = default[("Service", "levrt-store")]
    assert service["spec"]["selector"] == STORE_SELECTOR
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(27017, "mongodb")]


@helm_only
def test_nodeport_service_is_optional(helm: str, default: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert ("Service", "levrt-store-nodeport") not in default
    objects = by_key(render(helm, "store.nodePort.enabled=true"))
    service = objects[("Service", "levrt-store-nodeport")]
    assert service["spec"]["type"] == "NodePort" and service["spec"]["selector"] == STORE_SELECTOR
    assert [(p["port"], p["nodePort"]) for p in service["spec"]["ports"]] == [(27017, 30017)]


@helm_only
def test_networkpolicy_admits_only_levrt_pods_to_the_store(
    helm: str, default: dict[tuple[str, str], dict[str, Any]]
) -> None:
    policy = default[("NetworkPolicy", "levrt-store")]["spec"]
    store_labels = default[("StatefulSet", "levrt-store")]["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"] == {"matchLabels": STORE_SELECTOR}
    assert policy["podSelector"]["matchLabels"].items() <= store_labels.items()
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 27017}]
    selectors = [peer["podSelector"]["matchLabels"] for peer in rule["from"]]
    assert selectors == [{"app.kubernetes.io/managed-by": "levrt"}, {"levrt.io/role": "orchestrator"},
                         {"levrt.io/role": "store-admin"},  # the Job creating the store's application user
                         {"levrt.io/role": "console"}]  # the console reads jobs, records and the registry
    assert all(set(peer) == {"podSelector"} for peer in rule["from"])  # same namespace only

    def admitted(labels: dict[str, str]) -> bool:
        return any(sel.items() <= labels.items() for sel in selectors)

    # The Pods the SDK really builds are admitted; the store itself and strangers are not.
    settings = Settings()
    task_pod = build(Cr("busybox:1", cmd=["true"]), task=2, settings=settings).pod
    orchestrator = orchestrator_objects(sources={"w.py": b""}, entry="w.py", func="main", args=[],
                                        settings=settings, run_id="abc123").pod
    assert admitted(task_pod["metadata"]["labels"]) and admitted(orchestrator["metadata"]["labels"])
    assert not admitted(store_labels) and not admitted({"app": "other"})

    cidrs = by_key(render(helm, "store.networkPolicy.allowCIDRs={10.1.0.0/16,192.168.0.0/24}"))
    peers = cidrs[("NetworkPolicy", "levrt-store")]["spec"]["ingress"][0]["from"]
    assert [p["ipBlock"] for p in peers if "ipBlock" in p] == [{"cidr": "10.1.0.0/16"}, {"cidr": "192.168.0.0/24"}]
    assert ("NetworkPolicy", "levrt-store") not in by_key(render(helm, "networkPolicy.enabled=false"))


@helm_only
def test_settings_configmap_is_what_from_env_reads(helm: str, default: dict[tuple[str, str], dict[str, Any]]) -> None:
    data = default[("ConfigMap", SETTINGS_CONFIGMAP)]["data"]
    assert "LEVRT_STORE_URI" not in data  # the URI stays in the Secret
    assert Settings.from_env(data) == Settings()
    custom = by_key(render(
        helm, "settings.database=scans", "settings.keep=true", "settings.timeout=86400",
        "settings.imagePullPolicy=Always", "settings.scheduleTimeout=30", "settings.resources.limits.memory=1Gi",
        "settings.nodeSelector.disk=ssd", "settings.tolerations[0].operator=Exists", "runtime.image=my/runtime:1",
        "settings.imageRegistry=registry.example:5000/tools", namespace="scans",
    ))[("ConfigMap", SETTINGS_CONFIGMAP)]["data"]
    assert all(isinstance(v, str) for v in custom.values())
    assert Settings.from_env(custom) == Settings(
        namespace="scans", runtime_image="my/runtime:1", database="scans", keep=True, timeout=86400,
        image_pull_policy="Always", schedule_timeout=30.0, resources={"limits": {"memory": "1Gi"}},
        node_selector={"disk": "ssd"}, tolerations=({"operator": "Exists"},),
        image_registry="registry.example:5000/tools",
    )


# -- k8s/ is the chart's default render ---------------------------------------------------------


@helm_only
def test_k8s_manifests_equal_the_default_render(helm: str, default: dict[tuple[str, str], dict[str, Any]]) -> None:
    script = render_script()
    placeholder = script.PLACEHOLDER_PASSWORD
    plain = by_key(parse((K8S / "levrt.yaml").read_text()))
    namespace = plain.pop(("Namespace", "levrt"))
    assert namespace["apiVersion"] == "v1"

    # The one deliberate difference: a default render's random password is the placeholder in k8s/.
    password = _password(default)
    app_password = default[("Secret", "levrt-store-auth")]["stringData"]["appPassword"]
    registry_password = default[("Secret", "levrt-store-auth")]["stringData"]["registryPassword"]
    task_password = default[("Secret", "levrt-store-auth")]["stringData"]["taskPassword"]
    assert set(plain) == set(default)
    for key, obj in default.items():
        if obj["kind"] == "Secret":
            obj = yaml.safe_load(yaml.safe_dump(obj).replace(password, placeholder)
                                 .replace(app_password, script.PLACEHOLDER_APP_PASSWORD)
                                 .replace(registry_password, script.PLACEHOLDER_REGISTRY_PASSWORD)
                                 .replace(task_password, script.PLACEHOLDER_TASK_PASSWORD))
        assert plain[key] == obj, f"k8s/levrt.yaml differs from the chart in {key}: run `python k8s/render.py`"
    assert _password(plain) == placeholder


@helm_only
def test_k8s_file_is_exactly_what_render_py_writes(helm: str) -> None:
    script = render_script()
    assert script.render(helm) == (K8S / "levrt.yaml").read_text(), "stale k8s/levrt.yaml: run python k8s/render.py"


def test_kustomization_lists_the_render() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization" and kustomization["resources"] == ["levrt.yaml"]
    kubectl = kubectl_binary()
    if not Path(kubectl).is_file():
        pytest.skip("no kubectl yet (python -m tests.cluster build makes one): `kubectl kustomize` not checked")
    built = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=True)
    kinds = {(d["kind"], d["metadata"]["name"]) for d in parse(built.stdout)}
    assert ("Namespace", "levrt") in kinds and ("Secret", "levrt-store") in kinds


# -- kind-config.yaml and `levrt up` agree ------------------------------------------------------


def _up_plan() -> list[list[str]]:
    return [cmd for _, cmd in up_plan(cluster="levrt", config=str(ROOT / "kind-config.yaml"), chart=str(CHART),
                                      archive="/tmp/runtime.tar", image="levrt.local/runtime:x", exists=False)]


def _helm_sets(plan: list[list[str]]) -> list[str]:
    (install,) = [cmd for cmd in plan if cmd[0] == "helm"]
    return [install[i + 1] for i, arg in enumerate(install) if arg == "--set"]


def test_kind_config_maps_the_store_nodeport_to_localhost() -> None:
    config = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    (node,) = config["nodes"]
    assert node["role"] == "control-plane"
    assert node["extraPortMappings"] == [{"containerPort": KIND_STORE_PORT, "hostPort": KIND_STORE_PORT,
                                          "listenAddress": "127.0.0.1", "protocol": "TCP"}]
    plan = _up_plan()
    assert plan[0] == ["kind", "create", "cluster", "--name", "levrt", "--config", str(ROOT / "kind-config.yaml"),
                       "--wait", "5m"]
    assert ["kind", "load", "image-archive", "/tmp/runtime.tar", "--name", "levrt"] in plan
    sets = _helm_sets(plan)
    assert "store.nodePort.enabled=true" in sets and f"store.nodePort.port={KIND_STORE_PORT}" in sets


@helm_only
def test_up_plan_values_render_the_nodeport_kind_maps(helm: str) -> None:
    objects = by_key(render(helm, *_helm_sets(_up_plan())))
    (port,) = objects[("Service", "levrt-store-nodeport")]["spec"]["ports"]
    kind_port = yaml.safe_load(Path(ROOT / "kind-config.yaml").read_text())["nodes"][0]["extraPortMappings"][0]
    assert port["nodePort"] == kind_port["containerPort"]
    peers = objects[("NetworkPolicy", "levrt-store")]["spec"]["ingress"][0]["from"]
    assert [p["ipBlock"]["cidr"] for p in peers if "ipBlock" in p] == list(KIND_HOST_CIDRS)
    assert objects[("ConfigMap", SETTINGS_CONFIGMAP)]["data"]["LEVRT_RUNTIME_IMAGE"] == "levrt.local/runtime:x"


@helm_only
def test_runtime_node_cache_is_off_by_default_and_names_one_directory_when_on(
    helm: str, default: dict[tuple[str, str], dict[str, Any]]
) -> None:
    assert not any(kind == "DaemonSet" for kind, _ in default)
    assert "LEVRT_RUNTIME_HOST_PATH" not in default[("ConfigMap", SETTINGS_CONFIGMAP)]["data"]

    objects = by_key(render(helm, "runtime.nodeCache.enabled=true", "runtime.nodeCache.hostPath=/srv/levrt/"))
    host_path = objects[("ConfigMap", SETTINGS_CONFIGMAP)]["data"]["LEVRT_RUNTIME_HOST_PATH"]
    assert re.fullmatch(r"/srv/levrt/[0-9a-f]{12}", host_path)
    assert Settings.from_env({"LEVRT_RUNTIME_HOST_PATH": host_path}).runtime_host_path == host_path
    spec = objects[("DaemonSet", "levrt-runtime-cache")]["spec"]["template"]["spec"]
    install = spec["initContainers"][0]
    assert install["image"] == DEFAULT_RUNTIME_IMAGE
    assert install["command"][-2:] == ["/levrt", "/host/" + host_path.rsplit("/", 1)[1]]
    assert spec["volumes"] == [{"name": "host", "hostPath": {"path": "/srv/levrt", "type": "DirectoryOrCreate"}}]
    assert {"operator": "Exists"} in spec["tolerations"]  # every node that may run a task
    # Another runtime image gets another directory: two versions never overwrite each other.
    other = by_key(render(helm, "runtime.nodeCache.enabled=true", "runtime.image=my/runtime:2"))
    assert other[("ConfigMap", SETTINGS_CONFIGMAP)]["data"]["LEVRT_RUNTIME_HOST_PATH"] != host_path


@helm_only
def test_the_console_roles_name_the_api_group_and_resources_the_console_asks_about(
        default: dict[tuple[str, str], dict[str, Any]]) -> None:
    from levrt._console.auth import API_GROUP, RESOURCES, VERBS

    granted: dict[str, set[tuple[str, str]]] = {}
    for role in ("levrt-viewer", "levrt-runner", "levrt-publisher"):
        for rule in default[("Role", role)]["rules"]:
            if API_GROUP in rule["apiGroups"]:
                assert set(rule["resources"]) <= set(RESOURCES) and set(rule["verbs"]) <= set(VERBS), rule
                granted.setdefault(role, set()).update((v, r) for r in rule["resources"] for v in rule["verbs"])
    reads = {(v, r) for v in ("get", "list") for r in RESOURCES}
    assert granted["levrt-viewer"] == reads
    assert granted["levrt-runner"] == reads | {("create", "jobs"), ("delete", "jobs")}
    assert granted["levrt-publisher"] == {(v, "tools") for v in ("get", "list", "create", "delete")}
    binding = default[("ClusterRoleBinding", "levrt-console-reviews-levrt")]
    assert binding["roleRef"]["name"] == "system:auth-delegator"  # the only cluster-wide right levrt asks for
    assert [s["name"] for s in binding["subjects"]] == ["levrt-console"]
