"""A workflow: start a target service, scan it in parallel chunks, grab the banners.

``levrt run examples/workflow.py`` (from the laptop) or ``levrt run examples/workflow.py
--in-cluster`` (the orchestration itself runs in a Pod). The target is a task of ours: a busybox
Pod serving HTTP on 8080 and a greeting on 2222, reached through its Pod IP (``task.host``).
"""

from __future__ import annotations

import os

import tcpscan

from levrt import Concurrent, Cr, annot, lev

IMAGE = os.environ.get("LEVRT_EXAMPLE_IMAGE", "busybox:1.36")
TARGET_SCRIPT = (
    "mkdir -p /www && echo levrt-demo > /www/index.html && httpd -p 8080 -h /www && "
    "while true; do echo 'SSH-2.0-levrt-demo' | nc -l -p 2222; done"
)


@annot.meta(desc="Scan a demo target's ports 2200-2299 and 8000-8099 five chunks at a time, then grab banners")
async def main(chunks: str = "10") -> dict:
    target = await Cr(IMAGE, cmd=["sh", "-c", TARGET_SCRIPT], ports=[8080, 2222]).start()
    try:
        ranges = [f"{base + i * 20}-{base + i * 20 + 19}" for base in (2200, 8000) for i in range(5)]
        ranges = ranges[: int(chunks)]
        async with Concurrent(limit=5) as scans:
            jobs = [scans.start(tcpscan.scan(target.host, r)) for r in ranges]
        open_ports = sorted({p for job in jobs for p in (await job.result().get())["open"]})

        banners = {}
        with lev / "demo":  # banner records land in collection demo|examples/banner@1.0
            async with Concurrent(limit=5) as grabs:
                for port in open_ports:
                    probe = b"GET / HTTP/1.0\r\n\r\n" if port == 8080 else b""
                    banners[port] = grabs.start(tcpscan.banner(target.host, port, probe))
        summary = {
            "target": target.host,
            "open": open_ports,
            "banners": {str(p): (await t.result().get())["banner"].splitlines()[0] for p, t in banners.items()},
        }
    finally:
        await target.signal()
        await target.done()
    return summary


__lev__ = annot.meta([main], desc="tcpscan demo workflow")
