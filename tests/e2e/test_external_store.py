"""``store.engine: external``: levrt on a store the chart did not make (issue 12, item 3).

Why: platform teams that outgrow one store Pod point levrt at their own MongoDB through a Secret
of theirs. Here that store is a FerretDB installed apart from the chart (its own namespace, Pod
and Service, from the test cluster's FerretDB image); the chart rendered with the external engine
is dry-run against the apiserver, and a task runs with the settings that chart gives (the Secret
named by store.external.secretName): its record lands in that store, not in the chart's.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from typing import Any

import pymongo
import pytest

import levrt
from levrt import Cr, lev
from levrt.run import session
from tests.chart import helm_binary, parse, render_text
from tests.e2e.conftest import BUSYBOX

pytestmark = pytest.mark.cluster

NAMESPACE = "levrt-external-store"
SECRET = "corp-mongo"


@levrt.remote
def remember(value: str) -> None:
    lev.set(value=value, seen=(lev.doc.get() or {}).get("value"))


def external_store(kubeconfig: str) -> str:
    """A FerretDB Pod and Service in a namespace of their own; the Service's ClusterIP."""
    from tests.cluster.images import FERRETDB_REF
    from tests.cluster.node import kubectl

    labels = {"app": "corp-mongo"}
    objects = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "corp-mongo", "namespace": NAMESPACE, "labels": labels},
         "spec": {"automountServiceAccountToken": False, "containers": [{
             "name": "ferretdb", "image": FERRETDB_REF, "imagePullPolicy": "Never",
             "args": ["--listen-addr=:27017", "--state-dir=/state"], "ports": [{"containerPort": 27017}],
             "readinessProbe": {"tcpSocket": {"port": 27017}, "periodSeconds": 1},
             "volumeMounts": [{"name": "state", "mountPath": "/state"}]}],
             "volumes": [{"name": "state", "emptyDir": {}}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "corp-mongo", "namespace": NAMESPACE},
         "spec": {"selector": labels, "ports": [{"port": 27017, "targetPort": 27017}]}},
    ]
    kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(o) for o in objects), kubeconfig=kubeconfig)
    kubectl("-n", NAMESPACE, "wait", "--for=condition=Ready", "pod/corp-mongo", "--timeout=120s", kubeconfig=kubeconfig)
    return kubectl("-n", NAMESPACE, "get", "service", "corp-mongo", "-o", "jsonpath={.spec.clusterIP}",
                   kubeconfig=kubeconfig).strip()


async def test_a_task_stores_its_record_in_an_external_store(kube_cluster: Any, levrt_settings: Any) -> None:
    from tests.cluster.node import kubectl

    kubeconfig, namespace = kube_cluster.kubeconfig, levrt_settings.namespace
    try:
        ip = external_store(kubeconfig)
        # The platform team's Secret, in levrt's namespace: the in-cluster URI (a DNS name).
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET, "namespace": namespace},
                  "stringData": {"uri": f"mongodb://corp-mongo.{NAMESPACE}.svc.cluster.local:27017/"}}
        kubectl("apply", "-f", "-", input=json.dumps(secret), kubeconfig=kubeconfig)

        # The chart with the external engine: no store of its own; the apiserver accepts it.
        text = render_text(helm_binary(), "store.engine=external", f"store.external.secretName={SECRET}",
                           namespace=namespace)
        rendered = parse(text)
        assert not [o for o in rendered if o["kind"] in ("StatefulSet", "NetworkPolicy")
                    or (o["kind"] == "Service" and o["metadata"]["name"] != "levrt-console")  # the console's own
                    or o["metadata"]["name"].startswith("levrt-store")]
        settings_map = next(o for o in rendered
                            if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "levrt-settings")
        assert settings_map["data"]["LEVRT_STORE_SECRET"] == SECRET
        dry = subprocess.run([kube_cluster_kubectl(), "--kubeconfig", kubeconfig, "apply", "--dry-run=server",
                              "-f", "-"], input=text, capture_output=True, text=True, timeout=120, check=False)
        assert dry.returncode == 0, dry.stderr

        # A task with those settings (this host reaches the store by the Service's ClusterIP).
        collection = f"test/external-{uuid.uuid4().hex[:8]}@1.0"
        settings = levrt_settings.replace(store_secret=settings_map["data"]["LEVRT_STORE_SECRET"],
                                          store_uri=f"mongodb://{ip}:27017/")
        async with session(settings=settings, kubeconfig=kubeconfig) as engine:
            task = await Cr(BUSYBOX, collection, entry=remember("external")).start()
            pod = await engine.kube.request("GET", f"/api/v1/namespaces/{namespace}/pods/{task.pod}")
            record = await (await task).get()
            job = engine.job_id
        assert record == {"value": "external", "seen": None}
        envs = [e for c in pod["spec"]["containers"] for e in c.get("env", []) if e["name"] == "LEVRT_STORE_URI"]
        assert envs == [{"name": "LEVRT_STORE_URI", "valueFrom": {"secretKeyRef": {"name": SECRET, "key": "uri"}}}]
        key = {"_id": {"job": job, "task": task.task_id}}
        with pymongo.MongoClient(f"mongodb://{ip}:27017/", serverSelectionTimeoutMS=10_000) as external:
            assert external[settings.database][collection].find_one(key, {"_id": 0}) == record
        with pymongo.MongoClient(levrt_settings.store_uri, serverSelectionTimeoutMS=10_000) as chart_store:
            assert chart_store[settings.database][collection].find_one(key) is None
        print(f"\n[external store] record of job {job} in {NAMESPACE}/corp-mongo, none in the chart's store")
    finally:
        kubectl("-n", namespace, "delete", "secret", SECRET, "--ignore-not-found", kubeconfig=kubeconfig, check=False)
        kubectl("delete", "namespace", NAMESPACE, "--wait=false", "--ignore-not-found", kubeconfig=kubeconfig,
                check=False)


def kube_cluster_kubectl() -> str:
    from tests.cluster.node import kubectl_binary

    return kubectl_binary()
