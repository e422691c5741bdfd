"""Fault: the job's watch is broken for good (its RBAC revoked mid-job). Figure: seconds until every
waiter has its error.

Why: a client whose permission is taken away (a RoleBinding deleted, a token revoked) can never
see its Pods end again; before, ``Task.done()`` waited forever. Here a throwaway ServiceAccount,
bound to the chart's own Role by a RoleBinding of the test, runs a job of long tasks; the
RoleBinding is deleted and every ``done()`` must raise ``ClusterError`` within a bound: the watch
window (the apiserver checks RBAC when a watch starts, not while it streams; shortened here to
10 s from 60 s) plus the confirmation of the refusal. Disturbs nobody else: shared lock.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from levrt import Cr
from levrt._clients import watch as watch_module
from levrt._shapes.names import job_selector
from levrt.errors import ClusterError
from levrt.run import session
from tests.e2e.conftest import BUSYBOX

WINDOW = 10
TASKS_IN_JOB = 3


def _token_kubeconfig(admin: str, namespace: str, account: str, path: Path) -> None:
    from tests.cluster import node

    config = yaml.safe_load(Path(admin).read_text())
    cluster = config["clusters"][0]["cluster"]
    token = node.kubectl("-n", namespace, "create", "token", account, "--duration=1h", kubeconfig=admin).strip()
    if "certificate-authority" in cluster and "certificate-authority-data" not in cluster:
        cluster = {**cluster, "certificate-authority-data":
                   base64.b64encode(Path(cluster.pop("certificate-authority")).read_bytes()).decode()}
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fault",
        "clusters": [{"name": "fault", "cluster": cluster}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "fault", "context": {"cluster": "fault", "user": account, "namespace": namespace}}],
    }))


async def test_revoked_rbac_fails_every_waiter_in_bounded_time(kube_cluster: Any, levrt_settings: Any,
                                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.cluster import node

    ns, admin = levrt_settings.namespace, kube_cluster.kubeconfig
    account = f"levrt-fault-{uuid.uuid4().hex[:6]}"
    monkeypatch.setattr(watch_module, "WINDOW_SECONDS", WINDOW)
    job_id = -1
    try:
        node.kubectl("-n", ns, "create", "serviceaccount", account, kubeconfig=admin)
        node.kubectl("-n", ns, "create", "rolebinding", account, "--role=levrt-orchestrator",
                     f"--serviceaccount={ns}:{account}", kubeconfig=admin)
        kubeconfig = tmp_path / "kubeconfig"
        _token_kubeconfig(admin, ns, account, kubeconfig)
        async with session(settings=levrt_settings, kubeconfig=str(kubeconfig)) as engine:
            job_id = engine.job_id
            tasks = await asyncio.gather(*(Cr(BUSYBOX, cmd=["sleep", "300"]).start() for _ in range(TASKS_IN_JOB)))
            await asyncio.to_thread(node.kubectl, "-n", ns, "delete", "rolebinding", account, kubeconfig=admin)
            revoked = time.monotonic()
            bound = WINDOW + engine.watch.confirm_after + 20  # the window, the confirmation, backoff and slack
            results = await asyncio.wait_for(
                asyncio.gather(*(t.done() for t in tasks), return_exceptions=True), timeout=bound + 30)
            seconds = time.monotonic() - revoked
            print(f"\nwatch permanently broken: every waiter ({TASKS_IN_JOB}) got an error {seconds:.1f} s after "
                  f"the RBAC was revoked (watch window {WINDOW} s)")
            assert all(isinstance(r, ClusterError) for r in results), results
            assert "kubectl auth can-i watch pods" in str(results[0])
            assert seconds < bound
    finally:
        node.kubectl("-n", ns, "delete", "rolebinding,serviceaccount", account, "--ignore-not-found", kubeconfig=admin,
                     check=False)
        if job_id >= 0:
            node.kubectl("-n", ns, "delete", "pods", "-l", job_selector(job_id), "--grace-period=0", "--wait=false",
                         kubeconfig=admin, check=False)
