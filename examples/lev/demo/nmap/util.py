"""What the nmap modes and workflow share on the client side: image, schema, argument checks.

The checks run when a mode builds its ``Cr``, so a bad port list or a target that nmap would
read as an option is refused before any Pod exists.
"""

from __future__ import annotations

import os
import re
import shlex

# Any image with nmap at /usr/bin/nmap and its data files serves; the test cluster builds this
# one from Debian's package (tests/cluster/images.py), with no shell and no Python in it.
IMAGE = os.environ.get("LEVRT_NMAP_IMAGE", "levrt.local/nmap:7.93")
SCHEMA = "demo/nmap@1.0"

# Host names, IPv4/IPv6 addresses, CIDRs and nmap's octet ranges (10.0.0-3.1-254); never an option.
_TARGET = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:/\-,\[\]]*$")
_PORTS = re.compile(r"^(?:[TU]:)?[0-9]+(?:-[0-9]+)?(?:,(?:[TU]:)?[0-9]+(?:-[0-9]+)?)*$")
# Output options belong to the entry: it writes -oX itself and parses that file.
_OUTPUT_OPTIONS = ("-oX", "-oA", "-oN", "-oG", "-oS", "-oM", "-oH", "--resume", "--iflist")


def targets_of(spec: str | list[str]) -> list[str]:
    """``"10.0.0.1, 10.0.0.2 example.org"`` (or a list) → the targets, each checked."""
    items = spec if isinstance(spec, list) else re.split(r"[\s,]+", str(spec).strip())
    found = [t for t in (str(i).strip() for i in items) if t]
    if not found:
        raise ValueError(f"no target in {spec!r}: give an address, a host name or a CIDR, e.g. 10.244.0.0/24")
    for target in found:
        if not _TARGET.match(target):
            raise ValueError(f"bad target {target!r}: use an address, a host name or a CIDR, e.g. 10.244.0.12")
    return found


def ports_of(spec: str | int) -> str:
    """Check an nmap port list (``"22,80,8000-8100"``, ``"T:80,U:53"``); returned without spaces."""
    text = re.sub(r"\s+", "", str(spec))
    if not _PORTS.match(text):
        raise ValueError(f"bad ports {spec!r}: use numbers and ranges, e.g. 22,80,443 or 1-1024")
    for low, high in re.findall(r"([0-9]+)(?:-([0-9]+))?", text):
        if not 0 <= int(low) <= int(high or low) <= 65535:
            raise ValueError(f"bad port range {low}-{high or low} in {spec!r}: ports go from 0 to 65535")
    return text


def argv_of(argv: str | list[str]) -> list[str]:
    """nmap's own command line for the ``raw`` mode: a shell-like string or a list."""
    args = shlex.split(argv) if isinstance(argv, str) else [str(a) for a in argv]
    if not args:
        raise ValueError("empty nmap command line: give options and targets, e.g. '-sV -p 22,80 10.0.0.1'")
    for arg in args:
        if arg.split("=", 1)[0] in _OUTPUT_OPTIONS:
            raise ValueError(f"{arg!r}: the entry writes nmap's XML report itself (-oX) and stores it parsed; "
                             "leave output options out")
    return args
