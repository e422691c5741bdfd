"""The sweep workflow: one nmap task per target, at most ``limit`` at once, and a summary.

It runs on the client side (this machine, or an orchestration Pod with ``--in-cluster``): the
modes' ``Cr``s fan out with ``Concurrent``, each target's record is read back, and the job's
own record (``await lev.doc.set(...)``, ``levrt get jobs --job N``) says how far it got and
what was found. A target whose scan fails is reported in the summary; the others go on.
``levrt run examples/lev/demo/nmap/flows.py:sweep 10.244.0.12,10.244.0.13 22,80,6379``.
"""

from __future__ import annotations

from typing import Any

from levrt import Concurrent, Cr, TaskFailed, annot, lev
from levrt.annot.cats import Attck, BlackArch

from . import scan
from .util import ports_of, targets_of

MODES = {"tcp": scan.tcp, "syn-os": scan.port_os}


def summarise(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Per host of a scan record: state, open ports with their services, closed count, and the
    three best OS guesses (close guesses trade places from one run to the next)."""
    hosts = []
    for host in record.get("hosts", []):
        ports = host.get("ports", [])
        closed = sum(1 for p in ports if p["state"] == "closed")
        closed += sum(e["count"] or 0 for e in host.get("extraports", []) if e["state"] == "closed")
        matches = host.get("os", {}).get("matches", [])
        hosts.append({
            "address": host["address"],
            "state": host["state"],
            "open": [{"port": p["port"], "protocol": p["protocol"], "service": p["service"]}
                     for p in ports if p["state"] == "open"],
            "closed": closed,
            "os": [f"{m['name']} ({m['accuracy']}%)" for m in matches[:3]],
        })
    return hosts


async def _scan_one(target: str, cr: Cr) -> dict[str, Any]:
    try:
        doc = await cr
    except TaskFailed as exc:  # one target's failure stays in the summary; the others go on
        return {"target": target, "error": str(exc).splitlines()[0]}
    record = await doc.get() or {}
    return {"target": target, "task": doc.task_id, "job": doc.job_id, "complete": record.get("complete", False),
            "hosts": summarise(record)}


@annot.meta(
    desc="Scan several targets at once, one nmap task each, and summarise the open ports",
    params=[
        annot.Param("targets", "addresses, host names or CIDRs, comma-separated", holder="10.244.0.12,10.244.0.13"),
        scan.PORTS,
        annot.Param("how", "tcp: connect scan; syn-os: SYN scan and OS detection", regex=r"^(tcp|syn-os)$",
                    holder=["tcp", "syn-os"]),
        annot.Param("limit", "scans at once", regex=r"^[0-9]+$", holder=4),
    ],
    cats=[Attck.Discovery, Attck.Reconnaissance, BlackArch.Scanner],
    tags=["nmap", "workflow"],
)
async def sweep(targets: str, ports: str = "1-1024", how: str = "tcp", limit: str = "4") -> dict[str, Any]:
    if how not in MODES:
        raise ValueError(f"how={how!r}: use one of {', '.join(MODES)}")
    if not str(limit).isdigit() or int(limit) < 1:
        raise ValueError(f"limit={limit!r}: a whole number of scans at once, e.g. 4")
    found = targets_of(targets)
    ports = ports_of(ports)
    crs = [MODES[how](target, ports) for target in found]  # every Cr checked before the first starts
    await lev.doc.set(stage="scanning", targets=found, ports=ports, how=how)
    async with Concurrent(limit=int(limit)) as c:
        runs = [c.start(_scan_one(target, cr)) for target, cr in zip(found, crs, strict=True)]
    results = [run.result() for run in runs]
    summary = {
        "job": next((r["job"] for r in results if "job" in r), None),
        "how": how,
        "ports": ports,
        "scanned": [r for r in results if "error" not in r],
        "failed": [r for r in results if "error" in r],
    }
    await lev.doc.set(stage="done", **summary)
    return summary


__lev__ = annot.meta([sweep], desc="Workflows of the nmap tool")
