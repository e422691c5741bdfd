"""The example tool and workflow, from this machine and from inside the cluster (issue 5).

Why: the README tells users to run ``examples/workflow.py`` with ``levrt run``; these tests run
exactly that, once with the orchestration here and once as a Pod under the chart's
ServiceAccount (``--in-cluster``), and check the records landed in the store.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]


def _levrt(
    args: list[str], *, kube_cluster: Any, runtime_image: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    from tests.cluster.images import busybox_ref

    env = dict(
        os.environ,
        KUBECONFIG=kube_cluster.kubeconfig,
        LEVRT_NAMESPACE=kube_cluster.namespace,
        LEVRT_STORE_URI=kube_cluster.store_uri,
        LEVRT_RUNTIME_IMAGE=runtime_image,
        LEVRT_EXAMPLE_IMAGE=busybox_ref(),
    )
    return subprocess.run([sys.executable, "-m", "levrt", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _check_summary(stdout: str) -> dict[str, Any]:
    import json

    start = stdout.index("{")
    summary = json.loads(stdout[start:stdout.rindex("}") + 1])
    assert summary["open"] == [2222, 8080], summary
    assert summary["banners"]["2222"] == "SSH-2.0-levrt-demo"
    assert summary["banners"]["8080"].startswith("HTTP/1.")
    return dict(summary)


def test_workflow_from_this_machine(kube_cluster: Any, runtime_image: str) -> None:
    run = _levrt(["run", "examples/workflow.py", "--no-progress"], kube_cluster=kube_cluster,
                 runtime_image=runtime_image)
    assert run.returncode == 0, run.stderr[-3000:]
    _check_summary(run.stdout)


def test_workflow_in_cluster(kube_cluster: Any, runtime_image: str) -> None:
    from tests.cluster.images import busybox_ref

    run = _levrt(["run", "examples/workflow.py", "--in-cluster", "--env", f"LEVRT_EXAMPLE_IMAGE={busybox_ref()}"],
                 kube_cluster=kube_cluster, runtime_image=runtime_image)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "orchestration Pod" in run.stderr
    _check_summary(run.stdout)


def test_in_cluster_failure_exits_nonzero_with_the_traceback(kube_cluster: Any, runtime_image: str,
                                                              tmp_path: Path) -> None:
    flow = tmp_path / "broken.py"
    flow.write_text("async def main():\n    raise RuntimeError('orchestration broke on purpose')\n")
    run = _levrt(["run", str(flow), "--in-cluster"], kube_cluster=kube_cluster, runtime_image=runtime_image)
    assert run.returncode != 0
    assert "orchestration broke on purpose" in run.stdout + run.stderr


def test_interrupting_an_in_cluster_run_deletes_its_task_pods(kube_cluster: Any, runtime_image: str,
                                                             tmp_path: Path) -> None:
    """Ctrl-C on the CLI deletes the orchestration Pod; its SIGTERM cancels the job, which deletes
    the task Pods it started (nothing keeps running unobserved)."""
    import time

    from tests.cluster.images import busybox_ref
    from tests.cluster.node import kubectl

    flow = tmp_path / "long.py"
    flow.write_text(
        "import os\nfrom levrt import Cr\n\n"
        "async def main():\n"
        "    await Cr(os.environ['LEVRT_EXAMPLE_IMAGE'], cmd=['sleep', '600'])\n"
    )
    env = dict(os.environ, KUBECONFIG=kube_cluster.kubeconfig, LEVRT_NAMESPACE=kube_cluster.namespace,
               LEVRT_STORE_URI=kube_cluster.store_uri, LEVRT_RUNTIME_IMAGE=runtime_image)
    cli = subprocess.Popen([sys.executable, "-m", "levrt", "run", str(flow), "--in-cluster",
                            "-e", f"LEVRT_EXAMPLE_IMAGE={busybox_ref()}"], cwd=REPO, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def task_pods() -> list[str]:
        out = kubectl("-n", kube_cluster.namespace, "get", "pods",
                      "-l", "app.kubernetes.io/managed-by=levrt,levrt.io/task",
                      "-o", "jsonpath={range .items[*]}{.metadata.name} {.status.phase}{\"\\n\"}{end}",
                      kubeconfig=kube_cluster.kubeconfig)
        return [line for line in out.splitlines() if line.strip()]

    with cli:
        _interrupt_when_running(cli, task_pods)

    deadline = time.monotonic() + 60
    while task_pods() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert task_pods() == [], "task Pods outlived their interrupted orchestration"


def _interrupt_when_running(cli: subprocess.Popen[str], task_pods: Any) -> None:
    """Ctrl-C the CLI once its orchestration's task runs; kill it if anything goes wrong."""
    import signal
    import time

    try:
        deadline = time.monotonic() + 120
        while not any(line.endswith("Running") for line in task_pods()):
            assert cli.poll() is None, cli.communicate()
            assert time.monotonic() < deadline, "the orchestration never started its task"
            time.sleep(0.5)
        cli.send_signal(signal.SIGINT)
        cli.communicate(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()


def test_doctor_passes_on_the_installed_platform(kube_cluster: Any, runtime_image: str) -> None:
    import time

    # The kubelet refreshes the image list in the node's status periodically: a runtime image
    # imported moments ago may take up to a minute to be listed.
    deadline = time.monotonic() + 120
    while True:
        run = _levrt(["doctor"], kube_cluster=kube_cluster, runtime_image=runtime_image, timeout=120)
        if run.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert any(line.startswith("ok") and "runtime image on nodes" in line for line in lines), run.stdout
    assert any(line.startswith("ok") and "store reachable" in line for line in lines), run.stdout
    assert not any(line.startswith("FAIL") for line in lines), run.stdout
