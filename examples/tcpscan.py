"""tcpscan: a levrt tool in the seeds' layout, a TCP connect scan and a banner grab.

Both modes run pure-Python sockets inside a busybox image (no Python in it: levrt brings its
own), so they work on any cluster. ``levrt check examples/tcpscan.py`` prints the metadata.
"""

from __future__ import annotations

import os

import levrt
from levrt import Cr, annot, lev
from levrt.annot.cats import Attck, BlackArch

IMAGE = os.environ.get("LEVRT_EXAMPLE_IMAGE", "busybox:1.36")


def parse_ports(spec: str) -> list[int]:
    """``"22,80,8000-8003"`` → ``[22, 80, 8000, 8001, 8002, 8003]``."""
    ports: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        low, _, high = part.partition("-")
        first, last = int(low), int(high or low)
        if not 1 <= first <= last <= 65535:
            raise ValueError(f"bad port range {part!r}: use 1-65535, e.g. 22,80,8000-8100")
        ports.update(range(first, last + 1))
    return sorted(ports)


@levrt.remote
def _connect_scan(target: str, ports: list[int], timeout: float) -> None:
    import socket
    import time
    from concurrent.futures import ThreadPoolExecutor

    def is_open(port: int) -> bool:
        # A refused port is asked twice more, 0.2 s apart, as scanners retry: a one-shot listener
        # restarted in a loop (the workflow's target on 2222) refuses for a moment after each client,
        # the kubelet's probe among them. A timeout (filtered) is not asked again.
        for attempt in range(3):
            try:
                with socket.create_connection((target, port), timeout=timeout):
                    return True
            except ConnectionRefusedError:
                if attempt < 2:
                    time.sleep(0.2)
            except OSError:
                return False
        return False

    with ThreadPoolExecutor(max_workers=64) as pool:
        found = [port for port, ok in zip(ports, pool.map(is_open, ports), strict=True) if ok]
    lev.set(target=target, open=found, scanned=len(ports))


@levrt.remote
def _grab_banner(target: str, port: int, probe: bytes, timeout: float) -> None:
    import socket
    import time

    # A one-shot listener restarted in a loop (the workflow's target on 2222) refuses for a moment
    # after each client, such as the port scan's probe, and resets a connection that queued behind
    # another client (the kubelet's probe): a refusal or a reset is tried again for up to 5 s.
    deadline = time.monotonic() + 5
    while True:
        try:
            with socket.create_connection((target, port), timeout=timeout) as sock:
                if probe:
                    sock.sendall(probe)
                sock.settimeout(timeout)
                try:
                    data = sock.recv(512)
                except TimeoutError:
                    data = b""
            break
        except (ConnectionRefusedError, ConnectionResetError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)
    lev.set(target=target, port=port, banner=data.decode("latin-1").strip())


@annot.meta(
    desc="TCP connect scan of one host",
    params=[annot.Param("target", "host name or IP address", holder="10.0.0.1"),
            annot.Param("ports", "ports and ranges", regex=r"^[0-9,\- ]+$", holder="22,80,8000-8100")],
    cats=[Attck.Discovery, BlackArch.Scanner],
)
def scan(target: str, ports: str = "1-1024", timeout: float = 0.5) -> Cr:
    return Cr(IMAGE, "examples/tcpscan@1.0", entry=_connect_scan(target, parse_ports(ports), timeout))


@annot.meta(
    desc="Read what a TCP service says first (or answers to a probe)",
    params=[annot.Param("target", "host name or IP address", holder="10.0.0.1"),
            annot.Param("port", "TCP port", regex=r"^[0-9]+$", holder="22")],
    cats=[Attck.Discovery, BlackArch.Fingerprint],
)
def banner(target: str, port: int, probe: bytes = b"", timeout: float = 2.0) -> Cr:
    return Cr(IMAGE, "examples/banner@1.0", entry=_grab_banner(target, int(port), probe, timeout))


__lev__ = annot.meta([scan, banner], desc="TCP scanning in pure Python sockets", cats=[Attck.Discovery])
