"""The chart's NetworkPolicies against the expected allow/deny matrix, by cyclonus's probe simulation.

Why: test_networkpolicy_matrix.py checks the rendered policies with an evaluator written for it, so
a misreading of NetworkPolicy semantics could sit in both the evaluator and the chart. cyclonus
(github.com/mattfenwick/cyclonus, built from its Go module by tests/cluster/gotools.py) is an
independent engine: ``cyclonus analyze --mode probe`` computes, offline, the truth table of a set
of policies over a model of namespaces, Pods, labels and ports; ``--mode query-traffic`` answers
for single flows, which covers addresses outside the cluster (ipBlock). This module feeds it the
rendered policies and the same Pods (labels from the chart and levrt's builders) and asserts the
same expectation table as the evaluator. Like the evaluator, it is NOT an enforcer: it proves the
policies say the right thing, not that a cluster applies them.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chart import by_key, helm_binary, render
from tests.chart.test_networkpolicy_matrix import (
    ALLOW_CIDR,
    NAMESPACE_LABELS,
    STORE_PORT,
    Pod,
    _pods,
    expected_flows,
    is_address,
)
from tests.cluster import gotools

pytestmark = pytest.mark.helm

Flow = tuple[str, str, int]  # (source, destination, TCP port); an end is a Pod key or an address
CELL = {".": True, "X": False}  # cyclonus's symbols for allowed and blocked; any other one is a failure


@pytest.fixture(scope="module")
def cyclonus() -> Iterator[str]:
    """The cyclonus binary tests/cluster builds (a no-op when its cache already holds it)."""
    gotools.build(gotools.tool("cyclonus"))
    yield str(gotools.binary("cyclonus"))


def _named_ports(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, dict[int, str]]:
    """Container port names of the chart's Pods, by Pod key (the store's ``mongodb``)."""
    template = objects[("StatefulSet", "levrt-store")]["spec"]["template"]
    return {"store": {p["containerPort"]: p.get("name", "") for c in template["spec"]["containers"]
                      for p in c.get("ports") or []}}


def _peer(pod: Pod) -> dict[str, Any]:
    return {"Internal": {"PodLabels": pod.labels, "NamespaceLabels": NAMESPACE_LABELS[pod.namespace],
                         "Namespace": pod.namespace}, "IP": pod.ip}


def _model(pods: dict[str, Pod], names: dict[str, dict[int, str]], ports: list[int]) -> dict[str, Any]:
    """cyclonus's probe model (its SyntheticProbeConnectivityConfig): every Pod serves every probed
    port, so no cell is "N" (port not served); a Pod is named by its key in ``pods``."""
    return {
        "Resources": {
            "Namespaces": {ns: NAMESPACE_LABELS[ns] for ns in sorted({p.namespace for p in pods.values()})},
            "Pods": [{"Namespace": pod.namespace, "Name": key, "Labels": pod.labels, "IP": pod.ip,
                      "Containers": [{"Name": f"c{port}", "Port": port, "Protocol": "TCP",
                                      "PortName": names.get(key, {}).get(port, f"p{port}")} for port in ports]}
                     for key, pod in pods.items()],
        },
        "Probes": [{"Port": port, "Protocol": "TCP"} for port in ports],
    }


def _traffic(pods: dict[str, Pod], names: dict[str, dict[int, str]], flow: Flow) -> dict[str, Any]:
    """One query-traffic entry; an address is an external peer (no ``Internal``)."""
    source, dest, port = flow
    return {"Source": _peer(pods[source]) if source in pods else {"IP": source},
            "Destination": _peer(pods[dest]) if dest in pods else {"IP": dest},
            "ResolvedPort": port, "ResolvedPortName": names.get(dest, {}).get(port, ""), "Protocol": "TCP"}


def _tables_after(text: str, title: str) -> list[list[list[str]]]:
    """The tablewriter tables following each line ``title``: rows of stripped cells (border lines dropped)."""
    lines = text.splitlines()
    tables = []
    for i, line in enumerate(lines):
        if line.strip() != title:
            continue
        rows = []
        for row in lines[i + 1:]:
            if row.startswith("+"):
                continue
            if not row.startswith("|"):
                break
            rows.append([cell.strip() for cell in row.strip()[1:-1].split("|")])
        tables.append(rows)
    return tables


def _parse_probe(stdout: str, stderr: str, ports: list[int], keys: dict[str, str]) -> dict[Flow, bool]:
    """The "Combined" truth tables of ``analyze --mode probe``, one per probed port in model order.

    ``keys`` maps cyclonus's Pod names (``namespace/name``) to our Pod keys. Column headers are
    upper-cased by tablewriter, so they are matched case-insensitively (our names hold no ``_``
    or ``.``, the only other characters it rewrites).
    """
    section = stdout.split("probe:", 1)[1].split("query traffic:", 1)[0]
    # The last "Combined" table is cyclonus's probe of Pods read from a cluster: none here, so empty.
    tables = [t for t in _tables_after(section, "Combined:") if len(t[0]) > 1]
    assert re.findall(r"probe on port (\d+), protocol TCP", stderr) == [str(p) for p in ports], stderr
    assert len(tables) == len(ports), section
    upper = {name.upper(): name for name in keys}
    assert len(upper) == len(keys) and not any(set(name) & set("_. ") for name in keys)
    got: dict[Flow, bool] = {}
    for port, (header, *rows) in zip(ports, tables, strict=True):
        assert header[0] == "" and sorted(header[1:]) == sorted(upper), header
        assert sorted(row[0] for row in rows) == sorted(keys), rows
        for row in rows:
            assert len(row) == len(header), row
            for column, cell in zip(header[1:], row[1:], strict=True):
                assert cell in CELL, f"port {port}: {row[0]} -> {upper[column]}: unexpected cell {cell!r}"
                got[(keys[row[0]], keys[upper[column]], port)] = CELL[cell]
    return got


def _parse_traffic(stdout: str, flows: list[Flow]) -> dict[Flow, bool]:
    """The "Is allowed?" footers of ``analyze --mode query-traffic``, one per traffic in file order."""
    section = stdout.split("query traffic:", 1)[1]
    answers = re.findall(r"^\|\s*IS ALLOWED\?\s*\|\s*(TRUE|FALSE)\s*\|", section, re.M)
    assert len(answers) == len(flows), section
    return {flow: answer == "TRUE" for flow, answer in zip(flows, answers, strict=True)}


@pytest.mark.parametrize("allow_cidrs", [False, True], ids=["default", "allowCIDRs"])
def test_cyclonus_agrees_with_the_expected_matrix(cyclonus: str, tmp_path: Path, allow_cidrs: bool) -> None:
    sets = [f"store.networkPolicy.allowCIDRs={{{ALLOW_CIDR}}}"] if allow_cidrs else []
    objects = by_key(render(helm_binary(), *sets))
    policies = [o for (kind, _), o in objects.items() if kind == "NetworkPolicy"]
    assert policies, "the chart renders no NetworkPolicy"
    pods = _pods(objects)
    names = _named_ports(objects)
    assert names["store"].get(STORE_PORT), names
    expected = expected_flows(allow_cidrs)
    missing = {end for flow in expected for end in flow[:2] if end not in pods and not is_address(end)}
    assert not missing, f"the chart or levrt no longer makes these Pods: {missing}"

    between_pods = [f for f in expected if f[0] in pods and f[1] in pods]
    ports = sorted({port for _, _, port in between_pods})
    with_addresses = [f for f in expected if f not in between_pods]
    (tmp_path / "policies.json").write_text(json.dumps(
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicyList", "items": policies}))
    (tmp_path / "model.json").write_text(json.dumps(_model(pods, names, ports)))
    (tmp_path / "traffic.json").write_text(json.dumps([_traffic(pods, names, f) for f in with_addresses]))
    command = [cyclonus, "analyze", "--mode", "probe,query-traffic", "--policy-path", "policies.json",
               "--probe-path", "model.json", "--traffic-path", "traffic.json"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr

    table = _parse_probe(done.stdout, done.stderr, ports, {f"{p.namespace}/{key}": key for key, p in pods.items()})
    table.update(_parse_traffic(done.stdout, with_addresses))
    assert {flow: table[flow] for flow in expected} == expected

    # The rest of cyclonus's table, generalising the expectation: the policies isolate the store's
    # ingress only (every other Pod pair on every probed port is allowed), and no Pod reaches the
    # store on a port other than its own.
    for (source, dest, port), ok in table.items():
        if (source, dest, port) in expected or source == dest:
            continue
        if dest != "store":
            assert ok, f"{source} -> {dest}:{port} blocked, but only the store is isolated"
        elif port != STORE_PORT:
            assert not ok, f"{source} -> store:{port} allowed, but only {STORE_PORT} is open"
