"""The nmap modes: each runs the image's real nmap with ``-oX`` and stores the parsed report.

One entry serves every mode: it runs ``nmap OPTIONS -oX FILE TARGETS`` with ``subprocess`` (the
image has nmap but no Python; the entry runs in levrt's injected one), stores the hosts found so
far while a long scan runs, and the whole parsed report at the end with ``ctx.update``. On an
interrupt (``task.signal()``, a ``timeout=``, the Pod deleted) it passes SIGINT on to nmap,
which stops and leaves its XML cut short, and stores whatever of it parses
(``"complete": False, "interrupted": True``): levrt signals only the entry's process, so
forwarding is the entry's job.

SYN scans, OS detection and ARP host discovery send raw packets: those modes ask for
``capabilities=["NET_RAW"]`` (the image runs as root; the capability is what the kernel checks).
"""

from __future__ import annotations

import levrt
from levrt import Cr, annot, ctx
from levrt.annot.cats import Attck, BlackArch

from .report import parse_report
from .util import IMAGE, SCHEMA, argv_of, ports_of, targets_of

REFRESH = 5.0
"""Seconds between two looks at the report while nmap runs (stored when it grew)."""
GRACE = 5.0
"""Seconds nmap gets to stop after SIGINT before it is killed (within levrt's 10 s grace after a timeout)."""

TARGET = annot.Param("ip", "target addresses or host names (comma-separated)", holder="10.244.0.12")
PORTS = annot.Param("ports", "ports and ranges", regex=r"^[0-9TU:,\- ]+$", holder=["22,80,443", "1-1024"])
RAW_SOCKETS = ["NET_RAW"]


@levrt.remote
def _nmap(options: list[str], targets: list[str]) -> None:
    import os
    import signal
    import subprocess
    import sys
    import tempfile

    workdir = tempfile.mkdtemp(prefix="levrt-nmap-")
    xml = os.path.join(workdir, "report.xml")
    command = ["nmap", *options, "-oX", xml, *targets]
    ctx.update({"command": command, "targets": targets, "complete": False, "interrupted": False})
    interrupted = False
    with open(os.path.join(workdir, "stderr"), "w+b") as err:
        try:
            # stdout stays the container's: nmap's usual report is the task's log (levrt logs).
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stderr=err)
        except FileNotFoundError:
            raise RuntimeError("this image has no nmap on its PATH: run the modes in an image with nmap "
                               "(LEVRT_NMAP_IMAGE, e.g. the test cluster's levrt.local/nmap)") from None
        try:
            seen = 0
            while True:
                try:
                    code = proc.wait(timeout=REFRESH)
                    break
                except subprocess.TimeoutExpired:
                    pass
                size = os.path.getsize(xml) if os.path.exists(xml) else 0
                if size != seen:  # a long scan: the hosts done so far are readable now
                    seen = size
                    ctx.update(parse_report(xml))
        except KeyboardInterrupt:
            interrupted = True
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                code = proc.wait(timeout=GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    if stderr:
        sys.stderr.write(stderr)
    if os.path.exists(xml):  # nmap's own report, whole, beside its parsed form (levrt get ... --artifact)
        ctx.put("report.xml", xml)
    result = {**parse_report(xml), "exit_code": code, "interrupted": interrupted}
    if stderr.strip():
        result["stderr"] = stderr
    ctx.update(result)
    if code != 0 and not interrupted:
        raise RuntimeError(f"nmap exited with code {code}: {stderr.strip()[-2000:] or 'no message on stderr'}")


@annot.meta(
    desc="TCP connect scan: open, closed and filtered ports with their service names (-sV: versions too)",
    params=[TARGET, PORTS],
    cats=[Attck.Discovery, BlackArch.Scanner],
    tags=["nmap", "tcp"],
)
def tcp(ip: str, ports: str = "1-1024", versions: bool = False, timeout: int | None = None) -> Cr:
    options = ["-sT", "-Pn", "-n", "--reason", "-p", ports_of(ports)]
    if versions:
        options.append("-sV")
    return Cr(IMAGE, SCHEMA, entry=_nmap(options, targets_of(ip)), timeout=timeout)


@annot.meta(
    desc="SYN scan and OS detection (raw sockets: the task gets NET_RAW)",
    params=[TARGET, PORTS],
    cats=[Attck.Discovery, Attck.Reconnaissance, BlackArch.Scanner, BlackArch.Fingerprint],
    tags=["nmap", "syn", "os"],
)
def port_os(ip: str, ports: str = "1-1024", timeout: int | None = None) -> Cr:
    # OS detection wants one open and one closed port among those scanned; --osscan-guess
    # reports near matches instead of nothing.
    options = ["-sS", "-O", "--osscan-guess", "-Pn", "-n", "--reason", "-p", ports_of(ports)]
    return Cr(IMAGE, SCHEMA, entry=_nmap(options, targets_of(ip)), capabilities=RAW_SOCKETS, timeout=timeout)


@annot.meta(
    desc="Find the live hosts of a network from the node itself (host network; ARP on local links)",
    params=[annot.Param("cidr", "network or addresses", holder=["10.244.0.0/24", "192.168.1.0/24"])],
    cats=[Attck.Discovery, BlackArch.Scanner],
    tags=["nmap", "discovery"],
)
def alive(cidr: str, timeout: int | None = None) -> Cr:
    return Cr(IMAGE, SCHEMA, host=True, entry=_nmap(["-sn", "-n"], targets_of(cidr)), capabilities=RAW_SOCKETS,
              timeout=timeout)


@annot.meta(
    desc="nmap with your own options and targets; the report is stored parsed",
    params=[annot.ARGV],
    cats=[Attck.Discovery, BlackArch.Scanner],
    tags=["nmap"],
)
def raw(argv: str | list[str], host: bool = False, timeout: int | None = None) -> Cr:
    return Cr(IMAGE, SCHEMA, host=host, entry=_nmap(argv_of(argv), []), capabilities=RAW_SOCKETS, timeout=timeout)


__lev__ = annot.meta([tcp, port_os, alive, raw], desc="nmap scans stored as parsed reports")
