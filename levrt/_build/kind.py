"""The pure half of ``levrt up``, ``down`` and ``env``: the files they use and the commands they run.

Why pure: what ``levrt up`` does to a laptop (a kind cluster, an image load, a Helm release) is
decided here from plain values, so unit tests check every command and flag without Docker, and
``--dry-run`` prints exactly what a real run would do. The chart and the kind config are package
data (``packaged``): ``levrt up`` works from any directory after ``pip install levrt``.
"""

from __future__ import annotations

import importlib.resources
import shlex
from collections.abc import Sequence
from pathlib import Path

from levrt._build import BuildError
from levrt.podenv import NAMESPACE_ENV, STORE_URI_ENV

__all__ = [
    "KIND_HOST_CIDRS",
    "KIND_NETWORK",
    "KIND_STORE_PORT",
    "NAMESPACE",
    "NODEPORT_SERVICE",
    "RELEASE",
    "Step",
    "down_plan",
    "env_lines",
    "kube_context",
    "local_store_uri",
    "packaged",
    "up_plan",
]

# The store's NodePort; kind-config.yaml maps it to 127.0.0.1 on the host (tests check both agree).
KIND_STORE_PORT = 30017
# Where host connections to the NodePort come from inside kind: its node network, a Docker network
# from Docker's default pools. kind's Pod (10.244.0.0/16) and Service (10.96.0.0/16) ranges are
# outside, so the store's NetworkPolicy still refuses other Pods.
KIND_HOST_CIDRS = ("172.16.0.0/12", "192.168.0.0/16")
# The Docker network kind creates for its nodes, and leaves behind when the last cluster goes.
KIND_NETWORK = "kind"
RELEASE = "levrt"
NAMESPACE = "levrt"
NODEPORT_SERVICE = "levrt-store-nodeport"
# What ships inside the package (links to the checkout's files, copies in a wheel).
PACKAGED = {"chart": "Chart.yaml", "kind-config.yaml": ""}

# One step of a plan: what it does (for progress and errors), and the command.
Step = tuple[str, list[str]]


def packaged(name: str) -> Path:
    """The path of a file levrt ships (``chart``: the Helm chart's directory; ``kind-config.yaml``).

    A path, not a resource stream: helm and kind read them by path. levrt is installed as files
    (a wheel unpacked into site-packages, or a checkout), so the resource is a real path.
    """
    if name not in PACKAGED:
        raise KeyError(name)
    found = importlib.resources.files("levrt._build").joinpath(name)
    inside = PACKAGED[name]
    if not isinstance(found, Path) or not (found / inside if inside else found).is_file():
        raise BuildError(f"levrt's {name} is missing from this installation ({found}): reinstall levrt "
                         "(pip install --force-reinstall levrt)")
    return found


def kube_context(cluster: str) -> str:
    """The kubeconfig context kind writes for ``cluster`` (and makes current)."""
    return f"kind-{cluster}"


def up_plan(*, cluster: str, config: str, chart: str, archive: str, image: str, exists: bool,
            values: Sequence[str] = ()) -> list[Step]:
    """The commands ``levrt up`` runs, in order. ``exists``: the kind cluster is there already, so
    it is not created again; its context is only made current again, as a creation would.
    ``values``: the user's own chart settings (``KEY=VALUE``), given to helm after levrt's."""
    if exists:
        first: Step = (f"kind cluster {cluster} exists: making {kube_context(cluster)} the current context",
                       ["kind", "export", "kubeconfig", "--name", cluster])
    else:
        # --wait: the node Ready before helm installs (without it the namespace's default
        # ServiceAccount may not exist yet, and the chart's Pods are refused).
        first = (f"creating the kind cluster {cluster}",
                 ["kind", "create", "cluster", "--name", cluster, "--config", config, "--wait", "5m"])
    return [
        first,
        (f"loading the runtime image {image} into the kind node",
         ["kind", "load", "image-archive", archive, "--name", cluster]),
        (f"installing the chart (helm release {RELEASE}, namespace {NAMESPACE}) and waiting for the store",
         ["helm", "upgrade", "--install", RELEASE, chart, "--namespace", NAMESPACE, "--create-namespace",
          "--kube-context", kube_context(cluster),
          "--set", f"runtime.image={image}", "--set", "store.nodePort.enabled=true",
          "--set", f"store.nodePort.port={KIND_STORE_PORT}",
          "--set", "store.networkPolicy.allowCIDRs={" + ",".join(KIND_HOST_CIDRS) + "}",
          *[arg for value in values for arg in ("--set", value)],
          "--wait", "--timeout", "10m"]),
    ]


def down_plan(cluster: str) -> list[Step]:
    """The commands ``levrt down`` runs; kind's network is handled after (only when nothing uses it)."""
    return [(f"deleting the kind cluster {cluster}", ["kind", "delete", "cluster", "--name", cluster])]


def local_store_uri(uri: str, port: int) -> str:
    """The store URI Pods use (``mongodb://[user:pw@]levrt-store.<ns>.svc...:27017/...``) with its
    host rewritten to ``127.0.0.1:<port>``, where kind maps the store's NodePort on the host."""
    scheme, sep, rest = uri.partition("://")
    if not sep or not scheme.startswith("mongodb"):
        raise BuildError(f"the store URI in the Secret levrt-store is not a mongodb:// URI ({scheme}://...)")
    authority, slash, tail = rest.partition("/")
    creds, at, _hosts = authority.rpartition("@")
    return f"{scheme}://{creds}{at}127.0.0.1:{port}{slash or '/'}{tail}"


def env_lines(*, uri: str, port: int, namespace: str = NAMESPACE) -> list[str]:
    """The lines ``levrt env`` prints, for ``eval "$(levrt env)"``: shell-quoted, passwords included."""
    return [
        f"export {NAMESPACE_ENV}={shlex.quote(namespace)}",
        f"export {STORE_URI_ENV}={shlex.quote(local_store_uri(uri, port))}",
    ]
