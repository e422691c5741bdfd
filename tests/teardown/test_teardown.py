"""`python -m tests.cluster down` leaves nothing behind (run last, on its own: `pytest tests/teardown`).

This folder is collected only when named on the command line (see tests/conftest.py), so no
ordinary selection (`pytest`, `-m "not cluster"`, `-k teardown`, `tests/smoke`) stops the cluster.

Why: the cluster runs as root on a developer's VM; a down that forgot a shim, a mount, a
network namespace, a veth or an iptables chain would poison the next run and the machine.
This test brings the cluster up (or reuses it), runs a Pod so there is something to clean,
calls down, and inspects the host.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.cluster import gotools, node
from tests.cluster.images import busybox_ref

pytestmark = pytest.mark.teardown


def _our_processes() -> list[str]:
    cache = str(gotools.cache_root() / "gotools")
    state = str(node.paths().root)
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cache in cmd or state in cmd:
            found.append(f"{proc.name}: {cmd[:120]}")
    return found


def _kubepods_pids() -> list[str]:
    pids = []
    for controller in Path("/sys/fs/cgroup").iterdir():
        top = controller / "kubepods"
        if top.is_dir():
            for procs in top.rglob("cgroup.procs"):
                pids += procs.read_text().split()
    return pids


def _outside_state(since: float) -> list[str]:
    """containerd's default places outside the state directory, touched since ``since``: the
    config keeps shim sockets, runc's state and NRI inside it (or off), so nothing may be here."""
    found = []
    for d in (Path("/run/containerd/s"), Path("/run/containerd/runc/k8s.io"), Path("/var/run/nri"),
              Path("/opt/containerd")):
        if d.is_dir():
            found += [str(e) for e in d.iterdir() if e.lstat().st_mtime >= since]
    return found


def _leftovers(since: float = float("inf")) -> dict[str, list[str]]:
    state = str(node.paths().root)
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if line.split()[4].startswith(state)]
    netns = sorted(p.name for d in (Path("/run/netns"), Path("/var/run/netns")) if d.exists()
                   for p in d.glob("cni-*"))
    veths = subprocess.run(["ip", "-o", "link", "show", "type", "veth"], capture_output=True, text=True).stdout
    bridge = subprocess.run(["ip", "link", "show", node.BRIDGE], capture_output=True, text=True).returncode == 0
    chains = [
        line for tool in ("iptables-save", "ip6tables-save")
        for line in subprocess.run([tool], capture_output=True, text=True).stdout.splitlines()
        if "KUBE-" in line or "CNI-" in line
    ]
    return {
        "processes": _our_processes(),
        "container processes": _kubepods_pids(),
        "mounts": mounts,
        "network namespaces": netns,
        "veths": veths.splitlines(),
        "bridge": [node.BRIDGE] if bridge else [],
        "iptables": chains,
        "state dir": [state] if Path(state).exists() else [],
        "containerd outside the state dir": _outside_state(since),
    }


def test_down_leaves_no_process_mount_netns_veth_or_rule(kube_cluster: object) -> None:
    if os.environ.get("LEVRT_TEST_KUBECONFIG"):
        pytest.skip("an external cluster (LEVRT_TEST_KUBECONFIG) is not ours to tear down")
    node.up()
    node.kubectl("-n", "default", "run", "teardown-probe", f"--image={busybox_ref()}",
                 "--image-pull-policy=IfNotPresent", "--restart=Never", "--", "sleep", "300")
    node.kubectl("-n", "default", "wait", "--for=condition=Ready", "pod/teardown-probe", "--timeout=60s")
    before = _leftovers()
    assert before["container processes"] and before["veths"] and before["mounts"], before  # something to clean
    containerd_started = (node.paths().pids / "containerd.pid").stat().st_mtime

    node.down()

    after = _leftovers(since=containerd_started)
    assert {k: v for k, v in after.items() if v} == {}
