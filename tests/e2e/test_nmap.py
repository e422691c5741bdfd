"""A real scanner end to end: the nmap tool package (``examples/lev/demo/nmap``) on the real cluster.

Why: the demo packages scan with Python sockets; this runs Debian's nmap from an image with no
shell and no Python (``tests/cluster/images.py``), with raw sockets (``NET_RAW``) for the SYN
scan, OS detection and ARP discovery from the node's network (``host=True``), against service
tasks started here: a redis task and a busybox ``httpd``. Every expected value is what those
targets really serve. The workflow fans out with ``Concurrent`` and runs the way the README
tells users: ``levrt run FILE:FUNC``, on this machine and in an orchestration Pod.
"""

from __future__ import annotations

import asyncio
import importlib
import ipaddress
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from levrt import Cr, Task
from tests.cluster.images import debian_version
from tests.e2e.conftest import BUSYBOX, REDIS

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
SCHEMA = "demo/nmap@1.0"
HTTPD = "mkdir -p /www && echo levrt-nmap > /www/index.html && httpd -f -p 8080 -h /www"


def _forget_lev() -> None:
    for name in [n for n in sys.modules if n == "lev" or n.startswith("lev.")]:
        del sys.modules[name]


@pytest.fixture
def nmap(monkeypatch: pytest.MonkeyPatch, nmap_image: str) -> Iterator[ModuleType]:
    """``lev.demo.nmap.scan``, imported with the cluster's nmap image; forgotten afterwards."""
    monkeypatch.setenv("LEVRT_NMAP_IMAGE", nmap_image)
    monkeypatch.setattr(sys, "path", [str(EXAMPLES), *sys.path])
    _forget_lev()  # the image is read at import
    yield importlib.import_module("lev.demo.nmap.scan")
    _forget_lev()


async def start_targets() -> tuple[Task, Task]:
    """A redis task (6379) and a busybox httpd (8080); the job's end deletes them."""
    redis, http = await asyncio.gather(
        Cr(REDIS, cmd=["--port", "6379"], ports=[6379]).start(),
        Cr(BUSYBOX, cmd=["sh", "-c", HTTPD], ports=[8080]).start(),
    )
    return redis, http


async def the_node(job: Any) -> tuple[str, str]:
    """The node's Pod CIDR and its own address."""
    node = (await job.kube.request("GET", "/api/v1/nodes"))["items"][0]
    address = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    return node["spec"]["podCIDR"], address


def one_host(record: dict[str, Any], address: str) -> dict[str, Any]:
    hosts = [h for h in record["hosts"] if h["address"] == address]
    assert len(hosts) == 1, record["hosts"]
    return hosts[0]


def ports_of(host: dict[str, Any]) -> dict[int, tuple[str, str]]:
    return {p["port"]: (p["state"], p["service"]) for p in host["ports"]}


