"""The golden cases: Crs whose Kubernetes objects are pinned in tests/golden/*.yaml.

Why a module (not only a test): the same cases are sent to the real apiserver with
``dryRun=All`` by a cluster test, so snapshots and server-side validation cover the same objects.
``golden_cases()`` returns ``{name: TaskObjects}`` built with fixed ``GOLDEN_SETTINGS``;
``snapshot(objects)`` is the deterministic form written to YAML (payload bytes, which vary with
the cloudpickle version, replaced by a placeholder naming the entry).
"""

from __future__ import annotations

import copy
import pathlib
import tempfile
from typing import Any

import levrt
from levrt import Cr, Digest, cli, lev
from levrt._shapes.build import TaskObjects
from levrt.context import collection_name
from levrt.payload import read_header
from levrt.settings import Settings
from tests.helpers import build

__all__ = ["GOLDEN_SETTINGS", "PATH_FILE_CONTENT", "golden_cases", "hello", "snapshot"]

GOLDEN_SETTINGS = Settings(namespace="levrt", runtime_image="levrt.local/runtime:golden")
BUSYBOX = "levrt.local/busybox:1.36"
PATH_FILE_CONTENT = b"admin\nroot\n\xc3\xa9t\xc3\xa9\n"
BINARY = bytes(range(256))


# -- the Crs, written as a user would ---------------------------------------------------------


def hello(name: str, *, image: str = BUSYBOX) -> Cr:
    """The README's hello world: an entry storing ``{"msg": "Hello, NAME!"}`` (the e2e tests run it)."""

    @levrt.remote
    def entry() -> None:
        lev.set(msg=f"Hello, {name}!")

    return Cr(image, entry=entry())


@levrt.remote
def nmap_entry(target: str) -> None:
    import subprocess
    import sys

    out = subprocess.run(["nmap", *sys.argv[1:], target], capture_output=True, text=True)
    lev.set(target=target, report=out.stdout)


def nmap_port_os(target: str) -> Cr:
    return Cr(
        "levkit/nmap_python:v1.0",
        "talentsec/nmap@1.0",
        host=True,
        entry=nmap_entry(target),
        cmd=cli("-O", "-sV", p="1-1024", script="default", verbose=True, resolve=False),
        files={
            "/usr/share/nmap/targets.txt": f"{target}\n",
            "/etc/nmap/config.json": b'{"threads": 4}',
        },
    )


@levrt.remote
def talk_to_redis() -> None:
    import os

    lev.set(uri=os.environ["REDIS_URI"])


def redis_service() -> Cr:
    return Cr(
        BUSYBOX,
        entry=talk_to_redis,
        env=["REDIS_URI=redis://redis:9001"],
        services={"redis": Cr("levrt.local/redis:7", cmd=["--port", "9001"], ports=[9001])},
    )


@levrt.remote
def fetch(alias: str, port: int) -> None:
    import socket

    with socket.create_connection((alias, port), timeout=10) as conn:
        lev.set(read=conn.recv(100).decode())


def linked() -> Cr:
    # links={"proxy": a.host} where a = await Cr(..., ports=[8000]).start(); a.host is its Pod IP.
    return Cr(BUSYBOX, entry=fetch("proxy", 8000), links={"proxy": "10.244.0.17"})


@levrt.remote
def serve(port: int) -> None:
    import socket

    socket.create_server(("0.0.0.0", port)).accept()


def server() -> Cr:
    return Cr(BUSYBOX, entry=serve(8000), ports=[8000])


@levrt.remote
def read_back(paths: list[str]) -> None:
    lev.set(sizes={p: len(open(p, "rb").read()) for p in paths})


def files_cr(local: pathlib.Path) -> Cr:
    files: dict[str, levrt.File] = {
        "/data/blob.bin": BINARY,
        "/etc/tool/config.json": '{"threads": 4, "name": "scan \u2603"}',
        "/usr/share/wordlists/small.txt": local,
        "/usr/share/wordlists/copy.txt": PATH_FILE_CONTENT,  # same content: one object, two mounts
        "/opt/stored/rockyou.txt": Digest("ab" * 32),
    }
    return Cr(BUSYBOX, entry=read_back(sorted(files)), files=files)


BIG_WORDLIST = b"".join(b"word%06d\n" % i for i in range(120_000))
"""1.3 MB: over what a ConfigMap holds, so it goes through the store's file storage."""


def stored_files(big: pathlib.Path) -> Cr:
    # No entry: the image's own sha256sum reads files that levrt-files fetched from the store.
    return Cr(
        BUSYBOX,
        cmd=["sha256sum", "/usr/share/wordlists/big.txt", "/opt/stored/rockyou.txt", "/etc/scan.conf"],
        files={
            "/usr/share/wordlists/big.txt": big,
            "/opt/stored/rockyou.txt": Digest("ab" * 32),  # stored before (levrt put, levrt.upload)
            "/etc/scan.conf": "threads=4\n",  # small: a ConfigMap, as always
        },
    )


