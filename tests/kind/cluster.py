"""Create and delete the kind tier's cluster the way `levrt up`/`levrt down` do, on our Docker.

Why: the smoke test and the end-to-end test need one place that knows the cluster's name, the
test kind config, where kind and its kubeconfig are, and how to leave the host clean.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from tests.cluster import gotools
from tests.cluster.log import progress
from tests.kind import dockerd, node_image

NAME = "levrt"
CONFIG = Path(__file__).resolve().parent / "kind-config.yaml"


def kind_binary() -> Path:
    return gotools.tool("kind").bin_dir(gotools.cache_root()) / "kind"


def kubectl_binary() -> Path:
    return gotools.binary("kubectl")


def kubeconfig() -> Path:
    return dockerd.state_dir() / "kubeconfig"


def env() -> dict[str, str]:
    """docker, kind and kubectl as a user has them: on PATH, default socket, one kubeconfig."""
    base_env = dockerd.docker_env()
    path = ":".join([str(kind_binary().parent), str(kubectl_binary().parent), base_env["PATH"]])
    return dict(base_env, PATH=path, KUBECONFIG=str(kubeconfig()))


def env_lines() -> list[str]:
    e = env()
    return [f"export {k}={e[k]}" for k in ("PATH", "DOCKER_HOST", "KUBECONFIG")] + \
        [f"export LEVRT_KIND_CONFIG={CONFIG}"]


def kind(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(kind_binary()), *args], env=env(), text=True, capture_output=True, check=check)


def exists() -> bool:
    return NAME in kind("get", "clusters", check=False).stdout.split()


def build() -> str:
    """Everything the cluster needs, cached: Go tools, Docker running, base and node images."""
    for t in ("kind", "kubernetes", "kubeadm", "containerd", "runc", "kind-etcd", "coredns",
              "local-path-provisioner"):
        gotools.build(gotools.tool(t))
    dockerd.start()
    return node_image.ensure()


def up() -> Path:
    """Build what is missing, start Docker, create the cluster unless it exists; return the kubeconfig."""
    build()
    if not exists():
        started = time.monotonic()
        progress(f"kind create cluster --name {NAME} --config {CONFIG}")
        # --wait: kind returns once the node is Ready, not merely once kubeadm is done.
        result = kind("create", "cluster", "--name", NAME, "--config", str(CONFIG), "--kubeconfig",
                      str(kubeconfig()), "--wait", "120s", check=False)
        if result.returncode != 0:
            raise dockerd.DockerError(f"kind create cluster failed:\n{result.stderr.strip()[-2000:]}")
        progress(f"cluster {NAME} created in {time.monotonic() - started:.0f}s")
    return kubeconfig()


def delete() -> None:
    """`kind delete cluster` (what `levrt down` runs); Docker keeps running."""
    if dockerd.running() and exists():
        started = time.monotonic()
        kind("delete", "cluster", "--name", NAME, "--kubeconfig", str(kubeconfig()))
        progress(f"cluster {NAME} deleted in {time.monotonic() - started:.0f}s")


def down() -> None:
    """Delete the cluster, stop Docker, and remove everything the tier added to the host."""
    delete()
    dockerd.stop()


def status() -> dict[str, object]:
    running = dockerd.running()
    return {"dockerd": running, "cluster": running and exists(), "node_image": node_image.ref(),
            "kubeconfig": str(kubeconfig()) if kubeconfig().exists() else None,
            "state_dir": str(dockerd.state_dir())}
