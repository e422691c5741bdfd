"""Every seed example, end to end on the real test cluster (issue 4).

Each test runs real Pods: the entry is pickled here, shipped in a Secret, and run inside a
busybox image that has no Python, through the injected runtime; ``lev.set`` writes to the
in-cluster store and ``Document.get`` reads it back from this machine.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import pathlib
import time
from typing import Any

import pytest

import levrt
from levrt import Concurrent, Cr, lev
from levrt._shapes.names import lease_name
from levrt.errors import TaskFailed
from tests.e2e.conftest import BUSYBOX, REDIS
from tests.unit.golden_cases import hello

pytestmark = pytest.mark.cluster


# -- 1. hello world ---------------------------------------------------------------------------


async def test_hello_world(job: Any) -> None:
    doc = await hello("levrt", image=BUSYBOX)
    assert (await doc.get())["msg"] == "Hello, levrt!"


# -- 2. the lev example, with namespaces ------------------------------------------------------


def scan(target: str) -> Cr:
    @levrt.remote
    def entry() -> None:
        issues = ["Some issues"]
        lev.set(target=target, issues=issues)

    return Cr(BUSYBOX, "ts/issues@1.0", entry=entry())


async def test_lev_namespaces(job: Any) -> None:
    doc = await scan("example.com")
    assert {"target": "example.com", "issues": ["Some issues"]} == await doc.get()
    assert doc.coll.name == "ts/issues@1.0"

    with lev / "example":
        example = await scan("example.com")
    assert example.coll.name == "example|ts/issues@1.0"
    assert (await example.get())["target"] == "example.com"

    with lev / "httpbin" / "org":
        httpbin = await scan("httpbin.org")
    assert httpbin.coll.name == "httpbin|org|ts/issues@1.0"
    assert {"target": "httpbin.org", "issues": ["Some issues"]} == await httpbin.get()
    # Records are per task: the namespaced runs did not touch the first record.
    assert (await doc.get())["target"] == "example.com"


# -- 3. files ---------------------------------------------------------------------------------

BINARY = bytes(range(256)) * 4 + b"\xff\xfe\x00not utf-8"


@levrt.remote
def read_files(paths: list[str]) -> None:
    import hashlib as hl

    lev.set(files={p.replace(".", "_"): hl.sha256(open(p, "rb").read()).hexdigest() for p in paths})


async def test_files_bytes_str_path(job: Any, tmp_path: pathlib.Path) -> None:
    local = tmp_path / "wordlist.txt"
    local.write_bytes(b"admin\nroot\n\xc3\xa9t\xc3\xa9\n")
    files: dict[str, Any] = {
        "/data/blob.bin": BINARY,
        "/etc/tool/config.json": '{"threads": 4, "name": "scan \u2603"}',
        "/usr/share/wordlists/small.txt": local,
    }
    doc = await Cr(BUSYBOX, entry=read_files(sorted(files)), files=files)
    got = (await doc.get())["files"]
    expected = {
        "/data/blob.bin": hashlib.sha256(BINARY).hexdigest(),
        "/etc/tool/config.json": hashlib.sha256(files["/etc/tool/config.json"].encode()).hexdigest(),
        "/usr/share/wordlists/small.txt": hashlib.sha256(local.read_bytes()).hexdigest(),
    }
    assert got == {k.replace(".", "_"): v for k, v in expected.items()}


@levrt.remote
def hold(seconds: float) -> None:
    time.sleep(seconds)
    lev.set(held=seconds)


async def test_tasks_share_one_file_object(job: Any) -> None:
    content = b"shared between two tasks " + str(time.time()).encode()
    digest = hashlib.sha256(content).hexdigest()[:40]
    a = await Cr(BUSYBOX, entry=hold(4), files={"/x/shared": content}).start()
    b = await Cr(BUSYBOX, entry=hold(4), files={"/y/also-shared": content}).start()
    listing = await job.kube.request(
        "GET", f"/api/v1/namespaces/{job.settings.namespace}/configmaps",
        query={"labelSelector": f"levrt.io/file={digest}"},
    )
    assert len(listing["items"]) == 1
    owners = {ref["name"] for ref in listing["items"][0]["metadata"]["ownerReferences"]}
    assert owners == {lease_name(job.job_id)}  # the job's, made before either Pod (DESIGN "Submit order")
    assert (await (await a.done()).get())["held"] == 4
    assert (await (await b.done()).get())["held"] == 4


# -- 4. services ------------------------------------------------------------------------------


@levrt.remote
def talk_to_redis() -> None:
    import os
    import socket
    from urllib.parse import urlparse

    uri = urlparse(os.environ["REDIS_URI"])
    with socket.create_connection((uri.hostname, uri.port), timeout=10) as conn:
        conn.sendall(b"*3\r\n$3\r\nSET\r\n$5\r\nlevrt\r\n$2\r\nok\r\n*2\r\n$3\r\nGET\r\n$5\r\nlevrt\r\n")
        reply = b""
        while reply.count(b"\r\n") < 3:
            reply += conn.recv(4096)
    lev.set(reply=reply.decode(), host=uri.hostname)


async def test_redis_service(job: Any) -> None:
    cr = Cr(
        BUSYBOX,
        entry=talk_to_redis(),
        env=["REDIS_URI=redis://redis:9001"],
        services={"redis": Cr(REDIS, cmd=["--port", "9001"], ports=[9001])},
    )
    task = await cr.start()
    doc = await task.done()
    data = await doc.get()
    assert data == {"reply": "+OK\r\n$2\r\nok\r\n", "host": "redis"}


# -- 5. ports and links, then a signal --------------------------------------------------------


@levrt.remote
def serve(port: int) -> None:
    import socket

    served = 0
    server = socket.create_server(("0.0.0.0", port))
    try:
        while True:
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"hello from A")
                served += 1
    except KeyboardInterrupt:
        lev.set(served=served, stopped="SIGINT")


@levrt.remote
def fetch(alias: str, port: int) -> None:
    import socket

    with socket.create_connection((alias, port), timeout=10) as conn:
        lev.set(read=conn.recv(100).decode())


async def test_ports_links_and_signal(job: Any) -> None:
    a = await Cr(BUSYBOX, entry=serve(8000), ports=[8000]).start()
    assert a.host
    b = await Cr(BUSYBOX, entry=fetch("proxy", 8000), links={"proxy": a.host})
    assert (await b.get())["read"] == "hello from A"
    await a.signal()
    doc_a = await asyncio.wait_for(a.done(), timeout=30)
    record = await doc_a.get()
    assert record["stopped"] == "SIGINT"
    assert record["served"] >= 1  # B's connection, plus the kubelet's readiness probes


# -- 6. host network --------------------------------------------------------------------------


@levrt.remote
def interfaces() -> None:
    import os

    lev.set(interfaces=sorted(os.listdir("/sys/class/net")))


async def test_host_network(job: Any) -> None:
    task = await Cr(BUSYBOX, entry=interfaces(), host=True).start()
    nodes = await job.kube.request("GET", "/api/v1/nodes")
    node_ips = {a["address"] for n in nodes["items"] for a in n["status"]["addresses"] if a["type"] == "InternalIP"}
    assert task.host in node_ips
    seen = (await (await task.done()).get())["interfaces"]
    # A Pod network namespace holds only lo and eth0; the node's holds the CNI bridge and veths too.
    assert set(seen) - {"lo", "eth0"}, seen


# -- 7. background and signal: partial results -------------------------------------------------


@levrt.remote
def long_scan() -> None:
    import time as t

    found = 0
    try:
        while True:
            found += 1
            lev.set(found=found, partial=False)
            t.sleep(0.2)
    except KeyboardInterrupt:
        lev.set(found=found, partial=True)


async def test_signal_returns_partial_results(job: Any) -> None:
    task = await Cr(BUSYBOX, entry=long_scan()).start()
    await asyncio.sleep(2)
    sent = time.monotonic()
    await task.signal()
    doc = await asyncio.wait_for(task.done(), timeout=20)
    took = time.monotonic() - sent
    data = await doc.get()
    assert data["partial"] is True and data["found"] >= 2
    assert took < 10, f"signal to Document took {took:.1f}s"


# -- 8. Concurrent ------------------------------------------------------------------------------


@levrt.remote
def timed(i: int) -> None:
    import time as t

    began = t.time()
    t.sleep(3)
    lev.set(i=i, began=began, ended=t.time())


async def test_concurrent_limit_five(job: Any) -> None:
    docs: list[Any] = []

    async def one(i: int) -> None:
        docs.append(await Cr(BUSYBOX, "ts/timed@1.0", entry=timed(i)))

    async with Concurrent(limit=5) as c:
        for i in range(12):
            c.start(one(i))
    records = [await d.get() for d in docs]
    assert sorted(r["i"] for r in records) == list(range(12))
    edges = sorted([(r["began"], 1) for r in records] + [(r["ended"], -1) for r in records])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak <= 5
    assert peak >= 2, "tasks did not overlap at all"


# -- 9. failures -------------------------------------------------------------------------------


@levrt.remote
def explode() -> None:
    raise ValueError("boom 42: the target refused")


async def test_entry_raises(job: Any) -> None:
    with pytest.raises(TaskFailed) as info:
        await Cr(BUSYBOX, entry=explode())
    assert "boom 42: the target refused" in str(info.value)
    assert info.value.exit_code == 1
    assert "ValueError" in info.value.logs
    # The traceback names this file and shows the line, though the container has neither the file
    # nor (cloudpickle >= 3.1.3) the file's name in the pickled code: the payload carries both.
    lines, first = inspect.getsourcelines(explode.func)
    raising = next(i for i, text in enumerate(lines) if "raise ValueError" in text)
    assert (f'File "{pathlib.Path(__file__).resolve()}", line {first + raising}, in explode\n'
            f"    {lines[raising].strip()}\n") in info.value.logs, info.value.logs


async def test_missing_image_fails_fast(job: Any) -> None:
    began = time.monotonic()
    with pytest.raises(TaskFailed) as info:
        await Cr("levrt.local/does-not-exist:0.0.1", cmd=["true"])
    assert time.monotonic() - began < 30
    assert info.value.reason in ("ErrImagePull", "ImagePullBackOff")
    assert "does-not-exist" in str(info.value)


async def test_payload_for_another_python_is_refused_with_a_version_error(
    job: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A payload pickled by a Python 3.12 client must not be unpickled by the 3.11 runtime."""
    import levrt.payload

    monkeypatch.setattr(levrt.payload, "python_version", lambda: "3.12")
    with pytest.raises(TaskFailed) as info:
        await hello("from the future", image=BUSYBOX)
    message = str(info.value)
    assert "3.12" in message and "3.11" in message, message
    assert "python" in message.lower()


async def test_hello_world_from_the_runtime_node_cache(kube_cluster: Any, levrt_settings: Any) -> None:
    """The same entry with the bundle mounted from the chart's node cache (no init container)."""
    from levrt._clients.kube import Kube
    from levrt.run import session

    kube = await Kube.connect(kubeconfig=kube_cluster.kubeconfig)
    try:
        settings_cm = await kube.request(
            "GET", f"/api/v1/namespaces/{kube_cluster.namespace}/configmaps/levrt-settings")
    finally:
        await kube.close()
    host_path = settings_cm.get("data", {}).get("LEVRT_RUNTIME_HOST_PATH")
    if not host_path:
        pytest.skip("the platform was installed without runtime.nodeCache")
    settings = levrt_settings.replace(runtime_host_path=host_path)
    async with session(settings=settings, kubeconfig=kube_cluster.kubeconfig) as engine:
        task = await engine.start(hello("node cache", image=BUSYBOX))
        pod = engine.watch.get(task.pod)
        assert pod is not None and "initContainers" not in pod["spec"]
        doc = await task.done()
        assert (await doc.get())["msg"] == "Hello, node cache!"
