"""The chart's NetworkPolicies against the expected allow/deny matrix, by a small policy evaluator.

Why an evaluator and not the cluster: the test cluster's bridge CNI does not enforce NetworkPolicy
(no enforcer could run here: see README, "Security you can check"), so a probe between real Pods
would pass whatever the policy says. This module implements the NetworkPolicy semantics the
chart's policies use (podSelector and namespaceSelector with matchLabels/matchExpressions,
ipBlock with except, ports with protocol/number/name/endPort, policyTypes, isolation: a Pod
selected by any policy of a direction admits only what some policy allows) and evaluates every
rendered policy over the Pods levrt and the chart really make. It is NOT an enforcer: it proves
the policies say the right thing, not that a cluster applies them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import pytest

from levrt import Cr
from levrt._shapes.orchestrator import orchestrator_objects
from levrt.settings import Settings
from tests.chart import by_key, helm_binary, render
from tests.helpers import build

pytestmark = pytest.mark.helm

NS = "levrt"
STORE_PORT = 27017


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    labels: dict[str, str]
    ip: str
    ports: dict[str, int] = field(default_factory=dict)  # named container ports


NAMESPACE_LABELS = {NS: {"kubernetes.io/metadata.name": NS}, "other": {"kubernetes.io/metadata.name": "other"}}


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A LabelSelector: {} selects everything; matchLabels and every matchExpression must hold."""
    if selector is None:
        return False
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {"In": labels.get(key) in values, "NotIn": labels.get(key) not in values,
              "Exists": key in labels, "DoesNotExist": key not in labels}[op]
        if not ok:
            return False
    return True


def peer_matches(peer: dict[str, Any], policy_ns: str, other: Pod | str) -> bool:
    if "ipBlock" in peer:
        ip = ipaddress.ip_address(other.ip if isinstance(other, Pod) else other)
        block = peer["ipBlock"]
        return ip in ipaddress.ip_network(block["cidr"]) and not any(
            ip in ipaddress.ip_network(e) for e in block.get("except", []))
    if not isinstance(other, Pod):
        return False  # pod/namespace selectors match Pods only, not outside addresses
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], NAMESPACE_LABELS[other.namespace]):
            return False
    elif other.namespace != policy_ns:
        return False  # a podSelector alone means the policy's own namespace
    return selects(peer.get("podSelector", {}), other.labels)


def port_matches(rule_ports: list[dict[str, Any]] | None, port: int, target: Pod | None) -> bool:
    if not rule_ports:
        return True
    for p in rule_ports:
        if p.get("protocol", "TCP") != "TCP":
            continue
        number = p.get("port")
        if number is None:
            return True
        if isinstance(number, str):
            number = (target.ports if target else {}).get(number)
        if number is not None and number <= port <= p.get("endPort", number):
            return True
    return False


def directions(policy: dict[str, Any]) -> list[str]:
    spec = policy["spec"]
    return spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else []))


def allowed(policies: list[dict[str, Any]], source: Pod | str, dest: Pod | str, port: int) -> bool:
    """Whether TCP traffic from ``source`` to ``dest``:``port`` is allowed (egress of the source and
    ingress of the destination); a str is an address outside the cluster."""
    for direction, subject, other in (("Egress", source, dest), ("Ingress", dest, source)):
        if not isinstance(subject, Pod):
            continue
        relevant = [p for p in policies if p["metadata"]["namespace"] == subject.namespace
                    and direction in directions(p) and selects(p["spec"]["podSelector"], subject.labels)]
        if not relevant:
            continue  # not isolated in this direction
        key, peers = ("egress", "to") if direction == "Egress" else ("ingress", "from")
        target = dest if isinstance(dest, Pod) else None
        if not any(
            (not rule.get(peers) or any(peer_matches(peer, p["metadata"]["namespace"], other) for peer in rule[peers]))
            and port_matches(rule.get("ports"), port, target)
            for p in relevant for rule in p["spec"].get(key) or []
        ):
            return False
    return True


def _template_pod(objects: dict[tuple[str, str], dict[str, Any]], kind: str, name: str, ip: str) -> Pod:
    labels = objects[(kind, name)]["spec"]["template"]["metadata"]["labels"]
    return Pod(name, NS, dict(labels), ip)


