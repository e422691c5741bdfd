"""Session fixtures shared by every tier: the real test cluster, started only when needed.

Why: cluster-marked tests need a real apiserver and kubelet. The fixture uses the cluster
named by ``LEVRT_TEST_KUBECONFIG`` (kind on a laptop, say) or starts ``tests/cluster`` (and
stops it afterwards only if it started it). Fast-tier tests never touch it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class KubeCluster:
    """Where the cluster's API and the levrt store are, as seen from this host."""

    kubeconfig: str
    namespace: str
    store_uri: str
    own: bool  # True when tests/cluster runs on this machine (the node's internals can be inspected)


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[KubeCluster]:
    external = os.environ.get("LEVRT_TEST_KUBECONFIG")
    if external:
        store_uri = os.environ.get("LEVRT_TEST_STORE_URI", "mongodb://127.0.0.1:30017/")
        yield KubeCluster(kubeconfig=external, namespace=os.environ.get("LEVRT_NAMESPACE", "levrt"),
                          store_uri=store_uri, own=False)
        return
    from tests.cluster import node

    started_here = not node.healthy()
    kubeconfig = node.up()
    try:
        yield KubeCluster(kubeconfig=str(Path(kubeconfig)), namespace=node.NAMESPACE,
                          store_uri=node.store_uri_for_host(), own=True)
    finally:
        if started_here and os.environ.get("LEVRT_TEST_KEEP_CLUSTER") != "1":
            node.down()