async def test_scans_of_redis_and_httpd(job: Any, nmap: ModuleType) -> None:
    """Connect scan with service detection, SYN scan with OS detection, ARP discovery: at once."""
    redis, http = await start_targets()
    assert redis.host and http.host
    pod_cidr, _ = await the_node(job)
    # Raw packets ask for NET_RAW. (containerd's default set has it already, so here the SYN scan
    # would run without; clusters that drop it, e.g. Pod Security "restricted", need the request.)
    assert nmap.port_os(redis.host).capabilities == ("NET_RAW",) and nmap.tcp(redis.host).capabilities == ()
    assert nmap.alive(pod_cidr).host and nmap.alive(pod_cidr).capabilities == ("NET_RAW",)
    tcp_redis, tcp_http, syn_os, alive = await asyncio.gather(
        nmap.tcp(redis.host, "6379,6380", versions=True),
        nmap.tcp(http.host, "8080,8081", versions=True),
        nmap.port_os(redis.host, "6379,6380"),
        nmap.alive(pod_cidr),
    )
    assert tcp_redis.coll.name == SCHEMA

    got = await tcp_redis.get()
    assert (got["complete"], got["interrupted"], got["exit_code"]) == (True, False, 0)
    assert got["scanner"]["name"] == "nmap" and "-sT" in got["command"]
    assert got["scaninfo"] == [{"type": "connect", "protocol": "tcp", "services": 2}]
    host = one_host(got, redis.host)
    assert host["state"] == "up" and got["up"] == [redis.host]
    # 6380 is in no nmap-services line: a closed port without a service name.
    assert ports_of(host) == {6379: ("open", "redis"), 6380: ("closed", "")}
    redis_port = next(p for p in host["ports"] if p["port"] == 6379)
    # -sV asked the server itself: the product and the version of Debian's redis in the image.
    assert (redis_port["method"], redis_port["product"], redis_port["version"]) == (
        "probed", "Redis key-value store", debian_version("redis-server"))
    assert {p["reason"] for p in host["ports"]} == {"syn-ack", "conn-refused"}
    assert got["stats"]["exit"] == "success" and got["stats"]["up"] == 1
    assert "legacy provider" not in got.get("stderr", "")  # the image carries OpenSSL's provider

    got = await tcp_http.get()
    host = one_host(got, http.host)
    # busybox httpd matches no probe of nmap 7.93 beyond "it speaks HTTP on a proxy port".
    assert ports_of(host) == {8080: ("open", "http-proxy"), 8081: ("closed", "blackice-icecap")}
    assert next(p for p in host["ports"] if p["port"] == 8080)["method"] == "probed"

    # SYN scan (raw sockets: NET_RAW) and OS detection against a redis container on this node.
    got = await syn_os.get()
    assert got["scaninfo"][0]["type"] == "syn" and got["complete"], got.get("stderr")
    host = one_host(got, redis.host)
    assert ports_of(host) == {6379: ("open", "redis"), 6380: ("closed", "")}
    assert {p["port"]: p["reason"] for p in host["ports"]} == {6379: "syn-ack", 6380: "reset"}
    assert host["reason"] == "arp-response" and host["distance"] == 1  # one bridge away
    os_found = host["os"]
    assert {(u["port"], u["state"]) for u in os_found["ports_used"]} >= {(6379, "open"), (6380, "closed")}
    # No exact match here, guesses (--osscan-guess): "Linux 5.3 - 5.4" at 94%, "HP P2000 G3 NAS
    # device" (an embedded Linux) at 93%, more Linux ranges at 91-93%; the first two swap places
    # from run to run. So: confident guesses, Linux among the top three, not one kernel range.
    top = os_found["matches"][:3]
    assert top and top[0]["accuracy"] >= 85, os_found
    assert any(c["family"] == "Linux" for m in top for c in m["classes"]), top

    # Host discovery from the node's network namespace (host=True): ARP on the Pod bridge finds
    # both targets, with their MAC addresses, which only a scanner on that link can see.
    got = await alive.get()
    assert got["complete"] and got["scaninfo"] == [], got.get("stderr")
    assert {redis.host, http.host} <= set(got["up"]), got["up"]
    for address in (redis.host, http.host):
        found = one_host(got, address)
        assert found["reason"] == "arp-response" and "mac" in {a["type"] for a in found["addresses"]}
    # The bridge's own address answers as the scanner's host: nmap runs in the node's network.
    bridge = str(ipaddress.ip_network(pod_cidr)[1])
    assert one_host(got, bridge)["reason"] == "localhost-response"


@pytest.mark.parametrize("how", ["signal", "timeout"])
async def test_an_interrupted_scan_keeps_what_nmap_wrote(job: Any, nmap: ModuleType, how: str) -> None:
    """The record grows while nmap runs; SIGINT mid-scan (``task.signal()``, or the deadline of
    ``timeout=``) keeps the host nmap finished, parsed, and says the report is incomplete."""
    redis, http = await start_targets()
    assert redis.host and http.host
    # One host at a time, a probe every 3 s: each host takes ~18 s, so the first is in the XML
    # (and in the record) while the second is still being scanned, from ~18 s to ~36 s.
    argv = ["-sT", "-Pn", "-n", "--max-hostgroup", "1", "--scan-delay", "3s", "-p", "6379-6384", redis.host, http.host]
    started = time.monotonic()
    task = await nmap.raw(argv, timeout=27 if how == "timeout" else None).start()
    if how == "signal":
        coll = job.store.collection(SCHEMA)
        record_id = {"_id": {"job": task.job_id, "task": task.task_id}}
        while True:
            record = await coll.find_one(record_id) or {}
            if record.get("hosts"):
                break
            assert time.monotonic() - started < 90, f"no host stored after 90 s: {record}"
            await asyncio.sleep(0.5)
        assert record["complete"] is False and [h["address"] for h in record["hosts"]] == [redis.host]
        await task.signal()
    doc = await task
    assert task.timed_out is (how == "timeout")
    assert time.monotonic() - started < 60  # ended by the interrupt, not by the scan's own end
    got = await doc.get()
    assert (got["interrupted"], got["complete"]) == (True, False), got
    assert got["stats"] == {}  # nmap never got to its run statistics
    assert [h["address"] for h in got["hosts"]] == [redis.host]
    assert ports_of(got["hosts"][0])[6379] == ("open", "redis")
    assert got["scanner"]["args"].startswith("nmap -sT")


