"""The banner mode: connect, optionally send a probe, store the first line the service answers."""

from __future__ import annotations

import os

import levrt
from levrt import Cr, annot, ctx
from levrt.annot.cats import Attck, BlackArch

IMAGE = os.environ.get("LEVRT_EXAMPLE_IMAGE", "busybox:1.36")
RETRIES = 6
"""Connection attempts before a refusal counts (half a second apart)."""


@levrt.remote
def _grab(target: str, port: int, probe: bytes, timeout: float) -> None:
    import socket
    import time

    ctx.set(target=target, port=port)
    # A service that answers one connection at a time (a one-shot listener restarted in a loop, as
    # the demo target's port 2222) refuses for a moment after each client: try a few times.
    for attempt in range(RETRIES):
        try:
            sock = socket.create_connection((target, port), timeout=timeout)
            break
        except ConnectionRefusedError:
            if attempt == RETRIES - 1:
                raise
            time.sleep(0.5)
    with sock:
        if probe:
            sock.sendall(probe)
        sock.settimeout(timeout)
        try:
            data = sock.recv(512)
        except TimeoutError:
            data = b""
    text = data.decode("latin-1").strip()
    ctx.set(banner=text.splitlines()[0] if text else "", raw=data)


@annot.meta(
    desc="Read what a TCP service says first (or answers to a probe)",
    params=[
        annot.Param("target", "host name or IP address", holder="10.0.0.1"),
        annot.Param("port", "TCP port", regex=r"^[0-9]+$", holder=22),
    ],
    cats=[Attck.Discovery, BlackArch.Fingerprint],
)
def banner(target: str, port: int, probe: bytes = b"", timeout: float = 2.0) -> Cr:
    return Cr(IMAGE, "demo/banner@1.0", entry=_grab(target, int(port), probe, float(timeout)))
