"""Two modes: a TCP connect scan and an HTTP path probe, pure-Python sockets in a busybox image.

The entries use only the standard library: they run in levrt's injected Python, not the
image's (busybox has none). ``paths`` takes an optional word list: ``files={"/words": words}``
with ``words=None`` mounts nothing, and the entry falls back to its built-in list.
"""

from __future__ import annotations

import pathlib

import levrt
from levrt import Cr, annot, ctx
from levrt.annot.cats import Attck, BlackArch

from .util import IMAGE, PATHS_SCHEMA, PORTS_SCHEMA, parse_ports

TARGET = annot.Param("target", "host name or IP address", holder="10.0.0.1")


@levrt.remote
def _connect_scan(target: str, ports: list[int], workers: int, timeout: float) -> None:
    import socket
    import time
    from concurrent.futures import ThreadPoolExecutor

    def is_open(port: int) -> bool:
        # Asked three times before it counts as closed: a one-connection server restarted in a loop
        # (the demo target's `nc -l`, just after a readiness probe) refuses for a moment, and on a
        # busy node a listening port's answer can come after the first wait.
        for attempt, wait in enumerate((timeout, 2 * timeout, 4 * timeout)):
            if attempt:
                time.sleep(0.2)
            try:
                with socket.create_connection((target, port), timeout=wait):
                    return True
            except OSError:
                continue
        return False

    with ThreadPoolExecutor(max_workers=workers) as pool:
        found = [port for port, ok in zip(ports, pool.map(is_open, ports), strict=True) if ok]
    ctx.update({"target": target, "open": found, "scanned": len(ports)})


@levrt.remote
def _probe_paths(target: str, port: int, timeout: float) -> None:
    import http.client
    import os

    if os.path.exists("/words"):
        with open("/words", encoding="utf-8", errors="replace") as f:
            words = [line.strip() for line in f if line.strip() and not line.startswith("#")]
        source = "/words"
    else:
        words = ["index.html", "robots.txt", "admin", ".git/HEAD"]
        source = "built-in"
    found = []
    for word in words:
        conn = http.client.HTTPConnection(target, port, timeout=timeout)
        try:
            conn.request("GET", "/" + word.lstrip("/"))
            status = conn.getresponse().status
        except OSError:
            continue
        finally:
            conn.close()
        if status < 400:
            found.append({"path": "/" + word.lstrip("/"), "status": status})
    ctx.update({"target": target, "port": port, "wordlist": source, "tried": len(words), "found": found})


@annot.meta(
    desc="TCP connect scan of one host",
    params=[
        TARGET,
        annot.Param("ports", "ports and ranges", regex=r"^[0-9,\- ]+$", holder=["22,80,443", "8000-8100"]),
        annot.Param("workers", "connections at once", regex=r"^[0-9]+$", holder=64),
    ],
    cats=[Attck.Discovery, BlackArch.Scanner],
    tags=["tcp"],
)
def tcp(target: str, ports: str = "1-1024", workers: int = 64, timeout: float = 0.5) -> Cr:
    return Cr(IMAGE, PORTS_SCHEMA, entry=_connect_scan(target, parse_ports(ports), int(workers), float(timeout)))


@annot.meta(
    desc="Probe an HTTP server for paths from a word list (optional: a built-in list)",
    params=[
        TARGET,
        annot.Param("port", "TCP port of the HTTP server", regex=r"^[0-9]+$", holder=8080),
        annot.Param("words", "word list, one path per line", holder="/usr/share/wordlists/dirb/common.txt"),
    ],
    cats={Attck: [Attck.Reconnaissance], BlackArch: [BlackArch.Webapp, BlackArch.Scanner]},
    tags=["http"],
)
def paths(target: str, port: int = 80, words: bytes | pathlib.Path | None = None, timeout: float = 2.0) -> Cr:
    return Cr(IMAGE, PATHS_SCHEMA, entry=_probe_paths(target, int(port), float(timeout)), files={"/words": words})


__lev__ = annot.meta([tcp, paths], desc="TCP connect scan and HTTP path probe")
