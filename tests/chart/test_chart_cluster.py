"""Every object the chart renders is accepted by a real apiserver (server-side dry run).

Why: helm lint and the schema check the values, not the objects; a misspelt field or an invalid
combination (a NodePort out of range, a bad volume claim) only shows when the apiserver
validates. ``kubectl apply --dry-run=server`` runs the full admission and validation chain
without persisting anything; the objects go into a scratch namespace the test creates and
deletes, so the installed platform in the levrt namespace is untouched. A real install into
another scratch namespace checks that the generated store password is kept.
"""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.chart import CHART, helm_binary, parse, render_text
from tests.cluster.node import kubectl

pytestmark = pytest.mark.cluster

def _kubectl(kubeconfig: str, *args: str, input: str | None = None, check: bool = True) -> str:
    return kubectl(*args, kubeconfig=kubeconfig, input=input, check=check)


@pytest.fixture(scope="module")
def scratch(kube_cluster: Any) -> Iterator[tuple[str, str]]:
    """(kubeconfig, namespace) of a namespace that lives only for this module."""
    namespace = f"levrt-chart-{uuid.uuid4().hex[:6]}"
    _kubectl(kube_cluster.kubeconfig, "create", "namespace", namespace)
    try:
        yield kube_cluster.kubeconfig, namespace
    finally:
        _kubectl(kube_cluster.kubeconfig, "delete", "namespace", namespace, "--wait=false", check=False)


def _free_node_port(kubeconfig: str) -> int:
    """A NodePort no Service holds (the installed store may hold 30017), so dry-run allocation succeeds."""
    services = json.loads(_kubectl(kubeconfig, "get", "services", "--all-namespaces", "-o", "json"))
    used = {p.get("nodePort") for s in services["items"] for p in s["spec"].get("ports", [])}
    return next(port for port in range(32700, 32768) if port not in used)


@pytest.mark.parametrize("sets", [
    (),
    ("store.engine=ferretdb", "store.persistence.enabled=false", "store.nodePort.enabled=true",
     "store.networkPolicy.allowCIDRs={172.16.0.0/12}"),
    ("networkPolicy.enabled=false", "store.persistence.storageClassName=standard", "settings.timeout=600",
     "settings.resources.limits.memory=1Gi", "settings.tolerations[0].operator=Exists"),
], ids=["default", "ferretdb-nodeport", "custom"])
def test_rendered_objects_pass_server_side_dry_run(scratch: tuple[str, str], sets: tuple[str, ...]) -> None:
    kubeconfig, namespace = scratch
    if "store.nodePort.enabled=true" in sets:
        sets = (*sets, f"store.nodePort.port={_free_node_port(kubeconfig)}")
    manifest = render_text(helm_binary(), *sets, namespace=namespace)
    objects = parse(manifest)
    # All in the release namespace but the console's review binding, cluster-wide by nature.
    assert objects and all(o["metadata"]["namespace"] == namespace
                           for o in objects if o["kind"] != "ClusterRoleBinding")
    out = _kubectl(kubeconfig, "apply", "--dry-run=server", "-o", "name", "-f", "-", input=manifest)
    accepted = {line.strip().lower() for line in out.splitlines() if line.strip()}
    # `-o name` prints kind[.group]/name for each object the apiserver accepted.
    names = {f"{o['kind'].lower()}/{o['metadata']['name']}" for o in objects}
    kinds_and_names = (a.split("/", 1) for a in accepted)
    assert {f"{kind.split('.')[0]}/{name}" for kind, name in kinds_and_names} == names, out
    # Nothing was persisted.
    left = _kubectl(kubeconfig, "-n", namespace, "get", "statefulsets,secrets,configmaps,roles", "-o", "name")
    assert "levrt-store" not in left and "levrt-orchestrator" not in left, left


def test_store_password_survives_upgrade_and_reinstall(kube_cluster: Any) -> None:
    """The generated root password is looked up, not regenerated, on upgrade and after uninstall.

    MongoDB keeps the password it initialised its volume with, so a new one would lock levrt out.
    The Pods may never start (no store image needed): only the Secrets are checked.
    """
    kubeconfig = kube_cluster.kubeconfig
    namespace = f"levrt-chart-{uuid.uuid4().hex[:6]}"
    helm = [helm_binary(), "--kubeconfig", kubeconfig, "--namespace", namespace]
    chart = str(CHART)

    def helm_run(*args: str) -> None:
        result = subprocess.run([*helm, *args], capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr

    def secrets() -> tuple[str, str]:
        def read(name: str, key: str) -> str:
            encoded = _kubectl(kubeconfig, "-n", namespace, "get", "secret", name, "-o", f"jsonpath={{.data.{key}}}")
            return base64.b64decode(encoded).decode()

        return read("levrt-store-auth", "password"), read("levrt-store-auth", "appPassword"), read("levrt-store", "uri")

    # --no-hooks: the hook Job creating the application user needs MongoDB running, and no MongoDB
    # image is in the test cluster; this test is about the Secrets (tests/chart/test_chart_store.py
    # checks the Job as rendered).
    try:
        helm_run("install", "levrt", chart, "--create-namespace", "--no-hooks",
                 "--set", "store.persistence.enabled=false")
        password, app_password, uri = secrets()
        assert f":{app_password}@levrt-store.{namespace}.svc.cluster.local:27017/" in uri and password not in uri
        helm_run("upgrade", "levrt", chart, "--no-hooks", "--set", "store.persistence.enabled=false")
        assert secrets() == (password, app_password, uri)
        helm_run("uninstall", "levrt", "--no-hooks")
        assert _kubectl(kubeconfig, "-n", namespace, "get", "secret", "levrt-store-auth", "-o", "name").strip()
        helm_run("install", "levrt", chart, "--no-hooks", "--set", "store.persistence.enabled=false")
        assert secrets() == (password, app_password, uri)
    finally:
        subprocess.run([*helm, "uninstall", "levrt"], capture_output=True, timeout=120, check=False)
        _kubectl(kubeconfig, "delete", "namespace", namespace, "--wait=false", check=False)