def _pods(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Pod]:
    settings = Settings(namespace=NS)
    task = build(Cr("busybox:1", cmd=["true"]), task=2, settings=settings).pod
    with_services = build(Cr("busybox:1", services={"redis": Cr("redis:7", ports=[6379])}), settings=settings).pod
    orchestrator = orchestrator_objects(sources={"w.py": b""}, entry="w.py", func="main", args=[],
                                        settings=settings, run_id="abc123").pod
    pods = {
        "task": Pod("task", NS, task["metadata"]["labels"], "10.0.0.10"),
        "task-with-services": Pod("svc", NS, with_services["metadata"]["labels"], "10.0.0.11"),
        "orchestrator": Pod("orch", NS, orchestrator["metadata"]["labels"], "10.0.0.12"),
        "store": _template_pod(objects, "StatefulSet", "levrt-store", "10.0.0.2"),
        "unlabelled": Pod("stranger", NS, {"app": "other"}, "10.0.0.20"),
        "levrt-labels-elsewhere": Pod("impostor", "other", dict(task["metadata"]["labels"]), "10.0.1.10"),
        "orchestrator-labels-elsewhere": Pod("impostor2", "other", dict(orchestrator["metadata"]["labels"]),
                                             "10.0.1.11"),
    }
    pods["store"] = Pod("store", NS, pods["store"].labels, pods["store"].ip, {"mongodb": STORE_PORT})
    for kind, name, key in (("Deployment", "levrt-reaper", "reaper"), ("Job", "levrt-store-user", "store-admin"),
                            ("Deployment", "levrt-console", "console")):
        if (kind, name) in objects:
            pods[key] = _template_pod(objects, kind, name, f"10.0.0.{30 + len(pods)}")
    return pods


ALLOW_CIDR = "192.168.0.0/24"


def expected_flows(allow_cidrs: bool) -> dict[tuple[str, str, int], bool]:
    """The expected allow/deny matrix: (source, destination, TCP port) -> allowed.

    An end is a key of ``_pods()`` or an address outside the cluster. ``allow_cidrs``: the chart
    is rendered with ``store.networkPolicy.allowCIDRs={ALLOW_CIDR}``. Shared with
    test_networkpolicy_cyclonus.py, which checks the same matrix with an independent engine.
    """
    store_clients = {
        "task": True, "task-with-services": True, "orchestrator": True, "store-admin": True,
        "unlabelled": False, "levrt-labels-elsewhere": False, "orchestrator-labels-elsewhere": False,
        "reaper": False,  # it touches Leases only, never the store
        "console": True,  # it reads jobs, records and the registry
    }
    flows = {(source, "store", STORE_PORT): ok for source, ok in store_clients.items()}
    flows.update({
        # Only the store's port: a levrt task reaching another port of the store Pod is refused.
        ("task", "store", 22): False,
        # The CIDRs the operator allows (NodePort access from a host), and nothing outside them.
        ("192.168.0.7", "store", STORE_PORT): allow_cidrs,
        ("192.168.1.7", "store", STORE_PORT): False,
        # The policy isolates the store only: other Pods' traffic is untouched (tasks reach their
        # targets and each other, e.g. links; the store's own egress is not restricted, as the chart says).
        ("task", "unlabelled", 80): True,
        ("unlabelled", "task", 8080): True,
        ("store", "203.0.113.5", 443): True,
    })
    return flows


def is_address(end: str) -> bool:
    try:
        ipaddress.ip_address(end)
    except ValueError:
        return False
    return True


@pytest.fixture(scope="module")
def rendered() -> dict[tuple[str, str], dict[str, Any]]:
    return by_key(render(helm_binary(), f"store.networkPolicy.allowCIDRs={{{ALLOW_CIDR}}}"))


def test_store_ingress_matrix(rendered: dict[tuple[str, str], dict[str, Any]]) -> None:
    policies = [o for (kind, _), o in rendered.items() if kind == "NetworkPolicy"]
    assert policies, "the chart renders no NetworkPolicy"
    pods = _pods(rendered)
    expected = {flow: ok for flow, ok in expected_flows(allow_cidrs=True).items()
                if all(end in pods or is_address(end) for end in flow[:2])}
    got = {(source, dest, port): allowed(policies, pods.get(source, source), pods.get(dest, dest), port)
           for source, dest, port in expected}
    assert got == expected


def test_the_evaluator_itself_isolates_and_unions() -> None:
    """The evaluator's semantics on hand-made policies, so a lenient evaluator cannot pass the matrix."""
    a = Pod("a", NS, {"app": "a"}, "10.0.0.1")
    b = Pod("b", NS, {"app": "b", "tier": "x"}, "10.0.0.2")
    deny_all = {"metadata": {"namespace": NS}, "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}
    assert allowed([], a, b, 80)
    assert not allowed([deny_all], a, b, 80)
    allow_b_in = {"metadata": {"namespace": NS}, "spec": {
        "podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["x"]}]},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}],
                     "ports": [{"port": 80, "endPort": 90}]}]}}
    assert allowed([allow_b_in], a, b, 85) and not allowed([allow_b_in], a, b, 91)
    assert not allowed([allow_b_in], b, b, 80)
    allow_a_out = {"metadata": {"namespace": NS}, "spec": {"podSelector": {"matchLabels": {"app": "a"}},
                                                          "policyTypes": ["Egress"], "egress": [{}]}}
    assert not allowed([deny_all, allow_b_in], a, b, 80)  # a's egress still isolated
    assert allowed([deny_all, allow_b_in, allow_a_out], a, b, 80)  # union of policies
