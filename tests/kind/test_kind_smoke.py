"""The kind tier end to end on this host: Docker, our node image, a cluster that runs our images.

Why: `levrt up` on a laptop is `kind create cluster` with a kind config, then images loaded with
`kind load image-archive` and a NodePort reached at 127.0.0.1:30017. This proves each of those
works here with nothing pulled, and that `kind delete cluster` and `python -m tests.kind down`
leave nothing behind. Runs after the cluster tier's teardown (its store NodePort is also 30017).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.cluster import gotools
from tests.cluster.images import Image, busybox_rootfs, write_archive
from tests.kind import cluster, dockerd, node_image

pytestmark = pytest.mark.kind

SMOKE_IMAGE = "levrt.local/kind-smoke:1"
MARKER = "levrt kind smoke: served from a Pod through NodePort 30017\n"
NODE_PORT = 30017
TIMINGS = Path(tempfile.gettempdir()) / "levrt-kind-timings.json"


def test_kind_binary_is_the_pinned_release() -> None:
    gotools.build(gotools.tool("kind"))  # first in the file: on a cold machine nothing has built it yet
    assert shutil.which("kind", path=cluster.env()["PATH"]) == str(cluster.kind_binary())
    out = subprocess.run([str(cluster.kind_binary()), "version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith(f"kind {gotools.KIND_VERSION} "), out


def test_config_is_the_user_config_plus_what_this_host_needs() -> None:
    """tests/kind/kind-config.yaml names what tests/kind builds, and maps the port the user's does."""
    user = yaml.safe_load((Path(__file__).resolve().parents[2] / "kind-config.yaml").read_text())
    test = yaml.safe_load(cluster.CONFIG.read_text())
    assert test["nodes"][0]["extraPortMappings"] == user["nodes"][0]["extraPortMappings"]
    assert [n["role"] for n in test["nodes"]] == [n["role"] for n in user["nodes"]]
    assert test["nodes"][0]["image"] == node_image.stable_ref()
    assert test["networking"] == {"disableDefaultCNI": True}
    patches = [yaml.safe_load(p) for p in test["kubeadmConfigPatches"]]
    by_kind = {p["kind"]: p for p in patches}
    assert by_kind["ClusterConfiguration"] == {
        "kind": "ClusterConfiguration", "imageRepository": node_image.REPO,
        "etcd": {"local": {"imageTag": node_image.etcd_tag()}}, "dns": {"imageTag": node_image.coredns_tag()},
    }
    assert by_kind["KubeletConfiguration"] == {"kind": "KubeletConfiguration", "failCgroupV1": False}


def kubectl(*args: str, input: str | None = None, timeout: float = 120) -> str:
    result = subprocess.run([str(cluster.kubectl_binary()), *args], env=cluster.env(), input=input, text=True,
                            capture_output=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr.strip()}"
    return result.stdout


def _record(**seconds: float) -> None:
    timings = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {}
    timings.update({k: round(v, 1) for k, v in seconds.items()})
    TIMINGS.write_text(json.dumps(timings, indent=2))


@pytest.fixture(scope="module")
def kind_cluster() -> Iterator[Path]:
    started = time.monotonic()
    cluster.build()
    built = time.monotonic()
    cluster.delete()
    kubeconfig = cluster.up()
    _record(build_or_load_s=built - started, create_s=time.monotonic() - built)
    # Pods in `default` need its ServiceAccount, which the controller-manager makes a moment later.
    deadline = time.monotonic() + 60
    while "serviceaccount/default" not in kubectl("get", "serviceaccounts", "-o", "name"):
        assert time.monotonic() < deadline, "no default ServiceAccount 60s after kind create"
        time.sleep(1)
    try:
        yield kubeconfig
    finally:
        cluster.down()  # idempotent: the last tests already did it when they passed


def test_node_becomes_ready(kind_cluster: Path) -> None:
    kubectl("wait", "--for=condition=Ready", "node", "--all", "--timeout=120s", timeout=150)
    node = json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
    assert [n["metadata"]["name"] for n in node] == [f"{cluster.NAME}-control-plane"]
    assert node[0]["status"]["nodeInfo"]["kubeletVersion"] == gotools.KUBE_VERSION


def test_coredns_serves_cluster_names(kind_cluster: Path) -> None:
    kubectl("-n", "kube-system", "rollout", "status", "deployment/coredns", "--timeout=120s", timeout=150)
    # The node image's busybox answers with CoreDNS's record for the API service.
    out = kubectl("run", "dns-probe", "--image=levrt.local/busybox:1.35", "--image-pull-policy=Never",
                  "--restart=Never", "--rm", "-i", "--quiet", "--command", "--",
                  "nslookup", "kubernetes.default.svc.cluster.local", timeout=150)
    assert "10.96.0.1" in out, out


