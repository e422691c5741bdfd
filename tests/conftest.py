"""Tiers by folder, and the session fixture shared by every tier: the real test cluster.

Why the folder decides the tier: a developer selects tests by path, ``-m`` or ``-k``, and none of
those may start or stop the cluster by accident. Everything under ``tests/smoke``, ``tests/e2e``
and ``tests/chart/test_chart_cluster.py`` (and any test using ``kube_cluster``) is marked
``cluster``; chart tests that render with helm carry ``helm`` (explicitly, or by using the
``helm`` fixture); explicit markers keep working. ``tests/teardown`` stops the cluster, so it is
not even collected unless that folder (or a file in it) is named on the command line:
``python3 -m pytest tests/teardown``.

Why the fixture: cluster-marked tests need a real apiserver and kubelet. The fixture uses the
cluster named by ``LEVRT_TEST_KUBECONFIG`` (kind on a laptop, say) or starts ``tests/cluster``
(and stops it afterwards only if it started it). Fast-tier tests never touch it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
TEARDOWN = TESTS / "teardown"

# Path under tests/ (a folder or a file) -> the marker every test there gets.
TIER_BY_PATH = {
    "smoke": "cluster",
    "e2e": "cluster",
    "faults": "cluster",
    "chart/test_chart_cluster.py": "cluster",
    "teardown": "teardown",
    "kind": "kind",
}
# Fixture -> the marker of every test that uses it (directly or through another fixture).
TIER_BY_FIXTURE = {
    "kube_cluster": "cluster",
    "helm": "helm",
}


def teardown_named(config: pytest.Config) -> bool:
    """Whether a command-line argument is tests/teardown or lies inside it."""
    base = config.invocation_params.dir
    for arg in config.args:
        path = (base / arg.split("::", 1)[0]).resolve()
        if path == TEARDOWN or TEARDOWN in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.name == TEARDOWN.name and collection_path.resolve() == TEARDOWN and not teardown_named(config):
        return True
    return None  # let pytest decide (returning False would override --ignore and norecursedirs)


def tier_of(item: pytest.Item) -> str | None:
    try:
        relative = item.path.resolve().relative_to(TESTS).as_posix()
    except ValueError:
        return None
    for prefix, marker in TIER_BY_PATH.items():
        if relative == prefix or relative.startswith(prefix + "/"):
            return marker
    return None


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tier = tier_of(item)
        if tier is not None:
            item.add_marker(tier)
        if tier == "teardown":
            continue  # uses kube_cluster, but is a tier of its own
        fixtures = getattr(item, "fixturenames", ())
        for fixture, marker in TIER_BY_FIXTURE.items():
            if fixture in fixtures:
                item.add_marker(marker)


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