def levrt_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "levrt", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.parametrize("where", ["here", "in-cluster"])
async def test_levrt_run_the_sweep_workflow(
    job: Any, cli_env: dict[str, str], nmap_image: str, where: str
) -> None:
    """``levrt run .../flows.py:sweep``: Concurrent over the targets, a summary in the job's record."""
    redis, http = await start_targets()
    assert redis.host and http.host
    _, node_ip = await the_node(job)
    env = dict(cli_env, LEVRT_NMAP_IMAGE=nmap_image)
    # Here: connect scans of three targets, the node itself among them (the apiserver's 6443).
    # In the cluster: SYN scans with OS detection of the two services.
    if where == "here":
        targets, how, placement = [redis.host, http.host, node_ip], "tcp", []
    else:
        targets, how, placement = [redis.host, http.host], "syn-os", ["--in-cluster", "-e",
                                                                       f"LEVRT_NMAP_IMAGE={nmap_image}"]
    run = await asyncio.to_thread(levrt_cli, env, "run", "examples/lev/demo/nmap/flows.py:sweep", ",".join(targets),
                                  "6379,8080,6443", how, "--no-progress", *placement)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    summary = json.loads(out[out.index("{"):out.rindex("}") + 1])
    assert (summary["how"], summary["failed"]) == (how, []), summary
    assert [s["target"] for s in summary["scanned"]] == targets
    expected = {redis.host: [6379], http.host: [8080], node_ip: [6443]}
    services = {6379: "redis", 8080: "http-proxy", 6443: "sun-sr-https"}  # names from nmap-services
    for scanned in summary["scanned"]:
        (host,) = scanned["hosts"]
        assert scanned["complete"] and host["state"] == "up", scanned
        assert host["open"] == [{"port": p, "protocol": "tcp", "service": services[p]}
                                for p in expected[scanned["target"]]], scanned
        assert host["closed"] == 2
        if how == "syn-os":
            assert any(guess.startswith("Linux") for guess in host["os"]), host  # see the test above

    job_id = str(summary["job"])
    stored = await asyncio.to_thread(levrt_cli, env, "get", SCHEMA, "--job", job_id)
    assert stored.returncode == 0, stored.stderr
    records = sorted(json.loads(stored.stdout), key=lambda r: r["_id"]["task"])
    assert [r["targets"] for r in records] == [[t] for t in targets]
    assert all(r["complete"] and r["exit_code"] == 0 for r in records)
    own = await asyncio.to_thread(levrt_cli, env, "get", "jobs", "--job", job_id)
    assert own.returncode == 0, own.stderr
    (record,) = json.loads(own.stdout)
    assert record["stage"] == "done" and record["targets"] == targets and record["how"] == how


def test_a_report_cut_short_keeps_its_finished_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parser alone: nmap's XML without its end (an interrupted scan) and garbage."""
    monkeypatch.setattr(sys, "path", [str(EXAMPLES), *sys.path])
    _forget_lev()
    try:
        report = importlib.import_module("lev.demo.nmap.report")
    finally:
        _forget_lev()
    head = (b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE nmaprun>\n'
            b'<nmaprun scanner="nmap" args="nmap -sT 10.0.0.1 10.0.0.2" start="1" version="7.93">\n'
            b'<scaninfo type="connect" protocol="tcp" numservices="1" services="22"/>\n'
            b'<host><status state="up" reason="user-set"/><address addr="10.0.0.1" addrtype="ipv4"/>'
            b'<ports><port protocol="tcp" portid="22"><state state="open" reason="syn-ack"/>'
            b'<service name="ssh" method="table" conf="3"/></port></ports></host>\n'
            b'<host><status state="up" reason="user-set"/><address addr="10.0.0.2" ')
    got = report.parse_text(head)
    assert got["complete"] is False and got["up"] == ["10.0.0.1"] and got["stats"] == {}
    assert got["hosts"][0]["ports"] == [
        {"port": 22, "protocol": "tcp", "state": "open", "reason": "syn-ack", "service": "ssh", "method": "table"}]
    assert got["scaninfo"] == [{"type": "connect", "protocol": "tcp", "services": 1}]
    assert report.parse_text(b"")["hosts"] == [] and report.parse_text(b"<<not xml")["complete"] is False
