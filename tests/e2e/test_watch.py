"""The one Pod watch per namespace survives a disconnect without losing events.

Why: every task waits on this watch; a dropped connection must not make a finished Pod look
like it never finished. (``410 Gone`` cannot be provoked on a young real apiserver, whose watch
cache still replays everything; ``tests/unit/test_watch_gone.py`` covers that path.)
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from levrt._clients.kube import Kube
from levrt._clients.watch import PodWatch
from levrt._shapes.podstatus import finished
from tests.e2e.conftest import BUSYBOX

pytestmark = pytest.mark.cluster


async def test_watch_resumes_after_a_disconnect_and_sees_what_happened_meanwhile(kube_cluster: Any) -> None:
    kube = await Kube.connect(kubeconfig=kube_cluster.kubeconfig)
    ns = kube_cluster.namespace
    run = uuid.uuid4().hex[:8]
    name = f"lev-watch-{run}"
    watch = PodWatch(kube, namespace=ns, selector=f"app.kubernetes.io/managed-by=levrt,levrt.io/job=watch-{run}")
    try:
        await watch.start()
        assert watch.relists == 1
        # Disconnect, and let the Pod be created and finish while nobody watches.
        await watch.close()
        await kube.request("POST", f"/api/v1/namespaces/{ns}/pods", body={
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "levrt",
                                                  "levrt.io/job": f"watch-{run}"}},
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0, "containers": [
                {"name": "main", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent", "command": ["true"]}]},
        })
        for _ in range(120):
            pod = await kube.request("GET", f"/api/v1/namespaces/{ns}/pods/{name}")
            if finished(pod):
                break
            await asyncio.sleep(0.25)
        # Resume from the last resourceVersion seen: the events missed while away are replayed.
        await watch.start_resumed()
        pod = await watch.wait(name, lambda p: p.get("status", {}).get("phase") == "Succeeded", timeout=60)
        assert finished(pod)
        assert watch.relists == 1  # resumed, not re-listed
    finally:
        await watch.close()
        await kube.request("DELETE", f"/api/v1/namespaces/{ns}/pods/{name}", query={"gracePeriodSeconds": 0})
        await kube.close()
