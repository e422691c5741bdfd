"""The "client kill -9" fault, shared by its test (tests/faults/test_client_killed.py, a few runs)
and its benchmark (``python3 -m bench.faults client-kill``, 20 runs): a client process opens a job,
starts tasks that sleep (each with a payload Secret and a file ConfigMap, what a killed client
used to leave), is killed with SIGKILL mid-job, and we count what of the job is left once its
Lease expired and the chart's reaper had its turn.

Also here: bringing the live test cluster's chart parts of job ownership up to date (the reaper
Deployment and the Roles) without a full ``helm upgrade`` that would restart other parts under
other tests' feet.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
LEASE_SECONDS = 3
"""The killed clients' Lease duration (LEVRT_LEASE_SECONDS): the reaper takes them after 2x this."""
REAPER_PERIOD = 3
"""reaper.periodSeconds, as tests/cluster installs the chart."""

CLIENT = textwrap.dedent('''
    import asyncio, os, sys, time
    import levrt
    from levrt import Cr
    from levrt.run import session

    @levrt.remote
    def nap():
        time.sleep(600)

    async def main(count, content):
        async with session() as engine:
            print("job", engine.job_id, flush=True)
            async def one(i):
                await Cr(os.environ["LEVRT_EXAMPLE_IMAGE"], entry=nap(), files={"/tmp/data": content}).start()
                print("started", i, flush=True)
            await asyncio.gather(*(one(i) for i in range(count)))
            await asyncio.sleep(3600)

    asyncio.run(main(int(sys.argv[1]), sys.argv[2].encode()))
''')


@dataclasses.dataclass
class KillResult:
    job: int
    started: int
    """Tasks running when the client was killed."""
    left: list[str]
    """Objects of the job still there at the end of the wait (target: none)."""
    seconds: float
    """From the kill to the moment nothing of the job was left (or the wait ended)."""


def ensure_reaper(kubeconfig: str, namespace: str, *, own: bool = True) -> None:
    """Apply the chart's reaper and Roles as tests/cluster installs them (with helm's ownership
    marks, so a later ``helm upgrade`` adopts them), and restart the reaper if the runtime image
    changed since it started (it runs levrt's code from that image)."""
    from tests.chart import helm_binary, render
    from tests.cluster.images import present_digest
    from tests.cluster.node import kubectl
    from tests.runtime.image import runtime_ref

    wanted = {("ServiceAccount", "levrt-reaper"), ("Role", "levrt-reaper"), ("RoleBinding", "levrt-reaper"),
              ("Deployment", "levrt-reaper"), ("Role", "levrt-orchestrator")}
    docs = [d for d in render(helm_binary(), f"reaper.periodSeconds={REAPER_PERIOD}", namespace=namespace)
            if (d["kind"], d["metadata"]["name"]) in wanted]
    for doc in docs:
        doc["metadata"].setdefault("annotations", {}).update(
            {"meta.helm.sh/release-name": "levrt", "meta.helm.sh/release-namespace": namespace})
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}),
            kubeconfig=kubeconfig)
    # The image's digest is read from the test node's containerd; another cluster's reaper keeps its image.
    digest = present_digest(runtime_ref()) if own else None
    pods = json.loads(kubectl("-n", namespace, "get", "pods", "-l", "app.kubernetes.io/component=reaper",
                              "-o", "json", kubeconfig=kubeconfig))["items"]
    running = {s.get("imageID", "").rsplit("@", 1)[-1] for p in pods for s in p.get("status", {}).get(
        "containerStatuses", [])}
    if pods and digest is not None and running and digest not in running:
        kubectl("-n", namespace, "rollout", "restart", "deployment/levrt-reaper", kubeconfig=kubeconfig)
    kubectl("-n", namespace, "rollout", "status", "deployment/levrt-reaper", "--timeout=120s", kubeconfig=kubeconfig)


def job_objects(kubeconfig: str, namespace: str, job: int, file_object: str) -> list[str]:
    """What of job ``job`` is in the cluster: its Pods, Secrets, its Lease, its file ConfigMap."""
    from tests.cluster.node import kubectl

    out = kubectl("-n", namespace, "get", "pods,secrets,configmaps,leases", "-l", f"levrt.io/job={job}",
                  "-o", "name", kubeconfig=kubeconfig).split()
    found = kubectl("-n", namespace, "get", "configmap", file_object, "-o", "name", "--ignore-not-found",
                    kubeconfig=kubeconfig).split()
    return sorted(out + found)


def kill_client(env: dict[str, str], *, tasks: int, kill_after: int, wait: float = 120.0) -> KillResult:
    """One run of the fault: start ``tasks`` tasks, SIGKILL the client once ``kill_after`` run."""
    namespace = env["LEVRT_NAMESPACE"]
    content = secrets.token_hex(16)  # unique: the file ConfigMap belongs to this job alone
    file_object = f"levrt-f-{hashlib.sha256(content.encode()).hexdigest()[:40]}"
    client_env = dict(env, LEVRT_LEASE_SECONDS=str(LEASE_SECONDS), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-c", CLIENT, str(tasks), content], cwd=REPO, env=client_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    job, started = -1, 0
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 300
        for line in proc.stdout:
            if line.startswith("job "):
                job = int(line.split()[1])
            elif line.startswith("started "):
                started += 1
            if started >= kill_after or time.monotonic() > deadline:
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        err = proc.stderr.read() if proc.stderr else ""
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
    if job < 0 or started < kill_after:
        raise AssertionError(f"the client did not get {kill_after} tasks running (job {job}, {started}): {err[-2000:]}")
    killed = time.monotonic()
    left = job_objects(env["KUBECONFIG"], namespace, job, file_object)
    while left and time.monotonic() - killed < wait:
        time.sleep(1)
        left = job_objects(env["KUBECONFIG"], namespace, job, file_object)
    return KillResult(job=job, started=started, left=left, seconds=time.monotonic() - killed)


def summary(results: list[Any]) -> str:
    secs = sorted(r.seconds for r in results)
    return (f"{len(results)} kills: objects left {sum(len(r.left) for r in results)}; cleanup seconds "
            f"min {secs[0]:.1f} median {secs[len(secs) // 2]:.1f} max {secs[-1]:.1f}")
