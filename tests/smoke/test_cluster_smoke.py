"""Smoke tests of the test cluster itself: the Kubernetes features levrt is built on.

Why: if native sidecars, subPath mounts, hostNetwork, exec, DNS or the store do not work on
the node, every levrt test would fail for reasons unrelated to levrt; image volumes (the
runtime image mounted read-only, whole or by subPath) are what levrt's runtime moves to next.
Each test drives the real apiserver through kubectl and reads results back from real containers.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster.images import FERRETDB_REF, busybox_ref, redis_ref

pytestmark = pytest.mark.cluster


class Kubectl:
    """kubectl bound to one kubeconfig and namespace; raises with stderr on failure."""

    def __init__(self, kubeconfig: str, namespace: str) -> None:
        self.kubeconfig, self.namespace = kubeconfig, namespace

    def __call__(self, *args: str, input: str | None = None, check: bool = True) -> str:
        from tests.cluster.node import kubectl

        return kubectl("-n", self.namespace, *args, kubeconfig=self.kubeconfig, input=input, check=check)

    def apply(self, *objects: dict[str, Any]) -> None:
        self("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}))

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return dict(json.loads(self("get", kind, name, "-o", "json")))

    def wait_phase(self, pod: str, phases: tuple[str, ...] = ("Succeeded", "Failed"), timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            phase = self.get("pod", pod)["status"].get("phase", "")
            if phase in phases:
                return str(phase)
            time.sleep(0.5)
        raise AssertionError(f"pod {pod} not in {phases} after {timeout}s: {self('describe', 'pod', pod)}")


@pytest.fixture(scope="module")
def kube(kube_cluster: Any) -> Iterator[Kubectl]:
    namespace = f"smoke-{uuid.uuid4().hex[:6]}"
    admin = Kubectl(kube_cluster.kubeconfig, "default")
    admin("create", "namespace", namespace)
    try:
        yield Kubectl(kube_cluster.kubeconfig, namespace)
    finally:
        admin("delete", "namespace", namespace, "--wait=false")


def pod(name: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    for c in containers:
        c.setdefault("imagePullPolicy", "IfNotPresent")
    for c in spec.get("initContainers", []):
        c.setdefault("imagePullPolicy", "IfNotPresent")
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 2, "containers": containers, **spec},
    }


def test_native_sidecar_redis_starts_first_and_stops_after_main(kube: Kubectl) -> None:
    kube.apply(pod(
        "sidecar",
        [{"name": "main", "image": busybox_ref(),
          "command": ["sh", "-c", r'printf "PING\r\n" | nc -w 3 redis 6379']}],
        hostAliases=[{"ip": "127.0.0.1", "hostnames": ["redis"]}],
        initContainers=[{
            "name": "redis", "image": redis_ref(), "restartPolicy": "Always", "args": ["--port", "6379"],
            "startupProbe": {"tcpSocket": {"port": 6379}, "periodSeconds": 1, "failureThreshold": 30},
        }],
    ))
    assert kube.wait_phase("sidecar") == "Succeeded"
    assert "+PONG" in kube("logs", "sidecar", "-c", "main")
    status = kube.get("pod", "sidecar")["status"]
    sidecar = status["initContainerStatuses"][0]
    assert sidecar["name"] == "redis" and "terminated" in sidecar["state"], sidecar
    # The sidecar was up before main started: main's start is not earlier than the sidecar's.
    main = status["containerStatuses"][0]["state"]["terminated"]
    assert main["exitCode"] == 0
    assert sidecar["state"]["terminated"]["startedAt"] <= main["startedAt"]


def test_configmap_and_secret_files_by_subpath_byte_for_byte(kube: Kubectl) -> None:
    blob = bytes(range(256)) + b"\xff\xfe not utf-8 \x80"
    secret_blob = b"\x00secret\xc3\x28" + bytes(range(200, 256))
    kube.apply(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "files"},
         "binaryData": {"content": base64.b64encode(blob).decode()}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "secret-files"},
         "data": {"content": base64.b64encode(secret_blob).decode()}},
        pod("files", [{
            "name": "main", "image": busybox_ref(),
            "command": ["sh", "-c", "base64 -w0 /opt/tool/data.bin; echo; base64 -w0 /etc/tool/secret.bin"],
            "volumeMounts": [
                {"name": "cm", "mountPath": "/opt/tool/data.bin", "subPath": "content", "readOnly": True},
                {"name": "sec", "mountPath": "/etc/tool/secret.bin", "subPath": "content", "readOnly": True},
            ],
        }], volumes=[{"name": "cm", "configMap": {"name": "files"}},
                     {"name": "sec", "secret": {"secretName": "secret-files"}}]),
    )
    assert kube.wait_phase("files") == "Succeeded"
    first, second = kube("logs", "files").split()
    assert base64.b64decode(first) == blob
    assert base64.b64decode(second) == secret_blob


def test_host_network_pod_sees_node_interfaces(kube: Kubectl) -> None:
    kube.apply(
        pod("hostnet", [{"name": "main", "image": busybox_ref(), "command": ["cat", "/proc/net/dev"]}],
            hostNetwork=True),
        pod("podnet", [{"name": "main", "image": busybox_ref(), "command": ["cat", "/proc/net/dev"]}]),
    )
    assert kube.wait_phase("hostnet") == "Succeeded"
    assert kube.wait_phase("podnet") == "Succeeded"
    with open("/proc/net/dev") as fh:
        host_ifaces = {line.split(":")[0].strip() for line in fh.readlines()[2:]}
    seen_host = {line.split(":")[0].strip() for line in kube("logs", "hostnet").splitlines()[2:]}
    seen_pod = {line.split(":")[0].strip() for line in kube("logs", "podnet").splitlines()[2:]}
    assert "levrt0" in seen_host and "levrt0" in host_ifaces  # the node's pod bridge
    assert "levrt0" not in seen_pod


def test_exec_delivers_signal_to_pid1_and_logs_are_readable(kube: Kubectl) -> None:
    script = 'trap "echo got-USR1; exit 7" USR1; echo ready; while true; do sleep 0.2; done'
    kube.apply(pod("signal", [{"name": "main", "image": busybox_ref(), "command": ["sh", "-c", script]}]))
    kube.wait_phase("signal", ("Running",))
    deadline = time.monotonic() + 30
    while "ready" not in kube("logs", "signal") and time.monotonic() < deadline:
        time.sleep(0.2)
    kube("exec", "signal", "--", "kill", "-USR1", "1")
    assert kube.wait_phase("signal") == "Failed"  # exit 7 from the trap: the signal reached PID 1
    assert kube("logs", "signal").split() == ["ready", "got-USR1"]
    terminated = kube.get("pod", "signal")["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 7


def test_service_dns_and_cluster_ip(kube: Kubectl) -> None:
    ns = kube.namespace
    kube.apply(
        {**pod("web", [{
            "name": "main", "image": busybox_ref(),
            "command": ["sh", "-c", "mkdir /www && echo hello-from-web > /www/index.html && httpd -f -p 8080 -h /www"],
            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
        }]), "metadata": {"name": "web", "labels": {"app": "web"}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
         "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}},
    )
    kube.wait_phase("web", ("Running",))
    cluster_ip = kube.get("service", "web")["spec"]["clusterIP"]
    fqdn = f"web.{ns}.svc.cluster.local"
    # busybox-static's wget crashes here (static glibc), so the name goes
    # through busybox's own DNS client (nslookup) and the TCP connection through the ClusterIP.
    kube.apply(pod("client", [{
        "name": "main", "image": busybox_ref(),
        "command": ["sh", "-c", f"nslookup {fqdn}; for i in 1 2 3 4 5 6 7 8 9 10; do "
                                "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | "
                                f"nc -w 3 {cluster_ip} 80 | grep hello && exit 0; sleep 1; done; exit 1"],
    }]))
    assert kube.wait_phase("client") == "Succeeded", kube("logs", "client")
    out = kube("logs", "client")
    assert cluster_ip in out  # DNS answered with the Service's ClusterIP
    assert "hello-from-web" in out  # and TCP through the ClusterIP reached the pod


def test_ferretdb_store_from_host_and_from_pod(kube: Kubectl, kube_cluster: Any) -> None:
    pymongo = pytest.importorskip("pymongo")
    from tests.cluster import node

    node_port = 30018
    kube.apply(
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "store"},
         "spec": {"selector": {"matchLabels": {"app": "store"}}, "template": {
             "metadata": {"labels": {"app": "store"}},
             "spec": {"containers": [{
                 "name": "ferretdb", "image": FERRETDB_REF, "imagePullPolicy": "IfNotPresent",
                 "args": ["--listen-addr=:27017", "--state-dir=/state"],
                 "readinessProbe": {"tcpSocket": {"port": 27017}, "periodSeconds": 1},
                 "volumeMounts": [{"name": "state", "mountPath": "/state"}]}],
                 "volumes": [{"name": "state", "emptyDir": {}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "store"},
         "spec": {"type": "NodePort", "selector": {"app": "store"},
                  "ports": [{"port": 27017, "targetPort": 27017, "nodePort": node_port}]}},
    )
    kube("rollout", "status", "deployment/store", "--timeout=120s")
    host = json.loads(node.paths().info.read_text())["node_ip"] if kube_cluster.own else "127.0.0.1"
    collection_name = "example|ts/issues@1.0"
    client = pymongo.MongoClient(f"mongodb://{host}:{node_port}/", serverSelectionTimeoutMS=20000)
    try:
        coll = client["levrt"][collection_name]
        coll.insert_one({"_id": {"job": 1, "task": 1}, "target": "example.com"})
        coll.update_one({"_id": {"job": 1, "task": 2}}, {"$set": {"issues": ["from host"]}}, upsert=True)
        assert coll.find_one({"_id": {"job": 1, "task": 1}}, {"_id": 0}) == {"target": "example.com"}

        # From a Pod: the levrt runtime image carries pymongo; it talks to the Service by DNS name.
        from tests.runtime.image import build_runtime_image

        image = build_runtime_image()
        code = (
            "import pymongo; c = pymongo.MongoClient('mongodb://store:27017/', serverSelectionTimeoutMS=20000);"
            f"coll = c['levrt'][{collection_name!r}];"
            "coll.update_one({'_id': {'job': 1, 'task': 2}}, {'$push': {'issues': 'from pod'}}, upsert=True);"
            "coll.insert_one({'_id': {'job': 1, 'task': 3}, 'target': 'pod'});"
            "print(coll.find_one({'_id': {'job': 1, 'task': 1}}, {'target': 1, '_id': 0}))"
        )
        kube.apply(pod("mongo-client", [{"name": "main", "image": image,
                                          "command": ["/levrt/bin/python3", "-c", code]}]))
        assert kube.wait_phase("mongo-client") == "Succeeded", kube("logs", "mongo-client")
        assert "{'target': 'example.com'}" in kube("logs", "mongo-client")
        assert coll.find_one({"_id": {"job": 1, "task": 2}}, {"issues": 1, "_id": 0}) == {
            "issues": ["from host", "from pod"]}
        assert coll.find_one({"_id": {"job": 1, "task": 3}})["target"] == "pod"
    finally:
        client.close()


# --- image volumes: the levrt runtime mounted straight from its image ------------------------

def _runtime_image() -> str:
    if os.environ.get("LEVRT_RUNTIME_IMAGE"):
        return os.environ["LEVRT_RUNTIME_IMAGE"]
    from tests.runtime.image import build_runtime_image

    return build_runtime_image()


def _containerd_at_least(kube: Kubectl, minimum: tuple[int, int]) -> bool:
    """Whether every real node runs containerd >= ``minimum`` (image volumes: 2.1, their subPath: 2.2).
    Nodes without a runtime (KWOK's fake nodes, tainted) run no Pod and do not count."""
    nodes = json.loads(kube("get", "nodes", "-o", "json"))["items"]
    runtimes = [item["status"]["nodeInfo"].get("containerRuntimeVersion", "") for item in nodes]
    for runtime in filter(None, runtimes):  # e.g. containerd://2.4.2
        name, _, version = runtime.partition("://")
        parts = tuple(int(x) for x in version.lstrip("v").split("-")[0].split(".")[:2])
        if name != "containerd" or parts < minimum:
            return False
    return True


def test_image_volume_mounts_the_runtime_image_read_only(kube: Kubectl) -> None:
    """The runtime image's root is the bundle prefix: mounted whole at /levrt, it is the runtime
    (what levrt's image mode does), read-only; ``levrt`` inside it links back to the root."""
    if not _containerd_at_least(kube, (2, 1)):
        pytest.skip("image volumes need containerd >= 2.1 on the node")
    image = _runtime_image()
    kube.apply(pod(
        "imagevol",
        [{"name": "main", "image": busybox_ref(),
          "command": ["sh", "-c", "ls -d /levrt/levrt/bin/python3 /levrt/opt/levrt-orchestrator/kubernetes_asyncio;"
                                  " touch /levrt/x 2>/dev/null && echo writable || echo read-only;"
                                  " /levrt/bin/python3 -c 'import sys, levrt; print(sys.prefix, levrt.__name__)'"],
          "volumeMounts": [{"name": "rt", "mountPath": "/levrt", "readOnly": True}]}],
        volumes=[{"name": "rt", "image": {"reference": image, "pullPolicy": "IfNotPresent"}}],
    ))
    assert kube.wait_phase("imagevol") == "Succeeded", (
        kube("logs", "imagevol", check=False) + kube("describe", "pod", "imagevol"))
    out = kube("logs", "imagevol").split()
    assert out == ["/levrt/levrt/bin/python3", "/levrt/opt/levrt-orchestrator/kubernetes_asyncio",
                   "read-only", "/levrt", "levrt"]


def test_image_volume_subpath_mounts_one_directory_of_the_image(kube: Kubectl) -> None:
    if not _containerd_at_least(kube, (2, 2)):
        pytest.skip("subPath on image volumes needs containerd >= 2.2 on the node")
    image = _runtime_image()
    kube.apply(pod(
        "imagevol-subpath",
        [{"name": "main", "image": busybox_ref(),
          "command": ["sh", "-c", "ls /rt-bin | grep -x python3"],
          "volumeMounts": [{"name": "rt", "mountPath": "/rt-bin", "subPath": "bin", "readOnly": True}]}],
        volumes=[{"name": "rt", "image": {"reference": image, "pullPolicy": "IfNotPresent"}}],
    ))
    assert kube.wait_phase("imagevol-subpath") == "Succeeded", (
        kube("logs", "imagevol-subpath", check=False) + kube("describe", "pod", "imagevol-subpath"))
    assert kube("logs", "imagevol-subpath").split() == ["python3"]