def test_default_storage_class_provisions(kind_cluster: Path) -> None:
    """The levrt chart's store claims a volume from the default class (kind's local-path)."""
    kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "smoke-claim"},
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}}},
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "smoke-writer"},
             "spec": {"restartPolicy": "Never", "containers": [{
                 "name": "w", "image": "levrt.local/busybox:1.35", "imagePullPolicy": "Never",
                 "command": ["sh", "-c", "echo kept > /data/f && cat /data/f"],
                 "volumeMounts": [{"name": "d", "mountPath": "/data"}]}],
                 "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "smoke-claim"}}]}},
        ]}))
    kubectl("wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/smoke-writer", "--timeout=120s", timeout=150)
    assert kubectl("logs", "smoke-writer").strip() == "kept"
    assert kubectl("get", "pvc", "smoke-claim", "-o", "jsonpath={.status.phase}") == "Bound"
    kubectl("delete", "pod/smoke-writer", "pvc/smoke-claim", "--wait=true")


@pytest.fixture(scope="module")
def smoke_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image the node has never seen: busybox plus a page only this test writes."""
    work = tmp_path_factory.mktemp("kind-smoke")
    rootfs, www = work / "busybox", work / "www"
    rootfs.mkdir()
    busybox_rootfs(rootfs)
    (www / "www").mkdir(parents=True)
    (www / "www" / "index.html").write_text(MARKER)
    archive = work / "smoke.tar"
    write_archive(Image(SMOKE_IMAGE, (rootfs, www), cmd=("sh",)), archive)
    return archive


def test_loaded_image_serves_on_host_port(kind_cluster: Path, smoke_archive: Path) -> None:
    started = time.monotonic()
    loaded = cluster.kind("load", "image-archive", str(smoke_archive), "--name", cluster.NAME, check=False)
    assert loaded.returncode == 0, loaded.stderr
    _record(load_image_archive_s=time.monotonic() - started)
    kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "smoke-web", "labels": {"app": "smoke-web"}},
             "spec": {"containers": [{
                 "name": "web", "image": SMOKE_IMAGE, "imagePullPolicy": "Never",
                 "command": ["httpd", "-f", "-p", "8080", "-h", "/www"], "ports": [{"containerPort": 8080}]}]}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "smoke-web"},
             "spec": {"type": "NodePort", "selector": {"app": "smoke-web"},
                      "ports": [{"port": 80, "targetPort": 8080, "nodePort": NODE_PORT}]}},
        ]}))
    kubectl("wait", "--for=condition=Ready", "pod/smoke-web", "--timeout=120s", timeout=150)
    node_ip = dockerd.docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                             f"{cluster.NAME}-control-plane").strip()
    # The NodePort itself, on the node's address on Docker's network...
    assert _get(f"http://{node_ip}:{NODE_PORT}/index.html") == MARKER
    # ...and through the kind config's port mapping, as `levrt up` tells a user to reach the store.
    conflict = _host_nodeport_owner()
    assert conflict is None, (
        f"127.0.0.1:{NODE_PORT} on this host belongs to another cluster's NodePort ({conflict}): "
        "run the kind tier after the cluster tier's teardown")
    assert _get(f"http://127.0.0.1:{NODE_PORT}/index.html") == MARKER


def _get(url: str) -> str:
    deadline = time.monotonic() + 60
    while True:  # kube-proxy programs the NodePort a moment after the Pod is Ready
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return str(response.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def _host_nodeport_owner() -> str | None:
    """A host kube-proxy (the test cluster's) rewrites 127.0.0.1:30017 before Docker's proxy sees it."""
    dump = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, check=False).stdout
    for rule in dump.splitlines():
        if rule.startswith("-A KUBE-NODEPORTS") and f"--dport {NODE_PORT}" in rule:
            return rule
    return None


def test_delete_cluster_leaves_no_container(kind_cluster: Path) -> None:
    started = time.monotonic()
    cluster.delete()
    _record(delete_s=time.monotonic() - started)
    assert dockerd.docker("ps", "-a", "-q").split() == []
    # kind keeps its `kind` network for the next cluster; `levrt down` removes it.
    assert "kind" in dockerd.docker("network", "ls", "--format", "{{.Name}}").split()


def test_down_leaves_host_clean(kind_cluster: Path) -> None:
    cluster.down()
    assert not dockerd.running()
    assert not dockerd.state_dir().exists()
    assert not dockerd.SOCKET.exists()
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    assert "docker0" not in links and " br-" not in links
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    assert "DOCKER" not in rules and "docker0" not in rules
    leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _is_ours(p)]
    assert leftovers == []


def _is_ours(proc: Path) -> bool:
    try:
        cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return str(dockerd.state_dir()) in cmdline or cmdline.startswith(("dockerd\0", "docker-proxy\0"))