def plain_image() -> Cr:
    # No entry anywhere: no runtime, no payload; the image's own entrypoint gets cmd.
    return Cr("levrt.local/nginx:1.27", cmd=["-g", "daemon off;"], env=["A=1", "B=x=y"])


@levrt.remote
def long_scan() -> None:
    import time

    try:
        for done in range(10**6):
            lev.set(progress=done)
            time.sleep(1)
    except KeyboardInterrupt:
        lev.set(partial=True)


def run_options() -> Cr:
    # Every run option; the service carries the two a service may have (resources, capabilities).
    return Cr(
        BUSYBOX,
        entry=long_scan(),
        timeout=3600,
        resources={"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": 2, "memory": "1Gi"}},
        capabilities=["net_raw", "CAP_NET_ADMIN"],
        node_selector={"levrt.io/scanner": "true", "kubernetes.io/os": "linux"},
        tolerations=[{"key": "scanners", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}],
        retries=2,
        services={"redis": Cr("levrt.local/redis:7", cmd=["--port", "9001"], ports=[9001],
                              resources={"limits": {"memory": "128Mi"}}, capabilities=["SYS_RESOURCE"])},
    )


def multi_port_service() -> Cr:
    # Several ports need the exec probe, so the runtime is added although nothing has an entry.
    return Cr(
        BUSYBOX,
        cmd=["sh", "-c", "wget -qO- http://web:8080/"],
        services={"web": Cr("levrt.local/web:1", ports=[8080, 8443], links={"upstream": "10.0.0.5"})},
        links={"upstream": "10.0.0.5", "db": "fd00::12"},
    )


# -- building -------------------------------------------------------------------------------------


def golden_cases(workdir: pathlib.Path | None = None) -> dict[str, TaskObjects]:
    """Every golden case built with ``GOLDEN_SETTINGS`` (job 7; task = position)."""
    if workdir is None:
        workdir = pathlib.Path(tempfile.mkdtemp(prefix="levrt-golden-"))
    local = workdir / "wordlist.txt"
    local.write_bytes(PATH_FILE_CONTENT)
    big = workdir / "big.txt"
    big.write_bytes(BIG_WORDLIST)
    crs: dict[str, tuple[Cr, str]] = {
        "hello-world": (hello("levrt", image=BUSYBOX), ""),
        "nmap-host-files": (nmap_port_os("192.168.1.0/24"), ""),
        "redis-service": (redis_service(), ""),
        "server-port": (server(), ""),
        "link-to-task": (linked(), ""),
        "files-bytes-str-path": (files_cr(local), ""),
        "namespaced": (hello("ns", image=BUSYBOX), "example/org"),
        "plain-image": (plain_image(), ""),
        "multi-port-service": (multi_port_service(), ""),
        "runtime-image-volume": (redis_service(), ""),
        "run-options": (run_options(), ""),
        "stored-files": (stored_files(big), ""),
    }
    settings = {
        # The runtime mounted from its image (Kubernetes 1.35+): no init container, no copy.
        "runtime-image-volume": GOLDEN_SETTINGS.replace(runtime_mode="image"),
        "plain-image": GOLDEN_SETTINGS.replace(
            timeout=600,
            resources={"limits": {"memory": "256Mi"}},
            node_selector={"kubernetes.io/os": "linux"},
            tolerations=({"key": "levrt", "operator": "Exists", "effect": "NoSchedule"},),
            image_pull_policy="Never",
        ),
        # Settings' defaults under the Cr's options: node labels merged, tolerations appended,
        # resources and timeout replaced. Built as the first retry (Pod -r1, label levrt.io/attempt).
        "run-options": GOLDEN_SETTINGS.replace(
            timeout=600,
            resources={"limits": {"memory": "256Mi"}},
            node_selector={"kubernetes.io/os": "any", "zone": "a"},
            tolerations=({"key": "levrt", "operator": "Exists", "effect": "NoSchedule"},),
        ),
    }
    attempts = {"run-options": 1}
    out: dict[str, TaskObjects] = {}
    for index, (name, (cr, namespace)) in enumerate(crs.items()):
        if namespace:
            ns = lev
            parts = namespace.split("/")
            space = ns / parts[0]
            for part in parts[1:]:
                space = space / part
            with space:
                collection = collection_name(cr.schema)
        else:
            collection = collection_name(cr.schema)
        out[name] = build(cr, job=7, task=index, collection=collection, settings=settings.get(name, GOLDEN_SETTINGS),
                          attempt=attempts.get(name, 0))
    return out


def snapshot(objects: TaskObjects) -> list[dict[str, Any]]:
    """The objects with payload bytes replaced by ``<levrt payload of ENTRY>``."""
    docs = [copy.deepcopy(obj) for obj in objects.all()]
    import base64

    for doc in docs:
        if doc["kind"] == "Secret" and doc["metadata"]["name"].endswith("-payload"):
            for key, value in doc["data"].items():
                head = read_header(base64.b64decode(value))
                doc["data"][key] = f"<levrt payload of {head['entry']}>"
    return docs
