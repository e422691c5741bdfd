"""The sweep workflow: start a demo target, scan it, grab the banners, probe its web server.

It imports its sibling relatively (``from . import scan``) and another tool package through the
``lev.*`` namespace (``lev.demo.banner``), and writes its own progress and result to the job's
record with ``await lev.doc.set(...)``. ``levrt run examples/lev/demo/portscan/flows.py:sweep``.
"""

from __future__ import annotations

from lev.demo.banner.grab import banner

from levrt import Concurrent, Cr, annot, lev
from levrt.annot.cats import Attck

from . import scan
from .util import IMAGE, TARGET_PORTS, TARGET_SCRIPT, chunk_ranges

HTTP_PROBE = b"GET / HTTP/1.0\r\n\r\n"


@annot.meta(
    desc="Scan a demo target's ports 2200-2299 and 8000-8099, grab the banners, probe its web paths",
    params=[annot.Param("chunks", "port ranges per block of 100 ports", regex=r"^[0-9]+$", holder=2)],
    cats=[Attck.Discovery, Attck.Reconnaissance],
    tags=["demo"],
)
async def sweep(chunks: str = "2") -> dict:
    target = await Cr(IMAGE, cmd=["sh", "-c", TARGET_SCRIPT], ports=list(TARGET_PORTS)).start()
    try:
        await lev.doc.set(stage="scanning", target=target.host)
        async with Concurrent(limit=4) as scans:
            started = [scans.start(scan.tcp(target.host, r)) for r in chunk_ranges(int(chunks))]
        first = await started[0]
        # Every record of this job in demo/ports@1.0: one per range scanned.
        open_ports = sorted({port async for record in first.all() for port in record["open"]})

        await lev.doc.set(stage="banners", open=open_ports)
        async with Concurrent(limit=4) as grabs:
            banners = {p: grabs.start(banner(target.host, p, HTTP_PROBE if p == 8080 else b"")) for p in open_ports}
            web = grabs.start(scan.paths(target.host, 8080))  # no word list: the built-in one
        summary = {
            "target": target.host,
            "job": first.job_id,
            "open": open_ports,
            "banners": {str(p): (await (await t).get())["banner"] for p, t in banners.items()},
            "paths": [hit["path"] for hit in (await (await web).get())["found"]],
        }
        await lev.doc.set(stage="done", **summary)
    finally:
        await target.signal()
        await target.done()
    return summary


__lev__ = annot.meta([sweep], desc="Workflows of the portscan tool")
