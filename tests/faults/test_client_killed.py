"""A client killed with ``kill -9`` mid-job leaves nothing: its job's Lease stops being renewed, the
chart's reaper deletes it, and the garbage collector removes the Pods, payload Secrets and file
ConfigMaps through the ownerReferences (issue 12's fault table, "client kill -9").
``levrt gc`` never ends a live job, and a detached run finishes without its client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import BUSYBOX
from tests.faults.client_killed import LEASE_SECONDS, REAPER_PERIOD, REPO, ensure_reaper, kill_client, summary

RUNS = 2
TASKS = 20


@pytest.fixture(scope="module")
def reaper(kube_cluster: Any, runtime_image: str) -> None:
    ensure_reaper(kube_cluster.kubeconfig, kube_cluster.namespace, own=kube_cluster.own)


def test_a_killed_clients_job_is_removed_entirely(reaper: None, cli_env: dict[str, str]) -> None:
    env = dict(cli_env, LEVRT_EXAMPLE_IMAGE=BUSYBOX)
    results = [kill_client(env, tasks=TASKS, kill_after=5) for _ in range(RUNS)]
    print(summary(results))
    for result in results:
        assert result.left == [], f"job {result.job}: left after {result.seconds:.0f}s: {result.left}"
        # Expiry (2 x LEVRT_LEASE_SECONDS) plus a reaper period, plus the garbage collector's work.
        print(f"job {result.job}: {result.started} running at the kill, gone after {result.seconds:.1f}s "
              f"(lease {LEASE_SECONDS}s, reaper period {REAPER_PERIOD}s)")


def _levrt(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "levrt", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def test_gc_never_ends_a_live_job_and_ends_an_expired_one(reaper: None, cli_env: dict[str, str]) -> None:
    from tests.cluster.node import kubectl

    ns, kubeconfig = cli_env["LEVRT_NAMESPACE"], cli_env["KUBECONFIG"]
    script = ("import asyncio\nfrom levrt.run import session\n"
              "async def main():\n    async with session() as e:\n        print('job', e.job_id, flush=True)\n"
              "        await asyncio.sleep(600)\nasyncio.run(main())\n")
    live = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=dict(cli_env, LEVRT_LEASE_SECONDS="3"),
                            stdout=subprocess.PIPE, text=True)
    try:
        assert live.stdout is not None
        job = int(live.stdout.readline().split()[1])
        # An expired Lease of a job whose client died long ago (renewed an hour ago, never since). Its
        # duration is long enough that the reaper, which must see it stand still that long, leaves it to gc.
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() - 3600))
        dead = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": "levrt-job-999999", "labels": {"app.kubernetes.io/managed-by": "levrt",
                                                                   "levrt.io/job": "999999"}},
                "spec": {"leaseDurationSeconds": 600, "renewTime": stamp, "holderIdentity": "gone"}}
        kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(dead), kubeconfig=kubeconfig)
        time.sleep(7)  # longer than the live job's Lease duration + grace: only renewals keep it
        # (A long --older-than: other tests' kept jobs and leftovers are not ours to remove.)
        run = _levrt(["gc", "--older-than", "1000d"], cli_env)
        assert run.returncode == 0, run.stderr
        leases = kubectl("-n", ns, "get", "leases", "-o", "name", kubeconfig=kubeconfig).split()
        assert f"lease.coordination.k8s.io/levrt-job-{job}" in leases
        assert "lease.coordination.k8s.io/levrt-job-999999" not in leases
        assert "deleted leases/levrt-job-999999" in run.stdout and f"levrt-job-{job} " not in run.stdout
        # --job N ends a live job.
        run = _levrt(["gc", "--job", str(job)], cli_env)
        assert run.returncode == 0 and f"deleted leases/levrt-job-{job}" in run.stdout, run.stderr
    finally:
        live.kill()
        live.wait()
        if live.stdout:
            live.stdout.close()


def test_a_detached_run_finishes_with_its_records_while_the_client_is_gone(reaper: None, cli_env: dict[str, str],
                                                                          tmp_path: Path) -> None:
    from tests.cluster.node import kubectl

    flow = tmp_path / "detached.py"
    flow.write_text(
        "import asyncio, os\nimport levrt\nfrom levrt import Cr, lev\n\n"
        "@levrt.remote\ndef work(i):\n    import time\n    time.sleep(5)\n    lev.set(done=i)\n\n"
        "async def main():\n"
        "    await asyncio.gather(*(Cr(os.environ['LEVRT_EXAMPLE_IMAGE'], 'faults/detached@1.0', entry=work(i))"
        " for i in range(2)))\n"
    )
    ns, kubeconfig = cli_env["LEVRT_NAMESPACE"], cli_env["KUBECONFIG"]
    run = _levrt(["run", str(flow), "--detach", "-e", f"LEVRT_EXAMPLE_IMAGE={BUSYBOX}"], cli_env)
    assert run.returncode == 0, run.stdout + run.stderr
    job = int(run.stdout.split("job ", 1)[1].split(":", 1)[0])
    ps = _levrt(["ps", "--job", str(job)], cli_env)
    assert "lev-orch-" in ps.stdout, ps.stdout + ps.stderr  # the orchestration Pod belongs to the job
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # the client is gone; the job ends by itself
        left = kubectl("-n", ns, "get", "pods,leases", "-l", f"levrt.io/job={job}", "-o", "name",
                       kubeconfig=kubeconfig).split()
        if not left:
            break
        time.sleep(2)
    assert not left, left
    got = _levrt(["get", "faults/detached@1.0", "--job", str(job), "-o", "json"], cli_env)
    assert got.returncode == 0, got.stderr
    assert sorted(r["done"] for r in json.loads(got.stdout)) == [0, 1]
    assert os.environ.get("LEVRT_KEEP") is None
