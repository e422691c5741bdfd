"""Read an nmap XML report (``-oX``) into plain dicts and lists a store record can hold.

Why a pull parser: nmap writes its XML as it goes, one ``<host>`` element per finished host,
and closes ``</nmaprun>`` only at the very end. A scan interrupted (``task.signal()``, a timeout)
leaves a file that a whole-document parse refuses; fed piece by piece, every host element that
was closed still parses, and ``complete`` says whether the report was. Standard library only:
this module travels with the entry into an image that has no Python of its own.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

__all__ = ["parse_report", "parse_text"]


def parse_report(path: str) -> dict[str, Any]:
    """The report at ``path`` (maybe cut short); an empty report if nmap wrote nothing yet."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        data = b""
    return parse_text(data)


def parse_text(data: bytes) -> dict[str, Any]:
    """Parse what there is of an nmap XML report; hosts closed before the cut are kept."""
    parser = ET.XMLPullParser(events=("start", "end"))
    report: dict[str, Any] = {"scanner": {}, "scaninfo": [], "hosts": [], "stats": {}, "complete": False}
    closed = False
    try:
        for at in range(0, len(data), CHUNK):
            parser.feed(data[at:at + CHUNK])
            _read(parser, report)
        parser.close()
        closed = True
    except ET.ParseError:
        pass  # cut short (or broken): what was read before that point stays
    _read(parser, report)
    report["up"] = [h["address"] for h in report["hosts"] if h["state"] == "up"]
    report["complete"] = closed and report["stats"].get("exit") == "success"
    return report


CHUNK = 1 << 16


def _read(parser: ET.XMLPullParser, report: dict[str, Any]) -> None:
    for event, el in parser.read_events():
        if event == "start":
            if el.tag == "nmaprun":
                report["scanner"] = {
                    "name": el.get("scanner", "nmap"),
                    "version": el.get("version", ""),
                    "args": el.get("args", ""),
                    "start": _int(el.get("start")),
                }
        elif el.tag == "scaninfo":
            report["scaninfo"].append({
                "type": el.get("type", ""),
                "protocol": el.get("protocol", ""),
                "services": _int(el.get("numservices")),
            })
        elif el.tag == "host":
            report["hosts"].append(_host(el))
            el.clear()  # a big sweep: keep the dicts, not every element as well
        elif el.tag == "runstats":
            report["stats"] = _stats(el)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _scripts(el: ET.Element) -> dict[str, str]:
    """NSE script outputs (``-sC``, ``--script``) by script id."""
    return {s.get("id", ""): s.get("output", "") for s in el.findall("script")}


def _port(el: ET.Element) -> dict[str, Any]:
    state = el.find("state")
    service = el.find("service")
    port: dict[str, Any] = {
        "port": _int(el.get("portid")),
        "protocol": el.get("protocol", ""),
        "state": state.get("state", "") if state is not None else "",
        "reason": state.get("reason", "") if state is not None else "",
        # Without -sV the name comes from nmap-services (method "table"); with it, from probes.
        "service": service.get("name", "") if service is not None else "",
    }
    if service is not None:
        port["method"] = service.get("method", "")
        for key in ("product", "version", "extrainfo", "tunnel"):
            if service.get(key):
                port[key] = service.get(key)
        cpes = [c.text for c in service.findall("cpe") if c.text]
        if cpes:
            port["cpe"] = cpes
    scripts = _scripts(el)
    if scripts:
        port["scripts"] = scripts
    return port


def _os(el: ET.Element) -> dict[str, Any]:
    matches = []
    for match in el.findall("osmatch"):
        classes = [{
            "type": c.get("type", ""),
            "vendor": c.get("vendor", ""),
            "family": c.get("osfamily", ""),
            "generation": c.get("osgen", ""),
            "accuracy": _int(c.get("accuracy")),
            "cpe": [cpe.text for cpe in c.findall("cpe") if cpe.text],
        } for c in match.findall("osclass")]
        matches.append({"name": match.get("name", ""), "accuracy": _int(match.get("accuracy")), "classes": classes})
    fingerprint = el.find("osfingerprint")
    return {
        "matches": matches,
        "ports_used": [
            {"port": _int(p.get("portid")), "protocol": p.get("proto", ""), "state": p.get("state", "")}
            for p in el.findall("portused")
        ],
        # nmap prints its fingerprint when no reference matches well: what to submit upstream.
        "fingerprint": fingerprint.get("fingerprint", "") if fingerprint is not None else "",
    }


def _host(el: ET.Element) -> dict[str, Any]:
    status = el.find("status")
    addresses = [
        {k: v for k, v in (("addr", a.get("addr", "")), ("type", a.get("addrtype", "")), ("vendor", a.get("vendor")))
         if v is not None}
        for a in el.findall("address")
    ]
    ip = next((a["addr"] for a in addresses if a["type"] in ("ipv4", "ipv6")), "")
    host: dict[str, Any] = {
        "address": ip or (addresses[0]["addr"] if addresses else ""),
        "addresses": addresses,
        "hostnames": [h.get("name", "") for h in el.findall("hostnames/hostname")],
        "state": status.get("state", "") if status is not None else "",
        "reason": status.get("reason", "") if status is not None else "",
    }
    ports = el.find("ports")
    if ports is not None:
        host["ports"] = [_port(p) for p in ports.findall("port")]
        # The ports not listed one by one ("Not shown: 995 closed tcp ports").
        host["extraports"] = [{"state": e.get("state", ""), "count": _int(e.get("count"))}
                              for e in ports.findall("extraports")]
    os_el = el.find("os")
    if os_el is not None:
        host["os"] = _os(os_el)
    distance = el.find("distance")
    if distance is not None:
        host["distance"] = _int(distance.get("value"))
    uptime = el.find("uptime")
    if uptime is not None:
        host["uptime"] = {"seconds": _int(uptime.get("seconds")), "lastboot": uptime.get("lastboot", "")}
    scripts = el.find("hostscript")
    if scripts is not None:
        host["scripts"] = _scripts(scripts)
    return host


def _stats(el: ET.Element) -> dict[str, Any]:
    finished = el.find("finished")
    hosts = el.find("hosts")
    stats: dict[str, Any] = {}
    if finished is not None:
        stats.update({
            "exit": finished.get("exit", ""),
            "elapsed": _float(finished.get("elapsed")),
            "summary": finished.get("summary", ""),
        })
        if finished.get("errormsg"):
            stats["error"] = finished.get("errormsg")
    if hosts is not None:
        stats.update({k: _int(hosts.get(k)) for k in ("up", "down", "total")})
    return stats
