"""Fixtures for the end-to-end tier: a levrt job on the real test cluster, checked for leftovers.

Why: every end-to-end test must run real Pods through the real store and must leave no
levrt-labelled object behind; the fixture opens the job and does that check afterwards.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.images import busybox_ref, redis_ref

REPO = Path(__file__).resolve().parents[2]
BUSYBOX = os.environ.get("LEVRT_TEST_BUSYBOX") or busybox_ref()
REDIS = os.environ.get("LEVRT_TEST_REDIS") or redis_ref()


@pytest.fixture(scope="session")
def runtime_image(kube_cluster: Any) -> str:
    """The levrt runtime image, built from this checkout and imported into the node."""
    if os.environ.get("LEVRT_RUNTIME_IMAGE"):
        return os.environ["LEVRT_RUNTIME_IMAGE"]
    from tests.runtime.image import build_runtime_image

    return build_runtime_image()


@pytest.fixture(scope="session")
def levrt_settings(kube_cluster: Any, runtime_image: str) -> Any:
    from levrt.settings import Settings

    return Settings.from_env().replace(
        namespace=kube_cluster.namespace, runtime_image=runtime_image, store_uri=kube_cluster.store_uri
    )


@pytest.fixture(scope="session")
def cli_env(kube_cluster: Any, runtime_image: str) -> dict[str, str]:
    """The environment a user's shell gives the ``levrt`` command for this cluster (add to a copy)."""
    return dict(
        os.environ,
        KUBECONFIG=kube_cluster.kubeconfig,
        LEVRT_NAMESPACE=kube_cluster.namespace,
        LEVRT_STORE_URI=kube_cluster.store_uri,
        LEVRT_RUNTIME_IMAGE=runtime_image,
    )


@pytest.fixture
async def job(kube_cluster: Any, levrt_settings: Any) -> AsyncIterator[Any]:
    """An open levrt job; afterwards no levrt-labelled object of any kind may remain."""
    from levrt.run import session

    async with session(settings=levrt_settings, kubeconfig=kube_cluster.kubeconfig) as engine:
        yield engine
    # After the job ends (its Pods deleted), nothing labelled levrt may remain: owned objects are
    # garbage-collected with their Pod. A fresh client, since the job's is closed.
    from levrt._clients.kube import Kube

    kube = await Kube.connect(kubeconfig=kube_cluster.kubeconfig)
    try:
        leftovers = await wait_no_leftovers(kube, levrt_settings.namespace)
    finally:
        await kube.close()
    assert leftovers == [], f"levrt objects left behind: {leftovers}"


async def wait_no_leftovers(kube: Any, ns: str, *, timeout: float = 60.0) -> list[str]:
    """Names of levrt-labelled Pods, Secrets and ConfigMaps still present after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        names = []
        for plural in ("pods", "secrets", "configmaps"):
            listing = await kube.request(
                "GET", f"/api/v1/namespaces/{ns}/{plural}",
                query={"labelSelector": "app.kubernetes.io/managed-by=levrt"},
            )
            names += [f"{plural}/{item['metadata']['name']}" for item in listing["items"]]
        if not names or loop.time() > deadline:
            return names
        await asyncio.sleep(0.5)


__all__ = ["BUSYBOX", "REDIS", "wait_no_leftovers"]


@pytest.fixture(scope="session")
def nmap_image(kube_cluster: Any) -> str:
    """The nmap image in the node (built and imported unless the same digest is there already)."""
    if os.environ.get("LEVRT_TEST_NMAP"):
        return os.environ["LEVRT_TEST_NMAP"]
    import tempfile

    from tests.cluster import images

    with tempfile.TemporaryDirectory(prefix="levrt-nmap-") as tmp:
        return images.build_and_import(images.nmap_image(Path(tmp)))


def levrt_cli(cli_env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``levrt ARGS`` as a user's shell runs it against the test cluster (the examples' image set)."""
    return subprocess.run([sys.executable, "-m", "levrt", *args], cwd=REPO,
                          env=dict(cli_env, LEVRT_EXAMPLE_IMAGE=BUSYBOX), capture_output=True, text=True,
                          timeout=timeout)


def run_jobs(cli_env: dict[str, str], target: str, *arguments: list[str]) -> list[int]:
    """``levrt run TARGET ARGS --no-progress`` once for each argument list; the jobs' ids, in order."""
    jobs = []
    for args in arguments:
        done = levrt_cli(cli_env, "run", target, *args, "--no-progress")
        assert done.returncode == 0, done.stderr[-3000:]
        jobs.append(int(re.search(r"^job: (\d+)$", done.stderr, re.M).group(1)))  # type: ignore[union-attr]
    return jobs
